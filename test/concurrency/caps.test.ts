// What a run keeps is bounded by caps, not by its length, and the report says when a cap was reached: guests
// that report, print or declare IPI intents in a loop (serial, a fixed instruction count, so the counts are
// exact), findings past --max-instances, and the latency percentiles past their exact range. Negative
// controls: the same guests with fewer iterations stay under the caps and say so.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type * as SimModule from '../../src/cli/sim.js';
import { CONSOLE_MAX_CHARS, REPORTS_MAX } from '../../src/trace/collector.js';
import { QUANTILE_EXACT_MAX, QuantileSketch } from '../../src/oracles/quantile.js';
import { IPI_OPEN_INTENTS_MAX } from '../../src/oracles/ipi.js';

const { simulate } = (await import(new URL('../../dist/src/cli/sim.js', import.meta.url).href)) as typeof SimModule;

const dir = mkdtempSync(join(tmpdir(), 'vcpulab-caps-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A 1-vCPU guest running `body` then `jmp l` for `insns` instructions (serial: exact). */
async function loop(name: string, body: string[], insns: number) {
  writeFileSync(join(dir, `${name}.s`), `_start:\n    mov ebx, 5\n    mov ecx, 0x41\n    mov eax, 0x41\nl:\n${body.map((l) => `    ${l}\n`).join('')}    jmp l\n`);
  writeFileSync(join(dir, `${name}.toml`), `[machine]\npcpus = 1\n[[domain]]\nname = "g"\nvcpus = 1\nmemory_kb = 64\nprogram = "${name}.s"\n`);
  const { report } = await simulate({
    scenario: join(dir, `${name}.toml`), engine: 'serial', seed: 1, strategy: 'random', maxInstructions: insns, maxMs: 0, slack: 30000,
    burst: 4096, watchdogMs: 5000,
  });
  expect(report.outcome).toBe('limit');
  return report;
}

describe('caps on what a run keeps', () => {
  it('magic 1 in a loop: the first REPORTS_MAX reports kept, the rest counted', async () => {
    const loops = REPORTS_MAX + 1234;
    const r = await loop('reports', ['magic 1'], 3 + 2 * loops);
    expect(r.reports).toHaveLength(REPORTS_MAX);
    expect(r.reports_truncated).toBe(true);
    expect(r.reports_dropped).toBe(1234);
    const under = await loop('reports-under', ['magic 1'], 3 + 2 * 100);
    expect(under.reports).toHaveLength(100);
    expect(under.reports_truncated).toBe(false);
    expect(under.reports_dropped).toBe(0);
  });

  it('console output in a loop: the first CONSOLE_MAX_CHARS characters kept per domain, the rest counted', async () => {
    const loops = CONSOLE_MAX_CHARS + 500;
    const r = await loop('console', ['out 0xE9, eax'], 3 + 2 * loops);
    expect(r.console.g).toHaveLength(CONSOLE_MAX_CHARS);
    expect(r.console.g).toBe('A'.repeat(CONSOLE_MAX_CHARS));
    expect(r.console_truncated).toBe(true);
    expect(r.console_dropped).toEqual({ g: 500 });
    const under = await loop('console-under', ['out 0xE9, eax'], 3 + 2 * 10);
    expect(under.console.g).toBe('A'.repeat(10));
    expect(under.console_truncated).toBe(false);
    expect(under.console_dropped).toEqual({});
  });

  it('intents declared in a loop and never sent: open intents capped, every one counted as unsent', async () => {
    const loops = 3 * IPI_OPEN_INTENTS_MAX;
    const r = await loop('intents', ['magic 2'], 3 + 2 * loops);
    expect(r.metrics.ipi_intent_unsent).toBe(loops);
  });

  it('a finding past --max-instances: instances truncated, the rest only counted', async () => {
    writeFileSync(join(dir, 'assert.s'), '_start:\n    mov ebx, 7\nl:\n    magic 3\n    jmp l\n');
    writeFileSync(join(dir, 'assert.toml'), '[machine]\npcpus = 1\n[[domain]]\nname = "g"\nvcpus = 1\nmemory_kb = 64\nprogram = "assert.s"\n');
    const { report } = await simulate({
      scenario: join(dir, 'assert.toml'), engine: 'serial', seed: 1, strategy: 'random', maxInstructions: 1 + 2 * 500, maxMs: 0, slack: 30000,
      burst: 4096, watchdogMs: 5000, maxInstances: 20,
    });
    const f = report.findings.find((x) => x.kind === 'GUEST_ASSERT');
    expect(f?.count).toBe(500);
    expect(f?.instances).toHaveLength(20);
    expect(f?.instances_truncated).toBe(true);
    expect(f?.instances_dropped).toBe(480);
  });

  it('latency percentiles: exact up to QUANTILE_EXACT_MAX samples, within 0.4% past it, in a fixed-size histogram', () => {
    const exact = new QuantileSketch(), sorted: number[] = [];
    for (let i = 0; i < 1000; i++) { const v = (i * 7919) % 1000 + 0.25; exact.add(v); sorted.push(v); }
    sorted.sort((a, b) => a - b);
    expect(exact.approximate).toBe(false);
    expect(exact.quantile(0.5)).toBe(sorted[500]);
    expect(exact.quantile(0.99)).toBe(sorted[990]);
    const big = new QuantileSketch(), all: number[] = [];
    for (let i = 0; i < 3 * QUANTILE_EXACT_MAX; i++) { const v = 100 + ((i * 2654435761) % 1_000_003); big.add(v); all.push(v); }
    all.sort((a, b) => a - b);
    expect(big.approximate).toBe(true);
    expect(big.count).toBe(all.length);
    for (const q of [0.5, 0.9, 0.99]) {
      const want = all[Math.floor(q * all.length)];
      expect(Math.abs(big.quantile(q) - want) / want).toBeLessThan(1 / 256);
    }
    expect(new QuantileSketch().quantile(0.5)).toBe(0);
  });
});
