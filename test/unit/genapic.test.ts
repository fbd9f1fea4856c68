// Xen's IPI traffic on the physical LAPICs: the genapic driver choice, the LDRs it programs at boot, the ICR
// writes of send_IPI_mask (src/hv/genapic.ts), those writes routed by the physical bus of a booted machine,
// and the LAPIC timer that drives the scheduler (src/hw/lapic-timer.ts, src/hv/apic-timer.ts).
import { describe, expect, it } from 'vitest';
import { buildMachine } from '../../src/machine.js';
import { Pcpu, type PcpuParams } from '../../src/hv/pcpu-loop.js';
import { genapicLdr, genapicPlan, genapicSelect, type GenapicContext, type GenapicWrite } from '../../src/hv/genapic.js';
import { hvSendIpiMask } from '../../src/hv/ipi-send.js';
import { CALL_FUNCTION_VECTOR, EVENT_CHECK_VECTOR, LOCAL_TIMER_VECTOR } from '../../src/hv/irq-vectors.js';
import { apicTimerSetup } from '../../src/hv/apic-timer.js';
import { APIC_BUS_DEFAULTS, APIC_BUS_HARDWARE, apicRouteIpi } from '../../src/hw/apic-bus.js';
import { DEFAULT_COSTS } from '../../src/hw/clock.js';
import { LAPIC_DEFAULTS, lapicBusView, lapicHighestIrr, lapicReset, lapicTestVector, lapicWrite } from '../../src/hw/lapic.js';
import { LapicTimer, lapicTimerDivisor } from '../../src/hw/lapic-timer.js';
import { IPI_PATH_VLAPIC } from '../../shared/domain.js';
import {
  ICR_DEST_LOGICAL, ICR_DM_FIXED, ICR_SH_ALL_EXCL, LAPIC_DFR, LAPIC_IRR, LAPIC_LDR, LAPIC_LVT_TIMER, LAPIC_PAGE_WORDS,
  LAPIC_SVR, LAPIC_TIMER_CCR, LAPIC_TIMER_DCR, LAPIC_TIMER_ICR, LVT_MASKED, LVT_TIMER_ONESHOT, LVT_TIMER_PERIODIC,
} from '../../shared/lapic.js';
import { PC_PENDING, PEND_IRQ } from '../../shared/pcpu.js';

const OK: GenapicContext = { inIrq: false, irqsEnabled: true };
function plan(kind: ReturnType<typeof genapicSelect>, targets: number[], self: number, n: number, ctx = OK): GenapicWrite[] {
  const out: GenapicWrite[] = [];
  genapicPlan(kind, targets, self, n, 0xfb, ctx, out);
  return out;
}

describe('genapic selection (xen/arch/x86/genapic, mpparse.c)', () => {
  it('xAPIC with up to 8 CPUs runs flat logical; past 8, bigsmp physical; x2APIC runs cluster (mixed)', () => {
    for (let n = 1; n <= 8; n++) expect(genapicSelect(n, false)).toBe('flat');
    expect(genapicSelect(9, false)).toBe('phys');
    expect(genapicSelect(254, false)).toBe('phys');
    expect(genapicSelect(1, true)).toBe('x2apic-cluster');
    expect(genapicSelect(300, true)).toBe('x2apic-cluster');
  });

  it('LDRs: flat bit cpu in 31:24; physical mode programs none; x2APIC cluster id >> 4 in 31:16, bit id & 15', () => {
    expect(genapicLdr('flat', 0)).toBe(0x01000000);
    expect(genapicLdr('flat', 7)).toBe(0x80000000);
    expect(() => genapicLdr('flat', 8)).toThrow(/no LDR bit/);
    expect(genapicLdr('phys', 5)).toBe(0);
    expect(genapicLdr('x2apic-cluster', 0x23)).toBe(((2 << 16) | (1 << 3)) >>> 0);
    expect(genapicLdr('x2apic-cluster', 15)).toBe(0x8000);
  });
});

