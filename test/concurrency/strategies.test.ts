// Serial strategies beyond random: pct (priorities and d-1 change points, preemptions on device steps), pos
// (partial order sampling), and guided replay, which lets a shrinker replay any edited tape to the end.
import { describe, expect, it } from 'vitest';
import type * as LabModule from '../../src/lab.js';
import type { RunConfig } from '../../src/lab.js';
import { GuidedReplayStrategy, PctStrategy, PosStrategy, makeStrategy, STRATEGIES } from '../../src/engine/strategies/index.js';

// Simulations run from the compiled build, as users run them (test/helpers/run.ts says why).
const { labPrepare, labRun } = (await import(new URL('../../dist/src/lab.js', import.meta.url).href)) as typeof LabModule;

const cfg = (scenario: string, strategy: string, seed: number, pctDepth?: number): RunConfig => ({
  scenario, engine: 'serial', seed, strategy, maxInstructions: 10_000_000, maxMs: 0, slack: 30000, burst: 4096, watchdogMs: 2000, pctDepth,
});

/** Tape entries (participant, signed shared) as pairs. */
const pairs = (t: Int32Array): [number, number][] => Array.from({ length: t.length >> 1 }, (_, i) => [t[2 * i], t[2 * i + 1]]);

describe('pct and pos', () => {
  it('are listed and made by makeStrategy', () => {
    expect(STRATEGIES).toContain('pct');
    expect(STRATEGIES).toContain('pos');
    expect(makeStrategy('pct', 1, { pctDepth: 4, participants: 4 }).name).toBe('pct');
    expect(makeStrategy('pos', 1, { participants: 4 }).name).toBe('pos');
  });

  for (const strategy of ['pct', 'pos']) {
    it(`${strategy}: the same seed gives the same run, other seeds other schedules; every step is one shared access`, async () => {
      const prep = await labPrepare('ipi-xapic');
      const a = await labRun(prep, cfg('ipi-xapic', strategy, 3), { recordSchedule: true });
      const b = await labRun(prep, cfg('ipi-xapic', strategy, 3), { recordSchedule: true });
      const c = await labRun(prep, cfg('ipi-xapic', strategy, 4), { recordSchedule: true });
      expect(a.report.outcome).toBe('completed');
      expect(b.report.digest).toBe(a.report.digest);
      expect(Array.from(b.result.schedule ?? [])).toEqual(Array.from(a.result.schedule ?? []));
      expect(Array.from(c.result.schedule ?? [])).not.toEqual(Array.from(a.result.schedule ?? []));
      expect(pairs(a.result.schedule ?? new Int32Array()).every(([, s]) => s === 1 || s === -1)).toBe(true);
      const st = a.result.stats;
      expect(st).toBeDefined();
      expect(st?.choiceSteps).toBeGreaterThan(0);
      expect(st?.lapicSteps).toBeGreaterThan(0);
      expect(st?.deviceSteps).toBeLessThanOrEqual(st?.lapicSteps ?? 0);
      expect(st?.preemptions).toBe(pairs(a.result.schedule ?? new Int32Array()).filter(([p, s]) => s < 0 && p < prep.spec.pcpus).length);
    });
  }

  it('pct: a recorded run replays exactly; depth 1 has no change points; at most d-1 preemptions', async () => {
    const prep = await labPrepare('secure-realm');
    // Change points where the run has room for them: the estimate is the first run's own stats.
    const first = await labRun(prep, cfg('secure-realm', 'pct', 2, 9), { recordSchedule: true });
    const st = first.result.stats;
    expect(st).toBeDefined();
    const est = { choice: st?.choiceSteps ?? 0, device: st?.deviceSteps ?? 0 };
    const rec = await labRun(prep, cfg('secure-realm', 'pct', 2, 9), { recordSchedule: true, stepEstimate: est });
    expect(rec.report.outcome).toBe('completed');
    const pre = rec.result.stats?.preemptions ?? -1;
    expect(pre).toBeGreaterThan(0); // 8 change points: some coins came up "preempt" (fixed by the seed)
    expect(pre).toBeLessThanOrEqual(8);
    const tape = rec.result.schedule as Int32Array;
    const rep = await labRun(prep, cfg('secure-realm', 'pct', 2, 9), { replayRuns: tape, replayMode: 'exact' });
    expect(rep.report.outcome).toBe('completed');
    expect(rep.report.digest).toBe(rec.report.digest);

    const flat = await labRun(prep, cfg('secure-realm', 'pct', 2, 1), { stepEstimate: est });
    expect(flat.report.outcome).toBe('completed');
    expect(flat.result.stats?.preemptions).toBe(0);
    for (let seed = 1; seed <= 3; seed++) {
      const r = await labRun(prep, cfg('secure-realm', 'pct', seed, 3), { stepEstimate: est });
      expect(r.result.stats?.preemptions).toBeLessThanOrEqual(2);
    }
  });

  it('pct: change points, priorities and preemptions follow the paper and the estimate', () => {
    const s = new PctStrategy(7, 3, 1, { choice: 100, device: 100 });
    expect(s.changePoints).toEqual({ choice: [], device: [] });
    // Only device change points where the run has no choice steps; positions are distinct and in range.
    const d = new PctStrategy(7, 3, 6, { choice: 0, device: 10 });
    expect(d.changePoints.choice).toEqual([]);
    expect(d.changePoints.device.length).toBe(5);
    expect(new Set(d.changePoints.device).size).toBe(5);
    expect(d.changePoints.device.every((x) => x >= 0 && x < 10)).toBe(true);
    // The k-th device step (counted from 0) preempts that pCPU's next step, and only that one.
    const elig = Int32Array.from([0, 1, 2]);
    const first = d.changePoints.device[0];
    let chosen = d.next(elig, 3);
    expect(d.shared).toBe(1);
    for (let k = 0; k < first; k++) { d.after(chosen, true, true); chosen = d.next(elig, 3); expect(d.shared).toBe(1); }
    d.after(1, true, true); // the (first)-th device step is pCPU 1's
    expect(d.next(Int32Array.from([1]), 1)).toBe(1);
    expect(d.shared).toBe(-1);
    d.after(1, false, false);
    d.next(Int32Array.from([1]), 1);
    expect(d.shared).toBe(1);
    // A LAPIC step where a timer interrupt would change nothing is not a device step: it does not count.
    const e = new PctStrategy(7, 2, 2, { choice: 0, device: 1 });
    e.next(Int32Array.from([0]), 1);
    e.after(0, true, false);
    e.next(Int32Array.from([0]), 1);
    expect(e.shared).toBe(1);
    e.after(0, true, true);
    e.next(Int32Array.from([0]), 1);
    expect(e.shared).toBe(-1);
    // Priority change (a): the participant chosen at the change point drops below every other.
    const c = new PctStrategy(3, 2, 2, { choice: 1, device: 0 });
    const top = c.next(Int32Array.from([0, 1]), 2); // choice step 0 is the change point
    expect(c.changePoints.choice).toEqual([[0, 1]]);
    expect(c.next(Int32Array.from([0, 1]), 2)).toBe(1 - top);
    expect(c.next(Int32Array.from([0, 1]), 2)).toBe(1 - top);
  });

  it('pct: a participant that keeps the top priority without progress yields instead of starving the rest', async () => {
    // xen-access: the agent has no clock, so lax sync cannot hold a spinning pCPU back for it.
    const prep = await labPrepare('xen-access');
    for (const seed of [2, 3]) {
      const r = await labRun(prep, { ...cfg('xen-access', 'pct', seed), maxMs: 30_000 });
      expect(r.report.outcome).toBe('completed');
    }
  });

  it('pos: the timer event after a device step races with that pCPU\'s next step', () => {
    const runs = (seed: number): number => {
      const s = new PosStrategy(seed, 2);
      let pre = 0;
      for (let i = 0; i < 2000; i++) {
        const p = s.next(Int32Array.from([0, 1]), 2);
        if (s.shared < 0) pre++;
        s.after(p, true, i % 2 === 0);
      }
      return pre;
    };
    const pre = runs(1);
    expect(pre).toBeGreaterThan(0);
    expect(pre).toBeLessThan(2000);
    expect(runs(1)).toBe(pre);
    // No device steps: never a preemption.
    const s = new PosStrategy(1, 2);
    for (let i = 0; i < 1000; i++) { s.after(s.next(Int32Array.from([0, 1]), 2), true, false); expect(s.shared).toBe(1); }
  });
});

