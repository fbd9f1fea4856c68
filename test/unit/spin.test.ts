// AdaptiveSpin (src/spin.ts): how the spin before a futex wait follows the hand-offs it sees.
import { describe, expect, it } from 'vitest';
import { AdaptiveSpin } from '../../src/spin.js';

describe('AdaptiveSpin', () => {
  it('doubles on a hit, up to its maximum', () => {
    const s = new AdaptiveSpin(5, 100, 20);
    s.hit();
    expect(s.spinUs).toBe(40);
    s.hit(); s.hit();
    expect(s.spinUs).toBe(100);
  });

  it('doubles when the answer came just after the spin gave up, halves when it came much later', () => {
    const s = new AdaptiveSpin(5, 500, 40);
    s.waited(4 * 40, true); // within growFactor spins: the spin was a little short
    expect(s.spinUs).toBe(80);
    s.waited(4 * 80 + 1, true); // long work on the other side, or it was not running
    expect(s.spinUs).toBe(40);
  });

  it('halves after a timeout however short, down to its minimum', () => {
    const s = new AdaptiveSpin(5, 500, 16);
    s.waited(1, false);
    expect(s.spinUs).toBe(8);
    s.waited(1, false); s.waited(1, false);
    expect(s.spinUs).toBe(5);
  });

  it('spins until its deadline, which follows the current spin', () => {
    const s = new AdaptiveSpin(5, 500, 200);
    const t = performance.now();
    const d = s.deadline();
    expect(d - t).toBeGreaterThanOrEqual(0.2 - 0.01);
    expect(d - t).toBeLessThan(50); // 0.2 ms plus however long this thread was descheduled
  });
});
