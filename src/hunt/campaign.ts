// A hunt (DESIGN.md §8): many serial schedules of one scenario as tasks on a piscina pool, every distinct
// signature once, each shrunk to a minimal schedule that replays.
//
// What makes the result independent of the number of workers:
//  - run i's strategy is strategies[i % S] and its seed is childSeed(campaign seed, "run<i>");
//  - results are merged strictly in run order (a small reorder buffer holds the ones that finish early),
//    so "first hit" is the lowest run index and --until stops at the same run whatever finished first;
//  - pct and pos sample against an estimate of the run's length (k steps with a choice, k_dev device
//    steps). It starts from a round-robin calibration run and grows with the longest run seen, but run
//    i only sees runs up to i - ESTIMATE_LAG - 1, so no run depends on which others happened to be done;
//  - shrinking tries candidates in fixed batches (shrink.ts).
// Memory is bounded by what is live: the reorder buffer (at most the dispatch window), the signature
// table (distinct bugs, capped) and one tape per signature while it is being shrunk.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Piscina } from 'piscina';
import { labPrepare, RUN_DEFAULTS, type Prepared, type RunConfig } from '../lab.js';
import { childSeed } from '../prng.js';
import { workerFile } from '../engine/threaded.js';
import { scheduleHeader, writeScheduleFile } from '../schedule.js';
import { bug, UserError } from '../errors.js';
import { PROBES, shrinkTape } from './shrink.js';
import type { HuntTask, PrepSpec, StepEstimate, TaskResult } from './task.js';

/** Runs between a run and the newest run whose length it may learn from (see the header). */
export const ESTIMATE_LAG = 64;
/** Distinct signatures a campaign keeps; more are counted, not kept. */
export const MAX_SIGNATURES = 10_000;
/** Strategies whose steps are single shared accesses: their lengths are what pct and pos estimate. */
const FINE_STRATEGIES = new Set(['pct', 'pos', 'round-robin']);

export interface UntilSpec { kind: string; cause?: string; signature?: string }

export interface HuntOptions {
  scenario: string;
  pcpus?: number;
  vcpus?: number;
  strategies: string[];
  runs: number;
  /** Wall-clock budget for dispatching runs, 0 = none. */
  timeMs: number;
  workers: number;
  seed: number;
  until?: UntilSpec;
  /** Where shrunk schedules go; null = keep none (and shrink nothing). */
  out: string | null;
  shrink: boolean;
  /** Replays each signature's shrinking may spend. */
  shrinkBudget: number;
  /** Shrink only this signature (reproduce): the others are reported, not kept. */
  shrinkOnly?: string;
  maxInstructions: number;
  slack: number;
  pctDepth: number;
  onProgress?: (p: HuntProgress) => void;
  interrupt: { requested: boolean };
}

export interface HuntProgress {
  phase: 'runs' | 'shrink'; done: number; total: number; runsPerS: number; signatures: number;
  /** Distributed hunts: runs/s of each worker process that returned results (name: host:pid). */
  machines?: Record<string, number>;
}

/**
 * Where a campaign's tasks run: the local piscina pool, or a queue of remote workers (src/hunt/producer.ts).
 * The campaign does the same thing whichever it is: it dispatches tasks, merges results in run order and
 * shrinks, so the executor decides nothing that changes a result.
 */
export interface HuntExecutor {
  /** Runs the dispatch loop keeps in flight. */
  window: number;
  /** Copies of the calibration run to send (each warms one local worker). */
  calibrations: number;
  run(task: HuntTask): Promise<TaskResult>;
  /** Runs/s per remote worker process so far (distributed only). */
  machines?(): Record<string, number>;
  /** Worker processes or threads that ran tasks, for the result's `workers`. */
  workers(): number;
  /** Extra fields for the result's `hunt` object. */
  describe?(): Record<string, unknown>;
  /** Stop: cancel what is still queued and release everything. */
  destroy(): Promise<void>;
}

