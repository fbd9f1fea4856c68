// `--compare`: the maintainer's points, as assertions on the serial engine with pinned seeds.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'vcpulab.js');

interface Report { scenario: string; engine: string; seed: number; outcome: string; findings: { kind: string; count: number }[]; metrics: Record<string, number> }

function compare(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'sim', ...args], { cwd: ROOT, timeout: 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? -1, stdout, stderr });
    });
  });
}

const count = (r: Report, kind: string) => r.findings.find((f) => f.kind === kind)?.count ?? 0;

describe('--compare', () => {
  it.each([1, 2, 3])('serial, seed %i: every design on one workload shows the maintainer\'s points', async (seed) => {
    const out = await compare(['--compare', '--engine', 'serial', '--seed', String(seed), '--json']);
    expect(out.code, out.stderr).toBe(0);
    const reports = (JSON.parse(out.stdout) as { compare: Report[] }).compare;
    const by = new Map(reports.map((r) => [r.scenario, r]));
    expect([...by.keys()]).toEqual(['secure-realm', 'secure-realm-rogue', 'secure-realm-init', 'secure-realm-nmi', 'secure-realm-logical', 'x2apic-realm', 'hypercall-ipi', 'posted', 'ipiv', 'avic', 'hvmi-external']);
    for (const r of reports) {
      expect(r.outcome, r.scenario).toBe('completed');
      expect(r.engine).toBe('serial');
      expect(r.seed).toBe(seed);
      for (const k of ['ipi_sent', 'ipi_delivered', 'exits_per_ipi', 'ipi_latency_ns_p50', 'ipi_latency_ns_p99', 'vmfuncs', 'ept_flushes']) {
        expect(typeof r.metrics[k], `${r.scenario} ${k}`).toBe('number');
      }
      // Every design but AVIC's has views (AMD has no altp2m: avic runs the workload without them).
      if (r.scenario === 'avic') expect(r.metrics.vmfuncs, r.scenario).toBe(0);
      else expect(r.metrics.vmfuncs, r.scenario).toBeGreaterThan(0);
    }
    const get = (n: string) => by.get(n) as Report;
    // xAPIC passthrough misdirects (ICR_HI window, hypervisor use of the APIC, stale maps); only the hypervisor receives interrupts.
    expect(count(get('secure-realm'), 'IPI_MISDIRECTED')).toBeGreaterThan(0);
    expect(count(get('secure-realm'), 'IPI_UNKNOWN_VECTOR')).toBeGreaterThan(0);
    // x2APIC: one ICR write, but destinations still go stale.
    expect(count(get('x2apic-realm'), 'IPI_MISDIRECTED')).toBeGreaterThan(0);
    // Any VMFUNC enters the view: a rogue one escapes in mixed mode.
    expect(count(get('secure-realm-rogue'), 'ROGUE_VMFUNC')).toBeGreaterThan(0);
    expect(count(get('secure-realm-rogue'), 'REALM_ESCAPE')).toBeGreaterThan(0);
    // A guest that can write ICR sends INIT to a pCPU; on Intel (altp2m's vendor) Xen ignores or holds it.
    expect(count(get('secure-realm-init'), 'HOST_INIT')).toBeGreaterThan(0);
    expect(count(get('secure-realm-init'), 'HOST_RESET')).toBe(0);
    // None of these for the hypervisor-mediated and hardware-virtualized paths.
    for (const n of ['hypercall-ipi', 'posted', 'ipiv', 'avic']) {
      for (const k of ['IPI_MISDIRECTED', 'IPI_LOST', 'IPI_FOREIGN', 'IPI_UNKNOWN_VECTOR', 'HOST_RESET', 'ROGUE_VMFUNC', 'REALM_ESCAPE']) {
        expect(count(get(n), k), `${n} ${k}`).toBe(0);
      }
    }
    // HVMI-style: the stray VMFUNC happens, nothing escapes.
    expect(count(get('hvmi-external'), 'ROGUE_VMFUNC')).toBeGreaterThan(0);
    expect(count(get('hvmi-external'), 'REALM_ESCAPE')).toBe(0);
    // Fewer exits per IPI for IPIv and posted interrupts than for the vLAPIC.
    expect(get('ipiv').metrics.exits_per_ipi).toBeLessThan(get('hypercall-ipi').metrics.exits_per_ipi);
    expect(get('posted').metrics.exits_per_ipi).toBeLessThan(get('hypercall-ipi').metrics.exits_per_ipi);
  }, 120_000);

  it('a named subset, printed as a table', async () => {
    const out = await compare(['--compare', 'secure-realm,ipiv', '--engine', 'serial']);
    expect(out.code).toBe(0);
    const lines = out.stdout.split('\n');
    expect(lines.some((l) => l.startsWith('secure-realm '))).toBe(true);
    expect(lines.some((l) => l.startsWith('ipiv '))).toBe(true);
    expect(out.stdout).toMatch(/exits\/IPI/);
    expect(out.stdout).not.toMatch(/^avic /m);
  }, 60_000);

  it('--threads above a design\'s pCPU count gives that design a thread per pCPU (threaded)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vcpulab-compare-'));
    try {
      const toml = readFileSync(join(ROOT, 'src', 'scenario', 'builtin', 'secure-realm.toml'), 'utf8')
        .replace('program = "realm.s"', `program = "${join(ROOT, 'src', 'scenario', 'builtin', 'realm.s')}"`)
        .replace(/^pcpus = \d+$/m, 'pcpus = 2');
      writeFileSync(join(dir, 'two.toml'), toml);
      const out = await compare(['--compare', `secure-realm,${join(dir, 'two.toml')}`, '--threads', '3', '--json']);
      expect(out.code, out.stderr).toBe(0);
      const rs = (JSON.parse(out.stdout) as { compare: (Report & { pcpus: number })[] }).compare;
      expect(rs.map((r) => [r.pcpus, r.metrics.threads])).toEqual([[4, 3], [2, 2]]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('warns when the designs run different workloads, and only then', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vcpulab-compare-'));
    try {
      // secure-realm with more rounds and another vCPU count: the same design, another workload.
      const toml = readFileSync(join(ROOT, 'src', 'scenario', 'builtin', 'secure-realm.toml'), 'utf8')
        .replace('program = "realm.s"', `program = "${join(ROOT, 'src', 'scenario', 'builtin', 'realm.s')}"`)
        .replace('ROUNDS = 40', 'ROUNDS = 20').replace('vcpus = 6', 'vcpus = 4');
      writeFileSync(join(dir, 'fewer.toml'), toml);
      const [same, rogue, fewer, table] = await Promise.all([
        compare(['--compare', 'secure-realm,posted,ipiv,hypercall-ipi', '--engine', 'serial', '--json']),
        compare(['--compare', 'secure-realm,secure-realm-rogue', '--engine', 'serial', '--json']),
        compare(['--compare', `secure-realm,${join(dir, 'fewer.toml')}`, '--engine', 'serial', '--json']),
        compare(['--compare', 'secure-realm,secure-realm-rogue', '--engine', 'serial']),
      ]);
      const notes = (r: { stdout: string }): string[] => (JSON.parse(r.stdout) as { workload_warnings: string[] }).workload_warnings;
      expect(notes(same)).toEqual([]); // the same realm workload over four IPI paths (control)
      expect(notes(rogue)).toEqual(['secure-realm-rogue runs another workload than secure-realm: ROGUE = 1 (not 0)']);
      expect(notes(fewer)).toEqual([`${join(dir, 'fewer.toml')} runs another workload than secure-realm: vcpus 4 (not 6), ROUNDS = 20 (not 40)`]);
      expect(table.stdout).toContain('warning: workload: secure-realm-rogue runs another workload than secure-realm: ROGUE = 1 (not 0)\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('bad designs and clashing flags are one-line errors, exit 2', async () => {
    const bad = await compare(['--compare', 'secure-realm,nosuch']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/'nosuch' is neither a built-in scenario nor a \.toml file/);
    const clash = await compare(['--compare', '--scenario', 'counter']);
    expect(clash.code).toBe(2);
    expect(clash.stderr).toMatch(/--compare runs the built-in designs .* drop --scenario/);
  });
});
