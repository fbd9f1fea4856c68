// Posted interrupts and the hardware IPI paths (`posted`, `ipiv`, `avic`).
//
// posted (VMX posted interrupts, xen-sched-ipi.md §2.5): the sender still traps, but delivery sets a bit
//   in the target's PIR and ON, and notifies the target's pCPU with POSTED_INTR_VECTOR; a pCPU in guest
//   mode folds PIR into the vIRR without a VM exit. A blocked target is woken (Xen vcpu_unblock).
// ipiv (Intel IPI virtualization, apic.md §6c): the CPU itself completes fixed, physical, unicast sends
//   from the guest's ICR write — look up the target in the PID table, post, notify — with no exit for
//   either side; a blocked target gets the wake-up vector, whose hypervisor handler wakes it. Everything
//   else (other modes, logical, shorthands, broadcast) traps like vlapic.
// avic (AMD AVIC, apic.md §6d): for a running target the CPU sets the IRR bit in its vAPIC page and rings
//   its pCPU's doorbell (no exit); a target not running gives the sender an incomplete-IPI exit and the
//   hypervisor delivers it (here: the vlapic emulation, which wakes or kicks).
// Simplifications: the AVIC doorbell is modelled as the posted-interrupt notification vector; SN is never
// set (Xen without assigned devices never sets it, §2.5), so a notification may reach a pCPU the target has
// left, where it is harmless.
import { DM_FIRST_VCPU, DM_IPI_PATH, DM_NVCPUS, IPI_PATH_AVIC, IPI_PATH_IPIV, ipiPathPosts } from '../../shared/domain.js';
import {
  APIC_MODE_X2APIC, ICR_DEST_LOGICAL, ICR_DM_FIXED, ICR_DM_MASK, ICR_SHORTHAND_MASK, LAPIC_BITMAP_REGS, LAPIC_EOI, LAPIC_ICR_HI,
  LAPIC_ICR_LO, LAPIC_IRR, LAPIC_PEND_FIXED, LAPIC_SIM_PENDING, LAPIC_SLOT_BYTES,
} from '../../shared/lapic.js';
import { APIC_BROADCAST_XAPIC as APIC_BROADCAST_XAPIC_ID } from '../hw/apic-bus.js';
import { PC_PENDING, PEND_IRQ, PEND_SYNC } from '../../shared/pcpu.js';
import { PI_ON, RS_BLOCKED, RS_RUNNING, VCPU_STRIDE_WORDS, VC_DOMAIN, VC_ID, VC_IPI_SEQ, VC_PCPU, VC_PIR, VC_PI_CTL, VC_RUNSTATE } from '../../shared/vcpu.js';
import {
  lapicAcceptInterrupt, lapicAcceptIpi, lapicEoi, lapicMode, lapicPendingDeliverable, lapicRead, lapicReadX2apic, lapicWrite,
  lapicWriteX2apic,
} from '../hw/lapic.js';
import { PORT_EXIT, PORT_GP, PORT_OK, type LapicPort } from '../isa/interp.js';
import { REG_EAX, REG_EDX } from '../isa/opcodes.js';
import { EV_IPI_COALESCED, EV_IPI_SEND, ipiTag } from '../trace/events.js';
import { schedTickleTarget, schedWake } from './sched/sched.js';
import { hvKick, hvSendIpi, irqTagClaim, irqTagSettle, irqTagTake } from './ipi-send.js';
import { EVENT_CHECK_VECTOR, irqRegister, PI_WAKEUP_VECTOR, POSTED_INTR_VECTOR } from './irq-vectors.js';
import type { PcpuCtx } from './pcpu-ctx.js';

function coalesced(p: PcpuCtx, v: number, vector: number, tag: number): void {
  const m = p.m, b = v * VCPU_STRIDE_WORDS;
  p.emitFor(m.vc32[b + VC_DOMAIN], m.vc32[b + VC_ID], EV_IPI_COALESCED, tag, vector, 0);
}

