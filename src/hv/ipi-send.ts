// Sending physical IPIs: the hypervisor's own (Xen's send_IPI_mask through the machine's LAPICs) and the
// delivery of whatever a LAPIC's ICR sends, with the source tags that travel beside IRR bits. A leaf that
// anything may call (STYLE.md §18): it imports no handler and no dispatcher (irq-vectors.ts holds the hooks).
// Xen sends its IPIs through the same ICR a passed-through guest writes (xen-sched-ipi.md §3.2): in xAPIC
// mode ICR_HI is a latch shared by everyone on that pCPU, which is the race the secure-realm design runs
// into (apic.md §5).
import {
  ICR_DM_FIXED, ICR_DM_INIT, ICR_DM_MASK, ICR_DM_NMI, ICR_HI_XAPIC_DEST_SHIFT, ICR_LEVEL_ASSERT, ICR_SH_ALL_EXCL, LAPIC_ICR_HI, LAPIC_ICR_LO,
  LAPIC_SIM_ICR_HI_WRITER, LAPIC_SIM_ICR_HI_PC, LAPIC_SIM_INIT_SRC_PC, LAPIC_SIM_INIT_SRC_TAG, LAPIC_SIM_NMI_SRC_PC, LAPIC_SIM_NMI_SRC_TAG,
  ICR_HI_WRITER_USED, APIC_MODE_X2APIC,
} from '../../shared/lapic.js';
import { PC_PENDING, PEND_IRQ } from '../../shared/pcpu.js';
import { apicRouteIpi, type ApicBusTarget } from '../hw/apic-bus.js';
import { lapicAcceptPhysIpi, lapicBusView, lapicMode, lapicRead, lapicWrite, lapicWriteX2apicIcr, type LapicWriteEffect } from '../hw/lapic.js';
import type { Machine } from '../machine.js';
import { EV_HOST_RESET, EV_HV_IPI_MISDIRECTED } from '../trace/events.js';
import type { PcpuCtx } from './pcpu-ctx.js';
import { EVENT_CHECK_VECTOR, HV_VECTORS, irqServiceNow } from './irq-vectors.js';
import { assert } from '../errors.js';

/** Snapshot of every physical LAPIC for routing (index = pCPU = physical APIC ID). */
function physBusViews(m: Machine): ApicBusTarget[] {
  const out: ApicBusTarget[] = [];
  for (let q = 0; q < m.npcpus; q++) out.push(lapicBusView(m.lapic32, m.plapicBase(q)));
  return out;
}

/** Deliver an IPI that pCPU `p`'s LAPIC sends now. `tag` names its source (0 = the hypervisor). */
export function physSend(p: PcpuCtx, icrLo: number, icrHi: number, tag: number): void {
  const m = p.m;
  const targets = apicRouteIpi(icrLo >>> 0, icrHi >>> 0, p.id, physBusViews(m), p.params.apicBus);
  const vector = icrLo & 0xff;
  const mode = icrLo & ICR_DM_MASK;
  // Who sent an INIT or NMI: the receiving core reports what became of it (init.ts, nmi.ts), so it needs
  // the sender written down before the signal is latched.
  const srcPc = tag === 0 || p.cur < 0 ? -1 : p.core.pc;
  const srcTag = mode === ICR_DM_NMI ? LAPIC_SIM_NMI_SRC_TAG : mode === ICR_DM_INIT ? LAPIC_SIM_INIT_SRC_TAG : -1;
  const srcPcOff = mode === ICR_DM_NMI ? LAPIC_SIM_NMI_SRC_PC : LAPIC_SIM_INIT_SRC_PC;
  for (const t of targets) {
    const claimed = irqTagClaim(m, t, vector, tag);
    if (srcTag >= 0) {
      Atomics.store(m.lapic32, m.plapicBase(t) + (srcTag >> 2), tag);
      Atomics.store(m.lapic32, m.plapicBase(t) + (srcPcOff >> 2), srcPc);
    }
    const r = lapicAcceptPhysIpi(m.lapic32, m.plapicBase(t), icrLo, p.params.lapic);
    irqTagSettle(m, t, vector, tag, claimed, r === 'latched');
    // A SIPI counts only where it was taken: a core an INIT really reset waits for one (init.ts).
    if (r === 'sipi') p.emit(EV_HOST_RESET, t, mode >> 8, tag);
    Atomics.or(m.pc32, m.pcpuBase(t) + PC_PENDING, PEND_IRQ);
    Atomics.notify(m.pc32, m.pcpuBase(t) + PC_PENDING);
  }
}

