// How many worker threads the threaded engine starts for a machine (engine/threaded.ts threadsFor).
import { describe, expect, it } from 'vitest';
import { SOLO_PCPUS_MAX, threadsFor } from '../../src/engine/threaded.js';

describe('threadsFor', () => {
  it('gives each pCPU a thread of its own up to SOLO_PCPUS_MAX, whatever the cores', () => {
    for (const cores of [1, 2, 16]) {
      expect(threadsFor(1, cores)).toBe(1);
      expect(threadsFor(SOLO_PCPUS_MAX, cores)).toBe(SOLO_PCPUS_MAX);
    }
  });

  it('beyond it, two threads per core and at least 8', () => {
    expect(threadsFor(SOLO_PCPUS_MAX + 1, 2)).toBe(8);
    expect(threadsFor(255, 2)).toBe(8);
    expect(threadsFor(255, 16)).toBe(32);
    expect(threadsFor(255, 200)).toBe(255); // never more threads than pCPUs
  });
});
