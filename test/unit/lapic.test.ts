// LAPIC register semantics (src/hw/lapic.ts over shared/lapic.ts pages): one test per SDM rule or
// fact-sheet conformance vector (../shared/reference/apic.md §7; "vector N" = row N; XS-n =
// xen-sched-ipi.md §4.7), plus a seeded reference-model test of IRR/ISR/PPR/EOI.
import { describe, expect, it } from 'vitest';
import { apicRouteIpi } from '../../src/hw/apic-bus.js';
import {
  LAPIC_DEFAULTS, type LapicOptions, type LapicWriteEffect, lapicAcceptInterrupt, lapicAcceptIpi,
  lapicAcceptNmi, lapicAcceptPhysIpi, lapicAck, lapicApicBase, lapicBusView, lapicEoi, lapicHighestIrr, lapicHighestIsr, lapicInit,
  lapicInitState, lapicMmioRead, lapicMmioWrite, lapicPendingDeliverable, lapicPpr, lapicRead, lapicReadCr8,
  lapicReadX2apic, lapicReset, lapicTakeNmi, lapicTakePending, lapicTakeSipi, lapicTestVector, lapicWrite,
  lapicWriteApicBase, lapicWriteCr8, lapicWriteX2apic, lapicWriteX2apicIcr, x2apicMsrToOffset,
} from '../../src/hw/lapic.js';
import { Prng, childSeed } from '../../src/engine/strategies/index.js';
import {
  APIC_MODE_DISABLED, APIC_MODE_X2APIC, APIC_MODE_XAPIC, ESR_RECV_ILLEGAL_VECTOR, ESR_SEND_ILLEGAL_VECTOR,
  LAPIC_DFR, LAPIC_EOI, LAPIC_ESR, LAPIC_ICR_HI, LAPIC_ICR_LO, LAPIC_ID, LAPIC_IRR, LAPIC_LDR, LAPIC_LVT_ERROR,
  LAPIC_LVT_LINT0, LAPIC_LVT_TIMER, LAPIC_PAGE_WORDS, LAPIC_PEND_FIXED, LAPIC_PEND_INIT, LAPIC_PEND_NMI,
  LAPIC_PEND_SIPI, LAPIC_PPR, LAPIC_RUN, LAPIC_SIM_MODE, LAPIC_SIPI_RECEIVED, LAPIC_SVR, LAPIC_TIMER_DCR,
  LAPIC_TIMER_ICR, LAPIC_TMR, LAPIC_TPR, LAPIC_VER, LAPIC_WAIT_FOR_SIPI, LVT_MASKED, LVT_TIMER_TSC_DEADLINE,
  lapicPageBase, lapicWord,
} from '../../shared/lapic.js';

/** `n` LAPIC pages in one SharedArrayBuffer, LAPIC i with APIC ID 2i (Xen), software-enabled unless told. */
function pages(n: number, x2apic = false, enable = true): Int32Array {
  const regs = new Int32Array(new SharedArrayBuffer(n * LAPIC_PAGE_WORDS * 4));
  for (let i = 0; i < n; i++) {
    const b = lapicPageBase(i);
    lapicReset(regs, b, 2 * i, x2apic, i === 0);
    if (enable) expect(x2apic ? lapicWriteX2apic(regs, b, 0x80f, 0x1ff, 0) : lapicWrite(regs, b, LAPIC_SVR, 0x1ff)).toEqual(NONE);
  }
  return regs;
}
const NONE: LapicWriteEffect = { type: 'none' };
const GP: LapicWriteEffect = { type: 'gp' };
const B0 = lapicPageBase(0), B1 = lapicPageBase(1), B2 = lapicPageBase(2);
function opts(o: Partial<LapicOptions>): LapicOptions {
  return { ...LAPIC_DEFAULTS, ...o };
}
function rdmsr(regs: Int32Array, base: number, msr: number): number {
  const r = lapicReadX2apic(regs, base, msr);
  if (r.type !== 'value') throw new Error(`rdmsr 0x${msr.toString(16)} #GP`);
  return r.lo;
}
/** Deliver an effect like the integrator will: route it over every page of `regs`, accept at each target. */
function deliver(regs: Int32Array, n: number, sender: number, e: LapicWriteEffect, o = LAPIC_DEFAULTS): number[] {
  if (e.type !== 'ipi') return [];
  const views = Array.from({ length: n }, (_, i) => lapicBusView(regs, lapicPageBase(i)));
  const targets = apicRouteIpi(e.icrLo, e.icrHi, sender, views);
  for (const t of targets) lapicAcceptIpi(regs, lapicPageBase(t), e.icrLo, o);
  return targets;
}
/** ESR protocol: write, then read (SDM p378). */
function readEsr(regs: Int32Array, base: number): number {
  lapicWrite(regs, base, LAPIC_ESR, 0);
  return lapicRead(regs, base, LAPIC_ESR);
}

