// Sending physical IPIs: the hypervisor's own (Xen's send_IPI_mask through the machine's LAPICs) and the
// delivery of whatever a LAPIC's ICR sends, with the source tags that travel beside IRR bits. A leaf that
// anything may call (STYLE.md §18): it imports no handler and no dispatcher (irq-vectors.ts holds the hooks).
// Xen sends its IPIs through the same ICR a passed-through guest writes (xen-sched-ipi.md §3.2): in xAPIC
// mode ICR_HI is a latch shared by everyone on that pCPU, which is the race the secure-realm design runs
// into (apic.md §5).
import {
  ICR_DM_FIXED, ICR_DM_INIT, ICR_DM_MASK, ICR_DM_NMI, ICR_SH_SELF, ICR_HI_XAPIC_DEST_SHIFT, ICR_LEVEL_ASSERT, ICR_SH_ALL_EXCL, LAPIC_ICR_HI, LAPIC_ICR_LO,
  LAPIC_SIM_ICR_HI_WRITER, LAPIC_SIM_ICR_HI_PC, LAPIC_SIM_INIT_SRC_PC, LAPIC_SIM_INIT_SRC_TAG, LAPIC_SIM_NMI_SRC_PC, LAPIC_SIM_NMI_SRC_TAG,
  ICR_HI_WRITER_USED, APIC_MODE_X2APIC, LAPIC_SIM_PENDING, LAPIC_PEND_INIT, LAPIC_PEND_NMI, LAPIC_PEND_SIPI, LAPIC_IRR, LAPIC_SVR, LAPIC_TPR, SVR_ENABLE,
} from '../../shared/lapic.js';
import { PC_PENDING, PEND_IRQ } from '../../shared/pcpu.js';
import { APIC_BUS_HARDWARE, apicRouteIpi, type ApicBusTarget } from '../hw/apic-bus.js';
import { lapicAcceptPhysIpi, lapicBusView, lapicMode, lapicPendingDeliverable, lapicTestVector, lapicRead, lapicWrite, lapicWriteX2apicIcr, type LapicWriteEffect } from '../hw/lapic.js';
import type { Machine } from '../machine.js';
import { EV_HOST_RESET, EV_HV_IPI_MISDIRECTED } from '../trace/events.js';
import type { PcpuCtx } from './pcpu-ctx.js';
import { EVENT_CHECK_VECTOR, HV_VECTORS, irqInHandler, irqServiceNow } from './irq-vectors.js';
import { genapicPlan, genapicSelect, type GenapicKind, type GenapicWrite } from './genapic.js';
import { assert } from '../errors.js';

/** Snapshot of every physical LAPIC for routing (index = pCPU = physical APIC ID). */
function physBusViews(m: Machine): ApicBusTarget[] {
  const out: ApicBusTarget[] = [];
  for (let q = 0; q < m.npcpus; q++) out.push(lapicBusView(m.lapic32, m.plapicBase(q)));
  return out;
}

/**
 * Deliver an IPI that pCPU `p`'s LAPIC sends now. `tag` names its source (0 = the hypervisor). The physical
 * bus routes as the SDM says (APIC_BUS_HARDWARE), whatever the scenario chose for the virtual one.
 */
export function physSend(p: PcpuCtx, icrLo: number, icrHi: number, tag: number): void {
  const m = p.m;
  const targets = apicRouteIpi(icrLo >>> 0, icrHi >>> 0, p.id, physBusViews(m), APIC_BUS_HARDWARE);
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
    // A vector the target's PPR holds off (a raised TPR) waits in IRR without interrupting. The IRR bit is
    // set before the check and the target re-checks after each TPR write, so one of the two sees the other.
    if ((r === 'latched' || r === 'coalesced') && !lapicRaisesLine(m, t)) continue;
    m.kick(t, PEND_IRQ);
  }
}

/** physHeldOff: the vector will be taken (nothing keeps it off). */
export const HELD_OFF_NONE = -2;
/** physHeldOff: the LAPIC is software-disabled, so the vector was dropped. */
export const HELD_OFF_DISABLED = -1;

/**
 * Does pCPU `q`'s LAPIC keep the hypervisor's `vector` off for good? Returns the TPR when the vector waits
 * in IRR because the TPR's class is at or above the vector's (only the LAPIC's owner lowers it again),
 * HELD_OFF_DISABLED when the LAPIC is software-disabled (the vector was dropped on arrival), else
 * HELD_OFF_NONE. An in-service vector that blocks it is not counted: the handler's EOI ends that.
 */
export function physHeldOff(m: Machine, q: number, vector: number): number {
  const base = m.plapicBase(q);
  if ((Atomics.load(m.lapic32, base + (LAPIC_SVR >>> 2)) & SVR_ENABLE) === 0) return HELD_OFF_DISABLED;
  if (!lapicTestVector(m.lapic32, base, LAPIC_IRR, vector)) return HELD_OFF_NONE;
  const tpr = Atomics.load(m.lapic32, base + (LAPIC_TPR >>> 2)) & 0xff;
  return (tpr & 0xf0) >= (vector & 0xf0) ? tpr : HELD_OFF_NONE;
}

/**
 * Does pCPU `q`'s LAPIC raise its interrupt line now: a vector it would deliver (above PPR, the LAPIC
 * enabled) or an INIT or SIPI? A vector a raised TPR holds off stays in IRR without interrupting.
 */
