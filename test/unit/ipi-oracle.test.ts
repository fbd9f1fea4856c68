// The IPI oracle judges as events stream, in one canonical order (time, pCPU, ring order), so its findings
// do not depend on when or in which order the rings were drained: judged as they come, judged at the end,
// or re-judged from a trace file, a serial run gives the same findings. Synthetic streams check the orders a
// real run produces (a delivery logged before its send, a send before the intent of its vCPU).
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as LabModule from '../../src/lab.js';
import { Findings, type Finding } from '../../src/oracles/findings.js';
import { IPI_OPEN_INTENTS_MAX, IpiOracle } from '../../src/oracles/ipi.js';
import { EV_EXIT, EV_INTENT, EV_IPI_DELIVER, EV_IPI_SEND, ipiTag } from '../../src/trace/events.js';
import { formatEvent } from '../../src/trace/collector.js';
import { readTrace, type TraceRecord } from '../../src/trace/writer.js';

const { simulate, RUN_DEFAULTS } = (await import(new URL('../../dist/src/lab.js', import.meta.url).href)) as typeof LabModule;

const dir = mkdtempSync(join(tmpdir(), 'vcpulab-ipi-oracle-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Feed = (o: IpiOracle, recs: TraceRecord[]) => void;

/** Judge `recs` with a fresh oracle fed by `feed`; the findings, and the verdict of each delivery by arrival. */
function judge(names: string[], npcpus: number, recs: TraceRecord[], end: number, feed: Feed): { findings: Finding[]; verdicts: Map<string, string | null> } {
  const findings = new Findings();
  const verdicts = new Map<string, string | null>();
  const o = new IpiOracle({
    findings, names, npcpus,
    fmt: (e) => formatEvent(names, e.pcpu, e.time, e.kind, e.dom, e.vcpu, e.a, e.b, e.c),
    onVerdict: (e, cause) => { verdicts.set(`${e.pcpu}/${e.time}/${e.a}/${e.vcpu}`, cause); },
  });
  feed(o, recs);
  o.finish(end);
  return { findings: findings.list(), verdicts };
}

const feedAll: Feed = (o, recs) => { for (const r of recs) o.onEvent(r[1], r[0], r[2], r[3], r[4], r[5], r[6], r[7], -1); };
const feedEach: Feed = (o, recs) => {
  for (const r of recs) { o.onEvent(r[1], r[0], r[2], r[3], r[4], r[5], r[6], r[7], -1); o.advance(); }
};
/** Another drain order: blocks of `n` records regrouped by pCPU (each pCPU's own order kept), advancing after each block. */
const feedRegrouped = (n: number): Feed => (o, recs) => {
  for (let i = 0; i < recs.length; i += n) {
    const block = recs.slice(i, i + n);
    const pcpus = [...new Set(block.map((r) => r[1]))].sort((x, y) => y - x);
    for (const p of pcpus) for (const r of block) if (r[1] === p) o.onEvent(r[1], r[0], r[2], r[3], r[4], r[5], r[6], r[7], -1);
    o.advance();
  }
};

describe('streaming or at the end: the same findings', () => {
  it.each([
    ['secure-realm', 1], ['x2apic-realm', 2], ['ipi-xapic', 1], ['secure-realm-init', 1],
  ] as const)('%s, serial seed %i: judged as events come (any drain order), at the end, and as the run judged them', async (scenario, seed) => {
    const trace = join(dir, `${scenario}-${seed}.trace`);
    const { report } = await simulate({
      scenario, engine: 'serial', seed, strategy: 'random', maxInstructions: RUN_DEFAULTS.maxInstructions, maxMs: 0,
      slack: RUN_DEFAULTS.slack, burst: RUN_DEFAULTS.burst, watchdogMs: RUN_DEFAULTS.watchdogMs,
    }, { trace });
    const { header, records } = readTrace(trace);
    const end = (report.metrics.sim_time_ns as number) * 3;
    const atEnd = judge(header.domains, header.pcpus, records, end, feedAll);
    for (const feed of [feedEach, feedRegrouped(64), feedRegrouped(1000)]) {
      const streamed = judge(header.domains, header.pcpus, records, end, feed);
      expect(streamed.findings).toEqual(atEnd.findings);
      expect(streamed.verdicts).toEqual(atEnd.verdicts);
    }
    // The run judged the same events as they were drained: the same occurrences and causes (a trace keeps
    // no pcs, so signatures differ in their pcs only).
    const ipiKinds = new Set(['IPI_MISDIRECTED', 'IPI_LOST', 'IPI_FOREIGN', 'IPI_UNKNOWN_VECTOR', 'HOST_RESET']);
    const shape = (fs: Finding[]) => fs.filter((f) => ipiKinds.has(f.kind)).map((f) => ({
      kind: f.kind, count: f.count, causes: f.causes, first: { ...f.first, signature: '', detail: '' },
      instances: f.instances.map((i) => ({ ...i, pcs: [] })),
    }));
    expect(shape(atEnd.findings)).toEqual(shape(report.findings));
    expect(atEnd.findings.some((f) => f.kind === 'IPI_MISDIRECTED')).toBe(true);
    const wrong = [...atEnd.verdicts.values()].filter((c) => c !== null).length;
    expect(wrong).toBe(report.metrics.ipi_delivered_wrong);
  }, 60_000);
});

describe('synthetic streams', () => {
  type Rec = TraceRecord;
  const tag0 = ipiTag(0, 0), tag1 = ipiTag(0, 1);
  // vCPU 0 of domain 0 declared an IPI for vCPU 1 on pCPU 0, migrated to pCPU 1, whose clock is behind, and
  // sent it there to virtual APIC ID 4 (vCPU 2), which took it on pCPU 2, whose clock is further behind.
  const misdirected: Rec[] = [
    [1000, 0, EV_INTENT, 0, 0, 1, 0x40, 0],
    [900, 1, EV_IPI_SEND, 0, 0, tag0, 0x40, 4 << 24],
    [800, 2, EV_IPI_DELIVER, 0, 2, tag0, 0x40, 2],
  ];
  /** Later events on every pCPU, far past the horizon, so streaming judges before the end. */
  const tail = (t: number): Rec[] => [0, 1, 2].map((p) => [t, p, EV_EXIT, 0, 0, 0, 0, 0] as Rec);

  const orders = (recs: Rec[]): Rec[][] => {
    // Every order of the records that keeps each pCPU's own order (here one record per pCPU: all of them).
    const out: Rec[][] = [];
    const go = (left: Rec[], acc: Rec[]) => {
      if (left.length === 0) { out.push(acc); return; }
      left.forEach((r, i) => go([...left.slice(0, i), ...left.slice(i + 1)], [...acc, r]));
    };
    go(recs, []);
    return out;
  };

  it('a delivery read before its send, and a send before its intent, is still judged against that intent', () => {
    for (const order of orders(misdirected)) {
      for (const feed of [feedAll, feedEach]) {
        const { findings, verdicts } = judge(['g'], 3, [...order, ...tail(1e9)], 2e9, feed);
        expect(findings.map((f) => [f.kind, f.count, f.causes])).toEqual([['IPI_MISDIRECTED', 1, { virtual_dest: 1 }]]);
        expect(findings[0].first.detail).toMatch(/^g\/v0 meant vector 0x40 for vCPU 1; vector 0x40 reached vCPU 2 instead: .*virtual APIC ID 4 \(vCPU 2\)/);
        expect(findings[0].first.detail).not.toMatch(/pCPU/);
        expect([...verdicts.values()]).toEqual(['virtual_dest']);
      }
    }
  });

  it('intents nest like handlers: the inner send takes the inner intent, in any arrival order', () => {
    // Outer intent (vCPU 1), then a handler's intent (vCPU 2) and its send (seq 0), then the outer send (seq 1).
    const recs: Rec[] = [
      [100, 0, EV_INTENT, 0, 0, 1, 0x40 | (0 << 8), 0],
      [110, 0, EV_INTENT, 0, 0, 2, 0x41 | (1 << 8), 0],
      [120, 0, EV_IPI_SEND, 0, 0, tag0, 0x41, 4 << 24],
      [90, 1, EV_IPI_SEND, 0, 0, tag1, 0x40, 2 << 24], // after migrating to a pCPU whose clock is behind
      [200, 2, EV_IPI_DELIVER, 0, 2, tag0, 0x41, 2],
      [210, 2, EV_IPI_DELIVER, 0, 1, tag1, 0x40, 2],
    ];
    for (const feed of [feedAll, feedEach, feedRegrouped(2)]) {
      const { findings, verdicts } = judge(['g'], 3, [...recs, ...tail(1e9)], 2e9, feed);
      expect(findings).toEqual([]);
      expect([...verdicts.values()]).toEqual([null, null]);
    }
  });

  it('a send with an intent that reaches nobody is lost once the bound has passed, in flight before', () => {
    const recs: Rec[] = [[100, 0, EV_INTENT, 0, 0, 1, 0x40, 0], [120, 0, EV_IPI_SEND, 0, 0, tag0, 0x40, 2 << 24]];
    const findings = new Findings();
    const o = new IpiOracle({ findings, names: ['g'], npcpus: 1, lostBoundUs: 10, fmt: () => '' });
    for (const r of recs) o.onEvent(r[1], r[0], r[2], r[3], r[4], r[5], r[6], r[7], -1);
    expect(o.finish(120 + 30_000 - 1).ipi_in_flight).toBe(1); // 10 µs = 30000 cycles: not yet
    expect(findings.list()).toEqual([]);
    const f2 = new Findings();
    const o2 = new IpiOracle({ findings: f2, names: ['g'], npcpus: 1, lostBoundUs: 10, fmt: () => '' });
    for (const r of recs) o2.onEvent(r[1], r[0], r[2], r[3], r[4], r[5], r[6], r[7], -1);
    expect(o2.finish(120 + 30_000).ipi_in_flight).toBe(0);
    expect(f2.list().map((f) => [f.kind, f.causes])).toEqual([['IPI_LOST', { undelivered: 1 }]]);
  });
});

describe('open intents are live state', () => {
  it('intents that no send follows: at most IPI_OPEN_INTENTS_MAX kept per vCPU, every one counted as unsent', () => {
    const names = ['g'];
    const o = new IpiOracle({ findings: new Findings(), names, npcpus: 1, fmt: () => '', onVerdict: () => {} });
    const n = 3 * IPI_OPEN_INTENTS_MAX;
    for (let i = 0; i < n; i++) { o.onEvent(0, 1000 + i, EV_INTENT, 0, 0, 1, 0x40 | (i << 8), 0, -1); o.advance(); }
    expect(o.openIntents()).toBe(IPI_OPEN_INTENTS_MAX);
    expect(o.finish(1000 + n).ipi_intent_unsent).toBe(n);
  });

  it('control: under the cap every intent stays open', () => {
    const o = new IpiOracle({ findings: new Findings(), names: ['g'], npcpus: 1, fmt: () => '', onVerdict: () => {} });
    for (let i = 0; i < 10; i++) { o.onEvent(0, 1000 + i, EV_INTENT, 0, 0, 1, 0x40 | (i << 8), 0, -1); o.advance(); }
    o.finish(2000);
    expect(o.openIntents()).toBe(10);
  });
});
