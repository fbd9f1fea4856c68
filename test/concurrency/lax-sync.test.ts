// Lax sync bounds how far apart the pCPU clocks drift: a pCPU runs a burst only while its clock is at most
// --slack cycles ahead of the slowest running pCPU. The guests measure it themselves: each vCPU stamps its
// rdtsc (its pCPU's clock) into memory at every iteration and takes the largest lead it sees over the other
// vCPU's latest stamp. A stamp the other vCPU wrote before it published its clock is visible to anyone who
// read that clock, so the lead can exceed the slack by at most one burst of this pCPU (it looks between
// bursts) plus one loop iteration of the other. That holds for every interleaving, threaded or serial.
import { describe, it, expect } from 'vitest';
import { runGuest, value } from '../helpers/run.js';

const SLACK = 3000;
const BURST = 256;
/** Most cycles one loop iteration costs (rdtsc 25 and twelve 1-cycle instructions = 37; anchors.md §A). */
const ITER_CYCLES = 40;
/** Bound on the lead: the slack, one burst of the most expensive instruction (rdtsc), one iteration. */
const BOUND = SLACK + BURST * 25 + ITER_CYCLES;

/**
 * vCPU i (0 or 1) stamps [stamps + 4i] with its rdtsc, reads the other's stamp, keeps the largest
 * difference (key 5) and how many stamps of the running other it compared with (key 6). A stamp of 0 is
 * "not started", -1 "finished": neither counts.
 */
function stampProgram(iters: number): string {
  return `
.equ ITERS, ${iters}
_start:
    mov eax, 1
    cpuid
    shr ebx, 25                 ; vCPU index (APIC ID = 2 * index)
    mov r8, ebx
    shl r8, 2
    add r8, stamps              ; my stamp
    mov r9, 1
    sub r9, ebx
    shl r9, 2
    add r9, stamps              ; the other's stamp
    mov r10, 0                  ; largest lead seen
    mov r11, 0                  ; comparisons made
    mov ecx, ITERS
loop:
    rdtsc
    mov [r8], eax
    mov edx, [r9]
    cmp edx, 0
    jle next
    mov esi, eax
    sub esi, edx
    inc r11
    cmp esi, r10
    jle next
    mov r10, esi
next:
    dec ecx
    jnz loop
    mov [r8], -1
    mov ebx, 5
    mov ecx, r10
    magic 1
    mov ebx, 6
    mov ecx, r11
    magic 1
    cli
    hlt
.align 64
stamps: .word 0, 0
`;
}

function expectBounded(r: Awaited<ReturnType<typeof runGuest>>, iters: number): void {
  expect(r.outcome).toBe('completed');
  expect(r.domains[0].ended).toBe('all vCPUs halted with IF=0');
  for (const v of [0, 1]) {
    const lead = value(r, 5, v), seen = value(r, 6, v);
    expect(seen, `vCPU ${v} compared with the other's stamps`).toBeGreaterThan(iters / 10);
    expect(lead, `vCPU ${v}'s largest lead over vCPU ${1 - v}`).toBeLessThanOrEqual(BOUND);
  }
}

describe('lax sync: clocks stay within --slack plus one burst', () => {
  it('threaded, 2 pCPUs / 2 vCPUs, slack 3000, burst 256 (3 runs)', async () => {
    for (let run = 0; run < 3; run++) {
      const r = await runGuest(stampProgram(200_000), { vcpus: 2, pcpus: 2, engine: 'threaded', slack: SLACK, burst: BURST, maxInstructions: 0, watchdogMs: 10_000 });
      expectBounded(r, 200_000);
    }
  });

  it('threaded, both pCPUs in one thread (--threads 1): the same bound, and the thread never waits on itself', async () => {
    const r = await runGuest(stampProgram(100_000), { vcpus: 2, pcpus: 2, threads: 1, engine: 'threaded', slack: SLACK, burst: BURST, maxInstructions: 0, watchdogMs: 10_000 });
    expectBounded(r, 100_000);
  });

  it('threaded, 3 pCPUs on 2 threads (the vCPUs on different threads, an idle pCPU sharing one): the same bound (2 runs)', async () => {
    for (let run = 0; run < 2; run++) {
      const r = await runGuest(stampProgram(100_000), { vcpus: 2, pcpus: 3, threads: 2, engine: 'threaded', slack: SLACK, burst: BURST, maxInstructions: 0, watchdogMs: 10_000 });
      expectBounded(r, 100_000);
    }
  });

  it('serial, same bound over 5 seeds', async () => {
    for (let seed = 1; seed <= 5; seed++) {
      const r = await runGuest(stampProgram(20_000), { vcpus: 2, pcpus: 2, engine: 'serial', seed, slack: SLACK, burst: BURST, maxInstructions: 0 });
      expectBounded(r, 20_000);
    }
  });
});
