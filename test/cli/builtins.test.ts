// Every built-in scenario runs to completion on both engines, and the designs show what they should.
import { describe, expect, it } from 'vitest';
import type * as SimModule from '../../src/cli/sim.js';
import type * as LoaderModule from '../../src/scenario/loader.js';

const { simulate } = (await import(new URL('../../dist/src/cli/sim.js', import.meta.url).href)) as typeof SimModule;
const { listBuiltins } = (await import(new URL('../../dist/src/scenario/loader.js', import.meta.url).href)) as typeof LoaderModule;

const run = (scenario: string, engine: 'serial' | 'threaded') => simulate({
  scenario, engine, seed: 1, strategy: 'random', maxInstructions: 100_000_000, maxMs: 0, slack: 30000, burst: 4096, watchdogMs: 15_000,
});

describe.each(listBuiltins().map((b) => b.name))('built-in scenario %s', (name) => {
  it.each(['serial', 'threaded'] as const)('%s: completes, the domain shuts down cleanly', async (engine) => {
    const { report } = await run(name, engine);
    expect(report.outcome).toBe('completed');
    expect(report.domains.every((d) => d.state === 'shutdown' && d.exit_code === 0)).toBe(true);
    const kinds = report.findings.map((f) => f.kind);
    if (name.includes('apic') && !name.endsWith('vlapic') && !name.endsWith('avic')) {
      // the passthrough designs (ipi-xapic, ipi-x2apic)
      expect(kinds).toContain('IPI_MISDIRECTED');
      expect(kinds).toContain('IPI_UNKNOWN_VECTOR');
    } else expect(kinds).toEqual([]);
  }, 60_000);
});
