// Physical NMIs at a pCPU and what Xen's handler does with them (xen/arch/x86/traps.c do_nmi and
// unknown_nmi_error, nmi.c; apic.md §4 "NMI" and §9). An NMI ignores IF and TPR: `cli` holds off every
// interrupt but this one. The LAPIC keeps one NMI latched (hw/lapic.ts lapicAcceptNmi) and the hypervisor's
// handler runs to completion before the pCPU does anything else, which is the hardware's blocking until
// IRET: one in service, one latched, more lost.
//
// do_nmi, in order: a registered callback wins (the crash shootdown); the watchdog claims an NMI when its
// perf counter overflowed; only the BSP looks further. With the watchdog on (and not forced) an unknown NMI
// is never reported; otherwise the `nmi=` option decides: "ignore", "dom0" (the reason is passed to a PV
// hardware domain's vCPU 0; an HVM or PVH one gets nothing, and no dom0 runs here), "fatal" (fatal_trap: the
// host panics). Release builds default to dom0, debug builds to fatal.
import * as C from '../../shared/machine.js';
import { DS_CRASHED, DS_RUNNING, DM_STATE } from '../../shared/domain.js';
import { LAPIC_SIM_NMI_SRC_PC, LAPIC_SIM_NMI_SRC_TAG } from '../../shared/lapic.js';
import { PC_PENDING, PEND_IRQ } from '../../shared/pcpu.js';
import { lapicAcceptNmi } from '../hw/lapic.js';
import {
  CRASH_HOST_PANIC, EV_DOMAIN_END, EV_HOST_PANIC, EV_NMI, NMI_DOM0, NMI_DROPPED_AP, NMI_DROPPED_WATCHDOG, NMI_FATAL, NMI_IGNORED,
  NMI_SHOOTDOWN, NMI_WATCHDOG, PANIC_UNKNOWN_NMI,
} from '../trace/events.js';
import { domainEnd } from './domain-ops.js';
import { hvSendNmiAllButSelf } from './ipi-send.js';
import type { PcpuCtx } from './pcpu-ctx.js';

/** Xen's choice for an NMI it did not raise itself (pure: the unknown_nmi_error path of do_nmi). */
export function nmiUnknownDisposition(pcpu: number, watchdogOn: boolean, opt: 'dom0' | 'ignore' | 'fatal'): number {
  if (pcpu !== 0) return NMI_DROPPED_AP;         // only the BSP reads the NMI reason and reports
  if (watchdogOn) return NMI_DROPPED_WATCHDOG;   // !nmi_watchdog_tick && !watchdog_force: not reported
  return opt === 'ignore' ? NMI_IGNORED : opt === 'fatal' ? NMI_FATAL : NMI_DOM0;
}

/**
 * The watchdog's counter overflowed on pCPU `p`: it raises an NMI at its own LAPIC (the perf counter's
 * LVT, delivery mode NMI). The overflow flag is how the handler knows the NMI is the watchdog's.
 */
export function nmiWatchdogFire(p: PcpuCtx): void {
  const m = p.m, base = m.plapicBase(p.id);
  p.watchdogOverflow = true;
  lapicAcceptNmi(m.lapic32, base);
  Atomics.or(m.pc32, p.base + PC_PENDING, PEND_IRQ);
}

/** Xen's do_nmi on pCPU `p` for the NMI the dispatcher just took (ipi.ts physService). */
export function hvNmi(p: PcpuCtx): void {
  const m = p.m, base = m.plapicBase(p.id);
  const tag = Atomics.exchange(m.lapic32, base + (LAPIC_SIM_NMI_SRC_TAG >> 2), 0);
  const pc = Atomics.exchange(m.lapic32, base + (LAPIC_SIM_NMI_SRC_PC >> 2), -1);
  p.hvCycles(p.params.costs.exception);
  const own = p.watchdogOverflow;
  p.watchdogOverflow = false;
  let d: number;
  if (Atomics.load(m.ctl, C.CTL_HOST_PANIC) !== 0) d = NMI_SHOOTDOWN;
  else if (own) d = NMI_WATCHDOG;
  else d = nmiUnknownDisposition(p.id, (p.params.nmiWatchdogCycles ?? 0) > 0, p.params.xenNmi ?? 'dom0');
  // b = 1: the watchdog's NMI and a sent one were latched together; the handler saw one NMI, the watchdog's.
  p.emitPc(EV_NMI, d, own && tag !== 0 ? 1 : 0, tag, pc);
  if (d === NMI_FATAL) hvPanic(p);
}

/**
 * fatal_trap: the hypervisor panics on pCPU `p`. Every domain dies with it, and the crash shootdown's NMIs
 * (all but self) stop the other pCPUs, whose handlers find the crash callback registered.
 */
function hvPanic(p: PcpuCtx): void {
  const m = p.m;
  if (Atomics.compareExchange(m.ctl, C.CTL_HOST_PANIC, 0, 1) !== 0) return;
  p.emit(EV_HOST_PANIC, PANIC_UNKNOWN_NMI, p.id, 0);
  for (let d = 0; d < m.ndomains; d++) {
    if (Atomics.load(m.dm32, m.domainBase(d) + DM_STATE) !== DS_RUNNING) continue;
    if (domainEnd(m, d, DS_CRASHED, CRASH_HOST_PANIC, p.id, 0, 0, -1)) p.emitFor(d, -1, EV_DOMAIN_END, DS_CRASHED, CRASH_HOST_PANIC, p.id);
  }
  hvSendNmiAllButSelf(p);
}
