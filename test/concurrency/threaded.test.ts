// The threaded engine: one worker thread per pCPU, real races. Atomics must be exact under any
// interleaving, the racy counter loses updates but never invents them, and the run ends the right way
// (shutdown, dead halt, stall, crash, instruction limit).
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUILTIN_DIR } from '../../src/scenario/loader.js';
import { exitCodeFor } from '../../src/cli/sim.js';
import { EXIT_OK } from '../../src/errors.js';
import type { RunReport } from '../../src/report.js';
import { runGuest, runGuestFull, value } from '../helpers/run.js';
import { availableParallelism } from 'node:os';
import { THREADS_PER_CORE, threadsFor } from '../../src/engine/threaded.js';

/**
 * Every vCPU adds 1 ITERS times with lock xadd and asserts (magic 3) that the old values it sees
 * strictly increase; vCPU 0 waits for all (yielding), reports the total (key 1) and the expected total
 * (key 3) and shuts the domain down; the others halt with IF=0.
 */
function xaddProgram(iters: number): string {
  return `
.equ ITERS, ${iters}
_start:
    mov ecx, ITERS
    mov esi, -1
loop:
    mov edx, 1
    lock xadd [counter], edx
    cmp edx, esi
    jle not_monotonic
    mov esi, edx
    dec ecx
    jnz loop
    lock add [arrived], 1
    mov eax, 1
    cpuid
    shr ebx, 25
    cmp ebx, 0
    jnz park
wait_all:
    mov eax, [arrived]
    cmp eax, VCPUS
    jz done
    mov eax, 29                   ; sched_op
    mov ebx, 0                    ; SCHEDOP_yield
    vmcall
    jmp wait_all
done:
    mov ebx, 1
    mov ecx, [counter]
    magic 1
    mov ebx, 3
    mov ecx, VCPUS * ITERS
    magic 1
    mov ebx, 0
    magic 0
not_monotonic:
    mov ebx, 1
    magic 3
park:
    cli
    hlt
    jmp park
.align 4
counter: .word 0
arrived: .word 0
`;
}

// Generous on purpose: the engine arms its watchdog before the pCPU workers have started, so a slow
// worker start (module loading in each worker, a loaded machine) reads as "a pCPU thread is hung" (see the skipped
// test at the end). The stall cases below end through the all-idle path, well before this.
const WATCHDOG_MS = 15_000;

/** Explains an unexpected `reason` with how far the run got (steps 0: the workers never ran a burst). */
function why(r: RunReport): string {
  return `reason ${JSON.stringify(r.reason)}, steps ${String(r.metrics.steps)}, instructions ${String(r.metrics.instructions)}`;
}

function counterSource(iters: number): string {
  const src = readFileSync(join(BUILTIN_DIR, 'counter.s'), 'utf8');
  const out = src.replace(/^\.equ ITERS, \d+\s*$/m, `.equ ITERS, ${iters}`);
  if (out === src) throw new Error('counter.s no longer has an `.equ ITERS, N` line');
  return out;
}