/**
 * Post `vector` to vCPU v (Xen vmx_deliver_posted_intr): PIR bit, then ON, then wake or notify.
 * `hw`: the CPU posts (ipiv) — a blocked target is woken through the wake-up vector's handler on its
 * pCPU rather than by the sender's hypervisor.
 */
export function piPost(p: PcpuCtx, v: number, vector: number, tag: number, hw: boolean): void {
  const m = p.m, b = v * VCPU_STRIDE_WORDS, page = m.pirTagPage(v);
  // PIR bits carry tags of their own; piSync moves each to the vIRR slot (coalescing there if needed).
  const claimed = irqTagClaim(m, page, vector, tag);
  const bit = 1 << (vector & 31);
  const old = Atomics.or(m.vc32, b + VC_PIR + (vector >>> 5), bit);
  irqTagSettle(m, page, vector, tag, claimed, (old & bit) === 0);
  if ((old & bit) !== 0) {
    coalesced(p, v, vector, tag);
    return;
  }
  const prev = Atomics.or(m.vc32, b + VC_PI_CTL, PI_ON);
  const rs = Atomics.load(m.vc32, b + VC_RUNSTATE);
  if (rs === RS_BLOCKED) {
    if (hw) { hvSendIpi(p, Atomics.load(m.vc32, b + VC_PCPU), PI_WAKEUP_VECTOR); return; }
    const woke = schedWake(m, v);
    if (woke >= 0) {
      const t = schedTickleTarget(m, v, woke);
      if (t !== p.id) hvSendIpi(p, t, EVENT_CHECK_VECTOR);
    }
    return;
  }
  if ((prev & PI_ON) !== 0) return; // a notification is already outstanding
  if (rs === RS_RUNNING) {
    const q = Atomics.load(m.vc32, b + VC_PCPU);
    if (q !== p.id) hvSendIpi(p, q, POSTED_INTR_VECTOR);
  }
}

/** Fold vCPU v's PIR into its vIRR if ON is set (vmx_sync_pir_to_irr: read ON, then clear it, then move the bits). */
export function piSync(p: PcpuCtx, v: number): boolean {
  const m = p.m, b = v * VCPU_STRIDE_WORDS;
  if ((Atomics.load(m.vc32, b + VC_PI_CTL) & PI_ON) === 0) return false;
  Atomics.and(m.vc32, b + VC_PI_CTL, ~PI_ON);
  const base = m.vlapicBase(v), pirPage = m.pirTagPage(v), irrPage = m.npcpus + v;
  for (let w = 0; w < 8; w++) {
    let bits = Atomics.load(m.vc32, b + VC_PIR + w);
    while (bits !== 0) {
      const k = 31 - Math.clz32(bits);
      bits &= ~(1 << k);
      const vec = w * 32 + k;
      // Tag first, then the PIR bit (as receivers take a vIRR tag before the ack): a post of the same
      // vector in between sees the bit still set and counts itself coalesced into this one.
      const tag = irqTagTake(m, pirPage, vec);
      Atomics.and(m.vc32, b + VC_PIR + w, ~(1 << k));
      const claimed = tag !== 0 && irqTagClaim(m, irrPage, vec, tag);
      const r = lapicAcceptInterrupt(m.lapic32, base, vec, false);
      if (tag !== 0) irqTagSettle(m, irrPage, vec, tag, claimed, r === 'latched');
      if (r === 'coalesced' && tag !== 0) coalesced(p, v, vec, tag);
    }
  }
  return true;
}

/** The PI wake-up vector's handler: wake the blocked vCPUs of this pCPU with ON set (pi_wakeup_interrupt). */
export function piWakeupHandler(p: PcpuCtx): void {
  const m = p.m;
  for (let v = 0; v < m.nvcpus; v++) {
    const b = v * VCPU_STRIDE_WORDS;
    if (Atomics.load(m.vc32, b + VC_PCPU) !== p.id) continue;
    if ((Atomics.load(m.vc32, b + VC_PI_CTL) & PI_ON) === 0) continue;
    const home = schedWake(m, v);
    // runq_tickle from the handler: if this pCPU is busy, an idle one of v's affinity should pull it.
    if (home >= 0) hvKick(p, schedTickleTarget(m, v, home));
  }
}

