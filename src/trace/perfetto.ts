// A vcpulab trace as Chrome trace-event JSON (the JSON Object Format that ui.perfetto.dev and
// chrome://tracing import; DESIGN.md §7). One process, "vcpulab <scenario>", with a thread track per pCPU:
//  - vCPU slices: ph "X" from EV_SCHED_IN to the next EV_SCHED_OUT on that pCPU, named "<domain>/v<vcpu>";
//  - VM exits: ph "i" (thread scope) named after the exit reason, with pc and qualification;
//  - IPIs: ph "s" on the sender's pCPU at EV_IPI_SEND and ph "f" (bp "e") on the receiver's at
//    EV_IPI_DELIVER, one flow id per delivery, matched by the source tag; both ends are instants too
//    (a head whose pCPU clock is behind the sender's is moved after the send: see flow());
//  - markers (`magic 4`): ph "i" named "marker <id>"; every other kind: ph "i" named after EVENT_NAMES.
// Simplified: timestamps are rounded to whole simulated ns (Perfetto's resolution). Events are written as
// they are read, in file order (the importer sorts), so memory stays bounded however long the trace.
import { closeSync, openSync, writeSync } from 'node:fs';
import { UserError } from '../errors.js';
import { cyclesToNs } from '../hw/clock.js';
import { EXIT_NAMES } from '../isa/interp.js';
import {
  EVENT_NAMES, EV_EXIT, EV_IPI_DELIVER, EV_IPI_SEND, EV_MARKER, EV_SCHED_IN, EV_SCHED_OUT, ipiTagSender, ipiTagSeq,
} from './events.js';
import { hex } from './collector.js';
import type { TraceHeader, TraceRecord } from './writer.js';

const PID = 1;
const FLUSH_BYTES = 256 << 10;
/** Sends remembered per sender vCPU: a delivery more than this many of its sender's IPIs late gets no arrow. */
const SEND_RING = 1024;
/** Deliveries read before their send (another pCPU's ring was drained first) waiting for it, at most. */
const PENDING_MAX = 4096;

/** Perfetto's importer takes tid 0 for the idle (swapper) thread, so pCPU N is tid N + 1. */
export function perfettoTid(pcpu: number): number { return pcpu + 1; }

export interface PerfettoCounts { events: number; slices: number; instants: number; flows: number; skewedFlows: number }

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
  readonly counts: PerfettoCounts = { events: 0, slices: 0, instants: 0, flows: 0, skewedFlows: 0 };
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
      case EV_SCHED_OUT: this.schedOut(pcpu, ns, who, a); break;
      case EV_EXIT: this.instant(pcpu, ns, EXIT_NAMES[a] ?? `exit ${a}`, 'exit', { vcpu: who, pc: `0x${hex(b)}`, qual: `0x${hex(c)}` }); break;
      case EV_MARKER: this.instant(pcpu, ns, `marker ${a}`, 'marker', { vcpu: who, pc: `0x${hex(b)}` }); break;
      case EV_IPI_SEND:
        this.instant(pcpu, ns, 'ipi_send', 'ipi', { vcpu: who, tag: a, icr_lo: `0x${hex(b)}`, dest: c });
        this.ipiSent(a, ns, perfettoTid(pcpu));
        break;
      case EV_IPI_DELIVER:
        this.instant(pcpu, ns, 'ipi_deliver', 'ipi', { vcpu: who, tag: a, vector: b });
        this.ipiDelivered(a, ns, perfettoTid(pcpu));
        break;
      default: this.instant(pcpu, ns, EVENT_NAMES[kind] ?? `event${kind}`, 'event', { vcpu: who, a, b, c });
    }
  }

  /** Close the slices of vCPUs still running (at their pCPU's last event) and end the JSON. */
  finish(): PerfettoCounts {
    this.running.forEach((s, p) => { if (s !== undefined) this.slice(p, s, this.lastNs[p], { open_at_end: true }); });
    this.running.length = 0;
    this.out.raw('\n]}\n');
    this.out.flush();
    closeSync(this.fd);
    return this.counts;
  }

  private who(dom: number, vcpu: number): string {
    return dom >= 0 ? `${this.header.domains[dom] ?? `dom${dom}`}/v${vcpu}` : 'xen';
  }

  /** No tid for process metadata: the importer registers every tid it sees, and tid 0 is not ours. */
  private meta(name: string, tid: number | undefined, args: Args): void {
    this.out.event(tid === undefined ? { name, ph: 'M', pid: PID, args } : { name, ph: 'M', pid: PID, tid, args });
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
    this.out.event({ name, cat, ph: 'i', s: 't', ts: ns / 1000, pid: PID, tid: perfettoTid(pcpu), args });
  }

  private schedIn(pcpu: number, ns: number, dom: number, vcpu: number): void {
    const prev = this.running[pcpu];
    // Not expected (every switch emits sched_out first); keep the earlier slice rather than lose it.
    if (prev !== undefined) this.slice(pcpu, prev, ns, { closed_by: 'sched_in' });
    this.running[pcpu] = { ns, dom, vcpu };
  }

  private schedOut(pcpu: number, ns: number, who: string, runstate: number): void {
    const s = this.running[pcpu];
    if (s === undefined) { this.instant(pcpu, ns, 'sched_out', 'event', { vcpu: who, runstate }); return; }
    this.running[pcpu] = undefined;
    this.slice(pcpu, s, ns, { runstate_out: runstate });
  }

  private slice(pcpu: number, s: Running, endNs: number, extra: Args): void {
    this.counts.slices++;
    const name = this.who(s.dom, s.vcpu);
    this.out.event({
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
    if (this.early.size > PENDING_MAX) this.early.delete(this.early.keys().next().value as number);
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
    const args: Args = endNs === ns ? { tag } : { tag, clock_skew_ns: sendNs - ns };
    if (endNs !== ns) this.counts.skewedFlows++;
    this.out.event({ name: 'ipi', cat: 'ipi', ph: 's', id, ts: sendNs / 1000, pid: PID, tid: sendTid, args: { tag } });
    this.out.event({ name: 'ipi', cat: 'ipi', ph: 'f', bp: 'e', id, ts: endNs / 1000, pid: PID, tid, args });
  }
}
