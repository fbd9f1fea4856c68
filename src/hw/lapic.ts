// Local APIC register semantics over one register page (layout and field constants: shared/lapic.ts).
// Every function takes the page's Int32Array and the word index `base` where the page starts, so the same
// code drives a physical LAPIC (a pCPU's page) and a virtual one (a vCPU's page) in a SharedArrayBuffer.
// Sources: ../shared/reference/apic.md §1 (registers, x2APIC rules), §2 (ICR), §4 (receiver), §7 (vectors);
// Xen `vlapic_reg_write`, `guest_wrmsr_x2apic`, `guest_rdmsr_x2apic`, `vlapic_set_irq`, `vlapic_error`,
// `vlapic_do_init` (../shared/reference/xen-sched-ipi.md §2). Where implementations disagree ([DIV]) the
// behaviour is a LapicOptions field whose default is Xen's.
//
// Concurrency: the owner (the thread running this LAPIC's CPU) calls everything except the accept functions,
// which senders call from any thread. IRR/TMR/ISR bits change only through Atomics.or/Atomics.and on their
// 32-bit word, so a sender's bit can never be lost to the owner's read-modify-write of the same word.
// Registers return unsigned 32-bit values; stores go through Int32Array and wrap as usual.
//
// Simplified: the timer does not count here (LAPIC_TIMER_CCR is whatever the timer model stores), no APR or
// remote read (P6), no ESR "illegal register address", no LVT delivery other than LVT Error, no SMM.
import {
  APIC_BASE_BSP, APIC_BASE_EN, APIC_BASE_EXTD, APIC_FIRST_LEGAL_VECTOR, APIC_MODE_DISABLED, APIC_MODE_X2APIC,
  APIC_MODE_XAPIC, ESR_RECV_ILLEGAL_VECTOR, ESR_SEND_ILLEGAL_VECTOR, ICR_BUSY, ICR_DM_EXTINT, ICR_DM_FIXED,
  ICR_DM_INIT, ICR_DM_LOWEST, ICR_DM_MASK, ICR_DM_NMI, ICR_DM_SIPI, ICR_HI_XAPIC_DEST_MASK, ICR_LEVEL_ASSERT,
  ICR_SH_SELF, ICR_TRIGGER_LEVEL, ICR_VECTOR_MASK, ICR_X2APIC_VALID, LAPIC_ARCH_END, LAPIC_BITMAP_REGS,
  LAPIC_DFR, LAPIC_EOI, LAPIC_ESR, LAPIC_ICR_HI, LAPIC_ICR_LO, LAPIC_ID, LAPIC_INIT_STATE_MASK, LAPIC_IRR,
  LAPIC_ISR, LAPIC_LDR, LAPIC_LVT_CMCI, LAPIC_LVT_ERROR, LAPIC_LVT_LINT0, LAPIC_LVT_LINT1, LAPIC_LVT_PMC,
  LAPIC_LVT_THERMAL, LAPIC_LVT_TIMER, LAPIC_PAGE_WORDS, LAPIC_PEND_FIXED, LAPIC_PEND_INIT, LAPIC_PEND_NMI,
  LAPIC_PEND_SIPI, LAPIC_PPR, LAPIC_RUN, LAPIC_SELF_IPI, LAPIC_SIM_BSP, LAPIC_SIM_ESR_PENDING,
  LAPIC_SIM_INIT_STATE, LAPIC_SIM_INITIAL_ID, LAPIC_SIM_MODE, LAPIC_SIM_NMI_PENDING, LAPIC_SIM_PENDING,
  LAPIC_SIPI_RECEIVED, LAPIC_SIPI_VECTOR_SHIFT, LAPIC_SLOT_BYTES, LAPIC_SVR, LAPIC_TIMER_CCR, LAPIC_TIMER_DCR,
  LAPIC_TIMER_ICR, LAPIC_TMR, LAPIC_TPR, LAPIC_VER, LAPIC_WAIT_FOR_SIPI, LVT_DELIVERY_STATUS, LVT_DM_MASK,
  LVT_MASKED, LVT_POLARITY, LVT_REMOTE_IRR, LVT_TIMER_MODE_MASK, LVT_TIMER_ONESHOT, LVT_TIMER_PERIODIC,
  LVT_TIMER_TSC_DEADLINE, LVT_TRIGGER_LEVEL, LVT_VECTOR_MASK, SVR_ENABLE, SVR_EOI_BROADCAST_SUPPRESS,
  SVR_FOCUS_DISABLE, SVR_VECTOR_MASK, X2APIC_MSR_FIRST, X2APIC_MSR_LAST,
} from '../../shared/lapic.js';
import { assert } from '../errors.js';
import { type ApicBusTarget, x2apicLdrFromId } from './apic-bus.js';

// ---- Options ----
/**
 * Illegal vectors 0-15 in fixed / lowest-priority messages ([DIV], apic.md §4 "Illegal vectors"):
 * - 'xen': the sender sets ESR bit 5 and sends nothing; anything arriving with one (LVT, MSI) sets ESR bit 6
 *   at the receiver and is not latched (`vlapic_ipi`, `vlapic_set_irq`). Default.
 * - 'kvm': no ESR bit anywhere; the IPI is sent and IRR[v] is set, never dispatched (class 0 <= PPR).
 * - 'sdm': the sender sets bit 5 AND the message is transmitted; the receiver sets bit 6 and drops it
 *   (Bochs at the receiver). Whether a send-illegal IPI is still transmitted is [U] in the sheet.
 */
export type LapicIllegalVectorPolicy = 'xen' | 'kvm' | 'sdm';
/**
 * Fixed interrupts to a software-disabled APIC ([DIV] §4): 'drop' (Xen, KVM; default) or 'latch' (QEMU: IRR
 * set, not dispatched until re-enabled).
 */
export type LapicSoftDisabledPolicy = 'drop' | 'latch';
/**
 * IPI trigger ([DIV] §4): 'edge' (Xen and P4+: every IPI is edge; default) or 'icr' (KVM: level sets TMR,
 * level-deassert fixed IPIs are dropped).
 */
