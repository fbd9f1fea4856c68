// Every built-in scenario runs to completion on both engines, and each design shows what it should: the
// maintainer's objections where the design has them, none where it does not.
import { describe, expect, it } from 'vitest';
import type * as SimModule from '../../src/cli/sim.js';
import type * as LoaderModule from '../../src/scenario/loader.js';

const { simulate } = (await import(new URL('../../dist/src/cli/sim.js', import.meta.url).href)) as typeof SimModule;
const { listBuiltins } = (await import(new URL('../../dist/src/scenario/loader.js', import.meta.url).href)) as typeof LoaderModule;

const run = (scenario: string, engine: 'serial' | 'threaded') => simulate({
  scenario, engine, seed: 1, strategy: 'random', maxInstructions: 100_000_000, maxMs: 0, slack: 30000, burst: 4096, watchdogMs: 15_000,
});

/**
 * Per scenario: finding kinds every run must show (`must`), and kinds no run may show (`never`). Threaded
 * runs are judged only on what holds for every interleaving: the deterministic parts of each design.
 */
const IPI_KINDS = ['IPI_MISDIRECTED', 'IPI_LOST', 'IPI_FOREIGN', 'IPI_UNKNOWN_VECTOR', 'HOST_RESET'];
const VIEW_KINDS = ['ROGUE_VMFUNC', 'REALM_ESCAPE', 'STALE_TRANSLATION'];
const ALL = [...IPI_KINDS, ...VIEW_KINDS, 'DOMAIN_CRASH', 'GUEST_ASSERT', 'STALL'];
const clean = { must: [] as string[], never: ALL };
const EXPECT: Record<string, { must: string[]; never: string[]; serialMust?: string[] }> = {
  counter: clean,
  'ipi-vlapic': clean, 'ipi-posted': clean, 'ipi-ipiv': clean, 'ipi-avic': clean,
  'ipi-xapic': { must: ['IPI_UNKNOWN_VECTOR'], serialMust: ['IPI_MISDIRECTED'], never: [...VIEW_KINDS, 'DOMAIN_CRASH', 'HOST_RESET'] },
  'ipi-x2apic': { must: ['IPI_UNKNOWN_VECTOR'], serialMust: ['IPI_MISDIRECTED'], never: [...VIEW_KINDS, 'DOMAIN_CRASH', 'HOST_RESET'] },
  'secure-realm': { must: ['IPI_UNKNOWN_VECTOR'], serialMust: ['IPI_MISDIRECTED'], never: [...VIEW_KINDS, 'DOMAIN_CRASH', 'HOST_RESET', 'GUEST_ASSERT'] },
  'secure-realm-rogue': { must: ['IPI_UNKNOWN_VECTOR', 'ROGUE_VMFUNC', 'REALM_ESCAPE'], serialMust: ['IPI_MISDIRECTED'], never: ['STALE_TRANSLATION', 'DOMAIN_CRASH', 'HOST_RESET', 'GUEST_ASSERT'] },
  'secure-realm-init': { must: ['HOST_RESET', 'IPI_UNKNOWN_VECTOR'], never: [...VIEW_KINDS, 'DOMAIN_CRASH', 'GUEST_ASSERT'] },
  'x2apic-realm': { must: ['IPI_UNKNOWN_VECTOR'], serialMust: ['IPI_MISDIRECTED'], never: [...VIEW_KINDS, 'DOMAIN_CRASH', 'HOST_RESET', 'GUEST_ASSERT'] },
  'hypercall-ipi': clean, posted: clean, ipiv: clean, avic: clean,
  'hvmi-external': { must: ['ROGUE_VMFUNC'], never: ALL.filter((k) => k !== 'ROGUE_VMFUNC') },
  'xen-access': clean,
};

describe('the expectation table covers every built-in', () => {
  it('no built-in is left out', () => {
    expect(listBuiltins().map((b) => b.name).sort()).toEqual(Object.keys(EXPECT).sort());
  });
});

describe.each(listBuiltins().map((b) => b.name))('built-in scenario %s', (name) => {
  it.each(['serial', 'threaded'] as const)('%s: completes, the domain shuts down cleanly, the design shows what it should', async (engine) => {
    const { report } = await run(name, engine);
    expect(report.outcome, report.reason ?? '').toBe('completed');
    expect(report.domains.every((d) => d.state === 'shutdown' && d.exit_code === 0), JSON.stringify(report.domains)).toBe(true);
    const kinds = report.findings.map((f) => f.kind as string);
    const e = EXPECT[name];
    for (const k of e.must) expect(kinds, `${name} ${engine} must show ${k}`).toContain(k);
    if (engine === 'serial') for (const k of e.serialMust ?? []) expect(kinds, `${name} serial must show ${k}`).toContain(k);
    for (const k of e.never) expect(kinds, `${name} ${engine} must not show ${k}`).not.toContain(k);
    expect(report.agents.every((a) => a.error === null)).toBe(true);
  }, 60_000);
});
