// The pCPU as the hypervisor's handlers see it: what a handler may read and call on the pCPU it runs on
// (Xen's `current` and per-CPU data). Handlers import this narrow interface, never the pCPU loop that
// implements it (pcpu-loop.ts `Pcpu`), so the layers import only downwards, types included.
import type { ApicBusOptions } from '../hw/apic-bus.js';
import type { LapicOptions } from '../hw/lapic.js';
import type { CostTable } from '../hw/clock.js';
import type { CpuCore } from '../isa/interp.js';
import type { Machine } from '../machine.js';

/** Parameters every pCPU gets, identical in both engines. Plain data (sent to workers). */
export interface PcpuParams {
  costs: CostTable;
  /** Time slice in cycles. */
  timesliceCycles: number;
  /** Per-vCPU instruction limit; 0 = none. */
  maxInstructions: number;
  /** Record an EV_EXIT event for every VM exit (traces and evidence need them). */
  traceExits: boolean;
  /** vCPUs move between pCPUs (descheduled vCPUs rebalance; idle pCPUs pull waiting work). */
  migrate: boolean;
  /** Extra migration: chance in percent that a descheduled vCPU moves to a random pCPU of its affinity. */
  migratePercent: number;
  /** Run seed; each pCPU derives its own stream from it. */
  seed: number;
  /** "credit2": credit-ordered (sched/credit2.ts); "fifo": longest-waiting first with fixed time slices. */
  scheduler: 'credit2' | 'fifo';
  /** credit2: minimum run before a running vCPU can be preempted (Xen's sched_ratelimit_us). */
  ratelimitCycles: number;
  /** Period of each pCPU's LAPIC timer in cycles: the scheduler's tick (apic-timer.ts). */
  lapicTimerCycles: number;
  /** The hypervisor takes pending interrupts between ICR_HI and ICR_LO of its own sends (Xen masks them). */
  hvIpiUnmasked: boolean;
  /**
   * The virtual APIC bus (vLAPIC routing) where implementations differ (Xen's by default). The physical bus
   * always follows the SDM (apic-bus.ts APIC_BUS_HARDWARE).
   */
  apicBus: ApicBusOptions;
  lapic: LapicOptions;
  /**
   * The inline oracles run (default true). Off, the machine runs exactly the same (DESIGN.md §6) and emits
   * none of their verdict events (trace/events.ts VERDICT_EVENTS).
   */
  oracles?: boolean;
  /** Per domain index: the realm's entry points (scenario key realm_entries), sorted; empty or absent = any. */
  realmEntries?: number[][];
  /** Whose CPUs ([machine] vendor): how an INIT is taken (init.ts). Absent = intel. */
  vendor?: 'intel' | 'amd';
  /** Cycles between two of Xen's watchdog NMIs on each pCPU; 0 or absent = the watchdog is off (nmi.ts). */
  nmiWatchdogCycles?: number;
  /** Xen's `nmi=` option: its handler's choice for an NMI of unknown reason. Absent = dom0. */
  xenNmi?: 'dom0' | 'ignore' | 'fatal';
  /** Intel: Xen's handling of an INIT VM exit. Absent = ignore. */
  initExit?: 'ignore' | 'crash';
  /** AMD: whether an INIT that caused a #VMEXIT stays pending and resets the core at STGI (init.ts). Absent = pending. */
  amdInit?: 'pending' | 'consumed';
  /** Per domain index: a vCPU's retired instructions between two of its guest perf counter's NMIs; 0 = off. */
  guestNmiInsns?: number[];
}

/** The pCPU context a handler gets. */
export interface PcpuCtx {
  readonly m: Machine;
  /** pCPU index = physical APIC ID. */
  readonly id: number;
  /** Word offset of this pCPU's block (shared/pcpu.ts). */
  readonly base: number;
  readonly params: PcpuParams;
  /** The guest CPU state of the loaded vCPU. */
  readonly core: CpuCore;
  /** Global index of the loaded vCPU, -1 when none; and its domain index. */
  cur: number;
  curDomain: number;
  /** Simulated time at which the loaded vCPU's slice ends (a handler may end it now). */
  sliceEnd: number;
  /** The vLAPIC has something new to look at before the next VM entry. */
  virqCheck: boolean;
  /** A guest HVMOP_altp2m in progress (hvm-op-guest.ts owns its fields). */
  readonly altOp: { readonly phase: number };
  /** Emit an event for the loaded vCPU (its pc in the record), with an explicit pc, or for another vCPU. */
  emit(kind: number, a: number, b: number, c: number): void;
  emitPc(kind: number, a: number, b: number, c: number, pc: number): void;
  emitFor(dom: number, vcpu: number, kind: number, a: number, b: number, c: number): void;
  /** Charge hypervisor cycles to this pCPU's clock. */
  hvCycles(n: number): void;
  /** Inject a fault into the loaded vCPU at its current instruction. */
  injectFault(vec: number): void;
  /** The loaded vCPU's view changed: reload its translation state. */
  reloadView(): void;
  /** The loaded vCPU is gone (its pCPU was reset): forget it without saving anything. */
  dropCurrent(): void;
  /** Xen's watchdog counter overflowed on this pCPU and raised the NMI now latched (nmi.ts). */
  watchdogOverflow: boolean;
  /** Intel: an INIT was blocked in VMX root operation; the next VM entry exits on it (init.ts). */
  initHeld: boolean;
  /** The scheduler's timer interrupt was taken: the loaded vCPU's slice ends here if it is over. */
  schedTick(): void;
}
