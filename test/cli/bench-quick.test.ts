// `npm run bench -- --quick`: a smoke run of every bench area, one table, no row failed. (How long it takes
// is measured, not asserted: README, Benchmarks.)
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

describe('bench --quick', () => {
  it('prints one table with a figure in every row', async () => {
    const { code, stdout } = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(process.execPath, ['--no-concurrent-recompilation', '--no-concurrent-osr', join(ROOT, 'dist', 'bench', 'run.js'), '--quick'],
        { cwd: ROOT, timeout: 120_000 }, (err, out) => resolve({ code: err === null ? 0 : -1, stdout: out }));
    });
    expect(code).toBe(0);
    const lines = stdout.split('\n');
    expect(lines.filter((l) => l.startsWith('measurement '))).toHaveLength(1);
    expect(stdout).not.toContain('|---'); // no second (Markdown) table
    const start = lines.findIndex((l) => l.startsWith('measurement ')), end = lines.indexOf('', start);
    const rows = lines.slice(start + 1, end);
    expect(rows.map((r) => r.split(/\s{2,}/)[0])).toEqual([
      'bare interpreter loop, 1 worker', 'Atomics spin ping-pong RT (median)', 'serial engine, 4 pCPUs / 4 vCPUs (1 thread)',
      'threaded, 1 pCPU', 'threaded, 2 pCPUs', 'IPI ring ipi-vlapic, threaded: send->handler latency p50 / p99 (simulated)',
      'xen-access agent (altp2m_write), threaded: vm_event requests per wall s', 'hunt secure-realm random, 8 runs, 1 worker',
    ]);
    for (const r of rows) expect(r.split(/\s{2,}/)[1]).toMatch(/^[\d.]+( \/ [\d.]+)?$/);
  });
});