export type LapicIpiTriggerPolicy = 'edge' | 'icr';
/** Bit 12 in an x2APIC ICR write ([DIV] §2): 'gp' (Xen, SDM; default) or 'clear' (KVM clears it silently). */
export type LapicX2apicBusyPolicy = 'gp' | 'clear';
/** ICR_HI bits 23:0 on an xAPIC write (vector 9, [DIV]): 'mask' (Xen, KVM; read back as 0; default) or 'keep' (AMD AVIC). */
export type LapicIcrHiPolicy = 'mask' | 'keep';
/** xAPIC ID writes (model-specific, §4 "xAPIC ID writes"): 'store' (Xen, KVM; default) or 'ignore' (read-only since Nehalem). */
export type LapicXapicIdPolicy = 'store' | 'ignore';
/**
 * 1- and 2-byte xAPIC MMIO accesses within one register ([DIV] §1): 'xen' reads the bytes and does a
 * read-modify-write of the register (default); 'kvm' reads the bytes and drops the write; 'qemu' reads 0
 * and drops the write. Accesses that cross bytes 4-15 of a slot are undefined (SDM): read 0, write dropped.
 */
export type LapicNarrowAccessPolicy = 'xen' | 'kvm' | 'qemu';
/** ICR delivery mode 111 (ExtINT) (§2 "Unusual modes"): 'crash' (Xen crashes the domain; default) or 'ignore' (KVM). */
export type LapicExtIntPolicy = 'crash' | 'ignore';

export interface LapicOptions {
  readonly illegalVector: LapicIllegalVectorPolicy;
  readonly softDisabledFixed: LapicSoftDisabledPolicy;
  readonly ipiTrigger: LapicIpiTriggerPolicy;
  readonly x2apicIcrBusy: LapicX2apicBusyPolicy;
  readonly icrHiLowBits: LapicIcrHiPolicy;
  readonly xapicIdWrite: LapicXapicIdPolicy;
  readonly narrowAccess: LapicNarrowAccessPolicy;
  readonly extIntIpi: LapicExtIntPolicy;
}

/** Xen's behaviour for every [DIV] (see each type for the fact-sheet reference). */
export const LAPIC_DEFAULTS: LapicOptions = Object.freeze({
  illegalVector: 'xen', softDisabledFixed: 'drop', ipiTrigger: 'edge', x2apicIcrBusy: 'gp',
  icrHiLowBits: 'mask', xapicIdWrite: 'store', narrowAccess: 'xen', extIntIpi: 'crash',
});

// ---- Results ----
/** What a register write asks of the caller. Guest faults are results, never exceptions (STYLE.md §13). */
export type LapicWriteEffect =
  | { readonly type: 'none' }
  /** The access raises #GP in the guest (x2APIC rules, §1). */
  | { readonly type: 'gp' }
  /** Send this IPI now (route it with apicRouteIpi). Both halves unsigned; icrHi is the raw ICR_HI / x2APIC destination. */
  | { readonly type: 'ipi'; readonly icrLo: number; readonly icrHi: number }
  /** EOI of a level-triggered vector: broadcast EOI to the I/O APICs (SVR bit 12 clear). */
  | { readonly type: 'eoi-broadcast'; readonly vector: number }
  /** Timer registers changed: re-arm the timer model. */
  | { readonly type: 'timer' };

export const LAPIC_EFFECT_NONE: LapicWriteEffect = Object.freeze({ type: 'none' });
export const LAPIC_EFFECT_GP: LapicWriteEffect = Object.freeze({ type: 'gp' });
export const LAPIC_EFFECT_TIMER: LapicWriteEffect = Object.freeze({ type: 'timer' });

/** RDMSR of an x2APIC register: #GP, or the 64-bit value as two unsigned halves. */
export type LapicMsrRead =
  | { readonly type: 'gp' }
  | { readonly type: 'value'; readonly lo: number; readonly hi: number };
const LAPIC_MSR_GP: LapicMsrRead = Object.freeze({ type: 'gp' });

/**
 * What the receiving LAPIC did with a message:
 * 'latched' new IRR bit; 'coalesced' already pending (IRR bit or NMI latch already set, §4 "Coalescing");
 * 'disabled' dropped by a disabled APIC; 'illegal' dropped for vector < 16; 'nmi' NMI latched;
 * 'init' INIT taken (the owner must run lapicInit); 'sipi' SIPI recorded; 'sipi-ignored' not in
 * wait-for-SIPI; 'ignored' SMI, mode 011, INIT level-deassert, level-deassert fixed under 'icr';
 * 'crash' the guest sent something its hypervisor crashes the domain for (ExtINT under 'crash').
 */
export type LapicAcceptResult = 'latched' | 'coalesced' | 'disabled' | 'illegal' | 'nmi' | 'init' | 'sipi'
  | 'sipi-ignored' | 'ignored' | 'crash';

// ---- Architectural constants of this model ----
/** Xen VLAPIC_VERSION: version 0x14, 6 LVT entries (max LVT 5), no EOI-broadcast suppression. */
export const LAPIC_VERSION_VALUE = 0x00050014;
/** SVR bits a write keeps: vector, enable, focus disable. Bit 12 only exists if VER bit 24 is set (Xen masks 0x3ff). */
const SVR_WRITABLE = SVR_VECTOR_MASK | SVR_ENABLE | SVR_FOCUS_DISABLE |
  ((LAPIC_VERSION_VALUE & (1 << 24)) !== 0 ? SVR_EOI_BROADCAST_SUPPRESS : 0);
/** Reset value of SVR: spurious vector 0xFF, software-disabled (SDM p372-373). */
const SVR_RESET = 0xff;
const DFR_RESET = -1;            // 0xFFFFFFFF: flat model
const DFR_ALWAYS_ONES = 0x0fffffff;
const TDCR_WRITABLE = 0xb;       // bits 0, 1 and 3
const XAPIC_BASE_ADDRESS = 0xfee00000;
/** Xen `LVT_MASK`: mask, delivery status (Xen keeps it writable), vector. */
const LVT_COMMON = LVT_MASKED | LVT_DELIVERY_STATUS | LVT_VECTOR_MASK;
const LVT_LINT = LVT_COMMON | LVT_DM_MASK | LVT_POLARITY | LVT_REMOTE_IRR | LVT_TRIGGER_LEVEL;
const LVT_REGISTERS: readonly number[] = [
  LAPIC_LVT_CMCI, LAPIC_LVT_TIMER, LAPIC_LVT_THERMAL, LAPIC_LVT_PMC, LAPIC_LVT_LINT0, LAPIC_LVT_LINT1, LAPIC_LVT_ERROR,
];
const ALL_ONES = 0xffffffff;
/** xAPIC ID and LDR: bits 31:24 (Xen APIC_ID_MASK, APIC_LDR_MASK). */
const XAPIC_ID_MASK = 0xff000000;

