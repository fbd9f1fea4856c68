// HOST_APIC_TAMPER (oracles/apic-tamper.ts): a guest holding the host's LAPIC (xapic-passthrough, or
// x2apic-passthrough) writes TPR, and the hypervisor's own interrupts on that pCPU are held off. Two vCPUs
// on two pCPUs, serial engine, fixed seed: vCPU 1 raises the host TPR and spins until vCPU 0 is done; vCPU 0
// runs HVMOP_altp2m set_domain_state, which pauses vCPU 1 and waits until it has left its pCPU. The pause's
// kick (EVENT_CHECK, class 0xF) and the scheduler's tick (0xFA) wait in IRR behind the TPR, so vCPU 1 never
// leaves and the run ends at its instruction limit: a wait that never completes, reported with its cause.
// The negative controls: the same guest with TPR left alone, and with TPR raised to a class below Xen's.
import { describe, expect, it } from 'vitest';
import type { RunReport } from '../../src/report.js';
import { runGuest } from '../helpers/run.js';

/** `tpr` < 0: vCPU 1 leaves TPR alone. `x2apic`: the write is WRMSR 0x808 on an x2APIC machine. */
function program(tpr: number, x2apic: boolean): string {
  const write = tpr < 0 ? '' : x2apic
    ? `    mov ecx, 0x808\n    mov eax, ${tpr}\n    mov edx, 0\n    wrmsr\n`
    : `    mov eax, ${tpr}\n    mov [0xFEE00080], eax\n`;
  return `
.equ OP, 0x30000
_start:
    mov eax, 1
    cpuid
    shr ebx, 25
    cmp ebx, 0
    jz cpu0
${write}    mov [raised], 1
wait_done:
    mov eax, [done]
    cmp eax, 1
    jz spin_end
    pause
    jmp wait_done
spin_end:
    pause
    jmp spin_end
cpu0:
    mov eax, [raised]
    cmp eax, 1
    jz go
    pause
    jmp cpu0
go:
    mov edi, OP
    mov [edi], 1
    mov [edi+4], 2           ; set_domain_state(1): pauses every other vCPU first
    mov [edi+8], 0x7ff0
    mov [edi+12], 0
    mov [edi+16], 1
    mov eax, 34
    mov ebx, 25
    mov ecx, OP
    vmcall
    mov ecx, eax
    mov ebx, 1
    magic 1                  ; report key 1: the hypercall's result
    mov [done], 1
    mov ebx, 0
    magic 0
.align 4
raised: .word 0
done: .word 0
`;
}

async function run(tpr: number, x2apic = false): Promise<RunReport> {
  return runGuest(program(tpr, x2apic), {
    pcpus: 2, vcpus: 2, seed: 1, maxInstructions: 200_000,
    machineExtra: ['migration = "none"', ...(x2apic ? ['apic_mode = "x2apic"'] : [])],
    domainExtra: [`ipi_path = "${x2apic ? 'x2apic' : 'xapic'}-passthrough"`, 'altp2m = "mixed"'],
  });
}

function tamper(r: RunReport) {
  return r.findings.find((f) => f.kind === 'HOST_APIC_TAMPER');
}

describe('HOST_APIC_TAMPER', () => {
  it('a guest raising the host TPR to 0xF0 is reported, and the pause that then never completes says why', async () => {
    const r = await run(0xf0);
    const f = tamper(r);
    expect(f, JSON.stringify(r.findings.map((x) => x.kind))).toBeDefined();
    expect(f?.causes.tpr).toBe(1);
    expect(f?.causes.held_off).toBeGreaterThanOrEqual(1);
    const write = f?.instances.find((i) => i.cause === 'tpr');
    expect(write?.pcpu).toBe(1);
    expect(write?.pcs[0]).toMatch(/^0x[0-9a-f]+$/);
    // The first found (the rings are drained per pCPU) is the write or the wait it causes; both name pCPU 1.
    expect(f?.first.detail).toMatch(/wrote 0xf0 to the host LAPIC's TPR .* of pCPU 1 at pc 0x|waits for pCPU 1 to take vector 0xfc .* its TPR is 0xf0/);
    const held = f?.instances.find((i) => i.cause === 'held_off');
    expect(held?.pcpu).toBe(0);
    expect(held?.pcs).toEqual(['xen']);
    expect(Object.keys(f?.signatures ?? {})).toContain('HOST_APIC_TAMPER:held_off:xen');
    // The wait never ended: vCPU 0 never got its hypercall's result, and the run stopped at its limit.
    expect(r.reports.find((x) => x.key === 1)).toBeUndefined();
    expect(r.outcome).not.toBe('completed');
  }, 60_000);

  it('the same through the x2APIC TPR MSR', async () => {
    const r = await run(0xf0, true);
    const f = tamper(r);
    expect(f?.causes.tpr).toBe(1);
    expect(f?.causes.held_off).toBeGreaterThanOrEqual(1);
    expect(f?.instances.find((i) => i.cause === 'tpr')?.pcpu).toBe(1);
  }, 60_000);

  it('negative control: the same guest leaving TPR alone completes with no HOST_APIC_TAMPER', async () => {
    const r = await run(-1);
    expect(tamper(r)).toBeUndefined();
    expect(r.outcome).toBe('completed');
    expect(r.reports.find((x) => x.key === 1)?.value).toBe(0);
  }, 60_000);

  it('negative control: a TPR below the hypervisor\'s class is reported as written, but nothing is held off', async () => {
    const r = await run(0x80);
    const f = tamper(r);
    expect(f?.causes.tpr).toBe(1);
    expect(f?.causes.held_off ?? 0).toBe(0);
    expect(r.outcome).toBe('completed');
    expect(r.reports.find((x) => x.key === 1)?.value).toBe(0);
  }, 60_000);
});
