// `npm run profile` (node --cpu-prof): one profile per thread, the threaded engine's pCPU workers included
// (they inherit the process's execArgv; a worker given an execArgv of its own would not be profiled).
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, ROOT } from '../helpers/cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'vcpulab-prof-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function profile(dir: string, ...args: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, BIN, 'sim', '--no-progress', '--max-instructions', '200000', ...args],
      { cwd: ROOT, timeout: 120_000 }, (err) => {
        if (err !== null) reject(err);
        else resolve(readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')));
      });
  });
}

/** Function names sampled in a profile. */
function functions(file: string): Set<string> {
  const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: { callFrame: { functionName: string } }[] };
  return new Set(p.nodes.map((n) => n.callFrame.functionName));
}

describe('npm run profile', () => {
  it('threaded: a profile for the main thread and one per pCPU thread, each pCPU profile inside pcpuThread', async () => {
    const dir = join(tmp, 'threaded');
    const files = await profile(dir, '--engine', 'threaded', '--pcpus', '2');
    expect(files).toHaveLength(3);
    const inPcpu = files.filter((f) => functions(join(dir, f)).has('pcpuThread'));
    expect(inPcpu).toHaveLength(2);
  });

  it('serial: one profile, the main thread, which runs every pCPU (control)', async () => {
    const dir = join(tmp, 'serial');
    const files = await profile(dir, '--engine', 'serial', '--pcpus', '2');
    expect(files).toHaveLength(1);
    expect(functions(join(dir, files[0])).has('runSerial')).toBe(true);
  });
});
