// IPI rows of `npm run bench` (bench/run.ts), on the built-in IPI ring (src/scenario/builtin/ipi.s):
//
//  (1) per IPI path (vlapic, posted, ipiv, avic, xapic-passthrough, x2apic-passthrough), 2 pCPUs / 2 vCPUs, no migration,
//      NESTED = 0, MASK_ICR = 1, on the threaded engine and on the serial engine for reference: the send ->
//      handler-entry latency p50 / p99 in simulated ns (the IPI oracle's ipi_latency_ns_*: the target
//      pCPU's clock at delivery minus the sender's clock at the send), VM exits per IPI, and wall µs per
//      delivered IPI (wall_ms * 1000 / ipi_delivered: throughput-derived, start-up included; the
//      incremental figure between the calibration run and the measured run, start-up removed, is in the
//      detail), set against the Atomics spin ping-pong round trip measured by bench/floors.ts in the same run;
//  (2) oversubscription: vlapic path, 2 pCPUs with 8 (4x) and 32 (16x) vCPUs, migration = "balance":
//      context switches per wall second and per simulated second, and the IPI latency p50 / p99 as the
//      wake-latency proxy (a ring target is often waiting for a pCPU when its IPI is sent); threaded engine,
//      and serial for reference in the full run. An IPI sent while the target's vector is still pending in
//      its vLAPIC coalesces (ipi_coalesced) and has no latency of its own.
//
// ROUNDS (IPIs each vCPU sends) is calibrated per row so a run takes about 1 s of wall time beyond start-up
// (--quick: fixed small sizes, no calibration).
// Every run's scenario is written to a temporary directory and points at the built-in ipi.s by absolute path.
//
//   node dist/bench/ipi.js [--quick]     (these rows alone, printed; bench/results.json is not written)
import { errText, fmtN, num, r2, r3, runStandalone } from './format.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { simulate, type RunConfig } from '../src/lab.js';
import { BUILTIN_DIR } from '../src/scenario/loader.js';
import { median } from './floors.js';

export type IpiPathName = 'vlapic' | 'xapic-passthrough' | 'x2apic-passthrough' | 'posted' | 'ipiv' | 'avic';
export const IPI_PATHS: readonly IpiPathName[] = ['vlapic', 'posted', 'ipiv', 'avic', 'xapic-passthrough', 'x2apic-passthrough'];

/** Engine settings of every IPI run (the same as the throughput rows of bench/run.ts). */
const SLACK = 30_000;
const BURST = 4096;
const TIMESLICE_US = 100; // as the built-in ipi-*.toml scenarios

export interface IpiBenchOptions {
  quick: boolean;
  reps: number;
  /** Median Atomics spin ping-pong round trip of this run (µs), from bench/floors.ts; NaN if unknown. */
  pingPongUs: number;
  progress: (line: string) => void;
}

/** A row of the bench table (bench/run.ts `Row`): `show` is the printed value, `note` the printed note. */
export interface IpiRow {
  name: string;
  kind: 'ipi';
  value: number;
  unit: string;
  show: string;
  note: string;
  detail: Record<string, number | number[] | string>;
  error?: string;
}

/** Wall per delivered IPI over the ping-pong round trip, per path and engine (info ratios). */
export interface IpiRatio { name: string; value: number; how: string }

interface IpiCase {
  label: string;
  path: IpiPathName;
  engine: 'threaded' | 'serial';
  pcpus: number;
  vcpus: number;
  migration: 'none' | 'balance';
}

interface IpiRun {
  rounds: number;
  sent: number;
  delivered: number;
  coalesced: number;
  /** IPIs the guest counted in its handlers when vCPU 0 reported (in-flight ones at the end are missed). */
  received: number;
  p50: number;
  p99: number;
  exitsPerIpi: number;
  vmExits: number;
  contextSwitches: number;
  migrations: number;
  wallMs: number;
  simNs: number;
  instructions: number;
  findings: string;
  exits: string;
}

function scenarioToml(c: IpiCase, rounds: number): string {
  const memKb = Math.max(256, Math.ceil((c.vcpus * 4 + 192) / 4) * 4);
  return `description = "bench: ${c.label}"
[machine]
pcpus = ${c.pcpus}
apic_mode = "${c.path === 'x2apic-passthrough' ? 'x2apic' : 'xapic'}"
vendor = "${c.path === 'avic' ? 'amd' : 'intel'}"
scheduler = "fifo"
timeslice_us = ${TIMESLICE_US}
migration = "${c.migration}"
migrate_percent = 0

[[domain]]
name = "guest"
vcpus = ${c.vcpus}
memory_kb = ${memKb}
program = ${JSON.stringify(join(BUILTIN_DIR, 'ipi.s'))}
ipi_path = "${c.path}"
${c.path === 'vlapic' ? '' : 'vcpu_map = 0x30000\n'}defines = { ROUNDS = ${rounds}, MASK_ICR = 1, NESTED = 0 }
`;
}


