// The virtual LAPIC of each vCPU (pages in MachineBuffers.lapics after the physical ones) and the
// `vlapic` IPI path: the guest's ICR write traps (APIC-access page or x2APIC MSR), the hypervisor routes it
// among the domain's vLAPICs, sets the target's IRR and kicks the target's pCPU (Xen vlapic_ipi ->
// vlapic_set_irq -> vcpu_kick, xen-sched-ipi.md §1.9, §2.1-2.3). Injection happens at VM entry.
import { exitReclassify } from './exits.js';
import { APIC_GFN_NUMBER, DM_FIRST_VCPU, DM_IPI_PATH, DM_LOWEST_PRIO_PREV, DM_NVCPUS, IPI_PATH_IPIV, IPI_PATH_POSTED, IPI_PATH_X2APIC_PASSTHROUGH, ipiPathHwApic, ipiPathIsPassthrough, ipiPathPosts } from '../../shared/domain.js';
import { piPost, piSync } from './posted.js';
import * as Mo from '../hw/mem-order.js';
import { vcpuInit, vcpuSipi } from './vcpu-ops.js';
import { APIC_BASE_EN, APIC_BASE_EXTD, ICR_DM_FIXED, ICR_DM_LOWEST, ICR_DM_MASK, LAPIC_PEND_NMI, LAPIC_SIM_PENDING } from '../../shared/lapic.js';
import { P2MT_APIC_ACCESS, p2mAttrType } from '../../shared/p2m.js';
import { FL_IF, RS_RUNNING, VC_DOMAIN, VCPU_STRIDE_WORDS, VC_ID, VC_IPI_SEQ, VC_NMI_FLAGS, VC_PCPU, VC_RUNSTATE, VNMI_FROM_WATCHDOG } from '../../shared/vcpu.js';
import { apicRouteIpi, type ApicBusTarget } from '../hw/apic-bus.js';
import {
  lapicAck, lapicAcceptInterrupt, lapicAcceptNmi, lapicEoi, lapicAcceptIpi, lapicApicBase, lapicBusView, lapicPendingDeliverable, lapicRead,
  lapicReadX2apic, lapicTakeNmi, lapicTakePending, lapicWrite, lapicWriteApicBase, lapicWriteX2apic, type LapicWriteEffect,
} from '../hw/lapic.js';
import { p2mGetAttr, PERM_X } from '../hw/ept.js';
import { EXIT_APIC_ACCESS, EXIT_EPT_VIOLATION, VEC_GP, VEC_NMI, guestDeliver, xlate } from '../isa/interp.js';
import { INSN_BYTES, OP_LD, OP_ST, OP_ST_SD, OP_ST_SI, OP_ST_W, REG_EAX, REG_ECX, REG_EDX, WIDE_INSN_BYTES } from '../isa/opcodes.js';
import { EV_IPI_COALESCED, EV_IPI_DELIVER, EV_IPI_SEND, EV_VNMI, VNMI_IPI, VNMI_WATCHDOG, ipiTag } from '../trace/events.js';
import { schedTickleTarget, schedWake } from './sched/sched.js';
import { hvKick, irqTagAcked, irqTagClaim, irqTagSettle, irqTagTake } from './ipi-send.js';
import { irqRegisterReflect } from './irq-vectors.js';
import type { PcpuCtx } from './pcpu-ctx.js';

export const MSR_APIC_BASE = 0x1b;
export const APIC_BASE_ADDR = 0xfee00000;

/** Make vCPU `v`'s new interrupt seen: wake it if blocked, kick its pCPU if it runs elsewhere. */
function vlapicKick(p: PcpuCtx, v: number): void {
  const m = p.m, b = v * VCPU_STRIDE_WORDS;
  const woke = schedWake(m, v);
  if (woke >= 0) { hvKick(p, schedTickleTarget(m, v, woke)); return; }
  if (Atomics.load(m.vc32, b + VC_RUNSTATE) === RS_RUNNING) hvKick(p, Atomics.load(m.vc32, b + VC_PCPU));
}

function note(p: PcpuCtx, v: number, vector: number, tag: number, r: string): void {
  if (r === 'coalesced') {
    const m = p.m;
    p.emitFor(m.vc32[v * VCPU_STRIDE_WORDS + VC_DOMAIN], m.vc32[v * VCPU_STRIDE_WORDS + VC_ID], EV_IPI_COALESCED, tag, vector, 0);
  }
}

