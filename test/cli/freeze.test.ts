// `vcpulab sim --freeze-on KIND[:CAUSE]`: the run stops when the first matching finding is judged and the
// report carries every pCPU's state then. Positive runs on secure-realm (its IPIs go astray), negative
// controls on designs and causes that never produce the finding (no freeze, the run goes to its end).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectBadInput, vcpulab } from '../helpers/cli.js';
import type { RunReport } from '../../src/report.js';

const REGS = ['eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];
const tmp = mkdtempSync(join(tmpdir(), 'vcpulab-freeze-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function sim(...args: string[]): Promise<RunReport> {
  const r = await vcpulab('sim', '--json', ...args);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as RunReport;
}

/** What every frame must hold, whatever the interleaving. */
function expectFrame(r: RunReport, kind: string): number {
  const z = r.freeze;
  if (z === undefined) throw new Error('no freeze in the report');
  expect(r.outcome).toBe('limit');
  expect(r.reason).toContain(`--freeze-on ${z.on}: frozen at the first ${kind}:`);
  expect(z.finding.kind).toBe(kind);
  // The occurrence that stopped the run is one the report counts.
  const f = r.findings.find((x) => x.kind === kind);
  expect(f?.signatures[z.finding.signature]).toBeGreaterThanOrEqual(1);
  expect(z.pcpus.map((p) => p.pcpu)).toEqual([...Array(r.pcpus).keys()]);
  let loaded = 0;
  for (const p of z.pcpus) {
    expect(p.parked).toBe(true);
    for (const l of p.vlapic === null ? [p.lapic] : [p.lapic, p.vlapic]) {
      for (const v of [...l.irr, ...l.isr]) expect(v).toMatch(/^0x[0-9a-f]{1,2}$/);
      expect(l.icr.vector).toBe('0x' + (parseInt(l.icr_lo, 16) & 0xff).toString(16));
      expect(['physical', 'logical']).toContain(l.icr.dest_mode);
    }
    if (p.vcpu === null) { expect(p.vlapic).toBeNull(); continue; }
    loaded++;
    expect(Object.keys(p.vcpu.regs)).toEqual(REGS);
    expect(p.vcpu.pc).toMatch(/^0x[0-9a-f]+$/);
    expect(p.vcpu.insn).toMatch(/\S/); // the disassembled instruction at pc
    expect(p.vlapic).not.toBeNull();
  }
  return loaded;
}

describe('--freeze-on (serial)', () => {
  it('stops secure-realm at its first IPI_MISDIRECTED, deterministically; the same run without the flag goes on', async () => {
    const args = ['--scenario', 'secure-realm', '--engine', 'serial', '--seed', '1'];
    const [a, b, full] = await Promise.all([sim(...args, '--freeze-on', 'IPI_MISDIRECTED'), sim(...args, '--freeze-on', 'IPI_MISDIRECTED'), sim(...args)]);
    // Seed 1 is judged while the realm's vCPUs still run: the frame shows them (a threaded run may be judged
    // only as the workload ends, with every pCPU idle).
    expect(expectFrame(a, 'IPI_MISDIRECTED')).toBeGreaterThan(0);
    expect(b.freeze).toEqual(a.freeze);
    expect(a.digest).toBe(b.digest);
    expect(full.freeze).toBeUndefined();
    expect(full.outcome).toBe('completed');
    expect(a.metrics.instructions).toBeLessThan(full.metrics.instructions as number);
    // Frozen after the finding happened: every pCPU that ran is at or past its time.
    expect(Math.max(...(a.freeze?.pcpus ?? []).map((p) => p.clock_ns))).toBeGreaterThanOrEqual(a.freeze?.finding.time_ns ?? Infinity);
    expect(a.replay).toContain('--freeze-on IPI_MISDIRECTED');
  });

  it('KIND:CAUSE waits for that cause; a cause this run never has freezes nothing (negative control)', async () => {
    const args = ['--scenario', 'secure-realm', '--engine', 'serial', '--seed', '1'];
    const [hit, miss] = await Promise.all([sim(...args, '--freeze-on', 'IPI_MISDIRECTED:left_pcpu'), sim(...args, '--freeze-on', 'IPI_MISDIRECTED:icr_window')]);
    expectFrame(hit, 'IPI_MISDIRECTED');
    expect(hit.freeze?.finding.cause).toBe('left_pcpu');
    expect(miss.freeze).toBeUndefined();
    expect(miss.outcome).toBe('completed');
    const f = miss.findings.find((x) => x.kind === 'IPI_MISDIRECTED');
    expect(f?.count).toBeGreaterThan(0);
    expect(f?.causes.icr_window).toBeUndefined();
  });

  it('a design that never misdirects runs to its end with no freeze (ipiv, negative control)', async () => {
    const r = await sim('--scenario', 'ipiv', '--engine', 'serial', '--freeze-on', 'IPI_MISDIRECTED');
    expect(r.freeze).toBeUndefined();
    expect(r.outcome).toBe('completed');
    expect(r.findings.map((f) => f.kind)).not.toContain('IPI_MISDIRECTED');
  });

  it('a frozen schedule replays to the same frame; an unfrozen one replayed with --freeze-on stops at the finding', async () => {
    const frozen = join(tmp, 'frozen.sched'), plain = join(tmp, 'plain.sched');
    const args = ['--scenario', 'secure-realm', '--engine', 'serial', '--seed', '3'];
    const [rec, recPlain] = await Promise.all([sim(...args, '--freeze-on', 'IPI_MISDIRECTED', '--schedule-out', frozen), sim(...args, '--schedule-out', plain)]);
    expectFrame(rec, 'IPI_MISDIRECTED');
    expect(recPlain.freeze).toBeUndefined();
    const [again, late] = await Promise.all([sim('--replay', frozen), sim('--replay', plain, '--freeze-on', 'IPI_MISDIRECTED')]);
    expect(again.digest).toBe(rec.digest);
    expect(again.freeze).toEqual(rec.freeze);
    expect(late.freeze).toEqual(rec.freeze);
  });
});

describe('--freeze-on (threaded)', () => {
  it('pauses every pCPU at a burst boundary and reports its frame (secure-realm)', async () => {
    const r = await sim('--scenario', 'secure-realm', '--freeze-on', 'IPI_MISDIRECTED');
    // Every interleaving of this design misdirects IPIs (README, Designs), so every run freezes.
    expectFrame(r, 'IPI_MISDIRECTED');
    expect(r.engine).toBe('threaded');
  });

  it('pCPUs that share threads (--threads 2) park together and every one reports its frame', async () => {
    const r = await sim('--scenario', 'secure-realm', '--threads', '2', '--freeze-on', 'IPI_MISDIRECTED');
    expectFrame(r, 'IPI_MISDIRECTED');
    expect(r.pcpus).toBe(4);
  });

  it('posted never misdirects: no freeze, the run completes (negative control)', async () => {
    const r = await sim('--scenario', 'posted', '--freeze-on', 'IPI_MISDIRECTED');
    expect(r.freeze).toBeUndefined();
    expect(r.outcome).toBe('completed');
    expect(r.findings.map((f) => f.kind)).not.toContain('IPI_MISDIRECTED');
  });
});

describe('--freeze-on bad input', () => {
  it('an unknown kind, a malformed cause, --compare and --no-oracles are one line, exit 2', async () => {
    const [kind, cause, cmp, noOr] = await Promise.all([
      vcpulab('sim', '--freeze-on', 'IPI_WRONG'),
      vcpulab('sim', '--freeze-on', 'IPI_LOST:Not-A-Token'),
      vcpulab('sim', '--compare', '--freeze-on', 'IPI_LOST'),
      vcpulab('sim', '--freeze-on', 'REALM_ESCAPE', '--no-oracles'),
    ]);
    expectBadInput(kind, /--freeze-on: 'IPI_WRONG' is not a finding kind \(IPI_MISDIRECTED, .*STALL\)$/);
    expectBadInput(cause, /--freeze-on IPI_LOST:Not-A-Token: the cause must be a cause token/);
    expectBadInput(cmp, /--compare .*drop --freeze-on/);
    expectBadInput(noOr, /--freeze-on .*--no-oracles/);
  });
});
