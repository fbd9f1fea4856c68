// IPI oracles: IPI_MISDIRECTED, IPI_LOST, IPI_FOREIGN, IPI_UNKNOWN_VECTOR, HOST_RESET, and the IPI metrics.
//
// The guest declares what an IPI is for with `magic 2` (intent: target vCPU, vector) before sending it.
// Every send and every delivery carries a source tag naming the exact send (sender vCPU and its IPI
// sequence number, trace/events.ts), so a delivery is matched to its send without relying on event order.
// Every delivery of a send is judged: with an intent naming vCPU t and vector v, a delivery is right when
// vCPU t of the sender's domain took vector v, and each other receiver is one misdirection (a shorthand,
// broadcast or logical send meant for one vCPU is wrong once per other vCPU it reached).
//
// Judging as events stream, in bounded memory (DESIGN.md §6). Each pCPU's ring is in time order, but rings
// are drained in any order and pCPU clocks differ (by up to --slack), so a delivery may be read before its
// send and a send before the intent its vCPU declared on another pCPU. The oracle therefore:
//   1. admits events in one canonical order — simulated time, then pCPU, then ring order — once every pCPU
//      has reported a later time (no earlier event can still come from it);
//   2. judges an admitted event only when the events up to `horizon` cycles after it are admitted: the send
//      of a delivery, the intents of a send and the scheduling around it are then all known.
// The horizon is the loss bound (at least 1 ms), far beyond any clock skew lax sync allows. What it keeps:
// the sends younger than the loss bound, the open intents, each vCPU's recent scheduling, and the admitted
// events of the last two horizons (evidence). The findings depend only on the canonical order: a run judged as
// it goes, the same events judged at the end, and a trace file read back (`vcpulab trace --grep`) agree.
import { cyclesToNs, nsToCycles } from '../hw/clock.js';
import {
  ICR_DEST_LOGICAL, ICR_DM_LOWEST, ICR_DM_MASK, ICR_SHORTHAND_MASK, ICR_SH_ALL_EXCL, ICR_SH_ALL_INCL, ICR_SH_NONE, ICR_SH_SELF,
} from '../../shared/lapic.js';
import {
  EV_HOST_RESET, EV_HV_IPI_MISDIRECTED, EV_ICR_WINDOW, EV_SCHED_IN, EV_SCHED_OUT, ICRW_NMI, ICRW_REUSED, EV_INTENT, EV_IPI_COALESCED,
  EV_IPI_DELIVER, EV_IPI_SEND, EV_PHYS_IRQ, PIRQ_REFLECTED, PIRQ_UNKNOWN, ipiTagSender, ipiTagSeq,
} from '../trace/events.js';
import { PC_XEN, type Findings } from './findings.js';
import { QuantileSketch } from './quantile.js';

/**
 * Default for `[oracles] ipi_lost_bound_us`: an intended IPI not delivered within this much simulated time
 * of its send is lost. Oversubscribed runs legitimately delay IPIs by several time slices (the target waits
 * for a pCPU), so the default leaves room for that.
 */
export const IPI_LOST_BOUND_US_DEFAULT = 5000;
/** The judging horizon is the loss bound, but never less than this (simulated µs): it must exceed clock skew. */
export const IPI_HORIZON_MIN_US = 1000;
/** Evidence reaches this far before the earliest event it explains (simulated ns). */
const EVIDENCE_BACK_NS = 20_000;
const EVIDENCE_EVENTS = 20;
/**
 * Events one pCPU's reorder queue may hold while another pCPU reports no progress (threaded: a pCPU that
 * stays idle emits nothing, so only its events would say how far it is). Past it the oldest half is admitted
 * anyway; an event that later arrives from the silent pCPU with an earlier time is judged as it comes.
 */
export const IPI_QUEUE_MAX = 1 << 16;
/**
 * Open intents kept per vCPU (declared, no send bound to them yet). A guest that declares intents in a loop
 * and never sends would otherwise grow them with the run; past it the oldest is dropped and counted as unsent.
 */
export const IPI_OPEN_INTENTS_MAX = 4096;
/**
 * Admitted events waiting for the horizon to pass, at most. A guest that emits IPI events densely (an intent
 * every few instructions) would otherwise hold a whole horizon's worth; past it the oldest is judged early.
 * 65536 events span far more than the clock skew lax sync allows, which is what the horizon is there for.
 */
