// The realm workload's report keys mean what README (Designs, the realm workload's report keys) says.
import { describe, expect, it } from 'vitest';
import { vcpulab } from '../helpers/cli.js';
import type { RunReport } from '../../src/report.js';

const SECRET = 0x5ec7e7;

async function keys(scenario: string): Promise<Map<number, number>> {
  const r = await vcpulab('sim', '--scenario', scenario, '--engine', 'serial', '--seed', '1', '--json');
  expect(r.code, r.stderr).toBe(0);
  const rep = JSON.parse(r.stdout) as RunReport;
  expect(rep.reports.map((x) => x.key)).toEqual([1, 2, 3, 4, 5]);
  return new Map(rep.reports.map((x) => [x.key, x.value]));
}

describe('realm.s report keys', () => {
  it('key 2 counts the realm calls, key 3 is their secret reads summed, key 1 the ring IPIs handled; key 4 only the rogue read', async () => {
    const [clean, rogue, init, hvmi] = await Promise.all([keys('secure-realm'), keys('secure-realm-rogue'), keys('secure-realm-init'), keys('hvmi-external')]);
    for (const k of [clean, rogue, init, hvmi]) {
      const calls = k.get(2) as number;
      expect(k.get(3)).toBe(Math.imul(calls, SECRET)); // every realm read returned the secret
      expect(k.get(1)).toBeLessThanOrEqual(calls);
    }
    // secure-realm-init is Intel's: its INIT resets no core, so no vCPU is lost and every call is counted.
    for (const k of [clean, rogue, init, hvmi]) expect(k.get(2)).toBe(40 * 6);
    for (const k of [clean, rogue, init, hvmi]) expect(k.get(5)).toBe(0); // no NMI source (control)
    expect(clean.get(4)).toBe(0); // no rogue code (control)
    expect(rogue.get(4)).toBe(SECRET); // the rogue kernel code read the secret
    expect(hvmi.get(4)).toBe(0); // the same rogue code reads the agent's decoy frame
  });
  it('key 5 counts the NMIs the kernel took: secure-realm-nmi\'s perf NMIs', async () => {
    const nmi = await keys('secure-realm-nmi');
    expect(nmi.get(5)).toBeGreaterThan(0);
    expect(nmi.get(3)).toBe(Math.imul(nmi.get(2) as number, SECRET));
  }, 60_000);
});
