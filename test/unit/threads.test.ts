// How many worker threads the threaded engine starts for a machine (engine/threaded.ts threadsFor).
import { describe, expect, it } from 'vitest';
import { THREADS_MIN, THREADS_PER_CORE, threadsFor } from '../../src/engine/threaded.js';

describe('threadsFor', () => {
  it('gives each pCPU a thread of its own up to THREADS_PER_CORE per core, and never fewer than THREADS_MIN', () => {
    expect(threadsFor(1, 2)).toBe(1);
    expect(threadsFor(THREADS_MIN, 1)).toBe(THREADS_MIN);
    expect(threadsFor(THREADS_PER_CORE * 16, 16)).toBe(THREADS_PER_CORE * 16);
  });

  it('beyond it, pCPUs share that many threads', () => {
    expect(THREADS_PER_CORE).toBe(4);
    expect(THREADS_MIN).toBe(8);
    expect(threadsFor(9, 2)).toBe(8);
    expect(threadsFor(254, 2)).toBe(8);
    expect(threadsFor(255, 16)).toBe(64);
    expect(threadsFor(255, 200)).toBe(255); // never more threads than pCPUs
  });
});
