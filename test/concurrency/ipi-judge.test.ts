// The IPI oracle judges every delivery of every send, on serial runs of small guest programs: a shorthand
// meant for one vCPU is wrong once per other receiver; a vector the hypervisor drops is lost at once; IPIs
// still pending at the end are counted as in flight; causes on virtual paths never speak of pCPUs; and a
// finding keeps its occurrences up to --max-instances.
import { describe, expect, it } from 'vitest';
import { guestConfig, runGuest, writeScenario, type GuestOpts } from '../helpers/run.js';
import type * as LabModule from '../../src/lab.js';
import type { RunReport } from '../../src/report.js';

// Runs go through the build, as test/helpers/run.ts explains.
const { simulate } = (await import(new URL('../../dist/src/lab.js', import.meta.url).href)) as typeof LabModule;

const finding = (r: RunReport, k: string) => r.findings.find((f) => f.kind === k);
const why = (r: RunReport) => `${r.outcome} ${r.reason ?? ''} ${JSON.stringify(r.findings.map((f) => [f.kind, f.count, f.causes, f.first.detail]))}`;
const rx = (r: RunReport, v: number) => r.reports.find((x) => x.key === 10 + v)?.value ?? 0;

/**
 * vCPU 0 sends SENDS IPIs, each declared with `magic 2` as meant for vCPU 1 (vector 0x40), through ICR_LO
 * value ICR (with ICR_HI = DEST << 24 first); the other vCPUs count what their handler takes. Each send waits
 * (bounded) until vCPU 1 took one more; at the end vCPU 0 waits a little for stragglers, reports key 10 + i =
 * handler entries of vCPU i, and shuts the domain down.
 */
function shorthandProgram(icr: number, dest: number): string {
  return `
.equ APIC, 0xFEE00000
.equ SENDS, 4
_start:
    mov eax, 1
    cpuid
    shr ebx, 25
    mov ebp, ebx                ; my vCPU id
    lidt idt
    cmp ebp, 0
    jz sender
    sti
    lock add [ready], 1
idle:
    pause
    jmp idle

sender:
    mov eax, [ready]
    cmp eax, VCPUS - 1
    jz go
    pause
    jmp sender
go:
    mov esi, 0
send_loop:
    cmp esi, SENDS
    jz drain
    mov r9, [rx + 4]            ; what vCPU 1 had taken before this send
    mov ebx, 1
    mov ecx, 0x40
    magic 2                     ; meant for vCPU 1 only
    mov eax, ${dest} << 24
    mov [APIC + 0x310], eax
    mov eax, ${icr}
    mov [APIC + 0x300], eax
    add esi, 1
    mov ecx, 3000
wait_rx:
    mov eax, [rx + 4]
    cmp eax, r9
    jg send_loop
    pause
    dec ecx
    jnz wait_rx
    jmp send_loop
drain:
    mov ecx, 3000
drain_spin:
    pause
    dec ecx
    jnz drain_spin
    mov edi, 0
report:
    mov ebx, edi
    add ebx, 10
    mov eax, edi
    shl eax, 2
    add eax, rx
    mov ecx, [eax]
    magic 1
    add edi, 1
    cmp edi, VCPUS
    jnz report
    mov ebx, 0
    magic 0

on_ipi:
    push eax
    mov eax, ebp
    shl eax, 2
    add eax, rx
    lock add [eax], 1
    mov [APIC + 0xB0], 0
    pop eax
    iret

.align 8
ready: .word 0
rx:    .space 4 * 16
.align 8
idt:
    .space 4 * 0x40
    .word on_ipi
    .space 4 * (256 - 0x40 - 1)
`;
}

const ALL_BUT_SELF = 0xc0040; // vector 0x40, fixed, shorthand all-excluding-self (bits 19:18 = 3)
const FIXED = 0x40;

function opts(path: string, seed: number, vcpus = 4): GuestOpts {
  return {
    vcpus, pcpus: 4, memoryKb: 256, seed, maxInstructions: 2_000_000,
    machineExtra: ['migration = "none"'],
    domainExtra: [`ipi_path = "${path}"`, `defines = { VCPUS = ${vcpus} }`],
  };
}

