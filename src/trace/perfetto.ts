// A vcpulab trace as Chrome trace-event JSON (the JSON Object Format that ui.perfetto.dev and
// chrome://tracing import; DESIGN.md §7). One process, "vcpulab <scenario>", with a thread track per pCPU:
//  - vCPU slices: ph "X" from EV_SCHED_IN to the next EV_SCHED_OUT on that pCPU, named "<domain>/v<vcpu>";
//  - VM exits: ph "i" (thread scope) named after the exit reason, with pc and qualification;
//  - IPIs: ph "s" on the sender's pCPU at EV_IPI_SEND and ph "f" (bp "e") on the receiver's at
//    EV_IPI_DELIVER, one flow id per delivery, matched by the source tag; both ends are instants too
//    (a head whose pCPU clock is behind the sender's is moved after the send: see flow());
//  - markers (`magic 4`): ph "i" named "marker <id>"; every other kind: ph "i" named after EVENT_NAMES.
// Every instant's args are decoded (eventArgs): an ICR as destination, mode and vector, vectors and
// addresses in hex, views by index ("host" for the host p2m), IPIs by their source ("v3#12", "xen").
// Simplified: timestamps are rounded to whole simulated ns (Perfetto's resolution). Events are written as
// they are read, in file order (the importer sorts), so memory stays bounded however long the trace.
import { closeSync, openSync, writeSync } from 'node:fs';
import { UserError } from '../errors.js';
import { cyclesToNs } from '../hw/clock.js';
import { EXIT_NAMES } from '../isa/interp.js';
import {
  EVENT_NAMES, EV_EXIT, EV_IPI_DELIVER, EV_IPI_SEND, EV_MARKER, EV_SCHED_IN, EV_SCHED_OUT, ipiTagSender, ipiTagSeq,
  EV_ALTP2M_OP, EV_ASSERT, EV_CONSOLE, EV_DOMAIN_END, EV_EXCEPTION, EV_HOST_RESET, EV_HV_IPI_MISDIRECTED, EV_ICR_WINDOW, EV_INTENT,
  EV_INVEPT, EV_IPI_COALESCED, EV_KERNEL_IN_REALM_VIEW, EV_MEM_EVENT, EV_PHYS_IRQ, EV_REALM_ENTRY, EV_REALM_ESCAPE, EV_REPORT,
  EV_ROGUE_VMFUNC, EV_SINGLESTEP, EV_STALE, EV_VE, EV_VMFUNC, ICRW_REUSED, CRASH_NAMES,
} from './events.js';
import { DS_CRASHED, DS_HALTED, DS_RUNNING, DS_SHUTDOWN } from '../../shared/domain.js';
import { hex, tagText } from './collector.js';
import { ALTP2M_OP_NAMES } from '../hv/hvm-op.js';
import type { TraceHeader, TraceRecord } from './writer.js';

const PID = 1;
const FLUSH_BYTES = 256 << 10;
/** Sends remembered per sender vCPU: a delivery more than this many of its sender's IPIs late gets no arrow. */
const SEND_RING = 1024;
/** Deliveries read before their send (another pCPU's ring was drained first) waiting for it, at most. */
const PENDING_MAX = 4096;

/** Perfetto's importer takes tid 0 for the idle (swapper) thread, so pCPU N is tid N + 1. */
export function perfettoTid(pcpu: number): number { return pcpu + 1; }

/**
 * What the export read and wrote. `written` is every JSON event in the file: `metadata` (process and track
 * names), `slices`, `instants` and two per flow (its start and its head). `unmatched`: deliveries of a
 * vCPU's IPI whose send the file did not hold in reach (an arrow needs both ends); the hypervisor's own
 * IPIs have no send event and are not counted there.
 */
export interface PerfettoCounts {
  events: number; written: number; metadata: number; slices: number; instants: number; flows: number; skewedFlows: number; unmatched: number;
  /** Instants per name (exit reasons, ipi_send, ...; every marker under "marker", whatever its guest-chosen id, so this stays small). */
  instantsByName: Map<string, number>;
}