/**
 * The hypervisor on pCPU `p` sends `vector` to pCPU `target` through its own LAPIC, as Xen's
 * send_IPI_mask_phys does: ICR_HI then ICR_LO in xAPIC mode, one WRMSR in x2APIC mode. Interrupts are
 * off while it does so (Xen's default), which holds here since a hypervisor action is never interrupted.
 */
export function hvSendIpi(p: PcpuCtx, target: number, vector: number): void {
  const m = p.m, base = m.plapicBase(p.id);
  assert(target >= 0 && target < m.npcpus, `the hypervisor sent vector 0x${vector.toString(16)} to pCPU ${target}, which does not exist`);
  assert(HV_VECTORS.includes(vector), `the hypervisor sent vector 0x${vector.toString(16)}, which is not one of its own`);
  const lo = ICR_DM_FIXED | vector;
  let eff: LapicWriteEffect;
  if (lapicMode(m.lapic32, base) === APIC_MODE_X2APIC) eff = lapicWriteX2apicIcr(m.lapic32, base, lo, target);
  else {
    lapicWrite(m.lapic32, base, LAPIC_ICR_HI, target << ICR_HI_XAPIC_DEST_SHIFT);
    if (p.params.hvIpiUnmasked && (Atomics.load(m.pc32, p.base + PC_PENDING) & PEND_IRQ) !== 0) {
      // hv_ipi_irqs = "unmasked": a pending interrupt is taken between the two writes. Its handler may
      // send an IPI of its own (the wake-up handler tickles), rewriting the shared ICR_HI latch.
      Atomics.and(m.pc32, p.base + PC_PENDING, ~PEND_IRQ);
      irqServiceNow(p);
      const dest = lapicRead(m.lapic32, base, LAPIC_ICR_HI) >>> ICR_HI_XAPIC_DEST_SHIFT;
      if (dest !== target) p.emit(EV_HV_IPI_MISDIRECTED, target, vector, dest);
    }
    eff = lapicWrite(m.lapic32, base, LAPIC_ICR_LO, lo);
    m.lapic32[base + (LAPIC_SIM_ICR_HI_WRITER >> 2)] = ICR_HI_WRITER_USED; // the hypervisor's, already sent
    m.lapic32[base + (LAPIC_SIM_ICR_HI_PC >> 2)] = -1; // no guest instruction wrote it
  }
  if (eff.type === 'ipi') physSend(p, eff.icrLo, eff.icrHi, 0);
}

/**
 * The hypervisor sends an NMI to every other pCPU (Xen's smp_send_nmi_allbutself, used by the crash
 * shootdown): the all-but-self shorthand, so only ICR_LO is written (no destination field to race).
 */
export function hvSendNmiAllButSelf(p: PcpuCtx): void {
  const m = p.m, base = m.plapicBase(p.id);
  const lo = ICR_DM_NMI | ICR_LEVEL_ASSERT | ICR_SH_ALL_EXCL;
  const eff = lapicMode(m.lapic32, base) === APIC_MODE_X2APIC ? lapicWriteX2apicIcr(m.lapic32, base, lo, 0) : lapicWrite(m.lapic32, base, LAPIC_ICR_LO, lo);
  if (eff.type === 'ipi') physSend(p, eff.icrLo, eff.icrHi, 0);
}

/** Kick pCPU `target` (Xen's vcpu_kick / tickle): an EVENT_CHECK IPI, or nothing when it is us. */
export function hvKick(p: PcpuCtx, target: number): void {
  if (target === p.id) return;
  hvSendIpi(p, target, EVENT_CHECK_VECTOR);
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