describe('every delivery of a send is judged', () => {
  it.each(['vlapic', 'xapic-passthrough'])('%s: an all-but-self send meant for vCPU 1 of 4 is one misdirection per other receiver (serial seeds 1-4)', async (path) => {
    let wrongTotal = 0;
    for (let seed = 1; seed <= 4; seed++) {
      const r = await runGuest(shorthandProgram(ALL_BUT_SELF, 0), opts(path, seed));
      expect(r.outcome, why(r)).toBe('completed');
      const others = rx(r, 2) + rx(r, 3); // handler entries by vCPUs the intent did not name
      expect(others, why(r)).toBeGreaterThan(0);
      const f = finding(r, 'IPI_MISDIRECTED');
      expect(f, why(r)).toBeDefined();
      expect(f?.count ?? 0, why(r)).toBeGreaterThanOrEqual(others);
      expect(Object.keys(f?.causes ?? {}), why(r)).toEqual(['shorthand']);
      expect(f?.first.detail, why(r)).toMatch(/all-but-self shorthand/);
      // Each wrong delivery is one instance, at the vCPU that took it (never vCPU 1, the one meant).
      for (const i of f?.instances ?? []) expect([2, 3], why(r)).toContain(i.vcpu);
      if (path === 'vlapic') expect(f?.first.detail, why(r)).not.toMatch(/pCPU/);
      // The right deliveries are not in the count: vCPU 1 took its copies without a finding.
      expect(rx(r, 1), why(r)).toBeGreaterThan(0);
      expect(r.metrics.ipi_delivered_wrong, why(r)).toBe(f?.count);
      wrongTotal += f?.count ?? 0;
    }
    expect(wrongTotal).toBeGreaterThan(4 * 4); // more than one wrong delivery per send: not only the first is judged
  }, 60_000);

  it('negative control: the same sends with a fixed destination (vCPU 1) on the vlapic path show nothing', async () => {
    for (let seed = 1; seed <= 4; seed++) {
      const r = await runGuest(shorthandProgram(FIXED, 2), opts('vlapic', seed));
      expect(r.outcome, why(r)).toBe('completed');
      expect(r.findings, why(r)).toEqual([]);
      expect(rx(r, 1), why(r)).toBeGreaterThan(0);
      expect(rx(r, 2) + rx(r, 3), why(r)).toBe(0);
      expect(r.metrics.ipi_delivered_wrong).toBe(0);
    }
  }, 60_000);
});

describe('causes on virtual paths speak of virtual APIC IDs, never of pCPUs', () => {
  it('vlapic: a fixed send whose ICR names vCPU 2 while the intent names vCPU 1 is virtual_dest', async () => {
    for (let seed = 1; seed <= 3; seed++) {
      const r = await runGuest(shorthandProgram(FIXED, 4), opts('vlapic', seed, 3)); // virtual APIC ID 4 = vCPU 2
      expect(r.outcome, why(r)).toBe('completed');
      const f = finding(r, 'IPI_MISDIRECTED');
      expect(f, why(r)).toBeDefined();
      expect(Object.keys(f?.causes ?? {}), why(r)).toEqual(['virtual_dest']);
      expect(f?.count, why(r)).toBeGreaterThanOrEqual(rx(r, 2));
      expect(f?.first.detail, why(r)).toMatch(/virtual APIC ID 4 \(vCPU 2\)/);
      expect(f?.first.detail, why(r)).not.toMatch(/pCPU/);
      expect(f?.first.signature, why(r)).toMatch(/^IPI_MISDIRECTED:virtual_dest:0x[0-9a-f]+$/);
    }
  }, 60_000);
});

