// Event rings: one single-producer (the pCPU) single-consumer (the main thread) ring per pCPU of
// fixed 40-byte records. Counters only grow; slot = count & (RING_RECORDS - 1).
// The producer writes the record, then publishes with Atomics.store(HEAD); the consumer reads HEAD
// with Atomics.load, copies the records, then Atomics.store(TAIL). That order is what makes a
// record visible only when complete.
import { assertF64Aligned, assertLayout } from './layout.js';

export const RING_RECORDS = 4096;
/** Ten words: eight fields and a pad, so every record's time stays Float64-aligned. */
export const RING_RECORD_WORDS = 10;
export const RING_HDR_WORDS = 8;
export const RING_STRIDE_WORDS = RING_HDR_WORDS + RING_RECORDS * RING_RECORD_WORDS;

/** Records published by the producer (monotonic). */
export const RING_HEAD = 0;
/** Records consumed (monotonic). The producer waits on it when the ring is full. */
export const RING_TAIL = 1;
/** 1 while the producer is blocked waiting for room. */
export const RING_PRODUCER_WAITING = 2;
assertLayout('ring header', RING_PRODUCER_WAITING, RING_HDR_WORDS);

// Record fields (word offsets inside a record)
/** Simulated time in cycles (Float64 over words 0..1). */
export const REC_TIME_F64 = 0;
/** EV_* kind. */
export const REC_KIND = 2;
/** Domain index, -1 for hypervisor-only events. */
export const REC_DOMAIN = 3;
/** vCPU index within the domain, -1 for none. */
export const REC_VCPU = 4;
export const REC_A = 5;
export const REC_B = 6;
export const REC_C = 7;
/**
 * Guest pc of the vCPU loaded on the pCPU when the event was emitted (the current instruction's pc during
 * a passed-through APIC write), -1 when none is loaded or the event is emitted for another vCPU. Events
 * that name another party's pc say so in trace/events.ts (EV_ICR_WINDOW).
 */
export const REC_PC = 8;
/** Unused; keeps the record size even. */
export const REC_PAD = 9;
assertLayout('ring record', REC_PAD, RING_RECORD_WORDS);
assertF64Aligned('ring record size', RING_RECORD_WORDS);
assertF64Aligned('ring record time', REC_TIME_F64);
assertF64Aligned('ring stride', RING_STRIDE_WORDS);
assertF64Aligned('ring header', RING_HDR_WORDS);