let fileNo = 0;
async function ipiRun(dir: string, c: IpiCase, rounds: number, maxMs: number): Promise<IpiRun> {
  const toml = join(dir, `ipi${fileNo++}.toml`);
  writeFileSync(toml, scenarioToml(c, rounds));
  const config: RunConfig = {
    scenario: toml, engine: c.engine, seed: 1, strategy: 'random', maxInstructions: 0, maxMs,
    slack: SLACK, burst: BURST, watchdogMs: 5000,
  };
  await sleep(100); // let the previous run's worker threads finish exiting
  const { report, result } = await simulate(config);
  const bad = (why: string): Error => new Error(`${c.label}, ROUNDS = ${rounds}: ${why}`);
  if (report.outcome !== 'completed') throw bad(`outcome ${report.outcome}${report.reason !== null ? ` (${report.reason})` : ''}`);
  if (report.domains[0]?.ended !== 'shutdown') throw bad(`domain ended: ${report.domains[0]?.ended ?? '?'} ${report.domains[0]?.crash ?? ''}`);
  const key = (k: number): number => report.reports.find((r) => r.key === k)?.value ?? NaN;
  const mt = report.metrics;
  const sent = num(mt.ipi_sent);
  if (key(2) !== c.vcpus * rounds || sent !== c.vcpus * rounds) throw bad(`guest counted ${key(2)} IPIs sent, the oracle ${sent}; expected ${c.vcpus * rounds}`);
  const delivered = num(mt.ipi_delivered);
  if (!(delivered > 0)) throw bad('no IPI delivered');
  return {
    rounds, sent, delivered, coalesced: num(mt.ipi_coalesced), received: key(1),
    p50: num(mt.ipi_latency_ns_p50), p99: num(mt.ipi_latency_ns_p99), exitsPerIpi: num(mt.exits_per_ipi),
    vmExits: num(mt.vm_exits), contextSwitches: num(mt.context_switches), migrations: num(mt.migrations),
    wallMs: result.wallMs, simNs: num(mt.sim_time_ns), instructions: num(mt.instructions),
    findings: report.findings.map((f) => `${f.kind} x${f.count}`).join(', '),
    exits: Object.entries(mt.exits as Record<string, number>).map(([k, v]) => `${k} ${v}`).join(', '),
  };
}

/**
 * Two probe runs, R and 4R rounds, R grown until the 4R run takes at least `probeMs` more wall time than
 * the R run; then ROUNDS for about `targetMs` of wall time beyond the start-up (at least 2R). The R run is
 * the reference for the incremental wall per IPI of the measured runs.
 */
async function calibrate(dir: string, c: IpiCase, probeMs: number, targetMs: number, maxMs: number): Promise<{ probe: IpiRun; rounds: number }> {
  let rounds = Math.max(4, Math.ceil(100 / c.vcpus));
  let a = await ipiRun(dir, c, rounds, maxMs);
  for (let pass = 0; ; pass++) {
    const b = await ipiRun(dir, c, 4 * rounds, maxMs);
    const dt = b.wallMs - a.wallMs;
    if (dt >= probeMs || pass === 3) {
      const msPerRound = Math.max(dt, 1) / (3 * rounds);
      return { probe: a, rounds: Math.max(2 * rounds, Math.round(targetMs / msPerRound)) };
    }
    a = b;
    rounds *= 4;
  }
}


interface Measured { c: IpiCase; runs: IpiRun[]; probe: IpiRun; seconds: number }

async function measure(dir: string, c: IpiCase, o: IpiBenchOptions): Promise<Measured> {
  const t0 = performance.now();
  const maxMs = o.quick ? 15_000 : 30_000;
  // --quick: no calibration, a fixed probe of about 100 IPIs (threaded; 1000 serial) and a run 4x its size.
  const r0 = Math.max(2, Math.ceil((c.engine === 'threaded' ? 100 : 1000) / c.vcpus));
  const { probe, rounds } = o.quick ? { probe: await ipiRun(dir, c, r0, maxMs), rounds: 4 * r0 } : await calibrate(dir, c, 150, 1000, maxMs);
  const runs: IpiRun[] = [];
  for (let r = 0; r < o.reps; r++) runs.push(await ipiRun(dir, c, rounds, maxMs));
  return { c, runs, probe, seconds: (performance.now() - t0) / 1000 };
}

