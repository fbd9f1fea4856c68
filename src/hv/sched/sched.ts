// vCPU scheduling shared by every pCPU: placement, claiming, migration, blocking and wake-up.
//
// State lives in the vCPU blocks, so both engines (and every thread) see one truth:
//   VC_PCPU      the pCPU whose runqueue the vCPU is on (Xen's v->processor);
//   VC_RUNSTATE  RUNNABLE / RUNNING / BLOCKED / ...
// A pCPU runs a vCPU only after winning compareExchange(RUNNABLE -> RUNNING), so two pCPUs can never run
// the same vCPU, whatever the interleaving; and only through schedClaim, which closes the race with a
// pauser (vcpu_pause must not return while a claim that read pause_count = 0 is still landing). Only
// the pCPU that runs a vCPU changes its VC_PCPU (when it deschedules it, or right after stealing it),
// which is Xen's rule that a unit migrates only once its context is saved (../shared/reference/xen-sched-ipi.md §1.4).
//
// Policy (a simplification of credit2, §1.2-1.6): longest-waiting first among the vCPUs on this pCPU's
// runqueue, with a fixed time slice; with migration on, a descheduled vCPU moves to the least-loaded pCPU of its
// hard affinity (ties keep it where it is), and an idle pCPU pulls a runnable vCPU waiting behind a
// busy one. Wake-up places the vCPU on the pCPU it last ran on and tickles that pCPU (§1.6, no res_pick
// at wake-up).
import { assert } from '../../errors.js';
import {
  RS_BLOCKED, RS_RUNNABLE, RS_RUNNING, VCPU_STRIDE_WORDS, VC_AFFINITY, VC_AFFINITY_WORDS, VC_MIGRATIONS, VC_PCPU, VC_QUEUE_SEQ,
  VC_PAUSE_COUNT, VC_RUNSTATE, VC_SOFT_AFFINITY,
} from '../../../shared/vcpu.js';
import { PC_CLAIMING, PC_CURRENT, PC_STATE, PS_IDLE, PS_WAIT_SIPI } from '../../../shared/pcpu.js';
import type { Machine } from '../../machine.js';
import { CTL_ENQUEUE_SEQ } from '../../../shared/machine.js';

/** Is pCPU p in vCPU v's hard affinity? */
export function schedAffine(vc32: Int32Array, v: number, p: number): boolean {
  return (vc32[v * VCPU_STRIDE_WORDS + VC_AFFINITY + (p >> 5)] & (1 << (p & 31))) !== 0;
}

/** Is pCPU p in vCPU v's soft affinity (always false when v has none)? */
export function schedSoftAffine(vc32: Int32Array, v: number, p: number): boolean {
  return (vc32[v * VCPU_STRIDE_WORDS + VC_SOFT_AFFINITY + (p >> 5)] & (1 << (p & 31))) !== 0;
}

function schedHasSoft(vc32: Int32Array, v: number): boolean {
  for (let i = 0; i < VC_AFFINITY_WORDS; i++) if (vc32[v * VCPU_STRIDE_WORDS + VC_SOFT_AFFINITY + i] !== 0) return true;
  return false;
}

/** Runnable or running vCPUs whose runqueue is pCPU p. */
export function schedLoad(m: Machine, p: number): number {
  let n = 0;
  for (let v = 0; v < m.nvcpus; v++) {
    const b = v * VCPU_STRIDE_WORDS;
    if (Atomics.load(m.vc32, b + VC_PCPU) !== p) continue;
    const rs = Atomics.load(m.vc32, b + VC_RUNSTATE);
    if (rs === RS_RUNNABLE || rs === RS_RUNNING) n++;
  }
  return n;
}

/**
 * pCPU p takes runnable vCPU v: RUNNABLE -> RUNNING, unless v is paused. Xen does the pause check and the
 * switch under the scheduler lock that vcpu_sleep_nosync also takes; here it is a Dekker handshake, all
 * seq-cst: the claimer publishes PC_CLAIMING, then re-reads pause_count; the pauser raises pause_count,
 * then (schedOnCpu) reads runstate and every PC_CLAIMING. Either the claimer sees the pause and backs off
 * without ever writing RUNNING, or the pauser sees the claim (or its RUNNING) and keeps waiting. Without
 * the handshake a claim that read pause_count = 0 just before the pause could land after the pauser
 * concluded the vCPU was off-CPU, and a whole-domain altp2m op would run beside it.
 */