describe('reset and registers (SDM p368-376, Table 10-1)', () => {
  it('vector 1: the version is an integrated APIC (0x10..0x15); Xen reports 0x00050014', () => {
    const r = pages(1);
    expect(lapicRead(r, B0, LAPIC_VER) & 0xff).toBeGreaterThanOrEqual(0x10);
    expect(lapicRead(r, B0, LAPIC_VER) & 0xff).toBeLessThanOrEqual(0x15);
    expect(lapicRead(r, B0, LAPIC_VER)).toBe(0x00050014);
  });

  it('reset: ID in 31:24, DFR flat, SVR 0xFF (software-disabled), LVTs masked, TPR/ICR 0', () => {
    const r = pages(2, false, false);
    expect(lapicRead(r, B1, LAPIC_ID)).toBe(0x02000000);
    expect(lapicRead(r, B1, LAPIC_DFR)).toBe(0xffffffff);
    expect(lapicRead(r, B1, LAPIC_SVR)).toBe(0xff);
    expect(lapicRead(r, B1, LAPIC_LVT_TIMER)).toBe(LVT_MASKED);
    expect(lapicRead(r, B1, LAPIC_TPR)).toBe(0);
    expect(lapicRead(r, B1, LAPIC_ICR_LO)).toBe(0);
    expect(lapicApicBase(r, B0)).toBe(0xfee00900);  // EN | BSP
    expect(lapicApicBase(r, B1)).toBe(0xfee00800);
  });

  it('register masks: TPR 7:0, LDR 31:24, DFR 27:0 read as ones, SVR 9:0, TDCR bits 0,1,3', () => {
    const r = pages(1);
    lapicWrite(r, B0, LAPIC_TPR, 0x1234);
    lapicWrite(r, B0, LAPIC_LDR, 0x12345678);
    lapicWrite(r, B0, LAPIC_DFR, 0x01234567);
    lapicWrite(r, B0, LAPIC_SVR, 0xffff);
    lapicWrite(r, B0, LAPIC_TIMER_DCR, 0xff);
    expect([LAPIC_TPR, LAPIC_LDR, LAPIC_DFR, LAPIC_SVR, LAPIC_TIMER_DCR].map((o) => lapicRead(r, B0, o)))
      .toEqual([0x34, 0x12000000, 0x0fffffff, 0x3ff, 0xb]);
  });

  it('writes to read-only registers (VER, PPR, ISR, TMR, IRR) are dropped', () => {
    const r = pages(1);
    for (const o of [LAPIC_VER, LAPIC_PPR, 0x100, LAPIC_TMR, LAPIC_IRR]) lapicWrite(r, B0, o, -1);
    expect(lapicRead(r, B0, LAPIC_VER)).toBe(0x00050014);
    expect(lapicHighestIrr(r, B0)).toBe(-1);
    expect(lapicHighestIsr(r, B0)).toBe(-1);
  });

  it('vector 11: an xAPIC ID write is stored (Xen, KVM) or ignored (read-only model); reset restores it', () => {
    const r = pages(2);
    lapicWrite(r, B1, LAPIC_ID, 3 << 24);
    expect(lapicRead(r, B1, LAPIC_ID)).toBe(3 << 24);
    lapicWrite(r, B0, LAPIC_ID, 1 << 24, opts({ xapicIdWrite: 'ignore' }));
    expect(lapicRead(r, B0, LAPIC_ID)).toBe(0);
    lapicReset(r, B1, 2, false);
    expect(lapicRead(r, B1, LAPIC_ID)).toBe(2 << 24);
  });

  it('software disable (SVR bit 8 = 0) masks every LVT and keeps later LVT writes masked', () => {
    const r = pages(1);
    lapicWrite(r, B0, LAPIC_LVT_LINT0, 0x700);
    expect(lapicRead(r, B0, LAPIC_LVT_LINT0)).toBe(0x700);
    lapicWrite(r, B0, LAPIC_SVR, 0xff);
    expect(lapicRead(r, B0, LAPIC_LVT_LINT0)).toBe(0x700 | LVT_MASKED);
    lapicWrite(r, B0, LAPIC_LVT_LINT0, 0x700);
    expect(lapicRead(r, B0, LAPIC_LVT_LINT0)).toBe(0x700 | LVT_MASKED);
  });

  it('timer registers: TMICT ignored in TSC-deadline mode, mode switches clear it, writes ask for a re-arm', () => {
    const r = pages(1);
    expect(lapicWrite(r, B0, LAPIC_TIMER_ICR, 1000)).toEqual({ type: 'timer' });
    expect(lapicRead(r, B0, LAPIC_TIMER_ICR)).toBe(1000);
    expect(lapicWrite(r, B0, LAPIC_LVT_TIMER, LVT_TIMER_TSC_DEADLINE | 0x30)).toEqual({ type: 'timer' });
    expect(lapicRead(r, B0, LAPIC_TIMER_ICR)).toBe(0);
    expect(lapicWrite(r, B0, LAPIC_TIMER_ICR, 5)).toEqual(NONE);
    expect(lapicRead(r, B0, LAPIC_TIMER_ICR)).toBe(0);
  });
});

describe('MMIO access rules (SDM p367-368, p402)', () => {
  it('vector 14: outside xAPIC mode the page reads all ones and drops writes; CR8 still works', () => {
    const r = pages(2);
    expect(lapicWriteApicBase(r, B0, false, false)).toEqual(NONE);
    expect(lapicRead(r, B0, LAPIC_VER)).toBe(0xffffffff);
    expect(lapicWrite(r, B0, LAPIC_ICR_LO, 0x000440f1)).toEqual(NONE);
    lapicWriteCr8(r, B0, 5);
    expect(lapicReadCr8(r, B0)).toBe(5);
    expect(lapicWriteApicBase(r, B1, true, true)).toEqual(NONE);
    expect(lapicRead(r, B1, 0x30)).toBe(0xffffffff);
  });

  it('bytes 4-15 of a slot and the space above the registers read 0 and ignore writes', () => {
    const r = pages(1);
    expect(lapicRead(r, B0, LAPIC_VER + 4)).toBe(0);
    expect(lapicRead(r, B0, 0x800)).toBe(0);
    expect(lapicWrite(r, B0, 0x800, 7)).toEqual(NONE);
    expect(r[lapicWord(B0, LAPIC_SIM_MODE)]).toBe(APIC_MODE_XAPIC);
  });

  it('[DIV] narrow accesses: Xen reads bytes and read-modify-writes, KVM drops the write, QEMU reads 0', () => {
    const r = pages(1);
    lapicWrite(r, B0, LAPIC_LDR, 0xab000000);
    expect(lapicMmioRead(r, B0, LAPIC_LDR + 3, 1)).toBe(0xab);
    expect(lapicMmioRead(r, B0, LAPIC_LDR + 2, 2)).toBe(0xab00);
    expect(lapicMmioRead(r, B0, LAPIC_LDR + 3, 1, opts({ narrowAccess: 'qemu' }))).toBe(0);
    lapicMmioWrite(r, B0, LAPIC_TPR, 1, 0x40);
    expect(lapicRead(r, B0, LAPIC_TPR)).toBe(0x40);
    lapicMmioWrite(r, B0, LAPIC_TPR, 1, 0x50, opts({ narrowAccess: 'kvm' }));
    expect(lapicRead(r, B0, LAPIC_TPR)).toBe(0x40);
    expect(lapicMmioRead(r, B0, LAPIC_LDR + 3, 2)).toBe(0);  // crosses the 32-bit register
  });
});

