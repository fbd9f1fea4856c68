// The hypervisor's loop on one pCPU (DESIGN.md §4): pending physical interrupts, scheduling, VM entry,
// guest execution, exit handling. The same object code runs under both engines; only the RingFullHandler
// and the shared-access budget per step differ.
import type { PcpuCtx, PcpuParams } from './pcpu-ctx.js';
import { exitCount, exitCountTimer } from './exits.js';
import * as C from '../../shared/machine.js';
import { DM_IPI_PATH, DM_P2M_ROOT, DM_STATE, DM_VCPU_MAP_GPA, DS_RUNNING, IPI_PATH_X2APIC_PASSTHROUGH, VCPU_MAP_ENTRY_WORDS, ipiPathHwApic, ipiPathPosts } from '../../shared/domain.js';
import { VirtLapicPort, piNotificationOnly } from './posted.js';
import { PhysLapicPort, physService, physWouldInterrupt } from './ipi.js';
import { apicTimerSetup } from './apic-timer.js';
import { LapicTimer } from '../hw/lapic-timer.js';
import { lapicPendingDeliverable } from '../hw/lapic.js';
import { hvKick } from './ipi-send.js';
import { LOCAL_TIMER_VECTOR, irqVectorsComplete } from './irq-vectors.js';
import { assert } from '../errors.js';
import { vlapicInject, vlapicWatchdogNmi } from './vlapic.js';
import { nmiWatchdogFire } from './nmi.js';
import { hvInitHeldEntry } from './init.js';
import { LAPIC_SIM_NMI_PENDING } from '../../shared/lapic.js';
import { p2mGetMfn } from '../hw/ept.js';
import {
  PC_CLOCK_F64, PC_CTXSW_F64, PC_CURRENT, PC_ENTRIES_F64, PC_HV_F64, PC_IDLE_F64, PC_INSNS_F64,
  PC_PENDING, PC_STATE, PC_BURSTS, PEND_IRQ, PS_IDLE, PS_RUNNING, PS_STOPPED, PS_WAIT_SIPI,
} from '../../shared/pcpu.js';
import {
  RS_DONE, RS_LIMIT, RS_RUNNABLE, RS_RUNNING, VCPU_STRIDE_WORDS, VC_DOMAIN, VC_FLAGS, VC_ID, VC_IDTR,
  VC_INIT_PENDING, VC_INSNS_F64, VC_MIGRATIONS, VC_PAUSE_COUNT, VC_PC, VC_PCPU, VC_REGS, VINIT_NONE, VC_RUNSTATE, VC_RUN_CYCLES_F64,
} from '../../shared/vcpu.js';
import { type CpuHooks, type DeliveryHook, CpuCore, EXIT_EXTINT, EXIT_IRQ_WINDOW, EXIT_MTF, EXIT_NMI, EXIT_NONE, EXIT_TRIPLE_FAULT, SHARED_UNLIMITED, guestRun } from '../isa/interp.js';
import { opcodeCosts } from '../hw/clock.js';
import * as Mo from '../hw/mem-order.js';
import type { Machine } from '../machine.js';
import { RingWriter, type RingFullHandler } from '../trace/ring.js';
import { EV_EXIT, EV_SCHED_IN, EV_SCHED_OUT, EV_VCPU_LIMIT } from '../trace/events.js';
import { vcpuApplyInit } from './vcpu-ops.js';
import { schedClaim, schedClaimNext, schedPlace, schedRandomPcpu, schedStamp } from './sched/sched.js';
import { credit2Best, credit2Burn, credit2Of, credit2Reset, credit2Runtime } from './sched/credit2.js';
import { Prng, childSeed } from '../prng.js';
import { inject, vmexitHandle } from './vmexit.js';
import { AD_DONE, AD_GEN, AD_REALM_HI, AD_REALM_LO, AD_SECRET_HI, AD_SECRET_LO, AD_TRAMP_HI, AD_TRAMP_LO, AD_VISIBLE, altp2mBase } from '../../shared/altp2m.js';
import {
  INVALID_ALTP2M, ORC_KIRV, VCA_EMULATE, VCA_FAST_SS, VCA_SINGLESTEP, VCA_VMFUNC, VC_ALTP2M_FLAGS, VC_EPTP_INDEX, VC_FAST_SS_IDX,
  VC_ORC_CODE, VC_ORC_FLAGS, VC_ORC_FROM, VC_P2MIDX, VC_GUEST_NMI_NEXT_F64, VC_NMI_FLAGS, VNMI_BLOCKED,
} from '../../shared/vcpu.js';
import { PC_INVEPT_HINT, PC_VMFUNCS } from '../../shared/pcpu.js';
import { GuestAltOp, OPW_NONE, hvmOpContinue, hvmOpHeldOffOn } from './hvm-op-guest.js';
import { altp2mActive, tableRoot, vcpuResyncP2midx, vcpuSetView, viewFillFromHost, viewValid, HOST_TABLE } from './altp2m.js';
import { dirtyMaskClear, dirtyMaskSet, eptEntryFlush } from './ept-sync.js';
import { monitorAttached, vmEventPost } from './vm-event.js';
import { AD_SINGLESTEP_MONITOR } from '../../shared/altp2m.js';
import { VM_EVENT_REASON_SINGLESTEP } from '../../shared/vm-event.js';
import { EV_KERNEL_IN_REALM_VIEW, EV_REALM_ENTRY, EV_REALM_ESCAPE, EV_ROGUE_VMFUNC, EV_SINGLESTEP, EV_STALE, EV_VMFUNC } from '../trace/events.js';