describe('send_IPI_mask (smp.c) and the drivers', () => {
  it('every other CPU a target, interrupts on, not in an IRQ: one all-but-self shorthand, no ICR_HI', () => {
    expect(plan('flat', [1, 2, 3], 0, 4)).toEqual([{ icrLo: ICR_SH_ALL_EXCL | ICR_DM_FIXED | 0xfb, dest: 0, hi: false }]);
    // The sender in the mask changes nothing (mask | self == online).
    expect(plan('phys', [0, 1, 2, 3], 2, 4)).toEqual([{ icrLo: ICR_SH_ALL_EXCL | ICR_DM_FIXED | 0xfb, dest: 0, hi: false }]);
    expect(plan('x2apic-cluster', [0, 1], 1, 2)).toHaveLength(1);
    expect(plan('x2apic-cluster', [0, 1], 1, 2)[0].icrLo & ICR_SH_ALL_EXCL).toBe(ICR_SH_ALL_EXCL);
  });

  it('negative control: in an interrupt handler, or with interrupts off, the driver sends instead', () => {
    const inIrq = plan('flat', [1, 2, 3], 0, 4, { inIrq: true, irqsEnabled: true });
    expect(inIrq).toEqual([{ icrLo: ICR_DEST_LOGICAL | ICR_DM_FIXED | 0xfb, dest: 0x0e000000, hi: true }]);
    expect(plan('flat', [1, 2, 3], 0, 4, { inIrq: false, irqsEnabled: false })).toEqual(inIrq);
    // One CPU short of all: no shorthand.
    expect(plan('flat', [1, 2], 0, 4)).toEqual([{ icrLo: ICR_DEST_LOGICAL | ICR_DM_FIXED | 0xfb, dest: 0x06000000, hi: true }]);
  });

  it('flat: one logical ICR_HI + ICR_LO for the whole mask, without the sender; physical: one pair per target', () => {
    expect(plan('flat', [3, 1, 1, 0], 0, 6)).toEqual([{ icrLo: ICR_DEST_LOGICAL | ICR_DM_FIXED | 0xfb, dest: 0x0a000000, hi: true }]);
    expect(plan('phys', [9, 3], 0, 12)).toEqual([
      { icrLo: ICR_DM_FIXED | 0xfb, dest: 0x03000000, hi: true },
      { icrLo: ICR_DM_FIXED | 0xfb, dest: 0x09000000, hi: true },
    ]);
    expect(plan('flat', [0], 0, 4)).toEqual([]);
    expect(plan('phys', [], 0, 4)).toEqual([]);
  });

  it('x2APIC cluster: one WRMSR per cluster, the members\' LDR bits OR-ed', () => {
    const w = plan('x2apic-cluster', [1, 2, 17, 40], 0, 64);
    expect(w.map((x) => x.dest)).toEqual([(1 << 1) | (1 << 2), (1 << 16) | (1 << 1), (2 << 16) | (1 << 8)]);
    for (const x of w) expect(x.icrLo).toBe(ICR_DEST_LOGICAL | ICR_DM_FIXED | 0xfb);
  });
});

const PARAMS: PcpuParams = {
  costs: DEFAULT_COSTS, timesliceCycles: 3_000_000, maxInstructions: 0, traceExits: false, migrate: false, migratePercent: 0,
  seed: 1, scheduler: 'fifo', ratelimitCycles: 3_000_000, hvIpiUnmasked: false, lapicTimerCycles: 30_000,
  apicBus: APIC_BUS_DEFAULTS, lapic: LAPIC_DEFAULTS,
};

function machine(pcpus: number, apicMode: 'xapic' | 'x2apic') {
  return buildMachine({
    pcpus, apicMode,
    domains: [{ name: 'g', vcpus: 1, memoryKb: 64, image: new Uint8Array(8), entry: 0, affinity: [0], softAffinity: [], ipiPath: IPI_PATH_VLAPIC, vcpuMapGpa: -1 }],
  });
}

