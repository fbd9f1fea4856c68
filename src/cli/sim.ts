// `vcpulab sim`: load a scenario, build the machine, run it on an engine, print the report.
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { MAX_PCPUS } from '../../shared/machine.js';
import { EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, UserError } from '../errors.js';
import { MAX_VCPUS_PER_DOMAIN } from '../scenario/loader.js';
import { STRATEGIES } from '../engine/strategies/index.js';
import type { EngineResult } from '../engine/common.js';
import type { RunReport } from '../report.js';
import { formatHuman } from './human.js';
import { compareList, formatCompare, workloadOf, workloadWarnings, type Workload } from './compare.js';
import { labPrepare, labRun, replayCommand, RUN_DEFAULTS, simulate, type RunConfig } from '../lab.js';
import { sigintFlag } from './interrupt.js';
import { parseFreezeOn } from '../engine/freeze.js';
import { THREADS_MIN, THREADS_PER_CORE } from '../engine/threaded.js';
import { readScheduleFile, scheduleHeader, writeScheduleFile, type ReplayMode } from '../schedule.js';
import { intFlag as cliIntFlag } from './flags.js';

export { simulate, replayCommand, type RunConfig };

export const SIM_USAGE = `usage: vcpulab sim [flags]
  --scenario NAME|FILE     built-in scenario name or a .toml file (default: secure-realm)
  --compare [A,B,...]      run every design (or those named) on the same engine, seed and flags; one table
  --pcpus N                physical CPUs, 1..${MAX_PCPUS} (overrides [machine] pcpus)
  --vcpus N                vCPUs of the first domain, 1..${MAX_VCPUS_PER_DOMAIN} (overrides its vcpus)
  --engine threaded|serial threaded: pCPUs on worker threads (--threads); serial: seeded, replayable (default: threaded)
  --seed N                 run seed, 0..4294967295 (default: 1)
  --strategy NAME          serial engine: ${STRATEGIES.join(' | ')} (default: random)
  --pct-depth D            pct: the bug depth it aims at, d - 1 change points, 1..16 (default: 3)
  --max-instructions N     per-vCPU guest instruction limit, 0 = none (default: 100000000)
  --max-ms N               wall-clock limit in ms, 0 = none (default: 0)
  --slack N                lax sync: cycles a pCPU may run ahead of the slowest (default: 30000)
  --burst N                threaded: guest instructions between hypervisor checks (default: 4096)
  --threads N              threaded: worker threads hosting the pCPUs, 1..pCPUs (default: one per pCPU, at most
                           ${THREADS_PER_CORE} per core and at least ${THREADS_MIN}; pCPUs sharing a thread take turns)
  --watchdog-ms N          threaded: wall ms without progress before STALL, >= 1000 (default: 2000)
  --schedule-out FILE      serial: write the schedule (msgpack) for --replay
  --replay FILE            serial: replay a schedule written by --schedule-out (scenario and flags come from it)
  --trace FILE             stream every event to FILE (msgpack)
  --max-instances N        occurrences kept per finding kind in the report's instances (default: 1000)
  --freeze-on KIND[:CAUSE] stop at the first such finding; the report's freeze key holds every pCPU's state
  --agent-timeout-ms N     the most wall ms one agent call (setup, one event) may take, 1..3600000 (default: 5000)
  --inject-worker-fault P  threaded: make pCPU P's thread throw (tests the abort path)
  --json                   print only the JSON report on stdout
  --no-progress            no progress bar on a TTY
  -h, --help               this text`;

const DEFAULTS = RUN_DEFAULTS;
/** The least --watchdog-ms (see parseSimArgs). */
export const WATCHDOG_MS_MIN = 1000;

export interface SimFlags extends RunConfig {
  json: boolean;
  /** --compare: the designs to run, or undefined for a single run. */
  compare?: string[];
  progress: boolean;
  trace?: string;
  scheduleOut?: string;
  replay?: string;
}

