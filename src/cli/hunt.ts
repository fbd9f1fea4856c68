// `vcpulab hunt`: many serial schedules on a worker pool, each distinct bug once with a shrunk schedule.
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { MAX_PCPUS } from '../../shared/machine.js';
import { EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, UserError } from '../errors.js';
import { MAX_VCPUS_PER_DOMAIN } from '../scenario/loader.js';
import { STRATEGIES } from '../engine/strategies/index.js';
import { FINDING_KINDS } from '../oracles/findings.js';
import { RUN_DEFAULTS } from '../lab.js';
import { sigintFlag } from './interrupt.js';
import { HuntLost, runHunt, type HuntOptions, type HuntProgress, type HuntResult, type UntilSpec } from '../hunt/campaign.js';
import type { QueueUrl } from '../hunt/queue.js';
import type { CampaignProgress } from '../hunt/producer.js';
import { parseQueueUrl } from '../hunt/queue-url.js';
import { intFlag as cliIntFlag } from './flags.js';

/** Most runs per job of a distributed hunt (--batch). */
export const BATCH_DEFAULT = 4;

/** Strategies a hunt takes turns with by default: the samplers that find different kinds of races. */
export const HUNT_DEFAULT_STRATEGIES = ['random', 'preempt', 'pct', 'pos'];
export const HUNT_DEFAULT_RUNS = 200;
export const HUNT_DEFAULT_OUT = 'hunt-schedules';
export const SHRINK_BUDGET_DEFAULT = 200;

export const HUNT_USAGE = `usage: vcpulab hunt [flags]
  --scenario NAME|FILE     built-in scenario name or a .toml file (default: secure-realm)
  --strategy S[,S...]      serial strategies taking turns, from ${STRATEGIES.join(', ')} (default: ${HUNT_DEFAULT_STRATEGIES.join(',')})
  --runs N                 schedules to run, 1..10000000 (default: ${HUNT_DEFAULT_RUNS})
  --time-ms T              stop starting runs after T ms of wall time, 0 = no limit (default: 0)
  --workers W              pool workers, 1..256 (default: the number of cores)
  --seed N                 campaign seed; run i's seed derives from it (default: 1)
  --until KIND[:CAUSE]     stop at the first run that shows this finding (e.g. IPI_MISDIRECTED:icr_window)
  --out DIR                where shrunk schedules go, one DIR/<signature>.schedule each (default: ${HUNT_DEFAULT_OUT})
  --no-shrink              keep no schedules (no shrinking)
  --shrink-budget N        replays each signature's shrinking may spend (default: ${SHRINK_BUDGET_DEFAULT})
  --pct-depth D            pct: bug depth, d - 1 change points, 1..16 (default: 3)
  --pcpus N, --vcpus N     as for sim
  --max-instructions N     per-vCPU guest instruction limit of each run (default: ${RUN_DEFAULTS.maxInstructions})
  --slack N                lax sync cycles (default: ${RUN_DEFAULTS.slack})
  --queue URL              distributed: publish the campaign on the BullMQ server redis://HOST:PORT[/DB] for
                           \`vcpulab worker\` processes instead of running a local pool
  --batch N                with --queue: most runs per job, 1..64 (default: ${BATCH_DEFAULT})
  --status                 with --queue: show the campaigns running on that server and exit
  --json                   print only the JSON result on stdout
  --no-progress            no progress bar on a TTY
  -h, --help               this text`;

const intFlag = (name: string, v: string | undefined, lo: number, hi: number): number | undefined => cliIntFlag('vcpulab hunt', name, v, lo, hi);

/** `KIND[:CAUSE]`, the kind one of the finding kinds. */
export function parseUntil(flag: string, v: string): UntilSpec {
  const [kind, cause, ...rest] = v.split(':');
  if (!(FINDING_KINDS as readonly string[]).includes(kind) || rest.length > 0 || cause === '') {
    throw new UserError(`vcpulab ${flag}: --until must be KIND[:CAUSE] with KIND one of ${FINDING_KINDS.join(', ')}, got '${v}'`);
  }
  return cause === undefined ? { kind } : { kind, cause };
}

export function parseStrategies(flag: string, v: string): string[] {
  const list = v.split(',').map((s) => s.trim());
  for (const s of list) {
    if (!(STRATEGIES as readonly string[]).includes(s)) throw new UserError(`vcpulab ${flag}: --strategy: unknown strategy '${s}' (expected ${STRATEGIES.join(', ')})`);
  }
  if (new Set(list).size !== list.length) throw new UserError(`vcpulab ${flag}: --strategy names a strategy twice`);
  return list;
}

export interface HuntFlags extends Omit<HuntOptions, 'interrupt' | 'onProgress'> {
  json: boolean; progress: boolean;
  queue?: QueueUrl; batch: number; status: boolean;
}

