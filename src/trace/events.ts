// Event kinds carried by the per-pCPU rings (layout: shared/ring.ts). Grouped by class, as Xen's
// trace.h does: 1-15 guest services, 16-31 VM exits and scheduling, 32-47 domain lifecycle.
// Every record also carries a pc (shared/ring.ts REC_PC): the loaded vCPU's guest pc when it was emitted, -1
// when none was loaded or it was emitted for another vCPU. Events whose pc names another party say so below.
export const EV_REPORT = 1;        // a = key, b = value, c = per-vCPU report sequence
export const EV_INTENT = 2;        // a = target vCPU, b = vector | intent seq << 8, c = sender's IPI seq then
export const EV_ASSERT = 3;        // a = code, b = pc
export const EV_MARKER = 4;        // a = marker id, b = pc
export const EV_CONSOLE = 5;       // a = byte
export const EV_EXIT = 16;         // a = EXIT_* reason, b = pc, c = qualification
export const EV_SCHED_IN = 17;     // vCPU loaded on this pCPU
export const EV_SCHED_OUT = 18;    // a = runstate it left in
export const EV_VCPU_LIMIT = 19;   // vCPU reached --max-instructions
export const EV_EXCEPTION = 20;    // a = vector, b = pc (delivered by the hypervisor: #GP from wrmsr, ...)
// 21-31 interrupts. A source tag names the IPI a vector came from: ((seq & 0x7ffff) << 12) | (sender + 1),
// sender = global vCPU index, seq = that vCPU's IPI sequence number; 0 = the hypervisor.
export const EV_IPI_SEND = 21;     // a = source tag, b = ICR low word, c = destination (ICR_HI >> 24, or x2APIC dest); pc = the sending instruction's
export const EV_IPI_DELIVER = 22;  // a = source tag, b = vector, c = pCPU the vector was accepted on (guest handler entered)
export const EV_IPI_COALESCED = 23; // a = source tag, b = vector: the target's IRR bit was already set
export const EV_PHYS_IRQ = 24;     // a = vector, b = PIRQ_* disposition, c = source tag
export const EV_HOST_RESET = 25;    // a = target pCPU, b = delivery mode (5 INIT, 6 SIPI), c = source tag; pc = the sender's
/**
 * A guest's ICR_LO write sent with an ICR_HI it did not just write: a = source tag, b = ICRW_*, c = last
 * writer (vCPU + 1, 0 hypervisor). pc = the interloper's: the guest pc of that ICR_HI write, -1 when the
 * hypervisor wrote it (the send's own pc is on its EV_IPI_SEND, same tag).
 */
export const EV_ICR_WINDOW = 26;
/** The hypervisor's own IPI left for another pCPU than it wrote (hv_ipi_irqs = "unmasked"): a = meant pCPU, b = vector, c = actual. */
export const EV_HV_IPI_MISDIRECTED = 27;
/**
 * A pCPU took an INIT (hv/init.ts): a = HINIT_* (what became of it), b = the domain index running there or -1,
 * c = source tag (0: the hypervisor); pc = the sender's ICR write (-1 none).
 */
export const EV_HOST_INIT = 28;
/** A pCPU took a physical NMI (hv/nmi.ts): a = NMI_* (what Xen's handler did), b = 1 if the watchdog's NMI absorbed a sent one, c = source tag; pc = the sender's. */
export const EV_NMI = 29;
/** A virtual NMI entered the guest through IDT vector 2: a = VNMI_* source, b = the interrupted pc, c = 0. */
export const EV_VNMI = 34;
/** The hypervisor panicked (fatal_trap): a = PANIC_* reason, b = pCPU; every domain is crashed. */
export const EV_HOST_PANIC = 35;
/**
 * A guest wrote a register of the host LAPIC it reaches through a passthrough path (HOST_APIC_TAMPER):
 * a = the register's xAPIC offset (TPR 0x80, EOI 0xB0, SVR 0xF0, LVT 0x2F0 and 0x320-0x370), b = the value
 * written, c = 0 through the xAPIC page, 1 by WRMSR; pc = the writing instruction's.
 */
export const EV_HOST_APIC_TAMPER = 30;
/**
 * The hypervisor waits for pCPU a to take its vector b (an EPT flush's call-function, the kick of a pause)
 * and that pCPU's LAPIC keeps it off: c = its TPR, which holds the vector's class off, or -1 when the LAPIC
 * is software-disabled (the vector was dropped). Once per wait and target; pc -1 (the hypervisor's).
 */
