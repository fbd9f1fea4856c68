// Local APIC register pages: one 4 KiB page (LAPIC_PAGE_WORDS Int32 words) per LAPIC, physical or virtual.
// Architectural registers sit at their xAPIC MMIO offsets (word = base + (offset >> 2)), as in Xen's
// `regs->data[APIC_*]`, so a guest MMIO access is one load at the offset (../shared/STYLE.md §3).
// Simulator-private words live at 0x800 and above, in space no xAPIC register uses.
// Sources: ../shared/reference/apic.md §1 (register map), §2 (ICR), §4 (receiver), Xen apicdef.h.
//
// Owner: the thread that runs the LAPIC's CPU writes every register. Other threads (senders) touch only:
// IRR and TMR (Atomics.or / Atomics.and on one 32-bit word), LAPIC_SIM_ESR_PENDING (Atomics.or),
// LAPIC_SIM_NMI_PENDING, LAPIC_SIM_INIT_STATE and LAPIC_SIM_PENDING (Atomics). Senders read ID, LDR,
// DFR, SVR, TPR and ISR with Atomics.load for destination matching and lowest-priority arbitration.
// All offsets below are BYTE offsets inside the page; use lapicWord() to index the Int32Array.
import { WORD } from './layout.js';

export const LAPIC_PAGE_BYTES = 4096;
export const LAPIC_PAGE_WORDS = LAPIC_PAGE_BYTES / WORD;
/** Registers are 32 bits, one per 16-byte slot (SDM p368-370). */
export const LAPIC_SLOT_BYTES = 0x10;

/** Word index of the register at byte `offset` of the page starting at word `base`. */
export function lapicWord(base: number, offset: number): number {
  return base + (offset >>> 2);
}
/** Word index of LAPIC `index`'s page in a buffer of consecutive pages. */
export function lapicPageBase(index: number): number {
  return index * LAPIC_PAGE_WORDS;
}

// ---- Architectural registers (xAPIC offsets; x2APIC MSR = 0x800 + (offset >> 4)) ----
/** Local APIC ID. xAPIC: ID in bits 31:24. x2APIC: the full 32-bit ID, read-only. */
export const LAPIC_ID = 0x020;
/** Version, RO: 7:0 version, 23:16 LVT count - 1, bit 24 EOI-broadcast suppression. */
export const LAPIC_VER = 0x030;
/** Task priority, bits 7:0 (CR8 = TPR[7:4]). */
export const LAPIC_TPR = 0x080;
/** Arbitration priority: P6/Pentium only; reads 0 here, absent in x2APIC. */
export const LAPIC_APR = 0x090;
/** Processor priority, RO, computed from TPR and ISR on read (never stored). */
export const LAPIC_PPR = 0x0a0;
/** EOI, write-only: clears the highest ISR bit. */
export const LAPIC_EOI = 0x0b0;
/** Remote read: P6/Pentium only; absent in x2APIC. */
export const LAPIC_RRD = 0x0c0;
/** Logical destination: xAPIC bits 31:24 RW; x2APIC RO, derived from the ID. */
export const LAPIC_LDR = 0x0d0;
/** Destination format, xAPIC only: 31:28 model (1111 flat, 0000 cluster), 27:0 read as ones. */
export const LAPIC_DFR = 0x0e0;
/** Spurious vector: 7:0 vector, 8 software enable, 9 focus-check disable, 12 EOI-broadcast suppression. */
export const LAPIC_SVR = 0x0f0;
/** In-service register, 256 bits: 8 words at a 0x10 stride (0x100..0x170). Owner only. */
export const LAPIC_ISR = 0x100;
/** Trigger-mode register, 256 bits (0x180..0x1F0): 1 = level. Senders update it with Atomics. */
export const LAPIC_TMR = 0x180;
/** Interrupt request register, 256 bits (0x200..0x270). Senders set bits with Atomics.or. */
export const LAPIC_IRR = 0x200;
/** Error status as latched by the last ESR write (errors gathered since are in LAPIC_SIM_ESR_PENDING). */
export const LAPIC_ESR = 0x280;
/** LVT corrected machine-check interrupt. */
export const LAPIC_LVT_CMCI = 0x2f0;
/** ICR low half: 7:0 vector, 10:8 mode, 11 dest mode, 12 status, 14 level, 15 trigger, 19:18 shorthand. A write sends. */
export const LAPIC_ICR_LO = 0x300;
/** ICR high half. xAPIC: destination in 31:24 (the latch the next ICR_LO write uses). x2APIC: the 32-bit destination. */
export const LAPIC_ICR_HI = 0x310;
/** LVT timer: 7:0 vector, 12 status, 16 mask, 18:17 timer mode. */
export const LAPIC_LVT_TIMER = 0x320;
/** LVT thermal sensor. */
export const LAPIC_LVT_THERMAL = 0x330;
/** LVT performance-monitoring counters. */
export const LAPIC_LVT_PMC = 0x340;
/** LVT LINT0. */
export const LAPIC_LVT_LINT0 = 0x350;
/** LVT LINT1. */
export const LAPIC_LVT_LINT1 = 0x360;
/** LVT error. */
export const LAPIC_LVT_ERROR = 0x370;
/** Timer initial count. */
export const LAPIC_TIMER_ICR = 0x380;
/** Timer current count, RO. Kept up to date by the timer model, not by the register semantics. */
export const LAPIC_TIMER_CCR = 0x390;
/** Timer divide configuration: bits 0, 1, 3. */
export const LAPIC_TIMER_DCR = 0x3e0;
/** SELF IPI, x2APIC only, write-only: bits 7:0 vector. */
export const LAPIC_SELF_IPI = 0x3f0;