/** A physical vector reflected to vCPU `v` (passthrough designs; see ipi.ts physService). */
export function vlapicAcceptReflected(p: PcpuCtx, v: number, vector: number, tag: number): void {
  const m = p.m, page = p.m.npcpus + v;
  const claimed = irqTagClaim(m, page, vector, tag);
  const r = lapicAcceptInterrupt(m.lapic32, m.vlapicBase(v), vector, false);
  irqTagSettle(m, page, vector, tag, claimed, r === 'latched');
  note(p, v, vector, tag, r);
}

/** The loaded vCPU wrote its virtual ICR (a trapped access): route and deliver (Xen vlapic_ipi). */
export function vlapicSend(p: PcpuCtx, icrLo: number, icrHi: number): void {
  const m = p.m, sender = p.cur, d = p.curDomain, db = m.domainBase(d);
  const tag = ipiTag(sender, m.vc32[sender * VCPU_STRIDE_WORDS + VC_IPI_SEQ]++);
  p.emit(EV_IPI_SEND, tag, icrLo, icrHi);
  const first = m.dm32[db + DM_FIRST_VCPU], n = m.dm32[db + DM_NVCPUS];
  const views: ApicBusTarget[] = [];
  for (let i = 0; i < n; i++) views.push(lapicBusView(m.lapic32, m.vlapicBase(first + i)));
  const targets = apicRouteIpi(icrLo >>> 0, icrHi >>> 0, sender - first, views, p.params.apicBus, m.dm32[db + DM_LOWEST_PRIO_PREV]);
  if ((icrLo & ICR_DM_MASK) === ICR_DM_LOWEST && targets.length > 0) m.dm32[db + DM_LOWEST_PRIO_PREV] = targets[0];
  const vector = icrLo & 0xff;
  const path = m.dm32[db + DM_IPI_PATH];
  const posts = path === IPI_PATH_POSTED || path === IPI_PATH_IPIV;
  for (const i of targets) {
    const v = first + i;
    const dm = icrLo & ICR_DM_MASK;
    if (posts && (dm === ICR_DM_FIXED || dm === ICR_DM_LOWEST) && vector >= 16) { piPost(p, v, vector, tag, false); continue; }
    const claimed = irqTagClaim(m, m.npcpus + v, vector, tag);
    const r = lapicAcceptIpi(m.lapic32, m.vlapicBase(v), icrLo, p.params.lapic);
    irqTagSettle(m, m.npcpus + v, vector, tag, claimed, r === 'latched');
    note(p, v, vector, tag, r);
    if (r === 'latched' || r === 'nmi') vlapicKick(p, v);
    else if (r === 'init' && v !== sender) vcpuInit(p, v);
    else if (r === 'sipi') vcpuSipi(p, v);
  }
}

/**
 * Before VM entry: inject a pending NMI, else the highest deliverable vector when IF=1 (Xen
 * vmx_intr_assist). Returns false if delivery triple-faulted (the caller crashes the domain).
 */
export function vlapicInject(p: PcpuCtx): boolean {
  const m = p.m, c = p.core, v = p.cur, base = m.vlapicBase(v);
  // The summary word is exchanged only when set: a plain read first (exact under Machine.exclusive; under
  // threads an Atomics load, as a set bit is always followed by a kick that brings the pCPU back here).
  const pend = Mo.ld(m.lapic32, base + (LAPIC_SIM_PENDING >>> 2), m.exclusive) === 0 ? 0 : lapicTakePending(m.lapic32, base);
  if (pend !== 0) p.virqCheck = true;
  if (ipiPathPosts(m.dm32[m.domainBase(p.curDomain) + DM_IPI_PATH]) && piSync(p, v)) p.virqCheck = true;
  // The NMI latch is set before the summary bit (lapicAcceptNmi), so only a summary with NMI can raise one;
  // one that waits for blocking to end is remembered in nmiWindow (Xen's nmi_pending and its NMI window).
  if ((pend & LAPIC_PEND_NMI) !== 0) c.nmiWindow = true;
  if (!p.virqCheck) return true;
  if (c.nmiWindow && !c.nmiBlocked) {
    // Virtual NMIs obey blocking until the handler's IRET; IF has no say. One waits latched, more are lost.
    c.nmiWindow = false;
    if (lapicTakeNmi(m.lapic32, base)) return deliverNmi(p);
  }
  if ((c.flags & FL_IF) === 0) {
    // Blocked by IF: ask for an interrupt window, so the guest exits as soon as it sets IF (vmx_intr_assist).
    // Nothing else to look at until then: the window's exit, a new arrival (the summary word) or an EOI or
    // TPR write sets virqCheck again, so the IRR is not scanned at every step while IF stays clear.
    c.irqWindow = lapicPendingDeliverable(m.lapic32, base) >= 0;
    p.virqCheck = false;
    return true;
  }
  c.irqWindow = false;
  const next = lapicPendingDeliverable(m.lapic32, base);
  if (next < 0) { p.virqCheck = false; return true; }
  const pre = irqTagTake(m, m.npcpus + v, next);
  const vec = lapicAck(m.lapic32, base);
  const tag = irqTagAcked(m, m.npcpus + v, next, pre, vec);
  // Passthrough designs: the guest's EOI goes to the physical LAPIC, never to this one, so a reflected
  // vector is retired at once (as if auto-EOI) or it would block its priority class for good.
  if (ipiPathIsPassthrough(m.dm32[m.domainBase(p.curDomain) + DM_IPI_PATH])) lapicEoi(m.lapic32, base);
  return deliver(p, vec, tag);
}