export const IPI_WAITING_MAX = 1 << 16;
/** Judged events kept for evidence, at most (besides the two-horizon time limit). */
export const IPI_EVIDENCE_KEPT_MAX = 1 << 14;
/** [time, pCPU] pairs kept per vCPU for "where did it run" (besides the two-horizon time limit). */
const RUNS_KEPT_MAX = 4096;
/** Tag sequence numbers are 19 bits (trace/events.ts ipiTag). */
const SEQ_MASK = 0x7ffff;
const SEQ_HALF = 0x40000;

/** One recorded event; `pc` is the record's (shared/ring.ts REC_PC, -1 in trace files); `n` its arrival number. */
export interface Ev { pcpu: number; time: number; kind: number; dom: number; vcpu: number; a: number; b: number; c: number; pc: number; n: number }

/** Why an IPI was misdirected: a cause token (oracles/findings.ts), the pcs that identify it, and words. */
interface Why { cause: string; pcs: number[]; text: string }

export interface IpiMetrics {
  ipi_sent: number;
  /** Guest handler entries for IPIs (EV_IPI_DELIVER), right or wrong. */
  ipi_delivered: number;
  /** Of those, the ones judged IPI_MISDIRECTED or IPI_FOREIGN. */
  ipi_delivered_wrong: number;
  ipi_coalesced: number;
  /** Sends that had reached no vCPU when the run ended, younger than the loss bound. */
  ipi_in_flight: number;
  /** Intents (magic 2) that no send followed before the run ended. */
  ipi_intent_unsent: number;
  ipi_latency_ns_p50: number;
  ipi_latency_ns_p99: number;
}

/** vCPU identity for a global index. */
export type VcpuName = (global: number) => { dom: number; vcpu: number };

export interface IpiOracleOptions {
  findings: Findings;
  /** Domain names, by index. */
  names: readonly string[];
  npcpus: number;
  lostBoundUs?: number;
  /** Global vCPU index -> identity. Without it the oracle learns identities from the sends it sees. */
  who?: VcpuName;
  /** An evidence line. */
  fmt: (e: Ev) => string;
  /** Called once for every EV_IPI_DELIVER when it is judged: the cause token when wrong, else null. */
  onVerdict?: (e: Ev, cause: string | null) => void;
}

interface Intent { target: number; vector: number; iseq: number; c: number }

interface Send {
  ev: Ev;
  /** The sending vCPU's binder key. */
  key: number;
  bound: boolean;
  intent: Intent | undefined;
  /** A copy was delivered to, or merged into a pending vector of, some vCPU. */
  arrived: boolean;
  /** The hypervisor dropped a copy (no handler for the vector, no vCPU to reflect it to). */
  dropped: boolean;
  /** IPI_LOST already reported. */
  lost: boolean;
  /** A copy came through a physical LAPIC (a passthrough path): pCPU reasoning applies. */
  physical: boolean;
}

/** Per sending vCPU: its sends waiting to be bound to intents, its intents, and the intent stack. */
interface Binder {
  /** Full sequence number of the next send to bind. */
  next: number;
  pending: Map<number, Send>;
  /** Admitted intents not yet pushed, by intent sequence number. */
  intents: Intent[];
  stack: Intent[];
}

const SHORTHAND_NAMES = ['', 'self', 'all', 'all-but-self'];

/** The destination ID an EV_IPI_SEND carries: an xAPIC ICR_HI (ID in bits 31:24) or a plain ID. */
function sendDestId(c: number): number {
  return (c >>> 0) > 0xffffff ? c >>> 24 : c >>> 0;
}

function sendIsBroadcast(c: number): boolean {
  return c === -1 || (c >>> 24) === 0xff;
}

/** One destination at most: the self shorthand, or a physical, non-broadcast destination without shorthand. */
function sendIsUnicast(lo: number, c: number): boolean {
  const sh = lo & ICR_SHORTHAND_MASK;
  if (sh === ICR_SH_SELF) return true;
  return sh === ICR_SH_NONE && (lo & ICR_DEST_LOGICAL) === 0 && !sendIsBroadcast(c);
}

