// Physical IPIs: the machine's LAPICs (one per pCPU, pages in MachineBuffers.lapics) and the
// hypervisor's own use of them. Xen sends its IPIs through the same ICR a passed-through guest writes
// (xen-sched-ipi.md §3.2): in xAPIC mode ICR_HI is a latch shared by everyone on that pCPU, which is
// the race the secure-realm design runs into (apic.md §5).
import { DM_IPI_PATH, ipiPathIsPassthrough, ipiPathPosts } from '../../shared/domain.js';
import { piNotificationInGuest, piWakeupHandler } from './posted.js';
import { ICR_DM_FIXED, ICR_DM_MASK, ICR_HI_XAPIC_DEST_SHIFT, LAPIC_ICR_HI, LAPIC_ICR_LO, LAPIC_SIM_ICR_HI_WRITER, LAPIC_SIM_ICR_HI_PC, ICR_HI_WRITER_USED, APIC_MODE_X2APIC, LAPIC_PEND_INIT, LAPIC_PEND_SIPI } from '../../shared/lapic.js';
import { PC_PENDING, PC_STATE, PEND_IRQ, PS_WAIT_SIPI } from '../../shared/pcpu.js';
import { RS_LOST, VCPU_STRIDE_WORDS, VC_IPI_SEQ, VC_RUNSTATE } from '../../shared/vcpu.js';
import { apicRouteIpi, type ApicBusTarget } from '../hw/apic-bus.js';
import {
  lapicAck, lapicAcceptIpi, lapicPendingDeliverable, lapicBusView, lapicEoi, lapicInit, lapicMode, lapicRead, lapicReadX2apic, lapicTakePending,
  lapicWrite, lapicWriteX2apic, lapicWriteX2apicIcr, type LapicWriteEffect,
} from '../hw/lapic.js';
import { REG_EAX, REG_EDX } from '../isa/opcodes.js';
import { PORT_GP, PORT_OK, type LapicPort } from '../isa/interp.js';
import type { Machine } from '../machine.js';
import { EV_HOST_RESET, EV_HV_IPI_MISDIRECTED, EV_ICR_WINDOW, EV_IPI_SEND, ICRW_OTHER, ICRW_REUSED, EV_PHYS_IRQ, PIRQ_HANDLED, PIRQ_REFLECTED, PIRQ_UNKNOWN, ipiTag } from '../trace/events.js';
import type { Pcpu } from './pcpu-loop.js';
import { vlapicAcceptReflected } from './vlapic.js';
import { eptFlushIpiTaken } from './ept-sync.js';

// Xen's own vectors (xen/arch/x86/include/asm/irq-vectors.h; xen-sched-ipi.md §3.1)
export const INVALIDATE_TLB_VECTOR = 0xfd;
export const EVENT_CHECK_VECTOR = 0xfc;
export const CALL_FUNCTION_VECTOR = 0xfb;
/** Posted-interrupt notification and wake-up vectors come from the dynamic range 0xF1-0xF8. */
export const POSTED_INTR_VECTOR = 0xf2;
export const PI_WAKEUP_VECTOR = 0xf1;

/** Does the hypervisor handle this physical vector? */
export function hvHandlesVector(v: number): boolean {
  return v === EVENT_CHECK_VECTOR || v === CALL_FUNCTION_VECTOR || v === INVALIDATE_TLB_VECTOR ||
    v === POSTED_INTR_VECTOR || v === PI_WAKEUP_VECTOR;
}

/** Snapshot of every physical LAPIC for routing (index = pCPU = physical APIC ID). */
function physBusViews(m: Machine): ApicBusTarget[] {
  const out: ApicBusTarget[] = [];
  for (let q = 0; q < m.npcpus; q++) out.push(lapicBusView(m.lapic32, m.plapicBase(q)));
  return out;
}

/** Deliver an IPI that pCPU `p`'s LAPIC sends now. `tag` names its source (0 = the hypervisor). */
export function physSend(p: Pcpu, icrLo: number, icrHi: number, tag: number): void {
  const m = p.m;
  const targets = apicRouteIpi(icrLo >>> 0, icrHi >>> 0, p.id, physBusViews(m), p.params.apicBus);
  const vector = icrLo & 0xff;
  const mode = icrLo & ICR_DM_MASK;
  for (const t of targets) {
    const claimed = irqTagClaim(m, t, vector, tag);
    const r = lapicAcceptIpi(m.lapic32, m.plapicBase(t), icrLo, p.params.lapic);
    irqTagSettle(m, t, vector, tag, claimed, r === 'latched');
    if (r === 'init' || r === 'sipi') p.emit(EV_HOST_RESET, t, mode >> 8, tag);
    Atomics.or(m.pc32, m.pcpuBase(t) + PC_PENDING, PEND_IRQ);
    Atomics.notify(m.pc32, m.pcpuBase(t) + PC_PENDING);
  }
}

/**
 * The hypervisor on pCPU `p` sends `vector` to pCPU `target` through its own LAPIC, as Xen's
 * send_IPI_mask_phys does: ICR_HI then ICR_LO in xAPIC mode, one WRMSR in x2APIC mode. Interrupts are
 * off while it does so (Xen's default), which holds here since a hypervisor action is never interrupted.
 */