/** Thrown by an executor that lost its campaign (the queue's server went away): the hunt ends with partial results. */
export class HuntLost extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HuntLost';
  }
}

export interface SignatureRow {
  kind: string;
  cause: string;
  signature: string;
  hits: number;
  first: { run: number; strategy: string; seed: number };
  /** The first occurrence's detail in the first hit's report. */
  detail: string;
  /** The shrunk schedule file, or null (not shrunk: --no-shrink, interrupted, or no --out). */
  schedule: string | null;
  /**
   * Shrinking: `from` is the run it started from — the hit with the fewest preemptions (then steps, then
   * the lowest run), or a witness run (run null) found by the witness search (see shrinkRow).
   */
  shrunk: { from: { run: number | null; strategy: string; seed: number }; steps_before: number; steps_after: number; preemptions_before: number;
    preemptions_after: number; replays: number } | null;
}

export interface HuntResult {
  hunt: {
    scenario: string; strategies: string[]; runs: number; workers: number; wall_ms: number; runs_per_s: number;
    seed: number; scenario_hash: string;
    /** Why the hunt stopped before --runs: 'until', 'time', 'interrupted', 'lost' (distributed: the queue's server went away), or null. */
    stopped: string | null;
    signatures_dropped: number;
    /** Distributed hunts: why the campaign was lost, when it was. */
    lost?: string;
    /** Distributed hunts: the queue, the campaign and the runs each worker process returned. */
    queue?: Record<string, unknown>;
  };
  signatures: SignatureRow[];
  per_strategy: Record<string, { runs: number; first_hit: Record<string, number> }>;
}

/** The pool of hunt workers of this process (the local hunt's, and each `vcpulab worker`'s). */
export function huntPool(workers: number): Piscina {
  return new Piscina({ filename: workerFile('hunt'), minThreads: workers, maxThreads: workers, idleTimeout: 30_000, concurrentTasksPerWorker: 1 });
}

/** The local executor: one task per piscina task. */
export function poolExecutor(workers: number): HuntExecutor {
  const pool = huntPool(workers);
  return {
    window: 2 * workers, calibrations: workers,
    run: (t) => pool.run(t) as Promise<TaskResult>,
    workers: () => workers,
    destroy: () => pool.destroy(),
  };
}

/** Makes the executor once the scenario is prepared (a distributed one sends the scenario's files with the campaign). */
export type ExecutorFactory = (prep: Prepared, spec: PrepSpec) => Promise<HuntExecutor>;

export function untilMatches(u: UntilSpec, signature: string, kind: string, cause: string): boolean {
  if (u.signature !== undefined) return u.signature === signature;
  return u.kind === kind && (u.cause === undefined || u.cause === cause);
}

/** The run config of run `i` of a campaign. */
export function campaignRunConfig(o: HuntOptions, i: number): RunConfig {
  return {
    scenario: o.scenario, pcpus: o.pcpus, vcpus: o.vcpus, engine: 'serial', seed: childSeed(o.seed, `run${i}`),
    strategy: o.strategies[i % o.strategies.length], maxInstructions: o.maxInstructions, maxMs: 0, slack: o.slack,
    burst: RUN_DEFAULTS.burst, watchdogMs: RUN_DEFAULTS.watchdogMs, pctDepth: o.pctDepth,
  };
}

