// Shrinking a failing schedule (DESIGN.md §8; STYLE.md §17): work on the decision tape, never on the
// program. A candidate tape is kept only when its guided replay gives the same signature, so what comes
// out still shows the same bug. The order is shortlex on (preemptions, steps), as Hypothesis shrinks:
//   0. the empty tape (the tail alone), which cannot be beaten;
//   1. cut the tail: the shortest prefix that still reproduces (the guided replay's round-robin tail
//      finishes the run, so everything after the bug's last needed decision can go);
//   2. drop preemptions: first keep only the last few, then delta-debugging style (Zeller's ddmin: remove a chunk of them, halve the chunk
//      size when no chunk can go) — a dropped preemption keeps its step, only the timer interrupt goes;
//   3. cut the tail again;
//   4. delete runs of steps, large chunks first, from the end backwards.
// Candidates are tried in fixed batches of PROBES whatever the pool's size, and the first that passes in
// batch order wins, so the result does not depend on how many workers evaluated them.
import { tapeStats } from '../schedule.js';

/** Candidates evaluated together (independent of the number of workers, so results are too). */
export const PROBES = 4;

/** Replays candidates; for each, the run's digest when it reproduced the signature, else null. */
export type CandidateTest = (tapes: Int32Array[]) => Promise<(string | null)[]>;

export interface ShrinkResult {
  tape: Int32Array;
  digest: string;
  /** Replays spent. */
  tries: number;
  before: { steps: number; preemptions: number };
  after: { steps: number; preemptions: number };
}

export async function shrinkTape(tape: Int32Array, digest: string, test: CandidateTest, budget: number): Promise<ShrinkResult> {
  const before = tapeStats(tape);
  let cur = tape, curDigest = digest, tries = 0;
  /** Try candidates in batches; adopt the first that reproduces. Returns its index or -1. */
  const firstPassing = async (cands: Int32Array[]): Promise<number> => {
    for (let i = 0; i < cands.length && tries < budget; i += PROBES) {
      const batch = cands.slice(i, Math.min(cands.length, i + PROBES, i + budget - tries));
      tries += batch.length;
      const res = await test(batch);
      const k = res.findIndex((d) => d !== null);
      if (k >= 0) { cur = batch[k]; curDigest = res[k] as string; return i + k; }
    }
    return -1;
  };

  const cutTail = async (): Promise<void> => {
    let lo = 0, hi = cur.length >> 1; // a prefix of hi steps reproduces; assume none of lo does
    while (hi - lo > 1 && tries < budget) {
      const pts: number[] = [];
      for (let j = 1; j <= PROBES; j++) {
        const p = lo + Math.ceil(((hi - lo) * j) / (PROBES + 1));
        if (p > lo && p < hi && !pts.includes(p)) pts.push(p);
      }
      if (pts.length === 0) break;
      const base = cur;
      const k = await firstPassing(pts.map((p) => base.slice(0, 2 * p)));
      if (k < 0) lo = pts[pts.length - 1];
      else { hi = pts[k]; if (k > 0) lo = pts[k - 1]; }
    }
  };

  const dropPreemptions = async (): Promise<void> => {
    // The tail was just cut right after the bug showed, so the preemption that opened it is most often
    // among the last few: try keeping only the last 1, 2, 4, 8 before bisecting.
    const first: number[] = [];
    for (let i = 1; i < cur.length; i += 2) if (cur[i] < 0) first.push(i);
    if (first.length > 1) {
      const base = cur;
      const keep = [1, 2, 4, 8].filter((j) => j < first.length);
      await firstPassing(keep.map((j) => {
        const t = base.slice();
        for (const i of first.slice(0, first.length - j)) t[i] = -t[i];
        return t;
      }));
    }
    let gran = 2;
    for (;;) {
      const pre: number[] = [];
      for (let i = 1; i < cur.length; i += 2) if (cur[i] < 0) pre.push(i);
      if (pre.length === 0 || tries >= budget) return;
      gran = Math.min(gran, pre.length);
      const size = Math.ceil(pre.length / gran);
      const base = cur;
      const cands: Int32Array[] = [];
      for (let c = 0; c < pre.length; c += size) {
        const t = base.slice();
        for (const i of pre.slice(c, c + size)) t[i] = -t[i];
        cands.push(t);
      }
      const k = await firstPassing(cands);
      if (k >= 0) { gran = Math.max(gran - 1, 2); continue; }
      if (gran >= pre.length) return;
      gran = Math.min(gran * 2, pre.length);
    }
  };

  const deleteSteps = async (): Promise<void> => {
    let size = Math.max(1, (cur.length >> 1) >> 1);
    while (size >= 1 && tries < budget) {
      const steps = cur.length >> 1;
      const base = cur;
      const cands: Int32Array[] = [];
      for (let end = steps; end - size >= 0; end -= size) {
        const t = new Int32Array(base.length - 2 * size);
        t.set(base.subarray(0, 2 * (end - size)), 0);
        t.set(base.subarray(2 * end), 2 * (end - size));
        cands.push(t);
      }
      const k = cands.length === 0 ? -1 : await firstPassing(cands);
      if (k < 0) size >>= 1; // nothing of this size can go: try smaller chunks
    }
  };

  // The empty tape first: when the fixed round-robin tail alone shows the bug, nothing shorter exists.
  if (cur.length > 0 && (await firstPassing([new Int32Array(0)])) >= 0) return { tape: cur, digest: curDigest, tries, before, after: tapeStats(cur) };
  await cutTail();
  await dropPreemptions();
  await cutTail();
  await deleteSteps();
  return { tape: cur, digest: curDigest, tries, before, after: tapeStats(cur) };
}