export const EV_HV_HELD_OFF = 31;
export const EV_DOMAIN_END = 32;   // a = DS_* state, b = exit code or CRASH_*, c = detail
export const EV_HALT_DEAD = 33;    // a vCPU halted with IF=0 (can never wake)
// 48-63 memory views (altp2m, VMFUNC, #VE, vm_event, EPT sync)
export const EV_VMFUNC = 48;       // a = from view, b = pc, c = to view (a guest EPTP switch, no exit)
export const EV_ROGUE_VMFUNC = 49; // a = to view, b = pc outside the trampoline region
export const EV_VE = 50;           // a = gpa, b = access (PERM_*), c = view: #VE delivered in the guest
export const EV_MEM_EVENT = 51;    // a = gpa, b = access, c = view: MEM_ACCESS request posted, vCPU paused
export const EV_INVEPT = 52;       // a = table flushed (-1 host, -2 all-context), b = marks found
export const EV_STALE = 53;        // a = gpa, b = access | view << 8, c = entry stamp: access through a stale translation
export const EV_REALM_ESCAPE = 54; // a = gpa of the secret, b = pc outside the realm, c = view
export const EV_ALTP2M_OP = 55;    // a = sub-op, b = result, c = generation (0: wrote nothing): a guest HVMOP_altp2m returned
export const EV_SINGLESTEP = 56;   // a = pc: a SINGLESTEP request posted
/**
 * Control entered the realm other than from the trampoline to one of its entry points (REALM_ENTRY):
 * a = the instruction that transferred control (XFER_INTERRUPT: where the interrupt or exception was taken),
 * b = XFER_* | REALM_ENTRY_NOT_LISTED | view << 16, c = gfn the previous instruction ran on; pc = the target.
 */
export const EV_REALM_ENTRY = 57;
/**
 * Code outside the realm and the trampoline ran in a realm view (KERNEL_IN_REALM_VIEW): a = its pc,
 * b = KIRV_* | view << 16, c = the last control transfer's pc (-1 none); pc = a.
 */
export const EV_KERNEL_IN_REALM_VIEW = 58;

export const EVENT_NAMES: Readonly<Record<number, string>> = {
  [EV_REPORT]: 'report', [EV_INTENT]: 'intent', [EV_ASSERT]: 'assert', [EV_MARKER]: 'marker',
  [EV_CONSOLE]: 'console', [EV_EXIT]: 'exit', [EV_SCHED_IN]: 'sched_in', [EV_SCHED_OUT]: 'sched_out',
  [EV_VCPU_LIMIT]: 'vcpu_limit', [EV_EXCEPTION]: 'exception', [EV_DOMAIN_END]: 'domain_end',
  [EV_HALT_DEAD]: 'halt_dead', [EV_IPI_SEND]: 'ipi_send', [EV_IPI_DELIVER]: 'ipi_deliver',
  [EV_IPI_COALESCED]: 'ipi_coalesced', [EV_PHYS_IRQ]: 'phys_irq', [EV_HOST_RESET]: 'host_reset',
  [EV_ICR_WINDOW]: 'icr_window', [EV_HV_IPI_MISDIRECTED]: 'hv_ipi_misdirected',
  [EV_HOST_APIC_TAMPER]: 'host_apic_tamper', [EV_HV_HELD_OFF]: 'hv_held_off',
  [EV_VMFUNC]: 'vmfunc', [EV_ROGUE_VMFUNC]: 'rogue_vmfunc', [EV_VE]: 've', [EV_MEM_EVENT]: 'mem_event',
  [EV_INVEPT]: 'invept', [EV_STALE]: 'stale_translation', [EV_REALM_ESCAPE]: 'realm_escape',
  [EV_ALTP2M_OP]: 'altp2m_op', [EV_SINGLESTEP]: 'singlestep', [EV_REALM_ENTRY]: 'realm_entry',
  [EV_KERNEL_IN_REALM_VIEW]: 'kernel_in_realm_view', [EV_HOST_INIT]: 'host_init', [EV_NMI]: 'nmi', [EV_VNMI]: 'vnmi',
  [EV_HOST_PANIC]: 'host_panic',
};

/**
 * The oracles' verdicts: events that only an inline oracle emits, and only when the oracles are on. Every
 * other event is the machine's own (what it did), the same with the oracles on or off; the run's digest
 * covers only those (trace/collector.ts), so one digest names one run whatever the oracles say about it.
 */
export const VERDICT_EVENTS: readonly number[] = [EV_ROGUE_VMFUNC, EV_STALE, EV_REALM_ESCAPE, EV_REALM_ENTRY, EV_KERNEL_IN_REALM_VIEW];
const VERDICT = new Uint8Array(256);
for (const k of VERDICT_EVENTS) VERDICT[k] = 1;
/** Is `kind` one of VERDICT_EVENTS? */
export function eventIsVerdict(kind: number): boolean { return VERDICT[kind & 0xff] === 1; }

/** How control reached the realm (EV_REALM_ENTRY b bits 0-2; the REALM_ENTRY cause tokens, oracles/realm.ts). */
export const XFER_FALLTHROUGH = 0;  // straight-line code ran off the previous page into the realm
export const XFER_JUMP = 1;         // jmp or a taken conditional jump
export const XFER_CALL = 2;
export const XFER_RETURN = 3;       // ret
export const XFER_IRET = 4;
export const XFER_INTERRUPT = 5;    // an interrupt or exception delivered with its handler in the realm
export const XFER_OTHER = 6;        // none of these can be told (the hypervisor moved pc)
/** EV_REALM_ENTRY b bit 3: from the trampoline, to an address `realm_entries` does not list. */
export const REALM_ENTRY_NOT_LISTED = 1 << 3;