export async function runHunt(o: HuntOptions, makeExecutor: ExecutorFactory = async () => poolExecutor(o.workers)): Promise<HuntResult> {
  const t0 = performance.now();
  const prep = await labPrepare(o.scenario, { pcpus: o.pcpus, vcpus: o.vcpus }); // bad input: exit 2 before any worker starts
  if (o.out !== null) {
    try { mkdirSync(o.out, { recursive: true }); } catch (e) {
      throw new UserError(`--out: cannot create directory '${o.out}' (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  const spec: PrepSpec = { scenario: o.scenario, pcpus: o.pcpus, vcpus: o.vcpus, hash: prep.hash };
  const pool = await makeExecutor(prep, spec);
  const rows = new Map<string, SignatureRow>();
  /** Per signature, the hit shrinking starts from: fewest preemptions, then fewest steps, then lowest run. */
  const best = new Map<string, { run: number; preemptions: number; steps: number; est: StepEstimate | undefined }>();
  let dropped = 0;
  const perStrategy: HuntResult['per_strategy'] = {};
  for (const s of o.strategies) perStrategy[s] = { runs: 0, first_hit: {} };
  let stopped: string | null = null;
  let lost: string | undefined;
  let mergedRuns = 0;
  try {
    // Calibration: one round-robin run gives pct and pos their first estimate of the run's length. Every
    // worker runs it (the same run, so the same result), which also prepares the scenario and warms the
    // interpreter on each before any run is timed.
    const calTask: HuntTask = { type: 'run', prep: spec, config: { ...campaignRunConfig(o, 0), strategy: 'round-robin' }, run: -1, record: false };
    const cals = await Promise.all(Array.from({ length: pool.calibrations }, () => pool.run(calTask)));
    const cal = cals[0];
    if (cals.some((c) => c.digest !== cal.digest)) bug('the calibration run gave different digests on different workers');
    const calEst: StepEstimate = { choice: Math.max(1, cal.stats?.choiceSteps ?? cal.steps), device: Math.max(1, cal.stats?.deviceSteps ?? 1) };

    const done = new Map<number, TaskResult>();
    const cum = new Map<number, StepEstimate>(); // estimate after merging run i (kept for the last window)
    const inflight = new Set<Promise<void>>();
    let next = 0, stopAt = Infinity, failure: unknown = null;
    const window = pool.window;
    const estimateFor = (i: number): StepEstimate => cum.get(i - ESTIMATE_LAG - 1) ?? calEst;
    const dispatch = (i: number): void => {
      const config = campaignRunConfig(o, i);
      const fine = config.strategy === 'pct' || config.strategy === 'pos';
      const task: HuntTask = { type: 'run', prep: spec, config, run: i, stepEstimate: fine ? estimateFor(i) : undefined, record: false };
      const p: Promise<void> = pool.run(task).then(
        (r) => { done.set(i, r); },
        (e: unknown) => {
          if (e instanceof HuntLost) { lost ??= e.message; return; }
          if (o.interrupt.requested || failure !== null) return;
          const msg = (e as Error).message;
          // Files edited during the campaign are the user's to fix (one line, exit 2); anything else is a bug.
          failure = msg.endsWith('changed on disk during the campaign') ? new UserError(`vcpulab hunt: ${msg}`)
            : new Error(`run ${i} (${config.strategy}, seed ${config.seed}): ${msg}`);
        },
      ).finally(() => { inflight.delete(p); });
      inflight.add(p);
    };
    const merge = (r: TaskResult): void => {
      const config = campaignRunConfig(o, r.run);
      perStrategy[config.strategy].runs++;
      for (const h of r.signatures) {
        let row = rows.get(h.signature);
        if (row === undefined) {
          if (rows.size >= MAX_SIGNATURES) { dropped++; continue; }
          row = { kind: h.kind, cause: h.cause, signature: h.signature, hits: 0, first: { run: r.run, strategy: config.strategy, seed: config.seed },
            detail: h.detail, schedule: null, shrunk: null };
          rows.set(h.signature, row);
        }
        row.hits++;
        const b = best.get(h.signature), pre = r.stats?.preemptions ?? 0;
        if (b === undefined || pre < b.preemptions || (pre === b.preemptions && r.steps < b.steps)) {
          best.set(h.signature, { run: r.run, preemptions: pre, steps: r.steps, est: r.stepEstimate });
        }
        const fh = perStrategy[config.strategy].first_hit;
        if (fh[h.signature] === undefined) fh[h.signature] = r.run;
        if (o.until !== undefined && stopAt === Infinity && untilMatches(o.until, h.signature, h.kind, h.cause)) stopAt = r.run + 1;
      }
      const prev = cum.get(r.run - 1) ?? calEst;
      const grow = FINE_STRATEGIES.has(config.strategy) && r.stats !== null;
      cum.set(r.run, grow ? { choice: Math.max(prev.choice, r.stats?.choiceSteps ?? 0), device: Math.max(prev.device, r.stats?.deviceSteps ?? 0) } : prev);
      cum.delete(r.run - ESTIMATE_LAG - window - 2);
    };
    const mergeInOrder = (): void => {
      while (done.has(mergedRuns)) {
        const r = done.get(mergedRuns) as TaskResult;
        done.delete(mergedRuns);
        if (mergedRuns < stopAt) merge(r);
        mergedRuns++;
      }
    };
    const tRuns = performance.now();
    for (;;) {
      const timeUp = o.timeMs > 0 && performance.now() - t0 > o.timeMs;
      if (o.interrupt.requested) stopped = 'interrupted';
      else if (lost !== undefined) stopped = 'lost';
      else if (timeUp && next < o.runs && next < stopAt) stopped = 'time';
      while (stopped === null && failure === null && inflight.size < window && next < o.runs && next < stopAt && next - ESTIMATE_LAG <= mergedRuns) dispatch(next++);
      if (inflight.size === 0 || stopped === 'interrupted' || stopped === 'lost' || failure !== null) break;
      await Promise.race(inflight);
      mergeInOrder();
      const el = (performance.now() - tRuns) / 1000;
      o.onProgress?.({ phase: 'runs', done: Math.min(mergedRuns, stopAt), total: Math.min(o.runs, stopAt), runsPerS: el > 0 ? mergedRuns / el : 0, signatures: rows.size,
        machines: pool.machines?.() });
    }
    if (failure !== null) throw failure as Error;
    if (stopped === 'interrupted' || stopped === 'lost') {
      // Partial results: whatever finished, in run order, gaps and all.
      for (const i of [...done.keys()].sort((a, b) => a - b)) if (i < stopAt) { merge(done.get(i) as TaskResult); mergedRuns++; }
    } else {
      mergeInOrder();
      if (stopAt !== Infinity) { stopped = 'until'; mergedRuns = stopAt; }
    }
    const runsWall = performance.now() - tRuns;
    const ordered = [...rows.values()].sort((a, b) => a.first.run - b.first.run || (a.signature < b.signature ? -1 : 1));
    if (o.shrink && o.out !== null && stopped !== 'interrupted' && stopped !== 'lost') {
      let k = 0;
      // With --until, what the user is after is the matching signatures: only those are shrunk and kept.
      const wanted = ordered.filter((x) => (o.shrinkOnly === undefined || x.signature === o.shrinkOnly) &&
        (o.until === undefined || untilMatches(o.until, x.signature, x.kind, x.cause)));
      for (const row of wanted) {
        if (o.interrupt.requested) { stopped = 'interrupted'; break; }
        const b = best.get(row.signature) as { run: number; preemptions: number; est: StepEstimate | undefined };
        try {
          await shrinkRow(pool, spec, o, row, b, calEst, prep.hash);
        } catch (e) {
          if (!(e instanceof HuntLost)) throw e;
          stopped = 'lost'; lost = e.message;
          break;
        }
        o.onProgress?.({ phase: 'shrink', done: ++k, total: wanted.length, runsPerS: 0, signatures: rows.size });
      }
    }
    const wall = performance.now() - t0;
    return {
      hunt: {
        scenario: o.scenario, strategies: o.strategies, runs: mergedRuns, workers: pool.workers(), wall_ms: Math.round(wall),
        runs_per_s: runsWall > 0 ? Math.round((mergedRuns / (runsWall / 1000)) * 100) / 100 : 0, seed: o.seed, scenario_hash: prep.hash,
        stopped, signatures_dropped: dropped,
        ...(lost !== undefined ? { lost } : {}),
        ...(pool.describe !== undefined ? { queue: pool.describe() } : {}),
      },
      signatures: ordered,
      per_strategy: perStrategy,
    };
  } finally {
    await pool.destroy();
  }
}

/** A hit with more preemptions than this makes shrinking look for a simpler witness first. */
export const WITNESS_PREEMPTIONS = 2;
/** pct runs the witness search may spend (they count in the shrink budget). */
export const WITNESS_RUNS = 32;

/**
 * Shrink one signature: re-run the chosen hit with recording, shrink its tape on the pool, write the file.
 * Removing a preemption changes everything after it, so a tape with thousands of them (the `preempt`
 * strategy's) rarely shrinks to a handful. When the best hit has more than WITNESS_PREEMPTIONS, a few pct
 * runs (depth 3: at most two change points) with seeds derived from the campaign seed and the signature
 * look for a witness that needs fewer; the first that shows the signature with fewer preemptions is
 * shrunk instead. Deterministic: the seeds, the order and the estimate (the calibration run's) are fixed.
 */
async function shrinkRow(pool: HuntExecutor, spec: PrepSpec, o: HuntOptions, row: SignatureRow,
  hit: { run: number; preemptions: number; est: StepEstimate | undefined }, calEst: StepEstimate, hash: string): Promise<void> {
  let config = campaignRunConfig(o, hit.run), est = hit.est, from: { run: number | null; strategy: string; seed: number } = { run: hit.run, strategy: config.strategy, seed: config.seed };
  let spent = 0;
  if (hit.preemptions > WITNESS_PREEMPTIONS) {
    for (let j = 0; j < WITNESS_RUNS && spent < o.shrinkBudget; j += PROBES) {
      const cfgs = Array.from({ length: Math.min(PROBES, WITNESS_RUNS - j) }, (_, q): RunConfig =>
        ({ ...campaignRunConfig(o, hit.run), strategy: 'pct', pctDepth: 3, seed: childSeed(o.seed, `witness:${row.signature}:${j + q}`) }));
      spent += cfgs.length;
      const rs = await Promise.all(cfgs.map((c) => pool.run({ type: 'run', prep: spec, config: c, run: hit.run, record: false, stepEstimate: calEst } satisfies HuntTask)));
      const k = rs.findIndex((r) => r.signatures.some((x) => x.signature === row.signature) && (r.stats?.preemptions ?? Infinity) < hit.preemptions);
      if (k >= 0) { config = cfgs[k]; est = calEst; from = { run: null, strategy: 'pct', seed: cfgs[k].seed }; break; }
    }
  }
  const run = from.run ?? hit.run;
  // Re-run the chosen witness exactly (with the estimate it ran with), this time keeping its tape.
  const rec = await pool.run({ type: 'run', prep: spec, config, run, record: true, stepEstimate: est } satisfies HuntTask);
  if (rec.tape === undefined || !rec.signatures.some((s) => s.signature === row.signature)) {
    bug(`run ${run} (${config.strategy}, seed ${config.seed}) did not reproduce ${row.signature} when re-run with recording`);
  }
  const test = async (tapes: Int32Array[]): Promise<(string | null)[]> => {
    const rs = await Promise.all(tapes.map((tape) => pool.run({ type: 'replay', prep: spec, config, run, tape, mode: 'guided' } satisfies HuntTask)));
    return rs.map((r) => (r.signatures.some((s) => s.signature === row.signature) ? r.digest : null));
  };
  // The recorded tape replays exactly; its guided replay is the same run (every entry is possible).
  const s = await shrinkTape(rec.tape, rec.digest, test, Math.max(0, o.shrinkBudget - spent));
  const file = join(o.out as string, `${row.signature}.schedule`);
  writeScheduleFile(file, { header: scheduleHeader(config, hash, s.digest, 'guided', row.signature), tape: s.tape });
  row.schedule = file;
  row.shrunk = { from, steps_before: s.before.steps, steps_after: s.after.steps, preemptions_before: s.before.preemptions, preemptions_after: s.after.preemptions, replays: s.tries + spent };
}
