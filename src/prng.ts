// The seeded random stream every strategy (and each pCPU's scheduler) draws from, and the child-seed
// derivation that keeps those streams independent (STYLE.md §10).

/** SplitMix32-style generator: tiny, fast, and good enough for schedule choices. */
export class Prng {
  private s: number;
  constructor(seed: number) { this.s = seed | 0; }
  nextU32(): number { return this.nextI32() >>> 0; }
  /** The same 32 bits as nextU32, as an int32. */
  nextI32(): number {
    let z = (this.s = (this.s + 0x9e3779b9) | 0);
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return z ^ (z >>> 16);
  }
  /**
   * nextU32() % n, for n >= 1. For n < 2^15 it is computed as ((hi % n) * 2^16 + lo) % n over the two
   * 16-bit halves, which stays in int32 arithmetic: a uint32 at or above 2^31 would make V8 take a
   * floating-point remainder (a runtime call), and the serial engine draws twice per step.
   */
  below(n: number): number {
    if (n >= 0x8000) return this.nextU32() % n;
    const z = this.nextI32();
    return ((((z >>> 16) % n) << 16) + (z & 0xffff)) % n;
  }
}

/** Derive a child seed for a named component (STYLE.md §10): new randomness elsewhere won't shift it. */
export function childSeed(seed: number, component: string): number {
  let h = (seed ^ 0x811c9dc5) >>> 0;
  for (let i = 0; i < component.length; i++) h = Math.imul(h ^ component.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}
