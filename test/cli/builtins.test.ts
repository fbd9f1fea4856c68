// Every built-in scenario runs to completion on both engines (and on the threaded engine with pCPUs sharing
// threads), and each design shows what it should: the maintainer's objections where the design has them,
// none where it does not.
import { describe, expect, it } from 'vitest';
import type * as SimModule from '../../src/cli/sim.js';
import type * as LoaderModule from '../../src/scenario/loader.js';

const { simulate } = (await import(new URL('../../dist/src/cli/sim.js', import.meta.url).href)) as typeof SimModule;
const { listBuiltins } = (await import(new URL('../../dist/src/scenario/loader.js', import.meta.url).href)) as typeof LoaderModule;

/** `threaded-shared`: the threaded engine with every two pCPUs sharing a thread (--threads), judged as threaded. */
type EngineCase = 'serial' | 'threaded' | 'threaded-shared';
const run = async (scenario: string, engine: EngineCase) => {
  const threads = engine === 'threaded-shared' ? 2 : undefined;
  return simulate({
    scenario, engine: engine === 'serial' ? 'serial' : 'threaded', seed: 1, strategy: 'random', maxInstructions: 100_000_000, maxMs: 0, slack: 30000, burst: 4096,
    watchdogMs: 15_000, threads,
  });
};

/**
 * Per scenario: finding kinds every run must show (`must`), and kinds no run may show (`never`). Threaded
 * runs are judged only on what holds for every interleaving: the deterministic parts of each design.
 */
const IPI_KINDS = ['IPI_MISDIRECTED', 'IPI_LOST', 'IPI_FOREIGN', 'IPI_UNKNOWN_VECTOR', 'HOST_RESET'];
const VIEW_KINDS = ['ROGUE_VMFUNC', 'REALM_ESCAPE', 'STALE_TRANSLATION'];
/** What the realm must enforce: kernel code kept out of the realm's view, the realm entered only from the trampoline. */
const REALM_KINDS = ['REALM_ENTRY', 'KERNEL_IN_REALM_VIEW'];
const ALL = [...IPI_KINDS, ...VIEW_KINDS, ...REALM_KINDS, 'DOMAIN_CRASH', 'GUEST_ASSERT', 'STALL'];
const clean = { must: [] as string[], never: ALL };
/**
 * The realm workload with the guest's own views (SETUP = 1): an IPI that arrives while the realm runs makes
 * the kernel's handler run in the realm's view, where the realm's code is executable (KERNEL_IN_REALM_VIEW),
 * and its iret resumes the realm wherever the kernel's stack says (REALM_ENTRY). Whether one arrives there
 * depends on the interleaving: seed 1 of the serial engine shows both; threaded runs may not.
 */
const realmWorkload = (e: { must?: string[]; serialMust?: string[]; never: string[] }) =>
  ({ must: e.must ?? [], serialMust: [...(e.serialMust ?? []), ...REALM_KINDS], never: e.never });