export type { PcpuParams } from './pcpu-ctx.js';

export const STEP_RAN = 0;
export const STEP_IDLE = 1;
export const STEP_STOPPED = 2;

export class Pcpu implements PcpuCtx, DeliveryHook, CpuHooks {
  readonly core: CpuCore;
  readonly ring: RingWriter;
  readonly base: number;
  /** Global index of the loaded vCPU, -1 none. */
  cur = -1;
  curDomain = -1;
  /** This pCPU's random stream (migration choices): a child seed of the run seed, so runs replay. */
  readonly rng: Prng;
  /** Exit reason of the last guest run, or EXIT_EXTINT once a pending interrupt was counted as an exit. */
  lastExit = 0;
  /** The two faces of the xAPIC page a guest may reach without an exit (CpuCore.lapic). */
  private readonly physPort: PhysLapicPort;
  private readonly virtPort: VirtLapicPort;
  /** The loaded vCPU may have a deliverable virtual interrupt (vlapic.ts vlapicInject). */
  virqCheck = true;
  sliceEnd = 0;
  /** A timer tick found the loaded vCPU's slice over (schedTick): schedule at the next step. */
  private sliceOver = false;
  /** This pCPU's LAPIC timer (hw/lapic-timer.ts): its ticks drive the scheduler (apic-timer.ts). */
  private readonly timer = new LapicTimer();
  /** A guest HVMOP_altp2m in progress on this pCPU (hvm-op-guest.ts). */
  readonly altOp: GuestAltOp;
  /** The domain whose vCPU this pCPU loaded last (dirty_cpumask is cleared only when that changes). */
  private lastDomain = -1;
  /** The next guest run is a VM entry (after an exit or a load), not the next burst of the same run. */
  private entering = true;
  /** PcpuParams.oracles. */
  private readonly oracles: boolean;
  /** The loaded domain's IPI path uses APIC virtualization (virtual-interrupt delivery without exits). */
  private apicv = false;
  /** Xen's watchdog counter overflowed and raised the NMI now latched (nmi.ts). */
  watchdogOverflow = false;
  /** Intel: an INIT blocked in VMX root operation waits for the next VM entry (init.ts). */
  initHeld = false;
  /** Xen's NMI watchdog: cycles between two of its NMIs (0: off), and when the next is due on this clock. */
  private readonly wdogPeriod: number;
  private wdogNext: number;
  /** Per domain: a vCPU's retired instructions between two of the guest's own perf NMIs (0: off). */
  private readonly guestNmiInsns: number[];
  /** The loaded vCPU's domain has a guest NMI watchdog; word index of its next due time (Float64). */
  private fGuestNmiNext = -1;
  /** PcpuParams.realmEntries as the core takes them, per domain (null: any realm address). */
  private readonly realmEntries: (Int32Array | null)[];

  // Precomputed word indices (see step). Per pCPU:
  private readonly iStop = C.CTL_STOP;
  private readonly iPending: number;
  private readonly iState: number;
  private readonly iBursts: number;
  private readonly fClock: number;
  private readonly fInsns: number;
  private readonly fEntries: number;
  private readonly iInveptHint: number;
  private readonly credit2: boolean;
  /** Machine.exclusive: one thread drives the machine, shared words are read plainly (hw/mem-order.ts). */
  private readonly ex: boolean;
  // ... and per loaded vCPU (set in load):
  private iRunstate = 0;
  private iPause = 0;
  private iDomState = 0;
  private iApFlags = 0;
  private iP2midx = 0;
  private iEptpIndex = 0;
  private fVInsns = 0;
  private fVCycles = 0;

  constructor(readonly m: Machine, readonly id: number, readonly params: PcpuParams, full: RingFullHandler) {
    this.base = m.pcpuBase(id);
    this.iPending = this.base + PC_PENDING;
    this.iState = this.base + PC_STATE;
    this.iBursts = this.base + PC_BURSTS;
    this.fClock = (this.base + PC_CLOCK_F64) >> 1;
    this.fInsns = (this.base + PC_INSNS_F64) >> 1;
    this.fEntries = (this.base + PC_ENTRIES_F64) >> 1;
    this.iInveptHint = this.base + PC_INVEPT_HINT;
    this.credit2 = params.scheduler === 'credit2';
    this.ex = m.exclusive;
    this.core = new CpuCore(m.mem32, m.mem8, m.p2m, m.pc32, this.base + PC_PENDING, opcodeCosts(params.costs));
    this.core.exceptionCost = params.costs.exception;
    this.core.exclusive = m.exclusive;
    this.ring = new RingWriter(m.ring32, m.ringF64, m.ringBase(id), id, full);
    this.physPort = new PhysLapicPort(this);
    this.virtPort = new VirtLapicPort(this);
    this.core.lapic = this.physPort;
    this.rng = new Prng(childSeed(params.seed, `pcpu${id}.sched`));
    this.core.clock = m.pcF64[(this.base + PC_CLOCK_F64) >> 1];
    this.core.ap32 = m.ap32;
    this.core.deliveryHook = this;
    this.oracles = params.oracles !== false;
    this.realmEntries = [];
    for (const e of params.realmEntries ?? []) this.realmEntries.push(e.length === 0 ? null : Int32Array.from(e).sort());
    this.core.oracles = this.oracles;
    this.core.hooks = this;
    this.wdogPeriod = Math.max(0, Math.round(params.nmiWatchdogCycles ?? 0));
    this.wdogNext = this.wdogPeriod;
    this.guestNmiInsns = params.guestNmiInsns ?? [];
    this.altOp = new GuestAltOp(this);
    // The hypervisor programs its LAPIC timer as the pCPU comes up; the count starts at this pCPU's clock.
    apicTimerSetup(m, id, params.lapicTimerCycles);
    this.timer.arm(m.lapic32, m.plapicBase(id), this.core.clock);
    // Every hypervisor vector has its handler (each handler module registered itself when it loaded).
    assert(irqVectorsComplete(), 'a hypervisor vector has no handler: a handler module was not loaded');
  }