/** Medians over the repetitions of one measured case, and the details every row of it carries. */
function summarize(m: Measured): { med: (f: (r: IpiRun) => number) => number; common: Record<string, number | number[] | string> } {
  const { runs, probe, c } = m;
  const med = (f: (r: IpiRun) => number): number => median(runs.map(f).filter((x) => Number.isFinite(x)));
  const wallPerIpi = (r: IpiRun): number => (r.wallMs * 1000) / r.delivered;
  const incr = runs.map((r) => (r.delivered > probe.delivered && r.wallMs > probe.wallMs ? ((r.wallMs - probe.wallMs) * 1000) / (r.delivered - probe.delivered) : NaN));
  const good = incr.filter((x) => Number.isFinite(x));
  const common: Record<string, number | number[] | string> = {
    path: c.path, engine: c.engine, pcpus: c.pcpus, vcpus: c.vcpus, migration: c.migration,
    timeslice_us: TIMESLICE_US, slack_cycles: SLACK, burst: BURST, defines: `ROUNDS = ${runs[0].rounds}, MASK_ICR = 1, NESTED = 0`,
    ipi_sent: med((r) => r.sent), ipi_delivered: med((r) => r.delivered), ipi_coalesced: med((r) => r.coalesced),
    guest_received: med((r) => r.received),
    ipi_latency_ns_p50: med((r) => r.p50), ipi_latency_ns_p99: med((r) => r.p99),
    p50_reps: runs.map((r) => r.p50), p99_reps: runs.map((r) => r.p99),
    exits_per_ipi: med((r) => r.exitsPerIpi), vm_exits: med((r) => r.vmExits),
    wall_us_per_ipi: r3(med(wallPerIpi)), wall_us_per_ipi_reps: runs.map((r) => r3(wallPerIpi(r))),
    wall_us_per_ipi_incremental: good.length > 0 ? r3(median(good)) : NaN,
    probe_rounds: probe.rounds, probe_wall_ms: r2(probe.wallMs),
    context_switches: med((r) => r.contextSwitches), migrations: med((r) => r.migrations),
    ctxsw_per_wall_s: Math.round(med((r) => r.contextSwitches / (r.wallMs / 1000))),
    ctxsw_per_sim_s: Math.round(med((r) => r.contextSwitches / (r.simNs / 1e9))),
    wall_ms: r2(med((r) => r.wallMs)), sim_time_ns: med((r) => r.simNs), instructions: med((r) => r.instructions),
    findings: runs[0].findings === '' ? 'none' : runs[0].findings,
    exits_by_reason: runs[0].exits,
    row_seconds: r2(m.seconds),
  };
  return { med, common };
}

function failedRows(names: string[], unit: string, msg: string): IpiRow[] {
  return names.map((name) => ({ name, kind: 'ipi', value: NaN, unit, show: 'failed', note: `FAILED: ${msg}`, detail: {}, error: msg }));
}