const intFlag = (name: string, v: string | undefined, lo: number, hi: number): number | undefined => cliIntFlag('vcpulab sim', name, v, lo, hi);

export function parseSimArgs(argsIn: string[]): SimFlags | 'help' {
  // `--compare` may stand alone (every design) or take a list: give the bare form its value.
  const args = [...argsIn];
  const ci = args.indexOf('--compare');
  if (ci >= 0 && (ci + 1 >= args.length || args[ci + 1].startsWith('-'))) args.splice(ci + 1, 0, 'all');
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        scenario: { type: 'string' }, pcpus: { type: 'string' }, vcpus: { type: 'string' }, engine: { type: 'string' },
        seed: { type: 'string' }, strategy: { type: 'string' }, 'max-instructions': { type: 'string' },
        'max-ms': { type: 'string' }, slack: { type: 'string' }, burst: { type: 'string' }, 'watchdog-ms': { type: 'string' },
        'schedule-out': { type: 'string' }, replay: { type: 'string' }, trace: { type: 'string' }, json: { type: 'boolean' },
        'no-progress': { type: 'boolean' }, 'inject-worker-fault': { type: 'string' }, help: { type: 'boolean', short: 'h' },
        'no-oracles': { type: 'boolean' },
        compare: { type: 'string' }, 'pct-depth': { type: 'string' }, 'max-instances': { type: 'string' },
        'freeze-on': { type: 'string' },
        'agent-timeout-ms': { type: 'string' }, threads: { type: 'string' },
      },
    });
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0].replace(/\. To specify a positional argument.*$/, '');
    throw new UserError(`vcpulab sim: ${msg} (see vcpulab sim --help)`);
  }
  const v = parsed.values;
  if (v.help === true) return 'help';
  const engine = v.engine ?? 'threaded';
  if (engine !== 'threaded' && engine !== 'serial') throw new UserError(`vcpulab sim: --engine must be 'threaded' or 'serial', got '${engine}'`);
  const strategy = v.strategy ?? 'random';
  if (!(STRATEGIES as readonly string[]).includes(strategy)) throw new UserError(`vcpulab sim: --strategy must be one of ${STRATEGIES.join(', ')}, got '${strategy}'`);
  if (v.strategy !== undefined && engine !== 'serial') throw new UserError('vcpulab sim: --strategy needs --engine serial');
  if (v['pct-depth'] !== undefined && strategy !== 'pct') throw new UserError('vcpulab sim: --pct-depth needs --strategy pct');
  if (v['inject-worker-fault'] !== undefined && engine !== 'threaded') throw new UserError('vcpulab sim: --inject-worker-fault makes a pCPU thread throw: it needs --engine threaded');
  if (v.threads !== undefined && engine !== 'threaded') throw new UserError('vcpulab sim: --threads sets the threaded engine\'s worker threads: it needs --engine threaded');
  if (v['schedule-out'] !== undefined && engine !== 'serial') throw new UserError('vcpulab sim: --schedule-out needs --engine serial');
  const f: SimFlags = {
    scenario: v.scenario ?? 'secure-realm',
    pcpus: intFlag('pcpus', v.pcpus, 1, MAX_PCPUS),
    vcpus: intFlag('vcpus', v.vcpus, 1, MAX_VCPUS_PER_DOMAIN),
    engine,
    seed: intFlag('seed', v.seed, 0, 0xffffffff) ?? DEFAULTS.seed,
    strategy,
    maxInstructions: intFlag('max-instructions', v['max-instructions'], 0, Number.MAX_SAFE_INTEGER) ?? DEFAULTS.maxInstructions,
    maxMs: intFlag('max-ms', v['max-ms'], 0, 86_400_000) ?? 0,
    slack: intFlag('slack', v.slack, 1, 1e12) ?? DEFAULTS.slack,
    burst: intFlag('burst', v.burst, 1, 1 << 24) ?? DEFAULTS.burst,
    // The watchdog measures wall time without a finished burst: below a second, a healthy pCPU thread that the
    // OS keeps off a busy 2-core machine for a moment would be reported as hung.
    watchdogMs: intFlag('watchdog-ms', v['watchdog-ms'], WATCHDOG_MS_MIN, 3_600_000) ?? DEFAULTS.watchdogMs,
    pctDepth: intFlag('pct-depth', v['pct-depth'], 1, 16) ?? DEFAULTS.pctDepth,
    maxInstances: intFlag('max-instances', v['max-instances'], 0, 10_000_000) ?? DEFAULTS.maxInstances,
    agentTimeoutMs: intFlag('agent-timeout-ms', v['agent-timeout-ms'], 1, 3_600_000) ?? DEFAULTS.agentTimeoutMs,
    injectWorkerFault: intFlag('inject-worker-fault', v['inject-worker-fault'], 0, MAX_PCPUS - 1),
    threads: intFlag('threads', v.threads, 1, MAX_PCPUS),
    json: v.json === true,
    progress: v['no-progress'] !== true,
    trace: v.trace,
    scheduleOut: v['schedule-out'],
    replay: v.replay,
    // Hidden (README, Memory views): the inline oracles off; the run and its digest are the same.
    oracles: v['no-oracles'] === true ? false : undefined,
    freezeOn: v['freeze-on'],
  };
  if (f.freezeOn !== undefined) {
    parseFreezeOn(f.freezeOn); // checked here, before anything is loaded
    if (v['no-oracles'] === true) throw new UserError('vcpulab sim: --freeze-on waits for a finding: it does not go with --no-oracles');
  }
  if (v.compare !== undefined) {
    for (const k of ['scenario', 'replay', 'schedule-out', 'trace', 'inject-worker-fault', 'freeze-on'] as const) {
      if (v[k] !== undefined) throw new UserError(`vcpulab sim: --compare runs the built-in designs (or those it names); drop --${k}`);
    }
    f.compare = compareList(v.compare);
  }
  if (f.replay !== undefined) {
    for (const k of ['scenario', 'pcpus', 'vcpus', 'engine', 'seed', 'strategy', 'max-instructions', 'slack', 'burst', 'pct-depth'] as const) {
      if (v[k] !== undefined) throw new UserError(`vcpulab sim: --replay takes the scenario and flags from the schedule file; drop --${k}`);
    }
  }
  return f;
}