export function schedClaim(m: Machine, p: number, v: number): boolean {
  const ci = m.pcpuBase(p) + PC_CLAIMING, b = v * VCPU_STRIDE_WORDS;
  Atomics.store(m.pc32, ci, v + 1);
  const ok = Atomics.load(m.vc32, b + VC_PAUSE_COUNT) === 0 &&
    Atomics.compareExchange(m.vc32, b + VC_RUNSTATE, RS_RUNNABLE, RS_RUNNING) === RS_RUNNABLE;
  Atomics.store(m.pc32, ci, 0);
  return ok;
}

/**
 * Is vCPU v on a pCPU, or being claimed by one? What a pauser waits on (vcpu_sleep_sync): false only once
 * v's context is saved and no claim of it can still succeed (see schedClaim).
 */
export function schedOnCpu(m: Machine, v: number): boolean {
  if (Atomics.load(m.vc32, v * VCPU_STRIDE_WORDS + VC_RUNSTATE) === RS_RUNNING) return true;
  for (let p = 0; p < m.npcpus; p++) if (Atomics.load(m.pc32, m.pcpuBase(p) + PC_CLAIMING) === v + 1) return true;
  return false;
}

/**
 * Claim the next vCPU for pCPU `p`: the runnable vCPU on its runqueue that has waited longest (FIFO by
 * VC_QUEUE_SEQ; credit2 orders by credit, which has the same effect of not starving anyone). Returns the
 * vCPU now in RS_RUNNING on p, or -1. `steal`: else pull the longest-waiting runnable vCPU queued behind
 * a busy pCPU of its affinity. A lost compareExchange (another pCPU took it) just means look again.
 */
export function schedClaimNext(m: Machine, p: number, steal: boolean): number {
  for (;;) {
    const v = schedOldestRunnable(m, p, false);
    if (v < 0) break;
    if (schedClaim(m, p, v)) {
      if (Atomics.load(m.vc32, v * VCPU_STRIDE_WORDS + VC_PCPU) === p) {
        assert(schedAffine(m.vc32, v, p), `vCPU ${v} is queued on pCPU ${p}, which its hard affinity excludes`);
        return v;
      }
      schedEnqueue(m, v); // moved away between the scan and the claim: give it back
    }
  }
  if (!steal) return -1;
  for (;;) {
    const v = schedOldestRunnable(m, p, true);
    if (v < 0) return -1;
    const b = v * VCPU_STRIDE_WORDS;
    if (schedClaim(m, p, v)) {
      assert(schedAffine(m.vc32, v, p), `pCPU ${p} pulled vCPU ${v}, which its hard affinity keeps off it`);
      Atomics.store(m.vc32, b + VC_PCPU, p);
      m.vc32[b + VC_MIGRATIONS]++;
      return v;
    }
  }
}

function schedOldestRunnable(m: Machine, p: number, stealing: boolean): number {
  const vc32 = m.vc32;
  let best = -1, bestSeq = 0;
  for (let v = 0; v < m.nvcpus; v++) {
    const b = v * VCPU_STRIDE_WORDS;
    if (Atomics.load(vc32, b + VC_RUNSTATE) !== RS_RUNNABLE || Atomics.load(vc32, b + VC_PAUSE_COUNT) !== 0) continue;
    const home = Atomics.load(vc32, b + VC_PCPU);
    if (!stealing) { if (home !== p) continue; }
    else {
      if (home === p || !schedAffine(vc32, v, p)) continue;
      // Only pull work that is waiting behind a running vCPU: an idle home pCPU will take it itself.
      if (!schedStealable(m, home)) continue;
    }
    const seq = Atomics.load(vc32, b + VC_QUEUE_SEQ);
    if (best < 0 || seq - bestSeq < 0) { best = v; bestSeq = seq; }
  }
  return best;
}

/**
 * May other pCPUs pull from `home`'s runqueue? When it is busy running something else, or when a guest's
 * INIT reset it: it will never run its runqueue again.
 */
function schedStealable(m: Machine, home: number): boolean {
  const b = m.pcpuBase(home);
  return Atomics.load(m.pc32, b + PC_CURRENT) >= 0 || Atomics.load(m.pc32, b + PC_STATE) === PS_WAIT_SIPI;
}