export function parseHuntArgs(args: string[]): HuntFlags | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args, strict: true, allowPositionals: false,
      options: {
        scenario: { type: 'string' }, strategy: { type: 'string' }, runs: { type: 'string' }, 'time-ms': { type: 'string' },
        workers: { type: 'string' }, seed: { type: 'string' }, until: { type: 'string' }, out: { type: 'string' },
        'no-shrink': { type: 'boolean' }, 'shrink-budget': { type: 'string' }, 'pct-depth': { type: 'string' },
        pcpus: { type: 'string' }, vcpus: { type: 'string' }, 'max-instructions': { type: 'string' }, slack: { type: 'string' },
        json: { type: 'boolean' }, 'no-progress': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
        queue: { type: 'string' }, batch: { type: 'string' }, status: { type: 'boolean' },
      },
    });
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0].replace(/\. To specify a positional argument.*$/, '');
    throw new UserError(`vcpulab hunt: ${msg} (see vcpulab hunt --help)`);
  }
  const v = parsed.values;
  if (v.help === true) return 'help';
  if (v.out !== undefined && v['no-shrink'] === true) throw new UserError('vcpulab hunt: --out and --no-shrink together keep nothing in DIR; drop one');
  if (v.queue === undefined) {
    for (const k of ['batch', 'status'] as const) if (v[k] !== undefined) throw new UserError(`vcpulab hunt: --${k} needs --queue URL`);
  } else if (v.workers !== undefined) {
    throw new UserError('vcpulab hunt: --workers sizes the local pool; with --queue the pools are the workers\' (vcpulab worker --workers W)');
  }
  return {
    queue: v.queue !== undefined ? parseQueueUrl('hunt', v.queue) : undefined,
    batch: intFlag('batch', v.batch, 1, 64) ?? BATCH_DEFAULT,
    status: v.status === true,
    scenario: v.scenario ?? 'secure-realm',
    strategies: v.strategy !== undefined ? parseStrategies('hunt', v.strategy) : HUNT_DEFAULT_STRATEGIES,
    runs: intFlag('runs', v.runs, 1, 10_000_000) ?? HUNT_DEFAULT_RUNS,
    timeMs: intFlag('time-ms', v['time-ms'], 0, 86_400_000 * 30) ?? 0,
    workers: intFlag('workers', v.workers, 1, 256) ?? availableParallelism(),
    seed: intFlag('seed', v.seed, 0, 0xffffffff) ?? 1,
    until: v.until !== undefined ? parseUntil('hunt', v.until) : undefined,
    out: v['no-shrink'] === true ? null : v.out ?? HUNT_DEFAULT_OUT,
    shrink: v['no-shrink'] !== true,
    shrinkBudget: intFlag('shrink-budget', v['shrink-budget'], 0, 1_000_000) ?? SHRINK_BUDGET_DEFAULT,
    pctDepth: intFlag('pct-depth', v['pct-depth'], 1, 16) ?? RUN_DEFAULTS.pctDepth,
    pcpus: intFlag('pcpus', v.pcpus, 1, MAX_PCPUS),
    vcpus: intFlag('vcpus', v.vcpus, 1, MAX_VCPUS_PER_DOMAIN),
    maxInstructions: intFlag('max-instructions', v['max-instructions'], 0, Number.MAX_SAFE_INTEGER) ?? RUN_DEFAULTS.maxInstructions,
    slack: intFlag('slack', v.slack, 1, 1e12) ?? RUN_DEFAULTS.slack,
    json: v.json === true,
    progress: v['no-progress'] !== true,
  };
}

