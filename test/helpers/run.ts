// Test helpers: run a guest program from source text through the whole simulator (scenario loader,
// machine, engine, report), the way a user's scenario would run.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunConfig } from '../../src/cli/sim.js';
import type * as SimModule from '../../src/cli/sim.js';

// Simulations run from the compiled build (`npm test` runs tsc first). Under vitest the sources are
// transformed so that every imported constant becomes a property load on a module object, which makes
// the interpreter's switch several times slower; the build is also exactly what users run.
const DIST_SIM = new URL('../../dist/src/cli/sim.js', import.meta.url).href;
const { simulate } = (await import(DIST_SIM)) as typeof SimModule;
import type { RunReport } from '../../src/report.js';
import type { EngineResult } from '../../src/engine/common.js';

export interface GuestOpts {
  vcpus?: number;
  pcpus?: number;
  memoryKb?: number;
  engine?: 'serial' | 'threaded';
  seed?: number;
  maxInstructions?: number;
  /** Hard affinity of the domain (xl.cfg syntax; a list: one per vCPU); default "all". */
  cpus?: string | string[];
  strategy?: string;
  /** Threaded engine: wall ms without progress before STALL. */
  watchdogMs?: number;
  /** Wall-clock limit; 0 = none. */
  maxMs?: number;
  /** Serial engine: keep the schedule (result.schedule). */
  recordSchedule?: boolean;
  /** Serial engine: follow this schedule instead of the strategy. */
  replayRuns?: Int32Array;
  /** [machine] timeslice_us (scenario default 1000). */
  timesliceUs?: number;
  /** Extra `key = value` lines for [machine] and for the [[domain]]. */
  machineExtra?: string[];
  domainExtra?: string[];
  /** --slack cycles and --burst instructions (defaults 30000 and 4096). */
  slack?: number;
  burst?: number;
  /** Threaded engine: worker threads for the pCPUs (--threads). */
  threads?: number;
}

export interface Scenario {
  dir: string;
  toml: string;
  /** Remove the temp directory. */
  dispose(): void;
}

/**
 * `.include` of test/fixtures/altp2m/hvmop.s (op_header and hvmop: the HVMOP_altp2m call on the struct at
 * OP), by absolute path since test programs are written to a temporary directory.
 */
export const HVMOP_INCLUDE = `.include ${JSON.stringify(join(import.meta.dirname, '..', 'fixtures', 'altp2m', 'hvmop.s'))}`;

/** Write `prog.s` and `scenario.toml` into a fresh temp dir. */
export function writeScenario(source: string, opts: GuestOpts = {}): Scenario {
  const dir = mkdtempSync(join(tmpdir(), 'vcpulab-test-'));
  writeFileSync(join(dir, 'prog.s'), source);
  const toml = [
    'description = "test guest"',
    '',
    '[machine]',
    `pcpus = ${opts.pcpus ?? 1}`,
    ...(opts.timesliceUs !== undefined ? ['scheduler = "fifo"', `timeslice_us = ${opts.timesliceUs}`] : []),
    ...(opts.machineExtra ?? []),
    '',
    '[[domain]]',
    'name = "guest"',
    `vcpus = ${opts.vcpus ?? 1}`,
    `memory_kb = ${opts.memoryKb ?? 1024}`,
    'program = "prog.s"',
    `cpus = ${JSON.stringify(opts.cpus ?? 'all')}`,
    ...(opts.domainExtra ?? []),
    '',
  ].join('\n');
  const tomlPath = join(dir, 'scenario.toml');
  writeFileSync(tomlPath, toml);
  return { dir, toml: tomlPath, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The RunConfig runGuest uses for a scenario file. */
export function guestConfig(toml: string, opts: GuestOpts = {}): RunConfig {
  return {
    scenario: toml,
    engine: opts.engine ?? 'serial',
    seed: opts.seed ?? 1,
    strategy: opts.strategy ?? 'random',
    maxInstructions: opts.maxInstructions ?? 1_000_000,
    maxMs: opts.maxMs ?? 0,
    slack: opts.slack ?? 30000,
    burst: opts.burst ?? 4096,
    threads: opts.threads,
    watchdogMs: opts.watchdogMs ?? 2000,
    pcpus: opts.pcpus ?? 1,
    vcpus: opts.vcpus ?? 1,
  };
}

/** Run `source` as the program of a one-domain scenario; returns the report and the engine result. */
export async function runGuestFull(source: string, opts: GuestOpts = {}): Promise<{ report: RunReport; result: EngineResult }> {
  const sc = writeScenario(source, opts);
  try {
    return await simulate(guestConfig(sc.toml, opts), {
      recordSchedule: opts.recordSchedule, replayRuns: opts.replayRuns,
    });
  } finally {
    sc.dispose();
  }
}

/** Run `source` as the program of a one-domain scenario; returns the report. */
export async function runGuest(source: string, opts: GuestOpts = {}): Promise<RunReport> {
  return (await runGuestFull(source, opts)).report;
}

/** The value of the first `magic 1` report with `key` from `vcpu` (undefined if there is none). */
export function value(report: RunReport, key: number, vcpu = 0): number | undefined {
  return report.reports.find((r) => r.key === key && r.vcpu === vcpu)?.value;
}

/** Every value reported with `key` by `vcpu`, in program order. */
export function values(report: RunReport, key: number, vcpu = 0): number[] {
  return report.reports.filter((r) => r.key === key && r.vcpu === vcpu).map((r) => r.value);
}

/** All reports of `vcpu` as a key -> value map (the last value wins for a repeated key). */
export function reportMap(report: RunReport, vcpu = 0): Map<number, number> {
  return new Map(report.reports.filter((r) => r.vcpu === vcpu).map((r) => [r.key, r.value]));
}

/** A signed 32-bit view of an unsigned constant, as reports carry values. */
export function s32(v: number): number {
  return v | 0;
}
