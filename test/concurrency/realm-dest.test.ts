// Seed point (g): the realm sending with the destination forms a guest kernel uses with its own APIC, through
// the host's xAPIC (realm.s DEST_MODE). The host LAPICs match them against what Xen programmed for pCPUs (flat
// logical LDRs, physical IDs), so they reach pCPUs and whatever vCPU runs there, not the vCPUs the guest named.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/cli.js';
import type { RunReport } from '../../src/report.js';

const { simulate } = (await import(new URL('../../dist/src/lab.js', import.meta.url).href)) as typeof import('../../src/lab.js');
const why = (r: RunReport): string => JSON.stringify(r.findings.map((f) => [f.kind, f.count, f.causes]));
const MISDIRECTED_BY_FORM = ['logical', 'broadcast', 'shorthand'];

/** secure-realm-logical with another DEST_MODE (the built-in's file, its program by absolute path). */
async function run(destMode: number, seed: number): Promise<RunReport> {
  const dir = mkdtempSync(join(tmpdir(), 'vcpulab-dest-'));
  try {
    const toml = readFileSync(join(ROOT, 'src/scenario/builtin/secure-realm-logical.toml'), 'utf8')
      .replace(/DEST_MODE = \d }/, `DEST_MODE = ${destMode} }`)
      .replace('program = "realm.s"', `program = "${join(ROOT, 'src/scenario/builtin/realm.s')}"`);
    writeFileSync(join(dir, 's.toml'), toml);
    return (await simulate({ scenario: join(dir, 's.toml'), engine: 'serial', seed, strategy: 'random', maxInstructions: 100_000_000, maxMs: 0, slack: 30000, burst: 4096, watchdogMs: 2000 })).report;
  } finally { rmSync(dir, { recursive: true, force: true }); }
}

describe('the realm\'s logical, broadcast and shorthand sends through the host xAPIC', () => {
  it.each([[1, 'logical'], [2, 'broadcast'], [3, 'shorthand']] as const)('DEST_MODE %i: IPI_MISDIRECTED with cause %s (serial seeds 1-2)', async (mode, cause) => {
    for (const seed of [1, 2]) {
      const r = await run(mode, seed);
      expect(r.outcome, why(r)).toBe('completed');
      const f = r.findings.find((x) => x.kind === 'IPI_MISDIRECTED');
      expect(f?.causes[cause] ?? 0, why(r)).toBeGreaterThan(0);
      expect(f?.first.signature ?? '', why(r)).toMatch(new RegExp(`^IPI_MISDIRECTED:(${MISDIRECTED_BY_FORM.join('|')}|not_running|left_pcpu|stale_map|icr_window):`));
    }
  }, 120_000);
  it('logical: vCPUs 4 and 5 have logical IDs no pCPU\'s LDR holds (4 pCPUs): their IPIs reach nobody (IPI_LOST)', async () => {
    const r = await run(1, 1);
    const lost = r.findings.find((x) => x.kind === 'IPI_LOST');
    expect(lost?.count ?? 0, why(r)).toBeGreaterThan(0);
    expect(lost?.first.detail, why(r)).toMatch(/meant for vCPU [45] /);
  }, 60_000);
  it('negative control: physical unicast (DEST_MODE 0) on the same seeds never misdirects by destination form', async () => {
    for (const seed of [1, 2]) {
      const r = await run(0, seed);
      const f = r.findings.find((x) => x.kind === 'IPI_MISDIRECTED');
      for (const c of MISDIRECTED_BY_FORM) expect(f?.causes[c], why(r)).toBeUndefined();
    }
  }, 60_000);
});
