// `vcpulab trace` as a user runs it: a small serial run writes a trace through the built bin, then the
// summary, --grep and --perfetto read it back. The Perfetto checks are cross-checked against --grep's
// lines (a second path over the same records), not against the exporter's own bookkeeping.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT_NAMES } from '../../src/isa/interp.js';
import { TraceReader } from '../../src/trace/reader.js';
import { readTrace } from '../../src/trace/writer.js';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'vcpulab.js');

interface Run { code: number; stdout: string; stderr: string }

function vcpulab(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: 60_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

function expectBadInput(r: Run, pattern: RegExp): void {
  expect(r.code).toBe(2);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stdout).toBe('');
}

interface JsonEvent {
  name: string; ph: string; ts?: number; dur?: number; pid: number; tid?: number; id?: number; cat?: string; bp?: string;
  args?: Record<string, unknown>;
}
interface GrepLine { ns: number; pcpu: number; who: string; kind: string; a: number }

/**
 * formatEvent's line: `<ns> ns  p<pcpu>  <who>  <kind> <fields>`. For ipi_send and ipi_deliver, `a` is the
 * source tag, printed as v<sender>#<seq> ("xen" for 0); other kinds carry no `a` here.
 */
function parseGrep(stdout: string): GrepLine[] {
  return stdout.trimEnd().split('\n').map((l) => {
    const m = /^\s*([\d.]+) ns {2}p(\d+) {2}(\S+) {2}(\w+) (.*)$/.exec(l);
    if (m === null) throw new Error(`unexpected grep line: ${l}`);
    let a = 0;
    const t = /^(?:v(\d+)#(\d+)|xen)\b/.exec(m[5]);
    if (t !== null && t[1] !== undefined) a = ((Number(t[2]) & 0x7ffff) << 12) | (Number(t[1]) + 1);
    return { ns: Number(m[1]), pcpu: Number(m[2]), who: m[3], kind: m[4], a };
  });
}

let dir: string;
let trace: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vcpulab-trace-'));
  trace = join(dir, 'ipi.trace');
  // About 4500 events: two writer batches, so cutting the file's tail still leaves a whole one.
  const r = await vcpulab('sim', '--engine', 'serial', '--scenario', 'ipi-vlapic', '--max-instructions', '40000', '--trace', trace, '--no-progress');
  expect(r.code, r.stderr).toBe(0);
}, 120_000);