  /**
   * Emit an event for the loaded vCPU (or a hypervisor event with vcpu -1). Its pc is the loaded vCPU's:
   * the current instruction's during a passed-through APIC access (the interpreter stores core.pc before
   * calling the port), where the guest stopped otherwise; -1 when no vCPU is loaded.
   */
  emit(kind: number, a: number, b: number, c: number): void {
    this.emitPc(kind, a, b, c, this.cur >= 0 ? this.core.pc : -1);
  }

  /** Emit an event for the loaded vCPU with an explicit pc (another party's, see trace/events.ts). */
  emitPc(kind: number, a: number, b: number, c: number, pc: number): void {
    const v = this.cur;
    const vid = v < 0 ? -1 : this.m.vc32[v * VCPU_STRIDE_WORDS + VC_ID];
    this.ring.push(this.core.clock, kind, this.curDomain, vid, a, b, c, pc);
  }

  /** Emit an event on behalf of another vCPU (dom, vCPU id within it); it carries no pc. */
  emitFor(dom: number, vcpu: number, kind: number, a: number, b: number, c: number): void {
    this.ring.push(this.core.clock, kind, dom, vcpu, a, b, c, -1);
  }

  /** Inject a fault into the loaded vCPU at its current instruction. */
  injectFault(vec: number): void { inject(this, vec); }

  /** The loaded vCPU is gone (its pCPU was reset): forget it without saving anything. */
  dropCurrent(): void {
    this.cur = -1;
    this.curDomain = -1;
    Atomics.store(this.m.pc32, this.base + PC_CURRENT, -1);
  }

  /** Advance simulated time by hypervisor work. */
  hvCycles(n: number): void {
    this.core.clock += n;
    this.m.pcF64[(this.base + PC_HV_F64) >> 1] += n;
  }

  /** Publish the clock for lax sync and the watchdog. */
  publishClock(): void {
    this.m.pcF64[(this.base + PC_CLOCK_F64) >> 1] = this.core.clock;
  }

