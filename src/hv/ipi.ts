// Taking physical interrupts: the dispatcher of each pCPU's LAPIC (INIT/SIPI, then every deliverable vector,
// looked up in the vector table that handlers register into: irq-vectors.ts), and the pCPU's LAPIC as a
// passed-through guest sees it. A layer above everything it dispatches to; sending is ipi-send.ts, below.
import { DM_IPI_PATH, ipiPathIsPassthrough } from '../../shared/domain.js';
import {
  LAPIC_EOI, LAPIC_LVT_CMCI, LAPIC_LVT_ERROR, LAPIC_LVT_LINT0, LAPIC_LVT_LINT1, LAPIC_LVT_PMC, LAPIC_LVT_THERMAL, LAPIC_LVT_TIMER,
  LAPIC_SVR, LAPIC_TPR, APIC_MODE_XAPIC, ICR_SHORTHAND_MASK, ICR_SH_NONE,
} from '../../shared/lapic.js';
import { LAPIC_ICR_HI, LAPIC_SIM_ICR_HI_WRITER, LAPIC_SIM_ICR_HI_PC, ICR_HI_WRITER_NMI, ICR_HI_WRITER_USED, LAPIC_PEND_INIT, LAPIC_PEND_NMI } from '../../shared/lapic.js';
import { PC_PENDING, PC_STATE, PEND_IRQ, PS_WAIT_SIPI } from '../../shared/pcpu.js';
import { VCPU_STRIDE_WORDS, VC_IPI_SEQ } from '../../shared/vcpu.js';
import { lapicAck, lapicMode, lapicPendingDeliverable, lapicEoi, lapicRead, lapicReadX2apic, lapicTakeNmi, lapicTakePending, lapicWrite, lapicWriteX2apic, x2apicMsrToOffset } from '../hw/lapic.js';
import { REG_EAX, REG_EDX } from '../isa/opcodes.js';
import { PORT_GP, PORT_OK, type LapicPort } from '../isa/interp.js';
import { EV_HOST_APIC_TAMPER, EV_ICR_WINDOW, EV_IPI_SEND, ICRW_NMI, ICRW_OTHER, ICRW_REUSED, EV_PHYS_IRQ, PIRQ_HANDLED, PIRQ_REFLECTED, PIRQ_UNKNOWN, ipiTag } from '../trace/events.js';
import type { PcpuCtx } from './pcpu-ctx.js';
import { lapicRaisesLine, physSend, irqTagAcked, irqTagTake } from './ipi-send.js';
import { EVENT_CHECK_VECTOR, INVALIDATE_TLB_VECTOR, irqHandler, irqReflect, irqRegister, irqRegisterService, irqRunHandler } from './irq-vectors.js';
import { hvNmi } from './nmi.js';
import { hvInitSignal } from './init.js';

/**
 * Service this pCPU's physical LAPIC: NMI, INIT, then every deliverable vector. `guestMode`: a vCPU was in
 * guest mode when the signals arrived (an INIT is then a VM exit, not a reset or a held signal: init.ts).
 * Returns false when an INIT has reset the pCPU (it must stop running anything).
 */
export function physService(p: PcpuCtx, guestMode = false): boolean {
  const m = p.m, base = m.plapicBase(p.id);
  const pend = lapicTakePending(m.lapic32, base);
  // A core in wait-for-SIPI runs nothing, the hypervisor included: only a SIPI could restart it, at a vector
  // Xen never installed (a recorded SIPI is the sender's HOST_RESET finding).
  if (Atomics.load(m.pc32, p.base + PC_STATE) === PS_WAIT_SIPI) return false;
  // NMI first: IF and TPR do not hold it off (apic.md §4), and Xen's handler runs before anything else.
  if ((pend & LAPIC_PEND_NMI) !== 0 && lapicTakeNmi(m.lapic32, base)) hvNmi(p);
  if ((pend & LAPIC_PEND_INIT) !== 0 && !hvInitSignal(p, guestMode)) return false;
  for (;;) {
    const next = lapicPendingDeliverable(m.lapic32, base);
    if (next < 0) break;
    const pre = irqTagTake(m, p.id, next);
    const v = lapicAck(m.lapic32, base);
    const tag = irqTagAcked(m, p.id, next, pre, v);
    const h = irqHandler(v);
    if (h !== undefined) {
      p.emit(EV_PHYS_IRQ, v, PIRQ_HANDLED, tag);
      irqRunHandler(h, p);
    } else {
      const cur = p.cur;
      const reflect = cur >= 0 && ipiPathIsPassthrough(m.dm32[m.domainBase(p.curDomain) + DM_IPI_PATH]);
      p.emit(EV_PHYS_IRQ, v, reflect ? PIRQ_REFLECTED : PIRQ_UNKNOWN, tag);
      // The passthrough designs assume the vector reaches the guest: model that generously, so the rest
      // of the design can be judged, but the finding stands (only the hypervisor receives interrupts).
      if (reflect) irqReflect(p, cur, v, tag);
    }
    lapicEoi(m.lapic32, base);
  }
  return true;
}