interface Running { ns: number; dom: number; vcpu: number }
interface SendRing { seq: Int32Array; ns: Float64Array; tid: Int32Array }
type Args = Record<string, string | number | boolean>;

/** Buffers serialized events and writes them in large pieces: the JSON is never one string. */
class JsonEventStream {
  private parts: string[] = [];
  private bytes = 0;
  private count = 0;

  constructor(private readonly fd: number) {}

  raw(s: string): void {
    this.parts.push(s);
    this.bytes += s.length;
    if (this.bytes >= FLUSH_BYTES) this.flush();
  }

  event(e: object): void {
    this.raw((this.count++ === 0 ? '\n' : ',\n') + JSON.stringify(e));
  }

  flush(): void {
    if (this.parts.length === 0) return;
    writeSync(this.fd, this.parts.join(''));
    this.parts = [];
    this.bytes = 0;
  }
}

export class PerfettoExporter {
  readonly counts: PerfettoCounts = { events: 0, written: 0, metadata: 0, slices: 0, instants: 0, flows: 0, skewedFlows: 0, unmatched: 0, instantsByName: new Map() };
  private readonly fd: number;
  private readonly out: JsonEventStream;
  private readonly tracks = new Set<number>();
  private readonly running: (Running | undefined)[] = [];
  private readonly lastNs: number[] = [];
  private readonly sends = new Map<number, SendRing>();
  private readonly early = new Map<number, { ns: number; tid: number }[]>();
  private nextFlowId = 1;

