// The realm oracles (oracles/realm.ts): REALM_ENTRY (control into the realm other than from the trampoline to
// an entry point) and KERNEL_IN_REALM_VIEW (kernel code in a view where the realm's code is executable), plus
// REALM_ESCAPE judging every access to the secret, TLB hits included. One vCPU on one pCPU, serial, fixed seed:
// each program does one thing, so each test pins the exact signatures it must show, and a correct design
// (the realm entered only through the trampoline) shows none.
import { describe, expect, it } from 'vitest';
import type * as SimModule from '../../src/cli/sim.js';
import type { RunReport } from '../../src/report.js';
import { guestConfig, writeScenario } from '../helpers/run.js';

const { simulate } = (await import(new URL('../../dist/src/cli/sim.js', import.meta.url).href)) as typeof SimModule;

const BODY = 0x4000, HANDLER = 0x5000;
interface Layout { tramp: number; realm: number; body: string; entries?: string }

/**
 * A guest that builds the realm's view itself (altp2m mixed: slot 0 is every vCPU's start, view 1 the
 * realm's, rwx by default), then runs `body` at BODY. The trampoline's gates enter view 1 with VMFUNC and call
 * the realm; the realm reads the secret (gfn 12). Vector 0x30's handler (HANDLER) only returns.
 */
function program(l: Layout): string {
  const t = l.tramp * 4096, r = l.realm * 4096;
  return `
.equ OP, 0x30000
_start:
    lidt idt
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
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_VCPU_ENABLE_NOTIFY ; vcpu_enable_notify(0, gfn 0x20): VMFUNC on
    mov [edi+ALTP2M_VCPU_ID], 0
    mov [edi+ALTP2M_PAD], 0
    mov [edi+ALTP2M_GFN], 0x20
    mov [edi+ALTP2M_GFN+4], 0
    call hvmop
    jmp body
op_header:
    mov [edi+ALTP2M_VERSION], HVMOP_ALTP2M_INTERFACE_VERSION
    mov [edi+ALTP2M_DOMAIN], DOMID_SELF
    mov [edi+ALTP2M_PAD2], 0
    ret
hvmop:
    mov eax, HYPERVISOR_HVM_OP
    mov ebx, HVMOP_ALTP2M
    mov ecx, OP
    vmcall
    cmp eax, 0
    jz hvmop_ok
    mov ebx, eax
    magic 3
hvmop_ok:
    ret

.org ${BODY}
body:
${l.body}
    mov ebx, 0
    magic 0

.org ${HANDLER}
handler:
    iret

.org 0x6000
idt:
    .space 4 * 0x30
    .word handler
    .space 4 * (256 - 0x31)

.org ${t}
gate:
    push ecx
    mov eax, 0
    mov ecx, 1
    vmfunc
    call realm_read
gate_back:
    push eax
    mov eax, 0
    mov ecx, 0
    vmfunc
    pop eax
    pop ecx
    ret
gate_other:
    push ecx
    mov eax, 0
    mov ecx, 1
    vmfunc
    call realm_other
    jmp gate_back
gate_int:
    push ecx
    mov eax, 0
    mov ecx, 1
    vmfunc
    call realm_int
    jmp gate_back

.org ${r - 8}
fall_in:                     ; straight-line code that runs on into the realm's first page
    nop

.org ${r}
realm_read:
    mov eax, [0xc000]
    ret
realm_other:
    mov eax, [0xc000]
    add eax, 1
    ret
realm_int:
    int 0x30                 ; taken inside the realm: the kernel's handler runs in the realm's view
    mov eax, [0xc000]
    ret

.org 0xc000
    .word 0x5ec7e7
`;
}

/** Addresses of the program's labels (the layout fixes them; checked against the listing below). */
function labels(l: Omit<Layout, 'body'>): Record<string, number> {
  const t = l.tramp * 4096, r = l.realm * 4096;
  return {
    gate_call: t + 32, gate_other_call: t + 128, realm_read: r, realm_other: r + 16, realm_int: r + 40, realm_int_after: r + 48,
    fall_in: r - 8,
  };
}