/** Does pCPU `p`'s LAPIC raise its interrupt line now? (ipi-send.ts lapicRaisesLine) */
export function physWouldInterrupt(p: PcpuCtx): boolean {
  return lapicRaisesLine(p.m, p.id);
}

/**
 * The registers through which a guest holding the host LAPIC takes the hypervisor's interrupts from it
 * (HOST_APIC_TAMPER): TPR, EOI, SVR and the LVT entries, by xAPIC offset.
 */
function hostApicTamperRegister(offset: number): boolean {
  switch (offset) {
    case LAPIC_TPR: case LAPIC_EOI: case LAPIC_SVR: case LAPIC_LVT_CMCI: case LAPIC_LVT_TIMER: case LAPIC_LVT_THERMAL:
    case LAPIC_LVT_PMC: case LAPIC_LVT_LINT0: case LAPIC_LVT_LINT1: case LAPIC_LVT_ERROR: return true;
    default: return false;
  }
}

/** The pCPU's physical LAPIC as a passed-through guest sees it (CpuCore.lapic). */
export class PhysLapicPort implements LapicPort {
  constructor(private readonly p: PcpuCtx) {}

  apicRead(offset: number): number {
    return lapicRead(this.p.m.lapic32, this.p.m.plapicBase(this.p.id), offset);
  }

  apicWrite(offset: number, value: number): boolean {
    const p = this.p, m = p.m, w = m.plapicBase(p.id) + (LAPIC_SIM_ICR_HI_WRITER >> 2);
    const wpc = m.plapicBase(p.id) + (LAPIC_SIM_ICR_HI_PC >> 2);
    const eff = lapicWrite(m.lapic32, m.plapicBase(p.id), offset, value, p.params.lapic);
    // Outside xAPIC mode the page drops writes: nothing was written.
    if (hostApicTamperRegister(offset) && lapicMode(m.lapic32, m.plapicBase(p.id)) === APIC_MODE_XAPIC) this.tampered(offset, value, 0);
    if (offset === LAPIC_ICR_HI) {
      // Inside its NMI handler `cli` protects nothing: mark the write, so a window it opens names the NMI.
      m.lapic32[w] = (p.cur + 1) | (p.core.nmiBlocked ? ICR_HI_WRITER_NMI : 0);
      m.lapic32[wpc] = p.core.pc; // the interpreter stored the writing instruction's pc before calling us
    }
    if (eff.type !== 'ipi') return true;
    // A shorthand ignores ICR_HI: no destination field, no window (and ICR_HI stays unused for the next send).
    if ((eff.icrLo & ICR_SHORTHAND_MASK) !== ICR_SH_NONE) { this.guestSend(eff.icrLo, eff.icrHi); return true; }
    const writer = m.lapic32[w];
    const by = writer & ~(ICR_HI_WRITER_USED | ICR_HI_WRITER_NMI);
    const hiPc = by === 0 ? -1 : m.lapic32[wpc];
    m.lapic32[w] = writer | ICR_HI_WRITER_USED;
    const tag = this.guestSend(eff.icrLo, eff.icrHi);
    // The window between ICR_HI and ICR_LO (apic.md §5): say when this send used someone else's ICR_HI,
    // with the pc of the ICR_HI write it used as the event's pc (the send's own pc is its EV_IPI_SEND's).
    const nmi = (writer & ICR_HI_WRITER_NMI) !== 0 && !p.core.nmiBlocked ? ICRW_NMI : 0;
    if ((writer & ICR_HI_WRITER_USED) !== 0) p.emitPc(EV_ICR_WINDOW, tag, ICRW_REUSED | nmi, by, hiPc);
    else if ((writer & ~ICR_HI_WRITER_NMI) !== p.cur + 1) p.emitPc(EV_ICR_WINDOW, tag, ICRW_OTHER | nmi, by, hiPc);
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
    const offset = x2apicMsrToOffset(msr);
    if (hostApicTamperRegister(offset)) this.tampered(offset, lo, 1);
    if (eff.type === 'ipi') this.guestSend(eff.icrLo, eff.icrHi);
    return PORT_OK;
  }

  /**
   * A guest wrote a register the hypervisor's own interrupts depend on (HOST_APIC_TAMPER). A lower TPR, an
   * EOI or a re-enabled LAPIC may let a vector held in IRR through: raise the line then, as the LAPIC
   * re-evaluates PPR (the TPR is stored before IRR is read; a sender sets IRR before it reads TPR).
   */
  private tampered(offset: number, value: number, how: number): void {
    const p = this.p;
    p.emit(EV_HOST_APIC_TAMPER, offset, value, how);
    if (lapicRaisesLine(p.m, p.id)) Atomics.or(p.m.pc32, p.base + PC_PENDING, PEND_IRQ);
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



// EVENT_CHECK only forces the exit (softirqs run on the way back); INVALIDATE is not used. CALL_FUNCTION is
// ept-sync.ts's flush, the posted-interrupt vectors are posted.ts's.
function nothingToDo(): void { /* taking the vector was the point: the exit happened */ }
irqRegister(EVENT_CHECK_VECTOR, nothingToDo);
irqRegister(INVALIDATE_TLB_VECTOR, nothingToDo);
irqRegisterService(physService);
