// One simulation as a library call (DESIGN.md §8): the CLI, the bench, hunt workers and tests all run
// through here. `labPrepare` does everything that depends only on the scenario and the CPU counts
// (read and check the TOML, assemble the programs, load the agent modules, hash the content); a warm
// hunt worker keeps the result and calls `labRun` for each schedule, which builds a fresh machine from
// the prepared images and runs it. Nothing in `labRun` reads a file or assembles a line.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildMachine } from './machine.js';
import { UserError } from './errors.js';
import { loadScenario, scenarioAgents, scenarioMachine, type Scenario, type ScenarioSpec } from './scenario/loader.js';
import { Collector } from './trace/collector.js';
import { TraceWriter } from './trace/writer.js';
import { nsToCycles } from './hw/clock.js';
import { runSerial } from './engine/serial.js';
import { runThreaded, threadsFor } from './engine/threaded.js';
import type { EngineOptions, EngineResult } from './engine/common.js';
import type { PcpuParams } from './hv/pcpu-ctx.js';
import { buildReport, type RunReport } from './report.js';
import type { AgentSpec } from './agent/runner.js';
import { AGENT_LOAD_MS_MIN, AGENT_TIMEOUT_MS_DEFAULT, agentModuleCheck } from './agent/remote.js';
import { MAX_INSTANCES_DEFAULT } from './oracles/findings.js';
import { parseFreezeOn } from './engine/freeze.js';

/** Everything that determines a run; what a schedule file stores so a replay needs nothing else. */
export interface RunConfig {
  scenario: string;
  pcpus?: number;
  vcpus?: number;
  engine: 'threaded' | 'serial';
  seed: number;
  strategy: string;
  maxInstructions: number;
  maxMs: number;
  slack: number;
  burst: number;
  watchdogMs: number;
  injectWorkerFault?: number;
  /** Threaded: worker threads for the pCPUs (--threads); default threadsFor(pcpus). */
  threads?: number;
  /** pct: bug depth d (d - 1 change points); default PCT_DEPTH_DEFAULT. */
  pctDepth?: number;
  /**
   * false: the inline oracles do not run (`--no-oracles`). The run is the same, digest included (DESIGN.md §6):
   * only their findings (STALE_TRANSLATION, ROGUE_VMFUNC, REALM_ESCAPE, REALM_ENTRY, KERNEL_IN_REALM_VIEW) are gone.
   */
  oracles?: boolean;
  /** Occurrences kept per finding kind in the report's `instances` (the rest are counted); default 1000. */
  maxInstances?: number;
  /** `KIND[:CAUSE]`: stop at the first such finding and put the machine's frame in the report (engine/freeze.ts). */
  freezeOn?: string;
  /** The most wall ms one agent call may take (--agent-timeout-ms); default AGENT_TIMEOUT_MS_DEFAULT. */
  agentTimeoutMs?: number;
}

export const RUN_DEFAULTS = { seed: 1, maxInstructions: 100_000_000, slack: 30_000, burst: 4096, watchdogMs: 2000, pctDepth: 3, maxInstances: MAX_INSTANCES_DEFAULT,
  agentTimeoutMs: AGENT_TIMEOUT_MS_DEFAULT } as const;

/** The tool's version, as package.json says (schedule headers and hunt jobs carry it). */
export const TOOL_VERSION: string = (() => {
  const pkg = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../package.json' : '../../package.json', import.meta.url));
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
})();

/** A scenario made ready to run many times. Plain data plus the agents' module URLs. */
export interface Prepared {
  scenario: Scenario;
  /** The machine, and the realm entry points the oracles and agents get from the assembled programs. */
  spec: ScenarioSpec;
  agents: AgentSpec[];
  /** sha256 of every file the scenario is made of (TOML, programs and what they include, agent modules), in a fixed order. */
  hash: string;
}

/** Load, check and assemble a scenario once (bad input throws UserError here, before anything runs). */
export async function labPrepare(scenario: string, ov: { pcpus?: number; vcpus?: number; agentTimeoutMs?: number } = {}): Promise<Prepared> {
  const sc = loadScenario(scenario, { pcpus: ov.pcpus, vcpus: ov.vcpus });
  const spec = scenarioMachine(sc);
  const agents = scenarioAgents(sc, spec);
  // Bad agent modules are bad input, found before anything runs, in a thread of their own.
  for (const a of agents) {
    const why = await agentModuleCheck(a.module, Math.max(ov.agentTimeoutMs ?? AGENT_TIMEOUT_MS_DEFAULT, AGENT_LOAD_MS_MIN));
    if (why !== null) throw new UserError(why.startsWith(fileURLToPath(a.module)) ? why : `${fileURLToPath(a.module)}: ${why}`);
  }
  return { scenario: sc, spec, agents, hash: scenarioHash(sc, agents, spec.programIncludes) };
}