  constructor(readonly file: string, private readonly header: TraceHeader) {
    try { this.fd = openSync(file, 'w'); } catch (e) {
      throw new UserError(`--perfetto: cannot write '${file}' (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    this.out = new JsonEventStream(this.fd);
    const { scenario, engine, seed, pcpus, domains } = header;
    // displayTimeUnit first: Perfetto's streaming tokenizer counts one that arrives after the first chunk as too late.
    const other = JSON.stringify({ source: 'vcpulab trace', scenario, engine, seed, pcpus, domains });
    this.out.raw(`{"displayTimeUnit":"ns","otherData":${other},"traceEvents":[`);
    this.meta('process_name', undefined, { name: `vcpulab ${scenario}` });
    for (let p = 0; p < pcpus; p++) this.track(p);
  }

  onRecord(r: TraceRecord): void {
    const [cycles, pcpu, kind, dom, vcpu, a, b, c] = r;
    const ns = Math.round(cyclesToNs(cycles));
    this.counts.events++;
    this.track(pcpu);
    this.lastNs[pcpu] = Math.max(this.lastNs[pcpu] ?? 0, ns);
    const who = this.who(dom, vcpu);
    switch (kind) {
      case EV_SCHED_IN: this.schedIn(pcpu, ns, dom, vcpu); break;
      case EV_SCHED_OUT: this.schedOut(pcpu, ns, who, a, b, c); break;
      case EV_EXIT: this.instant(pcpu, ns, EXIT_NAMES[a] ?? `exit ${a}`, 'exit', { vcpu: who, ...eventArgs(kind, a, b, c) }); break;
      case EV_MARKER: this.instant(pcpu, ns, `marker ${a}`, 'marker', { vcpu: who, ...eventArgs(kind, a, b, c) }); break;
      case EV_IPI_SEND:
        this.instant(pcpu, ns, 'ipi_send', 'ipi', { vcpu: who, ...eventArgs(kind, a, b, c) });
        this.ipiSent(a, ns, perfettoTid(pcpu));
        break;
      case EV_IPI_DELIVER:
        this.instant(pcpu, ns, 'ipi_deliver', 'ipi', { vcpu: who, ...eventArgs(kind, a, b, c) });
        this.ipiDelivered(a, ns, perfettoTid(pcpu));
        break;
      default: this.instant(pcpu, ns, EVENT_NAMES[kind] ?? `event${kind}`, 'event', { vcpu: who, ...eventArgs(kind, a, b, c) });
    }
  }

  /** Close the slices of vCPUs still running (at their pCPU's last event) and end the JSON. */
  finish(): PerfettoCounts {
    this.running.forEach((s, p) => { if (s !== undefined) this.slice(p, s, this.lastNs[p], { open_at_end: true }); });
    this.running.length = 0;
    for (const list of this.early.values()) this.counts.unmatched += list.length;
    this.early.clear();
    this.out.raw('\n]}\n');
    this.out.flush();
    closeSync(this.fd);
    return this.counts;
  }

  private emit(e: object): void {
    this.counts.written++;
    this.out.event(e);
  }

  private who(dom: number, vcpu: number): string {
    return dom >= 0 ? `${this.header.domains[dom] ?? `dom${dom}`}/v${vcpu}` : 'xen';
  }

  /** No tid for process metadata: the importer registers every tid it sees, and tid 0 is not ours. */
  private meta(name: string, tid: number | undefined, args: Args): void {
    this.counts.metadata++;
    this.emit(tid === undefined ? { name, ph: 'M', pid: PID, args } : { name, ph: 'M', pid: PID, tid, args });
  }

  /** Name a pCPU's track the first time it is seen (all of the header's up front, in order). */
  private track(pcpu: number): void {
    if (this.tracks.has(pcpu)) return;
    this.tracks.add(pcpu);
    this.meta('thread_name', perfettoTid(pcpu), { name: `pCPU ${pcpu}` });
    this.meta('thread_sort_index', perfettoTid(pcpu), { sort_index: pcpu });
  }

  private instant(pcpu: number, ns: number, name: string, cat: string, args: Args): void {
    this.counts.instants++;
    const key = cat === 'marker' ? 'marker' : name;
    this.counts.instantsByName.set(key, (this.counts.instantsByName.get(key) ?? 0) + 1);
    this.emit({ name, cat, ph: 'i', s: 't', ts: ns / 1000, pid: PID, tid: perfettoTid(pcpu), args });
  }

  private schedIn(pcpu: number, ns: number, dom: number, vcpu: number): void {
    const prev = this.running[pcpu];
    // Not expected (every switch emits sched_out first); keep the earlier slice rather than lose it.
    if (prev !== undefined) this.slice(pcpu, prev, ns, { closed_by: 'sched_in' });
    this.running[pcpu] = { ns, dom, vcpu };
  }

  private schedOut(pcpu: number, ns: number, who: string, a: number, b: number, c: number): void {
    const s = this.running[pcpu];
    const out = eventArgs(EV_SCHED_OUT, a, b, c);
    if (s === undefined) { this.instant(pcpu, ns, 'sched_out', 'event', { vcpu: who, ...out }); return; }
    this.running[pcpu] = undefined;
    this.slice(pcpu, s, ns, { runstate_out: out.runstate, pc_out: out.pc, ...(c !== pcpu ? { queued_on_pcpu: c } : {}) });
  }

  private slice(pcpu: number, s: Running, endNs: number, extra: Args): void {
    this.counts.slices++;
    const name = this.who(s.dom, s.vcpu);
    this.emit({
      name, cat: 'vcpu', ph: 'X', ts: s.ns / 1000, dur: Math.max(0, endNs - s.ns) / 1000, pid: PID, tid: perfettoTid(pcpu),
      args: { domain: this.header.domains[s.dom] ?? `dom${s.dom}`, vcpu: s.vcpu, ...extra },
    });
  }

  private ipiSent(tag: number, ns: number, tid: number): void {
    const sender = ipiTagSender(tag);
    if (sender < 0) return; // the hypervisor's own: no send event to start an arrow from
    let ring = this.sends.get(sender);
    if (ring === undefined) {
      ring = { seq: new Int32Array(SEND_RING).fill(-1), ns: new Float64Array(SEND_RING), tid: new Int32Array(SEND_RING) };
      this.sends.set(sender, ring);
    }
    const seq = ipiTagSeq(tag), i = seq % SEND_RING;
    ring.seq[i] = seq; ring.ns[i] = ns; ring.tid[i] = tid;
    const waiting = this.early.get(tag);
    if (waiting === undefined) return;
    this.early.delete(tag);
    for (const d of waiting) this.flow(tag, ns, tid, d.ns, d.tid);
  }

  private ipiDelivered(tag: number, ns: number, tid: number): void {
    const sender = ipiTagSender(tag);
    if (sender < 0) return;
    const seq = ipiTagSeq(tag), i = seq % SEND_RING;
    const ring = this.sends.get(sender);
    if (ring !== undefined && ring.seq[i] === seq) { this.flow(tag, ring.ns[i], ring.tid[i], ns, tid); return; }
    // The file interleaves pCPU rings by drain, so a delivery can precede its send here.
    const list = this.early.get(tag) ?? [];
    list.push({ ns, tid });
    this.early.set(tag, list);
    if (this.early.size > PENDING_MAX) {
      const oldest = this.early.keys().next().value as number;
      this.counts.unmatched += this.early.get(oldest)?.length ?? 0;
      this.early.delete(oldest);
    }
  }

  /** One arrow per delivery (a multicast IPI has several), so each pair gets its own id: the importer
   *  never forgets a v1 flow id, and a reused one would be dropped as a duplicate. */
  private flow(tag: number, sendNs: number, sendTid: number, ns: number, tid: number): void {
    const id = this.nextFlowId++;
    this.counts.flows++;
    // pCPU clocks drift apart under lax sync (up to --slack), so a delivery can carry an earlier time than
    // its send. The importer replays events in time order and drops a flow whose end comes first, so such
    // a head goes 1 ns after the send, still on the receiver's track; the ipi_deliver instant keeps the
    // recorded time, and clock_skew_ns says how far the receiver's clock was behind.
    const endNs = ns > sendNs ? ns : sendNs + 1;
    const args: Args = endNs === ns ? { ipi: tagText(tag), tag } : { ipi: tagText(tag), tag, clock_skew_ns: sendNs - ns };
    if (endNs !== ns) this.counts.skewedFlows++;
    this.emit({ name: 'ipi', cat: 'ipi', ph: 's', id, ts: sendNs / 1000, pid: PID, tid: sendTid, args: { ipi: tagText(tag), tag } });
    this.emit({ name: 'ipi', cat: 'ipi', ph: 'f', bp: 'e', id, ts: endNs / 1000, pid: PID, tid, args });
  }
}

const DELIVERY_MODES = ['fixed', 'lowest', 'smi', 'reserved', 'nmi', 'init', 'sipi', 'extint'];
const SHORTHANDS = ['none', 'self', 'all', 'all-but-self'];
const ACCESS = ['-', 'r', 'w', 'rw', 'x', 'rx', 'wx', 'rwx'];
const RUNSTATES = ['runnable', 'running', 'blocked', 'done', 'limit', 'lost', 'wait-for-SIPI'];
const PIRQ = ['handled by xen', 'no handler (dropped)', 'reflected to the running vCPU'];
const DOMAIN_STATES: Readonly<Record<number, string>> = { [DS_RUNNING]: 'running', [DS_SHUTDOWN]: 'shutdown', [DS_CRASHED]: 'crashed', [DS_HALTED]: 'halted' };
const HOST_VIEWS: ReadonlySet<number> = new Set([-1, 0xffff]);

/** Addresses, qualifications and ICR words as 8 hex digits (as the --grep lines write them). */
function h(v: number): string { return `0x${hex(v)}`; }
/** Vectors in short hex: 0x40. */
function vec(v: number): string { return `0x${(v & 0xff).toString(16)}`; }
/** A view by its index; the host p2m as "host". */
function view(v: number): number | string { return HOST_VIEWS.has(v) ? 'host' : v; }

/** An ICR low word and its destination: what the send asked for. `dest` is ICR_HI (xAPIC) or the x2APIC / virtual ID. */
export function icrArgs(lo: number, dest: number): Args {
  const xapicHi = (dest >>> 0) > 0xffffff;
  return {
    vector: vec(lo), mode: DELIVERY_MODES[(lo >>> 8) & 7], dest_mode: (lo & 0x800) !== 0 ? 'logical' : 'physical',
    shorthand: SHORTHANDS[(lo >>> 18) & 3], destination: xapicHi ? dest >>> 24 : dest, icr_lo: h(lo), ...(xapicHi ? { icr_hi: h(dest) } : {}),
  };
}

/** An event's fields decoded by kind (the record layouts of events.ts); raw a, b, c for a kind not listed. */
export function eventArgs(kind: number, a: number, b: number, c: number): Args {
  switch (kind) {
    case EV_EXIT: return { pc: h(b), qual: h(c) };
    case EV_MARKER: return { marker: a, pc: h(b) };
    case EV_REPORT: return { key: a, value: b };
    case EV_CONSOLE: return { char: String.fromCharCode(a & 0xff) };
    case EV_ASSERT: return { code: a, pc: h(b) };
    case EV_EXCEPTION: return { vector: vec(a), pc: h(b) };
    case EV_SCHED_OUT: return { runstate: RUNSTATES[a] ?? a, pc: h(b), queued_on_pcpu: c };
    case EV_INTENT: return { target_vcpu: a, vector: vec(b) };
    case EV_IPI_SEND: return { ipi: tagText(a), ...icrArgs(b, c) };
    case EV_IPI_DELIVER: return { ipi: tagText(a), vector: vec(b), accepted_on_pcpu: c };
    case EV_IPI_COALESCED: return { ipi: tagText(a), vector: vec(b) };
    case EV_PHYS_IRQ: return { vector: vec(a), disposition: PIRQ[b] ?? b, ipi: tagText(c) };
    case EV_HOST_RESET: return { target_pcpu: a, mode: DELIVERY_MODES[b & 7], ipi: tagText(c) };
    case EV_ICR_WINDOW: return { ipi: tagText(a), icr_hi: b === ICRW_REUSED ? 'already sent with' : 'written by someone else', last_writer: c === 0 ? 'xen' : `v${c - 1}` };
    case EV_HV_IPI_MISDIRECTED: return { meant_pcpu: a, vector: vec(b), reached_pcpu: c };
    case EV_DOMAIN_END: return a === DS_CRASHED ? { state: 'crashed', reason: CRASH_NAMES[b] ?? b } : { state: DOMAIN_STATES[a] ?? a, exit_code: b };
    case EV_VMFUNC: return { from_view: view(a), to_view: view(c), pc: h(b) };
    case EV_ROGUE_VMFUNC: return { to_view: view(a), pc: h(b) };
    case EV_VE: case EV_MEM_EVENT: return { gpa: h(a), access: ACCESS[b] ?? b, view: view(c) };
    case EV_INVEPT: return a === -2 ? { invept: 'all-context', tables_marked: b } : { invept: 'single-context', view: view(a) };
    case EV_STALE: return { gpa: h(a), access: ACCESS[b & 0xff] ?? b, view: view((b >>> 8) & 0xffff), entry_stamp: c };
    case EV_REALM_ESCAPE: return { gpa: h(a), pc: h(b), view: view(c) };
    case EV_ALTP2M_OP: return { op: ALTP2M_OP_NAMES[a] ?? a, result: b, generation: c };
    case EV_SINGLESTEP: return { pc: h(a) };
    case EV_REALM_ENTRY: return { from_pc: a === -1 ? 'unknown' : h(a), view: view((b >>> 16) & 0xffff), from_gfn: `0x${(c >>> 0).toString(16)}` };
    case EV_KERNEL_IN_REALM_VIEW: return { pc: h(a), view: view((b >>> 16) & 0xffff), last_transfer_pc: c === -1 ? 'none' : h(c) };
    default: return { a, b, c };
  }
}
