// The README's compare table and the claims beside it are a real run's: regenerate them and compare, so a
// change in the simulator or the oracles that moves a number fails here until the README says what is true.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'vcpulab.js');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

function sim(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'sim', ...args], { cwd: ROOT, timeout: 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? -1, stdout, stderr });
    });
  });
}

/** The README section that starts with heading `title`, up to the next heading of level 2. */
function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`README has no section '## ${title}'`);
  const end = README.indexOf('\n## ', start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

/**
 * Lines with whitespace runs made one space, blank lines dropped. The table has no wall-time column (its
 * latencies are simulated ns); were one added, it would be dropped here before comparing.
 */
function normalise(text: string): string[] {
  return text.split('\n').map((l) => l.trim().replace(/\s+/g, ' ')).filter((l) => l !== '');
}

describe('README: Designs', () => {
  const designs = section('Designs: the secure realm and its alternatives');

  it('its compare table is what `npm run sim -- --compare --engine serial --seed 1` prints now', async () => {
    const first = designs.indexOf('\n```\nvcpulab compare  engine=serial  SEED=1');
    expect(first, 'the README keeps the table in a ``` block starting with its title line').toBeGreaterThan(0);
    const body = designs.slice(first + 5, designs.indexOf('\n```', first + 5));
    const out = await sim(['--compare', '--engine', 'serial', '--seed', '1']);
    expect(out.code, out.stderr).toBe(0);
    expect(normalise(body)).toEqual(normalise(out.stdout));
  }, 120_000);

  it('the seeds it names for the ICR window on ipi-xapic are the ones that show it', async () => {
    const m = /`ipi-xapic`[^]*?plain `random` on seeds ([\d, and]+) of 1[-–](\d+)/.exec(designs);
    expect(m, 'the README names the seeds: "plain `random` on seeds A, B and C of 1-N"').not.toBeNull();
    const claimed = (m as RegExpExecArray)[1].split(/,\s*|\s+and\s+/).map(Number);
    const last = Number((m as RegExpExecArray)[2]);
    const hits: number[] = [];
    for (let seed = 1; seed <= last; seed++) {
      const out = await sim(['--scenario', 'ipi-xapic', '--engine', 'serial', '--seed', String(seed), '--json']);
      expect(out.code, out.stderr).toBe(0);
      const r = JSON.parse(out.stdout) as { findings: { kind: string; causes: Record<string, number> }[] };
      if ((r.findings.find((f) => f.kind === 'IPI_MISDIRECTED')?.causes.icr_window ?? 0) > 0) hits.push(seed);
    }
    expect(claimed).toEqual(hits);
  }, 120_000);
});
