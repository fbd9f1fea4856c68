// A distributed campaign's scenario bundle carries every file the scenario is made of, the files its programs
// `.include` among them, and a worker that writes it out prepares the same scenario (same content hash).
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dist = async <T>(p: string): Promise<T> => (await import(new URL(`../../dist/src/${p}`, import.meta.url).href)) as T;
const { labPrepare } = await dist<typeof import('../../src/lab.js')>('lab.js');
const { bundleScenario, bundleMaterialize } = await dist<typeof import('../../src/hunt/bundle.js')>('hunt/bundle.js');

describe('scenario bundles', () => {
  it('secure-realm: realm.s and the files it includes travel, and the written-out bundle prepares to the same hash', async () => {
    const prep = await labPrepare('secure-realm');
    const b = bundleScenario(prep);
    const paths = b.files.map((f) => f.path).sort();
    expect(paths).toEqual(expect.arrayContaining(['secure-realm.toml', 'realm.s', 'ipi-handlers.s', 'ipi-send.s', 'wait-vcpu-map.s']));
    const cache = mkdtempSync(join(tmpdir(), 'vcpulab-bundle-'));
    try {
      const toml = bundleMaterialize(b, cache);
      expect((await labPrepare(toml)).hash).toBe(prep.hash);
    } finally { rmSync(cache, { recursive: true, force: true }); }
  });
  it('control: a scenario whose program includes nothing bundles the TOML and the program alone', async () => {
    const prep = await labPrepare('counter');
    expect(bundleScenario(prep).files.map((f) => f.path).sort()).toEqual(['counter.s', 'counter.toml']);
  });
});