describe('the booted machine: LDRs and routing on the physical bus', () => {
  it('xAPIC, 4 pCPUs: DFR flat and LDR bit p on every pCPU; a flat send reaches exactly its mask', () => {
    const m = machine(4, 'xapic');
    for (let p = 0; p < 4; p++) {
      expect(m.lapic32[m.plapicBase(p) + (LAPIC_LDR >> 2)] >>> 0).toBe((1 << (24 + p)) >>> 0);
      expect(m.lapic32[m.plapicBase(p) + (LAPIC_DFR >> 2)] >>> 0).toBe(0xffffffff);
    }
    const views = [0, 1, 2, 3].map((p) => lapicBusView(m.lapic32, m.plapicBase(p)));
    const w = plan('flat', [1, 3], 0, 4);
    expect(apicRouteIpi(w[0].icrLo, w[0].dest, 0, views, APIC_BUS_HARDWARE)).toEqual([1, 3]);
  });

  it('negative control: with LDR 0 (as before boot programming) the same logical send reaches nobody', () => {
    const regs = new Int32Array(4 * LAPIC_PAGE_WORDS);
    for (let p = 0; p < 4; p++) {
      lapicReset(regs, p * LAPIC_PAGE_WORDS, p, false);
      lapicWrite(regs, p * LAPIC_PAGE_WORDS, LAPIC_SVR, 0x1ff);
    }
    const views = [0, 1, 2, 3].map((p) => lapicBusView(regs, p * LAPIC_PAGE_WORDS));
    const w = plan('flat', [1, 3], 0, 4);
    expect(apicRouteIpi(w[0].icrLo, w[0].dest, 0, views, APIC_BUS_HARDWARE)).toEqual([]);
  });

  it('xAPIC, 12 pCPUs (bigsmp): LDRs stay 0; x2APIC: LDRs are the hardware cluster IDs', () => {
    const big = machine(12, 'xapic');
    for (let p = 0; p < 12; p++) expect(big.lapic32[big.plapicBase(p) + (LAPIC_LDR >> 2)]).toBe(0);
    const x2 = machine(20, 'x2apic');
    for (let p = 0; p < 20; p++) expect(x2.lapic32[x2.plapicBase(p) + (LAPIC_LDR >> 2)] >>> 0).toBe(genapicLdr('x2apic-cluster', p));
  });

  it('the hypervisor\'s mask sends reach exactly their targets under each driver', () => {
    for (const [n, mode] of [[4, 'xapic'], [12, 'xapic'], [40, 'x2apic']] as const) {
      const m = machine(n, mode);
      const p0 = new Pcpu(m, 0, PARAMS, { ringFull: () => undefined });
      const targets = n === 4 ? [1, 3] : [2, 5, 9, ...(n > 20 ? [17, 33] : [])];
      hvSendIpiMask(p0, targets, CALL_FUNCTION_VECTOR);
      const got: number[] = [];
      for (let q = 0; q < n; q++) if (lapicTestVector(m.lapic32, m.plapicBase(q), LAPIC_IRR, CALL_FUNCTION_VECTOR)) got.push(q);
      expect(got, `${mode} ${n}`).toEqual(targets);
      for (const q of targets) expect(m.pc32[m.pcpuBase(q) + PC_PENDING] & PEND_IRQ).toBe(PEND_IRQ);
    }
  });

  it('every other pCPU: the all-but-self shorthand reaches them all and leaves the sender\'s ICR_HI alone', () => {
    const m = machine(4, 'xapic');
    const p0 = new Pcpu(m, 0, PARAMS, { ringFull: () => undefined });
    lapicWrite(m.lapic32, m.plapicBase(0), 0x310, 0x02000000); // a guest's ICR_HI, half-way through its send
    hvSendIpiMask(p0, [1, 2, 3], EVENT_CHECK_VECTOR);
    for (let q = 1; q < 4; q++) expect(lapicTestVector(m.lapic32, m.plapicBase(q), LAPIC_IRR, EVENT_CHECK_VECTOR)).toBe(true);
    expect(lapicTestVector(m.lapic32, m.plapicBase(0), LAPIC_IRR, EVENT_CHECK_VECTOR)).toBe(false);
    expect(m.lapic32[m.plapicBase(0) + (0x310 >> 2)] >>> 0).toBe(0x02000000);
  });
});