/**
 * A notification (or AVIC doorbell) reached this pCPU while its vCPU ran in guest mode: the CPU folds
 * PIR in without a VM exit. No exit was counted or charged for it (piNotificationOnly); when something
 * else was pending too, the exit that was is real.
 */
export function piNotificationInGuest(p: PcpuCtx): void {
  if (p.cur >= 0) piSync(p, p.cur);
  p.virqCheck = true;
}

/**
 * Is all that is pending on this pCPU a posted-interrupt notification (or AVIC doorbell) for the vCPU it
 * runs, of a domain that posts? The CPU takes that in guest mode without a VM exit: it recognises the
 * notification vector, acknowledges it and processes PIR (SDM Vol. 3 §30.6); any other pending interrupt,
 * an NMI, INIT or SIPI, or a kick exits. The pCPU asks before it counts and charges an external-interrupt
 * exit (pcpu-loop.ts), so such a notification costs no exit cycles. `pend`: the PC_PENDING bits taken.
 */
export function piNotificationOnly(p: PcpuCtx, pend = Atomics.load(p.m.pc32, p.base + PC_PENDING)): boolean {
  const m = p.m;
  if ((pend & ~PEND_SYNC) !== PEND_IRQ || p.cur < 0 || !ipiPathPosts(m.dm32[m.domainBase(p.curDomain) + DM_IPI_PATH])) return false;
  const regs = m.lapic32, base = m.plapicBase(p.id);
  if ((Atomics.load(regs, base + (LAPIC_SIM_PENDING >>> 2)) & ~LAPIC_PEND_FIXED) !== 0) return false;
  if (lapicPendingDeliverable(regs, base) !== POSTED_INTR_VECTOR) return false;
  for (let i = 0; i < LAPIC_BITMAP_REGS; i++) {
    let w = Atomics.load(regs, base + ((LAPIC_IRR + i * LAPIC_SLOT_BYTES) >>> 2));
    if (i === POSTED_INTR_VECTOR >>> 5) w &= ~(1 << (POSTED_INTR_VECTOR & 31));
    if (w !== 0) return false;
  }
  return true;
}

/** Is this ICR a fixed, physical, no-shorthand unicast (what IPIv and AVIC complete in hardware)? */
export function icrIsFixedPhysicalUnicast(icrLo: number, dest: number, x2apic: boolean): boolean {
  if ((icrLo & ICR_DM_MASK) !== ICR_DM_FIXED) return false;
  if ((icrLo & ICR_DEST_LOGICAL) !== 0 || (icrLo & ICR_SHORTHAND_MASK) !== 0) return false;
  return x2apic ? dest !== -1 : dest !== APIC_BROADCAST_XAPIC_ID;
}

/**
 * The vCPU's own vLAPIC page as the CPU virtualizes it for ipiv and avic: reads, EOI and most writes
 * complete without an exit; an ICR send completes in hardware when the path allows it, else exits.
 */
export class VirtLapicPort implements LapicPort {
  constructor(private readonly p: PcpuCtx) {}

  private get base(): number { return this.p.m.vlapicBase(this.p.cur); }

  apicRead(offset: number): number { return lapicRead(this.p.m.lapic32, this.base, offset); }

  apicWrite(offset: number, value: number): boolean {
    const p = this.p, m = p.m;
    if (offset === LAPIC_EOI) { lapicEoi(m.lapic32, this.base); p.virqCheck = true; return true; }
    if (offset !== LAPIC_ICR_LO) { lapicWrite(m.lapic32, this.base, offset, value); return true; }
    const dest = lapicRead(m.lapic32, this.base, LAPIC_ICR_HI) >>> 24;
    if (!icrIsFixedPhysicalUnicast(value, dest, false)) return false;
    if (!this.hwSend(value, dest)) return false;
    lapicWrite(m.lapic32, this.base, LAPIC_ICR_LO, value); // store ICR; the send is done
    return true;
  }