/** Writable bits of each LVT (Xen `vlapic_lvt_mask`; CMCI as Xen's x2APIC check). Bits outside raise #GP in x2APIC. */
function lapicLvtWritable(offset: number): number {
  switch (offset) {
    case LAPIC_LVT_TIMER: return LVT_COMMON | LVT_TIMER_MODE_MASK;
    case LAPIC_LVT_THERMAL: case LAPIC_LVT_PMC: case LAPIC_LVT_CMCI: return LVT_COMMON | LVT_DM_MASK;
    case LAPIC_LVT_LINT0: case LAPIC_LVT_LINT1: return LVT_LINT;
    default: return LVT_COMMON;
  }
}

// ---- Word access ----
function get(regs: Int32Array, base: number, offset: number): number {
  return Atomics.load(regs, base + (offset >>> 2));
}
function set(regs: Int32Array, base: number, offset: number, value: number): void {
  Atomics.store(regs, base + (offset >>> 2), value);
}
/** Word holding `vector` in the 256-bit bitmap at `reg` (IRR/ISR/TMR: register i at reg + 0x10 * i). */
function vecWord(base: number, reg: number, vector: number): number {
  return base + ((reg + (vector >>> 5) * LAPIC_SLOT_BYTES) >>> 2);
}
function vecBit(vector: number): number {
  return 1 << (vector & 31);
}

export function lapicTestVector(regs: Int32Array, base: number, reg: number, vector: number): boolean {
  return (Atomics.load(regs, vecWord(base, reg, vector)) & vecBit(vector)) !== 0;
}

/** Highest vector set in the bitmap at `reg`, or -1 (Xen `vlapic_find_highest_vector`). */
export function lapicHighestVector(regs: Int32Array, base: number, reg: number): number {
  for (let i = LAPIC_BITMAP_REGS - 1; i >= 0; i--) {
    const w = Atomics.load(regs, base + ((reg + i * LAPIC_SLOT_BYTES) >>> 2));
    if (w !== 0) return i * 32 + 31 - Math.clz32(w);
  }
  return -1;
}
export function lapicHighestIrr(regs: Int32Array, base: number): number { return lapicHighestVector(regs, base, LAPIC_IRR); }
export function lapicHighestIsr(regs: Int32Array, base: number): number { return lapicHighestVector(regs, base, LAPIC_ISR); }

// ---- Priority (SDM p390-391; apic.md §4 "Priority") ----
/**
 * PPR from TPR and ISRV (highest in-service vector, 0 if none): TPR when TPR[7:4] >= ISRV[7:4], else
 * ISRV & 0xF0. The equal-class case is model-specific in the SDM; KVM, Xen, QEMU and Bochs all take TPR.
 */
export function lapicPpr(tpr: number, isrv: number): number {
  return (tpr & 0xf0) >= (isrv & 0xf0) ? tpr & 0xff : isrv & 0xf0;
}
export function lapicCurrentPpr(regs: Int32Array, base: number): number {
  return lapicPpr(get(regs, base, LAPIC_TPR), Math.max(lapicHighestIsr(regs, base), 0));
}

export function lapicMode(regs: Int32Array, base: number): number {
  return Atomics.load(regs, base + (LAPIC_SIM_MODE >>> 2));
}
/** Hardware- and software-enabled (Xen `vlapic_enabled`). */
export function lapicEnabled(regs: Int32Array, base: number): boolean {
  return lapicMode(regs, base) !== APIC_MODE_DISABLED && (get(regs, base, LAPIC_SVR) & SVR_ENABLE) !== 0;
}

/**
 * The vector the core would be offered now, or -1: the highest IRR vector whose class is above PPR's
 * (SDM p391). A disabled APIC offers nothing, as Xen's `vlapic_has_pending_irq`; RFLAGS.IF is the core's gate.
 */
export function lapicPendingDeliverable(regs: Int32Array, base: number): number {
  if (!lapicEnabled(regs, base)) return -1;
  const irr = lapicHighestIrr(regs, base);
  if (irr < 0) return -1;
  return (irr & 0xf0) > (lapicCurrentPpr(regs, base) & 0xf0) ? irr : -1;
}

/**
 * INTA: move the deliverable vector from IRR to ISR and return it, or -1 when none (the caller may then
 * use the SVR spurious vector, SDM p394). Owner only.
 */
export function lapicAck(regs: Int32Array, base: number): number {
  const v = lapicPendingDeliverable(regs, base);
  if (v < 0) return -1;
  // IRR first, then ISR: a re-arrival of v between the two is latched again, as hardware allows one in
  // IRR plus one in ISR (SDM p392).
  Atomics.and(regs, vecWord(base, LAPIC_IRR, v), ~vecBit(v));
  Atomics.or(regs, vecWord(base, LAPIC_ISR, v), vecBit(v));
  return v;
}

/** EOI: clear the highest ISR bit (no-op when ISR is empty); level-triggered vectors broadcast EOI (SDM §10.8.5). */
export function lapicEoi(regs: Int32Array, base: number): LapicWriteEffect {
  const v = lapicHighestIsr(regs, base);
  if (v < 0) return LAPIC_EFFECT_NONE;
  Atomics.and(regs, vecWord(base, LAPIC_ISR, v), ~vecBit(v));
  if (!lapicTestVector(regs, base, LAPIC_TMR, v)) return LAPIC_EFFECT_NONE;
  if ((get(regs, base, LAPIC_SVR) & SVR_EOI_BROADCAST_SUPPRESS) !== 0) return LAPIC_EFFECT_NONE;
  return { type: 'eoi-broadcast', vector: v };
}

// ---- Receiving (any thread) ----
/** Set TMR per trigger, then IRR, then the summary bit. True when the IRR bit is new. */
function lapicLatch(regs: Int32Array, base: number, vector: number, level: boolean): boolean {
  const bit = vecBit(vector);
  if (level) Atomics.or(regs, vecWord(base, LAPIC_TMR, vector), bit);
  else Atomics.and(regs, vecWord(base, LAPIC_TMR, vector), ~bit);
  const old = Atomics.or(regs, vecWord(base, LAPIC_IRR, vector), bit);
  if ((old & bit) !== 0) return false;
  // After IRR (see LAPIC_SIM_PENDING): an owner that cleared the summary before scanning still sees the bit.
  Atomics.or(regs, base + (LAPIC_SIM_PENDING >>> 2), LAPIC_PEND_FIXED);
  return true;
}