/**
 * The scenario's content hash: the TOML text, each domain's program text and the files it `.include`s
 * (`includes`, per domain), and each agent module's text, each prefixed by its role and index so that moving
 * text between files changes the hash. A built-in agent is part of the tool (TOOL_VERSION covers it) but
 * hashing its file costs nothing.
 */
export function scenarioHash(sc: Scenario, agents: AgentSpec[], includes: readonly (readonly string[])[] = []): string {
  const h = createHash('sha256');
  const add = (role: string, file: string): void => {
    let text: Buffer;
    try { text = readFileSync(file); } catch { text = Buffer.alloc(0); }
    h.update(`${role}\0${text.length}\0`);
    h.update(text);
  };
  add('scenario', sc.file);
  sc.domains.forEach((d, i) => {
    add(`program${i}`, isAbsolute(d.program) ? d.program : join(dirname(sc.file), d.program));
    (includes[i] ?? []).forEach((f, k) => add(`program${i}.include${k}`, f));
  });
  agents.forEach((a, i) => add(`agent${i}`, a.module.startsWith('file:') ? fileURLToPath(a.module) : a.module));
  return h.digest('hex');
}

export interface RunExtra {
  trace?: string;
  /** Serial: follow this tape (pairs of participant, signed shared accesses) instead of the strategy. */
  replayRuns?: Int32Array;
  /** How a tape is followed: 'exact' aborts on divergence, 'guided' falls back and finishes with a fixed tail. */
  replayMode?: 'exact' | 'guided';
  recordSchedule?: boolean;
  /** pct/pos: the step counts of the run they sample (from an earlier run); defaults when absent. */
  stepEstimate?: { choice: number; device: number };
  onProgress?: (n: number) => void;
  interrupt?: { requested: boolean };
  /** Serial: agents in the engine's thread (the bench's baseline; EngineOptions.agentsInline). */
  agentsInline?: boolean;
}