/** Inject a virtual NMI through IDT vector 2; blocking lasts until the guest's IRET (CpuCore.nmiBlocked). */
function deliverNmi(p: PcpuCtx): boolean {
  const m = p.m, vb = p.cur * VCPU_STRIDE_WORDS;
  const fromWatchdog = (m.vc32[vb + VC_NMI_FLAGS] & VNMI_FROM_WATCHDOG) !== 0;
  m.vc32[vb + VC_NMI_FLAGS] &= ~VNMI_FROM_WATCHDOG;
  p.emit(EV_VNMI, fromWatchdog ? VNMI_WATCHDOG : VNMI_IPI, p.core.pc, 0);
  p.hvCycles(p.params.costs.exception);
  if (guestDeliver(p.core, VEC_NMI, p.core.pc) !== 0) return false;
  p.core.nmiBlocked = true;
  return true;
}

function deliver(p: PcpuCtx, vec: number, tag: number): boolean {
  p.emit(EV_IPI_DELIVER, tag, vec, p.id);
  p.hvCycles(p.params.costs.exception);
  return guestDeliver(p.core, vec, p.core.pc) === 0;
}

/**
 * The guest's own NMI watchdog (domain key guest_nmi_insns: Linux's hard-lockup detector on a vPMU counter)
 * fired for the loaded vCPU: a virtual NMI at its vLAPIC, as Xen's vPMU injects for a counter overflow.
 */
export function vlapicWatchdogNmi(p: PcpuCtx): void {
  const m = p.m, v = p.cur;
  if (lapicAcceptNmi(m.lapic32, m.vlapicBase(v)) === 'nmi') m.vc32[v * VCPU_STRIDE_WORDS + VC_NMI_FLAGS] |= VNMI_FROM_WATCHDOG;
  p.virqCheck = true;
}

/** hlt with IF=1: is an interrupt already deliverable (then hlt returns at once, Xen hvm_hlt)? */
export function vlapicHasDeliverable(p: PcpuCtx, v: number): boolean {
  // Posted paths: what sits in PIR counts too (Xen's block path syncs PIR to IRR before it looks).
  if (ipiPathPosts(p.m.dm32[p.m.domainBase(p.curDomain) + DM_IPI_PATH])) piSync(p, v);
  return lapicPendingDeliverable(p.m.lapic32, p.m.vlapicBase(v)) >= 0;
}

function applyEffect(p: PcpuCtx, eff: LapicWriteEffect): boolean {
  if (eff.type === 'gp') return false;
  if (eff.type === 'ipi') vlapicSend(p, eff.icrLo, eff.icrHi);
  // An EOI or TPR change may unmask a vector waiting in IRR.
  p.virqCheck = true;
  return true;
}

/**
 * An EPT violation on the APIC-access page: emulate the one instruction (Xen's hvmemul on the
 * vlapic MMIO handler). Returns false when the access was not to an APIC-access page.
 * Accepts 32-bit loads and stores (register or immediate, short or wide); anything else gets #GP.
 */
