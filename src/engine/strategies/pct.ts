// PCT, probabilistic concurrency testing (Burckhardt, Kothari, Musuvathi, Nagarakatte, "A Randomized
// Scheduler with Probabilistic Guarantees of Finding Bugs", ASPLOS 2010), over the serial engine's
// participants. What the paper's scheduler keeps, and little else: one priority per participant, the
// change points, two step counters, and per participant how long it has waited (for yields, below).
//
// - Every participant gets a distinct random initial priority d .. d+P-1. Each step runs the eligible
//   participant with the highest priority, for one shared access (`shared` = 1): every guest-memory
//   access is a point where the schedule can switch.
// - d-1 change points. A coin from the seed makes each one either
//   (a) a priority change: placed uniformly among the `choice` steps of the estimate (steps where more
//       than one participant was eligible; steps with one eligible participant are not counted, as the
//       paper's §4.1 says of sequential stretches). At change point i the participant chosen at that
//       step takes it, then drops to priority i, below every initial one; or
//   (b) a preemption: placed uniformly among the `device` steps of the estimate. That pCPU's next step
//       starts with a scheduler timer interrupt (a negative tape entry). A timer interrupt is the
//       hypervisor's other scheduling event, beside the order of shared accesses: the vCPU exits, the
//       scheduler runs and may put another vCPU on the pCPU or move this one. Between two LAPIC writes
//       is where that changes what the APIC does next: the window between a guest's ICR_HI and ICR_LO
//       writes, in which another vCPU or the hypervisor can rewrite ICR_HI, or the vCPU can move to a
//       LAPIC whose ICR_HI someone else wrote. A device step is a step that ended on a LAPIC register
//       access *and* after which a timer interrupt would take the vCPU off the pCPU (Pcpu.preemptSwitches);
//       where no other vCPU waits for the pCPU, or its slice is over anyway, the interrupt would change
//       nothing. That is the paper's §4.1 applied to preemptions, as choice steps apply it to priority
//       changes: a change point where nothing can change is not placed. On secure-realm it roughly
//       halves k_dev and triples the runs that reach the ICR window (depth 3, the estimate each run's
//       own: 7 of 100 seeds counting every LAPIC step, 20 of 100 counting device steps).
// - Change points are drawn once, from the estimate, before the run: a change point past the end of a
//   shorter run is never reached (the paper's k is an upper bound; a hunt grows its estimate).
//
// - Yield. The paper's enabled threads all make progress; here a participant can stay eligible without
//   any: a vm_event agent whose response waits for a vCPU to leave its pCPU, or a guest spinning on a
//   flag that only an agent (which has no clock, so lax sync does not hold the pCPU back) will set. At
//   the top priority either would run forever, and two spinning pCPUs take turns within the slack and
//   starve the rest. So when an eligible participant has been passed over for SPIN_STEPS choice steps,
//   the one chosen instead yields, as Shuttle and CHESS treat a yielding thread: it drops below every
//   priority so far (one yield per step, until the starved participant is the highest). Under lax sync
//   a pCPU is passed over for at most the slack's worth of another's steps, far fewer than SPIN_STEPS.
//
// Simplified: the paper's guarantee (probability >= 1/(n k^(d-1)) for a bug of depth d) assumes every
// step is a choice point; under lax synchronisation a participant more than the slack ahead is not
// eligible, so the highest-priority one runs until it is that far ahead and the next one takes over.
import { bug } from '../../errors.js';
import type { StepEstimate } from '../common.js';
import type { Strategy } from './index.js';
import { Prng, childSeed } from '../../prng.js';

/** Bug depth d when none is given: two change points. */
export const PCT_DEPTH_DEFAULT = 3;

/**
 * Where change points may fall when the caller has no estimate of the run. Measured on the built-in
 * scenarios under pct itself (seeds 1..6): secure-realm and its variants have 450k-700k choice steps and
 * 400-850 device steps, the ipi-* and posted/avic/ipiv ones 20k-550k and 500-1100, counter 1.8M and
 * none, xen-access up to 260k and none. The defaults sit at the short end, so that a run without an
 * estimate reaches its change points (early in long runs); a hunt measures and grows them.
 */
export const STEP_ESTIMATE_DEFAULT: Readonly<StepEstimate> = { choice: 50_000, device: 500 };

/** Choice steps an eligible participant may be passed over before the one chosen instead yields. */
export const SPIN_STEPS = 1 << 17;

/** Sentinel past every step count: no more change points of that kind. */
const NEVER = 0x7fffffff;