/** Stamp v as joining a runqueue now (call just before making it RS_RUNNABLE). */
export function schedStamp(m: Machine, v: number): void {
  Atomics.store(m.vc32, v * VCPU_STRIDE_WORDS + VC_QUEUE_SEQ, Atomics.add(m.ctl, CTL_ENQUEUE_SEQ, 1));
}

function schedEnqueue(m: Machine, v: number): void {
  schedStamp(m, v);
  Atomics.store(m.vc32, v * VCPU_STRIDE_WORDS + VC_RUNSTATE, RS_RUNNABLE);
}

/** Could pCPU p find something to run (the serial engine's eligibility test)? */
export function schedHasRunnable(m: Machine, p: number, steal: boolean): boolean {
  const vc32 = m.vc32;
  for (let v = 0; v < m.nvcpus; v++) {
    const b = v * VCPU_STRIDE_WORDS;
    if (Atomics.load(vc32, b + VC_RUNSTATE) !== RS_RUNNABLE || Atomics.load(vc32, b + VC_PAUSE_COUNT) !== 0) continue;
    const home = Atomics.load(vc32, b + VC_PCPU);
    if (home === p) return true;
    if (steal && schedAffine(vc32, v, p) && schedStealable(m, home)) return true;
  }
  return false;
}

/**
 * Where a vCPU that pCPU `p` is descheduling should queue next: the least-loaded pCPU of its affinity,
 * staying on p unless another is strictly less loaded (Xen's migrate resistance, simplified).
 */
export function schedPlace(m: Machine, v: number, p: number): number {
  // Soft affinity first (csched2_res_pick): the least-loaded pCPU of soft ∩ hard, else of hard.
  const soft = schedHasSoft(m.vc32, v);
  const mine = soft && !schedSoftAffine(m.vc32, v, p) ? Infinity : schedLoad(m, p) - 1; // v counts on p while running
  let best = p, bestLoad = mine;
  for (let q = 0; q < m.npcpus; q++) {
    if (q === p || !schedAffine(m.vc32, v, q) || (soft && !schedSoftAffine(m.vc32, v, q))) continue;
    const l = schedLoad(m, q);
    if (l < bestLoad) { best = q; bestLoad = l; }
  }
  return best;
}

/**
 * runq_tickle, simplified: which pCPU to poke so that a vCPU just made runnable on `home` runs soon. Its
 * home pCPU if that is idle; else an idle pCPU of its soft affinity, then of its hard affinity (which
 * will pull it, schedClaimNext); else home, where it waits its turn.
 */
export function schedTickleTarget(m: Machine, v: number, home: number): number {
  if (Atomics.load(m.pc32, m.pcpuBase(home) + PC_CURRENT) < 0) return home;
  let hard = -1;
  for (let q = 0; q < m.npcpus; q++) {
    if (q === home || !schedAffine(m.vc32, v, q)) continue;
    if (Atomics.load(m.pc32, m.pcpuBase(q) + PC_CURRENT) >= 0) continue;
    if (Atomics.load(m.pc32, m.pcpuBase(q) + PC_STATE) !== PS_IDLE) continue;
    if (schedSoftAffine(m.vc32, v, q)) return q;
    if (hard < 0) hard = q;
  }
  return hard >= 0 ? hard : home;
}

/**
 * vcpu_unblock: a blocked vCPU becomes runnable on the pCPU it last ran on. Returns that pCPU, which the
 * caller tickles (hvKick: an EVENT_CHECK IPI through its own LAPIC), or -1 if it was not blocked.
 */
export function schedWake(m: Machine, v: number): number {
  const b = v * VCPU_STRIDE_WORDS;
  schedStamp(m, v); // harmless if the wake loses the race below: the stamp only orders runnable vCPUs
  if (Atomics.compareExchange(m.vc32, b + VC_RUNSTATE, RS_BLOCKED, RS_RUNNABLE) !== RS_BLOCKED) return -1;
  return Atomics.load(m.vc32, b + VC_PCPU);
}

/** A pCPU of v's affinity other than p, chosen by `r` (a random word), or -1 when there is none. */
export function schedRandomPcpu(m: Machine, v: number, p: number, r: number): number {
  let n = 0;
  for (let q = 0; q < m.npcpus; q++) if (q !== p && schedAffine(m.vc32, v, q)) n++;
  if (n === 0) return -1;
  let k = r % n;
  for (let q = 0; q < m.npcpus; q++) {
    if (q === p || !schedAffine(m.vc32, v, q)) continue;
    if (k-- === 0) return q;
  }
  return -1;
}