/** Run one configuration of a prepared scenario and return the report (no printing). */
/** `traceError`: the --trace file could not be written to the end (the run itself went on). */
export async function labRun(prep: Prepared, c: RunConfig, extra: RunExtra = {}): Promise<{ report: RunReport; result: EngineResult; traceError?: string }> {
  const sc = prep.scenario, spec = prep.spec;
  if (c.injectWorkerFault !== undefined && c.injectWorkerFault >= spec.pcpus) {
    throw new UserError(`--inject-worker-fault ${c.injectWorkerFault}: the machine has ${spec.pcpus} pCPUs (0..${spec.pcpus - 1})`);
  }
  if (c.threads !== undefined && c.threads > spec.pcpus) {
    throw new UserError(`--threads ${c.threads}: the machine has ${spec.pcpus} pCPUs, and a thread with no pCPU has nothing to run`);
  }
  const m = buildMachine(spec);
  const names = spec.domains.map((d) => d.name);
  const collector = new Collector(m, names, sc.ipiLostBoundUs, c.maxInstances ?? RUN_DEFAULTS.maxInstances);
  if (c.freezeOn !== undefined) {
    const f = parseFreezeOn(c.freezeOn);
    collector.findings.watch(f.kind, f.cause);
  }
  const tracer = extra.trace !== undefined
    ? new TraceWriter(extra.trace, { format: 'vcpulab-trace', version: 1, scenario: c.scenario, engine: c.engine, seed: c.seed, pcpus: spec.pcpus, domains: names })
    : undefined;
  collector.listener = tracer;
  const params: PcpuParams = {
    costs: sc.costs,
    timesliceCycles: nsToCycles(sc.timesliceUs * 1000),
    maxInstructions: c.maxInstructions,
    traceExits: true,
    migrate: sc.migration === 'balance',
    migratePercent: sc.migration === 'balance' ? sc.migratePercent : 0,
    seed: c.seed,
    scheduler: sc.scheduler,
    hvIpiUnmasked: sc.hvIpiIrqs === 'unmasked',
    lapicTimerCycles: nsToCycles(sc.lapicTimerUs * 1000),
    ratelimitCycles: nsToCycles(sc.ratelimitUs * 1000),
    apicBus: sc.apicBus,
    lapic: sc.lapic,
    oracles: c.oracles !== false,
    realmEntries: spec.realmEntries,
    vendor: sc.vendor,
    nmiWatchdogCycles: sc.nmiWatchdogHz > 0 ? nsToCycles(1e9 / sc.nmiWatchdogHz) : 0,
    xenNmi: sc.xenNmi,
    initExit: sc.initExit,
    amdInit: sc.amdInit,
    guestNmiInsns: sc.domains.map((d) => d.guestNmiInsns),
  };
  const opts: EngineOptions = {
    seed: c.seed, strategy: c.strategy, slackCycles: c.slack, maxMs: c.maxMs, watchdogMs: c.watchdogMs,
    replayRuns: extra.replayRuns, replayMode: extra.replayMode ?? 'exact', recordSchedule: extra.recordSchedule === true, burst: c.burst,
    onProgress: extra.onProgress, injectWorkerFault: c.injectWorkerFault ?? -1,
    threads: c.threads ?? threadsFor(spec.pcpus, availableParallelism()), interrupt: extra.interrupt ?? { requested: false },
    pctDepth: c.pctDepth ?? RUN_DEFAULTS.pctDepth, stepEstimate: extra.stepEstimate, freezeOn: c.freezeOn,
    agentTimeoutMs: c.agentTimeoutMs ?? RUN_DEFAULTS.agentTimeoutMs, agentsInline: extra.agentsInline,
  };
  let result: EngineResult;
  try {
    result = c.engine === 'serial'
      ? await runSerial({ m, params, collector, opts, agents: prep.agents })
      : await runThreaded({ m, params, collector, opts, agents: prep.agents });
  } finally {
    tracer?.close();
  }
  const report = buildReport(m, collector, result, { scenario: c.scenario, engine: c.engine, seed: c.seed, replay: replayCommand(c) });
  report.config = { ...c };
  if (result.freeze !== undefined) report.freeze = result.freeze;
  const traceError = tracer?.failed ?? undefined;
  if (traceError !== undefined) report.warnings.push(traceError);
  return { report, result, traceError };
}

/** Prepare and run in one call (one-off runs: the CLI's sim, tests, the bench). */
export async function simulate(c: RunConfig, extra: RunExtra = {}): Promise<{ report: RunReport; result: EngineResult; traceError?: string }> {
  return labRun(await labPrepare(c.scenario, { pcpus: c.pcpus, vcpus: c.vcpus, agentTimeoutMs: c.agentTimeoutMs }), c, extra);
}

/** The command line that reproduces a run. */
export function replayCommand(c: RunConfig, scheduleFile?: string): string {
  if (scheduleFile !== undefined) return `npm run sim -- --replay ${scheduleFile}`;
  const parts = ['npm run sim --', `--scenario ${c.scenario}`, `--engine ${c.engine}`, `--seed ${c.seed}`];
  if (c.pcpus !== undefined) parts.push(`--pcpus ${c.pcpus}`);
  if (c.vcpus !== undefined) parts.push(`--vcpus ${c.vcpus}`);
  if (c.engine === 'serial' && c.strategy !== 'random') parts.push(`--strategy ${c.strategy}`);
  if (c.engine === 'serial' && c.strategy === 'pct' && (c.pctDepth ?? RUN_DEFAULTS.pctDepth) !== RUN_DEFAULTS.pctDepth) parts.push(`--pct-depth ${c.pctDepth}`);
  if (c.maxInstructions !== RUN_DEFAULTS.maxInstructions) parts.push(`--max-instructions ${c.maxInstructions}`);
  if (c.slack !== RUN_DEFAULTS.slack) parts.push(`--slack ${c.slack}`);
  if (c.engine === 'threaded' && c.burst !== RUN_DEFAULTS.burst) parts.push(`--burst ${c.burst}`);
  if (c.oracles === false) parts.push('--no-oracles');
  if (c.maxInstances !== undefined && c.maxInstances !== RUN_DEFAULTS.maxInstances) parts.push(`--max-instances ${c.maxInstances}`);
  if (c.freezeOn !== undefined) parts.push(`--freeze-on ${c.freezeOn}`);
  return parts.join(' ');
}