/** Number of 32-bit words in IRR, ISR and TMR (256 bits each). */
export const LAPIC_BITMAP_REGS = 8;

/** Every architectural slot: [offset, number of 16-byte slots]. Used to prove the private words are clear. */
export const LAPIC_ARCH_REGISTERS: readonly (readonly [number, number])[] = [
  [LAPIC_ID, 1], [LAPIC_VER, 1], [LAPIC_TPR, 1], [LAPIC_APR, 1], [LAPIC_PPR, 1], [LAPIC_EOI, 1],
  [LAPIC_RRD, 1], [LAPIC_LDR, 1], [LAPIC_DFR, 1], [LAPIC_SVR, 1], [LAPIC_ISR, LAPIC_BITMAP_REGS],
  [LAPIC_TMR, LAPIC_BITMAP_REGS], [LAPIC_IRR, LAPIC_BITMAP_REGS], [LAPIC_ESR, 1], [LAPIC_LVT_CMCI, 1],
  [LAPIC_ICR_LO, 1], [LAPIC_ICR_HI, 1], [LAPIC_LVT_TIMER, 1], [LAPIC_LVT_THERMAL, 1], [LAPIC_LVT_PMC, 1],
  [LAPIC_LVT_LINT0, 1], [LAPIC_LVT_LINT1, 1], [LAPIC_LVT_ERROR, 1], [LAPIC_TIMER_ICR, 1],
  [LAPIC_TIMER_CCR, 1], [LAPIC_TIMER_DCR, 1], [LAPIC_SELF_IPI, 1],
];
/** Architectural registers end here; everything the xAPIC page decodes is below it. */
export const LAPIC_ARCH_END = 0x400;

// ---- Simulator-private words ----
// At 0x800, not 0x400: AMD parts decode extended APIC registers at 0x400-0x53F (APM vol. 2, not in the fact
// sheet), so keeping clear of that range leaves room to model them. Guest MMIO never reaches these words:
// lapicRead returns 0 above LAPIC_ARCH_END.
/** APIC_MODE_* below: the (EN, EXTD) state of IA32_APIC_BASE. Owner writes; senders read (Atomics). */
export const LAPIC_SIM_MODE = 0x800;
/**
 * LAPIC_PEND_* bits: "something arrived from another thread since you last looked". A sender sets the bit
 * with Atomics.or AFTER it updated IRR/NMI/INIT state; the owner clears it with Atomics.exchange BEFORE it
 * scans. That order means an arrival racing with the scan leaves the bit set for the next poll.
 */
