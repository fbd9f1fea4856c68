// A seeded fuzz of the inputs a user hands vcpulab: scenario files, guest programs, schedule and trace files,
// mutated from good ones (bytes flipped, lines dropped or duplicated, values swapped for strange ones). Every
// case must end as the CLI promises: exit 0, 1 or 2; for 2, exactly one line on stderr; never "internal
// error" or a stack trace. Runs in-process through the CLI's own entry point (main), so a few hundred cases
// stay within seconds.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as MainModule from '../../src/cli/main.js';
import { ROOT } from '../helpers/cli.js';

const { main } = (await import(new URL('../../dist/src/cli/main.js', import.meta.url).href)) as typeof MainModule;

/** Run `vcpulab ARGS` in this process, capturing what it prints. */
async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const ow = process.stdout.write.bind(process.stdout), ew = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string | Uint8Array) => { out += String(s); return true; }) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => { err += String(s); return true; }) as typeof process.stderr.write;
  try {
    return { code: await main(args), out, err };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

/** Seeded PRNG (mulberry32): the same cases every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STRANGE = ['0', '-1', '1e300', '""', '"x"', '[]', '{}', 'true', '0xffffffff', '99999999999', '"../../etc"', '"""a\nb"""', 'nan', '3.5'];

/** One mutation of a text file: flip a byte, drop or repeat a line, or replace a value. */
function mutateText(src: string, r: () => number): string {
  const lines = src.split('\n');
  const i = Math.floor(r() * lines.length);
  switch (Math.floor(r() * 5)) {
    case 0: { // flip one printable byte
      const b = Buffer.from(src);
      const k = Math.floor(r() * b.length);
      b[k] = 32 + Math.floor(r() * 95);
      return b.toString();
    }
    case 1: lines.splice(i, 1); return lines.join('\n');
    case 2: lines.splice(i, 0, lines[i]); return lines.join('\n');
    case 3: {
      const m = /^(\s*[A-Za-z_]+\s*=\s*).*$/.exec(lines[i]);
      if (m !== null) lines[i] = m[1] + STRANGE[Math.floor(r() * STRANGE.length)];
      else lines[i] = lines[i].split('').reverse().join('');
      return lines.join('\n');
    }
    default: return src.slice(0, Math.floor(r() * src.length)); // cut short
  }
}

function expectPromise(label: string, res: { code: number; err: string }): void {
  expect([0, 1, 2], `${label}: exit ${res.code}\n${res.err}`).toContain(res.code);
  expect(res.err, label).not.toMatch(/internal error|\n\s+at |this is a bug/);
  if (res.code === 2) expect(res.err.trimEnd().split('\n'), `${label}: ${res.err}`).toHaveLength(1);
}

const SCENARIO = `description = "fuzz"
[machine]
pcpus = 2
apic_mode = "xapic"
[[domain]]
name = "g"
vcpus = 2
memory_kb = 64
program = "prog.s"
cpus = "0-1"
ipi_path = "vlapic"
`;
const PROGRAM = readFileSync(join(ROOT, 'src', 'scenario', 'builtin', 'counter.s'), 'utf8').replace(/\.equ ITERS, \d+/, '.equ ITERS, 200');

describe('fuzzed inputs end as the CLI promises: exit 0, 1 or 2, one line for bad input, never an internal error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpulab-fuzz-'));
  const run = (args: string[]) => cli(['sim', '--engine', 'serial', '--max-instructions', '20000', '--max-ms', '2000', '--json', '--no-progress', ...args]);

  it('scenario files and programs (160 cases)', async () => {
    const r = rng(0x5eed);
    const codes = [0, 0, 0];
    for (let k = 0; k < 160; k++) {
      const toml = k % 2 === 0 ? mutateText(SCENARIO, r) : SCENARIO;
      const prog = k % 2 === 1 ? mutateText(PROGRAM, r) : PROGRAM;
      const d = join(dir, `s${k}`);
      writeFileSync(`${d}.toml`, toml.replace('program = "prog.s"', `program = "s${k}.s"`));
      writeFileSync(`${d}.s`, prog);
      const res = await run(['--scenario', `${d}.toml`]);
      expectPromise(`case ${k}`, res);
      codes[res.code]++;
    }
    // The mutations reach both sides: many cases still run, many are refused.
    expect(codes[0], JSON.stringify(codes)).toBeGreaterThan(20);
    expect(codes[2], JSON.stringify(codes)).toBeGreaterThan(20);
  }, 120_000);

  it('schedule files (80 cases)', async () => {
    const good = join(dir, 'good.sched');
    expect((await run(['--scenario', 'counter', '--max-instructions', '2000', '--schedule-out', good])).code).toBe(0);
    const bytes = readFileSync(good);
    const r = rng(0xbad5);
    for (let k = 0; k < 80; k++) {
      const b = Buffer.from(bytes);
      const flips = 1 + Math.floor(r() * 3);
      for (let f = 0; f < flips; f++) b[Math.floor(r() * b.length)] ^= 1 << Math.floor(r() * 8);
      const f = join(dir, `m${k}.sched`);
      writeFileSync(f, k % 10 === 9 ? b.subarray(0, Math.floor(r() * b.length)) : b);
      const res = await cli(['replay', f, '--json']);
      expectPromise(`schedule case ${k}`, res);
      expect(res.code, `schedule case ${k}: a damaged schedule must never replay as if it were fine`).not.toBe(0);
    }
  }, 120_000);

  it('trace files (60 cases), summary and Perfetto export, within a memory bound', async () => {
    const good = join(dir, 'good.trace');
    expect((await run(['--scenario', 'counter', '--max-instructions', '5000', '--trace', good])).code).toBe(0);
    const bytes = readFileSync(good);
    const r = rng(0x7ace);
    for (let k = 0; k < 60; k++) {
      const b = Buffer.from(bytes);
      for (let f = 0; f < 1 + Math.floor(r() * 4); f++) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
      const f = join(dir, `t${k}.trace`);
      writeFileSync(f, k % 6 === 5 ? b.subarray(0, Math.floor(r() * b.length)) : b);
      expectPromise(`trace case ${k}`, await cli(['trace', f]));
      expectPromise(`trace case ${k} --perfetto`, await cli(['trace', f, '--perfetto', join(dir, `t${k}.json`)]));
    }
    // Everything above ran in this process: its memory stays far below the machine's.
    expect(process.memoryUsage().rss).toBeLessThan(2 * 1024 ** 3);
  }, 120_000);
});