/**
 * Record an error. Like Xen `vlapic_error`, LVT Error fires once per newly set bit (whether per bit or per
 * "ESR became non-zero" is implementation specific); an LVT Error with an illegal vector folds in bit 6
 * instead of recursing.
 */
export function lapicError(regs: Int32Array, base: number, bit: number): void {
  const old = Atomics.or(regs, base + (LAPIC_SIM_ESR_PENDING >>> 2), bit);
  if ((old & bit) !== 0) return;
  const lvt = get(regs, base, LAPIC_LVT_ERROR);
  if ((lvt & LVT_MASKED) !== 0) return;
  const v = lvt & LVT_VECTOR_MASK;
  if (v >= APIC_FIRST_LEGAL_VECTOR) lapicLatch(regs, base, v, false);
  else Atomics.or(regs, base + (LAPIC_SIM_ESR_PENDING >>> 2), ESR_RECV_ILLEGAL_VECTOR);
}

/**
 * A fixed-type interrupt (fixed / lowest-priority IPI, MSI, I/O APIC) arrives. `level` = level-triggered
 * (sets TMR; edge clears it, SDM p388). Coalesces onto an IRR bit already set (§4 "Coalescing").
 */
export function lapicAcceptInterrupt(regs: Int32Array, base: number, vector: number, level: boolean,
  opts: LapicOptions = LAPIC_DEFAULTS): LapicAcceptResult {
  const v = vector & ICR_VECTOR_MASK;
  const mode = lapicMode(regs, base);
  if (mode === APIC_MODE_DISABLED) return 'disabled';
  if ((get(regs, base, LAPIC_SVR) & SVR_ENABLE) === 0 && opts.softDisabledFixed === 'drop') return 'disabled';
  if (v < APIC_FIRST_LEGAL_VECTOR && opts.illegalVector !== 'kvm') {
    lapicError(regs, base, ESR_RECV_ILLEGAL_VECTOR);
    return 'illegal';
  }
  return lapicLatch(regs, base, v, level) ? 'latched' : 'coalesced';
}

/** An NMI arrives: one latch (Xen `nmi_pending`); a second NMI before the core takes it is lost. */
export function lapicAcceptNmi(regs: Int32Array, base: number): LapicAcceptResult {
  if (Atomics.exchange(regs, base + (LAPIC_SIM_NMI_PENDING >>> 2), 1) !== 0) return 'coalesced';
  Atomics.or(regs, base + (LAPIC_SIM_PENDING >>> 2), LAPIC_PEND_NMI);
  return 'nmi';
}

/**
 * An INIT arrives. An AP enters wait-for-SIPI at once, so a SIPI that follows can be recorded before the
 * owner has run lapicInit; the BSP restarts at the reset vector without a SIPI (SDM p275; vector 50).
 */
export function lapicAcceptInit(regs: Int32Array, base: number): LapicAcceptResult {
  if (get(regs, base, LAPIC_SIM_BSP) === 0) set(regs, base, LAPIC_SIM_INIT_STATE, LAPIC_WAIT_FOR_SIPI);
  Atomics.or(regs, base + (LAPIC_SIM_PENDING >>> 2), LAPIC_PEND_INIT);
  return 'init';
}

/**
 * An IPI at a physical LAPIC (a pCPU's). Only INIT differs from lapicAcceptIpi: whether the core resets at
 * all depends on the vendor and on whether it runs the hypervisor or a guest when it takes the signal
 * (apic.md §9: Intel blocks INIT in VMX root operation and exits on it in non-root; SVM intercepts it in
 * guest mode), which only the core knows, so the APIC latches the INIT and the core enters wait-for-SIPI
 * itself if it resets (lapicInit). Until then a SIPI finds no wait-for-SIPI and is discarded.
 */
export function lapicAcceptPhysIpi(regs: Int32Array, base: number, icrLo: number, opts: LapicOptions = LAPIC_DEFAULTS): LapicAcceptResult {
  if ((icrLo & ICR_DM_MASK) !== ICR_DM_INIT) return lapicAcceptIpi(regs, base, icrLo, opts);
  if ((icrLo & (ICR_TRIGGER_LEVEL | ICR_LEVEL_ASSERT)) === ICR_TRIGGER_LEVEL) return 'ignored';
  Atomics.or(regs, base + (LAPIC_SIM_PENDING >>> 2), LAPIC_PEND_INIT);
  return 'init';
}

/** A SIPI arrives: honoured only in wait-for-SIPI, one compareExchange so two racing SIPIs record one vector. */
export function lapicAcceptSipi(regs: Int32Array, base: number, vector: number): LapicAcceptResult {
  const received = LAPIC_SIPI_RECEIVED | ((vector & ICR_VECTOR_MASK) << LAPIC_SIPI_VECTOR_SHIFT);
  const w = base + (LAPIC_SIM_INIT_STATE >>> 2);
  if (Atomics.compareExchange(regs, w, LAPIC_WAIT_FOR_SIPI, received) !== LAPIC_WAIT_FOR_SIPI) return 'sipi-ignored';
  Atomics.or(regs, base + (LAPIC_SIM_PENDING >>> 2), LAPIC_PEND_SIPI);
  return 'sipi';
}

/** One IPI arriving at this LAPIC (a target chosen by apicRouteIpi), dispatched on its delivery mode (§2, §4). */
export function lapicAcceptIpi(regs: Int32Array, base: number, icrLo: number,
  opts: LapicOptions = LAPIC_DEFAULTS): LapicAcceptResult {
  const vector = icrLo & ICR_VECTOR_MASK;
  switch (icrLo & ICR_DM_MASK) {
    case ICR_DM_FIXED:
    case ICR_DM_LOWEST: {
      if (opts.ipiTrigger === 'edge') return lapicAcceptInterrupt(regs, base, vector, false, opts);
      const level = (icrLo & ICR_TRIGGER_LEVEL) !== 0;
      if (level && (icrLo & ICR_LEVEL_ASSERT) === 0) return 'ignored';
      return lapicAcceptInterrupt(regs, base, vector, level, opts);
    }
    case ICR_DM_NMI: return lapicAcceptNmi(regs, base);
    case ICR_DM_INIT:
      // INIT level-deassert (trigger level, level 0) only resets P6 arbitration IDs; Xen and KVM ignore it.
      if ((icrLo & (ICR_TRIGGER_LEVEL | ICR_LEVEL_ASSERT)) === ICR_TRIGGER_LEVEL) return 'ignored';
      return lapicAcceptInit(regs, base);
    case ICR_DM_SIPI: return lapicAcceptSipi(regs, base, vector);
    case ICR_DM_EXTINT: return opts.extIntIpi === 'crash' ? 'crash' : 'ignored';
    default: return 'ignored';  // SMI (Xen ignores it; no SMM here) and reserved mode 011
  }
}