export const LAPIC_SIM_PENDING = 0x804;
/**
 * LAPIC_RUN / LAPIC_WAIT_FOR_SIPI / LAPIC_SIPI_RECEIVED in bits 7:0, and the SIPI vector in bits 15:8 when
 * a SIPI was received. One word so that accepting a SIPI is a single compareExchange from WAIT_FOR_SIPI:
 * with the vector in a second word, the owner could see "received" before the vector was written.
 */
export const LAPIC_SIM_INIT_STATE = 0x808;
/** 1 while an NMI is latched (Xen keeps one `nmi_pending` flag; further NMIs are lost). Atomics. */
export const LAPIC_SIM_NMI_PENDING = 0x80c;
/** ESR bits gathered since the last ESR write (Xen `hw.pending_esr`). Atomics.or; the ESR write exchanges it to 0. */
export const LAPIC_SIM_ESR_PENDING = 0x810;
/** The initial APIC ID (power-on; Xen gives vCPU n the ID 2n). Entering x2APIC mode restores it. */
export const LAPIC_SIM_INITIAL_ID = 0x814;
/** 1 on the bootstrap processor (IA32_APIC_BASE bit 8): INIT restarts it at the reset vector, no SIPI. */
export const LAPIC_SIM_BSP = 0x818;
/**
 * Who last wrote ICR_HI of a physical LAPIC (oracle bookkeeping, never architectural): bits 30:0 = global
 * vCPU index + 1, 0 = the hypervisor; bit 31 set once an ICR_LO write has sent with that value. Owner only.
 */
export const LAPIC_SIM_ICR_HI_WRITER = 0x81c;
export const ICR_HI_WRITER_USED = 1 << 31;
/** Set with the writer when the vCPU wrote ICR_HI inside its NMI handler (NMI blocking on): `cli` never stops that. */
export const ICR_HI_WRITER_NMI = 1 << 30;
/**
 * Guest pc of the ICR_HI write LAPIC_SIM_ICR_HI_WRITER names (oracle bookkeeping): -1 when the hypervisor
 * wrote it; meaningful only while the writer is a vCPU (the page starts zeroed). Written with the writer, by
 * the owner only.
 */
export const LAPIC_SIM_ICR_HI_PC = 0x820;
/**
 * Who sent the last INIT and the last NMI that reached this physical LAPIC (oracle bookkeeping): the IPI's
 * source tag (trace/events.ts ipiTag; 0 = the hypervisor) and the pc of the ICR write that sent it (-1 none).
 * Written by the sender before it latches the signal, read by the owner when it takes it; two senders racing
 * leave one of them, which is all the finding needs.
 */
export const LAPIC_SIM_INIT_SRC_TAG = 0x824;
export const LAPIC_SIM_INIT_SRC_PC = 0x828;
export const LAPIC_SIM_NMI_SRC_TAG = 0x82c;
export const LAPIC_SIM_NMI_SRC_PC = 0x830;
/** Last private word; keep it last when adding fields. */
export const LAPIC_SIM_LAST = LAPIC_SIM_NMI_SRC_PC;
const LAPIC_SIM_WORDS: readonly number[] = [
  LAPIC_SIM_MODE, LAPIC_SIM_PENDING, LAPIC_SIM_INIT_STATE, LAPIC_SIM_NMI_PENDING, LAPIC_SIM_ESR_PENDING,
  LAPIC_SIM_INITIAL_ID, LAPIC_SIM_BSP, LAPIC_SIM_ICR_HI_WRITER, LAPIC_SIM_ICR_HI_PC,
  LAPIC_SIM_INIT_SRC_TAG, LAPIC_SIM_INIT_SRC_PC, LAPIC_SIM_NMI_SRC_TAG, LAPIC_SIM_NMI_SRC_PC,
];

// LAPIC_SIM_MODE values (IA32_APIC_BASE EN = bit 11, EXTD = bit 10)
export const APIC_MODE_DISABLED = 0;  // EN=0 EXTD=0: hardware-disabled, the APIC is hidden
export const APIC_MODE_XAPIC = 1;     // EN=1 EXTD=0
export const APIC_MODE_X2APIC = 2;    // EN=1 EXTD=1

