// The HVMI-style agent (src/agent/examples/hvmi.ts) lets a vCPU into the realm's view only at an entry point
// (here: the realm addresses the trampoline calls, scenario/loader.ts), and REALM_ENTRY names a kernel call
// that gets in that way. External mode, two vCPUs on two pCPUs, serial, fixed seed.
import { describe, expect, it } from 'vitest';
import type * as SimModule from '../../src/cli/sim.js';
import type * as AsmModule from '../../src/isa/assembler.js';
import type { RunReport } from '../../src/report.js';
import { guestConfig, writeScenario } from '../helpers/run.js';

const { simulate } = (await import(new URL('../../dist/src/cli/sim.js', import.meta.url).href)) as typeof SimModule;
const { assemble } = (await import(new URL('../../dist/src/isa/assembler.js', import.meta.url).href)) as typeof AsmModule;

/** vCPU 0 calls the realm through the trampoline, then (`direct`) straight at realm_read; vCPU 1 (`mid`) calls realm_mid. */
function program(o: { direct: boolean; mid: boolean }): string {
  return `
.equ KVIEW, 1
.equ RVIEW, 2
_start:
    mov eax, 1
    cpuid
    shr ebx, 25
    cmp ebx, 0
    jnz other
    call gate_read              ; the way in: eax = the secret
    mov ecx, eax
    mov ebx, 1
    magic 1
direct:
    ${o.direct ? 'call realm_read' : 'mov eax, 0'}             ; straight at an entry point
    mov ecx, eax
    mov ebx, 2
    magic 1
    mov ecx, 20000
wait:
    pause
    dec ecx
    jnz wait
    mov ecx, [stolen]
    mov ebx, 3
    magic 1
    mov ebx, 0
    magic 0
other:
    ${o.mid ? 'call realm_mid' : 'nop'}              ; not an entry point: the agent keeps it out
    mov [stolen], eax
    cli
    hlt
.align 8
stolen: .word 0

.org 0x8000
gate_read:
    push ecx
    mov eax, 0
    mov ecx, RVIEW
    vmfunc
    call realm_read
    push eax
    mov eax, 0
    mov ecx, KVIEW
    vmfunc
    pop eax
    pop ecx
    ret

.org 0x9000
realm_read:
    mov eax, [0xc000]
    ret
realm_mid:
    mov eax, [0xc000]
    ret

.org 0xc000
    .word 0x5ec7e7
.org 0xd000
    .word 0xdec0
`;
}

const DOMAIN = ['altp2m = "external"', 'access_required = true', 'trampoline = "8"', 'realm = "9"', 'secret = "12"', 'agent = "hvmi"',
  'agent_args = { trampoline = 8, realm_first = 9, realm_last = 9, secret = 12, decoy = 13, ve_gfn0 = 0x10 }'];

async function run(o: { direct: boolean; mid: boolean }): Promise<RunReport> {
  const sc = writeScenario(program(o), { pcpus: 2, vcpus: 2, domainExtra: DOMAIN });
  try {
    const { report } = await simulate(guestConfig(sc.toml, { pcpus: 2, vcpus: 2, maxInstructions: 2_000_000 }));
    return report;
  } finally { sc.dispose(); }
}

const value = (r: RunReport, key: number): number | undefined => r.reports.find((x) => x.key === key)?.value;

describe('hvmi: only the entry points', () => {
  it('the realm entered through the trampoline only: no finding (the correct design)', async () => {
    const r = await run({ direct: false, mid: false });
    expect(r.outcome).toBe('completed');
    expect(r.agents[0].error).toBeNull();
    expect(value(r, 1)).toBe(0x5ec7e7);
    expect(r.findings).toEqual([]);
  });

  it('a call into the middle of the realm is kept out: the vCPU stays paused, the secret stays put', async () => {
    const r = await run({ direct: false, mid: true });
    expect(r.outcome).toBe('completed');
    expect(r.domains[0].state).toBe('shutdown');
    expect(r.agents[0].error).toBeNull();
    expect(value(r, 3)).toBe(0); // vCPU 1 never got past its call
    expect(r.findings).toEqual([]); // nothing entered the realm
  });

  it('a kernel call straight at an entry point gets in (the agent cannot tell the caller), and REALM_ENTRY says so', async () => {
    const r = await run({ direct: true, mid: false });
    expect(r.outcome).toBe('completed');
    expect(value(r, 2)).toBe(0x5ec7e7);
    const direct = assemble(program({ direct: true, mid: false }), 'prog.s', new Map([['TRAMP_GFN', 8], ['REALM_GFN', 9], ['SECRET_GFN', 12]])).labels.get('direct');
    expect(r.findings.map((f) => f.kind)).toEqual(['REALM_ENTRY']);
    expect(Object.keys(r.findings[0].signatures)).toEqual([`REALM_ENTRY:call:0x${(direct as number).toString(16)},0x9000`]);
    expect(r.findings[0].first.detail).toMatch(/in view 2/); // the agent had moved it into the realm's view
  });
});