describe('the LAPIC timer (SDM §10.5.4)', () => {
  const page = () => {
    const regs = new Int32Array(LAPIC_PAGE_WORDS);
    lapicReset(regs, 0, 0, false);
    lapicWrite(regs, 0, LAPIC_SVR, 0x1ff);
    return regs;
  };

  it('divide configuration: 2, 4, ..., 128 and 1 (bits 3, 1, 0)', () => {
    expect([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xa, 0xb].map(lapicTimerDivisor)).toEqual([2, 4, 8, 16, 32, 64, 128, 1]);
  });

  it('periodic: fires once per period, at initial count x divisor, and reloads', () => {
    const regs = page(), t = new LapicTimer();
    lapicWrite(regs, 0, LAPIC_TIMER_DCR, 0x0);                 // divide by 2
    lapicWrite(regs, 0, LAPIC_LVT_TIMER, LVT_TIMER_PERIODIC | 0xfa);
    lapicWrite(regs, 0, LAPIC_TIMER_ICR, 500);
    t.arm(regs, 0, 100);
    expect(t.deadline).toBe(1100);
    const fired: number[] = [];
    for (let now = 100; now <= 5100; now += 50) {
      if (now >= t.deadline && t.poll(regs, 0, now)) {
        fired.push(now);
        // The handler acknowledges it: take it out of IRR so the next period can latch it again.
        expect(lapicHighestIrr(regs, 0)).toBe(0xfa);
        regs[(LAPIC_IRR >> 2) + (0xfa >> 5) * 4] = 0;
      }
    }
    expect(fired).toEqual([1100, 2100, 3100, 4100, 5100]);
    expect(regs[LAPIC_TIMER_CCR >> 2]).toBe(500);
  });

  it('periods missed while nobody polled raise one interrupt, and the next deadline stays on the grid', () => {
    const regs = page(), t = new LapicTimer();
    lapicWrite(regs, 0, LAPIC_TIMER_DCR, 0xb);
    lapicWrite(regs, 0, LAPIC_LVT_TIMER, LVT_TIMER_PERIODIC | 0xfa);
    lapicWrite(regs, 0, LAPIC_TIMER_ICR, 1000);
    t.arm(regs, 0, 0);
    expect(t.poll(regs, 0, 3500)).toBe(true);
    expect(t.deadline).toBe(4000);
  });

  it('negative controls: one-shot fires once; a masked LVT counts but raises nothing; a changed count re-arms', () => {
    const regs = page(), t = new LapicTimer();
    lapicWrite(regs, 0, LAPIC_TIMER_DCR, 0xb);
    lapicWrite(regs, 0, LAPIC_LVT_TIMER, LVT_TIMER_ONESHOT | 0xfa);
    lapicWrite(regs, 0, LAPIC_TIMER_ICR, 100);
    t.arm(regs, 0, 0);
    expect(t.poll(regs, 0, 100)).toBe(true);
    expect(t.deadline).toBe(Infinity);
    const r2 = page(), t2 = new LapicTimer();
    lapicWrite(r2, 0, LAPIC_TIMER_DCR, 0xb);
    lapicWrite(r2, 0, LAPIC_LVT_TIMER, LVT_TIMER_PERIODIC | LVT_MASKED | 0xfa);
    lapicWrite(r2, 0, LAPIC_TIMER_ICR, 100);
    t2.arm(r2, 0, 0);
    expect(t2.poll(r2, 0, 100)).toBe(false);
    expect(t2.deadline).toBe(200);
    expect(lapicHighestIrr(r2, 0)).toBe(-1);
    lapicWrite(r2, 0, LAPIC_TIMER_ICR, 300);
    expect(t2.poll(r2, 0, 200)).toBe(false); // noticed: counting restarts from here
    expect(t2.deadline).toBe(500);
  });

  it('the hypervisor programs each pCPU periodic, divide by 1, LOCAL_TIMER_VECTOR, in xAPIC and x2APIC mode', () => {
    for (const mode of ['xapic', 'x2apic'] as const) {
      const m = machine(2, mode);
      apicTimerSetup(m, 1, 30_000);
      const b = m.plapicBase(1);
      expect(m.lapic32[b + (LAPIC_LVT_TIMER >> 2)]).toBe(LVT_TIMER_PERIODIC | LOCAL_TIMER_VECTOR);
      expect(m.lapic32[b + (LAPIC_TIMER_DCR >> 2)]).toBe(0xb);
      expect(m.lapic32[b + (LAPIC_TIMER_ICR >> 2)]).toBe(30_000);
    }
  });
});
