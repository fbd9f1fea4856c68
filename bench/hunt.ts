// Hunt rows of `npm run bench` (DESIGN.md §8):
//  - hunt runs per wall second on a pool of 1 and of 2 workers (secure-realm, strategy random, no
//    shrinking), and the 2/1 speed-up against the bare interpreter loop's own 2-worker speed-up measured
//    beside it (target >= 0.9);
//  - per-run start-up inside a warm worker: a prepared secure-realm run cut to 1 instruction per vCPU
//    (build the machine, the collector and the pCPUs, run nothing, build the report) against a whole
//    secure-realm serial run (target < 5%);
//  - for each built-in race, the runs a campaign needs to first hit it, per strategy: the median over
//    CAMPAIGNS campaign seeds of (index of the first hitting run + 1), runs capped at CAP;
//  - a distributed hunt (DESIGN.md §9) against the local pool on the same campaign: two `vcpulab worker`
//    processes of one pool worker each on a private redis-server, against the local pool of two workers
//    (target >= 0.9). `node dist/bench/hunt.js --queue-only` runs that row alone.
// Ratios are measured in one run and reported, never asserted.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { labPrepare, labRun, RUN_DEFAULTS, type RunConfig } from '../src/lab.js';
import { runHunt, type HuntOptions, type UntilSpec } from '../src/hunt/campaign.js';
import { queueExecutor } from '../src/hunt/producer.js';
import { parseQueueUrl } from '../src/hunt/queue.js';
import { bareInterp, median } from './floors.js';
import { errText, fmtN, r2, r3, runStandalone } from './format.js';

export interface HuntRow { name: string; kind: 'hunt'; value: number; unit: string; show: string; note: string; detail: Record<string, unknown>; error?: string }
export interface HuntRatio { name: string; value: number; target: number; targetText: string; how: string; lowerIsBetter?: boolean }

export const HUNT_METHOD = 'kind "hunt" rows (bench/hunt.ts): runs/s = hunt.runs_per_s of `vcpulab hunt --scenario secure-realm --strategy random --no-shrink` (runs phase only, pool already started), 1 and 2 workers; distributed: the same campaign through `--queue` on a private redis-server with two `vcpulab worker --workers 1` processes, against the local pool of 2 measured just before, ratio per repetition; with the bare interpreter loop on 1 and 2 workers measured just before; warm start-up = wall of a prepared secure-realm serial run with --max-instructions 1 over the wall of a whole one (median of 5 each, same process); runs to first hit = per race and strategy, over campaign seeds 1..N, the median of (first hitting run + 1) of a campaign with --until, capped.';

const LOST_UPDATE = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../test/fixtures/lost-update/lost-update.toml' : '../../test/fixtures/lost-update/lost-update.toml', import.meta.url));

/** The built-in races: a scenario and what a hunt waits for. */
const RACES: { name: string; scenario: string; until: UntilSpec }[] = [
  { name: 'secure-realm ICR window', scenario: 'secure-realm', until: { kind: 'IPI_MISDIRECTED', cause: 'icr_window' } },
  { name: 'secure-realm stale vCPU map', scenario: 'secure-realm', until: { kind: 'IPI_MISDIRECTED', cause: 'stale_map' } },
  { name: 'secure-realm-init guest INIT', scenario: 'secure-realm-init', until: { kind: 'HOST_INIT' } },
  { name: 'lost update (test fixture)', scenario: LOST_UPDATE, until: { kind: 'GUEST_ASSERT' } },
];
const STRATEGIES = ['random', 'preempt', 'pct', 'pos'];

/** The median, the mean of the two middle values for an even count (Infinity: not found within the cap). */
function median2(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b), n = s.length;
  return n % 2 === 1 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

export function huntOpts(o: Partial<HuntOptions> & { scenario: string }): HuntOptions {
  return {
    strategies: ['random'], runs: 10, timeMs: 0, workers: 1, seed: 1, out: null, shrink: false, shrinkBudget: 0,
    maxInstructions: RUN_DEFAULTS.maxInstructions, slack: RUN_DEFAULTS.slack, pctDepth: RUN_DEFAULTS.pctDepth, interrupt: { requested: false }, ...o,
  };
}

const BIN = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../bin/vcpulab.js' : '../../bin/vcpulab.js', import.meta.url));

/** A private redis-server on a free loopback port (no persistence, noeviction), or why there is none. */
async function benchRedis(): Promise<{ url: string; stop: () => void } | string> {
  if (spawnSync('redis-server', ['--version']).status !== 0) return 'redis-server not found (apt-get install -y redis-server)';
  const port = await new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
  });
  const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    p.stdout?.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('Ready to accept connections')) resolve(); });
    p.on('exit', () => reject(new Error(`redis-server did not start: ${out.slice(-200)}`)));
  });
  return { url: `redis://127.0.0.1:${port}`, stop: () => { p.kill('SIGTERM'); } };
}