  /**
   * One step: service pending bits, schedule, run the guest for at most `budget` instructions, handle
   * the exit. Returns STEP_*.
   */
  step(budget: number, sharedAccesses = SHARED_UNLIMITED): number {
    // Word indices are precomputed (constructor, load): imported layout constants are module-binding
    // loads that V8 does not fold, and this runs once per serial step.
    const m = this.m, pc32 = m.pc32, ex = this.ex;
    if (Mo.ld(m.ctl, this.iStop, ex) !== 0) return this.stop();
    if (this.wdogPeriod > 0 && this.core.clock >= this.wdogNext) this.watchdogTick();
    if (this.core.clock >= this.timer.deadline) this.timerExpired();
    const pend = pc32[this.iPending];
    if (pend !== 0) this.servicePending(pend);
    if (pc32[this.iState] === PS_WAIT_SIPI) return STEP_IDLE; // reset behind the hypervisor's back
    if (this.altOp.phase !== OPW_NONE) {
      // A hypercall that waits is not preempted: its vCPU stays here until the wait is over.
      hvmOpContinue(this);
      m.pcF64[this.fClock] = this.core.clock;
      return STEP_RAN;
    }
    let v = this.cur;
    if (v >= 0) {
      if (Mo.ld(m.dm32, this.iDomState, ex) !== DS_RUNNING) Atomics.store(m.vc32, this.iRunstate, RS_DONE);
      // A pause takes effect when the vCPU is in the hypervisor: after an exit, or the kick that pauses it
      // (a kick the LAPIC holds off leaves it running). The slice ends on a timer tick (schedTick).
      if (Mo.ld(m.vc32, this.iRunstate, ex) !== RS_RUNNING || this.sliceOver ||
        (this.entering && Mo.ld(m.vc32, this.iPause, ex) !== 0)) v = this.schedule();
    } else v = this.schedule();
    // PC_STATE and PC_BURSTS are written only by this pCPU: a plain read of its own word is exact, and
    // only a change needs the (ordered) Atomics store other threads pair with.
    if (v < 0) {
      if (pc32[this.iState] !== PS_IDLE) Atomics.store(pc32, this.iState, PS_IDLE);
      return STEP_IDLE;
    }
    if (pc32[this.iState] !== PS_RUNNING) Atomics.store(pc32, this.iState, PS_RUNNING);
    const insF = this.fVInsns;
    const max = this.params.maxInstructions;
    if (max > 0) {
      const left = max - m.vcF64[insF];
      if (left < budget) budget = left;
    }
    m.pcF64[this.fEntries]++;
    if (this.initHeld) {
      // Intel: the INIT blocked in root operation takes effect now, as a VM exit right at entry.
      hvInitHeldEntry(this);
      this.entering = true;
      m.pcF64[this.fClock] = this.core.clock;
      return STEP_RAN;
    }
    if (this.fGuestNmiNext >= 0) budget = this.guestNmiDue(budget);
    if (!vlapicInject(this)) {
      vmexitHandle(this, EXIT_TRIPLE_FAULT);
      return STEP_RAN;
    }
    const core = this.core;
    // A serial step boundary inside a burst is not a VM entry: only after an exit (or a load) does the
    // vCPU enter again, and only then does the pCPU run its INVEPT (vmx_vmenter_helper).
    if (this.entering) {
      this.entering = false;
      if (pc32[this.iInveptHint] !== 0) eptEntryFlush(this, this.curDomain);
    }
    const apf = Mo.ld(m.vc32, this.iApFlags, ex);
    core.vmfuncEnabled = (apf & VCA_VMFUNC) !== 0;
    const stepping = (apf & (VCA_SINGLESTEP | VCA_FAST_SS | VCA_EMULATE)) !== 0;
    if (stepping) {
      budget = 1;
      core.ignoreAccess = (apf & VCA_EMULATE) !== 0;
    }
    const c0 = core.clock, pc0 = core.pc;
    core.sharedLeft = sharedAccesses;
    let exit = guestRun(core, budget);
    // A posted-interrupt notification alone is taken in guest mode: the CPU syncs PIR without an exit (the
    // interpreter stopped only so the model can do it, at the next step). Anything else pending exits.
    if (exit === EXIT_EXTINT && piNotificationOnly(this)) exit = EXIT_NONE;
    // With APIC virtualization (posted, ipiv, avic) the CPU itself delivers a virtual interrupt once IF is set:
    // no interrupt-window exit; the burst just ends so the model can deliver it.
    if (exit === EXIT_IRQ_WINDOW && this.apicv) { exit = EXIT_NONE; this.virqCheck = true; }
    this.lastExit = exit;
    if (core.stale !== 0) this.noteStale();
    // Xen reads EPTP_INDEX at every exit: only then does p2midx catch up with a guest VMFUNC.
    if (exit !== EXIT_NONE && core.view !== m.vc32[this.iP2midx] && core.view !== INVALID_ALTP2M) {
      Atomics.store(m.vc32, this.iEptpIndex, core.view);
      vcpuResyncP2midx(m, this.curDomain, v, core.view);
    }
    const retired = core.retired, ran = core.clock - c0;
    m.vcF64[insF] += retired;
    m.vcF64[this.fVCycles] += ran;
    if (this.credit2) credit2Burn(m, v, ran);
    m.pcF64[this.fInsns] += retired;
    if (exit !== EXIT_NONE) {
      this.entering = true;
      exitCount(this, exit);
      if (this.params.traceExits) this.emit(EV_EXIT, exit, core.pc, core.exitQual);
      vmexitHandle(this, exit);
    }
    if (stepping) this.afterStep(apf, pc0);
    if (max > 0 && m.vcF64[insF] >= max && Atomics.load(m.vc32, this.iRunstate) === RS_RUNNING) {
      Atomics.store(m.vc32, this.iRunstate, RS_LIMIT);
      Atomics.add(m.ctl, C.CTL_LIMITED_VCPUS, 1);
      this.emit(EV_VCPU_LIMIT, 0, core.pc, 0);
    }
    m.pcF64[this.fClock] = core.clock;
    pc32[this.iBursts]++; // progress for the watchdog; a late view of it is harmless
    return STEP_RAN;
  }

  /** Xen's watchdog: its perf counter overflowed on this pCPU; one NMI however late the pCPU looks (nmi.ts). */
  private watchdogTick(): void {
    const c = this.core.clock, per = this.wdogPeriod;
    this.wdogNext = c - ((c - this.wdogNext) % per) + per;
    nmiWatchdogFire(this);
  }

  /**
   * The guest's own perf NMI (guest_nmi_insns): when the loaded vCPU's retired instructions reached the
   * counter's overflow point, its vPMU raised a PMI: the exit happens and Xen injects a virtual NMI.
   * Otherwise the burst is cut to end exactly there, so the NMI may land between any two instructions,
   * `cli` or not. Returns the budget.
   */
  private guestNmiDue(budget: number): number {
    const m = this.m, i = this.fGuestNmiNext, per = this.guestNmiInsns[this.curDomain];
    const done = m.vcF64[this.fVInsns];
    if (done >= m.vcF64[i]) {
      m.vcF64[i] = done - ((done - m.vcF64[i]) % per) + per;
      exitCount(this, EXIT_NMI);
      this.hvCycles(this.params.costs.vmexit);
      this.entering = true;
      vlapicWatchdogNmi(this);
    }
    const left = m.vcF64[i] - done;
    return left < budget ? left : budget;
  }

