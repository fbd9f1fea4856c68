// Per-pCPU runqueue for the foundation layer: the vCPUs placed on this pCPU, time-sliced round
// robin. (The credit2-like scheduler with migration replaces the policy, not this interface.)
import { RS_RUNNABLE, RS_RUNNING, VC_RUNSTATE } from '../../../shared/vcpu.js';

export class RunQueue {
  /** Global vCPU indices placed on this pCPU, in placement order. */
  readonly vcpus: number[] = [];
  private pos = 0;

  add(v: number): void { this.vcpus.push(v); }

  /**
   * Next vCPU to run after `cur` (-1 = none loaded): the first runnable one after cur in round-robin
   * order; cur itself if it is the only runnable one; -1 when nothing can run.
   */
  pickNext(vc32: Int32Array, stride: number, cur: number): number {
    const n = this.vcpus.length;
    for (let k = 1; k <= n; k++) {
      const v = this.vcpus[(this.pos + k) % n];
      const rs = Atomics.load(vc32, v * stride + VC_RUNSTATE);
      if (rs === RS_RUNNABLE || (v === cur && rs === RS_RUNNING)) {
        this.pos = (this.pos + k) % n;
        return v;
      }
    }
    return -1;
  }
}