describe('loss and IPIs in flight', () => {
  // One vCPU on pCPU 0 sends through the passed-through xAPIC to pCPU 1, which runs nothing: the hypervisor
  // has no handler for the vector and no vCPU to reflect it to, so it is dropped.
  const DROP = `
_start:
    mov ebx, 0
    mov ecx, 0x40
    magic 2
    mov eax, 1 << 24
    mov [0xFEE00310], eax       ; physical APIC ID 1: an idle pCPU
    mov eax, 0x40
    mov [0xFEE00300], eax
    mov ecx, 500
spin:
    pause
    dec ecx
    jnz spin
    mov ebx, 0
    magic 0
`;
  it('a dropped vector is IPI_LOST at once, in a run far shorter than the loss bound (which the report warns of)', async () => {
    const r = await runGuest(DROP, { vcpus: 1, pcpus: 2, cpus: '0', memoryKb: 64, domainExtra: ['ipi_path = "xapic-passthrough"'] });
    expect(r.outcome, why(r)).toBe('completed');
    expect(r.metrics.sim_time_ns as number).toBeLessThan(5_000_000);
    expect(finding(r, 'IPI_UNKNOWN_VECTOR')?.causes, why(r)).toEqual({ dropped: 1 });
    const lost = finding(r, 'IPI_LOST');
    expect(lost?.causes, why(r)).toEqual({ dropped: 1 });
    expect(lost?.first.pcpu, why(r)).toBe(1); // where it was dropped
    expect(lost?.first.detail, why(r)).toMatch(/dropped/);
    expect(r.metrics.ipi_in_flight).toBe(0);
    expect(r.warnings.join('\n')).toMatch(/less than the IPI loss bound/);
  });

  // vCPU 1 spins with interrupts off; vCPU 0 sends it an IPI and ends the domain at once: the vector is
  // still pending in vCPU 1's IRR when the run ends.
  const PENDING = `
_start:
    mov eax, 1
    cpuid
    shr ebx, 25
    cmp ebx, 0
    jz sender
    lock add [ready], 1
spin:
    pause
    jmp spin
sender:
    mov eax, [ready]
    cmp eax, 0
    jnz send
    pause
    jmp sender
send:
    mov ebx, 1
    mov ecx, 0x40
    magic 2
    mov eax, 2 << 24
    mov [0xFEE00310], eax
    mov eax, 0x40
    mov [0xFEE00300], eax
    mov ebx, 0
    magic 0
.align 8
ready: .word 0
`;
  it('an IPI still pending at the end is in flight, not lost', async () => {
    const r = await runGuest(PENDING, { vcpus: 2, pcpus: 2, memoryKb: 64 });
    expect(r.outcome, why(r)).toBe('completed');
    expect(r.metrics.ipi_sent).toBe(1);
    expect(r.metrics.ipi_in_flight, why(r)).toBe(1);
    expect(finding(r, 'IPI_LOST'), why(r)).toBeUndefined();
    expect(r.warnings.join('\n')).toMatch(/1 still in flight/);
  });

  it('an intent that no send followed is counted, not a finding', async () => {
    const r = await runGuest('_start:\n    mov ebx, 0\n    mov ecx, 0x40\n    magic 2\n    mov ebx, 0\n    magic 0\n', { memoryKb: 64 });
    expect(r.findings).toEqual([]);
    expect(r.metrics.ipi_intent_unsent).toBe(1);
  });
});

describe('--max-instances', () => {
  it('keeps every occurrence up to the cap, then counts the rest and says so', async () => {
    const sc = writeScenario(shorthandProgram(ALL_BUT_SELF, 0), opts('vlapic', 1));
    try {
      const base = guestConfig(sc.toml, opts('vlapic', 1));
      const all = (await simulate(base)).report;
      const f = finding(all, 'IPI_MISDIRECTED');
      expect(f?.count ?? 0, why(all)).toBeGreaterThan(1);
      expect(f?.instances).toHaveLength(f?.count ?? -1);
      expect(f?.instances_truncated).toBe(false);
      expect(f?.instances_dropped).toBe(0);
      for (const i of f?.instances ?? []) {
        expect(Object.keys(i).sort()).toEqual(['cause', 'domain', 'pcpu', 'pcs', 'time_ns', 'vcpu']);
        expect(i.domain).toBe('guest');
        expect(i.cause).toBe('shorthand');
        for (const pc of i.pcs) expect(pc).toMatch(/^(0x[0-9a-f]+|xen)$/);
      }
      expect(f?.instances[0]).toEqual({ ...f?.instances[0], time_ns: f?.first.time_ns, pcpu: f?.first.pcpu, vcpu: f?.first.vcpu });
      const capped = (await simulate({ ...base, maxInstances: 1 })).report;
      const g = finding(capped, 'IPI_MISDIRECTED');
      expect(g?.count).toBe(f?.count); // the same run: the cap changes the report, never the judgement
      expect(g?.instances).toEqual(f?.instances.slice(0, 1));
      expect(g?.instances_truncated).toBe(true);
      expect(g?.instances_dropped).toBe((f?.count ?? 0) - 1);
      expect(capped.replay).toMatch(/--max-instances 1$/);
      expect(capped.digest).toBe(all.digest);
    } finally {
      sc.dispose();
    }
  }, 60_000);
});