// LAPIC_SIM_PENDING bits
export const LAPIC_PEND_FIXED = 1 << 0;  // an IRR bit was set
export const LAPIC_PEND_NMI = 1 << 1;    // LAPIC_SIM_NMI_PENDING was set
export const LAPIC_PEND_INIT = 1 << 2;   // an INIT arrived: the owner must run lapicInit
export const LAPIC_PEND_SIPI = 1 << 3;   // a SIPI was recorded in LAPIC_SIM_INIT_STATE

// LAPIC_SIM_INIT_STATE values (bits 7:0)
export const LAPIC_RUN = 0;
export const LAPIC_WAIT_FOR_SIPI = 1;
export const LAPIC_SIPI_RECEIVED = 2;
export const LAPIC_INIT_STATE_MASK = 0xff;
export const LAPIC_SIPI_VECTOR_SHIFT = 8;

// ---- ICR fields (SDM p380-383 Figure 10-12; x2APIC p406 Figure 10-28) ----
export const ICR_VECTOR_MASK = 0xff;
export const ICR_DM_SHIFT = 8;
export const ICR_DM_MASK = 0x7 << ICR_DM_SHIFT;
/** Delivery modes, already shifted into bits 10:8. */
export const ICR_DM_FIXED = 0 << ICR_DM_SHIFT;
export const ICR_DM_LOWEST = 1 << ICR_DM_SHIFT;
export const ICR_DM_SMI = 2 << ICR_DM_SHIFT;
export const ICR_DM_REMRD = 3 << ICR_DM_SHIFT;   // reserved; remote read on P6
export const ICR_DM_NMI = 4 << ICR_DM_SHIFT;
export const ICR_DM_INIT = 5 << ICR_DM_SHIFT;
export const ICR_DM_SIPI = 6 << ICR_DM_SHIFT;
export const ICR_DM_EXTINT = 7 << ICR_DM_SHIFT;  // reserved in the ICR
/** Bit 11: 0 physical, 1 logical. Ignored with a shorthand. */
export const ICR_DEST_LOGICAL = 1 << 11;
/** Bit 12: delivery status (xAPIC, RO, 1 = send pending). Reserved in x2APIC. */
export const ICR_BUSY = 1 << 12;
/** Bit 14: level, 1 = assert (0 only for INIT level-deassert). */
export const ICR_LEVEL_ASSERT = 1 << 14;
/** Bit 15: trigger, 1 = level-triggered. */
export const ICR_TRIGGER_LEVEL = 1 << 15;
export const ICR_SHORTHAND_SHIFT = 18;
export const ICR_SHORTHAND_MASK = 0x3 << ICR_SHORTHAND_SHIFT;
/** Destination shorthands, already shifted into bits 19:18. */
export const ICR_SH_NONE = 0 << ICR_SHORTHAND_SHIFT;
export const ICR_SH_SELF = 1 << ICR_SHORTHAND_SHIFT;
export const ICR_SH_ALL_INCL = 2 << ICR_SHORTHAND_SHIFT;
export const ICR_SH_ALL_EXCL = 3 << ICR_SHORTHAND_SHIFT;
/** Low-half bits an x2APIC ICR write may set (Xen `guest_wrmsr_x2apic`): vector, mode, dest mode, level, trigger, shorthand. */
export const ICR_X2APIC_VALID = ICR_VECTOR_MASK | ICR_DM_MASK | ICR_DEST_LOGICAL | ICR_LEVEL_ASSERT |
  ICR_TRIGGER_LEVEL | ICR_SHORTHAND_MASK;
/** xAPIC destination: ICR_HI bits 31:24. */
export const ICR_HI_XAPIC_DEST_SHIFT = 24;
export const ICR_HI_XAPIC_DEST_MASK = 0xff000000;