export class IpiOracle {
  private readonly findings: Findings;
  private readonly names: readonly string[];
  private readonly who: VcpuName | undefined;
  private readonly fmt: (e: Ev) => string;
  private readonly onVerdict: ((e: Ev, cause: string | null) => void) | undefined;
  readonly lostBoundUs: number;
  private readonly bound: number;
  private readonly horizon: number;
  /** Reorder stage: per pCPU, events not admitted yet (each queue is in time order), and how far each pCPU is known. */
  private readonly queues: Ev[][];
  private readonly heads: number[];
  private readonly known: Float64Array;
  private arrivals = 0;
  /** Times a full reorder queue forced admission ahead of a silent pCPU (IPI_QUEUE_MAX). */
  private forced = 0;
  /** Open intents dropped past IPI_OPEN_INTENTS_MAX (counted in ipi_intent_unsent). */
  private intentsDropped = 0;
  /** Events judged before their horizon passed (IPI_WAITING_MAX). */
  private early = 0;
  /** Admitted events in canonical order: [winHead, judged) judged and kept for evidence, [judged, end) waiting. */
  private win: Ev[] = [];
  private winHead = 0;
  private judged = 0;
  /** Time of the last judged event. */
  private frontier = -Infinity;
  private lastAdmitted = -Infinity;
  private readonly sends = new Map<number, Send>();
  /** Sends in admission (time) order, for expiry; [expHead, end) live. */
  private expiry: Send[] = [];
  private expHead = 0;
  private readonly binders = new Map<number, Binder>();
  private readonly windows = new Map<number, Ev>();
  /** Guest tags seen on a physical interrupt before their send was admitted: tag -> time. */
  private readonly physEarly = new Map<number, number>();
  /** Per vCPU key: [time, pCPU it ran on or -2 descheduled] pairs, in time order. */
  private readonly runs = new Map<number, number[]>();
  private readonly learned = new Map<number, { dom: number; vcpu: number }>();
  /** Send -> handler latencies (cycles): exact for short runs, a fixed histogram past QUANTILE_EXACT_MAX. */
  private readonly latencies = new QuantileSketch();
  private sent = 0;
  private delivered = 0;
  private deliveredWrong = 0;
  private coalesced = 0;
  private metrics: IpiMetrics | undefined;
  /** The furthest pCPU clock when the run ended (finish). */
  private endTime = 0;
  readonly warnings: string[] = [];

  constructor(o: IpiOracleOptions) {
    this.findings = o.findings;
    this.names = o.names;
    this.who = o.who;
    this.fmt = o.fmt;
    this.onVerdict = o.onVerdict;
    this.lostBoundUs = o.lostBoundUs ?? IPI_LOST_BOUND_US_DEFAULT;
    this.bound = nsToCycles(this.lostBoundUs * 1000);
    this.horizon = nsToCycles(Math.max(this.lostBoundUs, IPI_HORIZON_MIN_US) * 1000);
    this.queues = Array.from({ length: o.npcpus }, () => []);
    this.heads = new Array<number>(o.npcpus).fill(0);
    this.known = new Float64Array(o.npcpus).fill(-Infinity);
  }

  /** Take one event (any kind; it keeps the kinds it judges). Returns its arrival number, or -1 when not kept. */
  onEvent(pcpu: number, time: number, kind: number, dom: number, vcpu: number, a: number, b: number, c: number, pc: number): number {
    if (time > this.known[pcpu]) this.known[pcpu] = time;
    if (kind !== EV_INTENT && kind !== EV_IPI_SEND && kind !== EV_IPI_DELIVER && kind !== EV_IPI_COALESCED && kind !== EV_PHYS_IRQ &&
        kind !== EV_HOST_RESET && kind !== EV_ICR_WINDOW && kind !== EV_SCHED_IN && kind !== EV_SCHED_OUT && kind !== EV_HV_IPI_MISDIRECTED) return -1;
    const e: Ev = { pcpu, time, kind, dom, vcpu, a, b, c, pc, n: this.arrivals++ };
    if (time < this.lastAdmitted) this.admit(e); // a clock that ran backwards, or a silent pCPU forced past: judged as it comes
    else {
      const q = this.queues[pcpu];
      q.push(e);
      if (q.length - this.heads[pcpu] > IPI_QUEUE_MAX) {
        this.forced++;
        this.admitBefore(q[this.heads[pcpu] + (IPI_QUEUE_MAX >> 1)].time);
      }
    }
    return e.n;
  }

  /**
   * pCPU `pcpu` will emit nothing earlier than `time` (a published clock read after its ring was drained,
   * when one thread drives the machine): lets idle pCPUs stop holding the others back.
   */
  progress(pcpu: number, time: number): void {
    if (time > this.known[pcpu]) this.known[pcpu] = time;
  }

  /** Admit (and judge, as far as the horizon allows) every event no pCPU can now precede. */
  advance(): void {
    let w = Infinity;
    for (let p = 0; p < this.known.length; p++) if (this.known[p] < w) w = this.known[p];
    this.admitBefore(w);
  }

