// hv_ipi_irqs: the hypervisor's own xAPIC send is two writes (ICR_HI, then ICR_LO). Masked (Xen), nothing
// runs in between. Unmasked, a pending interrupt is taken there; the PI wake-up handler tickles an idle
// pCPU, rewriting ICR_HI, and the interrupted IPI leaves for the tickled pCPU. Built directly on the
// hypervisor objects so the interleaving is exact (in a run it needs an interrupt landing mid-send).
import { describe, expect, it } from 'vitest';
import { buildMachine } from '../../src/machine.js';
import { Pcpu, type PcpuParams } from '../../src/hv/pcpu-loop.js';
import { DEFAULT_COSTS } from '../../src/hw/clock.js';
import { APIC_BUS_DEFAULTS } from '../../src/hw/apic-bus.js';
import { LAPIC_DEFAULTS, lapicAcceptInterrupt, lapicTestVector } from '../../src/hw/lapic.js';
import { hvSendIpi } from '../../src/hv/ipi-send.js';
import { EVENT_CHECK_VECTOR, PI_WAKEUP_VECTOR } from '../../src/hv/irq-vectors.js';
import { Collector } from '../../src/trace/collector.js';
import { IPI_PATH_IPIV } from '../../shared/domain.js';
import { LAPIC_IRR } from '../../shared/lapic.js';
import { PC_CURRENT, PC_PENDING, PC_STATE, PEND_IRQ, PS_IDLE, PS_RUNNING } from '../../shared/pcpu.js';
import { PI_ON, RS_BLOCKED, RS_RUNNABLE, VC_PCPU, VC_PI_CTL, VC_RUNSTATE } from '../../shared/vcpu.js';

function setup(unmasked: boolean) {
  const m = buildMachine({
    pcpus: 3, apicMode: 'xapic',
    domains: [{ name: 'g', vcpus: 2, memoryKb: 64, image: new Uint8Array(8), entry: 0, affinity: [0, 1, 2], softAffinity: [], ipiPath: IPI_PATH_IPIV, vcpuMapGpa: -1 }],
  });
  const params: PcpuParams = {
    costs: DEFAULT_COSTS, timesliceCycles: 3_000_000, maxInstructions: 0, traceExits: false, migrate: true, migratePercent: 0,
    seed: 1, scheduler: 'fifo', ratelimitCycles: 3_000_000, hvIpiUnmasked: unmasked, lapicTimerCycles: 30_000, apicBus: APIC_BUS_DEFAULTS, lapic: LAPIC_DEFAULTS,
  };
  const col = new Collector(m, ['g']);
  const p0 = new Pcpu(m, 0, params, { ringFull: (p: number) => col.drainOne(p) });
  // pCPU 0 and 1 are busy, pCPU 2 idle; vCPU 1 is blocked on pCPU 0 with a posted interrupt (ON) waiting.
  const pc = (p: number, w: number) => m.pcpuBase(p) + w;
  m.pc32[pc(0, PC_CURRENT)] = 0; m.pc32[pc(0, PC_STATE)] = PS_RUNNING;
  m.pc32[pc(1, PC_CURRENT)] = 0; m.pc32[pc(1, PC_STATE)] = PS_RUNNING;
  m.pc32[pc(2, PC_CURRENT)] = -1; m.pc32[pc(2, PC_STATE)] = PS_IDLE;
  const vb = m.vcpuBase(1);
  m.vc32[vb + VC_PCPU] = 0; m.vc32[vb + VC_RUNSTATE] = RS_BLOCKED; m.vc32[vb + VC_PI_CTL] = PI_ON;
  // The wake-up vector is pending on pCPU 0 when its hypervisor starts an EVENT_CHECK to pCPU 1.
  lapicAcceptInterrupt(m.lapic32, m.plapicBase(0), PI_WAKEUP_VECTOR, false);
  m.pc32[pc(0, PC_PENDING)] |= PEND_IRQ;
  hvSendIpi(p0, 1, EVENT_CHECK_VECTOR);
  col.drainAll();
  const got = (p: number) => lapicTestVector(m.lapic32, m.plapicBase(p), LAPIC_IRR, EVENT_CHECK_VECTOR);
  return { m, col, got, vb };
}

describe('hv_ipi_irqs', () => {
  it('masked (Xen): the EVENT_CHECK reaches pCPU 1; the wake-up waits', () => {
    const { got, col, m, vb } = setup(false);
    expect(got(1)).toBe(true);
    expect(got(2)).toBe(false);
    expect(m.vc32[vb + VC_RUNSTATE]).toBe(RS_BLOCKED);
    expect(col.finishOracles(0).ipi_sent).toBe(0);
    expect(col.findings.list()).toEqual([]);
  });

  it('unmasked: the handler\'s tickle rewrites ICR_HI and the interrupted IPI goes to pCPU 2', () => {
    const { got, col, m, vb } = setup(true);
    expect(m.vc32[vb + VC_RUNSTATE]).toBe(RS_RUNNABLE); // the handler ran inside the send
    expect(got(2)).toBe(true);
    expect(got(1)).toBe(false);
    col.finishOracles(0);
    const f = col.findings.list().find((x) => x.kind === 'IPI_MISDIRECTED');
    expect(f?.first.detail).toMatch(/vector 0xfc for pCPU 1 left for pCPU 2/);
  });
});
