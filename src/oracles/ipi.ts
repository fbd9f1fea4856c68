// IPI oracles: IPI_MISDIRECTED, IPI_LOST, IPI_FOREIGN, IPI_UNKNOWN_VECTOR, HOST_RESET, and the IPI metrics.
//
// The guest declares what an IPI is for with `magic 2` (intent: target vCPU, vector) before sending it.
// Every send and every delivery carries a source tag naming the exact send (sender vCPU and its IPI
// sequence number, trace/events.ts), so a delivery is matched to its send without relying on event
// order: rings are drained per pCPU and pCPU clocks differ by up to --slack. The judgement is made
// when the run ends, over the recorded IPI events (they are few next to instructions).
import { cyclesToNs, nsToCycles } from '../engine/clock.js';
import { EV_HOST_RESET, EV_INTENT, EV_IPI_COALESCED, EV_IPI_DELIVER, EV_IPI_SEND, EV_PHYS_IRQ, PIRQ_UNKNOWN, ipiTagSender } from '../trace/events.js';
import type { Findings } from './findings.js';

/** An intended IPI not delivered within this much simulated time of its send is lost. */
export const IPI_LOST_BOUND_NS = 1_000_000;

interface Ev { pcpu: number; time: number; kind: number; dom: number; vcpu: number; a: number; b: number; c: number }

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
  private readonly armed = new Map<string, { target: number; vector: number }>();

  onEvent(pcpu: number, time: number, kind: number, dom: number, vcpu: number, a: number, b: number, c: number): void {
    if (kind === EV_INTENT || kind === EV_IPI_SEND || kind === EV_IPI_DELIVER || kind === EV_IPI_COALESCED ||
        kind === EV_PHYS_IRQ || kind === EV_HOST_RESET) {
      this.log.push({ pcpu, time, kind, dom, vcpu, a, b, c });
    }
  }

  /** Judge the run. `endTime` is the furthest pCPU clock (cycles). */
  finish(findings: Findings, names: string[], who: VcpuName, endTime: number, fmt: (e: Ev) => string): IpiMetrics {
    interface Send { ev: Ev; intent?: { target: number; vector: number }; delivered: boolean }
    const sends = new Map<number, Send>();
    // Intents bind to the next send of the same vCPU: both come from that vCPU in program order, and
    // a vCPU's events are ordered by its own clock, so sort by (vCPU, time) to pair them.
    const byVcpu = [...this.log].filter((e) => e.kind === EV_INTENT || e.kind === EV_IPI_SEND)
      .sort((x, y) => x.dom - y.dom || x.vcpu - y.vcpu || x.time - y.time);
    for (const e of byVcpu) {
      const key = `${e.dom}/${e.vcpu}`;
      if (e.kind === EV_INTENT) { this.armed.set(key, { target: e.a, vector: e.b & 0xff }); continue; }
      sends.set(e.a, { ev: e, intent: this.armed.get(key), delivered: false });
      this.armed.delete(key);
    }
    const latencies: number[] = [];
    let delivered = 0, coalesced = 0;
    const evidence = (...es: Ev[]) => (): string[] => this.evidence(es, fmt);
    for (const e of [...this.log].sort((x, y) => x.time - y.time)) {
      if (e.kind === EV_PHYS_IRQ && e.b === PIRQ_UNKNOWN) {
        findings.add('IPI_UNKNOWN_VECTOR', e.time, e.pcpu, '', -1,
          `physical vector 0x${e.a.toString(16)} reached pCPU ${e.pcpu}, which has no handler for it (only the hypervisor receives interrupts)`, evidence(e));
      } else if (e.kind === EV_HOST_RESET) {
        const src = ipiTagSender(e.c);
        const s = src >= 0 ? who(src) : undefined;
        findings.add('HOST_RESET', e.time, e.a, s !== undefined ? names[s.dom] : '', s?.vcpu ?? -1,
          `${e.b === 5 ? 'INIT' : 'SIPI'} reached pCPU ${e.a}${s !== undefined ? ` from ${names[s.dom]}/v${s.vcpu}` : ''}: it drops to wait-for-SIPI and the hypervisor's state on it is gone`, evidence(e));
      } else if (e.kind === EV_IPI_DELIVER || e.kind === EV_IPI_COALESCED) {
        if (e.kind === EV_IPI_DELIVER) delivered++; else coalesced++;
        const send = sends.get(e.a);
        const src = ipiTagSender(e.a);
        if (src < 0) continue; // the hypervisor's own
        const s = who(src);
        if (s.dom !== e.dom) {
          findings.add('IPI_FOREIGN', e.time, e.pcpu, names[e.dom], e.vcpu,
            `vector 0x${e.b.toString(16)} sent by ${names[s.dom]}/v${s.vcpu} was delivered into domain ${names[e.dom]} (vCPU ${e.vcpu})`, evidence(...(send ? [send.ev] : []), e));
        }
        if (send === undefined || send.intent === undefined || send.delivered) continue;
        send.delivered = true;
        const it = send.intent;
        if (e.kind === EV_IPI_COALESCED) continue;
        if (s.dom === e.dom && (e.vcpu !== it.target || e.b !== it.vector)) {
          findings.add('IPI_MISDIRECTED', e.time, e.pcpu, names[e.dom], e.vcpu,
            `${names[s.dom]}/v${s.vcpu} meant vector 0x${it.vector.toString(16)} for vCPU ${it.target}; vector 0x${e.b.toString(16)} reached vCPU ${e.vcpu} instead`,
            evidence(send.ev, e));
        } else if (e.vcpu === it.target) latencies.push(e.time - send.ev.time);
      }
    }
    const bound = nsToCycles(IPI_LOST_BOUND_NS);
    for (const s of sends.values()) {
      if (s.intent === undefined || s.delivered || endTime - s.ev.time < bound) continue;
      findings.add('IPI_LOST', s.ev.time, s.ev.pcpu, names[s.ev.dom], s.ev.vcpu,
        `vector 0x${s.intent.vector.toString(16)} meant for vCPU ${s.intent.target} was never delivered (bound ${IPI_LOST_BOUND_NS} ns)`, evidence(s.ev));
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