describe('x2APIC MSR access (SDM p399-408; vectors 2-8, 10, 15, 45)', () => {
  it('maps MSR 0x800 + (offset >> 4); absent registers map to -1', () => {
    expect(x2apicMsrToOffset(0x830)).toBe(LAPIC_ICR_LO);
    expect(x2apicMsrToOffset(0x802)).toBe(LAPIC_ID);
    expect(x2apicMsrToOffset(0x827)).toBe(0x270);
    for (const msr of [0x809, 0x80c, 0x80e, 0x831, 0x7ff, 0x900, 0x8ff]) expect(x2apicMsrToOffset(msr)).toBe(-1);
  });

  it('vector 2: in xAPIC mode every MSR 0x800-0x8FF faults both ways', () => {
    const r = pages(1);
    for (let msr = 0x800; msr <= 0x8ff; msr++) {
      expect(lapicReadX2apic(r, B0, msr).type, `rdmsr ${msr}`).toBe('gp');
      expect(lapicWriteX2apic(r, B0, msr, 0, 0), `wrmsr ${msr}`).toEqual(GP);
    }
    expect(lapicWriteX2apicIcr(r, B0, 0x40, 0)).toEqual(GP);
  });

  it('vector 3: WRMSR to read-only registers faults', () => {
    const r = pages(1, true);
    const ro = [0x802, 0x803, 0x80a, 0x80d, 0x839];
    for (let m = 0x810; m <= 0x827; m++) ro.push(m);
    for (const msr of ro) expect(lapicWriteX2apic(r, B0, msr, 0, 0), `wrmsr ${msr.toString(16)}`).toEqual(GP);
  });

  it('vector 4: RDMSR of the write-only EOI and SELF IPI faults', () => {
    const r = pages(1, true);
    expect(lapicReadX2apic(r, B0, 0x80b).type).toBe('gp');
    expect(lapicReadX2apic(r, B0, 0x83f).type).toBe('gp');
  });

  it('vector 5: any access to APR, RRD, DFR or ICR_HI faults', () => {
    const r = pages(1, true);
    for (const msr of [0x809, 0x80c, 0x80e, 0x831]) {
      expect(lapicReadX2apic(r, B0, msr).type).toBe('gp');
      expect(lapicWriteX2apic(r, B0, msr, 0, 0)).toEqual(GP);
    }
  });

  it('vector 6: bits 63:32 set on a 32-bit register fault; ICR takes them as the destination', () => {
    const r = pages(1, true);
    for (const msr of [0x808, 0x80f, 0x828, 0x832, 0x835, 0x838, 0x83e]) {
      expect(lapicWriteX2apic(r, B0, msr, 0, -1), `wrmsr ${msr.toString(16)}`).toEqual(GP);
    }
    expect(lapicWriteX2apic(r, B0, 0x830, 0x40, -1)).toEqual({ type: 'ipi', icrLo: 0x40, icrHi: 0xffffffff });
  });

  it('vector 7: SELF IPI with bits 31:8 faults', () => {
    const r = pages(1, true);
    for (const v of [0x100, 0xff00, 0xff000000]) expect(lapicWriteX2apic(r, B0, 0x83f, v, 0)).toEqual(GP);
  });

  it('vector 8: ICR bits 13, 16, 17, 20-31 fault; otherwise RDMSR returns the 64-bit value written', () => {
    const r = pages(1, true);
    for (const b of [13, 16, 17, 20, 24, 31]) expect(lapicWriteX2apic(r, B0, 0x830, (1 << b) | 0x40, 0), `bit ${b}`).toEqual(GP);
    expect(lapicWriteX2apic(r, B0, 0x830, 0x000c4500, 0x12345678).type).toBe('ipi');
    expect(lapicReadX2apic(r, B0, 0x830)).toEqual({ type: 'value', lo: 0x000c4500, hi: 0x12345678 });
  });

  it('[DIV] x2APIC ICR bit 12: #GP (Xen, SDM) or cleared silently (KVM)', () => {
    const r = pages(1, true);
    expect(lapicWriteX2apicIcr(r, B0, 0x1040, 2)).toEqual(GP);
    expect(lapicWriteX2apicIcr(r, B0, 0x1040, 2, opts({ x2apicIcrBusy: 'clear' }))).toEqual({ type: 'ipi', icrLo: 0x40, icrHi: 2 });
    expect(rdmsr(r, B0, 0x830)).toBe(0x40);
  });

  it('vector 10/15: ID and LDR are read-only; LDR derives from the ID (0x23 -> 00020008, 0x10 -> 00010001)', () => {
    const r = pages(9, true);
    expect(lapicWriteX2apic(r, B1, 0x802, 0, 0)).toEqual(GP);
    expect(rdmsr(r, B1, 0x802)).toBe(2);
    const b = lapicPageBase(8);
    lapicReset(r, b, 0x23, true);
    expect(rdmsr(r, b, 0x80d)).toBe(0x00020008);
    lapicReset(r, b, 0x10, true);
    expect(rdmsr(r, b, 0x80d)).toBe(0x00010001);
    expect(lapicWriteX2apic(r, b, 0x80d, 0, 0)).toEqual(GP);
  });

  it('vector 45: EOI and ESR accept only 0', () => {
    const r = pages(1, true);
    expect(lapicWriteX2apic(r, B0, 0x828, 1, 0)).toEqual(GP);
    expect(lapicWriteX2apic(r, B0, 0x80b, 1, 0)).toEqual(GP);
    expect(lapicWriteX2apic(r, B0, 0x828, 0, 0)).toEqual(NONE);
    expect(lapicWriteX2apic(r, B0, 0x80b, 0, 0)).toEqual(NONE);
  });

  it('reserved bits in TPR, SVR, LVTs and TDCR fault (Xen guest_wrmsr_x2apic)', () => {
    const r = pages(1, true);
    expect(lapicWriteX2apic(r, B0, 0x808, 0x100, 0)).toEqual(GP);
    expect(lapicWriteX2apic(r, B0, 0x80f, 0x1000, 0)).toEqual(GP);
    expect(lapicWriteX2apic(r, B0, 0x837, 0x700, 0)).toEqual(GP);  // LVT Error has no delivery mode
    expect(lapicWriteX2apic(r, B0, 0x835, 0xf700, 0)).toEqual(NONE);  // LINT0 has
    expect(lapicWriteX2apic(r, B0, 0x83e, 0x4, 0)).toEqual(GP);
    expect(lapicWriteX2apic(r, B0, 0x838, -1, 0)).toEqual({ type: 'timer' });
  });
});

