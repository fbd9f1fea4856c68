// Test helpers for the CLI as a user runs it: the built bin in a child process, and the shape every
// bad-input error must have (exit 2, one line on stderr, no stack trace).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'vitest';

export const ROOT = join(import.meta.dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'vcpulab.js');

export interface Run { code: number; stdout: string; stderr: string }

/** Run `vcpulab ARGS...` from the repository root. */
export function vcpulab(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: 240_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A bad-input error: exit 2, exactly one line on stderr matching `pattern`, nothing like a stack trace. */
export function expectBadInput(r: Run, pattern: RegExp): void {
  expect(r.code).toBe(2);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}
