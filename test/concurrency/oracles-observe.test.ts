// Oracles observe, never change the run (DESIGN.md §6): the same serial seed gives the same machine digest
// with every inline oracle on or off (RunConfig.oracles, `--no-oracles`), on every built-in scenario. The
// digest is the event digest with the oracles' verdicts left out (trace/events.ts VERDICT_EVENTS): every
// other event is the machine's own, timestamps included, so one digest is one run. And the checks that once
// altered the machine no longer do: an access to the secret enters the TLB like any other, so a stale
// translation of the frames a realm protects is judged too.
import { describe, expect, it } from 'vitest';
import type * as SimModule from '../../src/cli/sim.js';
import type * as LoaderModule from '../../src/scenario/loader.js';
import type { RunReport } from '../../src/report.js';
import { guestConfig, writeScenario, HVMOP_INCLUDE } from '../helpers/run.js';

const { simulate } = (await import(new URL('../../dist/src/cli/sim.js', import.meta.url).href)) as typeof SimModule;
const { listBuiltins } = (await import(new URL('../../dist/src/scenario/loader.js', import.meta.url).href)) as typeof LoaderModule;

const INLINE = ['STALE_TRANSLATION', 'ROGUE_VMFUNC', 'REALM_ESCAPE', 'REALM_ENTRY', 'KERNEL_IN_REALM_VIEW'];

const run = async (scenario: string, oracles: boolean, seed = 1, strategy = 'random'): Promise<RunReport> => (await simulate({
  scenario, engine: 'serial', seed, strategy, maxInstructions: 100_000_000, maxMs: 0, slack: 30000, burst: 4096, watchdogMs: 2000, oracles,
})).report;

/** What must be the same: the digest and everything the machine itself produced. */
function sameRun(on: RunReport, off: RunReport): void {
  expect(off.digest).toBe(on.digest);
  expect(off.outcome).toBe(on.outcome);
  expect(off.reports).toEqual(on.reports);
  expect(off.console).toEqual(on.console);
  expect(off.domains).toEqual(on.domains);
  for (const k of ['instructions', 'sim_time_ns', 'vm_exits', 'exits', 'hypervisor_ns', 'context_switches', 'vmfuncs', 'ept_flushes', 'steps']) {
    expect(off.metrics[k], k).toEqual(on.metrics[k]);
  }
  expect(off.findings.filter((f) => INLINE.includes(f.kind))).toEqual([]);
}

describe('the inline oracles on and off give the same run', () => {
  it.each(listBuiltins().map((b) => b.name))('%s, serial seed 1', async (name) => {
    sameRun(await run(name, true), await run(name, false));
  }, 30_000);

  it.each([['secure-realm-rogue', 2, 'pct'], ['hvmi-external', 3, 'preempt'], ['secure-realm', 5, 'pos']] as const)(
    '%s, seed %i, strategy %s', async (name, seed, strategy) => {
      const on = await run(name, true, seed, strategy);
      sameRun(on, await run(name, false, seed, strategy));
      expect(on.findings.some((f) => INLINE.includes(f.kind))).toBe(true); // the oracles had something to say
    }, 30_000);

  it('the report says how to run it again, --no-oracles included', async () => {
    const off = await run('counter', false);
    expect(off.replay).toContain('--no-oracles');
    expect((await run('counter', true)).replay).not.toContain('--no-oracles');
  });
});

describe('the secret enters the TLB like any other frame', () => {
  // The realm reads the secret through view 1 (its translation is cached), then the kernel takes the realm's
  // access away with ept_sync = "none" (no flush), and the realm reads again: through the stale translation,
  // as the hardware would. With secret accesses kept out of the TLB this was a fresh walk and no finding.
  const PROGRAM = `
.equ OP, 0x30000
_start:
    mov edi, OP
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_SET_DOMAIN_STATE ; set_domain_state(1)
    mov [edi+ALTP2M_STATE], 1
    call hvmop
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_CREATE_P2M ; create_p2m(rwx): view 1, the realm's
    mov [edi+ALTP2M_VIEW], XENMEM_ACCESS_RWX << 16
    call hvmop
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_VCPU_ENABLE_NOTIFY ; vcpu_enable_notify(0, gfn 0x20)
    mov [edi+ALTP2M_VCPU_ID], 0
    mov [edi+ALTP2M_PAD], 0
    mov [edi+ALTP2M_GFN], 0x20
    mov [edi+ALTP2M_GFN+4], 0
    call hvmop
    call gate                ; the realm reads the secret: view 1's TLB holds it now
    mov ecx, eax
    mov ebx, 1
    magic 1
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_SET_MEM_ACCESS ; set_mem_access(view 1, n, the secret): no flush follows
    mov [edi+ALTP2M_VIEW], 1
    mov [edi+ALTP2M_PAD], 0
    mov [edi+ALTP2M_GFN], 12
    mov [edi+ALTP2M_GFN+4], 0
    call hvmop
    call gate                ; the realm reads through the translation it still has
    mov ecx, eax
    mov ebx, 2
    magic 1
    mov ebx, 0
    magic 0
${HVMOP_INCLUDE}

.org 0x8000
gate:
    push ecx
    mov eax, 0
    mov ecx, 1
    vmfunc
    call realm_read
    push eax
    mov eax, 0
    mov ecx, 0
    vmfunc
    pop eax
    pop ecx
    ret

.org 0xa000
realm_read:
    mov eax, [0xc000]
    ret

.org 0xc000
    .word 0x5ec7e7
`;

  async function runIt(oracles: boolean): Promise<RunReport> {
    const sc = writeScenario(PROGRAM, { domainExtra: ['altp2m = "mixed"', 'ept_sync = "none"', 'trampoline = "8"', 'realm = "10"', 'secret = "12"'] });
    try { return (await simulate({ ...guestConfig(sc.toml), oracles })).report; } finally { sc.dispose(); }
  }

  it('STALE_TRANSLATION fires on the secret frame, at the realm\'s read; the run is the same unobserved', async () => {
    const on = await runIt(true);
    expect(on.domains[0].state).toBe('shutdown');
    expect(on.reports.map((r) => r.value)).toEqual([0x5ec7e7, 0x5ec7e7]); // the stale translation still reads it
    expect(on.findings.map((f) => f.kind)).toEqual(['STALE_TRANSLATION']);
    expect(Object.keys(on.findings[0].signatures)).toEqual(['STALE_TRANSLATION:no_flush:0xa000']);
    expect(on.findings[0].first.detail).toMatch(/read of gpa 0xc000 in view 1/);
    sameRun(on, await runIt(false));
  });
});
