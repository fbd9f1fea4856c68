// `vcpulab trace FILE`: read a trace written by `sim --trace` in one streaming pass and summarize it, print
// the events of some kinds (--grep), or export it for Perfetto (--perfetto; ../trace/perfetto.ts).
// Bad input is one line and exit code 2 (../../shared/STYLE.md §13).
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { EXIT_OK, UserError } from '../errors.js';
import { cyclesToNs } from '../hw/clock.js';
import { Findings, type FindingKind } from '../oracles/findings.js';
import { IpiOracle, type Ev } from '../oracles/ipi.js';
import { loadScenario } from '../scenario/loader.js';
import {
  EVENT_NAMES, EV_ASSERT, EV_DOMAIN_END, EV_HOST_APIC_TAMPER, EV_HOST_RESET, EV_HV_HELD_OFF, EV_HV_IPI_MISDIRECTED, EV_ICR_WINDOW, EV_INTENT, EV_IPI_COALESCED,
  EV_IPI_DELIVER, EV_IPI_SEND, EV_PHYS_IRQ, EV_REALM_ESCAPE, EV_ROGUE_VMFUNC, EV_STALE,
} from '../trace/events.js';
import { formatEvent } from '../trace/collector.js';
import { PerfettoExporter, type PerfettoCounts } from '../trace/perfetto.js';
import { TraceReader } from '../trace/reader.js';
import type { TraceHeader, TraceRecord } from '../trace/writer.js';

export const TRACE_USAGE = `usage: vcpulab trace FILE [--perfetto OUT.json] [--grep KIND[,KIND...]] [--limit N]
  (no flags)            summary: header, events per kind, simulated time span
  --perfetto OUT.json   write Chrome trace-event JSON (open it in ui.perfetto.dev or chrome://tracing)
  --grep KIND[,KIND]    print the events of these kinds, one line each; KIND is an event name
                        (ipi_send, vmfunc, stale_translation, ...) or a finding kind (IPI_MISDIRECTED, ...);
                        an ipi_deliver the IPI oracle judges wrong ends in "WRONG: <cause>"
  --limit N             print at most N --grep lines
  -h, --help            this text`;

/** The events each finding is judged from (../oracles/). STALL has none: it is the engine's watchdog. */
const FINDING_EVENTS: Readonly<Partial<Record<FindingKind, readonly number[]>>> = {
  IPI_MISDIRECTED: [EV_ICR_WINDOW, EV_HV_IPI_MISDIRECTED, EV_IPI_DELIVER],
  IPI_LOST: [EV_INTENT, EV_IPI_SEND, EV_IPI_DELIVER, EV_IPI_COALESCED],
  IPI_FOREIGN: [EV_IPI_DELIVER, EV_IPI_COALESCED],
  IPI_UNKNOWN_VECTOR: [EV_PHYS_IRQ],
  HOST_RESET: [EV_HOST_RESET],
  HOST_APIC_TAMPER: [EV_HOST_APIC_TAMPER, EV_HV_HELD_OFF],
  ROGUE_VMFUNC: [EV_ROGUE_VMFUNC],
  REALM_ESCAPE: [EV_REALM_ESCAPE],
  STALE_TRANSLATION: [EV_STALE],
  DOMAIN_CRASH: [EV_DOMAIN_END],
  GUEST_ASSERT: [EV_ASSERT],
};

export interface TraceFlags { file: string; perfetto?: string; grep?: Set<number>; limit?: number }

export function parseTraceArgs(args: string[]): TraceFlags | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args, strict: true, allowPositionals: true,
      options: { perfetto: { type: 'string' }, grep: { type: 'string' }, limit: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0].replace(/\. To specify a positional argument.*$/, '');
    throw new UserError(`vcpulab trace: ${msg} (see vcpulab trace --help)`);
  }
  const v = parsed.values;
  if (v.help === true) return 'help';
  if (parsed.positionals.length !== 1) {
    throw new UserError(`vcpulab trace: give one trace FILE, got ${parsed.positionals.length} (${TRACE_USAGE.split('\n')[0]})`);
  }
  if (v.limit !== undefined && v.grep === undefined) throw new UserError('vcpulab trace: --limit needs --grep');
  return {
    file: parsed.positionals[0],
    perfetto: v.perfetto,
    grep: v.grep === undefined ? undefined : traceGrepKinds(v.grep),
    limit: v.limit === undefined ? undefined : limitFlag(v.limit),
  };
}

function limitFlag(v: string): number {
  if (!/^\d+$/.test(v.trim()) || Number(v) < 1 || !Number.isSafeInteger(Number(v))) {
    throw new UserError(`vcpulab trace: --limit must be a positive integer, got '${v}'`);
  }
  return Number(v);
}