  private admitBefore(w: number): void {
    const batch: Ev[] = [];
    for (let p = 0; p < this.queues.length; p++) {
      const q = this.queues[p];
      let h = this.heads[p];
      while (h < q.length && q[h].time < w) batch.push(q[h++]);
      if (h === q.length) { q.length = 0; h = 0; } else if (h > 1024 && h * 2 > q.length) { q.splice(0, h); h = 0; }
      this.heads[p] = h;
    }
    if (batch.length === 0) return;
    batch.sort((x, y) => x.time - y.time || x.pcpu - y.pcpu || x.n - y.n);
    for (const e of batch) this.admit(e);
  }

  /** Judge every waiting event the new one is `horizon` past, then take it in. */
  private admit(e: Ev): void {
    while (this.judged < this.win.length && this.win[this.judged].time + this.horizon <= e.time) this.judgeNext();
    while (this.win.length - this.judged >= IPI_WAITING_MAX) { this.early++; this.judgeNext(); }
    this.lastAdmitted = Math.max(this.lastAdmitted, e.time);
    this.win.push(e);
    switch (e.kind) {
      case EV_INTENT: {
        const key = vkey(e.dom, e.vcpu);
        const it: Intent = { target: e.a, vector: e.b & 0xff, iseq: e.b >>> 8, c: e.c };
        const l = this.binder(key).intents;
        let i = l.length;
        while (i > 0 && l[i - 1].iseq > it.iseq) i--;
        l.splice(i, 0, it);
        if (l.length > IPI_OPEN_INTENTS_MAX) { l.shift(); this.intentsDropped++; }
        break;
      }
      case EV_IPI_SEND: {
        const key = vkey(e.dom, e.vcpu);
        const s: Send = { ev: e, key, bound: false, intent: undefined, arrived: false, dropped: false, lost: false, physical: this.physEarly.delete(e.a) };
        this.sends.set(e.a, s);
        this.binder(key).pending.set(ipiTagSeq(e.a), s);
        this.expiry.push(s);
        this.sent++;
        const src = ipiTagSender(e.a);
        if (src >= 0 && !this.learned.has(src)) this.learned.set(src, { dom: e.dom, vcpu: e.vcpu });
        break;
      }
      case EV_ICR_WINDOW: this.windows.set(e.a, e); break;
      case EV_PHYS_IRQ:
        if (ipiTagSender(e.c) >= 0) {
          const s = this.sends.get(e.c);
          if (s !== undefined) s.physical = true;
          else this.physEarly.set(e.c, e.time);
        }
        break;
      case EV_SCHED_IN: case EV_SCHED_OUT: {
        const key = vkey(e.dom, e.vcpu);
        let l = this.runs.get(key);
        if (l === undefined) { l = []; this.runs.set(key, l); }
        // Keep what a judgement can still ask about: from two horizons back, plus the state before that.
        const keep = this.frontier - 2 * this.horizon;
        let drop = 0;
        while (drop + 2 < l.length && (l[drop + 2] <= keep || l.length - drop > 2 * RUNS_KEPT_MAX)) drop += 2;
        if (drop > 0) l.splice(0, drop);
        l.push(e.time, e.kind === EV_SCHED_IN ? e.pcpu : -2);
        break;
      }
      default: break;
    }
  }

  private binder(key: number): Binder {
    let b = this.binders.get(key);
    if (b === undefined) { b = { next: 0, pending: new Map(), intents: [], stack: [] }; this.binders.set(key, b); }
    return b;
  }

  /**
   * Intents bind to sends of the same vCPU as a stack (LIFO), which is how interrupt handlers nest: a
   * handler that declares and sends its own IPI between an interrupted intent and its send takes its own.
   * Order comes from per-vCPU counters carried in the events (an intent records the IPI seq of the next
   * send and its own seq), never from clocks, which differ across pCPUs a vCPU migrated between.
   */
  private bind(s: Send): void {
    if (s.bound) return;
    const b = this.binder(s.key);
    const q = ipiTagSeq(s.ev.a);
    const ahead = (q - (b.next & SEQ_MASK)) & SEQ_MASK;
    if (ahead >= SEQ_HALF) { s.bound = true; b.pending.delete(q); return; } // behind the binder: admitted too late to bind
    for (let k = 0; k <= ahead; k++) {
      const seq = b.next++;
      const t = b.pending.get(seq & SEQ_MASK);
      while (b.intents.length > 0 && b.intents[0].c <= seq) {
        b.stack.push(b.intents.shift() as Intent);
        if (b.stack.length > IPI_OPEN_INTENTS_MAX) { b.stack.shift(); this.intentsDropped++; }
      }
      if (t === undefined) continue; // a send not admitted: nothing to give it
      b.pending.delete(seq & SEQ_MASK);
      t.intent = b.stack.pop();
      t.bound = true;
    }
  }

