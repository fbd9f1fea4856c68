// The hypervisor's timer interrupt: each pCPU programs its LAPIC timer at start-up to interrupt
// periodically with LOCAL_TIMER_VECTOR (xen-sched-ipi.md §3.1), and the interrupt drives the scheduler, as
// Xen's apic_timer_interrupt raises TIMER_SOFTIRQ and the scheduler's timer there ends a slice that is over.
// Xen runs the timer one-shot (TSC-deadline where it can) and reprograms it for the next timer due; a
// periodic tick is the same interrupt traffic at a fixed rate, so a slice ends at the first tick past its
// end (PcpuParams.lapicTimerCycles sets the rate).
//
// The tick is an interrupt like any other on that LAPIC: a guest that raised the host TPR above its class,
// masked the LVT Timer entry or software-disabled the LAPIC (a passed-through host APIC) stops it, and with
// it the scheduler on that pCPU.
import {
  APIC_MODE_X2APIC, LAPIC_LVT_TIMER, LAPIC_TIMER_DCR, LAPIC_TIMER_ICR, LVT_TIMER_PERIODIC, X2APIC_MSR_FIRST,
} from '../../shared/lapic.js';
import { lapicMode, lapicWrite, lapicWriteX2apic } from '../hw/lapic.js';
import { LAPIC_TIMER_DIVIDE_BY_1 } from '../hw/lapic-timer.js';
import type { Machine } from '../machine.js';
import { assert } from '../errors.js';
import { LOCAL_TIMER_VECTOR, irqRegister } from './irq-vectors.js';
import type { PcpuCtx } from './pcpu-ctx.js';

/** Default tick (`[machine] lapic_timer_us`): fine enough that a 100 µs slice ends within a tenth of itself. */
export const LAPIC_TIMER_US_DEFAULT = 10;

/** The largest initial count: the register is 32 bits. */
const TIMER_ICR_MAX = 0xffffffff;

/**
 * Program pCPU `p`'s LAPIC timer: divide by 1, periodic, LOCAL_TIMER_VECTOR, an initial count of
 * `periodCycles`. The initial count goes last: writing it starts the count (SDM §10.5.4).
 */
export function apicTimerSetup(m: Machine, p: number, periodCycles: number): void {
  const count = Math.round(periodCycles);
  assert(count >= 1 && count <= TIMER_ICR_MAX, `LAPIC timer period of ${periodCycles} cycles does not fit the initial count register`);
  const base = m.plapicBase(p);
  const write = (offset: number, value: number): void => {
    if (lapicMode(m.lapic32, base) === APIC_MODE_X2APIC) lapicWriteX2apic(m.lapic32, base, X2APIC_MSR_FIRST + (offset >>> 4), value | 0, 0);
    else lapicWrite(m.lapic32, base, offset, value | 0);
  };
  write(LAPIC_TIMER_DCR, LAPIC_TIMER_DIVIDE_BY_1);
  write(LAPIC_LVT_TIMER, LVT_TIMER_PERIODIC | LOCAL_TIMER_VECTOR);
  write(LAPIC_TIMER_ICR, count);
}

/** apic_timer_interrupt: the timer softirq runs the scheduler's timer, which ends the slice if it is over. */
function apicTimerInterrupt(p: PcpuCtx): void {
  p.schedTick();
}

irqRegister(LOCAL_TIMER_VECTOR, apicTimerInterrupt);
