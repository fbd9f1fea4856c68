// A guest's HVMOP_altp2m on its pCPU. The sub-op itself is hvm-op.ts; this file is the part Xen does
// around it that takes time: pausing the other vCPUs for the whole-domain sub-ops
// (domain_pause_except_self, which returns only when they are off their pCPUs) and the EPT sync after a
// p2m write (ept_sync_domain waits for every flush IPI to be taken). A hypervisor action here never
// blocks its pCPU (the serial engine has one thread), so both waits are continuations: the vCPU stays
// on its vmcall, and each later step of this pCPU polls (GuestPcpu.opPhase) until the wait is over, servicing
// its own interrupts first so that two waiting pCPUs acknowledge each other.
import { AD_PAUSE_LOCK, altp2mBase } from '../../shared/altp2m.js';
import { ALTP2M_OP_WORDS, W_CMD } from '../../shared/altp2m-op.js';
import { DM_STATE, DS_RUNNING } from '../../shared/domain.js';
import { PC_FLUSH_ACKS, PC_PENDING } from '../../shared/pcpu.js';
import { INSN_BYTES, REG_EAX, REG_ECX } from '../isa/opcodes.js';
import { EV_ALTP2M_OP, EV_HV_HELD_OFF } from '../trace/events.js';
import { VCPU_STRIDE_WORDS, VC_PCPU } from '../../shared/vcpu.js';
import { HELD_OFF_NONE, physHeldOff } from './ipi-send.js';
import { CALL_FUNCTION_VECTOR, EVENT_CHECK_VECTOR } from './irq-vectors.js';
import { domainVcpus, hostGpaToHost, p2mEndWrite, p2mUnlock } from './altp2m.js';
import { eptMarkTables, eptSyncAcked, eptSyncSend } from './ept-sync.js';
import { EFAULT, OP_NEEDS_PAUSE, OP_RESTART, altp2mOp, altp2mOpCopiesBack, type AltCtx } from './hvm-op.js';
import type { PcpuCtx } from './pcpu-ctx.js';

/** The pCPU context with this module's own in-progress operation (pcpu-loop.ts creates it). */
export type GuestPcpu = PcpuCtx & { readonly altOp: GuestAltOp };
import type { Machine } from '../machine.js';
import { vcpuPauseNosync, vcpuUnpause } from './vcpu-ops.js';
import { schedOnCpu } from './sched/sched.js';

export const OPW_NONE = 0;
/** Waiting for the other vCPUs of the domain to leave their pCPUs. */
export const OPW_PAUSING = 1;
/** Waiting for the flush IPIs of an EPT sync to be taken. */
export const OPW_ACKS = 2;


/** The pCPU's state for a guest HVMOP_altp2m in progress (one per pCPU: a pCPU runs one vCPU). */
export class GuestAltOp implements AltCtx {
  readonly m: Machine;
  callerDom = -1;
  selfVcpu = -1;
  readonly holder: number;
  paused = false;
  gen = 0;
  readonly touched: number[] = [];
  phase = OPW_NONE;
  ret = 0;
  readonly words = new Int32Array(ALTP2M_OP_WORDS);
  readonly snap: Int32Array;
  /** Per pCPU: this wait already reported that pCPU's LAPIC keeping the awaited vector off (EV_HV_HELD_OFF). */
  readonly heldOff: Uint8Array;

  constructor(private readonly p: GuestPcpu) {
    this.m = p.m;
    this.holder = p.id + 1;
    this.snap = new Int32Array(p.m.npcpus);
    this.heldOff = new Uint8Array(p.m.npcpus);
  }

  preemptPending(): boolean { return Atomics.load(this.m.pc32, this.p.base + PC_PENDING) !== 0; }

  readU64(handle: number, i: number): number | null {
    const gpa = (handle + 8 * i) | 0;
    if ((gpa & 3) !== 0) return null;
    const d = this.p.curDomain;
    const lo = hostGpaToHost(this.m, d, gpa), hi = hostGpaToHost(this.m, d, gpa + 4);
    if (lo < 0 || hi < 0) return null;
    const l = Atomics.load(this.m.mem32, lo >> 2), h = Atomics.load(this.m.mem32, hi >> 2);
    if (l === -1 && h === -1) return -1;
    return h !== 0 || (l >>> 0) > 0xfffff ? -2 : l;
  }