  /** Judge the next waiting event: first close every send the loss bound has passed. */
  private judgeNext(): void {
    const e = this.win[this.judged++];
    while (this.expHead < this.expiry.length && this.expiry[this.expHead].ev.time + this.bound < e.time) this.expire(this.expiry[this.expHead++], false);
    if (this.expHead > 1024 && this.expHead * 2 > this.expiry.length) { this.expiry = this.expiry.slice(this.expHead); this.expHead = 0; }
    this.frontier = e.time;
    this.judge(e);
    // Keep two horizons of judged events for evidence (a loss is judged a bound after its send).
    const keep = this.frontier - 2 * this.horizon - nsToCycles(EVIDENCE_BACK_NS);
    while (this.winHead < this.judged && (this.win[this.winHead].time < keep || this.judged - this.winHead > IPI_EVIDENCE_KEPT_MAX)) this.winHead++;
    if (this.winHead > 4096 && this.winHead * 2 > this.win.length) {
      this.win = this.win.slice(this.winHead);
      this.judged -= this.winHead;
      this.winHead = 0;
    }
    if (this.physEarly.size > 4096) for (const [tag, t] of this.physEarly) if (t < keep) this.physEarly.delete(tag);
  }

  /**
   * A send the bound has passed, or (`atEnd`) one still open when the run ended: lost when it had an intent
   * and reached no vCPU (at the end: when the bound has passed, or a copy was dropped and nothing else can
   * come). Returns true when it counts as in flight: reached nobody, nothing dropped, younger than the bound.
   */
  private expire(s: Send, atEnd: boolean): boolean {
    this.bind(s);
    this.sends.delete(s.ev.a);
    this.windows.delete(s.ev.a);
    if (s.arrived || s.lost) return false;
    const young = atEnd && this.endTime - s.ev.time < this.bound;
    if (s.intent !== undefined && (!young || s.dropped)) {
      this.lost(s, s.dropped ? 'dropped' : 'undelivered', s.ev, s.dropped
        ? `vector 0x${s.intent.vector.toString(16)} meant for vCPU ${s.intent.target} was dropped by the hypervisor and reached no vCPU`
        : `vector 0x${s.intent.vector.toString(16)} meant for vCPU ${s.intent.target} was never delivered (bound ${this.lostBoundUs} µs)`);
      return false;
    }
    return young && !s.dropped;
  }

  private lost(s: Send, cause: string, at: Ev, detail: string): void {
    s.lost = true;
    this.findings.add('IPI_LOST', cause, [s.ev.pc], at.time, at.pcpu, this.names[s.ev.dom], s.ev.vcpu, detail, this.evidence(s.ev, at));
  }

  /** Judge everything left. `endTime` is the furthest pCPU clock (cycles). Returns the metrics (once computed, the same). */
  /** Intents (magic 2) admitted and not yet bound to a send: live state, at most IPI_OPEN_INTENTS_MAX per vCPU. */
  openIntents(): number {
    let n = 0;
    for (const b of this.binders.values()) n += b.stack.length + b.intents.length;
    return n;
  }

  finish(endTime: number): IpiMetrics {
    if (this.metrics !== undefined) return this.metrics;
    this.endTime = endTime;
    this.admitBefore(Infinity);
    while (this.judged < this.win.length) this.judgeNext();
    let inFlight = 0;
    for (let i = this.expHead; i < this.expiry.length; i++) if (this.expire(this.expiry[i], true)) inFlight++;
    this.expiry = [];
    this.expHead = 0;
    const unsent = this.intentsDropped + this.openIntents();
    if (endTime < this.bound) {
      this.warnings.push(`the run lasted ${Math.round(cyclesToNs(endTime) / 1000)} µs of simulated time, less than the IPI loss bound ` +
        `(ipi_lost_bound_us = ${this.lostBoundUs}): no IPI could be judged lost by time (${inFlight} still in flight)`);
    }
    if (this.early > 0) {
      this.warnings.push(`${this.early} IPI event(s) were judged before ${this.lostBoundUs} µs of simulated time had passed after them ` +
        `(more than ${IPI_WAITING_MAX} IPI events within that time): a verdict that needed a later event would miss it`);
    }
    if (this.forced > 0) {
      this.warnings.push(`a pCPU reported no progress while ${IPI_QUEUE_MAX} IPI events waited for it (${this.forced} time(s)): ` +
        'the IPI oracle judged them without it, so an IPI event it emitted late was judged out of time order');
    }
    const pct = (q: number) => Math.round(cyclesToNs(this.latencies.quantile(q)));
    this.metrics = {
      ipi_sent: this.sent, ipi_delivered: this.delivered, ipi_delivered_wrong: this.deliveredWrong, ipi_coalesced: this.coalesced,
      ipi_in_flight: inFlight, ipi_intent_unsent: unsent, ipi_latency_ns_p50: pct(0.5), ipi_latency_ns_p99: pct(0.99),
    };
    return this.metrics;
  }