// ---- Owner-side polling ----
/** Take the LAPIC_PEND_* summary (clear, then the caller scans; see LAPIC_SIM_PENDING). */
export function lapicTakePending(regs: Int32Array, base: number): number {
  return Atomics.exchange(regs, base + (LAPIC_SIM_PENDING >>> 2), 0);
}
/** Take the latched NMI. NMI blocking until IRET is the core's business. */
export function lapicTakeNmi(regs: Int32Array, base: number): boolean {
  return Atomics.exchange(regs, base + (LAPIC_SIM_NMI_PENDING >>> 2), 0) !== 0;
}
/** LAPIC_RUN, LAPIC_WAIT_FOR_SIPI or LAPIC_SIPI_RECEIVED. */
export function lapicInitState(regs: Int32Array, base: number): number {
  return get(regs, base, LAPIC_SIM_INIT_STATE) & LAPIC_INIT_STATE_MASK;
}
/** The recorded SIPI vector (start at CS = VV << 8, IP 0), moving the LAPIC to LAPIC_RUN; -1 if none. */
export function lapicTakeSipi(regs: Int32Array, base: number): number {
  const w = base + (LAPIC_SIM_INIT_STATE >>> 2);
  const cur = Atomics.load(regs, w);
  if ((cur & LAPIC_INIT_STATE_MASK) !== LAPIC_SIPI_RECEIVED) return -1;
  if (Atomics.compareExchange(regs, w, cur, LAPIC_RUN) !== cur) return -1;  // an INIT overtook it
  return (cur >>> LAPIC_SIPI_VECTOR_SHIFT) & ICR_VECTOR_MASK;
}

// ---- Reset and INIT ----
/** Register state after INIT (Xen `vlapic_do_init`; SDM p372-373): everything but ID, mode, and LDR in x2APIC mode. */
function lapicInitRegisters(regs: Int32Array, base: number): void {
  set(regs, base, LAPIC_VER, LAPIC_VERSION_VALUE);
  for (let i = 0; i < LAPIC_BITMAP_REGS; i++) {
    const o = i * LAPIC_SLOT_BYTES;
    set(regs, base, LAPIC_IRR + o, 0);
    set(regs, base, LAPIC_ISR + o, 0);
    set(regs, base, LAPIC_TMR + o, 0);
  }
  set(regs, base, LAPIC_ICR_LO, 0);
  set(regs, base, LAPIC_ICR_HI, 0);
  // LDR is read-only and derived in x2APIC mode: KVM and Xen keep it across INIT.
  if (lapicMode(regs, base) !== APIC_MODE_X2APIC) set(regs, base, LAPIC_LDR, 0);
  set(regs, base, LAPIC_TPR, 0);
  set(regs, base, LAPIC_TIMER_ICR, 0);
  set(regs, base, LAPIC_TIMER_CCR, 0);
  set(regs, base, LAPIC_TIMER_DCR, 0);
  set(regs, base, LAPIC_DFR, DFR_RESET);
  for (const lvt of LVT_REGISTERS) set(regs, base, lvt, LVT_MASKED);
  set(regs, base, LAPIC_SVR, SVR_RESET);
  set(regs, base, LAPIC_ESR, 0);
  set(regs, base, LAPIC_SIM_ESR_PENDING, 0);
}

/**
 * Power-on reset of the page at `base`: enabled in xAPIC (or x2APIC) mode, ID `apicId`, software-disabled
 * (SVR 0xFF). In xAPIC mode the ID register holds apicId[7:0] in bits 31:24; the full ID comes back on
 * entering x2APIC mode. Call before other threads can see the page (it is not one atomic step).
 */
export function lapicReset(regs: Int32Array, base: number, apicId: number, x2apic: boolean, bsp = false): void {
  assert(base >= 0 && base + LAPIC_PAGE_WORDS <= regs.length, `lapic page at word ${base} is outside its buffer`);
  regs.fill(0, base, base + LAPIC_PAGE_WORDS);
  set(regs, base, LAPIC_SIM_INITIAL_ID, apicId);
  set(regs, base, LAPIC_SIM_BSP, bsp ? 1 : 0);
  set(regs, base, LAPIC_SIM_INIT_STATE, LAPIC_RUN);
  lapicEnterMode(regs, base, x2apic ? APIC_MODE_X2APIC : APIC_MODE_XAPIC);
  lapicInitRegisters(regs, base);
}

/** Set the mode word and the ID/LDR the mode implies (SDM p402-404: entering x2APIC restores the initial ID). */
function lapicEnterMode(regs: Int32Array, base: number, mode: number): void {
  const id = get(regs, base, LAPIC_SIM_INITIAL_ID) >>> 0;
  set(regs, base, LAPIC_SIM_MODE, mode);
  if (mode === APIC_MODE_X2APIC) {
    set(regs, base, LAPIC_ID, id);
    set(regs, base, LAPIC_LDR, x2apicLdrFromId(id));
    set(regs, base, LAPIC_ICR_HI, 0);  // the xAPIC destination latch does not survive the switch
  } else if (mode === APIC_MODE_XAPIC) {
    set(regs, base, LAPIC_ID, (id & 0xff) << 24);
  }
}

/**
 * Apply an INIT on the owner (or with the owner paused, as Xen's `vlapic_init_sipi_one` pauses the target):
 * reset the registers and, on an AP, enter wait-for-SIPI unless lapicAcceptInit already did and a SIPI has
 * since been recorded. Returns the INIT state; LAPIC_RUN on the BSP means "restart at the reset vector".
 */
export function lapicInit(regs: Int32Array, base: number): number {
  lapicInitRegisters(regs, base);
  if (get(regs, base, LAPIC_SIM_BSP) === 0) {
    Atomics.compareExchange(regs, base + (LAPIC_SIM_INIT_STATE >>> 2), LAPIC_RUN, LAPIC_WAIT_FOR_SIPI);
  }
  return lapicInitState(regs, base);
}

