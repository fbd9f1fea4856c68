// The LAPIC timer (SDM §10.5.4; ../shared/reference/apic.md §1: LVT Timer 0x320, initial count 0x380,
// current count 0x390, divide configuration 0x3E0). It counts down from the initial count at the
// simulated 3 GHz clock divided by the divide configuration; at zero it raises the LVT Timer's vector
// (unless the entry is masked) and, in periodic mode, reloads the initial count. Its registers live in the
// LAPIC's page (lapic.ts writes them); this model keeps only when the count reaches zero next, on the
// owner's thread.
//
// Simplified: the model notices a register change when it is next polled (at the deadline it had), so a new
// initial count or divide takes effect from there, and rewriting the same initial count does not restart the
// count; TSC-deadline mode never fires (nothing here programs IA32_TSC_DEADLINE).
import {
  LAPIC_LVT_TIMER, LAPIC_TIMER_CCR, LAPIC_TIMER_DCR, LAPIC_TIMER_ICR, LVT_MASKED, LVT_TIMER_MODE_MASK,
  LVT_TIMER_ONESHOT, LVT_TIMER_PERIODIC, LVT_VECTOR_MASK,
} from '../../shared/lapic.js';
import { lapicAcceptInterrupt } from './lapic.js';

/**
 * Clock cycles per timer tick for a divide configuration value (SDM Figure 10-10): bits 3, 1, 0 form
 * 000 -> 2, 001 -> 4, 010 -> 8, 011 -> 16, 100 -> 32, 101 -> 64, 110 -> 128, 111 -> 1.
 */
export function lapicTimerDivisor(tdcr: number): number {
  const code = ((tdcr >>> 1) & 4) | (tdcr & 3);
  return code === 7 ? 1 : 2 << code;
}

/** Divide configuration for divide-by-1 (bits 3, 1, 0 all set). */
export const LAPIC_TIMER_DIVIDE_BY_1 = 0xb;

function reg(regs: Int32Array, base: number, offset: number): number {
  return Atomics.load(regs, base + (offset >>> 2));
}

/** One LAPIC's timer state. Owner thread only. */
export class LapicTimer {
  /** Clock at which the count next reaches zero; Infinity when the timer is stopped. */
  deadline = Infinity;
  /** Cycles per period (initial count x divisor); 0 when stopped. */
  private period = 0;
  /** The register values the deadline was computed from. */
  private lvt = -1;
  private icr = -1;
  private dcr = -1;

  /** Start counting from the registers' current values at `now` (the initial-count write, Xen's set-up). */
  arm(regs: Int32Array, base: number, now: number): void {
    this.lvt = reg(regs, base, LAPIC_LVT_TIMER);
    this.icr = reg(regs, base, LAPIC_TIMER_ICR) >>> 0;
    this.dcr = reg(regs, base, LAPIC_TIMER_DCR);
    const mode = this.lvt & LVT_TIMER_MODE_MASK;
    const counting = this.icr !== 0 && (mode === LVT_TIMER_ONESHOT || mode === LVT_TIMER_PERIODIC);
    this.period = counting ? this.icr * lapicTimerDivisor(this.dcr) : 0;
    this.deadline = counting ? now + this.period : Infinity;
    Atomics.store(regs, base + (LAPIC_TIMER_CCR >>> 2), counting ? this.icr | 0 : 0);
  }

  /**
   * Called by the owner with the clock at or past `deadline`: raise the vector (once, however many periods
   * passed: the IRR bit holds one) unless masked, and reload or stop. A register changed since the timer was
   * armed re-arms it from `now` instead. Returns true when the LAPIC latched a new interrupt.
   */
  poll(regs: Int32Array, base: number, now: number): boolean {
    const lvt = reg(regs, base, LAPIC_LVT_TIMER);
    if (lvt !== this.lvt || (reg(regs, base, LAPIC_TIMER_ICR) >>> 0) !== this.icr || reg(regs, base, LAPIC_TIMER_DCR) !== this.dcr) {
      this.arm(regs, base, now);
      return false;
    }
    if (now < this.deadline) return false;
    if ((lvt & LVT_TIMER_MODE_MASK) === LVT_TIMER_PERIODIC) {
      this.deadline += Math.floor((now - this.deadline) / this.period + 1) * this.period;
      Atomics.store(regs, base + (LAPIC_TIMER_CCR >>> 2), Math.ceil((this.deadline - now) / lapicTimerDivisor(this.dcr)) | 0);
    } else {
      this.deadline = Infinity;
      Atomics.store(regs, base + (LAPIC_TIMER_CCR >>> 2), 0);
    }
    if ((lvt & LVT_MASKED) !== 0) return false;
    return lapicAcceptInterrupt(regs, base, lvt & LVT_VECTOR_MASK, false) === 'latched';
  }
}