  /** Bits other threads set in PC_PENDING: kicks and physical interrupts. */
  private servicePending(pend: number): void {
    const pc32 = this.m.pc32;
    Atomics.and(pc32, this.iPending, ~pend);
    // A posted-interrupt notification alone is taken in guest mode (posted.ts): no exit, so no VM entry after it.
    const inGuest = this.cur >= 0 && piNotificationOnly(this, pend);
    if (!inGuest) this.entering = true; // a kick or an interrupt takes the vCPU out of guest mode
    if ((pend & PEND_IRQ) === 0) return;
    // The loaded vCPU is still in guest mode if its last burst ended without an exit (init.ts asks).
    const guestMode = this.cur >= 0 && this.lastExit === EXIT_NONE && !inGuest;
    // Between two serial steps the loaded vCPU is still in guest mode: an interrupt arriving then
    // makes it exit, exactly as one arriving mid-burst does (the interpreter counted that case). One the
    // LAPIC holds off (a raised TPR) makes no exit.
    if (this.cur >= 0 && this.lastExit !== EXIT_EXTINT && !inGuest && physWouldInterrupt(this)) {
      exitCount(this, EXIT_EXTINT);
      if (lapicPendingDeliverable(this.m.lapic32, this.m.plapicBase(this.id)) === LOCAL_TIMER_VECTOR) exitCountTimer(this);
      this.lastExit = EXIT_EXTINT;
      this.hvCycles(this.params.costs.vmexit);
    }
    physService(this, guestMode);
  }

  /**
   * A scheduler timer interrupt before the next step (the serial engine's `preempt` strategy): the loaded
   * vCPU exits and its slice ends now, so the scheduler runs and another waiting vCPU may take the pCPU.
   */
  preempt(): void {
    if (this.cur < 0 || this.altOp.phase !== OPW_NONE) return; // a hypercall in progress is not preempted
    exitCount(this, EXIT_EXTINT);
    this.lastExit = EXIT_EXTINT;
    this.entering = true;
    this.hvCycles(this.params.costs.vmexit);
    this.sliceEnd = this.core.clock;
    this.sliceOver = true;
  }

  /** The LAPIC timer reached zero: latch its vector and raise the interrupt line if the LAPIC offers it. */
  private timerExpired(): void {
    const base = this.m.plapicBase(this.id);
    if (this.timer.poll(this.m.lapic32, base, this.core.clock) && physWouldInterrupt(this)) {
      Atomics.or(this.m.pc32, this.iPending, PEND_IRQ);
    }
  }

  /** The pCPU whose LAPIC holds off what this pCPU's hypervisor wait needs, or -1 (hvm-op-guest.ts hvmOpHeldOffOn). */
  waitHeldOffOn(): number {
    return this.altOp.phase === OPW_NONE ? -1 : hvmOpHeldOffOn(this);
  }

  schedTick(): void {
    if (this.cur >= 0 && this.core.clock >= this.sliceEnd) this.sliceOver = true;
  }

  /**
   * Would a scheduler timer interrupt before the next step (preempt) take the loaded vCPU off this pCPU,
   * where without it the vCPU would run on? The serial engine asks after steps that reached a LAPIC
   * register: pct and pos place timer interrupts only where one changes the schedule. No side effects.
   */
  preemptSwitches(): boolean {
    const v = this.cur, m = this.m;
    if (v < 0 || this.altOp.phase !== OPW_NONE || this.sliceOver) return false;
    if (Atomics.load(m.vc32, this.iRunstate) !== RS_RUNNING || Atomics.load(m.vc32, this.iPause) !== 0) return false;
    return !this.keepRunning(v);
  }

  /** Idle time passes: move the clock to `now` if behind (an idle pCPU follows the others). */
  idleUntil(now: number): void {
    if (now > this.core.clock) {
      this.m.pcF64[(this.base + PC_IDLE_F64) >> 1] += now - this.core.clock;
      this.core.clock = now;
      this.publishClock();
    }
  }

  stop(): number {
    if (this.cur >= 0) this.unload();
    Atomics.store(this.m.pc32, this.base + PC_STATE, PS_STOPPED);
    this.publishClock();
    return STEP_STOPPED;
  }

  /** Pick the next vCPU and switch to it (saving the current one). Returns the loaded vCPU or -1. */
  private schedule(): number {
    const m = this.m;
    const cur = this.cur;
    if (cur >= 0) {
      const rs = Atomics.load(m.vc32, cur * VCPU_STRIDE_WORDS + VC_RUNSTATE);
      if (rs === RS_RUNNING && Atomics.load(m.vc32, cur * VCPU_STRIDE_WORDS + VC_PAUSE_COUNT) === 0 && this.keepRunning(cur)) {
        // Nothing else should have this pCPU now: a new slice without a context switch.
        this.sliceEnd = this.core.clock + this.sliceFor(cur);
        this.sliceOver = false;
        return cur;
      }
      this.unload();
    }
    const next = this.claimNext();
    if (next < 0) return -1;
    this.load(next);
    return next;
  }