/** IA32_APIC_BASE low half: base address, BSP, EN and EXTD per the mode. */
export function lapicApicBase(regs: Int32Array, base: number): number {
  const mode = lapicMode(regs, base);
  const bsp = get(regs, base, LAPIC_SIM_BSP) !== 0 ? APIC_BASE_BSP : 0;
  const en = mode !== APIC_MODE_DISABLED ? APIC_BASE_EN : 0;
  const extd = mode === APIC_MODE_X2APIC ? APIC_BASE_EXTD : 0;
  return (XAPIC_BASE_ADDRESS | bsp | en | extd) >>> 0;
}

/**
 * WRMSR IA32_APIC_BASE with these EN/EXTD bits (SDM p402-404; vectors 12, 13). Allowed: disabled -> xAPIC
 * (a full reset, as Xen's `vlapic_reset`), xAPIC -> x2APIC (ID restored, LDR derived), any -> disabled.
 * #GP: EN=0 with EXTD=1, x2APIC -> xAPIC, disabled -> x2APIC.
 */
export function lapicWriteApicBase(regs: Int32Array, base: number, en: boolean, extd: boolean): LapicWriteEffect {
  if (!en && extd) return LAPIC_EFFECT_GP;
  const cur = lapicMode(regs, base);
  const next = !en ? APIC_MODE_DISABLED : extd ? APIC_MODE_X2APIC : APIC_MODE_XAPIC;
  if (next === cur) return LAPIC_EFFECT_NONE;
  if (cur === APIC_MODE_X2APIC && next === APIC_MODE_XAPIC) return LAPIC_EFFECT_GP;
  if (cur === APIC_MODE_DISABLED && next === APIC_MODE_X2APIC) return LAPIC_EFFECT_GP;
  lapicEnterMode(regs, base, next);
  if (cur === APIC_MODE_DISABLED) lapicInitRegisters(regs, base);
  return LAPIC_EFFECT_NONE;
}

// ---- Register reads ----
function lapicTimerTscDeadline(regs: Int32Array, base: number): boolean {
  return (get(regs, base, LAPIC_LVT_TIMER) & LVT_TIMER_MODE_MASK) === LVT_TIMER_TSC_DEADLINE;
}

/** Value of the register at slot `offset`, shared by MMIO and MSR reads (Xen `vlapic_read_aligned`). */
function lapicRegRead(regs: Int32Array, base: number, offset: number): number {
  switch (offset) {
    case LAPIC_PPR: return lapicCurrentPpr(regs, base);
    case LAPIC_TIMER_ICR:
    case LAPIC_TIMER_CCR: return lapicTimerTscDeadline(regs, base) ? 0 : get(regs, base, offset) >>> 0;
    case LAPIC_EOI:
    case LAPIC_SELF_IPI: return 0;  // write-only
    default: return get(regs, base, offset) >>> 0;
  }
}

/**
 * Aligned 32-bit xAPIC MMIO read of the slot at `offset`. Outside xAPIC mode the page behaves like a
 * disabled xAPIC and reads all ones (SDM p402; KVM's MMIO hole; vector 14). Bytes 4-15 of a slot and the
 * space above the registers read 0 (Xen).
 */
export function lapicRead(regs: Int32Array, base: number, offset: number): number {
  if (lapicMode(regs, base) !== APIC_MODE_XAPIC) return ALL_ONES;
  if ((offset & (LAPIC_SLOT_BYTES - 1)) !== 0 || offset < 0 || offset >= LAPIC_ARCH_END) return 0;
  return lapicRegRead(regs, base, offset);
}

// ---- Register writes ----
/** A write to ICR_LO (or its x2APIC equivalent) sends; the vector check is on the sender (SDM p377). */
function lapicSendIcr(regs: Int32Array, base: number, icrLo: number, icrHi: number, opts: LapicOptions,
  store: boolean): LapicWriteEffect {
  if (store) set(regs, base, LAPIC_ICR_LO, icrLo);
  const dm = icrLo & ICR_DM_MASK;
  const illegal = (dm === ICR_DM_FIXED || dm === ICR_DM_LOWEST) && (icrLo & ICR_VECTOR_MASK) < APIC_FIRST_LEGAL_VECTOR;
  if (illegal && opts.illegalVector !== 'kvm') {
    lapicError(regs, base, ESR_SEND_ILLEGAL_VECTOR);
    if (opts.illegalVector === 'xen') return LAPIC_EFFECT_NONE;
  }
  return { type: 'ipi', icrLo: icrLo >>> 0, icrHi: icrHi >>> 0 };
}

function lapicWriteSvr(regs: Int32Array, base: number, value: number): LapicWriteEffect {
  const v = value & SVR_WRITABLE;
  set(regs, base, LAPIC_SVR, v);
  // Software disable forces every LVT mask to 1 (SDM p372-373; Xen `vlapic_reg_write`).
  if ((v & SVR_ENABLE) === 0) {
    for (const lvt of LVT_REGISTERS) set(regs, base, lvt, get(regs, base, lvt) | LVT_MASKED);
  }
  return LAPIC_EFFECT_NONE;
}

function lapicWriteLvt(regs: Int32Array, base: number, offset: number, value: number): LapicWriteEffect {
  let v = value;
  if ((get(regs, base, LAPIC_SVR) & SVR_ENABLE) === 0) v |= LVT_MASKED;
  v &= lapicLvtWritable(offset);
  if (offset !== LAPIC_LVT_TIMER) {
    set(regs, base, offset, v);
    return LAPIC_EFFECT_NONE;
  }
  // Switching into or out of TSC-deadline mode disarms the timer (Xen clears TMICT).
  const wasTdt = lapicTimerTscDeadline(regs, base);
  if (wasTdt !== ((v & LVT_TIMER_MODE_MASK) === LVT_TIMER_TSC_DEADLINE)) set(regs, base, LAPIC_TIMER_ICR, 0);
  set(regs, base, offset, v);
  return LAPIC_EFFECT_TIMER;
}

function lapicWriteTimerIcr(regs: Int32Array, base: number, value: number): LapicWriteEffect {
  const mode = get(regs, base, LAPIC_LVT_TIMER) & LVT_TIMER_MODE_MASK;
  // In TSC-deadline mode the initial count is ignored (SDM; Xen only stores it in one-shot/periodic mode).
  if (mode !== LVT_TIMER_ONESHOT && mode !== LVT_TIMER_PERIODIC) return LAPIC_EFFECT_NONE;
  set(regs, base, LAPIC_TIMER_ICR, value);
  return LAPIC_EFFECT_TIMER;
}

