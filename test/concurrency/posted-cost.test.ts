// What an IPI costs the hypervisor on each path, to the cycle: vCPU 0 sends N fixed physical IPIs to vCPU 1
// (each on its own pCPU, no migration), waiting for each to be handled. Every extra IPI must cost exactly
// what the cost table says for its path. A posted-interrupt notification taken in guest mode is no VM exit:
// neither counted nor charged (posted.ts piNotificationOnly); the trapped vLAPIC path is the control that
// does exit. Serial engine, fixed seed.
import { describe, expect, it } from 'vitest';
import type * as SimModule from '../../src/cli/sim.js';
import type * as ClockModule from '../../src/hw/clock.js';
import type { RunReport } from '../../src/report.js';
import { guestConfig, writeScenario } from '../helpers/run.js';

const { simulate } = (await import(new URL('../../dist/src/cli/sim.js', import.meta.url).href)) as typeof SimModule;
const { DEFAULT_COSTS: C, CYCLES_PER_NS } = (await import(new URL('../../dist/src/hw/clock.js', import.meta.url).href)) as typeof ClockModule;

const PROGRAM = `
.equ APIC, 0xFEE00000
.equ VEC, 0x40
_start:
    mov eax, 1
    cpuid
    shr ebx, 25
    lidt idt
    cmp ebx, 0
    jnz receiver
    mov esi, 0
wait_ready:
    mov eax, [ready]
    cmp eax, 1
    jnz wait_ready
send:
    cmp esi, N
    jz done
    mov edx, 0x02000000
    mov [APIC + 0x310], edx          ; vCPU 1: virtual APIC ID 2
    mov [APIC + 0x300], VEC          ; fixed, physical, no shorthand
    add esi, 1
wait_rx:
    mov eax, [count]
    cmp eax, esi
    jnz wait_rx
    jmp send
done:
    mov ecx, [count]
    mov ebx, 1
    magic 1
    mov ebx, 0
    magic 0
receiver:
    sti
    mov [ready], 1
spin:
    pause
    jmp spin
on_ipi:
    lock add [count], 1
    mov [APIC + 0xB0], 0             ; EOI
    iret
.align 8
ready: .word 0
count: .word 0
.align 8
idt:
    .space 4 * VEC
    .word on_ipi
    .space 4 * (256 - VEC - 1)
`;

async function run(path: string, n: number): Promise<RunReport> {
  // The LAPIC timer's ticks are external-interrupt exits of their own: a period longer than the run keeps
  // them out of what the IPIs cost.
  const sc = writeScenario(PROGRAM, { pcpus: 2, vcpus: 2, memoryKb: 256, machineExtra: ['migration = "none"', 'lapic_timer_us = 1000000', ...(path === 'avic' ? ['vendor = "amd"'] : [])], domainExtra: [`ipi_path = "${path}"`, `defines = { N = ${n} }`] });
  try {
    const { report } = await simulate(guestConfig(sc.toml, { pcpus: 2, vcpus: 2 }));
    expect(report.outcome).toBe('completed');
    expect(report.reports.find((r) => r.key === 1)?.value).toBe(n);
    return report;
  } finally { sc.dispose(); }
}

const exits = (r: RunReport, k: string): number => (r.metrics.exits as Record<string, number>)[k] ?? 0;

/** Hypervisor cycles and exits that 10 more IPIs add (hypervisor_ns is rounded to whole ns in the report). */
async function extra(path: string): Promise<{ ns: number; apicAccess: number; extint: number; irqWindow: number; a: RunReport; b: RunReport }> {
  const a = await run(path, 10), b = await run(path, 20);
  return {
    ns: (b.metrics.hypervisor_ns as number) - (a.metrics.hypervisor_ns as number),
    apicAccess: exits(b, 'apic_access') - exits(a, 'apic_access'), extint: exits(b, 'external_interrupt') - exits(a, 'external_interrupt'),
    irqWindow: exits(b, 'irq_window') - exits(a, 'irq_window'), a, b,
  };
}

describe('hypervisor cycles per IPI, as the cost table says', () => {
  it.each(['ipiv', 'avic'])('%s: the CPU sends and the receiver takes the notification in guest mode: ipi_hw_send + exception, no exit', async (path) => {
    const d = await extra(path);
    expect(d.ns).toBeCloseTo((10 * (C.ipi_hw_send + C.exception)) / CYCLES_PER_NS, -0.5); // within a rounded ns
    for (const r of [d.a, d.b]) {
      expect(exits(r, 'external_interrupt')).toBe(0);
      expect(exits(r, 'apic_access')).toBe(0);
    }
  });

  it('posted: the sender traps, the notification costs the receiver no exit cycles', async () => {
    const d = await extra('posted');
    expect(d.extint).toBe(0);
    expect(exits(d.b, 'external_interrupt')).toBe(0);
    expect(exits(d.b, 'irq_window')).toBe(0); // virtual-interrupt delivery: the CPU waits for IF itself
    expect(d.apicAccess).toBeGreaterThan(0);
    // Only the trapped APIC accesses and the virtual interrupt's delivery: nothing for the notification.
    expect(d.ns).toBeCloseTo((d.apicAccess * C.vmexit + 10 * C.exception) / CYCLES_PER_NS, -0.5);
  });

  it('vlapic (the control): the receiver exits for each IPI, and that exit is charged', async () => {
    const d = await extra('vlapic');
    expect(d.extint).toBe(10);
    // An IPI that arrives while the handler of the previous one runs (IF=0) waits for an interrupt window:
    // the handler's iret exits once more (vmx_intr_assist). Every exit is charged the same.
    expect(d.ns).toBeCloseTo(((d.apicAccess + d.irqWindow) * C.vmexit + 10 * (C.vmexit + C.exception)) / CYCLES_PER_NS, -0.5);
  });
});