  /** May the running vCPU keep the pCPU at a scheduling point? */
  private keepRunning(cur: number): boolean {
    if (this.params.scheduler === 'fifo') return !this.othersWaiting(cur);
    // credit2: keep it while it has more credit than every waiter (runq_candidate).
    const w = credit2Best(this.m, this.id, cur);
    return w < 0 || credit2Of(this.m, cur) > credit2Of(this.m, w);
  }

  private sliceFor(v: number): number {
    return this.params.scheduler === 'fifo' ? this.params.timesliceCycles : credit2Runtime(this.m, this.id, v, this.params.ratelimitCycles);
  }

  private claimNext(): number {
    const m = this.m;
    if (this.params.scheduler === 'fifo') return schedClaimNext(m, this.id, this.params.migrate);
    for (;;) {
      const v = credit2Best(m, this.id, -1);
      if (v < 0) return schedClaimNext(m, this.id, this.params.migrate); // nothing queued here: maybe pull
      if (!schedClaim(m, this.id, v)) continue;
      if (Atomics.load(m.vc32, v * VCPU_STRIDE_WORDS + VC_PCPU) !== this.id) {
        schedStamp(m, v);
        Atomics.store(m.vc32, v * VCPU_STRIDE_WORDS + VC_RUNSTATE, RS_RUNNABLE);
        continue;
      }
      if (credit2Of(m, v) <= 0) credit2Reset(m, this.id, v);
      return v;
    }
  }

  /** Is another vCPU runnable on this pCPU's runqueue? */
  private othersWaiting(cur: number): boolean {
    const m = this.m;
    for (let v = 0; v < m.nvcpus; v++) {
      if (v === cur) continue;
      const b = v * VCPU_STRIDE_WORDS;
      if (Atomics.load(m.vc32, b + VC_PCPU) === this.id && Atomics.load(m.vc32, b + VC_RUNSTATE) === RS_RUNNABLE &&
        Atomics.load(m.vc32, b + VC_PAUSE_COUNT) === 0) return true;
    }
    return false;
  }

  /** VM-exit side of a context switch: save the core into the vCPU block. */
  private unload(): void {
    const m = this.m, v = this.cur, vb = v * VCPU_STRIDE_WORDS, c = this.core;
    for (let i = 0; i < 16; i++) m.vc32[vb + VC_REGS + i] = c.R[i];
    m.vc32[vb + VC_PC] = c.pc;
    m.vc32[vb + VC_FLAGS] = c.flags;
    m.vc32[vb + VC_IDTR] = c.idtr;
    m.vc32[vb + VC_NMI_FLAGS] = (m.vc32[vb + VC_NMI_FLAGS] & ~VNMI_BLOCKED) | (c.nmiBlocked ? VNMI_BLOCKED : 0);
    if (this.oracles) {
      // The realm oracles' memory of this vCPU travels with it (VC_ORC_*), saved with its registers: before
      // the runstate store below lets another pCPU take it.
      m.vc32[vb + VC_ORC_CODE] = c.execGfn + 1;
      m.vc32[vb + VC_ORC_FROM] = c.xferFrom;
      m.vc32[vb + VC_ORC_FLAGS] = c.kirv ? ORC_KIRV : 0;
    }
    if (c.view !== INVALID_ALTP2M) {
      // Descheduling is an exit: Xen's p2midx catches up with any VMFUNC before the vCPU can move.
      Atomics.store(m.vc32, vb + VC_EPTP_INDEX, c.view);
      vcpuResyncP2midx(m, this.curDomain, v, c.view);
    }
    const rs = Atomics.load(m.vc32, vb + VC_RUNSTATE);
    let to = this.id;
    if (rs === RS_RUNNING) {
      // Its context is saved: now (and only now) it may move (sched.ts).
      if (this.params.migrate) to = schedPlace(m, v, this.id);
      if (this.params.migratePercent > 0 && this.rng.below(100) < this.params.migratePercent) {
        const other = schedRandomPcpu(m, v, this.id, this.rng.nextU32());
        if (other >= 0) to = other;
      }
      if (to !== this.id) {
        Atomics.store(m.vc32, vb + VC_PCPU, to);
        m.vc32[vb + VC_MIGRATIONS]++;
      }
      schedStamp(m, v);
      Atomics.store(m.vc32, vb + VC_RUNSTATE, RS_RUNNABLE);
      if (to !== this.id) hvKick(this, to);
    }
    this.emit(EV_SCHED_OUT, rs === RS_RUNNING ? RS_RUNNABLE : rs, c.pc, to);
    // A pause asked for while it ran completes now that its state is saved (vcpu_sleep_sync).
    if (Atomics.load(m.vc32, vb + VC_INIT_PENDING) !== VINIT_NONE) vcpuApplyInit(this, v);
    this.cur = -1;
    this.curDomain = -1;
    Atomics.store(m.pc32, this.base + PC_CURRENT, -1);
  }

