// Credit2-like ordering (xen-sched-ipi.md §1.1-1.2), selected with `[machine] scheduler = "credit2"`.
// Modelled: every vCPU starts with CREDIT_INIT (10 ms) and burns 1 credit per cycle it runs (all weights
// equal); the runnable vCPU with the most credit runs next, the running one keeps the pCPU while it has
// more credit than any waiter; when the vCPU chosen has no credit left, every vCPU of that runqueue gets
// CREDIT_INIT more (twice that if it sat at CREDIT_MIN), clipped to CREDIT_INIT + CARRYOVER_MAX; the run
// time is the credit lead over the best waiter, clamped to [max(MIN_TIMER, ratelimit), MAX_TIMER].
// Not modelled: weights and caps, per-socket runqueues (here one per pCPU), load-average balancing (the
// placement and idle pull of sched.ts are used instead), tickling a busy pCPU on wake-up.
import { RS_RUNNABLE, VCPU_STRIDE_WORDS, VC_CREDIT, VC_PAUSE_COUNT, VC_PCPU, VC_QUEUE_SEQ, VC_RUNSTATE } from '../../../shared/vcpu.js';
import { nsToCycles } from '../../hw/clock.js';
import type { Machine } from '../../machine.js';

export const CREDIT_INIT = nsToCycles(10_000_000);
export const CREDIT_MIN = -CREDIT_INIT;
export const CARRYOVER_MAX = nsToCycles(500_000);
export const MIN_TIMER = nsToCycles(500_000);
export const MAX_TIMER = CREDIT_INIT;
/** Xen's sched_ratelimit_us default. */
export const RATELIMIT_US_DEFAULT = 1000;

/** The runnable vCPU queued on pCPU p with the most credit (ties: longest waiting), excluding `not`. */
export function credit2Best(m: Machine, p: number, not: number): number {
  const vc32 = m.vc32;
  let best = -1, bestCredit = 0, bestSeq = 0;
  for (let v = 0; v < m.nvcpus; v++) {
    if (v === not) continue;
    const b = v * VCPU_STRIDE_WORDS;
    if (Atomics.load(vc32, b + VC_RUNSTATE) !== RS_RUNNABLE || Atomics.load(vc32, b + VC_PCPU) !== p) continue;
    if (Atomics.load(vc32, b + VC_PAUSE_COUNT) !== 0) continue;
    const cr = Atomics.load(vc32, b + VC_CREDIT), seq = Atomics.load(vc32, b + VC_QUEUE_SEQ);
    if (best < 0 || cr > bestCredit || (cr === bestCredit && seq - bestSeq < 0)) { best = v; bestCredit = cr; bestSeq = seq; }
  }
  return best;
}

export function credit2Of(m: Machine, v: number): number {
  return Atomics.load(m.vc32, v * VCPU_STRIDE_WORDS + VC_CREDIT);
}

/** Burn `cycles` of credit for v (it ran that long), never below CREDIT_MIN. */
export function credit2Burn(m: Machine, v: number, cycles: number): void {
  const w = v * VCPU_STRIDE_WORDS + VC_CREDIT;
  const left = Atomics.sub(m.vc32, w, cycles | 0) - (cycles | 0);
  if (left < CREDIT_MIN) Atomics.store(m.vc32, w, CREDIT_MIN);
}

/** reset_credit: every vCPU on pCPU p's runqueue gains CREDIT_INIT (x2 if `chosen` sat at CREDIT_MIN). */
export function credit2Reset(m: Machine, p: number, chosen: number): void {
  const add = credit2Of(m, chosen) <= CREDIT_MIN ? 2 * CREDIT_INIT : CREDIT_INIT;
  for (let v = 0; v < m.nvcpus; v++) {
    const b = v * VCPU_STRIDE_WORDS;
    if (Atomics.load(m.vc32, b + VC_PCPU) !== p) continue;
    const cr = Math.min(Atomics.load(m.vc32, b + VC_CREDIT) + add, CREDIT_INIT + CARRYOVER_MAX);
    Atomics.store(m.vc32, b + VC_CREDIT, cr);
  }
}

/** csched2_runtime: how long v may run before the next decision. */
export function credit2Runtime(m: Machine, p: number, v: number, ratelimitCycles: number): number {
  const waiter = credit2Best(m, p, v);
  const own = credit2Of(m, v);
  let rt = own;
  if (waiter >= 0) {
    const theirs = credit2Of(m, waiter);
    if (theirs > 0) rt = own - theirs;
  }
  return Math.min(MAX_TIMER, Math.max(rt, MIN_TIMER, ratelimitCycles));
}