/** A `vcpulab worker` process, once it says it waits for campaigns. */
function benchWorker(url: string, workers: number): Promise<ChildProcess> {
  const p = spawn(process.execPath, [BIN, 'worker', '--queue', url, '--workers', String(workers)], { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    p.stderr?.on('data', (d: Buffer) => { err += d.toString(); if (err.includes('waiting for campaigns')) resolve(p); });
    p.on('exit', (code) => reject(new Error(`vcpulab worker exited ${code}: ${err.slice(-200)}`)));
  });
}

export async function huntQueueBench(o: { quick: boolean; reps: number; progress: (line: string) => void }): Promise<{ rows: HuntRow[]; ratios: HuntRatio[] }> {
  const rows: HuntRow[] = [], ratios: HuntRatio[] = [];
  const name = 'distributed hunt runs/s, secure-realm random, 2 worker processes x 1';
  const redis = await benchRedis();
  if (typeof redis === 'string') {
    rows.push({ name, kind: 'hunt', value: NaN, unit: 'runs/s', show: 'failed', note: redis, detail: {}, error: redis });
    return { rows, ratios };
  }
  const runs = o.quick ? 16 : 160;
  const workers: ChildProcess[] = [];
  try {
    workers.push(await benchWorker(redis.url, 1), await benchWorker(redis.url, 1));
    const q = parseQueueUrl('bench', redis.url);
    const local: number[] = [], dist: number[] = [], rel: number[] = [];
    // The local hunt warms each pool worker with its calibration run before the timing starts; the worker
    // processes get one small untimed campaign for the same.
    const warm = huntOpts({ scenario: 'secure-realm', runs: 8, workers: 2 });
    await runHunt(warm, queueExecutor({ queue: q, batch: 1, scenario: 'secure-realm', strategies: warm.strategies, runs: 8, seed: warm.seed, warn: o.progress }, () => null));
    for (let r = 0; r < o.reps; r++) {
      const opts = huntOpts({ scenario: 'secure-realm', runs, workers: 2 });
      const l = await runHunt(opts);
      const d = await runHunt(opts, queueExecutor({ queue: q, batch: 4, scenario: 'secure-realm', strategies: opts.strategies, runs, seed: opts.seed, warn: o.progress }, () => null));
      local.push(l.hunt.runs_per_s); dist.push(d.hunt.runs_per_s); rel.push(d.hunt.runs_per_s / l.hunt.runs_per_s);
      o.progress(`hunt: ${l.hunt.runs_per_s} runs/s on the local pool of 2, ${d.hunt.runs_per_s} on 2 worker processes via BullMQ`);
    }
    rows.push({ name: 'hunt runs/s, secure-realm random, local pool of 2 (beside the distributed row)', kind: 'hunt', value: median(local), unit: 'runs/s', show: fmtN(median(local)),
      note: `reps ${local.map(fmtN).join(', ')}; ${runs} runs each`, detail: { reps: local } });
    rows.push({ name, kind: 'hunt', value: median(dist), unit: 'runs/s', show: fmtN(median(dist)), note: `reps ${dist.map(fmtN).join(', ')}; batches of up to 4 runs, redis-server on loopback`, detail: { reps: dist } });
    ratios.push({ name: 'distributed hunt (2 worker processes) / local pool (2 workers), runs/s', value: median(rel), target: 0.9, targetText: '>= 0.90',
      how: `hunt runs/s via BullMQ / local pool, same campaign, per repetition: ${rel.map(r2).join(', ')}` });
  } catch (e) {
    rows.push({ name, kind: 'hunt', value: NaN, unit: 'runs/s', show: 'failed', note: errText(e), detail: {}, error: errText(e) });
  } finally {
    for (const w of workers) w.kill('SIGTERM');
    redis.stop();
  }
  return { rows, ratios };
}

