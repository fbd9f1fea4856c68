// The human-readable run report (the JSON report is the contract; this is for people at a terminal).
import type { RunReport } from '../report.js';
import type { FreezeReport, LapicFrame } from '../engine/freeze.js';

/** `magic 1` reports printed; the JSON report has them all (up to its own cap). */
const HUMAN_REPORTS_MAX = 200;

export function formatHuman(r: RunReport): string {
  const L: string[] = [];
  L.push(`vcpulab  scenario=${r.scenario}  engine=${r.engine}  SEED=${r.seed}  pcpus=${r.pcpus}`);
  L.push(`outcome: ${r.outcome}${r.reason !== null ? ` (${r.reason})` : ''}`);
  L.push('');
  L.push('domains:');
  for (const d of r.domains) {
    const tail = d.state === 'crashed' ? `crash: ${d.crash}` : d.exit_code !== null ? `exit code ${d.exit_code}` : d.ended ?? '';
    L.push(`  ${d.name.padEnd(16)} ${d.state.padEnd(9)} ${tail}`);
  }
  for (const [dom, text] of Object.entries(r.console)) {
    if (text.length === 0) continue;
    L.push('');
    L.push(`console ${dom}:`);
    for (const line of text.replace(/\n$/, '').split('\n')) L.push(`  | ${line}`);
    const dropped = r.console_dropped?.[dom] ?? 0;
    if (dropped > 0) L.push(`  (console cap reached: ${dropped} more characters only counted)`);
  }
  if (r.reports.length > 0) {
    L.push('');
    L.push('reports (magic 1):');
    for (let i = 0; i < r.reports.length && i < HUMAN_REPORTS_MAX; i++) {
      const x = r.reports[i];
      L.push(`  ${x.domain}/v${x.vcpu}  key ${x.key} = ${x.value}`);
    }
    const more = r.reports.length - Math.min(r.reports.length, HUMAN_REPORTS_MAX);
    if (more > 0) L.push(`  ... and ${more} more in the JSON report (--json)`);
    if (r.reports_truncated) L.push(`  (report cap reached: ${r.reports_dropped} more reports only counted)`);
  }
  L.push('');
  if (r.findings.length === 0) L.push('findings: none');
  else {
    L.push('findings:');
    for (const f of r.findings) {
      const where = f.first.pcpu < 0 ? (f.first.domain ? ` (domain ${f.first.domain})` : '')
        : ` on pCPU ${f.first.pcpu}${f.first.domain ? ` (${f.first.domain}/v${f.first.vcpu})` : ''}`;
      L.push(`  ${f.kind} x${f.count}: first at ${f.first.time_ns} ns${where}`);
      L.push(`    ${f.first.detail}`);
      const more = Object.keys(f.signatures).length - 1 + (f.signatures_dropped > 0 ? 1 : 0);
      L.push(`    cause ${f.first.cause}, signature ${f.first.signature}${more > 0 ? ` (and ${more}${f.signatures_dropped > 0 ? '+' : ''} more)` : ''}`);
      if (f.instances_truncated) L.push(`    instances: the first ${f.instances.length} kept in the JSON report, ${f.instances_dropped} more only counted (--max-instances)`);
      if (f.reproduce !== undefined) L.push(`    reproduce: ${f.reproduce}`);
      if (f.evidence.length > 0) {
        L.push('    last events on that pCPU:');
        for (const e of f.evidence) L.push(`      ${e}`);
      }
    }
  }
  if (r.freeze !== undefined) freezeLines(L, r.freeze);
  if (r.warnings.length > 0) {
    L.push('');
    L.push('warnings:');
    for (const w of r.warnings) L.push(`  ${w}`);
  }
  const mt = r.metrics;
  L.push('');
  L.push(`metrics: ${mt.instructions} guest instructions in ${mt.wall_ms} ms wall (${mt.guest_mips} M/s), ` +
    `${mt.sim_time_ns} ns simulated, ${mt.vm_exits} VM exits, ${mt.context_switches} context switches`);
  L.push('');
  L.push(`replay: ${r.replay}`);
  return L.join('\n') + '\n';
}

function lapicLine(l: LapicFrame): string {
  const set = (v: string[]): string => (v.length === 0 ? '-' : v.join(','));
  return `IRR ${set(l.irr)}  ISR ${set(l.isr)}  ICR ${l.icr_hi}:${l.icr_lo} (dest ${l.icr.destination} ${l.icr.dest_mode}` +
    `${l.icr.shorthand !== 'none' ? ` ${l.icr.shorthand}` : ''}, ${l.icr.mode}, vector ${l.icr.vector})`;
}

function freezeLines(L: string[], z: FreezeReport): void {
  const f = z.finding;
  L.push('');
  L.push(`frozen (--freeze-on ${z.on}) at ${f.signature}, judged at ${f.time_ns} ns on pCPU ${f.pcpu}${f.domain ? ` (${f.domain}/v${f.vcpu})` : ''}:`);
  for (const p of z.pcpus) {
    const v = p.vcpu;
    const who = v === null ? 'no vCPU' : `${v.domain}/v${v.vcpu} pc=${v.pc} [${v.insn ?? '?'}] ${v.view === null ? 'host p2m' : `view ${v.view}`}`;
    L.push(`  p${p.pcpu} ${p.state}${p.parked ? '' : ' (did not park)'} at ${p.clock_ns} ns: ${who}`);
    if (v !== null) L.push(`     ${Object.entries(v.regs).map(([k, x]) => `${k}=${x}`).join(' ')} flags=${v.flags}`);
    L.push(`     lapic  ${lapicLine(p.lapic)}`);
    if (p.vlapic !== null) L.push(`     vlapic ${lapicLine(p.vlapic)}`);
  }
}