describe('guided replay', () => {
  it('takes the first eligible participant at or after the named one, then a round-robin tail', () => {
    const g = new GuidedReplayStrategy(Int32Array.from([2, 5, 3, -4, 9, 1]));
    expect(g.next(Int32Array.from([0, 1, 3]), 3)).toBe(3); // 2 not eligible: the next one up
    expect(g.shared).toBe(5);
    expect(g.next(Int32Array.from([0, 3]), 2)).toBe(3);
    expect(g.shared).toBe(-4);
    expect(g.next(Int32Array.from([0, 1]), 2)).toBe(0); // 9: nobody at or above, wraps
    expect(g.consumed).toBe(3);
    expect(g.next(Int32Array.from([0, 1, 2]), 3)).toBe(1); // tail: round-robin after the last choice
    expect(g.shared).toBe(1);
    expect(g.next(Int32Array.from([0, 1, 2]), 3)).toBe(2);
    expect(g.next(Int32Array.from([0, 1, 2]), 3)).toBe(0);
  });

  it('a truncated or edited tape runs to the end, the same way every time; exact replay of it aborts', async () => {
    const prep = await labPrepare('secure-realm');
    const rec = await labRun(prep, cfg('secure-realm', 'pct', 5), { recordSchedule: true });
    const tape = rec.result.schedule as Int32Array;
    const cut = tape.slice(0, (tape.length >> 2) << 1); // the first half of the steps
    const g1 = await labRun(prep, cfg('secure-realm', 'pct', 5), { replayRuns: cut, replayMode: 'guided' });
    const g2 = await labRun(prep, cfg('secure-realm', 'pct', 5), { replayRuns: cut, replayMode: 'guided' });
    expect(g1.report.outcome).toBe('completed');
    expect(g2.report.digest).toBe(g1.report.digest);
    const ex = await labRun(prep, cfg('secure-realm', 'pct', 5), { replayRuns: cut, replayMode: 'exact' });
    expect(ex.report.outcome).toBe('aborted');

    // Entries that name participants that cannot run there (one that does not exist, preemptions of
    // pCPUs that may have no vCPU): guided replay goes on, exact replay diverges.
    const edited = tape.slice(0, 4000);
    for (let i = 0; i < edited.length; i += 200) edited[i] = 7;
    for (let i = 101; i < edited.length; i += 200) edited[i] = -1;
    const h1 = await labRun(prep, cfg('secure-realm', 'pct', 5), { replayRuns: edited, replayMode: 'guided' });
    const h2 = await labRun(prep, cfg('secure-realm', 'pct', 5), { replayRuns: edited, replayMode: 'guided' });
    expect(h1.report.outcome).toBe('completed');
    expect(h2.report.digest).toBe(h1.report.digest);
    const hx = await labRun(prep, cfg('secure-realm', 'pct', 5), { replayRuns: edited, replayMode: 'exact' });
    expect(hx.report.outcome).toBe('aborted');
    expect(hx.report.reason).toContain('replay diverged');
  });
});