export function lapicRaisesLine(m: Machine, q: number): boolean {
  const base = m.plapicBase(q);
  if (lapicPendingDeliverable(m.lapic32, base) >= 0) return true;
  // NMI, INIT and SIPI go straight to the core, whatever TPR and IF say (apic.md §4).
  return (Atomics.load(m.lapic32, base + (LAPIC_SIM_PENDING >> 2)) & (LAPIC_PEND_NMI | LAPIC_PEND_INIT | LAPIC_PEND_SIPI)) !== 0;
}

/** The genapic driver of the machine `m` (fixed at boot: genapic.ts genapicSelect). */
export function hvGenapic(m: Machine): GenapicKind {
  return genapicSelect(m.npcpus, lapicMode(m.lapic32, m.plapicBase(0)) === APIC_MODE_X2APIC);
}

const planScratch: GenapicWrite[] = [];
const oneTarget: number[] = [0];

/**
 * The hypervisor on pCPU `p` sends `vector` to the pCPUs in `targets` through its own LAPIC, as Xen's
 * send_IPI_mask does (genapic.ts genapicPlan): the all-but-self shorthand when every other pCPU is a target
 * and it is not in an interrupt handler, else the machine's driver: flat logical (one ICR_HI + ICR_LO for
 * the whole mask), physical (one pair per target) or x2APIC cluster (one WRMSR per cluster). Interrupts are
 * off between an ICR_HI and its ICR_LO (Xen's default), which holds here since a hypervisor action is never
 * interrupted. Returns the number of ICR writes that sent.
 */
export function hvSendIpiMask(p: PcpuCtx, targets: readonly number[], vector: number): number {
  const m = p.m, base = m.plapicBase(p.id);
  assert(HV_VECTORS.includes(vector), `the hypervisor sent vector 0x${vector.toString(16)}, which is not one of its own`);
  for (const t of targets) assert(t >= 0 && t < m.npcpus, `the hypervisor sent vector 0x${vector.toString(16)} to pCPU ${t}, which does not exist`);
  const kind = hvGenapic(m);
  // Handlers never nest a send inside another send's plan, but one may run inside a send (hv_ipi_irqs =
  // "unmasked"), so the plan is copied before it is walked.
  genapicPlan(kind, targets, p.id, m.npcpus, vector, { inIrq: irqInHandler(), irqsEnabled: true }, planScratch);
  const plan = planScratch.slice();
  const x2apic = kind === 'x2apic-cluster';
  let sent = 0;
  for (const w of plan) {
    let eff: LapicWriteEffect;
    if (x2apic) eff = lapicWriteX2apicIcr(m.lapic32, base, w.icrLo, w.dest);
    else {
      if (w.hi) {
        lapicWrite(m.lapic32, base, LAPIC_ICR_HI, w.dest);
        if (p.params.hvIpiUnmasked && (Atomics.load(m.pc32, p.base + PC_PENDING) & PEND_IRQ) !== 0) {
          // hv_ipi_irqs = "unmasked": a pending interrupt is taken between the two writes. Its handler may
          // send an IPI of its own (the wake-up handler tickles), rewriting the shared ICR_HI latch.
          Atomics.and(m.pc32, p.base + PC_PENDING, ~PEND_IRQ);
          irqServiceNow(p);
          const now = lapicRead(m.lapic32, base, LAPIC_ICR_HI) >>> 0;
          if (now !== w.dest) p.emit(EV_HV_IPI_MISDIRECTED, hvDestCpu(kind, w.dest), vector, hvDestCpu(kind, now));
        }
      }
      eff = lapicWrite(m.lapic32, base, LAPIC_ICR_LO, w.icrLo);
      if (w.hi) {
        m.lapic32[base + (LAPIC_SIM_ICR_HI_WRITER >> 2)] = ICR_HI_WRITER_USED; // the hypervisor's, already sent
        m.lapic32[base + (LAPIC_SIM_ICR_HI_PC >> 2)] = -1; // no guest instruction wrote it
      }
    }
    if (eff.type === 'ipi') {
      physSend(p, eff.icrLo, eff.icrHi, 0);
      sent++;
    }
  }
  return sent;
}

/** The pCPU an ICR_HI value of driver `kind` names: the lowest one of a logical mask; -1 for none. */
function hvDestCpu(kind: GenapicKind, icrHi: number): number {
  const dest = icrHi >>> ICR_HI_XAPIC_DEST_SHIFT;
  if (kind === 'phys') return dest;
  return dest === 0 ? -1 : 31 - Math.clz32(dest & -dest);
}

/**
 * The hypervisor on pCPU `p` sends `vector` to pCPU `target`: send_IPI_mask with a one-CPU mask, or to
 * itself send_IPI_self (the self shorthand: one ICR_LO write, or the same through the x2APIC ICR MSR).
 */
export function hvSendIpi(p: PcpuCtx, target: number, vector: number): void {
  if (target !== p.id) {
    oneTarget[0] = target;
    hvSendIpiMask(p, oneTarget, vector);
    return;
  }
  assert(HV_VECTORS.includes(vector), `the hypervisor sent vector 0x${vector.toString(16)}, which is not one of its own`);
  const m = p.m, base = m.plapicBase(p.id), lo = ICR_SH_SELF | ICR_DM_FIXED | vector;
  const eff = lapicMode(m.lapic32, base) === APIC_MODE_X2APIC ? lapicWriteX2apicIcr(m.lapic32, base, lo, 0) : lapicWrite(m.lapic32, base, LAPIC_ICR_LO, lo);
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