describe('IA32_APIC_BASE mode transitions (SDM p402-404; vectors 12, 13)', () => {
  it('vector 12: from x2APIC, (0,1) and (1,0) fault, (0,0) disables', () => {
    const r = pages(1, true);
    expect(lapicWriteApicBase(r, B0, false, true)).toEqual(GP);
    expect(lapicWriteApicBase(r, B0, true, false)).toEqual(GP);
    expect(lapicWriteApicBase(r, B0, false, false)).toEqual(NONE);
    expect(r[lapicWord(B0, LAPIC_SIM_MODE)]).toBe(APIC_MODE_DISABLED);
  });

  it('vector 13: from disabled, (0,1) and (1,1) fault, (1,0) enables xAPIC; then xAPIC -> (0,1) faults', () => {
    const r = pages(1);
    lapicWriteApicBase(r, B0, false, false);
    expect(lapicWriteApicBase(r, B0, false, true)).toEqual(GP);
    expect(lapicWriteApicBase(r, B0, true, true)).toEqual(GP);
    expect(lapicWriteApicBase(r, B0, true, false)).toEqual(NONE);
    expect(r[lapicWord(B0, LAPIC_SIM_MODE)]).toBe(APIC_MODE_XAPIC);
    expect(lapicWriteApicBase(r, B0, false, true)).toEqual(GP);
  });

  it('entering x2APIC restores the initial ID, derives LDR and loses ICR_HI; re-enabling xAPIC resets', () => {
    const r = pages(4);
    const b = lapicPageBase(3);
    lapicWrite(r, b, LAPIC_ID, 0x7f000000);
    lapicWrite(r, b, LAPIC_ICR_HI, 0x05000000);
    expect(lapicWriteApicBase(r, b, true, true)).toEqual(NONE);
    expect(r[lapicWord(b, LAPIC_SIM_MODE)]).toBe(APIC_MODE_X2APIC);
    expect(rdmsr(r, b, 0x802)).toBe(6);
    expect(rdmsr(r, b, 0x80d)).toBe(0x00000040);
    expect(lapicReadX2apic(r, b, 0x830)).toEqual({ type: 'value', lo: 0, hi: 0 });
    lapicWriteApicBase(r, b, false, false);
    lapicWriteApicBase(r, b, true, false);
    expect(lapicRead(r, b, LAPIC_ID)).toBe(6 << 24);
    expect(lapicRead(r, b, LAPIC_SVR)).toBe(0xff);
  });
});

describe('sending: the ICR write is the trigger (SDM p380; vectors 9, 17-21, 26, 27)', () => {
  it('vector 17: writing ICR_HI alone sends nothing', () => {
    const r = pages(2);
    expect(lapicWrite(r, B0, LAPIC_ICR_HI, 0x02000000)).toEqual(NONE);
  });

  it('vector 18: ICR_HI 01, ICR_HI 02, then ICR_LO 4040: the last latch wins, only APIC 2 gets 0x40', () => {
    const r = pages(3);
    lapicWrite(r, B0, LAPIC_ICR_HI, 0x01000000);
    lapicWrite(r, B0, LAPIC_ICR_HI, 0x02000000);
    const e = lapicWrite(r, B0, LAPIC_ICR_LO, 0x00004040);
    expect(e).toEqual({ type: 'ipi', icrLo: 0x4040, icrHi: 0x02000000 });
    expect(deliver(r, 3, 0, e)).toEqual([1]);
    expect(lapicTestVector(r, B1, LAPIC_IRR, 0x40)).toBe(true);
    expect(lapicHighestIrr(r, B0)).toBe(-1);
    expect(lapicHighestIrr(r, B2)).toBe(-1);
  });

  it('vector 9: ICR_LO reads back with delivery status 0; ICR_HI keeps only 31:24 [DIV: AVIC keeps 23:0]', () => {
    const r = pages(1);
    lapicWrite(r, B0, LAPIC_ICR_HI, 0xab123456);
    lapicWrite(r, B0, LAPIC_ICR_LO, 0x000450f1);
    expect(lapicRead(r, B0, LAPIC_ICR_LO)).toBe(0x000440f1);
    expect(lapicRead(r, B0, LAPIC_ICR_HI)).toBe(0xab000000);
    lapicWrite(r, B0, LAPIC_ICR_HI, 0xab123456, opts({ icrHiLowBits: 'keep' }));
    expect(lapicRead(r, B0, LAPIC_ICR_HI)).toBe(0xab123456);
  });

  it('vector 19: xAPIC self IPI 000400F1 is taken exactly once by the sender', () => {
    const r = pages(2);
    lapicWrite(r, B0, LAPIC_ICR_HI, 0x02000000);
    expect(deliver(r, 2, 0, lapicWrite(r, B0, LAPIC_ICR_LO, 0x000400f1))).toEqual([0]);
    expect(lapicAck(r, B0)).toBe(0xf1);
    expect(lapicAck(r, B0)).toBe(-1);
    expect(lapicHighestIrr(r, B1)).toBe(-1);
  });

  it('vector 20: x2APIC self IPI through ICR 000400F1 is taken exactly once', () => {
    const r = pages(2, true);
    expect(deliver(r, 2, 1, lapicWriteX2apic(r, B1, 0x830, 0x000400f1, 0))).toEqual([1]);
    expect(lapicAck(r, B1)).toBe(0xf1);
    expect(lapicAck(r, B1)).toBe(-1);
  });

  it('vector 21: SELF IPI 0x20 sets IRR[0x20] with TMR[0x20] = 0 when the WRMSR completes', () => {
    const r = pages(1, true);
    const e = lapicWriteX2apic(r, B0, 0x83f, 0x20, 0);
    expect(e).toEqual({ type: 'ipi', icrLo: 0x00040020, icrHi: 0 });
    deliver(r, 1, 0, e);
    expect(lapicTestVector(r, B0, LAPIC_IRR, 0x20)).toBe(true);
    expect(lapicTestVector(r, B0, LAPIC_TMR, 0x20)).toBe(false);
  });

  it('vector 26: any delivery mode to an absent ID: no fault, no delivery, ICR reads back with BUSY = 0', () => {
    const r = pages(2);
    lapicWrite(r, B0, LAPIC_ICR_HI, 0x7f000000);
    for (let dm = 0; dm < 8; dm++) {
      const lo = (dm << 8) | 0x10ff;
      expect(deliver(r, 2, 0, lapicWrite(r, B0, LAPIC_ICR_LO, lo))).toEqual([]);
      expect(lapicRead(r, B0, LAPIC_ICR_LO)).toBe(lo & ~0x1000);
    }
  });

  it('vector 27: a fixed IPI with level = 0 (Linux) is accepted as edge', () => {
    const r = pages(2);
    lapicWrite(r, B0, LAPIC_ICR_HI, 0x02000000);
    expect(deliver(r, 2, 0, lapicWrite(r, B0, LAPIC_ICR_LO, 0x000000f2))).toEqual([1]);
    expect(lapicAck(r, B1)).toBe(0xf2);
    expect(lapicTestVector(r, B1, LAPIC_TMR, 0xf2)).toBe(false);
  });

  it('vector 28: repeated IPIs to the same target are each taken and EOIed, none lost', () => {
    const r = pages(2);
    for (let n = 0; n < 100; n++) {
      expect(lapicAcceptIpi(r, B1, 0x000000a5)).toBe('latched');
      expect(lapicAck(r, B1)).toBe(0xa5);
      expect(lapicEoi(r, B1)).toEqual(NONE);
    }
    expect(lapicHighestIsr(r, B1)).toBe(-1);
  });
});

