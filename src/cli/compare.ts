// `vcpulab sim --compare [a,b,c]`: the secure-realm design and its alternatives on the same workload,
// engine, seed and flags, one after the other, in one table (or {"compare": [report, ...]} with --json).
import { UserError } from '../errors.js';
import { FINDING_KINDS, MISDIRECTED_CAUSES } from '../oracles/findings.js';
import type { RunReport } from '../report.js';
import { listBuiltins } from '../scenario/loader.js';

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
export function formatCompare(reports: RunReport[]): string {
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
  out.push('each design alone: npm run sim -- --scenario NAME with the same --engine and --seed; its findings carry evidence');
  return out.join('\n') + '\n';
}