/** The write semantics both paths share, after their own checks (Xen `vlapic_reg_write`). */
function lapicRegWrite(regs: Int32Array, base: number, offset: number, value: number,
  opts: LapicOptions): LapicWriteEffect {
  switch (offset) {
    case LAPIC_ID:
      if (opts.xapicIdWrite === 'store') set(regs, base, LAPIC_ID, value & XAPIC_ID_MASK);
      return LAPIC_EFFECT_NONE;
    case LAPIC_TPR: set(regs, base, LAPIC_TPR, value & 0xff); return LAPIC_EFFECT_NONE;
    case LAPIC_EOI: return lapicEoi(regs, base);
    case LAPIC_LDR: set(regs, base, LAPIC_LDR, value & XAPIC_ID_MASK); return LAPIC_EFFECT_NONE;
    case LAPIC_DFR: set(regs, base, LAPIC_DFR, value | DFR_ALWAYS_ONES); return LAPIC_EFFECT_NONE;
    case LAPIC_SVR: return lapicWriteSvr(regs, base, value);
    case LAPIC_ESR:
      // The write latches what was gathered since the previous write (SDM p378; Xen xchg).
      set(regs, base, LAPIC_ESR, Atomics.exchange(regs, base + (LAPIC_SIM_ESR_PENDING >>> 2), 0));
      return LAPIC_EFFECT_NONE;
    case LAPIC_ICR_LO:
      // Delivery status always reads idle: the simulated send is instant (Xen, KVM; §2 "Delivery status").
      return lapicSendIcr(regs, base, value & ~ICR_BUSY, get(regs, base, LAPIC_ICR_HI), opts, true);
    case LAPIC_ICR_HI:
      // The single ICR_HI latch: the last value written is what the next ICR_LO write uses (§2, vector 18).
      set(regs, base, LAPIC_ICR_HI, opts.icrHiLowBits === 'keep' ? value : value & ICR_HI_XAPIC_DEST_MASK);
      return LAPIC_EFFECT_NONE;
    case LAPIC_LVT_CMCI: case LAPIC_LVT_TIMER: case LAPIC_LVT_THERMAL: case LAPIC_LVT_PMC:
    case LAPIC_LVT_LINT0: case LAPIC_LVT_LINT1: case LAPIC_LVT_ERROR:
      return lapicWriteLvt(regs, base, offset, value);
    case LAPIC_TIMER_ICR: return lapicWriteTimerIcr(regs, base, value);
    case LAPIC_TIMER_DCR: set(regs, base, LAPIC_TIMER_DCR, value & TDCR_WRITABLE); return LAPIC_EFFECT_TIMER;
    default: return LAPIC_EFFECT_NONE;  // read-only or unimplemented: the write is dropped
  }
}

/**
 * Aligned 32-bit xAPIC MMIO write of the slot at `offset`. A write to ICR_LO returns the IPI to send with
 * the ICR_HI latched at this moment; a write to ICR_HI alone sends nothing (SDM p380; vectors 17, 18).
 * Outside xAPIC mode, or off a slot boundary, the write is dropped.
 */
export function lapicWrite(regs: Int32Array, base: number, offset: number, value: number,
  opts: LapicOptions = LAPIC_DEFAULTS): LapicWriteEffect {
  if (lapicMode(regs, base) !== APIC_MODE_XAPIC) return LAPIC_EFFECT_NONE;
  if ((offset & (LAPIC_SLOT_BYTES - 1)) !== 0 || offset < 0 || offset >= LAPIC_ARCH_END) return LAPIC_EFFECT_NONE;
  if (offset === LAPIC_SELF_IPI) return LAPIC_EFFECT_NONE;  // x2APIC only
  return lapicRegWrite(regs, base, offset, value | 0, opts);
}

/** 1-, 2- or 4-byte xAPIC MMIO read at any byte offset (LapicNarrowAccessPolicy). Unsigned. */
export function lapicMmioRead(regs: Int32Array, base: number, offset: number, size: number,
  opts: LapicOptions = LAPIC_DEFAULTS): number {
  const align = offset & (LAPIC_SLOT_BYTES - 1);
  if (size === 4 && align === 0) return lapicRead(regs, base, offset);
  if (align + size > 4 || opts.narrowAccess === 'qemu') return 0;
  const reg = lapicRead(regs, base, offset - align);
  return (reg >>> (align * 8)) & (size === 1 ? 0xff : 0xffff);
}

/** 1-, 2- or 4-byte xAPIC MMIO write at any byte offset (LapicNarrowAccessPolicy). */
export function lapicMmioWrite(regs: Int32Array, base: number, offset: number, size: number, value: number,
  opts: LapicOptions = LAPIC_DEFAULTS): LapicWriteEffect {
  const align = offset & (LAPIC_SLOT_BYTES - 1);
  if (size === 4 && align === 0) return lapicWrite(regs, base, offset, value, opts);
  if (align + size > 4 || opts.narrowAccess !== 'xen') return LAPIC_EFFECT_NONE;
  // Xen merges the bytes into the current value and writes the whole register, side effects included.
  const slot = offset - align, shift = align * 8, mask = (size === 1 ? 0xff : 0xffff) << shift;
  const merged = (lapicRead(regs, base, slot) & ~mask) | ((value << shift) & mask);
  return lapicWrite(regs, base, slot, merged, opts);
}

// ---- x2APIC MSRs (SDM p399-408; apic.md §1 "x2APIC access rules") ----
const X2_READ = 1, X2_WRITE = 2;
/** Access flags per MSR - 0x800 (Xen `guest_rdmsr_x2apic` readable set; writable set of `guest_wrmsr_x2apic`). */
const X2APIC_ACCESS = ((): Uint8Array => {
  const t = new Uint8Array(X2APIC_MSR_LAST - X2APIC_MSR_FIRST + 1);
  const rw = (offset: number, flags: number): void => { t[offset >>> 4] = flags; };
  for (const o of [LAPIC_ID, LAPIC_VER, LAPIC_PPR, LAPIC_LDR, LAPIC_TIMER_CCR]) rw(o, X2_READ);
  for (let i = 0; i < LAPIC_BITMAP_REGS; i++) {
    for (const r of [LAPIC_ISR, LAPIC_TMR, LAPIC_IRR]) rw(r + i * LAPIC_SLOT_BYTES, X2_READ);
  }
  for (const o of [LAPIC_TPR, LAPIC_SVR, LAPIC_ESR, LAPIC_ICR_LO, LAPIC_TIMER_ICR, LAPIC_TIMER_DCR, ...LVT_REGISTERS]) {
    rw(o, X2_READ | X2_WRITE);
  }
  for (const o of [LAPIC_EOI, LAPIC_SELF_IPI]) rw(o, X2_WRITE);
  return t;
})();

