// IPI oracles: IPI_MISDIRECTED, IPI_LOST, IPI_FOREIGN, IPI_UNKNOWN_VECTOR, HOST_RESET, and the IPI metrics.
//
// The guest declares what an IPI is for with `magic 2` (intent: target vCPU, vector) before sending it.
// Every send and every delivery carries a source tag naming the exact send (sender vCPU and its IPI
// sequence number, trace/events.ts), so a delivery is matched to its send without relying on event
// order: rings are drained per pCPU and pCPU clocks differ by up to --slack. The judgement is made
// when the run ends, over the recorded IPI events (they are few next to instructions).
import { cyclesToNs, nsToCycles } from '../engine/clock.js';
import { EV_HOST_RESET, EV_HV_IPI_MISDIRECTED, EV_ICR_WINDOW, EV_SCHED_IN, EV_SCHED_OUT, ICRW_REUSED, EV_INTENT, EV_IPI_COALESCED, EV_IPI_DELIVER, EV_IPI_SEND, EV_PHYS_IRQ, PIRQ_REFLECTED, PIRQ_UNKNOWN, ipiTagSender, ipiTagSeq } from '../trace/events.js';
import { PC_XEN, type Findings } from './findings.js';

/**
 * Default for `[oracles] ipi_lost_bound_us`: an intended IPI not delivered within this much simulated time
 * of its send is lost. Oversubscribed runs legitimately delay IPIs by several time slices (the target waits
 * for a pCPU), so the default leaves room for that.
 */
export const IPI_LOST_BOUND_US_DEFAULT = 5000;

/** One recorded event; `pc` is the record's (shared/ring.ts REC_PC). */
export interface Ev { pcpu: number; time: number; kind: number; dom: number; vcpu: number; a: number; b: number; c: number; pc: number }

/** Why an IPI was misdirected: a cause token (oracles/findings.ts), the pcs that identify it, and words. */
interface Why { cause: string; pcs: number[]; text: string }

export interface IpiMetrics {
  ipi_sent: number;
  ipi_delivered: number;
  ipi_coalesced: number;
  ipi_latency_ns_p50: number;
  ipi_latency_ns_p99: number;
}

/** vCPU identity for a global index. */
export type VcpuName = (global: number) => { dom: number; vcpu: number };

export class IpiOracle {
  private readonly log: Ev[] = [];
  constructor(private readonly lostBoundUs = IPI_LOST_BOUND_US_DEFAULT) {}

  onEvent(pcpu: number, time: number, kind: number, dom: number, vcpu: number, a: number, b: number, c: number, pc: number): void {
    if (kind === EV_INTENT || kind === EV_IPI_SEND || kind === EV_IPI_DELIVER || kind === EV_IPI_COALESCED ||
        kind === EV_PHYS_IRQ || kind === EV_HOST_RESET || kind === EV_ICR_WINDOW || kind === EV_SCHED_IN || kind === EV_SCHED_OUT || kind === EV_HV_IPI_MISDIRECTED) {
      this.log.push({ pcpu, time, kind, dom, vcpu, a, b, c, pc });
    }
  }

