// POS, partial order sampling (Yuan, Yang, Gu, "Partial Order Aware Concurrency Sampling", CAV 2018),
// over the serial engine's participants. Each participant's pending event (its next step, one shared
// access long: `shared` = 1) has a random priority; the eligible participant with the highest priority
// runs. After it runs, its next step is a new event and gets a fresh priority (BasicPOS), and every
// pending event that races with the step just executed gets a fresh priority too (POS): that is what
// makes each order of two racing events about equally likely, instead of favouring whichever
// participant happens to keep winning.
//
// The race relation. The paper has each event's address; this engine sees a step only after it ran,
// and only this much of it: whether it was a LAPIC step (it accessed a LAPIC register) and whether a
// timer interrupt now would take the vCPU off its pCPU (a device step, SerialStats). So:
// - A pCPU whose step was a device step has a pending timer-interrupt event, with its own random
//   priority, which races with that pCPU's next step: both change what its LAPIC does next (a timer
//   interrupt takes the vCPU out, the scheduler puts another vCPU there or moves this one, and the
//   hypervisor may use the LAPIC itself). When that pCPU is chosen, the timer event runs first if its
//   priority beats the step's: the step starts with a preemption (a negative tape entry). Either way
//   the event is then gone; the next device step makes a new one. After a LAPIC step where no other
//   vCPU waits for the pCPU, a timer interrupt would change nothing, so there is no such event.
// - The steps of two participants race when the last steps of both were LAPIC steps: both are talking
//   to the interrupt controllers (an ICR_HI write and the ICR_LO write after it on one pCPU, an ICR
//   write on another). After a LAPIC step of p, the pending step of every other participant whose last
//   step was a LAPIC step gets a fresh priority.
// Steps on plain memory are not treated as racing each other: BasicPOS re-randomizes them one by one.
import type { Strategy } from './index.js';
import { Prng, childSeed } from '../../prng.js';

export class PosStrategy implements Strategy {
  readonly name = 'pos';
  shared = 1;
  private readonly rng: Prng;
  /** Priority of each participant's pending step (uint32; the higher runs). */
  private readonly prio: Float64Array;
  /** Priority of each pCPU's pending timer-interrupt event, -1 when it has none. */
  private readonly timer: Float64Array;
  /** The participant's last step was a LAPIC step. */
  private readonly lastLapic: Uint8Array;
  /** Participants whose last step was a LAPIC step (a small set, kept dense). */
  private readonly devList: Int32Array;
  private devCount = 0;

  constructor(seed: number, participants: number) {
    this.rng = new Prng(childSeed(seed, 'strategy.pos'));
    this.prio = new Float64Array(participants);
    this.timer = new Float64Array(participants).fill(-1);
    this.lastLapic = new Uint8Array(participants);
    this.devList = new Int32Array(participants);
    for (let j = 0; j < participants; j++) this.prio[j] = this.rng.nextU32();
  }

  next(eligible: Int32Array, count: number): number {
    const prio = this.prio;
    let best = eligible[0], bp = prio[best];
    for (let j = 1; j < count; j++) {
      const q = eligible[j];
      if (prio[q] > bp) { best = q; bp = prio[q]; }
    }
    const t = this.timer[best];
    this.shared = t > bp ? -1 : 1;
    this.timer[best] = -1;
    return best;
  }

  after(p: number, lapic: boolean, device: boolean): void {
    const rng = this.rng;
    this.prio[p] = rng.nextU32();
    if (device) this.timer[p] = rng.nextU32();
    if (lapic) {
      const list = this.devList;
      for (let j = 0; j < this.devCount; j++) if (list[j] !== p) this.prio[list[j]] = rng.nextU32();
      if (this.lastLapic[p] === 0) { this.lastLapic[p] = 1; list[this.devCount++] = p; }
    } else if (this.lastLapic[p] !== 0) {
      this.lastLapic[p] = 0;
      const list = this.devList;
      for (let j = 0; j < this.devCount; j++) if (list[j] === p) { list[j] = list[--this.devCount]; break; }
    }
  }
}
