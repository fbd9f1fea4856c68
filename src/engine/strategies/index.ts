// Serial-engine strategies: which eligible participant takes the next step. All randomness comes from a
// seeded PRNG owned by the strategy (a child seed of the run seed), so a seed fixes the schedule.
// Participants are pCPUs 0..n-1, then vm_event agents n, n+1, ... (serial.ts). Every choice the run
// makes is one tape entry (participant, signed shared accesses), so recording, exact and guided replay,
// PCT, POS and shrinking are one mechanism (STYLE.md §16).
import { UserError } from '../../errors.js';
import type { StepEstimate } from '../common.js';
import { Prng, childSeed } from '../../prng.js';
import { PctStrategy } from './pct.js';
import { PosStrategy } from './pos.js';

export { Prng, childSeed } from '../../prng.js';
export { PCT_DEPTH_DEFAULT, PctStrategy, STEP_ESTIMATE_DEFAULT } from './pct.js';
export { PosStrategy } from './pos.js';

export interface Strategy {
  readonly name: string;
  /**
   * Choose one of eligible[0..count) (ascending) for the next step, and in `shared` how many guest-memory
   * accesses it makes before the next choice point (>= 1). A negative `shared` (-n) also preempts: the
   * step starts with a scheduler timer interrupt on that pCPU (its vCPU leaves if another is waiting).
   * The sign travels in schedule files unchanged, so replays reproduce preemptions too.
   */
  next(eligible: Int32Array, count: number): number;
  readonly shared: number;
  /**
   * Feedback after participant `p`'s step (SerialStats): `lapic`, the guest accessed a LAPIC register in
   * it (with one shared access per step, the step ended on that access); `device`, it did and a timer
   * interrupt now would take the vCPU off the pCPU. Called once per step, on the hot path: implementations
   * must not allocate.
   */
  after(p: number, lapic: boolean, device: boolean): void;
}

/**
 * Uniform random pCPU for a uniform random run of 1..maxRun shared accesses. Runs longer than 1 keep
 * steps (and schedule files) few; every access is still a point where the schedule could switch.
 */
export class RandomStrategy implements Strategy {
  readonly name = 'random';
  private readonly rng: Prng;
  shared = 1;
  constructor(seed: number, private readonly maxRun = 32) { this.rng = new Prng(childSeed(seed, 'strategy.random')); }
  next(eligible: Int32Array, count: number): number {
    const p = eligible[this.rng.below(count)];
    this.shared = 1 + this.rng.below(this.maxRun);
    return p;
  }
  after(): void {}
}

/**
 * `random`, plus preemption at a random 1 in `odds` of the choice points: the chosen pCPU takes a scheduler
 * timer interrupt before its step. Time slices end only every few hundred thousand cycles, so races that
 * need a vCPU to leave its pCPU between two adjacent instructions (the ICR_HI -> ICR_LO window) are this
 * strategy's to find.
 */
export class PreemptStrategy implements Strategy {
  readonly name = 'preempt';
  private readonly rng: Prng;
  shared = 1;
  constructor(seed: number, private readonly maxRun = 32, private readonly odds = 8) { this.rng = new Prng(childSeed(seed, 'strategy.preempt')); }
  next(eligible: Int32Array, count: number): number {
    const p = eligible[this.rng.below(count)];
    const run = 1 + this.rng.below(this.maxRun);
    this.shared = this.rng.below(this.odds) === 0 ? -run : run;
    return p;
  }
  after(): void {}
}

/** Each eligible pCPU in turn, `quantum` steps each. */
export class RoundRobinStrategy implements Strategy {
  readonly name = 'round-robin';
  private last = -1;
  readonly shared: number;
  constructor(quantum = 1) { this.shared = quantum; }
  next(eligible: Int32Array, count: number): number {
    let pick = eligible[0];
    for (let i = 0; i < count; i++) if (eligible[i] > this.last) { pick = eligible[i]; break; }
    this.last = pick;
    return pick;
  }
  after(): void {}
}

