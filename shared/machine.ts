// The machine control block: a handful of words every thread reads. One per machine.
// Owner: the main thread writes STOP/PAUSE; pCPUs write the rest. All accesses use Atomics.
import { assertLayout } from './layout.js';

/** 1 when the run must end (limit, Ctrl-C, abort, all domains done). pCPUs poll it between bursts. */
export const CTL_STOP = 0;
/** 1 while the main thread asks every pCPU to park (comlink `pause` sets it on one pCPU only). */
export const CTL_PAUSE = 1;
// Word 2 is unused.
/**
 * Number of pCPUs waiting in lax sync (PC_SYNC_WAITING set), so a pCPU that moved the slowest clock looks
 * for waiters to wake only when there are some. Its read is an Atomics.add of 0: a full fence after the
 * reader's own clock store (engine/pcpu-thread.ts).
 */
export const CTL_SYNC_WAITERS = 3;
/** Domains whose state is still `running`. 0 ends the run. */
export const CTL_LIVE_DOMAINS = 4;
/** Set by a pCPU whose code threw; the main thread turns it into outcome "aborted". */
export const CTL_ABORT = 5;
/** Number of pCPUs, vCPUs and domains in this machine (written once at build time). */
export const CTL_NPCPUS = 6;
export const CTL_NVCPUS = 7;
export const CTL_NDOMAINS = 8;
/** vCPUs that stopped at --max-instructions. */
export const CTL_LIMITED_VCPUS = 9;
/** Guest asserts (magic 3) seen so far; makes the exit code 1. */
export const CTL_GUEST_ASSERTS = 10;
/** Monotonic counter stamping each vCPU as it joins a runqueue (FIFO order across threads). Atomics.add. */
export const CTL_ENQUEUE_SEQ = 11;
/**
 * Threaded engine: threads the guests still wait for before the first instruction, agents plus pCPU
 * threads. An agent counts until its setup has returned (domains with an agent start paused, as a tool
 * attaches to a domain created paused); a pCPU thread until its loop is ready, so no pCPU runs ahead while
 * others are still loading, sharing the cores with them (64 threads on 2 cores take seconds to start).
 * Each decrements it once; pCPU threads start stepping when it is 0. Atomics.
 */
export const CTL_START_PENDING = 12;
export const CTL_WORDS = 16;
assertLayout('machine', CTL_START_PENDING, CTL_WORDS);

/** Upper bound on pCPUs: one xAPIC physical ID byte, less the broadcast ID 0xFF. */
export const MAX_PCPUS = 255;