/** Event kinds for a --grep list. Names match either case: event names are lower case, findings upper. */
export function traceGrepKinds(spec: string): Set<number> {
  const byName = new Map(Object.entries(EVENT_NAMES).map(([k, n]) => [n, Number(k)]));
  const kinds = new Set<number>();
  for (const word of spec.split(',')) {
    const w = word.trim();
    const finding = FINDING_EVENTS[w.toUpperCase() as FindingKind];
    const ev = byName.get(w.toLowerCase());
    if (finding !== undefined) for (const k of finding) kinds.add(k);
    else if (ev !== undefined) kinds.add(ev);
    else {
      const valid = `events: ${[...byName.keys()].join(', ')}; findings: ${Object.keys(FINDING_EVENTS).join(', ')}`;
      throw new UserError(`vcpulab trace: unknown --grep kind '${w}' (${valid})`);
    }
  }
  return kinds;
}

/** Counts for the summary. */
class TraceStats {
  readonly byKind = new Map<number, number>();
  readonly byPcpu = new Map<number, number>();
  first = Infinity;
  last = -Infinity;

  onRecord(r: TraceRecord): void {
    this.byKind.set(r[2], (this.byKind.get(r[2]) ?? 0) + 1);
    this.byPcpu.set(r[1], (this.byPcpu.get(r[1]) ?? 0) + 1);
    if (r[0] < this.first) this.first = r[0];
    if (r[0] > this.last) this.last = r[0];
  }
}

function summaryText(reader: TraceReader, s: TraceStats): string {
  const h: TraceHeader = reader.header;
  const ns = (c: number): string => `${cyclesToNs(c).toFixed(1)} ns`;
  const lines = [
    `trace:    ${reader.file} (${h.format} v${h.version})`,
    `run:      scenario=${h.scenario}  engine=${h.engine}  SEED=${h.seed}  pcpus=${h.pcpus}  domains=${h.domains.join(',')}`,
    reader.recordsRead === 0
      ? `events:   none (${reader.batchesRead} batches)`
      : `events:   ${reader.recordsRead} in ${reader.batchesRead} batches, ${ns(s.first)} .. ${ns(s.last)} simulated (span ${ns(s.last - s.first)})`,
  ];
  if (reader.truncatedBytes > 0) lines.push(`truncated: the last ${reader.truncatedBytes} bytes are an incomplete batch (interrupted run?), ignored`);
  lines.push(`per pCPU: ${[...s.byPcpu].sort((x, y) => x[0] - y[0]).map(([p, n]) => `p${p} ${n}`).join('  ')}`);
  lines.push('per kind:');
  const kinds = [...s.byKind].sort((x, y) => y[1] - x[1] || x[0] - y[0]);
  for (const [k, n] of kinds) lines.push(`  ${(EVENT_NAMES[k] ?? `event${k}`).padEnd(20)} ${String(n).padStart(10)}`);
  return lines.join('\n') + '\n';
}

/**
 * Prints matching events; false once --limit lines are out (and judged) or the reader went away. Deliveries
 * are re-judged from the trace's own events by the IPI oracle the run used (../oracles/ipi.ts): the trace
 * stores no judgments. A delivery's line waits until the oracle has judged it (it needs the events up to
 * its horizon after it), and lines leave in file order.
 */
class TraceGrep {
  /** Set when stdout's reader closed (`| head`): like grep, stop quietly rather than fail. */
  closed = false;
  private matched = 0;
  /** Lines in file order; null while a delivery waits for its verdict. */
  private lines: (string | null)[] = [];
  /** Absolute index of lines[0]. */
  private base = 0;
  /** Arrival number (the oracle's) of a waiting delivery -> [absolute line index, its text]. */
  private readonly waiting = new Map<number, [number, string]>();
  private readonly oracle: IpiOracle | undefined;
  private last = 0;

  constructor(private readonly kinds: Set<number>, private readonly header: TraceHeader, private readonly limit = Infinity) {
    if (!kinds.has(EV_IPI_DELIVER)) return;
    this.oracle = new IpiOracle({
      findings: new Findings(0), names: header.domains, npcpus: header.pcpus, lostBoundUs: traceLostBoundUs(header),
      fmt: () => '', onVerdict: (e, cause) => this.verdict(e, cause),
    });
  }

  readonly onStdoutError = (e: NodeJS.ErrnoException): void => {
    if (e.code !== 'EPIPE') throw e;
    this.closed = true;
  };

