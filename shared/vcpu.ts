// vCPU blocks: the architectural state of each virtual CPU while it is not loaded on a pCPU
// (a VMCS-like save area) plus its scheduling state. Global vCPU index = domain's first + index.
// Owner: the pCPU the vCPU is placed on; others read VC_RUNSTATE/VC_PCPU with Atomics.
import { assertF64Aligned, assertLayout } from './layout.js';

export const VCPU_STRIDE_WORDS = 80;

/** General registers eax..r15 in ISA order (16 words). */
export const VC_REGS = 0;
/** Guest pc. */
export const VC_PC = 16;
/** Guest EFLAGS image (FL_* bits, x86 positions). */
export const VC_FLAGS = 17;
/** Guest IDT base address set by lidt; -1 = never loaded (any delivery is a triple fault). */
export const VC_IDTR = 18;
/** RS_* below. Atomics. */
export const VC_RUNSTATE = 19;
/** pCPU this vCPU is placed on. Atomics. */
export const VC_PCPU = 20;
/** Owning domain index. */
export const VC_DOMAIN = 21;
/** Index within the domain (Xen's vcpu_id). */
export const VC_ID = 22;
/** Virtual APIC ID: Xen gives vCPU n the ID 2n (../shared/reference/apic.md §1). */
export const VC_APIC_ID = 23;
/** Current p2m view index (0 = host p2m). */
export const VC_P2MIDX = 24;
/** Reports (magic 1) issued so far; orders reports per vCPU whatever pCPU produced them. */
export const VC_REPORT_SEQ = 25;
/** Reason the vCPU stopped (VSTOP_*), valid when RUNSTATE is RS_DONE or RS_LIMIT. */
export const VC_STOP_REASON = 26;
/** Times this vCPU moved to another pCPU. Written by the pCPU that moves it. */
export const VC_MIGRATIONS = 27;
/** IPIs this vCPU has sent (sequence for source tags, trace/events.ts). */
export const VC_IPI_SEQ = 28;
/** Intents (magic 2) declared so far: orders them against sends whatever pCPU recorded them. */
export const VC_INTENT_SEQ = 29;
/** When it last became runnable, from CTL_ENQUEUE_SEQ: the longest-waiting vCPU runs first. */
export const VC_QUEUE_SEQ = 30;
/** Credit left (credit2 scheduler), in cycles. Burnt by the pCPU running it; reset by its runqueue's pCPU. Atomics. */
export const VC_CREDIT = 31;
/** Hard affinity (cpus=): 256-bit pCPU mask, 8 words, bit p of word p>>5. Written at build time. */
export const VC_AFFINITY = 40;
export const VC_AFFINITY_WORDS = 8;
/** vcpu_pause count: the vCPU runs only while it is 0 (pauses nest, Xen domain.c). Atomics. */
export const VC_PAUSE_COUNT = 36;
/** VINIT_* below: an INIT waiting to be applied once the vCPU is off its pCPU. Atomics. */
export const VC_INIT_PENDING = 37;
export const VINIT_NONE = 0;
export const VINIT_PENDING = 1;
/** Retired instructions (VC_INSNS_F64) at which the guest's perf counter overflows next (Float64; guest_nmi_insns). Owner only. */
export const VC_GUEST_NMI_NEXT_F64 = 38;
/** Guest instructions retired by this vCPU (Float64); --max-instructions compares against it. */
export const VC_INSNS_F64 = 32;
/** Cycles this vCPU has run (Float64). */
export const VC_RUN_CYCLES_F64 = 34;
/** Posted-interrupt descriptor: PIR, 256 bits in 8 words (Atomics.or by senders, exchanged by the owner). */
export const VC_PIR = 48;
/** PI control: PI_ON (outstanding notification) | PI_SN (suppress notification). Atomics. */
export const VC_PI_CTL = 56;
export const PI_ON = 1 << 0;
export const PI_SN = 1 << 1;
// The realm oracles' memory of this vCPU (oracles/realm.ts), saved here while it is off a pCPU so it moves
// with the vCPU. Oracle state only: nothing in the machine reads it, and it stays 0 with oracles off.
/** gfn of the code page its last instruction ran on, plus 1 (0: not known yet). */
export const VC_ORC_CODE = 57;
/** pc of its last control transfer (bit 0 set: an interrupt or exception delivery); -1 none. */
export const VC_ORC_FROM = 58;
/** ORC_* bits below. */
export const VC_ORC_FLAGS = 59;
/** VNMI_* bits below: virtual-NMI state saved while the vCPU is off a pCPU (CpuCore.nmiBlocked). Owner only. */
export const VC_NMI_FLAGS = 60;
/** Virtual-NMI blocking: the guest is in its NMI handler until IRET (VMX "blocking by NMI", SDM virtual NMIs). */
export const VNMI_BLOCKED = 1 << 0;
/** The NMI latched at the vLAPIC is the guest watchdog's (EV_VNMI names the source). */
export const VNMI_FROM_WATCHDOG = 1 << 1;
/** KERNEL_IN_REALM_VIEW was reported for the stretch of kernel code it is in now. */
export const ORC_KIRV = 1 << 0;
/**
 * Soft affinity (cpus_soft=), as VC_AFFINITY: the pCPUs placement prefers. Written at build time, already
 * intersected with the hard affinity; all zero when there is no preference (Xen: soft counts only when
 * it intersects hard and does not contain it, xen-sched-ipi.md §1.5).
 */