  private ident(global: number): { dom: number; vcpu: number } | undefined {
    return this.who !== undefined ? this.who(global) : this.learned.get(global);
  }

  private vcpuText(global: number): string {
    const id = this.ident(global);
    return id !== undefined ? `${this.names[id.dom]}/v${id.vcpu}` : `v${global}`;
  }

  /** The pcs naming the send behind a source tag: its pc, `xen` for the hypervisor's own, else `fallback`. */
  private sendPcs(tag: number, fallback: number[]): number[] {
    if (ipiTagSender(tag) < 0) return [PC_XEN];
    const s = this.sends.get(tag);
    return s !== undefined ? [s.ev.pc] : fallback;
  }

  private judge(e: Ev): void {
    const f = this.findings;
    switch (e.kind) {
      case EV_PHYS_IRQ: {
        if (e.b !== PIRQ_UNKNOWN && e.b !== PIRQ_REFLECTED) break;
        f.add('IPI_UNKNOWN_VECTOR', e.b === PIRQ_REFLECTED ? 'reflected' : 'dropped', this.sendPcs(e.c, []), e.time, e.pcpu, '', -1,
          `physical vector 0x${e.a.toString(16)} reached pCPU ${e.pcpu}, which has no handler for it (only the hypervisor receives interrupts)${e.b === PIRQ_REFLECTED ? '; reflected to the running vCPU as the design assumes' : ''}`,
          this.evidence(e));
        const s = ipiTagSender(e.c) >= 0 ? this.sends.get(e.c) : undefined;
        if (e.b !== PIRQ_UNKNOWN || s === undefined) break;
        s.dropped = true;
        this.bind(s);
        // A send with one destination has nowhere else to arrive: lost now, whatever the run's length.
        if (s.intent !== undefined && !s.arrived && !s.lost && sendIsUnicast(s.ev.b, s.ev.c)) {
          this.lost(s, 'dropped', e, `vector 0x${s.intent.vector.toString(16)} meant for vCPU ${s.intent.target} reached pCPU ${e.pcpu}, ` +
            'where the hypervisor has no handler for it and no vCPU of a passthrough domain to reflect it to: dropped');
        }
        break;
      }
      case EV_HV_IPI_MISDIRECTED:
        f.add('IPI_MISDIRECTED', 'hv_window', [PC_XEN], e.time, e.pcpu, '', -1,
          `the hypervisor's vector 0x${e.b.toString(16)} for pCPU ${e.a} left for pCPU ${e.c}: an interrupt handler sent its own IPI between its ICR_HI and ICR_LO writes (hv_ipi_irqs = "unmasked")`,
          this.evidence(e));
        break;
      case EV_HOST_RESET: {
        const src = ipiTagSender(e.c);
        const s = src >= 0 ? this.ident(src) : undefined;
        // Emitted by the sender's pCPU inside its ICR write: the record's own pc is the sending one.
        f.add('HOST_RESET', e.b === 5 ? 'init' : 'sipi', this.sendPcs(e.c, [e.pc]), e.time, e.a, s !== undefined ? this.names[s.dom] : '', s?.vcpu ?? -1,
          `${e.b === 5 ? 'INIT' : 'SIPI'} reached pCPU ${e.a}${src >= 0 ? ` from ${this.vcpuText(src)}` : ''}: it drops to wait-for-SIPI and the hypervisor's state on it is gone`,
          this.evidence(e));
        break;
      }
      case EV_IPI_DELIVER: case EV_IPI_COALESCED: {
        const cause = this.judgeDelivery(e);
        if (e.kind === EV_IPI_DELIVER) {
          this.delivered++;
          if (cause !== null) this.deliveredWrong++;
          this.onVerdict?.(e, cause);
        } else this.coalesced++;
        break;
      }
      default: break;
    }
  }

