// The run report (DESIGN.md §5.4 contract, with extra fields that only add information).
import { PC_FLUSH_IPIS, PC_INVEPT_ALL, PC_INVEPT_SINGLE, PC_VE_DELIVERED, PC_VMFUNCS } from '../shared/pcpu.js';
import { VR_POSTED, vmEventRingBase } from '../shared/vm-event.js';
import { DM_CRASH_A, DM_CRASH_B, DM_CRASH_C, DM_CRASH_REASON, DM_EXIT_CODE, DM_STATE, DS_CRASHED, DS_HALTED, DS_RUNNING, DS_SHUTDOWN } from '../shared/domain.js';
import { PC_CLOCK_F64, PC_CTXSW_F64, PC_ENTRIES_F64, PC_EXITS, PC_HV_F64, PC_IDLE_F64, PC_INSNS_F64, PC_TIMER_EXITS } from '../shared/pcpu.js';
import { VC_MIGRATIONS } from '../shared/vcpu.js';
import { EXIT_APIC_ACCESS, EXIT_COUNT, EXIT_EXTINT, EXIT_NAMES, EXIT_WRMSR } from './isa/interp.js';
import { cyclesToNs } from './hw/clock.js';
import { CRASH_NAMES } from './trace/events.js';
import { readFileSync } from 'node:fs';
import type { Collector } from './trace/collector.js';
import { hex } from './trace/collector.js';
import type { EngineResult } from './engine/common.js';
import type { Finding } from './oracles/findings.js';
import type { Machine } from './machine.js';
import type { RunConfig } from './lab.js';
import type { FreezeReport } from './engine/freeze.js';

export interface DomainReport {
  name: string;
  state: 'shutdown' | 'crashed' | 'running';
  exit_code: number | null;
  crash: string | null;
  /** Extra: why it is "shutdown" ("magic 0", "all vCPUs halted with IF=0", ...). */
  ended: string | null;
}

export interface RunReport {
  scenario: string;
  engine: string;
  seed: number;
  pcpus: number;
  outcome: EngineResult['outcome'];
  /** Extra: why the run stopped early, if it did. */
  reason: string | null;
  findings: Finding[];
  reports: { domain: string; vcpu: number; key: number; value: number }[];
  /** Extra: the report cap (REPORTS_MAX) was hit; `reports_dropped` reports were only counted. */
  reports_truncated: boolean;
  reports_dropped: number;
  console: Record<string, string>;
  /** Extra: a domain's console passed CONSOLE_MAX_CHARS; `console_dropped` says how many characters, per domain that did. */
  console_truncated: boolean;
  console_dropped: Record<string, number>;
  domains: DomainReport[];
  metrics: Record<string, number | Record<string, number>>;
  /** Extra: what limits the judgement of this run (e.g. it was shorter than the IPI loss bound). */
  warnings: string[];
  replay: string;
  /** Extra: digest of every event of the run (the serial engine's determinism check). */
  digest: string;
  /** Extra: each vm_event agent's requests handled and calls made, and why it stopped early, if it did. */
  agents: { domain: string; events: number; calls: number; error: string | null }[];
  /** Extra: the run's flags (lab.ts RunConfig), so vcpulab reproduce can search the same configuration. */
  config?: RunConfig;
  /** Extra (--freeze-on): the machine when the first matching finding was judged; the run ended there. */
  freeze?: FreezeReport;
}

export interface ReportMeta {
  scenario: string;
  engine: string;
  seed: number;
  replay: string;
}