describe('priority, TPR and EOI (SDM p388-393; vectors 16, 37-42)', () => {
  it('PPR = TPR when TPR[7:4] >= ISRV[7:4], else ISRV & 0xF0', () => {
    expect(lapicPpr(0x45, 0x31)).toBe(0x45);
    expect(lapicPpr(0x35, 0x31)).toBe(0x35);
    expect(lapicPpr(0x25, 0x31)).toBe(0x30);
    expect(lapicPpr(0, 0)).toBe(0);
  });

  it('vector 16: CR8 = 5 gives TPR 0x50; PPR = TPR with ISR empty', () => {
    const r = pages(1);
    lapicWriteCr8(r, B0, 5);
    expect(lapicRead(r, B0, LAPIC_TPR)).toBe(0x50);
    expect(lapicRead(r, B0, LAPIC_PPR)).toBe(0x50);
  });

  it('vector 37: TPR F0 blocks 0x20 and 0x3E; at 20 only 0x3E; at 0 then 0x20', () => {
    const r = pages(1);
    lapicWrite(r, B0, LAPIC_TPR, 0xf0);
    lapicAcceptInterrupt(r, B0, 0x20, false);
    lapicAcceptInterrupt(r, B0, 0x3e, false);
    expect(lapicPendingDeliverable(r, B0)).toBe(-1);
    lapicWrite(r, B0, LAPIC_TPR, 0x20);
    expect(lapicAck(r, B0)).toBe(0x3e);
    lapicWrite(r, B0, LAPIC_EOI, 0);
    expect(lapicAck(r, B0)).toBe(-1);
    lapicWrite(r, B0, LAPIC_TPR, 0);
    expect(lapicAck(r, B0)).toBe(0x20);
  });

  it('vector 38: TPR class 2 blocks 0x20, class 1 lets it through', () => {
    const r = pages(1);
    lapicWrite(r, B0, LAPIC_TPR, 0x20);
    lapicAcceptInterrupt(r, B0, 0x20, false);
    expect(lapicPendingDeliverable(r, B0)).toBe(-1);
    lapicWrite(r, B0, LAPIC_TPR, 0x10);
    expect(lapicPendingDeliverable(r, B0)).toBe(0x20);
  });

  it('vector 39: with 0x66 then 0x78 pending, 0x78 is taken first and 0x66 after its EOI', () => {
    const r = pages(1);
    lapicAcceptInterrupt(r, B0, 0x66, false);
    lapicAcceptInterrupt(r, B0, 0x78, false);
    expect(lapicAck(r, B0)).toBe(0x78);
    expect(lapicAck(r, B0)).toBe(-1);
    lapicWrite(r, B0, LAPIC_EOI, 0);
    expect(lapicAck(r, B0)).toBe(0x66);
  });

  it('vector 40: in handler 0x31, 0x35 waits (same class), 0x51 preempts; EOI clears only 0x51', () => {
    const r = pages(1);
    lapicAcceptInterrupt(r, B0, 0x31, false);
    expect(lapicAck(r, B0)).toBe(0x31);
    lapicAcceptInterrupt(r, B0, 0x35, false);
    expect(lapicPendingDeliverable(r, B0)).toBe(-1);
    lapicAcceptInterrupt(r, B0, 0x51, false);
    expect(lapicAck(r, B0)).toBe(0x51);
    expect(lapicRead(r, B0, LAPIC_PPR)).toBe(0x50);
    lapicWrite(r, B0, LAPIC_EOI, 0);
    expect(lapicTestVector(r, B0, 0x100, 0x31)).toBe(true);
    expect(lapicRead(r, B0, LAPIC_PPR)).toBe(0x30);
    expect(lapicPendingDeliverable(r, B0)).toBe(-1);
  });

  it('vector 41: three 0x50s while blocked set IRR once; the handler runs once', () => {
    const r = pages(1);
    expect([0, 1, 2].map(() => lapicAcceptInterrupt(r, B0, 0x50, false))).toEqual(['latched', 'coalesced', 'coalesced']);
    expect(lapicAck(r, B0)).toBe(0x50);
    lapicEoi(r, B0);
    expect(lapicAck(r, B0)).toBe(-1);
  });

  it('vector 42: 0x50 in service, two more arrive: one waits in IRR, two handler runs in total', () => {
    const r = pages(1);
    lapicAcceptInterrupt(r, B0, 0x50, false);
    expect(lapicAck(r, B0)).toBe(0x50);
    expect([lapicAcceptInterrupt(r, B0, 0x50, false), lapicAcceptInterrupt(r, B0, 0x50, false)]).toEqual(['latched', 'coalesced']);
    expect(lapicAck(r, B0)).toBe(-1);
    lapicEoi(r, B0);
    expect(lapicAck(r, B0)).toBe(0x50);
    lapicEoi(r, B0);
    expect(lapicAck(r, B0)).toBe(-1);
  });

  it('EOI with ISR empty is a no-op; EOI of a level-triggered vector broadcasts EOI', () => {
    const r = pages(1);
    expect(lapicWrite(r, B0, LAPIC_EOI, 0)).toEqual(NONE);
    lapicAcceptInterrupt(r, B0, 0x61, true);
    expect(lapicTestVector(r, B0, LAPIC_TMR, 0x61)).toBe(true);
    lapicAck(r, B0);
    expect(lapicWrite(r, B0, LAPIC_EOI, 0)).toEqual({ type: 'eoi-broadcast', vector: 0x61 });
  });

  it('[DIV] IPI trigger: edge always (Xen); KVM honours level (TMR) and drops level-deassert fixed IPIs', () => {
    const r = pages(1);
    const kvm = opts({ ipiTrigger: 'icr' });
    expect(lapicAcceptIpi(r, B0, 0x0000c040)).toBe('latched');
    expect(lapicTestVector(r, B0, LAPIC_TMR, 0x40)).toBe(false);
    expect(lapicAcceptIpi(r, B0, 0x0000c041, kvm)).toBe('latched');
    expect(lapicTestVector(r, B0, LAPIC_TMR, 0x41)).toBe(true);
    expect(lapicAcceptIpi(r, B0, 0x00008042, kvm)).toBe('ignored');
  });
});