  /** One delivery (or merge) of a guest IPI: returns the cause token when it went wrong. */
  private judgeDelivery(e: Ev): string | null {
    const src = ipiTagSender(e.a);
    if (src < 0) return null; // the hypervisor's own
    const send = this.sends.get(e.a);
    const s = send !== undefined ? { dom: send.ev.dom, vcpu: send.ev.vcpu } : this.ident(src);
    if (send !== undefined) { this.bind(send); send.arrived = true; }
    const sender = s !== undefined ? `${this.names[s.dom]}/v${s.vcpu}` : `v${src}`;
    if (s !== undefined && s.dom !== e.dom) {
      this.findings.add('IPI_FOREIGN', 'foreign_domain', this.sendPcs(e.a, []), e.time, e.pcpu, this.names[e.dom], e.vcpu,
        `vector 0x${e.b.toString(16)} sent by ${sender} was delivered into domain ${this.names[e.dom]} (vCPU ${e.vcpu})`,
        this.evidence(...(send ? [send.ev] : []), e));
      return e.kind === EV_IPI_DELIVER ? 'foreign_domain' : null;
    }
    // Merged into a vector already pending: no handler ran for it, nothing to judge.
    if (send === undefined || send.intent === undefined || e.kind === EV_IPI_COALESCED) return null;
    const it = send.intent;
    if (e.vcpu === it.target && e.b === it.vector) {
      this.latencies.add(Math.max(0, e.time - send.ev.time)); // clocks of two pCPUs differ by up to --slack
      return null;
    }
    const y = this.why(send, it, e);
    this.findings.add('IPI_MISDIRECTED', y.cause, y.pcs, e.time, e.pcpu, this.names[e.dom], e.vcpu,
      `${sender} meant vector 0x${it.vector.toString(16)} for vCPU ${it.target}; vector 0x${e.b.toString(16)} reached vCPU ${e.vcpu} instead${y.text}`,
      this.evidence(send.ev, e));
    return y.cause;
  }