export function exitCodeFor(r: RunReport): number {
  if (r.outcome === 'aborted' && r.reason?.startsWith('interrupted') === true) return EXIT_INTERRUPTED;
  if (r.outcome === 'aborted') return EXIT_FAILURE;
  if (r.findings.some((f) => f.kind === 'GUEST_ASSERT')) return EXIT_FAILURE;
  return EXIT_OK;
}

export async function simCommand(args: string[]): Promise<number> {
  const f = parseSimArgs(args);
  if (f === 'help') { process.stdout.write(SIM_USAGE + '\n'); return EXIT_OK; }
  if (f.compare !== undefined) return compareCommand(f, f.compare);
  let config: RunConfig = f;
  let replayRuns: Int32Array | undefined;
  let replayMode: ReplayMode = 'exact';
  let expect: { digest: string; signature: string | null; hash: string } | undefined;
  let recordedFreezeOn: string | undefined;
  if (f.replay !== undefined) {
    const s = readScheduleFile(f.replay);
    config = { ...s.header.config, maxMs: f.maxMs, watchdogMs: f.watchdogMs, maxInstances: f.maxInstances, agentTimeoutMs: f.agentTimeoutMs };
    recordedFreezeOn = s.header.config.freezeOn;
    if (f.freezeOn !== undefined) config.freezeOn = f.freezeOn; // a replay may stop at its finding
    replayRuns = s.tape;
    replayMode = s.header.mode;
    expect = { digest: s.header.digest, signature: s.header.signature, hash: s.header.scenario_hash };
  }
  if (f.oracles === false) config = { ...config, oracles: false }; // a replay, too, may run unobserved
  const interrupt = sigintFlag();
  const tty = process.stdout.isTTY === true && !f.json && f.progress;
  const total = config.maxInstructions > 0 ? config.maxInstructions : 0;
  const bar = tty ? new cliProgress.SingleBar({ format: ' {bar} {value} guest instructions | {duration}s', hideCursor: true, clearOnComplete: true, noTTYOutput: false }, cliProgress.Presets.shades_classic) : undefined;
  bar?.start(total > 0 ? total : 1, 0);
  let out: { report: RunReport; result: EngineResult; traceError?: string };
  let scheduleHash = '';
  try {
    const prep = await labPrepare(config.scenario, { pcpus: config.pcpus, vcpus: config.vcpus, agentTimeoutMs: config.agentTimeoutMs });
    if (expect !== undefined && expect.hash !== '' && expect.hash !== prep.hash) {
      throw new UserError(`${f.replay}: scenario '${config.scenario}' changed since this schedule was written (content hash ${prep.hash.slice(0, 12)}, schedule ${expect.hash.slice(0, 12)}); it no longer replays`);
    }
    scheduleHash = prep.hash;
    out = await labRun(prep, config, {
      trace: f.trace, replayRuns, replayMode, recordSchedule: f.scheduleOut !== undefined, interrupt,
      onProgress: bar === undefined ? undefined : (n) => { bar.setTotal(Math.max(n, total)); bar.update(n); },
    });
  } finally {
    bar?.stop();
  }
  const { report, result } = out;
  if (f.scheduleOut !== undefined && result.schedule !== undefined) {
    writeScheduleFile(f.scheduleOut, { header: scheduleHeader(config, scheduleHash, report.digest, replayMode, null), tape: result.schedule });
    report.replay = replayCommand(config, f.scheduleOut);
  }
  if (f.replay !== undefined) report.replay = replayCommand(config, f.replay);
  process.stdout.write(f.json ? JSON.stringify(report, null, 2) + '\n' : formatHuman(report));
  // A frozen replay stops short of the recorded run: its digest is of a prefix.
  const frozenShort = report.freeze !== undefined && f.freezeOn !== undefined && recordedFreezeOn !== f.freezeOn;
  if (expect !== undefined && report.outcome !== 'aborted' && expect.digest !== '' && report.digest !== expect.digest && !frozenShort) {
    process.stderr.write(`${f.replay}: replay diverged: the run's digest is ${report.digest}, the schedule recorded ${expect.digest}\n`);
    return EXIT_FAILURE;
  }
  if (out.traceError !== undefined) { process.stderr.write(`${out.traceError}\n`); return EXIT_FAILURE; }
  return exitCodeFor(report);
}

