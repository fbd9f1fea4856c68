// `vcpulab sim --compare [a,b,c]`: the secure-realm design and its alternatives on the same workload,
// engine, seed and flags, one after the other, in one table (or {"compare": [report, ...]} with --json).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { UserError } from '../errors.js';
import { FINDING_KINDS, MISDIRECTED_CAUSES } from '../oracles/findings.js';
import type { RunReport } from '../report.js';
import { listBuiltins, type Scenario } from '../scenario/loader.js';

/** The designs `--compare` runs by default, in table order: the researcher's, its failure modes, the alternatives. */
export const COMPARE_DESIGNS = [
  'secure-realm', 'secure-realm-rogue', 'secure-realm-init', 'secure-realm-nmi', 'secure-realm-logical', 'x2apic-realm', 'hypercall-ipi', 'posted', 'ipiv', 'avic', 'hvmi-external',
] as const;

/** Parse the --compare value: "all" (or nothing) for every design, else a comma list of built-in names or .toml files. */
export function compareList(value: string): string[] {
  if (value === 'all' || value === '') return [...COMPARE_DESIGNS];
  const names = value.split(',').map((s) => s.trim());
  const builtins = new Set(listBuiltins().map((b) => b.name));
  for (const n of names) {
    if (n === '') throw new UserError(`vcpulab sim: --compare: empty design name in '${value}'`);
    if (!builtins.has(n) && !n.endsWith('.toml')) {
      throw new UserError(`vcpulab sim: --compare: '${n}' is neither a built-in scenario nor a .toml file (designs: ${COMPARE_DESIGNS.join(', ')})`);
    }
  }
  return names;
}

/**
 * What a design's guests run, as far as a fair comparison needs it to be the same: per domain its name,
 * vCPU count, program (the text of the file) and `defines` (the workload's knobs), and the machine's pCPUs
 * and scheduling knobs. The IPI path, altp2m mode, regions, agents and the rest are the design itself.
 */
export interface Workload {
  design: string;
  machine: Record<string, string | number>;
  domains: { name: string; vcpus: number; program: string; programHash: string; defines: Map<string, number> }[];
}

export function workloadOf(sc: Scenario): Workload {
  return {
    design: sc.name,
    machine: { pcpus: sc.pcpus, scheduler: sc.scheduler, timeslice_us: sc.timesliceUs, migration: sc.migration, migrate_percent: sc.migratePercent },
    domains: sc.domains.map((d) => {
      const file = isAbsolute(d.program) ? d.program : join(dirname(sc.file), d.program);
      let text: Buffer;
      try { text = readFileSync(file); } catch { text = Buffer.alloc(0); } // the run itself has read it; unreadable now reads as empty
      return { name: d.name, vcpus: d.vcpus, program: d.program, programHash: createHash('sha256').update(text).digest('hex'), defines: d.defines };
    }),
  };
}

/**
 * One line per design whose workload differs from the first design's, naming what differs; none when all
 * run the same workload. A comparison of designs is only about the designs when the workloads are equal.
 */
export function workloadWarnings(ws: Workload[]): string[] {
  const base = ws[0];
  if (base === undefined) return [];
  const out: string[] = [];
  for (const w of ws.slice(1)) {
    const diffs: string[] = [];
    for (const k of Object.keys(base.machine)) if (w.machine[k] !== base.machine[k]) diffs.push(`${k} ${w.machine[k]} (not ${base.machine[k]})`);
    if (w.domains.length !== base.domains.length) diffs.push(`${w.domains.length} domain(s) (not ${base.domains.length})`);
    w.domains.forEach((d, i) => {
      const b = base.domains[i];
      if (b === undefined) return;
      const who = w.domains.length > 1 || d.name !== b.name ? `domain ${d.name}: ` : '';
      if (d.vcpus !== b.vcpus) diffs.push(`${who}vcpus ${d.vcpus} (not ${b.vcpus})`);
      if (d.programHash !== b.programHash) diffs.push(`${who}program ${d.program} differs from ${b.program}`);
      const names = [...new Set([...b.defines.keys(), ...d.defines.keys()])];
      for (const n of names) {
        const x = d.defines.get(n), y = b.defines.get(n);
        if (x !== y) diffs.push(`${who}${n} = ${x ?? 'unset'} (not ${y ?? 'unset'})`);
      }
    });
    if (diffs.length > 0) out.push(`${w.design} runs another workload than ${base.design}: ${diffs.join(', ')}`);
  }
  return out;
}