  /**
   * Why delivery `e` of `send` is not what the intent said. The destination's form (shorthand, broadcast,
   * logical, lowest priority) explains it on any path. Past that, a copy that came through a physical LAPIC
   * (passthrough) is explained by where the vCPUs ran; on a virtual path the hypervisor routes virtual APIC
   * IDs exactly, so where anything ran is no part of the answer.
   */
  private why(send: Send, it: Intent, e: Ev): Why {
    const s = send.ev, lo = s.b, target = it.target, phys = send.physical;
    if (e.vcpu === target) {
      return { cause: 'vector_mismatch', pcs: [s.pc], text: `: the intended vCPU took it, but the send's ICR_LO carried vector 0x${(lo & 0xff).toString(16)}, not the intent's` };
    }
    const w = phys ? this.windows.get(s.a) : undefined;
    if (w !== undefined) {
      // The window event's pc is the interloper's ICR_HI write (-1: the hypervisor's).
      const by = w.c === 0 ? 'the hypervisor' : this.vcpuText(w.c - 1);
      const pcs = [s.pc, w.pc < 0 || w.c === 0 ? PC_XEN : w.pc];
      if ((w.b & ICRW_NMI) !== 0) {
        // The maintainer's sequence: ICR_HI, then the NMI handler's ICR_HI and ICR_LO, then this ICR_LO.
        return {
          cause: 'nmi', pcs,
          text: `: an NMI arrived between its ICR_HI and ICR_LO writes (cli does not hold off an NMI); ${by}'s NMI handler wrote ICR_HI ` +
            `at 0x${(w.pc >>> 0).toString(16)} and sent, so the writes went ICR_HI, ICR_HI, ICR_LO, ICR_LO and its ICR_LO at 0x${(s.pc >>> 0).toString(16)} used the handler's destination`,
        };
      }
      return {
        cause: 'icr_window', pcs,
        text: (w.b & ICRW_REUSED) !== 0
          ? `: its ICR_LO write reused an ICR_HI already sent with (written by ${by}); something sent between its ICR_HI and ICR_LO writes`
          : `: between its ICR_HI and ICR_LO writes, ICR_HI was rewritten by ${by}`,
      };
    }
    const sh = lo & ICR_SHORTHAND_MASK;
    if (sh !== ICR_SH_NONE) {
      const name = SHORTHAND_NAMES[sh >>> 18];
      const reach = sh === ICR_SH_SELF ? 'the sender itself'
        : phys ? `every pCPU${sh === ICR_SH_ALL_EXCL ? ' but the sender\'s' : ''}, and whichever vCPU ran on each took it`
          : `every vCPU of the domain${sh === ICR_SH_ALL_EXCL ? ' but the sender' : ''}`;
      return { cause: 'shorthand', pcs: [s.pc], text: `: the send used the ${name} shorthand, which reaches ${reach}${sh === ICR_SH_ALL_INCL || sh === ICR_SH_ALL_EXCL ? `; only vCPU ${target} was meant` : ''}` };
    }
    if (sendIsBroadcast(s.c)) {
      return {
        cause: 'broadcast', pcs: [s.pc],
        text: phys
          ? `: the destination was the broadcast ID (0x${(s.c >>> 0).toString(16)}), so every pCPU took it; a vCPU map entry read before vCPU ${target} ever ran holds -1`
          : `: the destination was the broadcast ID (0x${(s.c >>> 0).toString(16)}), which reaches every vCPU of the domain`,
      };
    }
    if ((lo & ICR_DEST_LOGICAL) !== 0) {
      return { cause: 'logical', pcs: [s.pc], text: `: the destination was logical (0x${sendDestId(s.c).toString(16)}), and vCPU ${e.vcpu}'s ${phys ? 'pCPU\'s ' : ''}logical ID matched it` };
    }
    if ((lo & ICR_DM_MASK) === ICR_DM_LOWEST) {
      return { cause: 'lowest_priority', pcs: [s.pc], text: `: lowest-priority delivery chose ${phys ? `pCPU ${e.c}` : `vCPU ${e.vcpu}`} among the destinations` };
    }
    if (!phys) {
      const id = sendDestId(s.c);
      if ((id & 1) === 0 && id >>> 1 === e.vcpu) {
        return {
          cause: 'virtual_dest', pcs: [s.pc],
          text: `: the destination is virtual and routed exactly, and the ICR named virtual APIC ID ${id} (vCPU ${e.vcpu}), not vCPU ${target}'s (${target * 2})`,
        };
      }
      return { cause: 'virtual_other', pcs: [s.pc], text: `: the ICR named virtual APIC ID ${id}, yet vCPU ${e.vcpu} took it` };
    }
    const landedOn = e.c, where = this.ranOn(s.dom, target, s.time);
    if (where >= 0 && where !== landedOn) {
      return { cause: 'stale_map', pcs: [s.pc], text: `: the destination was stale, vCPU ${target} ran on pCPU ${where} when the IPI left for pCPU ${landedOn}` };
    }
    if (where === -2) {
      return {
        cause: 'not_running', pcs: [s.pc],
        text: `: vCPU ${target} was not running (waiting for a pCPU) when the IPI left for pCPU ${landedOn}, whose current vCPU took it`,
      };
    }
    if (where === landedOn) {
      return {
        cause: 'left_pcpu', pcs: [s.pc],
        text: `: vCPU ${target} ran on pCPU ${landedOn} when the IPI left, but was descheduled before it was taken there; the vCPU that ran next took it`,
      };
    }
    return { cause: 'other', pcs: [s.pc], text: '' };
  }

  /** Where vCPU (dom, vcpu) ran at time t: its pCPU, -2 descheduled, -1 unknown. */
  private ranOn(dom: number, vcpu: number, t: number): number {
    const l = this.runs.get(vkey(dom, vcpu));
    let at = -1;
    if (l !== undefined) for (let i = 0; i < l.length && l[i] <= t; i += 2) at = l[i + 1];
    return at;
  }

  /** Evidence for the first occurrence of a kind: the IPI events of the pCPUs involved, up to the last one given, at most 20. */
  private evidence(...es: Ev[]): () => string[] {
    return () => {
      const pcpus = new Set(es.map((e) => e.pcpu));
      const until = Math.max(...es.map((e) => e.time));
      const from = Math.min(...es.map((e) => e.time)) - nsToCycles(EVIDENCE_BACK_NS);
      const out: Ev[] = [];
      for (let i = this.win.length - 1; i >= this.winHead && out.length < EVIDENCE_EVENTS; i--) {
        const e = this.win[i];
        if (e.time < from) break;
        if (e.time <= until && pcpus.has(e.pcpu)) out.push(e);
      }
      return out.reverse().map(this.fmt);
    };
  }
}

function vkey(dom: number, vcpu: number): number {
  return dom * 4096 + vcpu;
}
