// Serial-engine strategies: which eligible pCPU takes the next step. All randomness comes from a
// seeded PRNG owned by the strategy (a child seed of the run seed), so a seed fixes the schedule.
import { UserError } from '../../errors.js';

export interface Strategy {
  readonly name: string;
  /**
   * Choose one of eligible[0..count) for the next step, and in `shared` how many guest-memory
   * accesses it makes before the next choice point (>= 1). A negative `shared` (-n) also preempts: the
   * step starts with a scheduler timer interrupt on that pCPU (its vCPU leaves if another is waiting).
   * The sign travels in schedule files unchanged, so replays reproduce preemptions too.
   */
  next(eligible: Int32Array, count: number): number;
  readonly shared: number;
}

/** SplitMix32-style generator: tiny, fast, and good enough for schedule choices. */
export class Prng {
  private s: number;
  constructor(seed: number) { this.s = seed | 0; }
  nextU32(): number { return this.nextI32() >>> 0; }
  /** The same 32 bits as nextU32, as an int32. */
  nextI32(): number {
    let z = (this.s = (this.s + 0x9e3779b9) | 0);
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return z ^ (z >>> 16);
  }
  /**
   * nextU32() % n, for n >= 1. For n < 2^15 it is computed as ((hi % n) * 2^16 + lo) % n over the two
   * 16-bit halves, which stays in int32 arithmetic: a uint32 at or above 2^31 would make V8 take a
   * floating-point remainder (a runtime call), and the serial engine draws twice per step.
   */
  below(n: number): number {
    if (n >= 0x8000) return this.nextU32() % n;
    const z = this.nextI32();
    return ((((z >>> 16) % n) << 16) + (z & 0xffff)) % n;
  }
}

/** Derive a child seed for a named component (STYLE.md §10): new randomness elsewhere won't shift it. */
export function childSeed(seed: number, component: string): number {
  let h = (seed ^ 0x811c9dc5) >>> 0;
  for (let i = 0; i < component.length; i++) h = Math.imul(h ^ component.charCodeAt(i), 0x01000193) >>> 0;
  return h;
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
}

export class ScheduleDiverged extends Error {}

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

export const STRATEGIES = ['random', 'round-robin', 'preempt'] as const;
export type StrategyName = (typeof STRATEGIES)[number];

export function makeStrategy(name: string, seed: number): Strategy {
  if (name === 'random') return new RandomStrategy(seed);
  if (name === 'round-robin') return new RoundRobinStrategy();
  if (name === 'preempt') return new PreemptStrategy(seed);
  throw new UserError(`--strategy: unknown strategy '${name}' (expected ${STRATEGIES.join(', ')})`);
}
