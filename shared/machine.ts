// The machine control block: a handful of words every thread reads. One per machine.
// Owner: the main thread writes STOP/PAUSE; pCPUs write the rest. All accesses use Atomics.
import { assertLayout } from './layout.js';

/** 1 when the run must end (limit, Ctrl-C, abort, all domains done). pCPUs poll it between bursts. */
export const CTL_STOP = 0;
/** 1 while the main thread asks every pCPU to park (comlink `pause` sets it on one pCPU only). */
export const CTL_PAUSE = 1;
/** Bumped by a pCPU after a burst when it may have been the slowest; lax-sync waiters wait on it. */
export const CTL_SYNC_EPOCH = 2;
/** Number of pCPUs blocked in Atomics.wait on CTL_SYNC_EPOCH (so the laggard notifies only when needed). */
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
 * Agents whose setup has not returned yet (threaded engine). Domains with an agent start paused, as a
 * tool attaches to a domain created paused: pCPU threads start stepping only when this is 0. Atomics.
 */
export const CTL_AGENTS_PENDING = 12;
export const CTL_WORDS = 16;
assertLayout('machine', CTL_AGENTS_PENDING, CTL_WORDS);

/** Upper bound on pCPUs: one xAPIC physical ID byte, less the broadcast ID 0xFF. */
export const MAX_PCPUS = 255;