/** Replays a recorded schedule. Diverging from it is a bug, not bad input. */
export class ReplayStrategy implements Strategy {
  readonly name = 'replay';
  private i = 0;
  shared = 1;
  constructor(private readonly runs: Int32Array) {}
  get exhausted(): boolean { return this.i >= this.runs.length; }
  next(eligible: Int32Array, count: number): number {
    if (this.i >= this.runs.length) throw new ScheduleDiverged('the schedule ended before the run did');
    const p = this.runs[this.i];
    this.shared = this.runs[this.i + 1];
    let ok = false;
    for (let k = 0; k < count; k++) if (eligible[k] === p) ok = true;
    if (!ok) throw new ScheduleDiverged(`the schedule chose pCPU ${p}, which is not eligible here (step ${this.i / 2})`);
    this.i += 2;
    return p;
  }
  after(): void {}
}

export class ScheduleDiverged extends Error {}

/**
 * Follows a tape as closely as this run allows, for shrinking (DESIGN.md §8): a candidate tape (entries
 * removed, preemptions dropped) must still give a complete run whose signature can be compared. An entry
 * naming a participant that is not eligible here goes to the first eligible one at or after it (wrapping);
 * when the tape runs out, the run finishes with a fixed tail: round-robin, one shared access per step,
 * no preemption. Nothing is random, so the same tape always gives the same run. A preempting entry on an
 * agent, or on a pCPU with no vCPU loaded, does nothing (Pcpu.preempt).
 */
export class GuidedReplayStrategy implements Strategy {
  readonly name = 'guided-replay';
  private i = 0;
  private last = -1;
  shared = 1;
  constructor(private readonly runs: Int32Array) {}
  /** Tape entries used so far (a shrinker can cut the tape there). */
  get consumed(): number { return this.i >> 1; }
  next(eligible: Int32Array, count: number): number {
    let p: number;
    if (this.i + 1 < this.runs.length) {
      const want = this.runs[this.i];
      const sh = this.runs[this.i + 1];
      this.i += 2;
      p = eligible[0];
      for (let k = 0; k < count; k++) if (eligible[k] >= want) { p = eligible[k]; break; }
      this.shared = sh === 0 ? 1 : sh;
    } else {
      p = eligible[0];
      for (let k = 0; k < count; k++) if (eligible[k] > this.last) { p = eligible[k]; break; }
      this.shared = 1;
    }
    this.last = p;
    return p;
  }
  after(): void {}
}

/**
 * Records the schedule as runs of (pCPU, shared accesses): one run per step, so a replay reproduces
 * every step boundary (where the hypervisor checks slices and pending work), not only the order.
 */
export class ScheduleRecorder {
  private buf = new Int32Array(1024);
  private n = 0;
  record(p: number, shared: number): void {
    if (this.n + 2 > this.buf.length) { const b = new Int32Array(this.buf.length * 2); b.set(this.buf); this.buf = b; }
    this.buf[this.n++] = p;
    this.buf[this.n++] = shared;
  }
  runs(): Int32Array { return this.buf.slice(0, this.n); }
}

export const STRATEGIES = ['random', 'round-robin', 'preempt', 'pct', 'pos'] as const;
export type StrategyName = (typeof STRATEGIES)[number];

export interface StrategyOptions {
  /** pct: bug depth d, >= 1 (d - 1 change points). */
  pctDepth?: number;
  /** pct: how many choice and device steps the run has (where change points may fall). */
  stepEstimate?: StepEstimate;
  /** Participants (pCPUs, then agents): pct and pos size their priority tables by it. */
  participants?: number;
}

export function makeStrategy(name: string, seed: number, opts: StrategyOptions = {}): Strategy {
  if (name === 'random') return new RandomStrategy(seed);
  if (name === 'round-robin') return new RoundRobinStrategy();
  if (name === 'preempt') return new PreemptStrategy(seed);
  if (name === 'pct') return new PctStrategy(seed, opts.participants ?? PARTICIPANTS_DEFAULT, opts.pctDepth, opts.stepEstimate);
  if (name === 'pos') return new PosStrategy(seed, opts.participants ?? PARTICIPANTS_DEFAULT);
  throw new UserError(`--strategy: unknown strategy '${name}' (expected ${STRATEGIES.join(', ')})`);
}

/** Priority table size when the caller does not say (the most pCPUs a machine has, plus room for agents). */
const PARTICIPANTS_DEFAULT = 256 + 16;