const EXPECT: Record<string, { must: string[]; never: string[]; serialMust?: string[]; threadedMaybe?: string[] }> = {
  counter: clean,
  'ipi-vlapic': clean, 'ipi-posted': clean, 'ipi-ipiv': clean, 'ipi-avic': clean,
  'ipi-xapic': { must: ['IPI_UNKNOWN_VECTOR'], serialMust: ['IPI_MISDIRECTED'], never: [...VIEW_KINDS, 'DOMAIN_CRASH', 'HOST_RESET'] },
  'ipi-x2apic': { must: ['IPI_UNKNOWN_VECTOR'], serialMust: ['IPI_MISDIRECTED'], never: [...VIEW_KINDS, 'DOMAIN_CRASH', 'HOST_RESET'] },
  'secure-realm': realmWorkload({ must: ['IPI_UNKNOWN_VECTOR'], serialMust: ['IPI_MISDIRECTED'], never: [...VIEW_KINDS, 'DOMAIN_CRASH', 'HOST_RESET', 'GUEST_ASSERT'] }),
  // The rogue VMFUNC runs kernel code in the realm's view on every run: KERNEL_IN_REALM_VIEW (view_switch) always.
  'secure-realm-rogue': realmWorkload({ must: ['IPI_UNKNOWN_VECTOR', 'ROGUE_VMFUNC', 'REALM_ESCAPE', 'KERNEL_IN_REALM_VIEW'], serialMust: ['IPI_MISDIRECTED'], never: ['STALE_TRANSLATION', 'DOMAIN_CRASH', 'HOST_RESET', 'GUEST_ASSERT'] }),
  // Intel (altp2m is VMX-only): the INIT is an exit Xen ignores, or is held in VMX root; no core resets.
  'secure-realm-init': realmWorkload({ must: ['HOST_INIT', 'IPI_UNKNOWN_VECTOR'], never: [...VIEW_KINDS, 'HOST_RESET', 'DOMAIN_CRASH', 'GUEST_ASSERT'] }),
  // The kernel's NMI handler sends through the realm too: the NMI's own misdirections need the right seed
  // (test/concurrency/nmi-init.test.ts); what holds on every run is the realm workload's.
  'secure-realm-nmi': realmWorkload({ must: ['IPI_UNKNOWN_VECTOR'], serialMust: ['IPI_MISDIRECTED'], never: [...VIEW_KINDS, 'DOMAIN_CRASH', 'HOST_RESET', 'HOST_INIT', 'GUEST_ASSERT'] }),
  // Flat logical destinations with the guest's own logical IDs: matched against the pCPUs' LDRs.
  'secure-realm-logical': realmWorkload({ must: ['IPI_UNKNOWN_VECTOR', 'IPI_MISDIRECTED'], never: [...VIEW_KINDS, 'DOMAIN_CRASH', 'HOST_RESET', 'HOST_INIT', 'GUEST_ASSERT'] }),
  'x2apic-realm': realmWorkload({ must: ['IPI_UNKNOWN_VECTOR'], serialMust: ['IPI_MISDIRECTED'], never: [...VIEW_KINDS, 'DOMAIN_CRASH', 'HOST_RESET', 'GUEST_ASSERT'] }),
  // The IPI paths fix the IPIs, not the realm: no IPI finding, but the handler still runs in the realm's view.
  'hypercall-ipi': realmWorkload({ never: [...IPI_KINDS, ...VIEW_KINDS, 'DOMAIN_CRASH', 'GUEST_ASSERT', 'STALL'] }),
  posted: realmWorkload({ never: [...IPI_KINDS, ...VIEW_KINDS, 'DOMAIN_CRASH', 'GUEST_ASSERT', 'STALL'] }),
  ipiv: realmWorkload({ never: [...IPI_KINDS, ...VIEW_KINDS, 'DOMAIN_CRASH', 'GUEST_ASSERT', 'STALL'] }),
  // AMD has no altp2m: the realm workload without views, so no realm view for kernel code to run in.
  avic: { must: [], never: [...IPI_KINDS, ...VIEW_KINDS, 'KERNEL_IN_REALM_VIEW', 'DOMAIN_CRASH', 'GUEST_ASSERT', 'STALL'] },
  // The agent never lets kernel code run in the realm's view (its fetch faults there first), but it lets the
  // realm resume after a handler wherever the kernel's iret goes (REALM_ENTRY iret, serial seed 1).
  // Threaded, the agent answers in wall time while the other pCPUs' simulated clocks run on, so a vCPU it
  // keeps paused can take an IPI later than ipi_lost_bound_us after its send: IPI_LOST by definition, and
  // only there (the serial engine chooses the agent as one more participant, so it answers within a few steps).
  'hvmi-external': { must: ['ROGUE_VMFUNC'], serialMust: ['REALM_ENTRY'], threadedMaybe: ['IPI_LOST'], never: ALL.filter((k) => k !== 'ROGUE_VMFUNC' && k !== 'REALM_ENTRY') },
  'xen-access': clean,
};

describe('the expectation table covers every built-in', () => {
  it('no built-in is left out', () => {
    expect(listBuiltins().map((b) => b.name).sort()).toEqual(Object.keys(EXPECT).sort());
  });
});

describe.each(listBuiltins().map((b) => b.name))('built-in scenario %s', (name) => {
  it.each(['serial', 'threaded', 'threaded-shared'] as const)('%s: completes, the domain shuts down cleanly, the design shows what it should', async (engine) => {
    const { report } = await run(name, engine);
    expect(report.outcome, report.reason ?? '').toBe('completed');
    expect(report.domains.every((d) => d.state === 'shutdown' && d.exit_code === 0), JSON.stringify(report.domains)).toBe(true);
    const kinds = report.findings.map((f) => f.kind as string);
    const e = EXPECT[name];
    for (const k of e.must) expect(kinds, `${name} ${engine} must show ${k}`).toContain(k);
    if (engine === 'serial') for (const k of e.serialMust ?? []) expect(kinds, `${name} serial must show ${k}`).toContain(k);
    for (const k of e.never) {
      if (engine !== 'serial' && (e.threadedMaybe ?? []).includes(k)) continue;
      expect(kinds, `${name} ${engine} must not show ${k}`).not.toContain(k);
    }
    // The realm workload calls the realm only through its trampoline: the one other way in is the iret of a
    // handler that interrupted it (a correct entry never shows).
    const entry = report.findings.find((f) => f.kind === 'REALM_ENTRY');
    if (entry !== undefined) expect(Object.keys(entry.causes), `${name} ${engine}`).toEqual(['iret']);
    expect(report.agents.every((a) => a.error === null)).toBe(true);
    if (engine === 'threaded-shared') expect(report.metrics.threads).toBe(Math.min(2, report.pcpus));
  }, 60_000);
});