async function run(l: Layout, oracles = true, extra: string[] = []): Promise<RunReport> {
  const regions = ['altp2m = "mixed"', `trampoline = "${l.tramp}"`, `realm = "${l.realm}"`, 'secret = "12"', ...extra];
  if (l.entries !== undefined) regions.push(`realm_entries = ${l.entries}`);
  const sc = writeScenario(program(l), { domainExtra: regions });
  try {
    const { report } = await simulate({ ...guestConfig(sc.toml), oracles });
    return report;
  } finally { sc.dispose(); }
}

function sigs(r: RunReport): string[] {
  return r.findings.flatMap((f) => Object.keys(f.signatures)).sort();
}

const hex = (n: number): string => '0x' + n.toString(16);
const base: Omit<Layout, 'body'> = { tramp: 8, realm: 10 };

describe('the program layout', () => {
  it('puts the labels where the tests expect them', async () => {
    const { assemble } = (await import(new URL('../../dist/src/isa/assembler.js', import.meta.url).href)) as typeof import('../../src/isa/assembler.js');
    for (const l of [{ ...base, body: '' }, { tramp: 9, realm: 10, body: '' }]) {
      const p = assemble(program(l), 'prog.s');
      const want = labels(l);
      expect(p.labels.get('realm_read')).toBe(want.realm_read);
      expect(p.labels.get('realm_other')).toBe(want.realm_other);
      expect(p.labels.get('realm_int')).toBe(want.realm_int);
      expect(p.labels.get('fall_in')).toBe(want.fall_in);
      expect(p.labels.get('gate_back')).toBe(want.gate_call + 8);
      expect(p.labels.get('gate_other')! + 32).toBe(want.gate_other_call);
    }
  });
});

describe('REALM_ENTRY', () => {
  it('the realm entered only through the trampoline: no finding at all (the correct design)', async () => {
    const r = await run({ ...base, body: '    call gate\n    mov ecx, eax\n    mov ebx, 1\n    magic 1' });
    expect(r.domains[0].state).toBe('shutdown');
    expect(r.reports.find((x) => x.key === 1)?.value).toBe(0x5ec7e7);
    expect(r.findings).toEqual([]);
  });

  it('a kernel call straight into the realm: REALM_ENTRY call, the call and the realm instruction', async () => {
    const L = labels(base);
    const r = await run({ ...base, body: '    call realm_read\n    mov ecx, eax\n    mov ebx, 1\n    magic 1' });
    expect(r.reports.find((x) => x.key === 1)?.value).toBe(0x5ec7e7); // the secret reached the kernel ...
    expect(sigs(r)).toEqual([`REALM_ENTRY:call:${hex(BODY)},${hex(L.realm_read)}`]); // ... and now a finding says how
    const f = r.findings[0];
    expect(f.first.detail).toMatch(/outside the trampoline, by a call, in view 0/);
    expect(f.evidence.some((e) => e.includes('realm_entry'))).toBe(true);
  });

  it('a jump, a ret and straight-line code into the realm: each named by how it came', async () => {
    const L = labels(base);
    const jump = await run({ ...base, body: '    push after\n    jmp realm_read\nafter:' });
    expect(sigs(jump)).toEqual([`REALM_ENTRY:jump:${hex(BODY + 8)},${hex(L.realm_read)}`]);
    const ret = await run({ ...base, body: '    push after\n    push realm_read\n    ret\nafter:' });
    expect(sigs(ret)).toEqual([`REALM_ENTRY:return:${hex(BODY + 16)},${hex(L.realm_read)}`]);
    const fall = await run({ ...base, body: '    push after\n    jmp fall_in\nafter:' });
    expect(sigs(fall)).toEqual([`REALM_ENTRY:fallthrough:${hex(L.fall_in)},${hex(L.realm_read)}`]);
  });

  it('realm_entries narrows the way in: the trampoline calling an unlisted address is not_entry_point', async () => {
    const L = labels(base);
    const body = '    call gate\n    call gate_other';
    expect(sigs(await run({ ...base, body, entries: '["realm_read"]' })))
      .toEqual([`REALM_ENTRY:not_entry_point:${hex(L.gate_other_call)},${hex(L.realm_other)}`]);
    expect(sigs(await run({ ...base, body, entries: `["realm_read", ${L.realm_other}]` }))).toEqual([]);
  });

  it('a call from the last trampoline page to the first realm instruction is told from straight-line code', async () => {
    // The trampoline's page is right before the realm's: the call's target is also where its page runs on.
    const l = { tramp: 9, realm: 10 };
    const L = labels(l);
    const r = await run({ ...l, body: '    call gate', entries: '["realm_other"]' });
    expect(sigs(r)).toEqual([`REALM_ENTRY:not_entry_point:${hex(L.gate_call)},${hex(L.realm_read)}`]);
  });
});

