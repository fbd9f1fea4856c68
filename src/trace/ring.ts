// Producer and consumer sides of the per-pCPU event rings (layout: shared/ring.ts).
import {
  REC_A, REC_B, REC_C, REC_DOMAIN, REC_KIND, REC_PC, REC_TIME_F64, REC_VCPU, RING_HDR_WORDS, RING_HEAD, RING_PRODUCER_WAITING,
  RING_RECORD_WORDS, RING_RECORDS, RING_TAIL,
} from '../../shared/ring.js';

/** What a producer does when its ring is full. */
export interface RingFullHandler {
  /** Make room (serial: drain now; threaded: wait for the consumer). */
  ringFull(pcpu: number): void;
}

/** Producer side, owned by one pCPU. No allocation per event. */
export class RingWriter {
  private head: number;
  constructor(
    private readonly r32: Int32Array,
    private readonly rF64: Float64Array,
    private readonly base: number,
    readonly pcpu: number,
    public full: RingFullHandler,
  ) {
    this.head = Atomics.load(r32, base + RING_HEAD);
  }

  /** One record; `pc` is the guest pc it is attributed to (REC_PC), -1 for none. */
  push(time: number, kind: number, dom: number, vcpu: number, a: number, b: number, c: number, pc: number): void {
    const r32 = this.r32, base = this.base;
    while (this.head - Atomics.load(r32, base + RING_TAIL) >= RING_RECORDS) this.full.ringFull(this.pcpu);
    const rec = base + RING_HDR_WORDS + (this.head & (RING_RECORDS - 1)) * RING_RECORD_WORDS;
    this.rF64[(rec + REC_TIME_F64) >> 1] = time;
    r32[rec + REC_KIND] = kind;
    r32[rec + REC_DOMAIN] = dom;
    r32[rec + REC_VCPU] = vcpu;
    r32[rec + REC_A] = a;
    r32[rec + REC_B] = b;
    r32[rec + REC_C] = c;
    r32[rec + REC_PC] = pc;
    this.head++;
    // Publish after the record is complete (see shared/ring.ts).
    Atomics.store(r32, base + RING_HEAD, this.head);
  }
}

/** Threaded producers block here until the main thread drains (bounded waits so STOP is seen). */
export class RingWaitForConsumer implements RingFullHandler {
  constructor(private readonly r32: Int32Array, private readonly base: number, private readonly stop: () => boolean) {}
  ringFull(): void {
    const tail = Atomics.load(this.r32, this.base + RING_TAIL);
    Atomics.store(this.r32, this.base + RING_PRODUCER_WAITING, 1);
    Atomics.wait(this.r32, this.base + RING_TAIL, tail, 5);
    Atomics.store(this.r32, this.base + RING_PRODUCER_WAITING, 0);
    if (this.stop()) {
      // The consumer is gone: drop the oldest record rather than hang.
      Atomics.add(this.r32, this.base + RING_TAIL, 1);
    }
  }
}

export interface EventRecord {
  pcpu: number;
  time: number;
  kind: number;
  domain: number;
  vcpu: number;
  a: number;
  b: number;
  c: number;
  pc: number;
}

/** Consumer: hands each new record of ring `pcpu` to `sink`; returns how many. */
export function ringDrain(
  r32: Int32Array, rF64: Float64Array, base: number, pcpu: number,
  sink: (pcpu: number, time: number, kind: number, dom: number, vcpu: number, a: number, b: number, c: number, pc: number) => void,
): number {
  const head = Atomics.load(r32, base + RING_HEAD);
  let tail = Atomics.load(r32, base + RING_TAIL);
  const n = head - tail;
  while (tail !== head) {
    const rec = base + RING_HDR_WORDS + (tail & (RING_RECORDS - 1)) * RING_RECORD_WORDS;
    sink(pcpu, rF64[(rec + REC_TIME_F64) >> 1], r32[rec + REC_KIND], r32[rec + REC_DOMAIN], r32[rec + REC_VCPU],
      r32[rec + REC_A], r32[rec + REC_B], r32[rec + REC_C], r32[rec + REC_PC]);
    tail++;
  }
  Atomics.store(r32, base + RING_TAIL, tail);
  if (Atomics.load(r32, base + RING_PRODUCER_WAITING) !== 0) Atomics.notify(r32, base + RING_TAIL);
  return n;
}