describe('vcpulab trace FILE --perfetto', () => {
  let events: JsonEvent[];
  let summary: string;
  let pcpuOfTid: Map<number, number>;

  beforeAll(async () => {
    const out = join(dir, 'out.json');
    const r = await vcpulab('trace', trace, '--perfetto', out);
    expect(r.code, r.stderr).toBe(0);
    summary = r.stdout;
    const doc = JSON.parse(readFileSync(out, 'utf8')) as { traceEvents: JsonEvent[]; displayTimeUnit: string };
    expect(doc.displayTimeUnit).toBe('ns');
    events = doc.traceEvents;
    pcpuOfTid = new Map(events.filter((e) => e.ph === 'M' && e.name === 'thread_name')
      .map((e) => [e.tid as number, Number(/^pCPU (\d+)$/.exec(String(e.args?.name))?.[1])]));
  });

  it('names the process and gives each pCPU a track', () => {
    expect(events.find((e) => e.ph === 'M' && e.name === 'process_name')?.args?.name).toBe('vcpulab ipi-vlapic');
    expect([...pcpuOfTid.values()].sort()).toEqual([0, 1, 2, 3]);
    for (const e of events) if (e.ph !== 'M') expect(pcpuOfTid.has(e.tid as number)).toBe(true);
  });

  it('has one vCPU slice per sched_in, named <domain>/v<vcpu> on its pCPU', async () => {
    const slices = events.filter((e) => e.ph === 'X');
    const ins = parseGrep((await vcpulab('trace', trace, '--grep', 'sched_in')).stdout);
    expect(slices.length).toBe(ins.length);
    for (const s of slices) {
      expect(s.name).toMatch(/^guest\/v\d+$/);
      expect(s.dur).toBeGreaterThanOrEqual(0);
      expect(ins.some((i) => i.who === s.name && pcpuOfTid.get(s.tid as number) === i.pcpu && Math.abs(i.ns - (s.ts as number) * 1000) <= 1)).toBe(true);
    }
  });

  it('links each IPI send to its delivery with a flow pair from sender pCPU to receiver pCPU', async () => {
    const lines = parseGrep((await vcpulab('trace', trace, '--grep', 'ipi_send,ipi_deliver')).stdout);
    const sends = new Map(lines.filter((l) => l.kind === 'ipi_send').map((l) => [l.a, l]));
    const delivers = new Map<number, GrepLine[]>();
    for (const l of lines.filter((x) => x.kind === 'ipi_deliver')) delivers.set(l.a, [...(delivers.get(l.a) ?? []), l]);
    const starts = events.filter((e) => e.ph === 's');
    const ends = new Map(events.filter((e) => e.ph === 'f').map((e) => [e.id, e]));
    expect(starts.length).toBeGreaterThan(0);
    expect(ends.size).toBe(starts.length);
    let crossing = 0;
    for (const s of starts) {
      const f = ends.get(s.id) as JsonEvent;
      expect(f).toBeDefined();
      expect([f.name, f.cat, f.bp]).toEqual([s.name, s.cat, 'e']); // Perfetto pairs v1 flows by id, cat and name
      const tag = s.args?.tag as number;
      expect(f.args?.tag).toBe(tag);
      const from = pcpuOfTid.get(s.tid as number) as number, to = pcpuOfTid.get(f.tid as number) as number;
      const send = sends.get(tag) as GrepLine;
      expect(from).toBe(send.pcpu);
      expect(Math.abs((s.ts as number) * 1000 - send.ns)).toBeLessThanOrEqual(1);
      // The importer drops a flow whose end sorts before its start; a receiver clock behind the sender's
      // moves the head to 1 ns after the send and says so.
      expect(f.ts as number).toBeGreaterThan(s.ts as number);
      const skew = f.args?.clock_skew_ns as number | undefined;
      const deliver = delivers.get(tag)?.find((d) => d.pcpu === to &&
        Math.abs((skew === undefined ? (f.ts as number) * 1000 : (s.ts as number) * 1000 - skew) - d.ns) <= 1);
      expect(deliver).toBeDefined();
      if (from !== to) crossing++;
      // Both ends lie inside a vCPU slice of their track: the importer binds flows to enclosing slices.
      for (const end of [s, f]) {
        const t = end.ts as number;
        expect(events.some((x) => x.ph === 'X' && x.tid === end.tid && (x.ts as number) <= t && t <= (x.ts as number) + (x.dur as number))).toBe(true);
      }
    }
    expect(crossing).toBeGreaterThan(0);
  });

  it('its summary counts what it wrote: every JSON event by type, the instants by name', () => {
    const m = /out\.json: (\d+) JSON events from (\d+) trace records: (\d+) metadata \(process and pCPU track names\), (\d+) vCPU slices, (\d+) instants, (\d+) IPI flows \((\d+) flow events/.exec(summary);
    expect(m, summary).not.toBeNull();
    const [written, records, meta, slices, instants, flows, flowEvents] = (m as RegExpExecArray).slice(1).map(Number);
    const ph = (p: string): number => events.filter((e) => e.ph === p).length;
    expect(written).toBe(events.length);
    expect([meta, slices, instants, flowEvents]).toEqual([ph('M'), ph('X'), ph('i'), ph('s') + ph('f')]);
    expect(flows).toBe(ph('s'));
    expect(records).toBe(readTrace(trace).records.length);
    const byName = new Map<string, number>();
    for (const e of events) if (e.ph === 'i') byName.set(e.name, (byName.get(e.name) ?? 0) + 1);
    const line = /^ {2}instants: (.*)$/m.exec(summary)?.[1] ?? '';
    expect(new Map(line.split(', ').map((x) => { const i = x.lastIndexOf(' '); return [x.slice(0, i), Number(x.slice(i + 1))] as const; }))).toEqual(byName);
  });

  it('decodes each IPI send: destination, mode and vector as the --grep line reads the ICR', async () => {
    const sends = events.filter((e) => e.ph === 'i' && e.name === 'ipi_send');
    const lines = (await vcpulab('trace', trace, '--grep', 'ipi_send')).stdout.trimEnd().split('\n');
    expect(sends.length).toBe(lines.length);
    expect(sends.length).toBeGreaterThan(0);
    sends.forEach((e, i) => {
      const g = /ICR_LO=0x([0-9a-f]{8}) \(vector (0x[0-9a-f]+) (\w+)[^)]*\) (?:ICR_HI=0x([0-9a-f]{8}) \(destination (\d+)\)|destination (\d+))/.exec(lines[i]);
      expect(g, lines[i]).not.toBeNull();
      const x = g as RegExpExecArray;
      expect(e.args?.icr_lo).toBe(`0x${x[1]}`);
      expect(e.args?.vector).toBe(x[2]);
      expect(e.args?.mode).toBe(x[3]);
      expect(e.args?.destination).toBe(Number(x[5] ?? x[6]));
      if (x[4] !== undefined) expect(e.args?.icr_hi).toBe(`0x${x[4]}`);
      expect(e.args?.ipi).toMatch(/^(v\d+#\d+|xen)$/);
    });
    expect(lines.some((l) => /ICR_HI=0x/.test(l)), 'some send shows its ICR_HI, so its decoding is checked').toBe(true);
    for (const e of events.filter((x) => x.ph === 'i' && x.name === 'ipi_deliver')) expect(e.args?.vector).toMatch(/^0x[0-9a-f]{1,2}$/);
  });

  it('shows VM exits as instants named after the reason, with pc and qualification', async () => {
    const exits = events.filter((e) => e.ph === 'i' && e.cat === 'exit');
    const lines = (await vcpulab('trace', trace, '--grep', 'exit')).stdout.trimEnd().split('\n');
    expect(exits.length).toBe(lines.length);
    for (const e of exits) {
      expect(EXIT_NAMES).toContain(e.name);
      expect(e.args?.pc).toMatch(/^0x[0-9a-f]{8}$/);
      expect(e.args?.qual).toMatch(/^0x[0-9a-f]{8}$/);
    }
    expect(exits.some((e) => e.name === 'ept_violation')).toBe(true); // the trapped vLAPIC page's ICR writes
  });
});

describe('vcpulab trace FILE (summary and --grep)', () => {
  it('summarizes the header and counts events per kind', async () => {
    const r = await vcpulab('trace', trace);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/scenario=ipi-vlapic {2}engine=serial {2}SEED=1 {2}pcpus=4 {2}domains=guest/);
    expect(r.stdout).toMatch(/events: +\d+ in 2 batches, [\d.]+ ns \.\. [\d.]+ ns simulated/);
    expect(r.stdout).toMatch(/^ {2}ipi_send +\d+$/m);
    expect(r.stdout).not.toMatch(/truncated/);
  });

  it('--grep ipi_send --limit 5 prints five lines', async () => {
    const r = await vcpulab('trace', trace, '--grep', 'ipi_send', '--limit', '5');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(5);
    for (const l of lines) expect(l).toMatch(/ ns {2}p\d+ {2}guest\/v\d+ {2}ipi_send v\d+#\d+ ICR_LO=/);
  });

  it('--grep takes a finding kind for the events it is judged from', async () => {
    const r = await vcpulab('trace', trace, '--grep', 'IPI_MISDIRECTED', '--limit', '3');
    expect(r.code).toBe(0);
    for (const l of r.stdout.trimEnd().split('\n')) expect(l).toMatch(/ (icr_window|hv_ipi_misdirected|ipi_deliver) /);
  });
});

describe('bad input: one line, exit 2', () => {
  it('unknown --grep kind lists the valid names', async () => {
    const r = await vcpulab('trace', trace, '--grep', 'ipi_send,bogus');
    expectBadInput(r, /unknown --grep kind 'bogus' \(events: .*ipi_send.*; findings: .*IPI_MISDIRECTED/);
  });
  it('missing file', async () => expectBadInput(await vcpulab('trace', join(dir, 'nope.trace')), /nope\.trace: cannot read trace \(ENOENT\)/));
  it('not a trace', async () => {
    const f = join(dir, 'text.trace');
    writeFileSync(f, 'hello, world\n');
    expectBadInput(await vcpulab('trace', f), /text\.trace: not a vcpulab trace/);
  });
  it('--limit without --grep', async () => expectBadInput(await vcpulab('trace', trace, '--limit', '3'), /--limit needs --grep/));
});

describe('interrupted runs', () => {
  it('a trace cut inside its last batch still exports, without that batch', async () => {
    const whole = readFileSync(trace);
    const cut = join(dir, 'cut.trace');
    writeFileSync(cut, whole.subarray(0, whole.length - 100));
    const out = join(dir, 'cut.json');
    const r = await vcpulab('trace', cut, '--perfetto', out);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/cut\.trace: the last \d+ bytes are an incomplete batch/);
    const doc = JSON.parse(readFileSync(out, 'utf8')) as { traceEvents: JsonEvent[] };
    expect(doc.traceEvents.filter((e) => e.ph === 'X').length).toBeGreaterThan(0);
    expect(doc.traceEvents.filter((e) => e.ph === 'i').length).toBeGreaterThan(4000); // the first batch's 4096 events
  });

  it('the streaming reader gives the same records as a whole-file read, whatever the chunk size', () => {
    const want = readTrace(trace).records;
    for (const chunk of [1000, 4096, 1 << 20]) {
      const r = new TraceReader(trace, chunk);
      const got = [...r.batches()].flat();
      expect(r.header.scenario).toBe('ipi-vlapic');
      expect(got).toEqual(want); // values split across chunks wait for the next one
      expect(r.truncatedBytes).toBe(0);
    }
  });
});

describe('vcpulab trace FILE --perfetto: views by index', () => {
  it('a VMFUNC instant names its views by index, as --grep does', async () => {
    const t = join(dir, 'realm.trace'), out = join(dir, 'realm.json');
    const r = await vcpulab('sim', '--engine', 'serial', '--scenario', 'secure-realm', '--max-instructions', '20000', '--trace', t, '--no-progress');
    expect(r.code, r.stderr).toBe(0);
    expect((await vcpulab('trace', t, '--perfetto', out)).code).toBe(0);
    const vmfuncs = (JSON.parse(readFileSync(out, 'utf8')) as { traceEvents: JsonEvent[] }).traceEvents.filter((e) => e.name === 'vmfunc');
    const lines = (await vcpulab('trace', t, '--grep', 'vmfunc')).stdout.trimEnd().split('\n');
    expect(vmfuncs.length).toBe(lines.length);
    expect(vmfuncs.length).toBeGreaterThan(0);
    const name = (v: unknown): string => (v === 'host' ? 'host p2m' : `view ${String(v)}`);
    vmfuncs.forEach((e, i) => {
      expect(typeof e.args?.from_view === 'number' || e.args?.from_view === 'host').toBe(true);
      expect(lines[i]).toContain(`vmfunc ${name(e.args?.from_view)} -> ${name(e.args?.to_view)} pc=${String(e.args?.pc)}`);
    });
  });
});