export function hvSendIpi(p: Pcpu, target: number, vector: number): void {
  const m = p.m, base = m.plapicBase(p.id);
  const lo = ICR_DM_FIXED | vector;
  let eff: LapicWriteEffect;
  if (lapicMode(m.lapic32, base) === APIC_MODE_X2APIC) eff = lapicWriteX2apicIcr(m.lapic32, base, lo, target);
  else {
    lapicWrite(m.lapic32, base, LAPIC_ICR_HI, target << ICR_HI_XAPIC_DEST_SHIFT);
    if (p.params.hvIpiUnmasked && (Atomics.load(m.pc32, p.base + PC_PENDING) & PEND_IRQ) !== 0) {
      // hv_ipi_irqs = "unmasked": a pending interrupt is taken between the two writes. Its handler may
      // send an IPI of its own (the wake-up handler tickles), rewriting the shared ICR_HI latch.
      Atomics.and(m.pc32, p.base + PC_PENDING, ~PEND_IRQ);
      physService(p);
      const dest = lapicRead(m.lapic32, base, LAPIC_ICR_HI) >>> ICR_HI_XAPIC_DEST_SHIFT;
      if (dest !== target) p.emit(EV_HV_IPI_MISDIRECTED, target, vector, dest);
    }
    eff = lapicWrite(m.lapic32, base, LAPIC_ICR_LO, lo);
    m.lapic32[base + (LAPIC_SIM_ICR_HI_WRITER >> 2)] = ICR_HI_WRITER_USED; // the hypervisor's, already sent
    m.lapic32[base + (LAPIC_SIM_ICR_HI_PC >> 2)] = -1; // no guest instruction wrote it
  }
  if (eff.type === 'ipi') physSend(p, eff.icrLo, eff.icrHi, 0);
}

/** Kick pCPU `target` (Xen's vcpu_kick / tickle): an EVENT_CHECK IPI, or nothing when it is us. */
export function hvKick(p: Pcpu, target: number): void {
  if (target === p.id) return;
  hvSendIpi(p, target, EVENT_CHECK_VECTOR);
}

/**
 * Service this pCPU's physical LAPIC: INIT/SIPI, then every deliverable vector. Returns false when an
 * INIT has reset the pCPU (it must stop running anything).
 */
export function physService(p: Pcpu): boolean {
  const m = p.m, base = m.plapicBase(p.id);
  const pend = lapicTakePending(m.lapic32, base);
  if ((pend & (LAPIC_PEND_INIT | LAPIC_PEND_SIPI)) !== 0) {
    // INIT from a guest: the CPU resets under the hypervisor. Its vCPU and the hypervisor's state on it
    // are gone; a later SIPI would start it at a vector the hypervisor never installed.
    lapicInit(m.lapic32, base);
    if (p.cur >= 0) Atomics.store(m.vc32, p.cur * VCPU_STRIDE_WORDS + VC_RUNSTATE, RS_LOST);
    p.dropCurrent();
    Atomics.store(m.pc32, p.base + PC_STATE, PS_WAIT_SIPI);
    return false;
  }
  for (;;) {
    const next = lapicPendingDeliverable(m.lapic32, base);
    if (next < 0) break;
    const pre = irqTagTake(m, p.id, next);
    const v = lapicAck(m.lapic32, base);
    const tag = irqTagAcked(m, p.id, next, pre, v);
    if (hvHandlesVector(v)) {
      // EVENT_CHECK only forces the exit (softirqs run on the way back); CALL_FUNCTION is the EPT flush
      // (ept-sync.ts); INVALIDATE is not used; posted-interrupt notification and wake-up are in posted.ts.
      p.emit(EV_PHYS_IRQ, v, PIRQ_HANDLED, tag);
      if (v === CALL_FUNCTION_VECTOR) eptFlushIpiTaken(p); // ept_sync_domain's: no body, acknowledged by being taken
      else if (v === POSTED_INTR_VECTOR && p.cur >= 0 && ipiPathPosts(m.dm32[m.domainBase(p.curDomain) + DM_IPI_PATH])) piNotificationInGuest(p);
      else if (v === PI_WAKEUP_VECTOR) piWakeupHandler(p);
    } else {
      const cur = p.cur;
      const reflect = cur >= 0 && ipiPathIsPassthrough(m.dm32[m.domainBase(p.curDomain) + DM_IPI_PATH]);
      p.emit(EV_PHYS_IRQ, v, reflect ? PIRQ_REFLECTED : PIRQ_UNKNOWN, tag);
      // The passthrough designs assume the vector reaches the guest: model that generously, so the rest
      // of the design can be judged, but the finding stands (only the hypervisor receives interrupts).
      if (reflect) vlapicAcceptReflected(p, cur, v, tag);
    }
    lapicEoi(m.lapic32, base);
  }
  return true;
}

/** The pCPU's physical LAPIC as a passed-through guest sees it (CpuCore.lapic). */
export class PhysLapicPort implements LapicPort {
  constructor(private readonly p: Pcpu) {}