  x2apicRdmsr(msr: number): boolean {
    const r = lapicReadX2apic(this.p.m.lapic32, this.base, msr);
    if (r.type === 'gp') return false;
    this.p.core.R[REG_EAX] = r.lo | 0;
    this.p.core.R[REG_EDX] = r.hi | 0;
    return true;
  }

  x2apicWrmsr(msr: number, lo: number, hi: number): number {
    const p = this.p, m = p.m;
    if (lapicMode(m.lapic32, this.base) !== APIC_MODE_X2APIC) return PORT_GP;
    if (msr === 0x80b) {
      if (lo !== 0 || hi !== 0) return PORT_GP;
      lapicEoi(m.lapic32, this.base); p.virqCheck = true; return PORT_OK;
    }
    if (msr !== 0x830) return lapicWriteX2apic(m.lapic32, this.base, msr, lo, hi).type === 'gp' ? PORT_GP : PORT_OK;
    if (!icrIsFixedPhysicalUnicast(lo, hi, true)) return PORT_EXIT;
    if (!this.hwSend(lo, hi)) return PORT_EXIT;
    return PORT_OK;
  }

  /** Complete a unicast fixed IPI in "hardware". False: the CPU cannot, the write must exit. */
  private hwSend(icrLo: number, dest: number): boolean {
    const p = this.p, m = p.m, db = m.domainBase(p.curDomain);
    const path = m.dm32[db + DM_IPI_PATH];
    const first = m.dm32[db + DM_FIRST_VCPU], n = m.dm32[db + DM_NVCPUS];
    // Virtual APIC IDs are 2n (Xen); the PID table (IPIv) / physical ID table (AVIC) is indexed by them.
    if ((dest & 1) !== 0 || (dest >>> 1) >= n) return false;
    const v = first + (dest >>> 1);
    const vector = icrLo & 0xff;
    if (vector < 16) return false;
    if (path === IPI_PATH_AVIC && Atomics.load(m.vc32, v * VCPU_STRIDE_WORDS + VC_RUNSTATE) !== RS_RUNNING) {
      return false; // AVIC_INCOMPLETE_IPI: IsRunning clear
    }
    const sender = p.cur;
    const tag = ipiTag(sender, m.vc32[sender * VCPU_STRIDE_WORDS + VC_IPI_SEQ]++);
    p.emit(EV_IPI_SEND, tag, icrLo, dest);
    p.hvCycles(p.params.costs.ipi_hw_send);
    if (path === IPI_PATH_IPIV) { piPost(p, v, vector, tag, true); return true; }
    // AVIC: IRR in the target's backing page, then the doorbell to the pCPU it runs on.
    const page = m.npcpus + v;
    const claimed = irqTagClaim(m, page, vector, tag);
    const r = lapicAcceptIpi(m.lapic32, m.vlapicBase(v), icrLo, p.params.lapic);
    irqTagSettle(m, page, vector, tag, claimed, r === 'latched');
    if (r === 'coalesced') coalesced(p, v, vector, tag);
    const q = Atomics.load(m.vc32, v * VCPU_STRIDE_WORDS + VC_PCPU);
    if (q !== p.id) hvSendIpi(p, q, POSTED_INTR_VECTOR);
    return true;
  }
}

// The two physical vectors of posted interrupts (irq-vectors.ts). A notification that arrives while the
// running vCPU's domain does not post (it arrived late, after a switch) has nothing to sync.
function piNotificationTaken(p: PcpuCtx): void {
  if (p.cur >= 0 && ipiPathPosts(p.m.dm32[p.m.domainBase(p.curDomain) + DM_IPI_PATH])) piNotificationInGuest(p);
}
irqRegister(POSTED_INTR_VECTOR, piNotificationTaken);
irqRegister(PI_WAKEUP_VECTOR, piWakeupHandler);
