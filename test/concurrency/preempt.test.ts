// The `preempt` strategy: random choices plus scheduler timer interrupts at chosen step boundaries, recorded
// in the schedule (a negative shared-access count) so that replays reproduce them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type * as SimModule from '../../src/cli/sim.js';
import type * as WriterModule from '../../src/trace/writer.js';
import { EV_ICR_WINDOW } from '../../src/trace/events.js';

const { simulate } = (await import(new URL('../../dist/src/cli/sim.js', import.meta.url).href)) as typeof SimModule;
const { readTrace } = (await import(new URL('../../dist/src/trace/writer.js', import.meta.url).href)) as typeof WriterModule;

const cfg = (scenario: string, seed: number) => ({
  scenario, engine: 'serial' as const, seed, strategy: 'preempt', maxInstructions: 10_000_000, maxMs: 0, slack: 30000, burst: 4096, watchdogMs: 2000,
});

describe('--strategy preempt', () => {
  it('is deterministic, preempts (more context switches than random), and replays exactly', async () => {
    const a = await simulate(cfg('ipi-vlapic', 5), { recordSchedule: true });
    const b = await simulate(cfg('ipi-vlapic', 5));
    expect(b.report.digest).toBe(a.report.digest);
    expect(Array.from(a.result.schedule ?? []).some((x, i) => i % 2 === 1 && x < 0)).toBe(true);
    const c = await simulate(cfg('ipi-vlapic', 5), { replayRuns: a.result.schedule });
    expect(c.report.outcome).toBe('completed');
    expect(c.report.digest).toBe(a.report.digest);
    const r = await simulate({ ...cfg('ipi-vlapic', 5), strategy: 'random' });
    expect(a.report.metrics.context_switches as number).toBeGreaterThan(r.report.metrics.context_switches as number);
    expect(a.report.findings).toEqual([]); // a correct path stays correct under preemption
  });

  it('secure-realm, pinned seed: the hypervisor uses the LAPIC between the realm\'s ICR_HI and ICR_LO writes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vcpulab-preempt-'));
    try {
      const trace = join(dir, 'sr.trace');
      const { report } = await simulate(cfg('secure-realm', 1), { trace });
      expect(report.outcome).toBe('completed');
      expect(report.findings.map((f) => f.kind)).toContain('IPI_MISDIRECTED');
      // [time, pcpu, kind, dom, vcpu, a, b, c]: c = the last ICR_HI writer, 0 = the hypervisor.
      const windows = readTrace(trace).records.filter((r) => r[2] === EV_ICR_WINDOW);
      expect(windows.length).toBeGreaterThan(0);
      expect(windows.some((r) => r[7] === 0)).toBe(true);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });
});
