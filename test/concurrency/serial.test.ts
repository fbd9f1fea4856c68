// The serial engine: a seed fixes the run (same report, event digest and metrics), different seeds give
// different interleavings of the racy counter, atomics stay exact under every interleaving, and a
// recorded schedule replays to the same run. The program is the built-in counter.s with fewer iterations.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUILTIN_DIR } from '../../src/scenario/loader.js';
import { simulate } from '../../src/cli/sim.js';
import type { RunReport } from '../../src/report.js';
import { guestConfig, runGuest, value, writeScenario, type GuestOpts, type Scenario } from '../helpers/run.js';

const ITERS = 2000;
const VCPUS = 4;
const PCPUS = 2;
const EXPECTED = ITERS * VCPUS;
const KEY_ATOMIC = 1, KEY_RACY = 2, KEY_EXPECTED = 3;

/** counter.s as shipped, with ITERS made small. */
function counterSource(iters: number): string {
  const src = readFileSync(join(BUILTIN_DIR, 'counter.s'), 'utf8');
  const out = src.replace(/^\.equ ITERS, \d+\s*$/m, `.equ ITERS, ${iters}`);
  if (out === src) throw new Error('counter.s no longer has an `.equ ITERS, N` line');
  return out;
}

/** The report without what depends on wall-clock time. */
function timeless(r: RunReport): unknown {
  const { wall_ms: _w, guest_mips: _g, peak_rss_mb: _r, ...metrics } = r.metrics; // the process's, not the run's
  return { ...r, metrics };
}

const OPTS: GuestOpts = { vcpus: VCPUS, pcpus: PCPUS, engine: 'serial', maxInstructions: 0 };

describe('serial engine: the racy counter', () => {
  let sc: Scenario;
  beforeAll(() => { sc = writeScenario(counterSource(ITERS), OPTS); });
  afterAll(() => sc.dispose());

  const run = async (seed: number, extra: Partial<GuestOpts> = {}, sim: Parameters<typeof simulate>[1] = {}): Promise<Awaited<ReturnType<typeof simulate>>> =>
    simulate(guestConfig(sc.toml, { ...OPTS, seed, ...extra }), sim);

  it('is deterministic per seed, exact with lock xadd, lossy but bounded without, and varies across seeds', async () => {
    const racy = new Set<number>();
    for (let seed = 1; seed <= 20; seed++) {
      const a = (await run(seed)).report;
      const b = (await run(seed)).report;
      expect(b.digest, `seed ${seed} digest`).toBe(a.digest);
      expect(b.reports, `seed ${seed} reports`).toEqual(a.reports);
      expect(b.findings).toEqual(a.findings);
      expect(b.metrics.instructions).toBe(a.metrics.instructions);
      expect(b.metrics.sim_time_ns).toBe(a.metrics.sim_time_ns);
      expect(timeless(b), `seed ${seed} whole report`).toEqual(timeless(a));

      expect(a.outcome).toBe('completed');
      expect(a.findings).toEqual([]);
      expect(a.domains[0]).toMatchObject({ state: 'shutdown', exit_code: 0 });
      expect(a.console.guest).toBe('counter: all vCPUs done\n');
      expect(value(a, KEY_EXPECTED)).toBe(EXPECTED);
      expect(value(a, KEY_ATOMIC), `seed ${seed} atomic total`).toBe(EXPECTED);
      const r = value(a, KEY_RACY) ?? NaN;
      expect(r, `seed ${seed} racy total`).toBeLessThanOrEqual(EXPECTED);
      expect(r, `seed ${seed} racy total`).toBeGreaterThan(0);
      racy.add(r);
    }
    expect(racy.size, `racy totals over 20 seeds: ${[...racy].join(', ')}`).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it('a recorded schedule replays to the same run, whatever seed and strategy the replay names', async () => {
    const rec = await run(7, {}, { recordSchedule: true });
    const schedule = rec.result.schedule;
    expect(schedule).toBeInstanceOf(Int32Array);
    if (schedule === undefined) return;
    expect(schedule.length % 2).toBe(0);
    expect(schedule.length).toBeGreaterThan(0);
    for (const seedAndStrategy of [{ seed: 7 }, { seed: 99, strategy: 'round-robin' }]) {
      const rep = await run(seedAndStrategy.seed, { strategy: seedAndStrategy.strategy }, { replayRuns: schedule });
      expect(rep.report.outcome).toBe('completed');
      expect(rep.report.reason).toBeNull();
      expect(rep.report.digest).toBe(rec.report.digest);
      expect(rep.report.reports).toEqual(rec.report.reports);
      expect(rep.report.findings).toEqual(rec.report.findings);
      expect(rep.report.metrics.instructions).toBe(rec.report.metrics.instructions);
      expect(rep.report.metrics.sim_time_ns).toBe(rec.report.metrics.sim_time_ns);
    }
  }, 30_000);

  it('a replay that runs out of schedule, or has schedule left over, is aborted as diverged', async () => {
    const rec = await run(3, {}, { recordSchedule: true });
    const schedule = rec.result.schedule;
    if (schedule === undefined) throw new Error('no schedule recorded');
    const short = schedule.slice(0, (schedule.length >> 2) << 1);
    const r1 = await run(3, {}, { replayRuns: short });
    expect(r1.report.outcome).toBe('aborted');
    expect(r1.report.reason).toMatch(/replay diverged/);

    const long = new Int32Array(schedule.length + 2);
    long.set(schedule);
    long.set([0, 1], schedule.length);
    const r2 = await run(3, {}, { replayRuns: long });
    expect(r2.report.outcome).toBe('aborted');
    expect(r2.report.reason).toMatch(/replay diverged/);
  }, 30_000);

  it('round-robin is deterministic and exact', async () => {
    const a = (await run(1, { strategy: 'round-robin' })).report;
    const b = (await run(1, { strategy: 'round-robin' })).report;
    expect(b.digest).toBe(a.digest);
    expect(timeless(b)).toEqual(timeless(a));
    expect(a.outcome).toBe('completed');
    expect(value(a, KEY_ATOMIC)).toBe(EXPECTED);
    const r = value(a, KEY_RACY) ?? NaN;
    expect(r).toBeLessThanOrEqual(EXPECTED);
    expect(r).toBeGreaterThan(0);
  }, 30_000);
});

describe('serial engine: time slices', () => {
  it('vCPUs preempted mid-loop on a short time slice still count exactly with lock xadd', async () => {
    // 6 vCPUs on 2 pCPUs, a 5 us slice (15,000 cycles): every vCPU is switched out many times.
    const r = await runGuest(counterSource(3000), { vcpus: 6, pcpus: 2, engine: 'serial', seed: 5, maxInstructions: 0, timesliceUs: 5 });
    expect(r.outcome).toBe('completed');
    expect(r.domains[0]).toMatchObject({ state: 'shutdown', exit_code: 0 });
    expect(value(r, KEY_ATOMIC)).toBe(6 * 3000);
    expect(value(r, KEY_EXPECTED)).toBe(6 * 3000);
    const racy = value(r, KEY_RACY) ?? NaN;
    expect(racy).toBeLessThanOrEqual(6 * 3000);
    expect(racy).toBeGreaterThan(0);
    expect(r.metrics.context_switches).toBeGreaterThan(12);
  }, 30_000);
});