describe('KERNEL_IN_REALM_VIEW', () => {
  it('an interrupt taken in the realm runs the kernel handler in the realm view, and its iret re-enters the realm', async () => {
    const r = await run({ ...base, body: '    call gate_int' });
    expect(r.domains[0].state).toBe('shutdown');
    expect(sigs(r)).toEqual([`KERNEL_IN_REALM_VIEW:interrupt:${hex(HANDLER)}`, `REALM_ENTRY:iret:${hex(HANDLER)}`]);
    const k = r.findings.find((f) => f.kind === 'KERNEL_IN_REALM_VIEW');
    expect(k?.first.detail).toMatch(/in view 1, where the realm's code is executable/);
    expect(k?.first.detail).toContain(`at pc ${hex(labels(base).realm_int_after)}`); // where the interrupt was taken
  });

  it('kernel code that switches into the realm view: ROGUE_VMFUNC and KERNEL_IN_REALM_VIEW view_switch, once per stretch', async () => {
    const body = '    mov eax, 0\n    mov ecx, 1\n    vmfunc\n    nop\n    nop\n    mov eax, 0\n    mov ecx, 0\n    vmfunc';
    const r = await run({ ...base, body });
    expect(sigs(r)).toEqual([`KERNEL_IN_REALM_VIEW:view_switch:${hex(BODY + 24)}`,
      `ROGUE_VMFUNC:outside_trampoline:${hex(BODY + 16)}`, `ROGUE_VMFUNC:outside_trampoline:${hex(BODY + 56)}`]);
    expect(r.findings.find((f) => f.kind === 'KERNEL_IN_REALM_VIEW')?.count).toBe(1);
  });

  it('slot 0 is never a realm view: kernel code there, realm executable or not, shows nothing', async () => {
    const r = await run({ ...base, body: '    call gate\n    nop' });
    expect(r.findings).toEqual([]);
  });
});

describe('REALM_ESCAPE through the TLB', () => {
  it('every kernel read of the secret is judged, also through the translation the realm left in the TLB', async () => {
    // The realm's read fills view 1's TLB with the secret; the kernel then switches to view 1 and reads it
    // three times. Each read is an occurrence, though the TLB holds the translation (CoreTlb.probe).
    const body = '    call gate\n    mov eax, 0\n    mov ecx, 1\n    vmfunc\n' +
      '    mov eax, [0xc000]\n    mov eax, [0xc000]\n    mov eax, [0xc000]\n    mov eax, 0\n    mov ecx, 0\n    vmfunc';
    const r = await run({ ...base, body });
    const esc = r.findings.find((f) => f.kind === 'REALM_ESCAPE');
    expect(esc?.count).toBe(3);
    expect(Object.keys(esc?.signatures ?? {}).sort()).toEqual([BODY + 32, BODY + 40, BODY + 48].map((pc) => `REALM_ESCAPE:secret_access:${hex(pc)}`));
  });
});

describe('the realm oracles only observe', () => {
  it('each program above runs the same with the oracles off: same digest, same reports, no verdicts', async () => {
    const bodies = ['    call gate', '    call realm_read', '    call gate_int', '    mov eax, 0\n    mov ecx, 1\n    vmfunc\n    mov ebx, [0xc000]\n    mov ecx, 0\n    vmfunc'];
    for (const body of bodies) {
      const on = await run({ ...base, body }), off = await run({ ...base, body }, false);
      expect(off.digest, body).toBe(on.digest);
      expect(off.reports).toEqual(on.reports);
      expect(off.metrics.instructions).toBe(on.metrics.instructions);
      expect(off.findings).toEqual([]);
    }
  });
});