describe('illegal vectors and ESR (SDM p376-378; vectors 43, 44; XS-19)', () => {
  it('vector 43 / XS-19 (Xen): fixed vector 5 is not sent; the sender logs ESR bit 5', () => {
    const r = pages(2);
    lapicWrite(r, B0, LAPIC_ICR_HI, 0x02000000);
    expect(lapicWrite(r, B0, LAPIC_ICR_LO, 0x00004005)).toEqual(NONE);
    expect(lapicWrite(r, B0, LAPIC_ICR_LO, 0x00004105)).toEqual(NONE);  // lowest priority too
    expect(readEsr(r, B0)).toBe(ESR_SEND_ILLEGAL_VECTOR);
    expect(readEsr(r, B0)).toBe(0);  // the next write latches nothing new
    expect(readEsr(r, B1)).toBe(0);
  });

  it('vector 43 [DIV] kvm: sent, no ESR anywhere, IRR[5] set but never dispatched', () => {
    const r = pages(2);
    const kvm = opts({ illegalVector: 'kvm' });
    lapicWrite(r, B0, LAPIC_ICR_HI, 0x02000000);
    expect(deliver(r, 2, 0, lapicWrite(r, B0, LAPIC_ICR_LO, 0x00004005, kvm), kvm)).toEqual([1]);
    expect(readEsr(r, B0)).toBe(0);
    expect(readEsr(r, B1)).toBe(0);
    expect(lapicTestVector(r, B1, LAPIC_IRR, 5)).toBe(true);
    expect(lapicAck(r, B1)).toBe(-1);
  });

  it('vector 43 [DIV] sdm: the sender logs bit 5, the message goes out, the receiver logs bit 6 and drops it', () => {
    const r = pages(2);
    const sdm = opts({ illegalVector: 'sdm' });
    lapicWrite(r, B0, LAPIC_ICR_HI, 0x02000000);
    expect(deliver(r, 2, 0, lapicWrite(r, B0, LAPIC_ICR_LO, 0x00004005, sdm), sdm)).toEqual([1]);
    expect(readEsr(r, B0)).toBe(ESR_SEND_ILLEGAL_VECTOR);
    expect(readEsr(r, B1)).toBe(ESR_RECV_ILLEGAL_VECTOR);
    expect(lapicHighestIrr(r, B1)).toBe(-1);
  });

  it('vector 44: SELF IPI 0x0F is not delivered; Xen sets bit 5 only, the SDM reading bits 5 and 6', () => {
    const r = pages(1, true);
    expect(lapicWriteX2apic(r, B0, 0x83f, 0x0f, 0)).toEqual(NONE);
    lapicWriteX2apic(r, B0, 0x828, 0, 0);
    expect(rdmsr(r, B0, 0x828)).toBe(ESR_SEND_ILLEGAL_VECTOR);
    const sdm = opts({ illegalVector: 'sdm' });
    deliver(r, 1, 0, lapicWriteX2apic(r, B0, 0x83f, 0x0f, 0, sdm), sdm);
    lapicWriteX2apic(r, B0, 0x828, 0, 0);
    expect(rdmsr(r, B0, 0x828)).toBe(ESR_SEND_ILLEGAL_VECTOR | ESR_RECV_ILLEGAL_VECTOR);
    expect(lapicHighestIrr(r, B0)).toBe(-1);
  });

  it('an illegal vector from another source (LVT, MSI) sets receive-illegal at the receiver (Xen vlapic_set_irq)', () => {
    const r = pages(1);
    expect(lapicAcceptInterrupt(r, B0, 3, false)).toBe('illegal');
    expect(readEsr(r, B0)).toBe(ESR_RECV_ILLEGAL_VECTOR);
  });

  it('an unmasked LVT Error fires once per new ESR bit; an illegal LVT Error vector folds in bit 6', () => {
    const r = pages(2);
    lapicWrite(r, B0, LAPIC_LVT_ERROR, 0xe0);
    lapicWrite(r, B0, LAPIC_ICR_LO, 0x4005);
    expect(lapicAck(r, B0)).toBe(0xe0);
    lapicWrite(r, B0, LAPIC_ICR_LO, 0x4005);
    expect(lapicPendingDeliverable(r, B0)).toBe(-1);  // bit 5 already pending: no second LVT Error
    lapicWrite(r, B1, LAPIC_LVT_ERROR, 0x05);
    lapicWrite(r, B1, LAPIC_ICR_LO, 0x4005);
    expect(readEsr(r, B1)).toBe(ESR_SEND_ILLEGAL_VECTOR | ESR_RECV_ILLEGAL_VECTOR);
  });
});