export function vlapicMmioExit(p: PcpuCtx): boolean {
  const m = p.m, c = p.core;
  const attr = p2mGetAttr(m.p2m, c.p2mRoot, c.exitGpa >>> 12);
  const hwApic = ipiPathHwApic(m.dm32[m.domainBase(p.curDomain) + DM_IPI_PATH]);
  if (p2mAttrType(attr) !== P2MT_APIC_ACCESS && !(hwApic && (c.exitGpa >>> 12) === APIC_GFN_NUMBER)) return false;
  exitReclassify(p, EXIT_EPT_VIOLATION, EXIT_APIC_ACCESS);
  p.hvCycles(p.params.costs.vmexit);
  const h = xlate(c, c.pc, PERM_X);
  if (h < 0) return false;
  const w0 = m.mem32[h >> 2], w1 = m.mem32[(h >> 2) + 1];
  const op = w0 & 0x7f, a = (w0 >>> 7) & 15, off = c.exitGpa & 0xfff;
  const base = m.vlapicBase(p.cur);
  let ok = true;
  if (op === OP_LD) c.R[a] = lapicRead(m.lapic32, base, off);
  else if (op === OP_ST) ok = applyEffect(p, lapicWrite(m.lapic32, base, off, c.R[a], p.params.lapic));
  else if (op === OP_ST_SD) ok = applyEffect(p, lapicWrite(m.lapic32, base, off, w1, p.params.lapic));
  else if (op === OP_ST_SI) ok = applyEffect(p, lapicWrite(m.lapic32, base, off, w0 >> 16, p.params.lapic));
  else if (op === OP_ST_W) {
    // The wide store's value is in its tail slot (the interpreter read it before it took this exit).
    const ht = xlate(c, c.pc + 8, PERM_X);
    if (ht < 0) return false;
    ok = applyEffect(p, lapicWrite(m.lapic32, base, off, m.mem32[(ht >> 2) + 1], p.params.lapic));
  } else ok = false;
  if (!ok) { p.injectFault(VEC_GP); return true; }
  c.pc += op === OP_ST_W ? WIDE_INSN_BYTES : INSN_BYTES; // Safe: the emulated mov
  return true;
}

/** rdmsr/wrmsr exits for the vLAPIC: IA32_APIC_BASE and the x2APIC range. Returns false if not ours. */
export function vlapicMsrExit(p: PcpuCtx, write: boolean): boolean {
  const m = p.m, c = p.core, R = c.R, base = m.vlapicBase(p.cur);
  const msr = R[REG_ECX] >>> 0;
  if (msr === MSR_APIC_BASE) {
    if (!write) { R[REG_EAX] = lapicApicBase(m.lapic32, base); R[REG_EDX] = 0; }
    else {
      // Relocating the APIC page is not modelled, and bits 0-7 and 9 are reserved: both #GP.
      if ((R[REG_EAX] & 0xfffff2ff) !== (APIC_BASE_ADDR | 0) || R[REG_EDX] !== 0) { p.injectFault(VEC_GP); return true; }
      const eff = lapicWriteApicBase(m.lapic32, base, (R[REG_EAX] & APIC_BASE_EN) !== 0, (R[REG_EAX] & APIC_BASE_EXTD) !== 0);
      if (eff.type === 'gp') { p.injectFault(VEC_GP); return true; }
      if (m.dm32[m.domainBase(p.curDomain) + DM_IPI_PATH] === IPI_PATH_X2APIC_PASSTHROUGH) c.x2apicPassthrough = (R[REG_EAX] & APIC_BASE_EXTD) !== 0 || c.x2apicPassthrough;
    }
    c.pc += INSN_BYTES; // Safe: rdmsr/wrmsr
    return true;
  }
  if (msr < 0x800 || msr > 0x8ff) return false;
  let ok: boolean;
  if (write) ok = applyEffect(p, lapicWriteX2apic(m.lapic32, base, msr, R[REG_EAX], R[REG_EDX], p.params.lapic));
  else {
    const r = lapicReadX2apic(m.lapic32, base, msr);
    ok = r.type !== 'gp';
    if (r.type === 'value') { R[REG_EAX] = r.lo | 0; R[REG_EDX] = r.hi | 0; }
  }
  if (!ok) { p.injectFault(VEC_GP); return true; }
  c.pc += INSN_BYTES; // Safe: rdmsr/wrmsr
  return true;
}

// A vector the hypervisor does not handle, on a passthrough design, is handed to the running vCPU
// (irq-vectors.ts; the finding IPI_UNKNOWN_VECTOR stands).
irqRegisterReflect(vlapicAcceptReflected);