export class PctStrategy implements Strategy {
  readonly name = 'pct';
  shared = 1;
  /** Priority per participant; the higher runs. Initial ones are d.., change point i sets i (1..d-1). */
  private readonly prio: Int32Array;
  /** pCPUs whose next step starts with a timer interrupt (a preemption change point was reached). */
  private readonly preemptNext: Uint8Array;
  /** Change points of kind (a), ascending by position, each with its priority i; and kind (b). */
  private readonly choiceAt: Int32Array;
  private readonly choiceTo: Int32Array;
  private readonly deviceAt: Int32Array;
  private ci = 0;
  private di = 0;
  /** Choice and device steps so far (the positions change points are placed among). */
  private choices = 0;
  private devices = 0;
  /** Per participant, choice steps it was eligible and not chosen since it last ran; next yield priority. */
  private readonly passed: Int32Array;
  private yieldPrio = 0;

  constructor(seed: number, participants: number, depth = PCT_DEPTH_DEFAULT, estimate: StepEstimate = STEP_ESTIMATE_DEFAULT) {
    // Callers check --pct-depth and schedule headers (bad input gets one line there): here it is a bug.
    if (!Number.isInteger(depth) || depth < 1) bug(`pct depth ${depth} reached the strategy (must be an integer >= 1)`);
    const rng = new Prng(childSeed(seed, 'strategy.pct'));
    this.prio = new Int32Array(participants);
    this.preemptNext = new Uint8Array(participants);
    this.passed = new Int32Array(participants);
    // Distinct initial priorities: a random permutation of d .. d+P-1 (Fisher-Yates).
    for (let j = 0; j < participants; j++) this.prio[j] = depth + j;
    for (let j = participants - 1; j > 0; j--) {
      const r = rng.below(j + 1);
      const t = this.prio[j]; this.prio[j] = this.prio[r]; this.prio[r] = t;
    }
    const k = Math.max(0, Math.floor(estimate.choice)), kDev = Math.max(0, Math.floor(estimate.device));
    const choice: [number, number][] = [], device: number[] = [];
    for (let i = 1; i < depth; i++) {
      // The coin is drawn for every change point (even where one kind has no room), so that one seed
      // keeps the same coins whatever the estimate.
      const coin = rng.below(2);
      const preempt = kDev > device.length && (coin === 1 || k <= choice.length);
      if (preempt) device.push(distinctBelow(rng, kDev, device));
      else if (k > choice.length) choice.push([distinctBelow(rng, k, choice.map((c) => c[0])), i]);
    }
    choice.sort((x, y) => x[0] - y[0]);
    device.sort((x, y) => x - y);
    this.choiceAt = Int32Array.from([...choice.map((c) => c[0]), NEVER]);
    this.choiceTo = Int32Array.from([...choice.map((c) => c[1]), 0]);
    this.deviceAt = Int32Array.from([...device, NEVER]);
  }

  /** The change points drawn, for tests and reports: [position, priority] of kind (a), positions of (b). */
  get changePoints(): { choice: [number, number][]; device: number[] } {
    const choice: [number, number][] = [];
    for (let j = 0; j < this.choiceAt.length - 1; j++) choice.push([this.choiceAt[j], this.choiceTo[j]]);
    return { choice, device: Array.from(this.deviceAt.subarray(0, this.deviceAt.length - 1)) };
  }

  next(eligible: Int32Array, count: number): number {
    const prio = this.prio;
    let best = highest(prio, eligible, count);
    if (count > 1) {
      const passed = this.passed;
      let starved = false;
      for (let j = 0; j < count; j++) if (++passed[eligible[j]] > SPIN_STEPS) starved = true;
      if (starved && passed[best] <= SPIN_STEPS) {
        prio[best] = this.yieldPrio--; // yield: someone eligible has waited too long behind it
        best = highest(prio, eligible, count);
      }
      // Change point (a): the chosen participant takes this step, then ranks below every initial priority.
      if (this.choices++ === this.choiceAt[this.ci]) { prio[best] = this.choiceTo[this.ci]; this.ci++; }
    }
    this.passed[best] = 0;
    if (this.preemptNext[best] !== 0) {
      this.preemptNext[best] = 0;
      this.shared = -1;
    } else this.shared = 1;
    return best;
  }

  after(p: number, _lapic: boolean, device: boolean): void {
    // Change point (b): the timer interrupt lands between this LAPIC access and the pCPU's next step.
    if (device && this.devices++ === this.deviceAt[this.di]) { this.preemptNext[p] = 1; this.di++; }
  }
}

/** The eligible participant with the highest priority (eligible[0..count), count >= 1). */
function highest(prio: Int32Array, eligible: Int32Array, count: number): number {
  let best = eligible[0], bp = prio[best];
  for (let j = 1; j < count; j++) {
    const q = eligible[j];
    if (prio[q] > bp) { best = q; bp = prio[q]; }
  }
  return best;
}

/** A uniform draw from [0, n) not in `taken` (n > taken.length). */
function distinctBelow(rng: Prng, n: number, taken: number[]): number {
  for (;;) {
    const x = rng.below(n);
    if (!taken.includes(x)) return x;
  }
}