describe('software-disabled APIC and NMI (SDM p372-373; vectors 46, 47)', () => {
  it('vector 46: with SVR bit 8 = 0 a fixed IPI is dropped but an NMI is delivered', () => {
    const r = pages(1, false, false);
    expect(lapicAcceptIpi(r, B0, 0x00004060)).toBe('disabled');
    expect(lapicHighestIrr(r, B0)).toBe(-1);
    expect(lapicAcceptIpi(r, B0, 0x00004400)).toBe('nmi');
    expect(lapicTakeNmi(r, B0)).toBe(true);
  });

  it('vector 46 [DIV] latch (QEMU): IRR is set but not dispatched until the APIC is re-enabled', () => {
    const r = pages(1, false, false);
    expect(lapicAcceptIpi(r, B0, 0x00004060, opts({ softDisabledFixed: 'latch' }))).toBe('latched');
    expect(lapicPendingDeliverable(r, B0)).toBe(-1);
    lapicWrite(r, B0, LAPIC_SVR, 0x1ff);
    expect(lapicAck(r, B0)).toBe(0x60);
  });

  it('a hardware-disabled APIC accepts no fixed interrupt under any option', () => {
    const r = pages(1);
    lapicWriteApicBase(r, B0, false, false);
    expect(lapicAcceptInterrupt(r, B0, 0x60, false, opts({ softDisabledFixed: 'latch' }))).toBe('disabled');
  });

  it('vector 47: one NMI latch: an NMI in service plus ten more gives exactly two handler runs', () => {
    const r = pages(1);
    expect(lapicAcceptNmi(r, B0)).toBe('nmi');
    let runs = 0;
    while (lapicTakeNmi(r, B0)) {
      runs++;
      if (runs === 1) for (let i = 0; i < 10; i++) lapicAcceptIpi(r, B0, 0x00040400);
    }
    expect(runs).toBe(2);
  });

  it('SMI and mode 011 are ignored; ExtINT crashes the domain (Xen) or is ignored (KVM)', () => {
    const r = pages(1);
    expect(lapicAcceptIpi(r, B0, 0x00004200)).toBe('ignored');
    expect(lapicAcceptIpi(r, B0, 0x00004340)).toBe('ignored');
    expect(lapicAcceptIpi(r, B0, 0x00004700)).toBe('crash');
    expect(lapicAcceptIpi(r, B0, 0x00004700, opts({ extIntIpi: 'ignore' }))).toBe('ignored');
  });
});

describe('INIT and SIPI (SDM p372-373, p275-278; vector 50)', () => {
  it('vector 50: INIT puts an AP in wait-for-SIPI, resets it but keeps its ID; SIPI 9A starts it; SIPI 2 is ignored', () => {
    const r = pages(2);
    lapicWrite(r, B1, LAPIC_TPR, 0x30);
    lapicAcceptInterrupt(r, B1, 0x40, false);
    expect(lapicAcceptIpi(r, B1, 0x00004500)).toBe('init');
    expect(lapicInitState(r, B1)).toBe(LAPIC_WAIT_FOR_SIPI);
    expect(lapicTakePending(r, B1) & LAPIC_PEND_INIT).toBe(LAPIC_PEND_INIT);
    expect(lapicInit(r, B1)).toBe(LAPIC_WAIT_FOR_SIPI);
    expect(lapicRead(r, B1, LAPIC_ID)).toBe(2 << 24);
    expect(lapicRead(r, B1, LAPIC_TPR)).toBe(0);
    expect(lapicRead(r, B1, LAPIC_SVR)).toBe(0xff);
    expect(lapicHighestIrr(r, B1)).toBe(-1);
    expect(lapicAcceptIpi(r, B1, 0x0000469a)).toBe('sipi');
    expect(lapicAcceptIpi(r, B1, 0x0000469a)).toBe('sipi-ignored');
    expect(lapicInitState(r, B1)).toBe(LAPIC_SIPI_RECEIVED);
    expect(lapicTakeSipi(r, B1)).toBe(0x9a);  // start at CS 9A00, IP 0
    expect(lapicInitState(r, B1)).toBe(LAPIC_RUN);
    expect(lapicTakeSipi(r, B1)).toBe(-1);
    expect(lapicAcceptIpi(r, B1, 0x0000469b)).toBe('sipi-ignored');
  });

  it('vector 50: INIT level-deassert has no effect; a BSP self-INIT restarts without a SIPI', () => {
    const r = pages(2);
    expect(lapicAcceptIpi(r, B1, 0x00008500)).toBe('ignored');
    expect(lapicInitState(r, B1)).toBe(LAPIC_RUN);
    expect(deliver(r, 2, 0, lapicWrite(r, B0, LAPIC_ICR_LO, 0x00040500))).toEqual([0]);
    expect(lapicInitState(r, B0)).toBe(LAPIC_RUN);
    expect(lapicInit(r, B0)).toBe(LAPIC_RUN);
  });

  it('a SIPI that arrives before the owner runs lapicInit is kept', () => {
    const r = pages(2);
    lapicAcceptIpi(r, B1, 0x00004500);
    lapicAcceptIpi(r, B1, 0x00004610);
    expect(lapicInit(r, B1)).toBe(LAPIC_SIPI_RECEIVED);
    expect(lapicTakeSipi(r, B1)).toBe(0x10);
  });

  it('a physical LAPIC latches INIT and leaves the reset to the core: until the core resets, a SIPI is discarded', () => {
    const r = pages(2);
    expect(lapicAcceptPhysIpi(r, B1, 0x00004500)).toBe('init');
    expect(lapicInitState(r, B1)).toBe(LAPIC_RUN);
    expect(lapicTakePending(r, B1) & LAPIC_PEND_INIT).toBe(LAPIC_PEND_INIT);
    expect(lapicAcceptPhysIpi(r, B1, 0x00004610)).toBe('sipi-ignored');  // no wait-for-SIPI: the core did not reset
    expect(lapicAcceptPhysIpi(r, B1, 0x00008500)).toBe('ignored');       // level-deassert, as on a vLAPIC
    expect(lapicInit(r, B1)).toBe(LAPIC_WAIT_FOR_SIPI);                    // the core reset (AMD, host mode)
    expect(lapicAcceptPhysIpi(r, B1, 0x00004610)).toBe('sipi');
  });

  it('INIT in x2APIC mode keeps the mode, the ID and the LDR', () => {
    const r = pages(2, true);
    lapicAcceptIpi(r, B1, 0x00004500);
    lapicInit(r, B1);
    expect(r[lapicWord(B1, LAPIC_SIM_MODE)]).toBe(APIC_MODE_X2APIC);
    expect(rdmsr(r, B1, 0x802)).toBe(2);
    expect(rdmsr(r, B1, 0x80d)).toBe(0x00000004);
  });
});

