// INIT and SIPI at a pCPU, as each vendor's CPU delivers them under a hypervisor (apic.md §4 "INIT", §9).
//   Intel: INIT is blocked in VMX root operation (Xen's own code, its idle loop) and stays pending; in
//   non-root operation it is a VM exit (basic reason 3). Xen's vmx_vmexit_handler prints "INIT received -
//   ignoring" and re-enters the guest (since 2022); before, the exit fell to the default case, "Unexpected
//   vmexit", and the running domain was crashed (init_exit = "crash" models that).
//   AMD: Xen's VMCB intercepts INIT, so in guest mode it is a #VMEXIT(INIT), which svm_vmexit_handler has no
//   case for: "Unexpected vmexit", and the running domain is crashed. In host mode nothing stops it: Xen
//   never sets VM_CR.R_INIT (which would turn INIT into #SX), so the core resets behind Xen's back.
//   Whether the intercept consumes the INIT is [machine] amd_init. "pending" (the default): the INIT stays
//   latched past the #VMEXIT, which leaves GIF = 0, and resets the core once Xen sets GIF again (its STGI
//   after the exit), after the crash. That is how KVM emulates SVM for a nested hypervisor
//   (svm_check_nested_events injects #VMEXIT(INIT) and leaves KVM_APIC_INIT pending, held only while
//   GIF = 0; its VMX side clears it), and it is what R_INIT exists for: a host that intercepts INIT still
//   receives it, as #SX. Bochs clears it on both vendors (its author tested VMX on real hardware).
//   Unconfirmed in AMD's manual here: "consumed" models the other reading (the crash only).
// A SIPI is honoured only in wait-for-SIPI (hw/lapic.ts), so only a core that really reset can take one.
import { LAPIC_SIM_INIT_SRC_PC, LAPIC_SIM_INIT_SRC_TAG } from '../../shared/lapic.js';
import { DS_CRASHED } from '../../shared/domain.js';
import { PC_STATE, PS_WAIT_SIPI } from '../../shared/pcpu.js';
import { RS_LOST, VCPU_STRIDE_WORDS, VC_RUNSTATE } from '../../shared/vcpu.js';
import { lapicInit } from '../hw/lapic.js';
import { EXIT_INIT } from '../isa/interp.js';
import {
  CRASH_INIT_EXIT, EV_DOMAIN_END, EV_HOST_INIT, EV_HOST_RESET, HINIT_CRASH_RESET, HINIT_DOMAIN_CRASH, HINIT_HELD, HINIT_IGNORED, HINIT_RESET,
} from '../trace/events.js';
import { domainEnd } from './domain-ops.js';
import { exitCount } from './exits.js';
import type { PcpuCtx } from './pcpu-ctx.js';

/**
 * What an INIT does to a pCPU (pure): by vendor, by whether a guest runs there (VMX non-root / SVM guest
 * mode), by how Xen handles Intel's INIT exit, and by whether AMD's intercept leaves the INIT pending.
 */
export function initDisposition(vendor: 'intel' | 'amd', guestMode: boolean, initExit: 'ignore' | 'crash', amdInit: 'pending' | 'consumed' = 'pending'): number {
  if (vendor === 'intel') return !guestMode ? HINIT_HELD : initExit === 'crash' ? HINIT_DOMAIN_CRASH : HINIT_IGNORED;
  if (!guestMode) return HINIT_RESET;
  return amdInit === 'pending' ? HINIT_CRASH_RESET : HINIT_DOMAIN_CRASH;
}

/**
 * pCPU `p` takes the INIT latched at its LAPIC (ipi.ts physService). `guestMode`: a vCPU was running in
 * guest mode when it arrived. Returns false when the core reset (it must stop running anything).
 */
export function hvInitSignal(p: PcpuCtx, guestMode: boolean): boolean {
  const m = p.m, base = m.plapicBase(p.id);
  const tag = Atomics.load(m.lapic32, base + (LAPIC_SIM_INIT_SRC_TAG >> 2));
  const pc = Atomics.load(m.lapic32, base + (LAPIC_SIM_INIT_SRC_PC >> 2));
  const d = initDisposition(p.params.vendor ?? 'intel', guestMode && p.cur >= 0, p.params.initExit ?? 'ignore', p.params.amdInit ?? 'pending');
  p.emitPc(EV_HOST_INIT, d, p.curDomain, tag, pc);
  if (d === HINIT_HELD) { p.initHeld = true; return true; }
  // The #VMEXIT and Xen's crash of the running domain first; then, still pending, the INIT resets the core.
  if (d === HINIT_CRASH_RESET) initExit(p, HINIT_DOMAIN_CRASH, tag);
  if (d === HINIT_RESET || d === HINIT_CRASH_RESET) {
    // The core and its APIC reset under the hypervisor: the loaded vCPU and Xen's state here are gone; an
    // AP now waits for a SIPI at a vector Xen never installed.
    lapicInit(m.lapic32, base);
    p.emitPc(EV_HOST_RESET, p.id, 5, tag, pc);
    if (p.cur >= 0) Atomics.store(m.vc32, p.cur * VCPU_STRIDE_WORDS + VC_RUNSTATE, RS_LOST);
    p.dropCurrent();
    Atomics.store(m.pc32, p.base + PC_STATE, PS_WAIT_SIPI);
    return false;
  }
  initExit(p, d, tag);
  return true;
}

/** Intel: the INIT held in VMX root operation makes the first VM entry exit at once (Pcpu.step). */
export function hvInitHeldEntry(p: PcpuCtx): void {
  p.initHeld = false;
  const m = p.m, base = m.plapicBase(p.id);
  initExit(p, initDisposition('intel', true, p.params.initExit ?? 'ignore'), Atomics.load(m.lapic32, base + (LAPIC_SIM_INIT_SRC_TAG >> 2)));
}

/** The INIT exit and Xen's handler for it: ignored, or the running domain crashed. */
function initExit(p: PcpuCtx, d: number, tag: number): void {
  exitCount(p, EXIT_INIT);
  p.hvCycles(p.params.costs.vmexit);
  if (d !== HINIT_DOMAIN_CRASH || p.cur < 0) return;
  if (domainEnd(p.m, p.curDomain, DS_CRASHED, CRASH_INIT_EXIT, tag, p.core.pc, 0, p.cur)) p.emit(EV_DOMAIN_END, DS_CRASHED, CRASH_INIT_EXIT, tag);
}