  /**
   * The page the passthrough designs read: where each vCPU runs now. It is true only at this instant;
   * the scheduler may move the vCPU right after the guest reads it (xen-sched-ipi.md §1.4).
   */
  private publishVcpuMap(v: number, d: number): void {
    const m = this.m;
    const gpa = m.dm32[m.domainBase(d) + DM_VCPU_MAP_GPA];
    if (gpa < 0) return;
    const id = m.vc32[v * VCPU_STRIDE_WORDS + VC_ID];
    const root = m.dm32[m.domainBase(d) + DM_P2M_ROOT];
    const at = gpa + id * 4 * VCPU_MAP_ENTRY_WORDS;
    const mfn = p2mGetMfn(m.p2m, root, at >>> 12);
    if (mfn < 0) return;
    const w = ((mfn << 12) + (at & 0xfff)) >> 2;
    Atomics.store(m.mem32, w, this.id);
    Atomics.store(m.mem32, w + 1, this.id); // physical APIC ID of pCPU p is p
  }

  /** Point the core at the loaded vCPU's view (VC_EPTP_INDEX), or at the host p2m when altp2m is off. */
  reloadView(): void {
    const m = this.m, c = this.core, v = this.cur, d = this.curDomain;
    if (v < 0) return;
    const idx = Atomics.load(m.vc32, v * VCPU_STRIDE_WORDS + VC_EPTP_INDEX);
    if (idx === INVALID_ALTP2M || !altp2mActive(m, d)) c.setTable(INVALID_ALTP2M, tableRoot(m, d, HOST_TABLE));
    else c.setTable(idx, tableRoot(m, d, idx));
  }

  fillForDelivery(gpa: number): boolean {
    const c = this.core;
    if (this.cur < 0 || c.view === INVALID_ALTP2M || !altp2mActive(this.m, this.curDomain)) return false;
    return viewFillFromHost(this.m, this.curDomain, c.view, gpa >>> 12);
  }

  /** After a single-stepped instruction: fast single-step switches views quietly; monitor single-step reports. */
  private afterStep(apf: number, pc0: number): void {
    const m = this.m, c = this.core, v = this.cur, b = v * VCPU_STRIDE_WORDS;
    if (v < 0) return; // the domain ended under it
    if ((apf & VCA_EMULATE) !== 0) {
      c.ignoreAccess = false;
      Atomics.and(m.vc32, b + VC_ALTP2M_FLAGS, ~VCA_EMULATE);
    }
    // Stepped only if the instruction completed (an exit that retries it, such as a lazy fill, is not a step).
    if (c.pc === pc0) return;
    if ((apf & (VCA_SINGLESTEP | VCA_FAST_SS)) !== 0 && this.lastExit === EXIT_NONE) {
      // The monitor trap flag's exit after the one instruction.
      exitCount(this, EXIT_MTF);
      this.hvCycles(this.params.costs.vmexit);
      this.entering = true;
    }
    const d = this.curDomain;
    if ((apf & VCA_FAST_SS) !== 0) {
      Atomics.and(m.vc32, b + VC_ALTP2M_FLAGS, ~VCA_FAST_SS);
      const idx = m.vc32[b + VC_FAST_SS_IDX];
      if (altp2mActive(m, d) && viewValid(m, d, idx)) {
        vcpuSetView(m, d, v, idx);
        this.reloadView();
      }
    } else if ((apf & VCA_SINGLESTEP) !== 0 && monitorAttached(m, d) && Atomics.load(m.ap32, altp2mBase(d) + AD_SINGLESTEP_MONITOR) !== 0) {
      // The monitor trap flag exits after one instruction: a sync SINGLESTEP request.
      if (vmEventPost(m, d, this.id + 1, v, true, VM_EVENT_REASON_SINGLESTEP, 0, 0, 0, c.pc)) this.emit(EV_SINGLESTEP, c.pc, 0, 0);
    }
  }

  // ---- CpuHooks: what the core reports as it runs (called from inside guestRun) ----

  /** A guest VMFUNC switched views without an exit; ROGUE_VMFUNC when it ran outside the trampoline. */
  vmfuncDone(from: number, to: number, pc: number): void {
    const c = this.core;
    this.m.pc32[this.base + PC_VMFUNCS]++;
    this.emitPc(EV_VMFUNC, from, pc, to, pc);
    const g = pc >>> 12;
    if (this.oracles && (g < c.trampLo || g > c.trampHi)) this.emitPc(EV_ROGUE_VMFUNC, to, pc, from, pc);
  }

  secretAccess(gpa: number, _perm: number, pc: number): void {
    this.emitPc(EV_REALM_ESCAPE, gpa, pc, this.core.view, pc);
  }

  realmEntry(src: number, how: number, prevGfn: number, target: number): void {
    this.emitPc(EV_REALM_ENTRY, src, how | ((this.core.view & 0xffff) << 16), prevGfn, target);
  }

  kernelInRealmView(pc: number, why: number, from: number): void {
    this.emitPc(EV_KERNEL_IN_REALM_VIEW, pc, why | ((this.core.view & 0xffff) << 16), from, pc);
  }

  /** One event per burst that used a stale translation, with the burst's first such access. */
  private noteStale(): void {
    const c = this.core;
    this.emitPc(EV_STALE, c.staleGpa, c.staleAccess | ((c.staleView & 0xffff) << 8), c.staleStamp, c.stalePc);
    c.stale = 0;
  }