describe('threaded engine', () => {
  it('4 pCPUs x 8 vCPUs x 100k lock xadd: exact total, increasing old values, clean shutdown', async () => {
    const { report: r, result } = await runGuestFull(xaddProgram(100_000), { vcpus: 8, pcpus: 4, engine: 'threaded', maxInstructions: 0, watchdogMs: WATCHDOG_MS });
    expect(r.reason, why(r)).toBeNull();
    expect(r.outcome).toBe('completed');
    expect(r.findings).toEqual([]);
    expect(value(r, 3)).toBe(800_000);
    expect(value(r, 1)).toBe(800_000);
    expect(r.domains[0]).toMatchObject({ state: 'shutdown', exit_code: 0, crash: null });
    expect(exitCodeFor(r)).toBe(EXIT_OK);
    expect(r.engine).toBe('threaded');
    expect(r.pcpus).toBe(4);
    expect(r.metrics.threads).toBe(4); // a thread per pCPU
    expect(result.schedule).toBeUndefined();
    // All 4 pCPUs ran guest code.
    const per = r.metrics.instructions_per_pcpu as Record<string, number>;
    expect(Object.keys(per)).toHaveLength(4);
    for (const p of Object.keys(per)) expect(per[p], `pCPU ${p}`).toBeGreaterThan(0);
  }, 60_000);

  it('pCPUs sharing threads (--threads 3 for 8 pCPUs): the same exact total, every pCPU runs guest code', async () => {
    const r = await runGuest(xaddProgram(50_000), { vcpus: 8, pcpus: 8, threads: 3, engine: 'threaded', maxInstructions: 0, watchdogMs: WATCHDOG_MS });
    expect(r.reason, why(r)).toBeNull();
    expect(r.outcome).toBe('completed');
    expect(r.findings).toEqual([]);
    expect(value(r, 1)).toBe(400_000);
    expect(r.metrics.threads).toBe(3);
    expect(r.domains[0]).toMatchObject({ state: 'shutdown', exit_code: 0, crash: null });
    const per = r.metrics.instructions_per_pcpu as Record<string, number>;
    expect(Object.keys(per)).toHaveLength(8);
    for (const p of Object.keys(per)) expect(per[p], `pCPU ${p}`).toBeGreaterThan(0);
  }, 60_000);

  it('254 pCPUs on the default threads (a few pCPUs each): the racy counter completes, lock xadd exact', async () => {
    const r = await runGuest(counterSource(5_000), { vcpus: 8, pcpus: 254, engine: 'threaded', maxInstructions: 0, watchdogMs: WATCHDOG_MS });
    expect(r.reason, why(r)).toBeNull();
    expect(r.outcome).toBe('completed');
    expect(r.findings).toEqual([]);
    expect(value(r, 1)).toBe(40_000);
    expect(r.metrics.threads).toBe(threadsFor(254, availableParallelism()));
    // Shared threads wherever the cores are fewer than 254 / THREADS_PER_CORE (every CI machine).
    if (THREADS_PER_CORE * availableParallelism() < 254) expect(r.metrics.threads).toBeLessThan(254);
  }, 60_000);

  it('the racy counter: lock xadd exact, load/add/store total <= expected and > 0, exit code 0 (3 runs)', async () => {
    for (let run = 0; run < 3; run++) {
      const r = await runGuest(counterSource(20_000), { vcpus: 8, pcpus: 4, engine: 'threaded', seed: run + 1, maxInstructions: 0, watchdogMs: WATCHDOG_MS });
      expect(r.reason, `run ${run}: ${why(r)}`).toBeNull();
      expect(r.outcome).toBe('completed');
      expect(r.findings).toEqual([]);
      expect(r.domains[0]).toMatchObject({ state: 'shutdown', exit_code: 0 });
      expect(r.console.guest).toBe('counter: all vCPUs done\n');
      expect(value(r, 3)).toBe(160_000);
      expect(value(r, 1), `run ${run} atomic`).toBe(160_000);
      const racy = value(r, 2) ?? NaN;
      expect(racy, `run ${run} racy`).toBeLessThanOrEqual(160_000);
      expect(racy, `run ${run} racy`).toBeGreaterThan(0);
      expect(exitCodeFor(r)).toBe(EXIT_OK);
    }
  }, 60_000);

  it('every vCPU in sti; hlt with nothing to wake it: a STALL finding, outcome completed well within the watchdog', async () => {
    const t0 = performance.now();
    const r = await runGuest('_start:\n    sti\n    hlt\n    jmp _start\n', { vcpus: 4, pcpus: 2, engine: 'threaded', watchdogMs: WATCHDOG_MS });
    const wall = performance.now() - t0;
    expect(r.reason, why(r)).toMatch(/blocked in hlt/);
    expect(r.outcome).toBe('completed');
    expect(r.findings.map((f) => f.kind)).toEqual(['STALL']);
    expect(r.findings[0].first.detail).toBe('no pCPU can make progress: 4 vCPU(s) blocked in hlt with nothing left to wake them');
    expect(r.domains[0]).toMatchObject({ state: 'running', exit_code: null });
    // All pCPUs idle: the engine needs only ~200 ms without progress, not the whole watchdog period.
    expect(wall).toBeLessThan(WATCHDOG_MS / 2);
  }, 30_000);

  it('the same with both pCPUs in one thread (--threads 1): the thread sleeps when both are idle, and the STALL comes as fast', async () => {
    const t0 = performance.now();
    const r = await runGuest('_start:\n    sti\n    hlt\n    jmp _start\n', { vcpus: 4, pcpus: 2, threads: 1, engine: 'threaded', watchdogMs: WATCHDOG_MS });
    expect(r.reason, why(r)).toMatch(/blocked in hlt/);
    expect(r.findings.map((f) => f.kind)).toEqual(['STALL']);
    expect(r.metrics.threads).toBe(1);
    expect(performance.now() - t0).toBeLessThan(WATCHDOG_MS / 2);
  }, 30_000);

  it('every vCPU in hlt with IF=0: the domain ends as "all vCPUs halted with IF=0"', async () => {
    const r = await runGuest('_start:\n    hlt\n    jmp _start\n', { vcpus: 4, pcpus: 2, engine: 'threaded', watchdogMs: WATCHDOG_MS });
    expect(r.reason, why(r)).toBeNull();
    expect(r.outcome).toBe('completed');
    expect(r.findings).toEqual([]);
    expect(r.domains[0]).toMatchObject({ state: 'shutdown', exit_code: null, ended: 'all vCPUs halted with IF=0' });
  }, 30_000);

  it('a triple fault crashes the domain: DOMAIN_CRASH, outcome completed', async () => {
    const r = await runGuest('_start:\n    ud2\n', { vcpus: 2, pcpus: 2, engine: 'threaded', watchdogMs: WATCHDOG_MS });
    expect(r.outcome, why(r)).toBe('completed');
    expect(r.domains[0].state).toBe('crashed');
    expect(r.domains[0].crash).toBe('triple fault: vector 6 at pc 0x00000000');
    expect(r.findings.map((f) => f.kind)).toEqual(['DOMAIN_CRASH']);
  }, 30_000);

  it('an infinite loop stops at maxInstructions per vCPU with outcome "limit"', async () => {
    const r = await runGuest('_start:\n    inc eax\n    jmp _start\n', { vcpus: 2, pcpus: 2, engine: 'threaded', maxInstructions: 10_000, watchdogMs: WATCHDOG_MS });
    expect(r.outcome, why(r)).toBe('limit');
    expect(r.reason).toMatch(/max-instructions/);
    expect(r.metrics.instructions).toBe(20_000);
    expect(r.domains[0].state).toBe('running');
  }, 30_000);

  // Regression: worker start-up (~0.5 s idle, seconds on a loaded 2-core machine) once counted as
  // "no progress" and aborted the run as a hung pCPU. The watchdog now starts only when every pCPU
  // thread has set PC_STARTED.
  it('a slow worker start is not a hung pCPU (watchdog armed before the workers start)', async () => {
    for (const watchdogMs of [100, 300]) {
      const r = await runGuest('_start:\n    mov ebx, 0\n    magic 0\n', { vcpus: 2, pcpus: 2, engine: 'threaded', watchdogMs });
      expect(r.reason, `watchdogMs ${watchdogMs}: ${why(r)}`).toBeNull();
      expect(r.outcome).toBe('completed');
      expect(r.domains[0]).toMatchObject({ state: 'shutdown', exit_code: 0 });
      const s = await runGuest('_start:\n    sti\n    hlt\n', { vcpus: 4, pcpus: 2, engine: 'threaded', watchdogMs });
      expect(s.outcome, `watchdogMs ${watchdogMs}: ${why(s)}`).toBe('completed');
      expect(s.findings.map((f) => f.kind)).toEqual(['STALL']);
    }
  }, 30_000);
});