  readU8(handle: number, i: number): number | null {
    const at = hostGpaToHost(this.m, this.p.curDomain, (handle + i) | 0);
    return at < 0 ? null : Atomics.load(this.m.mem8, at);
  }
}

/** Copy the struct (shared/altp2m-op.ts) at gpa in or out (copy_from/to_guest). False on a fault (-EFAULT). */
function copyStruct(p: GuestPcpu, gpa: number, w: Int32Array, out: boolean): boolean {
  if ((gpa & 3) !== 0) return false;
  const mem = p.m.mem32;
  for (let i = 0; i < ALTP2M_OP_WORDS; i++) {
    const h = hostGpaToHost(p.m, p.curDomain, (gpa + 4 * i) | 0);
    if (h < 0) return false;
    if (out) Atomics.store(mem, h >> 2, w[i]);
    else w[i] = Atomics.load(mem, h >> 2);
  }
  return true;
}

/** EXIT_VMCALL with hvm_op / HVMOP_altp2m. Returns true when done (eax written, pc to advance). */
export function hvmOpAltp2mGuest(p: GuestPcpu): boolean {
  const op = p.altOp;
  op.callerDom = p.curDomain;
  op.selfVcpu = p.cur;
  if (!copyStruct(p, p.core.R[REG_ECX], op.words, false)) return finish(p, -EFAULT, false);
  const r = altp2mOp(op, op.words);
  if (r === OP_NEEDS_PAUSE) {
    // domain_pause_except_self: a contended deadlock mutex means -ERESTART (the vmcall runs again).
    const lockIdx = altp2mBase(p.curDomain) + AD_PAUSE_LOCK;
    if (Atomics.compareExchange(p.m.ap32, lockIdx, 0, op.holder) !== 0) return false;
    const [first, n] = domainVcpus(p.m, p.curDomain);
    for (let i = 0; i < n; i++) if (first + i !== p.cur) vcpuPauseNosync(p, first + i);
    op.paused = true;
    op.phase = OPW_PAUSING;
    return false;
  }
  if (r === OP_RESTART) {
    if (op.gen !== 0) {
      // A multi-op stopped at a preemption point: its progress is in the struct; sync what it wrote.
      if (!copyStruct(p, p.core.R[REG_ECX], op.words, true)) return finish(p, -EFAULT, false);
      return startSync(p, OP_RESTART);
    }
    if (op.paused) { op.phase = OPW_PAUSING; return false; } // the p2m lock is busy: keep the domain paused, retry
    return false;
  }
  if (r >= 0 && altp2mOpCopiesBack(op.words[W_CMD]) && !copyStruct(p, p.core.R[REG_ECX], op.words, true)) return finish(p, -EFAULT, true);
  if (op.gen !== 0) return startSync(p, r);
  return finish(p, r, true);
}

/** Mark the changed tables, IPI the dirty mask, and wait for the acknowledgements if any were sent. */
function startSync(p: GuestPcpu, r: number): boolean {
  const op = p.altOp;
  eptMarkTables(p.m, p.curDomain, op.touched);
  if (eptSyncSend(p.m, p.curDomain, p, p.params.lapic, op.snap) > 0) {
    op.ret = r;
    op.phase = OPW_ACKS;
    op.heldOff.fill(0); // a new wait, on another vector
    return false;
  }
  return finish(p, r, true);
}

/**
 * The operation returns: its writes are published as returned (AD_DONE), the locks released, the other
 * vCPUs unpaused, eax written, and the loaded vCPU's view reloaded (switch_p2m and set_domain_state move
 * it too). OP_RESTART leaves eax and pc alone: the vmcall runs again.
 */
function finish(p: GuestPcpu, r: number, copied: boolean): boolean {
  const op = p.altOp;
  const gen = op.gen;
  release(p);
  p.reloadView();
  if (r === OP_RESTART) return false;
  p.emit(EV_ALTP2M_OP, op.words[W_CMD], r, copied ? gen : 0);
  p.core.R[REG_EAX] = r;
  return true;
}