  /** False when nothing more is wanted: the limit is reached and every printed delivery judged, or stdout closed. */
  onRecord(r: TraceRecord): boolean {
    if (this.closed) return false;
    if (r[0] > this.last) this.last = r[0];
    const n = this.oracle?.onEvent(r[1], r[0], r[2], r[3], r[4], r[5], r[6], r[7], -1) ?? -1;
    if (this.matched < this.limit && this.kinds.has(r[2])) {
      this.matched++;
      const line = formatEvent(this.header.domains, r[1], r[0], r[2], r[3], r[4], r[5], r[6], r[7]);
      if (r[2] === EV_IPI_DELIVER && n >= 0) {
        this.waiting.set(n, [this.base + this.lines.length, line]);
        this.lines.push(null);
      } else this.lines.push(line);
    }
    return this.matched < this.limit || this.waiting.size > 0;
  }

  private verdict(e: Ev, cause: string | null): void {
    const w = this.waiting.get(e.n);
    if (w === undefined) return; // not printed (past --limit)
    this.waiting.delete(e.n);
    this.lines[w[0] - this.base] = cause === null ? w[1] : `${w[1]}  WRONG: ${cause}`;
  }

  /** Write what is ready, waiting for a slow pipe so output never piles up in memory. `end`: judge the rest first. */
  async flush(end = false): Promise<void> {
    if (this.oracle !== undefined) {
      if (end) this.oracle.finish(this.last);
      else this.oracle.advance();
    }
    let k = 0;
    while (k < this.lines.length && this.lines[k] !== null) k++;
    if (k === 0 || this.closed) return;
    const out = this.lines.slice(0, k) as string[];
    this.lines = this.lines.slice(k);
    this.base += k;
    const ok = process.stdout.write(out.join('\n') + '\n');
    if (ok) return;
    try { await once(process.stdout, 'drain'); } catch (e) { this.onStdoutError(e as NodeJS.ErrnoException); }
  }
}

/** The loss bound the run was judged with: its scenario's, when the file can still be read, else the default. */
function traceLostBoundUs(h: TraceHeader): number | undefined {
  try { return loadScenario(h.scenario).ipiLostBoundUs; } catch { return undefined; }
}

export async function traceCommand(args: string[]): Promise<number> {
  const f = parseTraceArgs(args);
  if (f === 'help') { process.stdout.write(TRACE_USAGE + '\n'); return EXIT_OK; }
  const reader = new TraceReader(f.file);
  const exporter = f.perfetto !== undefined ? new PerfettoExporter(f.perfetto, reader.header) : undefined;
  const grep = f.grep !== undefined ? new TraceGrep(f.grep, reader.header, f.limit) : undefined;
  const stats = exporter === undefined && grep === undefined ? new TraceStats() : undefined;
  await traceScan(reader, exporter, grep, stats);
  const c = exporter?.finish();
  if (grep?.closed === true) return EXIT_OK;
  if (stats !== undefined) process.stdout.write(summaryText(reader, stats));
  if (c !== undefined) process.stdout.write(perfettoSummary(f.perfetto as string, c));
  if (stats === undefined && reader.truncatedBytes > 0) {
    process.stderr.write(`${f.file}: the last ${reader.truncatedBytes} bytes are an incomplete batch (interrupted run?), ignored\n`);
  }
  return EXIT_OK;
}

/** What --perfetto wrote: every JSON event by type, the instants by name, and the IPIs it could not draw. */
export function perfettoSummary(file: string, c: PerfettoCounts): string {
  const skew = c.skewedFlows > 0 ? `, ${c.skewedFlows} of them with the receiver's clock behind (head moved to just after the send)` : '';
  const lines = [
    `${file}: ${c.written} JSON events from ${c.events} trace records: ${c.metadata} metadata (process and pCPU track names), ` +
      `${c.slices} vCPU slices, ${c.instants} instants, ${c.flows} IPI flows (${2 * c.flows} flow events${skew})`,
  ];
  const named = [...c.instantsByName].sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1));
  if (named.length > 0) lines.push(`  instants: ${named.map(([n, k]) => `${n} ${k}`).join(', ')}`);
  if (c.unmatched > 0) lines.push(`  ${c.unmatched} vCPU IPI deliveries without an arrow: their send was not in the trace within reach`);
  return lines.join('\n') + '\n';
}

/** One pass over the records feeding every consumer; it stops early when only a finished --grep is left. */
async function traceScan(reader: TraceReader, exporter?: PerfettoExporter, grep?: TraceGrep, stats?: TraceStats): Promise<void> {
  if (grep !== undefined) process.stdout.on('error', grep.onStdoutError);
  try {
    for (const batch of reader.batches()) {
      let more = true;
      for (const r of batch) {
        exporter?.onRecord(r);
        stats?.onRecord(r);
        if (grep !== undefined && !grep.onRecord(r)) more = false;
      }
      await grep?.flush();
      if (!more && exporter === undefined) break;
    }
    await grep?.flush(true);
  } finally {
    if (grep !== undefined) process.stdout.off('error', grep.onStdoutError);
  }
}