// ---- Other register fields ----
export const SVR_VECTOR_MASK = 0xff;
export const SVR_ENABLE = 1 << 8;
export const SVR_FOCUS_DISABLE = 1 << 9;
export const SVR_EOI_BROADCAST_SUPPRESS = 1 << 12;
export const LVT_VECTOR_MASK = 0xff;
export const LVT_DM_MASK = 0x7 << 8;
export const LVT_DELIVERY_STATUS = 1 << 12;
export const LVT_POLARITY = 1 << 13;
export const LVT_REMOTE_IRR = 1 << 14;
export const LVT_TRIGGER_LEVEL = 1 << 15;
export const LVT_MASKED = 1 << 16;
export const LVT_TIMER_MODE_SHIFT = 17;
export const LVT_TIMER_MODE_MASK = 0x3 << LVT_TIMER_MODE_SHIFT;
export const LVT_TIMER_ONESHOT = 0 << LVT_TIMER_MODE_SHIFT;
export const LVT_TIMER_PERIODIC = 1 << LVT_TIMER_MODE_SHIFT;
export const LVT_TIMER_TSC_DEADLINE = 2 << LVT_TIMER_MODE_SHIFT;
/** ESR bits (SDM p377). */
export const ESR_SEND_CHECKSUM = 1 << 0;
export const ESR_RECV_CHECKSUM = 1 << 1;
export const ESR_SEND_ACCEPT = 1 << 2;
export const ESR_RECV_ACCEPT = 1 << 3;
export const ESR_REDIRECTABLE_IPI = 1 << 4;
export const ESR_SEND_ILLEGAL_VECTOR = 1 << 5;
export const ESR_RECV_ILLEGAL_VECTOR = 1 << 6;
export const ESR_ILLEGAL_REGISTER = 1 << 7;
/** DFR[31:28] models. */
export const DFR_MODEL_FLAT = 0xf;
export const DFR_MODEL_CLUSTER = 0x0;
/** Vectors 0-15 are illegal for fixed and lowest-priority delivery (SDM p376-377). */
export const APIC_FIRST_LEGAL_VECTOR = 16;
/** x2APIC MSR range and the offset rule MSR = 0x800 + (offset >> 4). */
export const X2APIC_MSR_FIRST = 0x800;
export const X2APIC_MSR_LAST = 0x8ff;
/** IA32_APIC_BASE bits. */
export const APIC_BASE_BSP = 1 << 8;
export const APIC_BASE_EXTD = 1 << 10;
export const APIC_BASE_EN = 1 << 11;

// ---- Layout checks (STYLE.md §4): fail at module load in every thread, never corrupt a neighbour ----
function lapicLayoutBug(msg: string): never {
  throw new Error(`this is a bug in vcpulab: lapic layout: ${msg}`);
}
function assertLapicLayout(): void {
  const archEnd = Math.max(...LAPIC_ARCH_REGISTERS.map(([o, n]) => o + n * LAPIC_SLOT_BYTES));
  if (archEnd > LAPIC_ARCH_END) lapicLayoutBug(`architectural registers end at ${archEnd}, past LAPIC_ARCH_END`);
  const seen = new Set<number>();
  for (const off of LAPIC_SIM_WORDS) {
    if ((off & (WORD - 1)) !== 0) lapicLayoutBug(`private word 0x${off.toString(16)} is not word aligned`);
    if (off < LAPIC_ARCH_END) lapicLayoutBug(`private word 0x${off.toString(16)} overlaps the register space`);
    if (off > LAPIC_SIM_LAST || off + WORD > LAPIC_PAGE_BYTES) lapicLayoutBug(`private word 0x${off.toString(16)} is past the end`);
    if (seen.has(off)) lapicLayoutBug(`private word 0x${off.toString(16)} is declared twice`);
    seen.add(off);
  }
  for (const [reg, slots] of LAPIC_ARCH_REGISTERS) {
    if ((reg & (LAPIC_SLOT_BYTES - 1)) !== 0) lapicLayoutBug(`register 0x${reg.toString(16)} is not slot aligned`);
    for (const off of LAPIC_SIM_WORDS) {
      if (off >= reg && off < reg + slots * LAPIC_SLOT_BYTES) lapicLayoutBug(`0x${off.toString(16)} overlaps 0x${reg.toString(16)}`);
    }
  }
}
assertLapicLayout();