/** A progress bar on stderr when it is a terminal. */
export function huntProgressBar(enabled: boolean): { update: (p: HuntProgress) => void; stop: () => void } {
  if (!enabled || process.stderr.isTTY !== true) return { update: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar({
    format: ' {phase} {bar} {value}/{total} | {rate} runs/s{machines} | {sigs} signatures | {duration}s', hideCursor: true, clearOnComplete: true, stream: process.stderr,
  }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    update: (p) => {
      const m = Object.entries(p.machines ?? {});
      // Distributed: runs/s of each worker process, from the batches' completion events.
      const machines = m.length === 0 ? '' : ` (${m.map(([k, r]) => `${k} ${r.toFixed(1)}`).join(', ')})`;
      const payload = { phase: p.phase === 'runs' ? 'runs  ' : 'shrink', rate: p.runsPerS.toFixed(1), machines, sigs: p.signatures };
      if (!started) { bar.start(p.total, p.done, payload); started = true; }
      bar.setTotal(p.total);
      bar.update(p.done, payload);
    },
    stop: () => { if (started) bar.stop(); },
  };
}

export async function huntCommand(args: string[]): Promise<number> {
  const f = parseHuntArgs(args);
  if (f === 'help') { process.stdout.write(HUNT_USAGE + '\n'); return EXIT_OK; }
  // BullMQ and ioredis load only for a distributed hunt: a local one, and `sim`, never touch them.
  const dist = f.queue === undefined ? null : await import('../hunt/producer.js');
  if (f.queue !== undefined && dist !== null) {
    await (await import('../hunt/queue.js')).queueProbe('hunt', f.queue);
    if (f.status) {
      const list = await dist.queueStatus(f.queue);
      process.stdout.write(f.json ? JSON.stringify({ queue: f.queue.shown, campaigns: list }, null, 2) + '\n' : dist.formatStatus(f.queue, list));
      return EXIT_OK;
    }
  }
  const interrupt = sigintFlag();
  const bar = huntProgressBar(f.progress && !f.json);
  let latest: CampaignProgress | null = null;
  const onProgress = (p: HuntProgress): void => {
    latest = { phase: p.phase, done: p.done, total: p.total, runs_per_s: Math.round(p.runsPerS * 100) / 100, signatures: p.signatures, machines: p.machines ?? {} };
    bar.update(p);
  };
  let res: HuntResult;
  try {
    const q = f.queue;
    res = q === undefined || dist === null ? await runHunt({ ...f, interrupt, onProgress })
      : await runHunt({ ...f, interrupt, onProgress }, dist.queueExecutor({
        queue: q, batch: f.batch, scenario: f.scenario, strategies: f.strategies, runs: f.runs, seed: f.seed, pcpus: f.pcpus, vcpus: f.vcpus,
        warn: (line) => { process.stderr.write(line + '\n'); },
      }, () => latest));
  } catch (e) {
    if (!(e instanceof HuntLost)) throw e;
    bar.stop();
    process.stderr.write(`vcpulab hunt: ${e.message}, before any run finished\n`);
    return EXIT_FAILURE;
  } finally {
    bar.stop();
  }
  process.stdout.write(f.json ? JSON.stringify(res, null, 2) + '\n' : formatHunt(res));
  if (res.hunt.stopped === 'lost') {
    process.stderr.write(`vcpulab hunt: ${res.hunt.lost ?? 'lost the queue'}: partial results (${res.hunt.runs} runs)\n`);
    return EXIT_FAILURE;
  }
  return res.hunt.stopped === 'interrupted' ? EXIT_INTERRUPTED : EXIT_OK;
}

/** The hunt as a table: one row per signature, then per strategy. */
export function formatHunt(r: HuntResult): string {
  const h = r.hunt;
  const out: string[] = [];
  const why = h.stopped === null ? '' : h.stopped === 'until' ? ' (stopped: --until matched)' : h.stopped === 'time' ? ' (stopped: --time-ms reached)'
    : h.stopped === 'lost' ? ' (queue lost: partial results)' : ' (interrupted: partial results)';
  const q = h.queue as { url: string; campaign: string; per_worker: Record<string, number> } | undefined;
  const where = q === undefined ? `${h.workers} workers` : `${h.workers} worker processes via ${q.url} (campaign ${q.campaign})`;
  out.push(`hunt ${h.scenario}: ${h.runs} runs of ${h.strategies.join(', ')} on ${where} in ${(h.wall_ms / 1000).toFixed(1)} s ` +
    `(${h.runs_per_s} runs/s), campaign seed ${h.seed}${why}`);
  if (r.signatures.length === 0) out.push('no findings');
  else {
    out.push('');
    out.push(`${'#'.padStart(3)} ${'kind'.padEnd(20)} ${'cause'.padEnd(18)} ${'hits'.padStart(6)}  ${'first run'.padEnd(22)} ${'steps'.padEnd(16)} ${'preemptions'.padEnd(12)} signature / schedule`);
    for (const [i, s] of r.signatures.entries()) {
      const first = `${s.first.run} (${s.first.strategy} ${s.first.seed})`;
      const sh = s.shrunk;
      out.push(`${String(i + 1).padStart(3)} ${s.kind.padEnd(20)} ${s.cause.padEnd(18)} ${String(s.hits).padStart(6)}  ${first.padEnd(22)} ` +
        `${(sh === null ? '-' : `${sh.steps_before} -> ${sh.steps_after}`).padEnd(16)} ${(sh === null ? '-' : `${sh.preemptions_before} -> ${sh.preemptions_after}`).padEnd(12)} ${s.signature}`);
      if (s.schedule !== null && sh !== null) {
        const from = sh.from.run === null ? `a pct witness, seed ${sh.from.seed}` : `run ${sh.from.run} (${sh.from.strategy})`;
        out.push(`${''.padEnd(24)} replay: vcpulab replay ${s.schedule}   (shrunk from ${from}, ${sh.replays} replays)`);
      }
    }
  }
  if (h.signatures_dropped > 0) out.push(`(${h.signatures_dropped} more signatures not kept: over the table's cap)`);
  out.push('');
  out.push('per strategy: runs, and for each signature (#n, in the order above) the run that first hit it');
  for (const [name, ps] of Object.entries(r.per_strategy)) {
    const hits = r.signatures.map((s, i) => (ps.first_hit[s.signature] === undefined ? `#${i + 1} -` : `#${i + 1} ${ps.first_hit[s.signature]}`));
    out.push(`  ${name.padEnd(12)} ${String(ps.runs).padStart(7)} runs   ${hits.join('  ')}`);
  }
  if (q !== undefined) {
    out.push('');
    out.push(`per worker process: runs returned (shrinking's replays included)`);
    for (const [name, n] of Object.entries(q.per_worker)) out.push(`  ${name.padEnd(24)} ${String(n).padStart(7)}`);
  }
  return out.join('\n') + '\n';
}