/** Why kernel code ran in a realm view (EV_KERNEL_IN_REALM_VIEW b bits 0-2; its cause tokens). */
export const KIRV_INTERRUPT = 0;    // an interrupt or exception taken in realm or trampoline code ran its handler there
export const KIRV_LEFT_REALM = 1;   // realm or trampoline code went on to kernel code without leaving the view
export const KIRV_VIEW_SWITCH = 2;  // the view changed under kernel code (VMFUNC, switch_p2m, an agent, a p2m change)

/** EV_ICR_WINDOW causes. */
export const ICRW_REUSED = 1;      // the ICR_HI value had already been sent with (a nested send ran in between)
export const ICRW_OTHER = 2;       // ICR_HI was last written by someone else (the hypervisor or another vCPU)
/** Or'ed into ICRW_*: the interloping ICR_HI write was made inside the vCPU's NMI handler (cli does not stop an NMI). */
export const ICRW_NMI = 4;

/** EV_PHYS_IRQ dispositions. */
export const PIRQ_HANDLED = 0;      // one of the hypervisor's own vectors
export const PIRQ_UNKNOWN = 1;      // no handler: dropped (IPI_UNKNOWN_VECTOR)
export const PIRQ_REFLECTED = 2;    // no handler, passed to the running vCPU as the passthrough design assumes

export function ipiTag(sender: number, seq: number): number { return ((seq & 0x7ffff) << 12) | (sender + 1); }
export function ipiTagSender(tag: number): number { return (tag & 0xfff) - 1; }

// EV_HOST_INIT.a: what an INIT at a pCPU did (apic.md §9; hv/init.ts)
export const HINIT_IGNORED = 0;       // Intel, non-root: VM exit 3; Xen prints "INIT received - ignoring" and re-enters
export const HINIT_HELD = 1;          // Intel, VMX root: blocked, pending; the next VM entry exits on it
export const HINIT_DOMAIN_CRASH = 2;  // the exit's handler crashed the running domain (AMD; Intel with init_exit = "crash")
export const HINIT_RESET = 3;         // AMD, host mode: the core reset behind Xen's back (no R_INIT)
export const HINIT_CRASH_RESET = 4;   // AMD, guest mode, amd_init = "pending": the #VMEXIT crashed the domain, then the INIT reset the core at STGI
export const HINIT_NAMES = ['vmexit_ignored', 'held_in_root', 'domain_crash', 'core_reset', 'domain_crash_core_reset'] as const;
// EV_NMI.a: what Xen's do_nmi did with a physical NMI (hv/nmi.ts)
export const NMI_WATCHDOG = 0;        // the watchdog's own (its perf counter overflowed)
export const NMI_DROPPED_AP = 1;      // unknown reason on a CPU other than the BSP: not looked at
export const NMI_DROPPED_WATCHDOG = 2; // unknown reason with the watchdog on (not forced): not reported
export const NMI_IGNORED = 3;         // unknown reason, nmi=ignore
export const NMI_DOM0 = 4;            // unknown reason, nmi=dom0: reported to a PV hardware domain (none here)
export const NMI_FATAL = 5;           // unknown reason, nmi=fatal: the hypervisor panics
export const NMI_SHOOTDOWN = 6;       // the panicking CPU's crash NMI: this pCPU stops
export const NMI_NAMES = ['watchdog', 'dropped_ap', 'dropped_watchdog', 'ignored', 'dom0', 'fatal', 'shootdown'] as const;
// EV_VNMI.a
export const VNMI_IPI = 0;            // an NMI IPI through the vLAPIC (Xen vlapic_accept_irq: nmi_pending)
export const VNMI_WATCHDOG = 1;       // the guest's own NMI watchdog (domain key guest_nmi_insns)
// EV_HOST_PANIC.a
export const PANIC_UNKNOWN_NMI = 1;

// Domain crash reasons (DM_CRASH_REASON, EV_DOMAIN_END.b when crashed)
export const CRASH_TRIPLE_FAULT = 1;   // detail: vector, pc
export const CRASH_EPT_VIOLATION = 2;  // detail: gpa, access
export const CRASH_BAD_VMFUNC = 3;
export const CRASH_INIT_EXIT = 4;      // detail: source tag; the INIT exit's handler crashed it ("Unexpected vmexit")
export const CRASH_HOST_PANIC = 5;     // detail: pCPU that panicked
export const CRASH_NAMES: Readonly<Record<number, string>> = {
  [CRASH_TRIPLE_FAULT]: 'triple fault', [CRASH_EPT_VIOLATION]: 'EPT violation', [CRASH_BAD_VMFUNC]: 'VMFUNC',
  [CRASH_INIT_EXIT]: 'INIT exit', [CRASH_HOST_PANIC]: 'host panic',
};
export function ipiTagSeq(tag: number): number { return tag >>> 12; }