  apicRead(offset: number): number {
    return lapicRead(this.p.m.lapic32, this.p.m.plapicBase(this.p.id), offset);
  }

  apicWrite(offset: number, value: number): boolean {
    const p = this.p, m = p.m, w = m.plapicBase(p.id) + (LAPIC_SIM_ICR_HI_WRITER >> 2);
    const wpc = m.plapicBase(p.id) + (LAPIC_SIM_ICR_HI_PC >> 2);
    const eff = lapicWrite(m.lapic32, m.plapicBase(p.id), offset, value, p.params.lapic);
    if (offset === LAPIC_ICR_HI) {
      m.lapic32[w] = p.cur + 1;
      m.lapic32[wpc] = p.core.pc; // the interpreter stored the writing instruction's pc before calling us
    }
    if (eff.type !== 'ipi') return true;
    const writer = m.lapic32[w];
    const by = writer & ~ICR_HI_WRITER_USED;
    const hiPc = by === 0 ? -1 : m.lapic32[wpc];
    m.lapic32[w] = writer | ICR_HI_WRITER_USED;
    const tag = this.guestSend(eff.icrLo, eff.icrHi);
    // The window between ICR_HI and ICR_LO (apic.md §5): say when this send used someone else's ICR_HI,
    // with the pc of the ICR_HI write it used as the event's pc (the send's own pc is its EV_IPI_SEND's).
    if ((writer & ICR_HI_WRITER_USED) !== 0) p.emitPc(EV_ICR_WINDOW, tag, ICRW_REUSED, by, hiPc);
    else if (writer !== p.cur + 1) p.emitPc(EV_ICR_WINDOW, tag, ICRW_OTHER, writer, hiPc);
    return true;
  }

  x2apicRdmsr(msr: number): boolean {
    const r = lapicReadX2apic(this.p.m.lapic32, this.p.m.plapicBase(this.p.id), msr);
    if (r.type === 'gp') return false;
    this.p.core.R[REG_EAX] = r.lo | 0;
    this.p.core.R[REG_EDX] = r.hi | 0;
    return true;
  }

  x2apicWrmsr(msr: number, lo: number, hi: number): number {
    const p = this.p;
    const eff = lapicWriteX2apic(p.m.lapic32, p.m.plapicBase(p.id), msr, lo, hi, p.params.lapic);
    if (eff.type === 'gp') return PORT_GP;
    if (eff.type === 'ipi') this.guestSend(eff.icrLo, eff.icrHi);
    return PORT_OK;
  }

  /** A guest wrote the physical ICR: the IPI leaves with whatever ICR_HI holds now. Returns its tag. */
  private guestSend(icrLo: number, icrHi: number): number {
    const p = this.p, m = p.m;
    const vb = p.cur * VCPU_STRIDE_WORDS;
    const tag = ipiTag(p.cur, m.vc32[vb + VC_IPI_SEQ]++);
    p.emit(EV_IPI_SEND, tag, icrLo, icrHi);
    physSend(p, icrLo, icrHi, tag);
    return tag;
  }
}


/**
 * Source tags travel beside IRR bits (MachineBuffers.irqsrc): the slot of a vector names the send that set
 * the pending IRR bit. A sender claims an empty slot before setting IRR and gives it back if the IRR bit
 * was already set (its IPI coalesced into the pending one, which keeps its own tag); the receiver takes
 * the tag just before acknowledging the vector. So a delivery names the send that raised it.
 */
export function irqTagClaim(m: Machine, page: number, vector: number, tag: number): boolean {
  return Atomics.compareExchange(m.irqsrc, m.irqsrcBase(page) + vector, 0, tag) === 0;
}
export function irqTagRelease(m: Machine, page: number, vector: number, tag: number): void {
  Atomics.compareExchange(m.irqsrc, m.irqsrcBase(page) + vector, tag, 0);
}
/**
 * After the IRR (or PIR) bit was set: give the slot back if this send coalesced into a pending one; if
 * the claim had failed but the bit was new, the receiver emptied the slot in between (it takes the tag,
 * then clears the bit), so claim it now.
 */
export function irqTagSettle(m: Machine, page: number, vector: number, tag: number, claimed: boolean, latched: boolean): void {
  if (claimed && !latched) irqTagRelease(m, page, vector, tag);
  else if (!claimed && latched) irqTagClaim(m, page, vector, tag);
}
export function irqTagTake(m: Machine, page: number, vector: number): number {
  return Atomics.exchange(m.irqsrc, m.irqsrcBase(page) + vector, 0);
}
/**
 * The receiver takes the tag of the vector it is about to acknowledge (`expected`, `pre`) BEFORE the ack,
 * so a sender that arrives after the ack finds an empty slot for its new IRR bit. If another thread
 * raised a higher vector in between, lapicAck took that one: put `pre` back and take the right tag.
 */
export function irqTagAcked(m: Machine, page: number, expected: number, pre: number, acked: number): number {
  if (acked === expected) return pre;
  if (pre !== 0) irqTagClaim(m, page, expected, pre);
  return acked < 0 ? 0 : irqTagTake(m, page, acked);
}
