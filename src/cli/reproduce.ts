// `vcpulab reproduce REPORT.json`: turn a finding of any run (typically a threaded one, whose interleaving
// was the OS's and cannot be replayed) into a serial schedule that replays: hunt serial schedules of the
// same scenario and flags until one shows the finding's signature, then shrink it.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, UserError } from '../errors.js';
import { RUN_DEFAULTS, type RunConfig } from '../lab.js';
import { sigintFlag } from './interrupt.js';
import { runHunt, type HuntResult } from '../hunt/campaign.js';
import { HUNT_DEFAULT_OUT, HUNT_DEFAULT_STRATEGIES, huntProgressBar, parseStrategies, SHRINK_BUDGET_DEFAULT } from './hunt.js';
import { intFlag as cliIntFlag } from './flags.js';

export const REPRODUCE_USAGE = `usage: vcpulab reproduce REPORT.json [flags]
  --finding N              which finding of the report, 1-based in its order (default: 1)
  --strategy S[,S...]      serial strategies to search with (default: ${HUNT_DEFAULT_STRATEGIES.join(',')})
  --runs N                 give up after N serial runs (default: 1000)
  --time-ms T              give up after T ms of wall time (default: 600000)
  --workers W              pool workers (default: the number of cores)
  --seed N                 campaign seed (default: 1)
  --out DIR                where the shrunk schedule goes (default: ${HUNT_DEFAULT_OUT})
  --shrink-budget N        replays the shrinking may spend (default: ${SHRINK_BUDGET_DEFAULT})
  --json                   print only the hunt's JSON result (with "reproduced") on stdout
  --no-progress            no progress bar on a TTY`;

interface ReportIn { scenario?: unknown; pcpus?: unknown; seed?: unknown; config?: Partial<RunConfig>; findings?: unknown }

const intFlag = (name: string, v: string | undefined, lo: number, hi: number): number | undefined => cliIntFlag('vcpulab reproduce', name, v, lo, hi);

export async function reproduceCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args, strict: true, allowPositionals: true,
      options: {
        finding: { type: 'string' }, strategy: { type: 'string' }, runs: { type: 'string' }, 'time-ms': { type: 'string' }, workers: { type: 'string' },
        seed: { type: 'string' }, out: { type: 'string' }, 'shrink-budget': { type: 'string' }, json: { type: 'boolean' }, 'no-progress': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    throw new UserError(`vcpulab reproduce: ${(e as Error).message.split('\n')[0]} (see vcpulab reproduce --help)`);
  }
  const v = parsed.values;
  if (v.help === true) { process.stdout.write(REPRODUCE_USAGE + '\n'); return EXIT_OK; }
  if (parsed.positionals.length !== 1) throw new UserError(`vcpulab reproduce: give one REPORT.json (a sim --json report)`);
  const file = parsed.positionals[0];
  const { config, signature } = readFinding(file, intFlag('finding', v.finding, 1, 1_000_000) ?? 1);
  const interrupt = sigintFlag();
  const bar = huntProgressBar(v['no-progress'] !== true && v.json !== true);
  const [kind, cause] = signature.split(':');
  let res: HuntResult;
  try {
    res = await runHunt({
      scenario: config.scenario, pcpus: config.pcpus, vcpus: config.vcpus,
      strategies: v.strategy !== undefined ? parseStrategies('reproduce', v.strategy) : HUNT_DEFAULT_STRATEGIES,
      runs: intFlag('runs', v.runs, 1, 10_000_000) ?? 1000, timeMs: intFlag('time-ms', v['time-ms'], 0, 86_400_000) ?? 600_000,
      workers: intFlag('workers', v.workers, 1, 256) ?? availableParallelism(), seed: intFlag('seed', v.seed, 0, 0xffffffff) ?? 1,
      until: { kind, cause, signature }, out: v.out ?? HUNT_DEFAULT_OUT, shrink: true,
      shrinkBudget: intFlag('shrink-budget', v['shrink-budget'], 0, 1_000_000) ?? SHRINK_BUDGET_DEFAULT,
      maxInstructions: config.maxInstructions ?? RUN_DEFAULTS.maxInstructions, slack: config.slack ?? RUN_DEFAULTS.slack,
      pctDepth: config.pctDepth ?? RUN_DEFAULTS.pctDepth, interrupt, onProgress: bar.update,
      shrinkOnly: signature,
    });
  } finally {
    bar.stop();
  }
  const row = res.signatures.find((s) => s.signature === signature);
  if (v.json === true) process.stdout.write(JSON.stringify({ reproduced: row !== undefined, signature, ...res }, null, 2) + '\n');
  else if (row !== undefined) {
    const sh = row.shrunk;
    process.stdout.write(`reproduced ${signature} on serial run ${row.first.run} (${row.first.strategy}, seed ${row.first.seed}) after ${res.hunt.runs} runs in ${(res.hunt.wall_ms / 1000).toFixed(1)} s\n` +
      (row.schedule !== null && sh !== null
        ? `schedule: ${row.schedule} (steps ${sh.steps_before} -> ${sh.steps_after}, preemptions ${sh.preemptions_before} -> ${sh.preemptions_after})\nreplay: vcpulab replay ${row.schedule}\n`
        : ''));
  } else {
    const same = res.signatures.filter((s) => s.kind === kind).map((s) => s.signature);
    process.stdout.write(`gave up: ${signature} not reached in ${res.hunt.runs} serial runs (${(res.hunt.wall_ms / 1000).toFixed(1)} s${res.hunt.stopped === 'time' ? ', --time-ms reached' : ''}); ` +
      `the runs found ${res.signatures.length} other signatures${same.length > 0 ? `, of the same kind: ${same.join(' ')}` : ''}\n`);
  }
  if (res.hunt.stopped === 'interrupted') return EXIT_INTERRUPTED;
  return row !== undefined ? EXIT_OK : EXIT_FAILURE;
}

/** The run's flags and the chosen finding's signature; every defect is one line naming the file. */
function readFinding(file: string, n: number): { config: Partial<RunConfig> & { scenario: string }; signature: string } {
  let rep: ReportIn;
  try { rep = JSON.parse(readFileSync(file, 'utf8')) as ReportIn; } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? 'not JSON';
    throw new UserError(`${file}: cannot read the report (${why}); give the output of vcpulab sim --json`);
  }
  if (rep === null || typeof rep !== 'object' || !Array.isArray(rep.findings)) throw new UserError(`${file}: field 'findings' is missing: not a vcpulab sim --json report`);
  const fs = rep.findings as { kind?: unknown; first?: { signature?: unknown } }[];
  if (fs.length === 0) throw new UserError(`${file}: the report has no findings to reproduce`);
  if (n > fs.length) throw new UserError(`${file}: --finding ${n}: the report has ${fs.length} finding${fs.length === 1 ? '' : 's'}`);
  const sig = fs[n - 1]?.first?.signature;
  if (typeof sig !== 'string' || sig.split(':').length !== 3) throw new UserError(`${file}: field 'findings[${n - 1}].first.signature' is missing (a report from an older vcpulab?)`);
  const c = rep.config ?? {};
  const scenario = typeof c.scenario === 'string' ? c.scenario : typeof rep.scenario === 'string' ? rep.scenario : '';
  if (scenario === '') throw new UserError(`${file}: field 'scenario' is missing`);
  const pcpus = Number.isInteger(c.pcpus) ? c.pcpus : Number.isInteger(rep.pcpus) ? rep.pcpus as number : undefined;
  return { config: { ...c, scenario, pcpus }, signature: sig };
}