  /** The oracles' view of the loaded vCPU's domain (its regions) and of the vCPU (VC_ORC_*). */
  private loadOracles(v: number, d: number): void {
    const m = this.m, c = this.core, ab = altp2mBase(d), vb = v * VCPU_STRIDE_WORDS;
    c.trampLo = m.ap32[ab + AD_TRAMP_LO];
    c.trampHi = m.ap32[ab + AD_TRAMP_HI];
    c.realmLo = m.ap32[ab + AD_REALM_LO];
    c.realmHi = m.ap32[ab + AD_REALM_HI];
    c.secretLo = m.ap32[ab + AD_SECRET_LO];
    c.secretHi = m.ap32[ab + AD_SECRET_HI];
    c.realmCheck = this.oracles && c.realmLo <= c.realmHi;
    c.secretProbe = this.oracles && c.secretLo <= c.secretHi;
    c.realmEntries = this.realmEntries[d] ?? null;
    c.hostRoot = tableRoot(m, d, HOST_TABLE);
    const code = this.oracles ? m.vc32[vb + VC_ORC_CODE] : 0;
    c.execGfn = code - 1;
    c.xferFrom = code === 0 ? -1 : m.vc32[vb + VC_ORC_FROM];
    c.kirv = code !== 0 && (m.vc32[vb + VC_ORC_FLAGS] & ORC_KIRV) !== 0;
    c.inRealm = c.execGfn >= c.realmLo && c.execGfn <= c.realmHi;
    c.rvView = -1;
  }

  private load(v: number): void {
    const m = this.m, vb = v * VCPU_STRIDE_WORDS, c = this.core;
    for (let i = 0; i < 16; i++) c.R[i] = m.vc32[vb + VC_REGS + i];
    c.pc = m.vc32[vb + VC_PC];
    c.flags = m.vc32[vb + VC_FLAGS];
    c.idtr = m.vc32[vb + VC_IDTR];
    c.nmiBlocked = (m.vc32[vb + VC_NMI_FLAGS] & VNMI_BLOCKED) !== 0;
    // An NMI latched at its vLAPIC while it was away waits for blocking to end (vlapicInject).
    c.nmiWindow = Atomics.load(m.lapic32, m.vlapicBase(v) + (LAPIC_SIM_NMI_PENDING >>> 2)) !== 0;
    const d = m.vc32[vb + VC_DOMAIN];
    this.fGuestNmiNext = -1;
    const gper = this.guestNmiInsns[d] ?? 0;
    if (gper > 0) {
      this.fGuestNmiNext = (vb + VC_GUEST_NMI_NEXT_F64) >> 1;
      if (m.vcF64[this.fGuestNmiNext] === 0) m.vcF64[this.fGuestNmiNext] = gper;
    }
    // x2apic-passthrough: the MSR bitmap lets 0x800-0x8FF through to the pCPU's own x2APIC. ipiv/avic:
    // the CPU virtualizes the APIC page and MSRs itself, against the vCPU's own vLAPIC.
    const path = m.dm32[m.domainBase(d) + DM_IPI_PATH];
    c.lapic = ipiPathHwApic(path) ? this.virtPort : this.physPort;
    this.apicv = ipiPathPosts(path);
    c.irqWindow = false;
    c.x2apicPassthrough = path === IPI_PATH_X2APIC_PASSTHROUGH || ipiPathHwApic(path);
    this.virqCheck = true;
    c.tlbFlushAll();
    // dirty_cpumask: set before the switch (an EPT flush must not miss us); left only for another domain.
    if (this.lastDomain !== d) {
      if (this.lastDomain >= 0) dirtyMaskClear(m, this.lastDomain, this.id);
      this.lastDomain = d;
    }
    dirtyMaskSet(m, d, this.id);
    const ab = altp2mBase(d);
    c.visibleBase = ab + AD_VISIBLE;
    c.doneIdx = ab + AD_DONE;
    c.genIdx = ab + AD_GEN;
    c.auditGen = -1; // the TLBs were just flushed: the first audit finds nothing to judge
    this.loadOracles(v, d);
    this.iApFlags = vb + VC_ALTP2M_FLAGS;
    this.iP2midx = vb + VC_P2MIDX;
    this.iEptpIndex = vb + VC_EPTP_INDEX;
    this.cur = v;
    this.curDomain = d;
    this.reloadView();
    this.entering = true;
    // schedClaimNext already moved it RUNNABLE -> RUNNING for this pCPU.
    this.iRunstate = vb + VC_RUNSTATE;
    this.iPause = vb + VC_PAUSE_COUNT;
    this.iDomState = m.domainBase(d) + DM_STATE;
    this.fVInsns = (vb + VC_INSNS_F64) >> 1;
    this.fVCycles = (vb + VC_RUN_CYCLES_F64) >> 1;
    Atomics.store(m.pc32, this.base + PC_CURRENT, v);
    m.pcF64[(this.base + PC_CTXSW_F64) >> 1]++;
    this.hvCycles(this.params.costs.context_switch);
    this.sliceEnd = c.clock + this.sliceFor(v);
    this.sliceOver = false;
    this.publishVcpuMap(v, d);
    this.emit(EV_SCHED_IN, 0, c.pc, 0);
  }
}
