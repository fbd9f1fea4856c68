// `vcpulab sim --compare [a,b,c]`: the secure-realm design and its alternatives on the same workload,
// engine, seed and flags, one after the other, in one table (or {"compare": [report, ...]} with --json).
import { UserError } from '../errors.js';
import { FINDING_KINDS } from '../oracles/findings.js';
import type { RunReport } from '../report.js';
import { listBuiltins } from '../scenario/loader.js';

/** The designs `--compare` runs by default, in table order: the researcher's, its failure modes, the alternatives. */
export const COMPARE_DESIGNS = [
  'secure-realm', 'secure-realm-rogue', 'secure-realm-init', 'x2apic-realm', 'hypercall-ipi', 'posted', 'ipiv', 'avic', 'hvmi-external',
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

function metric(r: RunReport, k: string): number {
  const v = r.metrics[k];
  return typeof v === 'number' ? v : 0;
}

/** The comparison table: design x finding counts per kind, IPI traffic, exits per IPI, latency, views. */
export function formatCompare(reports: RunReport[]): string {
  const kinds = FINDING_KINDS.filter((k) => reports.some((r) => r.findings.some((f) => f.kind === k)));
  const short: Record<string, string> = {
    IPI_MISDIRECTED: 'misdir', IPI_LOST: 'lost', IPI_FOREIGN: 'foreign', IPI_UNKNOWN_VECTOR: 'unk.vec', HOST_RESET: 'reset',
    ROGUE_VMFUNC: 'rogue', REALM_ESCAPE: 'escape', STALE_TRANSLATION: 'stale', DOMAIN_CRASH: 'crash', GUEST_ASSERT: 'assert', STALL: 'stall',
  };
  const head = ['design', ...kinds.map((k) => short[k] ?? k), 'IPIs sent', 'delivered', 'exits/IPI', 'p50 ns', 'p99 ns', 'VMFUNCs', 'EPT flushes', 'outcome'];
  const rows = reports.map((r) => {
    const count = (k: string) => String(r.findings.find((f) => f.kind === k)?.count ?? 0);
    return [r.scenario, ...kinds.map(count), String(metric(r, 'ipi_sent')), String(metric(r, 'ipi_delivered')),
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
  out.push(`columns: ${kinds.map((k) => `${short[k] ?? k} = ${k}`).join(', ')}`);
  out.push('each design alone: npm run sim -- --scenario NAME with the same --engine and --seed; its findings carry evidence');
  return out.join('\n') + '\n';
}