describe('cross-thread signalling and the bus view', () => {
  it('the pending summary is set on a new IRR bit, NMI or SIPI, and not again for a coalesced one', () => {
    const r = pages(2);
    lapicAcceptInterrupt(r, B1, 0x40, false);
    expect(lapicTakePending(r, B1)).toBe(LAPIC_PEND_FIXED);
    lapicAcceptInterrupt(r, B1, 0x40, false);
    expect(lapicTakePending(r, B1)).toBe(0);
    lapicAcceptNmi(r, B1);
    lapicAcceptIpi(r, B1, 0x4500);
    lapicAcceptIpi(r, B1, 0x4620);
    expect(lapicTakePending(r, B1)).toBe(LAPIC_PEND_NMI | LAPIC_PEND_INIT | LAPIC_PEND_SIPI);
  });

  it('lapicBusView reports ID, mode, LDR, DFR, enabled and PPR as the bus needs them', () => {
    const r = pages(2);
    lapicWrite(r, B1, LAPIC_LDR, 0x04000000);
    lapicWrite(r, B1, LAPIC_TPR, 0x25);
    expect(lapicBusView(r, B1)).toEqual({ apicId: 2, x2apic: false, ldr: 0x04000000, dfr: 0xffffffff, enabled: true, ppr: 0x25 });
    const x = pages(2, true, false);
    expect(lapicBusView(x, B1)).toEqual({ apicId: 2, x2apic: true, ldr: 0x4, dfr: 0xffffffff, enabled: false, ppr: 0 });
  });
});

describe('reference model: IRR / ISR / TPR / PPR / EOI (seeded, 2000 random operations)', () => {
  const SEED = 0x5eed1a9;

  it(`matches a Set-based model (SEED=${SEED})`, () => {
    const rng = new Prng(childSeed(SEED, 'lapic.model'));
    const r = pages(1);
    const irr = new Set<number>(), isr = new Set<number>();
    let tpr = 0;
    const highest = (s: Set<number>): number => (s.size === 0 ? -1 : Math.max(...s));
    const modelPpr = (): number => {
      const isrv = Math.max(highest(isr), 0);
      return (tpr >> 4) >= (isrv >> 4) ? tpr : isrv & 0xf0;
    };
    const modelDeliverable = (): number => {
      const v = highest(irr);
      return v >= 0 && (v >> 4) > (modelPpr() >> 4) ? v : -1;
    };
    const log: string[] = [];
    for (let step = 0; step < 2000; step++) {
      const roll = rng.below(100);
      if (roll < 40) {
        const v = rng.below(256);
        const got = lapicAcceptInterrupt(r, B0, v, false);
        const want = v < 16 ? 'illegal' : irr.has(v) ? 'coalesced' : 'latched';
        if (v >= 16) irr.add(v);
        log.push(`accept ${v} -> ${got}`);
        expect(got, log.slice(-8).join('\n')).toBe(want);
      } else if (roll < 65) {
        const want = modelDeliverable();
        if (want >= 0) { irr.delete(want); isr.add(want); }
        const got = lapicAck(r, B0);
        log.push(`ack -> ${got}`);
        expect(got, log.slice(-8).join('\n')).toBe(want);
      } else if (roll < 85) {
        const v = highest(isr);
        if (v >= 0) isr.delete(v);
        lapicWrite(r, B0, LAPIC_EOI, 0);
        log.push(`eoi (${v})`);
      } else {
        tpr = rng.below(256);
        lapicWrite(r, B0, LAPIC_TPR, tpr);
        log.push(`tpr ${tpr}`);
      }
      const ctx = `SEED=${SEED} step ${step}\n${log.slice(-8).join('\n')}`;
      expect(lapicHighestIrr(r, B0), ctx).toBe(highest(irr));
      expect(lapicHighestIsr(r, B0), ctx).toBe(highest(isr));
      expect(lapicRead(r, B0, LAPIC_PPR), ctx).toBe(modelPpr());
      expect(lapicPendingDeliverable(r, B0), ctx).toBe(modelDeliverable());
      for (let v = 0; v < 256; v++) {
        if (lapicTestVector(r, B0, LAPIC_IRR, v) !== irr.has(v) || lapicTestVector(r, B0, 0x100, v) !== isr.has(v)) {
          expect.fail(`${ctx}\nbitmap mismatch at vector ${v}`);
        }
      }
    }
  });
});
