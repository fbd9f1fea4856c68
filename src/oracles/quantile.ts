// Percentiles of a stream in bounded memory, for the oracles' latency metrics. Up to EXACT_MAX samples are
// kept as they are, so short runs (every README table, every test) get exact percentiles. Past that the
// samples fold into a log-linear histogram (the layout HdrHistogram uses): values below 2^SUB_BITS have a
// bucket each, above that every power of two is split into 2^SUB_BITS equal buckets, so a percentile read
// from it is within 1/2^SUB_BITS (0.4%) of the true one. A fixed histogram rather than a reservoir: no random
// choice, so a serial run's metrics stay a function of its seed, and the tail (p99) is not sampled away.

/** Samples kept exactly before the histogram takes over. */
export const QUANTILE_EXACT_MAX = 1 << 16;
const SUB_BITS = 8;
const SUB = 1 << SUB_BITS;
/** Enough buckets for any finite double below 2^64 (cycle counts stay far below that). */
const BUCKETS = SUB + (64 - SUB_BITS) * SUB;

function bucketOf(v: number): number {
  if (v < SUB) return Math.floor(v);
  const e = Math.min(Math.floor(Math.log2(v)) - SUB_BITS, 64 - SUB_BITS - 1);
  const sub = Math.min(Math.floor(v / 2 ** e), 2 * SUB - 1);
  return SUB + e * SUB + (sub - SUB);
}

/** The middle of a bucket's range. */
function bucketValue(i: number): number {
  if (i < SUB) return i + 0.5;
  const e = Math.floor((i - SUB) / SUB), sub = SUB + ((i - SUB) % SUB);
  return (sub + 0.5) * 2 ** e;
}

export class QuantileSketch {
  private exact: number[] = [];
  private hist: Float64Array | null = null;
  private n = 0;

  add(v: number): void {
    this.n++;
    if (this.hist === null) {
      this.exact.push(v);
      if (this.exact.length <= QUANTILE_EXACT_MAX) return;
      this.hist = new Float64Array(BUCKETS);
      for (const x of this.exact) this.hist[bucketOf(x)]++;
      this.exact = [];
      return;
    }
    this.hist[bucketOf(v)]++;
  }

  get count(): number { return this.n; }
  /** True once the samples are only in the histogram (percentiles within 0.4%). */
  get approximate(): boolean { return this.hist !== null; }

  /** The sample at rank floor(q * count) in ascending order (0 when there are none). */
  quantile(q: number): number {
    if (this.n === 0) return 0;
    const rank = Math.min(this.n - 1, Math.floor(q * this.n));
    if (this.hist === null) {
      this.exact.sort((x, y) => x - y);
      return this.exact[rank];
    }
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.hist[i];
      if (seen > rank) return bucketValue(i);
    }
    return bucketValue(BUCKETS - 1);
  }
}
