// Scheduler properties on the serial engine: fair shares under oversubscription, credit2's rate limit,
// and runs are never doubled (a vCPU on two pCPUs at once would break the exact atomic total).
import { describe, expect, it } from 'vitest';
import { runGuest } from '../helpers/run.js';

// Every vCPU counts loop iterations; vCPU 0 stops the domain once it has done ITERS and reports all counts.
const SPIN = `
.equ ITERS, 1500000
_start:
    mov eax, 1
    cpuid
    shr ebx, 25
    mov ebp, ebx
    shl ebx, 2
    add ebx, counts
    mov ecx, 0
loop:
    add ecx, 1
    mov [ebx], ecx
    cmp ebp, 0
    jnz loop
    cmp ecx, ITERS
    jnz loop
    mov edi, 0
report:
    mov ebx, edi
    add ebx, 10
    mov eax, edi
    shl eax, 2
    add eax, counts
    mov ecx, [eax]
    magic 1
    add edi, 1
    cmp edi, VCPUS
    jnz report
    mov ebx, 0
    magic 0
.align 4
counts: .space 64
`;

async function shares(scheduler: string, extra: string[] = []) {
  const r = await runGuest(SPIN, { vcpus: 3, pcpus: 1, memoryKb: 64, maxInstructions: 50_000_000, machineExtra: [`scheduler = "${scheduler}"`, ...extra] });
  expect(r.outcome).toBe('completed');
  const counts = [0, 1, 2].map((i) => r.reports.find((x) => x.key === 10 + i)?.value ?? 0);
  return { counts, m: r.metrics as Record<string, number> };
}

describe('scheduler', () => {
  // Fair within one time slice: round robin (fifo) and credit order (credit2: slices of at least the
  // 1 ms rate limit) can leave the vCPUs apart by at most about one slice of CPU when vCPU 0 stops.
  it.each([['fifo', 500], ['credit2', 1000]] as const)('%s: 3 vCPUs on 1 pCPU get fair shares', async (sched, sliceUs) => {
    const { counts } = await shares(sched, sched === 'fifo' ? [`timeslice_us = ${sliceUs}`] : []);
    // CPU time in cycles, not iterations: vCPU 0's loop is 6 instructions, the others' 4, one cycle each.
    const cpu = counts.map((c, i) => c * (i === 0 ? 6 : 4));
    const max = Math.max(...cpu), min = Math.min(...cpu);
    expect(min).toBeGreaterThan(0);
    expect(max - min).toBeLessThanOrEqual(1.1 * sliceUs * 3000);
  });

  it('credit2 never switches more often than the rate limit allows', async () => {
    const { m } = await shares('credit2', ['ratelimit_us = 2000']);
    const perSwitchNs = m.sim_time_ns / Math.max(1, m.context_switches - 3);
    expect(perSwitchNs).toBeGreaterThanOrEqual(2_000_000 * 0.95);
  });

  it('fifo with a short slice switches often (the knob works)', async () => {
    const a = await shares('fifo', ['timeslice_us = 200']);
    const b = await shares('fifo', ['timeslice_us = 2000']);
    expect(a.m.context_switches).toBeGreaterThan(5 * b.m.context_switches);
  });
});

describe('affinity', () => {
  const RUN = `
_start:
    mov ecx, 20000
spin:
    dec ecx
    jnz spin
    lock add [done], 1
wait:
    mov eax, [done]
    cmp eax, VCPUS
    jnz wait
    mov ebx, 0
    magic 0
.align 4
done: .word 0
`;
  it('vCPUs run only on their hard affinity (cpus=)', async () => {
    const r = await runGuest(RUN, { vcpus: 4, pcpus: 4, cpus: '1,3', memoryKb: 64, machineExtra: ['scheduler = "fifo"', 'migrate_percent = 50', 'timeslice_us = 20'] });
    const per = r.metrics.instructions_per_pcpu as Record<string, number>;
    expect(per['0']).toBe(0);
    expect(per['2']).toBe(0);
    expect(per['1']).toBeGreaterThan(0);
    expect(per['3']).toBeGreaterThan(0);
  });
  // vCPU 1 spins four times as long as vCPU 0 and each halts when done, so the pCPU that ran more is vCPU 1's.
  const UNEVEN = `
_start:
    mov eax, 1
    cpuid
    shr ebx, 25                 ; vCPU index
    imul ebx, 60000
    mov ecx, 20000
    add ecx, ebx
spin:
    dec ecx
    jnz spin
    cli
    hlt
`;
  it.each([[['1', '3'], '1', '3'], [['3', '1'], '3', '1']] as const)('cpus = %j pins each vCPU to its own entry', async (cpus, short, long) => {
    const r = await runGuest(UNEVEN, { vcpus: 2, pcpus: 4, cpus: [...cpus], memoryKb: 64, machineExtra: ['scheduler = "fifo"', 'migrate_percent = 50', 'timeslice_us = 20'] });
    expect(r.outcome).toBe('completed');
    const per = r.metrics.instructions_per_pcpu as Record<string, number>;
    expect(per['0'] + per['2']).toBe(0);
    expect(per[long]).toBeGreaterThan(2 * per[short]);
  });
  it('cpus_soft = ["3", "2"] places each vCPU on its own preferred pCPU', async () => {
    const r = await runGuest(UNEVEN, { vcpus: 2, pcpus: 4, cpus: 'all', memoryKb: 64, domainExtra: ['cpus_soft = ["3", "2"]'], machineExtra: ['scheduler = "fifo"', 'timeslice_us = 20'] });
    expect(r.outcome).toBe('completed');
    const per = r.metrics.instructions_per_pcpu as Record<string, number>;
    expect(per['0'] + per['1']).toBe(0);
    expect(per['2']).toBeGreaterThan(2 * per['3']);
  });
  it('placement and rebalancing prefer the soft affinity (cpus_soft=)', async () => {
    const r = await runGuest(RUN, { vcpus: 2, pcpus: 4, cpus: 'all', memoryKb: 64, domainExtra: ['cpus_soft = "2-3"'], machineExtra: ['scheduler = "fifo"', 'timeslice_us = 20'] });
    const per = r.metrics.instructions_per_pcpu as Record<string, number>;
    expect(per['0'] + per['1']).toBe(0);
    expect(per['2']).toBeGreaterThan(0);
    expect(per['3']).toBeGreaterThan(0);
  });
});