export function buildReport(m: Machine, col: Collector, res: EngineResult, meta: ReportMeta): RunReport {
  const console: Record<string, string> = {};
  const consoleDropped: Record<string, number> = {};
  col.domainNames.forEach((n, i) => {
    console[n] = col.console[i];
    if (col.consoleDropped[i] > 0) consoleDropped[n] = col.consoleDropped[i];
  });
  // Program order per vCPU: by the vCPU's own report sequence, whatever pCPU produced each one.
  const order = new Map(col.domainNames.map((n, i) => [n, i]));
  const reports = [...col.reports]
    .sort((a, b) => (order.get(a.domain) ?? 0) - (order.get(b.domain) ?? 0) || a.vcpu - b.vcpu || a.seq - b.seq)
    .map(({ domain, vcpu, key, value }) => ({ domain, vcpu, key, value }));
  let end = 0;
  for (let p = 0; p < m.npcpus; p++) end = Math.max(end, m.pcF64[(m.pcpuBase(p) + PC_CLOCK_F64) >> 1]);
  const ipi = col.finishOracles(end);
  return {
    scenario: meta.scenario,
    engine: meta.engine,
    seed: meta.seed,
    pcpus: m.npcpus,
    outcome: res.outcome,
    reason: res.reason,
    // Copies: the report is a snapshot, the table keeps counting if the collector is used again.
    findings: col.findings.list().map((f) => ({
      ...f, first: { ...f.first }, causes: { ...f.causes }, signatures: { ...f.signatures },
      instances: f.instances.map((i) => ({ ...i, pcs: [...i.pcs] })), reproduce: reproduceText(meta),
    })),
    reports,
    reports_truncated: col.reportsDropped > 0,
    reports_dropped: col.reportsDropped,
    console,
    console_truncated: Object.keys(consoleDropped).length > 0,
    console_dropped: consoleDropped,
    domains: col.domainNames.map((name, i) => domainReport(m, name, i)),
    metrics: { ...metrics(m, col, res), ...ipi, exits_per_ipi: exitsPerIpi(m, ipi.ipi_sent) },
    warnings: col.warnings(),
    replay: meta.replay,
    digest: col.digest(),
    agents: (res.agents ?? []).map((a) => ({ domain: col.domainNames[a.dom], events: a.events, calls: a.calls, error: a.error })),
  };
}

/**
 * A serial run is reproduced exactly, event for event, by its command (or its schedule file). A threaded
 * run's interleaving is the OS's: the same command reruns the scenario, and the serial engine finds the
 * finding's kind on seeds of its own (the README's Reproducing a run).
 */
function reproduceText(meta: ReportMeta): string {
  if (meta.engine === 'serial') return `${meta.replay}   (serial: the same run, event for event)`;
  const serial = meta.replay.replace('--engine threaded', '--engine serial');
  return `${meta.replay}   (threaded: reruns the scenario with the same seed and flags, under another interleaving; ` +
    `to replay this finding, save the report with --json > run.json and run vcpulab reproduce run.json, which searches ` +
    `serial schedules for its signature; the same design, deterministically: ${serial})`;
}

function domainReport(m: Machine, name: string, i: number): DomainReport {
  const b = m.domainBase(i);
  const st = Atomics.load(m.dm32, b + DM_STATE);
  if (st === DS_RUNNING) return { name, state: 'running', exit_code: null, crash: null, ended: null };
  if (st === DS_CRASHED) {
    const r = m.dm32[b + DM_CRASH_REASON];
    const a = m.dm32[b + DM_CRASH_A], bb = m.dm32[b + DM_CRASH_B], c = m.dm32[b + DM_CRASH_C];
    const what = r === 1 ? `vector ${a} at pc 0x${hex(bb)}` : r === 2 ? `gpa 0x${hex(a)} at pc 0x${hex(c)}` : '';
    return { name, state: 'crashed', exit_code: null, crash: `${CRASH_NAMES[r] ?? `reason ${r}`}${what ? ': ' + what : ''}`, ended: 'crash' };
  }
  if (st === DS_HALTED) return { name, state: 'shutdown', exit_code: null, crash: null, ended: 'all vCPUs halted with IF=0' };
  if (st === DS_SHUTDOWN) return { name, state: 'shutdown', exit_code: m.dm32[b + DM_EXIT_CODE], crash: null, ended: 'shutdown' };
  return { name, state: 'running', exit_code: null, crash: null, ended: null };
}