/** Every IPI row of the bench, in table order, and the wall-per-IPI / ping-pong ratios. */
export async function ipiBench(o: IpiBenchOptions): Promise<{ rows: IpiRow[]; ratios: IpiRatio[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'vcpulab-bench-ipi-'));
  const rows: IpiRow[] = [];
  const ratios: IpiRatio[] = [];
  const pp = o.pingPongUs;
  try {
    // ---- (1) per path ----
    for (const path of IPI_PATHS) {
      for (const engine of ['threaded', 'serial'] as const) {
        const c: IpiCase = { label: `IPI ${path}, ${engine}, 2 pCPUs / 2 vCPUs`, path, engine, pcpus: 2, vcpus: 2, migration: 'none' };
        const names = [`${c.label}: send->handler latency p50 / p99 (simulated)`, `${c.label}: VM exits per IPI`, `${c.label}: wall per delivered IPI`];
        try {
          const m = await measure(dir, c, o);
          const { med, common } = summarize(m);
          const p50 = med((r) => r.p50), p99 = med((r) => r.p99), epi = med((r) => r.exitsPerIpi);
          const wall = common.wall_us_per_ipi as number, inc = common.wall_us_per_ipi_incremental as number;
          const reps = (k: string): string => (common[k] as number[]).map(fmtN).join(', ');
          const xpp = wall / pp;
          rows.push(
            { name: names[0], kind: 'ipi', value: p50, unit: 'ns', show: `${fmtN(p50)} / ${fmtN(p99)}`, note: `reps p50 ${reps('p50_reps')}; p99 ${reps('p99_reps')}; ${common.ipi_delivered} delivered, ${common.ipi_coalesced} coalesced of ${common.ipi_sent} sent`, detail: { ...common, p99 } },
            { name: names[1], kind: 'ipi', value: epi, unit: 'exits/IPI', show: epi.toFixed(2), note: `${common.exits_by_reason}; findings: ${common.findings}`, detail: common },
            { name: names[2], kind: 'ipi', value: wall, unit: 'us', show: fmtN(wall), note: `${fmtN(xpp)}x the ping-pong RT; incremental ${fmtN(inc)} us; reps ${reps('wall_us_per_ipi_reps')}`, detail: { ...common, x_pingpong_rt: r2(xpp), pingpong_rt_us: r3(pp) } },
          );
          ratios.push({ name: `IPI ${path}, ${engine}: wall per IPI / ping-pong RT`, value: xpp, how: `(wall_ms * 1000 / ipi_delivered) / Atomics spin ping-pong RT (${r3(pp)} us)` });
          o.progress(`${c.label}: latency p50 ${fmtN(p50)} / p99 ${fmtN(p99)} sim ns, ${epi.toFixed(2)} exits/IPI, ${fmtN(wall)} wall us/IPI (${fmtN(xpp)}x ping-pong RT; incremental ${fmtN(inc)}), ROUNDS ${m.runs[0].rounds}, ${r2(m.seconds)} s`);
        } catch (e) {
          o.progress(`${c.label}: FAILED: ${errText(e)}`);
          rows.push(...failedRows(names, 'n/a', errText(e)));
        }
      }
    }
    // ---- (2) oversubscription ----
    const engines = o.quick ? (['threaded'] as const) : (['threaded', 'serial'] as const);
    for (const engine of engines) {
      for (const vcpus of [8, 32]) {
        const c: IpiCase = { label: `IPI vlapic ${vcpus / 2}x oversubscribed, ${engine}, 2 pCPUs / ${vcpus} vCPUs`, path: 'vlapic', engine, pcpus: 2, vcpus, migration: 'balance' };
        const names = [`${c.label}: context switches per wall s`, `${c.label}: context switches per simulated s`, `${c.label}: wake latency (IPI latency p50 / p99, simulated)`];
        try {
          const m = await measure(dir, c, o);
          const { med, common } = summarize(m);
          const perWall = common.ctxsw_per_wall_s as number, perSim = common.ctxsw_per_sim_s as number;
          const p50 = med((r) => r.p50), p99 = med((r) => r.p99);
          const undelivered = `${common.ipi_delivered} delivered, ${common.ipi_coalesced} coalesced of ${common.ipi_sent} sent`;
          rows.push(
            { name: names[0], kind: 'ipi', value: perWall, unit: '/s', show: fmtN(perWall), note: `${common.context_switches} switches in ${common.wall_ms} ms; ${common.migrations} migrations`, detail: common },
            { name: names[1], kind: 'ipi', value: perSim, unit: '/s', show: fmtN(perSim), note: `${common.context_switches} switches in ${fmtN((common.sim_time_ns as number) / 1e6)} simulated ms (timeslice ${TIMESLICE_US} us)`, detail: common },
            { name: names[2], kind: 'ipi', value: p50, unit: 'ns', show: `${fmtN(p50)} / ${fmtN(p99)}`, note: `${undelivered}; ${fmtN(common.wall_us_per_ipi as number)} wall us per delivered IPI`, detail: { ...common, p99 } },
          );
          o.progress(`${c.label}: ${fmtN(perWall)} ctx sw/wall s, ${fmtN(perSim)} /sim s, wake latency p50 ${fmtN(p50)} / p99 ${fmtN(p99)} sim ns, ${undelivered}, ROUNDS ${m.runs[0].rounds}, ${r2(m.seconds)} s`);
        } catch (e) {
          o.progress(`${c.label}: FAILED: ${errText(e)}`);
          rows.push(...failedRows(names, 'n/a', errText(e)));
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { rows, ratios };
}

// Run alone: node dist/bench/ipi.js [--quick]
await runStandalone(import.meta.url, ipiBench);