export const VC_SOFT_AFFINITY = 64;
// altp2m state (xen-altp2m.md §0 "Per vCPU"). VC_P2MIDX above is Xen's bookkeeping (p2midx): it learns of a
// guest VMFUNC only at the vCPU's next VM exit, so it may lag VC_EPTP_INDEX while the vCPU runs.
/** The view the hardware uses (VMCS EPTP_INDEX). Written by the pCPU running the vCPU, or by whoever switches it off-CPU. */
export const VC_EPTP_INDEX = 72;
/** VCA_* bits below. Atomics.or/and. */
export const VC_ALTP2M_FLAGS = 73;
/** gfn of the registered #VE information page (-1 none). */
export const VC_VE_GFN = 74;
/** View a FAST_SINGLESTEP response switches to after the step. */
export const VC_FAST_SS_IDX = 75;
/** gpa and access (PERM_* bits) of the last EPT violation reported to vm_event (the EMULATE check reads them). */
export const VC_VIOL_GPA = 76;
export const VC_VIOL_ACCESS = 77;
/** Pauses taken by vm_event (Xen's vm_event_pause_count); responses act only while it is > 0. Atomics. */
export const VC_VM_EVENT_PAUSE = 78;
assertLayout('vcpu', VC_VM_EVENT_PAUSE, VCPU_STRIDE_WORDS);
assertLayout('vcpu soft affinity before altp2m', VC_SOFT_AFFINITY + VC_AFFINITY_WORDS - 1, VC_EPTP_INDEX);
/** Xen's INVALID_ALTP2M: the vCPU uses the host p2m. */
export const INVALID_ALTP2M = 0xffff;

// VC_ALTP2M_FLAGS bits
/** "Enable VM functions" (VMFUNC leaf 0) in this vCPU's VMCS: set by vcpu_enable_notify, cleared only when altp2m is turned off. */
export const VCA_VMFUNC = 1 << 0;
/** "EPT-violation #VE": set by vcpu_enable_notify, cleared by vcpu_disable_notify. */
export const VCA_VE = 1 << 1;
/** Monitor single-step is on (TOGGLE_SINGLESTEP). */
export const VCA_SINGLESTEP = 1 << 2;
/** FAST_SINGLESTEP: step one instruction, then switch to VC_FAST_SS_IDX without an event. */
export const VCA_FAST_SS = 1 << 3;
/** EMULATE: run the faulting instruction once past the access restriction. */
export const VCA_EMULATE = 1 << 4;
assertLayout('vcpu PI before soft affinity', VC_PI_CTL, VC_SOFT_AFFINITY);
assertLayout('vcpu oracle words after PI', VC_PI_CTL, VC_ORC_CODE);
assertLayout('vcpu oracle words before soft affinity', VC_ORC_FLAGS, VC_SOFT_AFFINITY);
assertLayout('vcpu affinity before PIR', VC_AFFINITY + VC_AFFINITY_WORDS - 1, VC_PIR);
assertLayout('vcpu f64 before affinity', VC_RUN_CYCLES_F64 + 1, VC_AFFINITY);
assertF64Aligned('vcpu insns', VC_INSNS_F64);
assertF64Aligned('vcpu run cycles', VC_RUN_CYCLES_F64);
assertF64Aligned('vcpu guest NMI next', VC_GUEST_NMI_NEXT_F64);
assertLayout('vcpu guest NMI before affinity', VC_GUEST_NMI_NEXT_F64 + 1, VC_AFFINITY);
assertLayout('vcpu NMI flags before soft affinity', VC_NMI_FLAGS, VC_SOFT_AFFINITY);

// VC_RUNSTATE values
export const RS_RUNNABLE = 0;
export const RS_RUNNING = 1;
/** hlt with no interrupt pending: waits for an interrupt. */
export const RS_BLOCKED = 2;
/** Its domain has ended (shutdown or crash). */
export const RS_DONE = 3;
/** Reached --max-instructions. */
export const RS_LIMIT = 4;
/** On a pCPU that was reset by INIT: its state is gone (HOST_RESET). */
export const RS_LOST = 5;
/** INIT reset it: it waits for a SIPI (virtual AP bring-up). */
export const RS_WAIT_SIPI = 6;

// Guest EFLAGS bits (x86 positions so pushf images look familiar)
export const FL_CF = 1 << 0;
export const FL_ZF = 1 << 6;
export const FL_SF = 1 << 7;
export const FL_IF = 1 << 9;
export const FL_OF = 1 << 11;
/** Bit 1 of EFLAGS always reads 1 on x86. */
export const FL_FIXED = 1 << 1;
export const FL_MASK = FL_CF | FL_ZF | FL_SF | FL_IF | FL_OF;