function release(p: GuestPcpu): void {
  const op = p.altOp, m = p.m, d = p.curDomain;
  if (op.gen !== 0) {
    p2mEndWrite(m, d, op.gen);
    p2mUnlock(m, d, op.holder);
    op.gen = 0;
  }
  op.touched.length = 0;
  op.heldOff.fill(0);
  if (op.paused) {
    const [first, n] = domainVcpus(m, d);
    for (let i = 0; i < n; i++) if (first + i !== p.cur) vcpuUnpause(p, first + i);
    Atomics.compareExchange(m.ap32, altp2mBase(d) + AD_PAUSE_LOCK, op.holder, 0);
    op.paused = false;
  }
  op.phase = OPW_NONE;
}

/** One poll of a waiting HVMOP (GuestPcpu.step calls it while op.phase is set). */
export function hvmOpContinue(p: GuestPcpu): void {
  const op = p.altOp, m = p.m;
  p.hvCycles(p.params.costs.spin_poll);
  if (p.cur < 0 || Atomics.load(m.dm32, m.domainBase(p.curDomain) + DM_STATE) !== DS_RUNNING) {
    // The domain ended while we waited: give everything back; nobody is left to return to.
    if (p.cur >= 0) release(p);
    else op.phase = OPW_NONE;
    return;
  }
  if (op.phase === OPW_PAUSING) {
    const [first, n] = domainVcpus(m, p.curDomain);
    for (let i = 0; i < n; i++) {
      if (first + i !== p.cur && schedOnCpu(m, first + i)) {
        // Still on its pCPU: the pause's kick (EVENT_CHECK) has not been taken there.
        noteHeldOff(p, Atomics.load(m.vc32, (first + i) * VCPU_STRIDE_WORDS + VC_PCPU), EVENT_CHECK_VECTOR);
        return;
      }
    }
    op.phase = OPW_NONE;
    if (hvmOpAltp2mGuest(p)) p.core.pc += INSN_BYTES; // Safe: the vmcall completes now
    return;
  }
  if (op.phase !== OPW_ACKS) return;
  if (eptSyncAcked(m, op.snap)) {
    const r = op.ret;
    op.phase = OPW_NONE;
    if (finish(p, r, true)) p.core.pc += INSN_BYTES; // Safe: the vmcall completes now
    return;
  }
  for (let q = 0; q < m.npcpus; q++) if (op.snap[q] >= 0) noteHeldOff(p, q, CALL_FUNCTION_VECTOR);
}

/**
 * The pCPU on whose LAPIC this pCPU's wait is held off (HOST_APIC_TAMPER held_off), or -1: an EPT sync still
 * waiting for a pCPU whose LAPIC keeps the flush IPI off. A pause waits for a vCPU still running, which may
 * yet give the LAPIC back, so it is never counted here. No side effects.
 */
export function hvmOpHeldOffOn(p: GuestPcpu): number {
  const op = p.altOp, m = p.m;
  if (op.phase !== OPW_ACKS) return -1;
  for (let q = 0; q < m.npcpus; q++) {
    if (op.snap[q] >= 0 && Atomics.load(m.pc32, m.pcpuBase(q) + PC_FLUSH_ACKS) === op.snap[q] &&
      physHeldOff(m, q, CALL_FUNCTION_VECTOR) !== HELD_OFF_NONE) return q;
  }
  return -1;
}

/**
 * The wait depends on pCPU `q` taking `vector`: if its LAPIC keeps the vector off (a guest holding the host
 * LAPIC raised its TPR or disabled it), say so once for this wait. Observes only.
 */
function noteHeldOff(p: GuestPcpu, q: number, vector: number): void {
  const op = p.altOp;
  if (q < 0 || q >= p.m.npcpus || op.heldOff[q] !== 0) return;
  const why = physHeldOff(p.m, q, vector);
  if (why === HELD_OFF_NONE) return;
  op.heldOff[q] = 1;
  p.emitPc(EV_HV_HELD_OFF, q, vector, why, -1);
}

