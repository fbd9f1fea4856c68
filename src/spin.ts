// How long a thread that waits for another polls before it sleeps in Atomics.wait, adapted as an adaptive
// mutex adapts its spin. On a virtual machine a futex wake of an idle core costs 20-100 µs (more than most
// hand-offs take), so a spin that just misses is the expensive case and a spin that is too long only takes
// a core from the thread being waited for. The callers keep their own polling loops (no closure on a hot
// path) and report here how each wait went.

export class AdaptiveSpin {
  private us: number;

  /** Spin bounds and start, in wall µs; `growFactor`: see waited(). */
  constructor(private readonly minUs: number, private readonly maxUs: number, startUs: number, private readonly growFactor = 4) {
    this.us = startUs;
  }

  /** The current spin (µs). */
  get spinUs(): number { return this.us; }

  /** When the spin that starts now ends (performance.now() ms). */
  deadline(): number { return performance.now() + this.us / 1000; }

  /** What was waited for came within the spin: spin longer next time (back-to-back hand-offs stay off the futex). */
  hit(): void { this.us = Math.min(this.maxUs, this.us * 2); }

  /**
   * The spin ran out, and the sleep after it ended `waitedUs` later; `got`: with what was waited for (not a
   * timeout). An answer soon after the spin gave up (within growFactor spins) means the spin was a little
   * short: double it. A much later one means the other side had long work, or was not running at all
   * (more threads than cores): halve it, so waiting does not keep a core from the thread it waits for.
   */
  waited(waitedUs: number, got: boolean): void {
    this.us = got && waitedUs <= this.growFactor * this.us ? Math.min(this.maxUs, this.us * 2) : Math.max(this.minUs, this.us / 2);
  }
}