function metric(r: RunReport, k: string): number {
  const v = r.metrics[k];
  return typeof v === 'number' ? v : 0;
}

/** IPI_MISDIRECTED's cause tokens that occur in any report: table order first, then any others by name. */
function misdirectedCauses(reports: RunReport[]): string[] {
  const seen = new Set<string>();
  for (const r of reports) for (const f of r.findings) if (f.kind === 'IPI_MISDIRECTED') for (const c of Object.keys(f.causes)) seen.add(c);
  const order: readonly string[] = MISDIRECTED_CAUSES;
  const rank = (c: string) => (order.includes(c) ? order.indexOf(c) : order.length);
  return [...seen].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The comparison table: design x finding counts per kind (IPI_MISDIRECTED followed by its count per cause),
 * IPI traffic, exits per IPI, latency, views. "delivered" counts the guest handler entries not judged wrong:
 * misdirected and foreign deliveries are in their own columns, not in it.
 */
export function formatCompare(reports: RunReport[], workloadNotes: string[] = []): string {
  const kinds = FINDING_KINDS.filter((k) => reports.some((r) => r.findings.some((f) => f.kind === k)));
  const short: Record<string, string> = {
    IPI_MISDIRECTED: 'misdir', IPI_LOST: 'lost', IPI_FOREIGN: 'foreign', IPI_UNKNOWN_VECTOR: 'unk.vec', HOST_RESET: 'reset', HOST_APIC_TAMPER: 'tamper',
    ROGUE_VMFUNC: 'rogue', REALM_ESCAPE: 'escape', STALE_TRANSLATION: 'stale', DOMAIN_CRASH: 'crash', GUEST_ASSERT: 'assert', STALL: 'stall',
  };
  const causes = misdirectedCauses(reports);
  const kindHead = kinds.flatMap((k) => (k === 'IPI_MISDIRECTED' ? [short[k], ...causes] : [short[k] ?? k]));
  const head = ['design', ...kindHead, 'IPIs sent', 'delivered', 'coalesced', 'in flight', 'exits/IPI', 'p50 ns', 'p99 ns', 'VMFUNCs', 'EPT flushes', 'outcome'];
  const rows = reports.map((r) => {
    const find = (k: string) => r.findings.find((f) => f.kind === k);
    const cells = kinds.flatMap((k) => {
      const f = find(k);
      const n = String(f?.count ?? 0);
      return k === 'IPI_MISDIRECTED' ? [n, ...causes.map((c) => String(f?.causes[c] ?? 0))] : [n];
    });
    return [r.scenario, ...cells, String(metric(r, 'ipi_sent')), String(metric(r, 'ipi_delivered') - metric(r, 'ipi_delivered_wrong')),
      String(metric(r, 'ipi_coalesced')), String(metric(r, 'ipi_in_flight')),
      metric(r, 'exits_per_ipi').toFixed(2), String(Math.round(metric(r, 'ipi_latency_ns_p50'))), String(Math.round(metric(r, 'ipi_latency_ns_p99'))),
      String(metric(r, 'vmfuncs')), String(metric(r, 'ept_flushes')), r.outcome];
  });
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  const out: string[] = [];
  const r0 = reports[0];
  out.push(`vcpulab compare  engine=${r0?.engine ?? ''}  SEED=${r0?.seed ?? ''}  (finding counts; latency in simulated ns)`);
  out.push('');
  out.push(line(head));
  out.push(w.map((n) => '-'.repeat(n)).join('  '));
  for (const row of rows) out.push(line(row));
  out.push('');
  const legend = kinds.map((k) => k === 'IPI_MISDIRECTED' && causes.length > 0
    ? `${short[k]} = ${k} (then its count per cause: ${causes.join(', ')})`
    : `${short[k] ?? k} = ${k}`);
  out.push(`columns: ${legend.join(', ')}`);
  out.push('delivered = guest handler entries not judged misdirected or foreign; coalesced = sends merged into a vector already ' +
    'pending; in flight = sends that had reached no vCPU when the run ended');
  for (const r of reports) for (const wn of r.warnings ?? []) out.push(`warning: ${r.scenario}: ${wn}`);
  for (const wn of workloadNotes) out.push(`warning: workload: ${wn}`);
  out.push('each design alone: npm run sim -- --scenario NAME with the same --engine and --seed; its findings carry evidence');
  return out.join('\n') + '\n';
}
