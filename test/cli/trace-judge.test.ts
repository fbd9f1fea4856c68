// `vcpulab trace --grep` marks the deliveries the IPI oracle judges wrong. The trace stores no judgments:
// the command re-judges the trace's events with the oracle the run used, so its marks agree with the run's
// report, cause for cause.
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'vcpulab.js');
const dir = mkdtempSync(join(tmpdir(), 'vcpulab-trace-judge-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function vcpulab(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: 60_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? -1, stdout, stderr });
    });
  });
}

interface Report { findings: { kind: string; count: number; causes: Record<string, number> }[]; metrics: Record<string, number> }

describe('vcpulab trace --grep: WRONG marks', () => {
  it.each([['secure-realm', '1'], ['ipi-xapic', '2']])('%s, serial seed %s: the marked deliveries are the run\'s misdirected ones', async (scenario, seed) => {
    const trace = join(dir, `${scenario}.trace`);
    const run = await vcpulab('sim', '--scenario', scenario, '--engine', 'serial', '--seed', seed, '--trace', trace, '--json');
    expect(run.code, run.stderr).toBe(0);
    const r = JSON.parse(run.stdout) as Report;
    const want = r.findings.find((f) => f.kind === 'IPI_MISDIRECTED')?.causes ?? {};
    expect(Object.keys(want).length).toBeGreaterThan(0);

    const g = await vcpulab('trace', trace, '--grep', 'ipi_deliver');
    expect(g.code, g.stderr).toBe(0);
    const lines = g.stdout.trimEnd().split('\n');
    expect(lines.length).toBe(r.metrics.ipi_delivered); // every delivery, in file order, none held back
    const got: Record<string, number> = {};
    for (const l of lines) {
      expect(l).toMatch(/ ipi_deliver /);
      const m = /  WRONG: ([a-z_]+)$/.exec(l);
      if (m !== null) got[m[1]] = (got[m[1]] ?? 0) + 1;
    }
    expect(got).toEqual(want);

    // --limit stops printing, not judging: the first lines carry the same marks.
    const few = await vcpulab('trace', trace, '--grep', 'IPI_MISDIRECTED', '--limit', '150');
    expect(few.code, few.stderr).toBe(0);
    const all = await vcpulab('trace', trace, '--grep', 'IPI_MISDIRECTED');
    expect(few.stdout.trimEnd().split('\n')).toEqual(all.stdout.trimEnd().split('\n').slice(0, 150));
    expect(few.stdout).toMatch(/WRONG: /);
  }, 60_000);
});