/** Run each design with the same flags; print the table (or the reports with --json). Ctrl-C keeps what ran. */
async function compareCommand(f: SimFlags, designs: string[]): Promise<number> {
  const interrupt = sigintFlag();
  const reports: RunReport[] = [];
  const workloads: Workload[] = [];
  for (const scenario of designs) {
    if (interrupt.requested) break;
    if (!f.json) process.stderr.write(`running ${scenario} ...\n`);
    const prep = await labPrepare(scenario, { pcpus: f.pcpus, vcpus: f.vcpus, agentTimeoutMs: f.agentTimeoutMs });
    workloads.push(workloadOf(prep.scenario));
    // --threads is one flag for designs of different sizes: a design with fewer pCPUs gets one thread each.
    const threads = f.threads === undefined ? undefined : Math.min(f.threads, prep.spec.pcpus);
    const { report } = await labRun(prep, { ...f, scenario, threads }, { interrupt });
    reports.push(report);
  }
  const notes = workloadWarnings(workloads);
  process.stdout.write(f.json ? JSON.stringify({ compare: reports, workload_warnings: notes }, null, 2) + '\n' : formatCompare(reports, notes));
  if (interrupt.requested) return EXIT_INTERRUPTED;
  return reports.some((r) => r.outcome === 'aborted') ? EXIT_FAILURE : EXIT_OK;
}

export { EXIT_BAD_INPUT };