/**
 * xAPIC offset of an x2APIC MSR (offset = (msr - 0x800) << 4), or -1 when the MSR is no x2APIC register:
 * outside 0x800-0x8FF, or one the x2APIC lacks (APR 0x809, RRD 0x80C, DFR 0x80E, ICR_HI 0x831, ...).
 * ICR is the single 64-bit MSR 0x830.
 */
export function x2apicMsrToOffset(msr: number): number {
  if (msr < X2APIC_MSR_FIRST || msr > X2APIC_MSR_LAST) return -1;
  const i = msr - X2APIC_MSR_FIRST;
  return X2APIC_ACCESS[i] === 0 ? -1 : i << 4;
}

/** RDMSR of an x2APIC register: #GP outside x2APIC mode, for write-only and absent registers (vectors 2, 4, 5). */
export function lapicReadX2apic(regs: Int32Array, base: number, msr: number): LapicMsrRead {
  if (lapicMode(regs, base) !== APIC_MODE_X2APIC) return LAPIC_MSR_GP;
  const offset = x2apicMsrToOffset(msr);
  if (offset < 0 || (X2APIC_ACCESS[offset >>> 4] & X2_READ) === 0) return LAPIC_MSR_GP;
  // ICR reads back both halves; the SDM says only for debugging, Xen and KVM return the value written.
  const hi = offset === LAPIC_ICR_LO ? get(regs, base, LAPIC_ICR_HI) >>> 0 : 0;
  return { type: 'value', lo: lapicRegRead(regs, base, offset), hi };
}

/** Bits a WRMSR may set in each writable 32-bit x2APIC register (Xen `guest_wrmsr_x2apic`); others #GP. */
function x2apicWritable(offset: number): number {
  switch (offset) {
    case LAPIC_TPR: return 0xff;
    case LAPIC_SVR: return SVR_WRITABLE;
    case LAPIC_TIMER_DCR: return TDCR_WRITABLE;
    case LAPIC_SELF_IPI: return ICR_VECTOR_MASK;
    case LAPIC_EOI: case LAPIC_ESR: return 0;  // only 0 may be written (vector 45)
    case LAPIC_TIMER_ICR: return ALL_ONES | 0;
    default: return lapicLvtWritable(offset);
  }
}

/**
 * WRMSR to an x2APIC register, the 64-bit value as two 32-bit halves. #GP outside x2APIC mode, for
 * read-only and absent registers, bits 63:32 set on any register but ICR, reserved bits (vectors 2-8, 45).
 */
export function lapicWriteX2apic(regs: Int32Array, base: number, msr: number, lo: number, hi: number,
  opts: LapicOptions = LAPIC_DEFAULTS): LapicWriteEffect {
  if (lapicMode(regs, base) !== APIC_MODE_X2APIC) return LAPIC_EFFECT_GP;
  const offset = x2apicMsrToOffset(msr);
  if (offset < 0 || (X2APIC_ACCESS[offset >>> 4] & X2_WRITE) === 0) return LAPIC_EFFECT_GP;
  if (offset === LAPIC_ICR_LO) return lapicWriteX2apicIcr(regs, base, lo, hi, opts);
  // Xen lets TMICT through with bits 63:32 set; the SDM and kvm-unit-tests (vector 6) say #GP, as here.
  if (hi !== 0) return LAPIC_EFFECT_GP;
  if ((lo & ~x2apicWritable(offset)) !== 0) return LAPIC_EFFECT_GP;
  if (offset === LAPIC_SELF_IPI) {
    // SELF IPI = a fixed, edge, self-shorthand IPI with this vector (SDM p408). Xen also overwrites ICR with
    // it; the architecture does not, and neither does this.
    return lapicSendIcr(regs, base, ICR_SH_SELF | ICR_DM_FIXED | lo, 0, opts, false);
  }
  return lapicRegWrite(regs, base, offset, lo | 0, opts);
}

/**
 * WRMSR 0x830: one 64-bit write carries destination (hi) and command (lo), so there is no window between
 * halves (§2). Reserved low bits #GP; bit 12 per LapicX2apicBusyPolicy (vector 8).
 */
export function lapicWriteX2apicIcr(regs: Int32Array, base: number, lo: number, hi: number,
  opts: LapicOptions = LAPIC_DEFAULTS): LapicWriteEffect {
  if (lapicMode(regs, base) !== APIC_MODE_X2APIC) return LAPIC_EFFECT_GP;
  let l = lo | 0;
  if ((l & ICR_BUSY) !== 0) {
    if (opts.x2apicIcrBusy === 'gp') return LAPIC_EFFECT_GP;
    l &= ~ICR_BUSY;
  }
  if ((l & ~ICR_X2APIC_VALID) !== 0) return LAPIC_EFFECT_GP;
  set(regs, base, LAPIC_ICR_HI, hi | 0);
  return lapicSendIcr(regs, base, l, hi, opts, true);
}

// ---- CR8 (SDM: CR8[3:0] = TPR[7:4]; works in every APIC mode, vector 14) ----
export function lapicReadCr8(regs: Int32Array, base: number): number {
  return (get(regs, base, LAPIC_TPR) >>> 4) & 0xf;
}
export function lapicWriteCr8(regs: Int32Array, base: number, value: number): void {
  set(regs, base, LAPIC_TPR, (value & 0xf) << 4);
}

// ---- Bus view ----
/** Snapshot of what the APIC bus needs from this page (apic-bus.ts ApicBusTarget). Any thread. */
export function lapicBusView(regs: Int32Array, base: number): ApicBusTarget {
  const x2apic = lapicMode(regs, base) === APIC_MODE_X2APIC;
  const id = get(regs, base, LAPIC_ID) >>> 0;
  return {
    apicId: x2apic ? id : id >>> 24,
    x2apic,
    ldr: get(regs, base, LAPIC_LDR) >>> 0,
    dfr: get(regs, base, LAPIC_DFR) >>> 0,
    enabled: lapicEnabled(regs, base),
    ppr: lapicCurrentPpr(regs, base),
  };
}