function metrics(m: Machine, col: Collector, res: EngineResult): Record<string, number | Record<string, number>> {
  let insns = 0, clock = 0, ctx = 0, entries = 0, idle = 0, hv = 0;
  const exits: Record<string, number> = {};
  let exitsTotal = 0;
  const perPcpu: Record<string, number> = {};
  for (let p = 0; p < m.npcpus; p++) {
    const b = m.pcpuBase(p);
    const n = m.pcF64[(b + PC_INSNS_F64) >> 1];
    perPcpu[String(p)] = n;
    insns += n;
    clock = Math.max(clock, m.pcF64[(b + PC_CLOCK_F64) >> 1]);
    ctx += m.pcF64[(b + PC_CTXSW_F64) >> 1];
    entries += m.pcF64[(b + PC_ENTRIES_F64) >> 1];
    idle += m.pcF64[(b + PC_IDLE_F64) >> 1];
    hv += m.pcF64[(b + PC_HV_F64) >> 1];
    for (let e = 1; e < EXIT_COUNT; e++) {
      const k = m.pc32[b + PC_EXITS + e];
      if (k > 0) { exits[EXIT_NAMES[e]] = (exits[EXIT_NAMES[e]] ?? 0) + k; exitsTotal += k; }
    }
  }
  let migrations = 0;
  for (let v = 0; v < m.nvcpus; v++) migrations += m.vc32[m.vcpuBase(v) + VC_MIGRATIONS];
  let vmfuncs = 0, single = 0, all = 0, ves = 0, flushIpis = 0;
  for (let p = 0; p < m.npcpus; p++) {
    const b = m.pcpuBase(p);
    vmfuncs += m.pc32[b + PC_VMFUNCS];
    single += m.pc32[b + PC_INVEPT_SINGLE];
    all += m.pc32[b + PC_INVEPT_ALL];
    ves += m.pc32[b + PC_VE_DELIVERED];
    flushIpis += m.pc32[b + PC_FLUSH_IPIS];
  }
  let vmEvents = 0;
  for (let d = 0; d < m.ndomains; d++) vmEvents += m.vr32[vmEventRingBase(d) + VR_POSTED];
  const wall = res.wallMs;
  return {
    instructions: insns,
    instructions_per_pcpu: perPcpu,
    sim_time_ns: Math.round(cyclesToNs(clock)),
    wall_ms: Math.round(wall * 10) / 10,
    /** Peak resident memory of the whole process so far (all threads), MiB. */
    peak_rss_mb: peakRssMb(),
    guest_mips: wall > 0 ? Math.round((insns / wall / 1000) * 10) / 10 : 0,
    vm_exits: exitsTotal,
    exits,
    vm_entries: entries,
    context_switches: ctx,
    migrations,
    hypervisor_ns: Math.round(cyclesToNs(hv)),
    idle_ns: Math.round(cyclesToNs(idle)),
    events: col.events.reduce((s, x) => s + x, 0),
    steps: res.steps,
    /** Threads the pCPUs ran on (threaded: --threads or its default; serial: 1). */
    threads: res.threads ?? 1,
    // View metrics: defined for every run so designs compare on one table.
    vmfuncs,
    /** INVEPTs run before VM entries (single- plus all-context). */
    ept_flushes: single + all,
    invept_single: single,
    invept_all: all,
    ept_flush_ipis: flushIpis,
    ve_delivered: ves,
    vm_events: vmEvents,
  };
}

/** VM exits spent on IPIs (APIC accesses, ICR/EOI MSR writes, kicks) per IPI sent. */
function exitsPerIpi(m: Machine, sent: number): number {
  if (sent === 0) return 0;
  let n = 0;
  for (let p = 0; p < m.npcpus; p++) {
    const b = m.pcpuBase(p);
    // The timer's ticks are external-interrupt exits no IPI caused.
    n += m.pc32[b + PC_EXITS + EXIT_APIC_ACCESS] + m.pc32[b + PC_EXITS + EXIT_WRMSR] + m.pc32[b + PC_EXITS + EXIT_EXTINT] - m.pc32[b + PC_TIMER_EXITS];
  }
  return Math.round((n / sent) * 100) / 100;
}

/**
 * Peak resident memory of this process image, MiB: Linux's VmHWM, the high-water mark of the current
 * address space (all threads). getrusage's maxrss is not used where VmHWM exists: it survives fork and exec,
 * so a process started by a large one (the bench, a test runner) would report its parent's size.
 */
function peakRssMb(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m !== null) return Math.round(Number(m[1]) / 1024);
  } catch { /* not Linux: fall back */ }
  return Math.round(process.resourceUsage().maxRSS / 1024);
}