export async function huntBench(o: { quick: boolean; reps: number; progress: (line: string) => void }): Promise<{ rows: HuntRow[]; ratios: HuntRatio[] }> {
  if (process.argv.includes('--queue-only')) return huntQueueBench(o);
  const rows: HuntRow[] = [];
  const ratios: HuntRatio[] = [];
  const row = (name: string, value: number, unit: string, note: string, detail: Record<string, unknown> = {}, show?: string): void => {
    rows.push({ name, kind: 'hunt', value, unit, show: show ?? fmtN(value), note, detail });
  };

  // ---- pool throughput against the bare loop ----
  // Each new pool's workers tier the interpreter up on their own (with concurrent recompilation off, on their
  // own thread): over a few dozen runs that warm-up is most of the difference between 1 and 2 workers, so the
  // rows run enough schedules to measure the steady state a real hunt spends its time in.
  const runs = o.quick ? 8 : 240;
  const speedups: number[] = [], bareSpeedups: number[] = [], rps1: number[] = [], rps2: number[] = [];
  for (let r = 0; r < o.reps; r++) {
    const iters = o.quick ? 4_000_000 : 25_000_000;
    const b1 = await bareInterp(1, iters), b2 = await bareInterp(2, iters);
    const h1 = await runHunt(huntOpts({ scenario: 'secure-realm', runs, workers: 1 }));
    const h2 = await runHunt(huntOpts({ scenario: 'secure-realm', runs, workers: 2 }));
    rps1.push(h1.hunt.runs_per_s); rps2.push(h2.hunt.runs_per_s);
    speedups.push(h2.hunt.runs_per_s / h1.hunt.runs_per_s); bareSpeedups.push(b2.mips / b1.mips);
    o.progress(`hunt: ${h1.hunt.runs_per_s} runs/s on 1 worker, ${h2.hunt.runs_per_s} on 2; bare loop ${r2(b2.mips / b1.mips)}x`);
  }
  row('hunt runs/s, secure-realm random, 1 worker', median(rps1), 'runs/s', `reps ${rps1.map(fmtN).join(', ')}; ${runs} runs each`, { reps: rps1 });
  row('hunt runs/s, secure-realm random, 2 workers', median(rps2), 'runs/s', `reps ${rps2.map(fmtN).join(', ')}`, { reps: rps2 });
  const rel = speedups.map((s, i) => s / bareSpeedups[i]);
  ratios.push({ name: 'hunt 2/1-worker speed-up vs bare 2-worker speed-up', value: median(rel), target: 0.9, targetText: '>= 0.90',
    how: `(hunt runs/s 2 workers / 1 worker) / (bare 2 workers / 1 worker), per repetition; hunt ${speedups.map(r2).join(', ')}, bare ${bareSpeedups.map(r2).join(', ')}` });

  // ---- start-up inside a warm worker ----
  const prep = await labPrepare('secure-realm');
  const cfg: RunConfig = { scenario: 'secure-realm', engine: 'serial', seed: 1, strategy: 'random', maxInstructions: RUN_DEFAULTS.maxInstructions, maxMs: 0,
    slack: RUN_DEFAULTS.slack, burst: RUN_DEFAULTS.burst, watchdogMs: RUN_DEFAULTS.watchdogMs };
  const whole: number[] = [], start: number[] = [];
  for (let i = 0; i < 6; i++) {
    let t = performance.now();
    await labRun(prep, cfg);
    if (i > 0) whole.push(performance.now() - t); // the first run warms the JIT
    t = performance.now();
    await labRun(prep, { ...cfg, maxInstructions: 1 });
    if (i > 0) start.push(performance.now() - t);
  }
  row('secure-realm serial run, warm worker', median(whole), 'ms', `median of ${whole.length}`, { reps: whole.map(r2) });
  row('per-run start-up in a warm worker (no re-read, no re-assembly)', median(start), 'ms', 'build machine, collector, pCPUs; report', { reps: start.map(r3) });
  ratios.push({ name: 'per-run start-up / secure-realm run', value: median(start) / median(whole), target: 0.05, targetText: '< 0.05', lowerIsBetter: true,
    how: 'prepared secure-realm with --max-instructions 1 / a whole serial run, same process' });

  // ---- runs to first hit, per race and strategy ----
  const seeds = o.quick ? 2 : 10;
  const cap = o.quick ? 12 : 80;
  const workers = availableParallelism();
  for (const race of RACES) {
    for (const s of STRATEGIES) {
      const need: number[] = [];
      let found = 0;
      try {
        for (let seed = 1; seed <= seeds; seed++) {
          const h = await runHunt(huntOpts({ scenario: race.scenario, strategies: [s], runs: cap, workers, seed, until: race.until }));
          if (h.hunt.stopped === 'until') { need.push(h.hunt.runs); found++; } else need.push(Infinity);
        }
        const med = median2(need);
        const show = Number.isFinite(med) ? String(med) : `> ${cap}`;
        row(`runs to first hit: ${race.name}, ${s}`, Number.isFinite(med) ? med : NaN, 'runs', `found by ${found} of ${seeds} campaigns (runs capped at ${cap}); each: ${need.map((x) => (Number.isFinite(x) ? x : '-')).join(' ')}`,
          { per_seed: need.map((x) => (Number.isFinite(x) ? x : null)), found, seeds, cap }, show);
      } catch (e) {
        rows.push({ name: `runs to first hit: ${race.name}, ${s}`, kind: 'hunt', value: NaN, unit: 'runs', show: 'failed', note: errText(e), detail: {}, error: errText(e) });
      }
      o.progress(`hunt: ${race.name} with ${s}: ${rows[rows.length - 1].show}`);
    }
  }
  const q = await huntQueueBench(o);
  rows.push(...q.rows);
  ratios.push(...q.ratios);
  return { rows, ratios };
}

await runStandalone(import.meta.url, huntBench);