  /** Judge the run. `endTime` is the furthest pCPU clock (cycles). */
  finish(findings: Findings, names: string[], who: VcpuName, endTime: number, fmt: (e: Ev) => string): IpiMetrics {
    interface Send { ev: Ev; intent?: { target: number; vector: number }; delivered: boolean }
    const sends = new Map<number, Send>();
    // Intents bind to sends of the same vCPU as a stack (LIFO), which is how interrupt handlers nest: a
    // handler that declares and sends its own IPI between an interrupted intent and its send takes its
    // own. Order comes from per-vCPU counters carried in the events (an intent records the IPI seq of the
    // next send and its own seq), never from clocks, which differ across pCPUs a vCPU migrated between.
    type Item = { key: number; sub: number; e: Ev };
    const perVcpu = new Map<string, Item[]>();
    for (const e of this.log) {
      if (e.kind !== EV_INTENT && e.kind !== EV_IPI_SEND) continue;
      const key = `${e.dom}/${e.vcpu}`;
      const list = perVcpu.get(key) ?? [];
      if (e.kind === EV_INTENT) list.push({ key: e.c, sub: e.b >>> 8, e });
      else list.push({ key: ipiTagSeq(e.a), sub: Number.MAX_SAFE_INTEGER, e });
      perVcpu.set(key, list);
    }
    for (const list of perVcpu.values()) {
      list.sort((x, y) => x.key - y.key || x.sub - y.sub);
      const stack: { target: number; vector: number }[] = [];
      for (const { e } of list) {
        if (e.kind === EV_INTENT) stack.push({ target: e.a, vector: e.b & 0xff });
        else sends.set(e.a, { ev: e, intent: stack.pop(), delivered: false });
      }
    }
    const windows = new Map<number, Ev>();
    for (const e of this.log) if (e.kind === EV_ICR_WINDOW) windows.set(e.a, e);
    const runs = new Map<string, Ev[]>(); // vCPU -> its sched_in events by time: where it ran when
    for (const e of this.log) if (e.kind === EV_SCHED_IN || e.kind === EV_SCHED_OUT) {
      const k = `${e.dom}/${e.vcpu}`;
      const l = runs.get(k) ?? [];
      l.push(e);
      runs.set(k, l);
    }
    for (const l of runs.values()) l.sort((x, y) => x.time - y.time);
    const ranOn = (dom: number, vcpu: number, t: number): number => {
      let at = -1;
      for (const e of runs.get(`${dom}/${vcpu}`) ?? []) { if (e.time > t) break; at = e.kind === EV_SCHED_IN ? e.pcpu : -2; }
      return at; // -2: descheduled at that time, -1: unknown
    };
    const why = (send: Ev, target: number, landedOn: number, took: number): Why => {
      const w = windows.get(send.a);
      if (w !== undefined) {
        // The window event's pc is the interloper's ICR_HI write (-1: the hypervisor's).
        const by = w.c === 0 ? 'the hypervisor' : `${names[who(w.c - 1).dom]}/v${who(w.c - 1).vcpu}`;
        return {
          cause: 'icr_window', pcs: [send.pc, w.pc < 0 || w.c === 0 ? PC_XEN : w.pc],
          text: w.b === ICRW_REUSED
            ? `: its ICR_LO write reused an ICR_HI already sent with (written by ${by}); something sent between its ICR_HI and ICR_LO writes`
            : `: between its ICR_HI and ICR_LO writes, ICR_HI was rewritten by ${by}`,
        };
      }
      if (send.c === -1 || (send.c >>> 24) === 0xff) {
        return {
          cause: 'broadcast', pcs: [send.pc],
          text: `: the destination was the broadcast ID (0x${(send.c >>> 0).toString(16)}), so every pCPU took it; a vCPU map entry read before vCPU ${target} ever ran holds -1`,
        };
      }
      const where = ranOn(send.dom, target, send.time);
      if (where >= 0 && where !== landedOn) {
        return { cause: 'stale_map', pcs: [send.pc], text: `: the destination was stale, vCPU ${target} ran on pCPU ${where} when the IPI left for pCPU ${landedOn}` };
      }
      if (where === -2) {
        return {
          cause: 'not_running', pcs: [send.pc],
          text: `: vCPU ${target} was not running (waiting for a pCPU) when the IPI left for pCPU ${landedOn}, whose current vCPU took it`,
        };
      }
      if (where === landedOn && took !== target) {
        return {
          cause: 'left_pcpu', pcs: [send.pc],
          text: `: vCPU ${target} ran on pCPU ${landedOn} when the IPI left, but was descheduled before it was taken there; the vCPU that ran next took it`,
        };
      }
      return { cause: 'other', pcs: [send.pc], text: '' };
    };
    /** The pcs naming the send behind a source tag: its pc, `xen` for the hypervisor's own, else `fallback`. */
    const sendPcs = (tag: number, fallback: number[]): number[] => {
      if (ipiTagSender(tag) < 0) return [PC_XEN];
      const s = sends.get(tag);
      return s !== undefined ? [s.ev.pc] : fallback;
    };
    const latencies: number[] = [];
    let delivered = 0, coalesced = 0;
    const evidence = (...es: Ev[]) => (): string[] => this.evidence(es, fmt);
    for (const e of [...this.log].sort((x, y) => x.time - y.time)) {
      if (e.kind === EV_PHYS_IRQ && (e.b === PIRQ_UNKNOWN || e.b === PIRQ_REFLECTED)) {
        findings.add('IPI_UNKNOWN_VECTOR', e.b === PIRQ_REFLECTED ? 'reflected' : 'dropped', sendPcs(e.c, []), e.time, e.pcpu, '', -1,
          `physical vector 0x${e.a.toString(16)} reached pCPU ${e.pcpu}, which has no handler for it (only the hypervisor receives interrupts)${e.b === PIRQ_REFLECTED ? '; reflected to the running vCPU as the design assumes' : ''}`, evidence(e));
      } else if (e.kind === EV_HV_IPI_MISDIRECTED) {
        findings.add('IPI_MISDIRECTED', 'hv_window', [PC_XEN], e.time, e.pcpu, '', -1,
          `the hypervisor's vector 0x${e.b.toString(16)} for pCPU ${e.a} left for pCPU ${e.c}: an interrupt handler sent its own IPI between its ICR_HI and ICR_LO writes (hv_ipi_irqs = "unmasked")`, evidence(e));
      } else if (e.kind === EV_HOST_RESET) {
        const src = ipiTagSender(e.c);
        const s = src >= 0 ? who(src) : undefined;
        // Emitted by the sender's pCPU inside its ICR write: the record's own pc is the sending one.
        findings.add('HOST_RESET', e.b === 5 ? 'init' : 'sipi', sendPcs(e.c, [e.pc]), e.time, e.a, s !== undefined ? names[s.dom] : '', s?.vcpu ?? -1,
          `${e.b === 5 ? 'INIT' : 'SIPI'} reached pCPU ${e.a}${s !== undefined ? ` from ${names[s.dom]}/v${s.vcpu}` : ''}: it drops to wait-for-SIPI and the hypervisor's state on it is gone`, evidence(e));
      } else if (e.kind === EV_IPI_DELIVER || e.kind === EV_IPI_COALESCED) {
        if (e.kind === EV_IPI_DELIVER) delivered++; else coalesced++;
        const send = sends.get(e.a);
        const src = ipiTagSender(e.a);
        if (src < 0) continue; // the hypervisor's own
        const s = who(src);
        if (s.dom !== e.dom) {
          findings.add('IPI_FOREIGN', 'foreign_domain', sendPcs(e.a, []), e.time, e.pcpu, names[e.dom], e.vcpu,
            `vector 0x${e.b.toString(16)} sent by ${names[s.dom]}/v${s.vcpu} was delivered into domain ${names[e.dom]} (vCPU ${e.vcpu})`, evidence(...(send ? [send.ev] : []), e));
        }
        if (send === undefined || send.intent === undefined || send.delivered) continue;
        send.delivered = true;
        const it = send.intent;
        if (e.kind === EV_IPI_COALESCED) continue;
        if (s.dom === e.dom && (e.vcpu !== it.target || e.b !== it.vector)) {
          const y = why(send.ev, it.target, e.c, e.vcpu);
          findings.add('IPI_MISDIRECTED', y.cause, y.pcs, e.time, e.pcpu, names[e.dom], e.vcpu,
            `${names[s.dom]}/v${s.vcpu} meant vector 0x${it.vector.toString(16)} for vCPU ${it.target}; vector 0x${e.b.toString(16)} reached vCPU ${e.vcpu} instead${y.text}`,
            evidence(send.ev, e));
        } else if (e.vcpu === it.target) latencies.push(Math.max(0, e.time - send.ev.time)); // clocks of two pCPUs differ by up to --slack
      }
    }
    const bound = nsToCycles(this.lostBoundUs * 1000);
    for (const s of sends.values()) {
      if (s.intent === undefined || s.delivered || endTime - s.ev.time < bound) continue;
      findings.add('IPI_LOST', 'undelivered', [s.ev.pc], s.ev.time, s.ev.pcpu, names[s.ev.dom], s.ev.vcpu,
        `vector 0x${s.intent.vector.toString(16)} meant for vCPU ${s.intent.target} was never delivered (bound ${this.lostBoundUs} µs)`, evidence(s.ev));
    }
    latencies.sort((x, y) => x - y);
    const pct = (q: number) => latencies.length === 0 ? 0 : Math.round(cyclesToNs(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]));
    return {
      ipi_sent: sends.size, ipi_delivered: delivered, ipi_coalesced: coalesced,
      ipi_latency_ns_p50: pct(0.5), ipi_latency_ns_p99: pct(0.99),
    };
  }

  /** The IPI events of the pCPUs involved, up to the last one given, at most 20. */
  private evidence(es: Ev[], fmt: (e: Ev) => string): string[] {
    const pcpus = new Set(es.map((e) => e.pcpu));
    const until = Math.max(...es.map((e) => e.time));
    const from = Math.min(...es.map((e) => e.time));
    const rel = this.log.filter((e) => pcpus.has(e.pcpu) && e.time <= until && e.time >= from - nsToCycles(20_000))
      .sort((x, y) => x.time - y.time);
    return rel.slice(-20).map(fmt);
  }
}
