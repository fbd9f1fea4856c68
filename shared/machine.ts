// The machine control block: a handful of words every thread reads. One per machine.
// Owner: the main thread writes STOP/PAUSE; pCPUs write the rest. All accesses use Atomics.
import { assertLayout } from './layout.js';

/** 1 when the run must end (limit, Ctrl-C, abort, all domains done). pCPUs poll it between bursts. */
export const CTL_STOP = 0;
/** 1 while the main thread asks every pCPU to park at its next burst boundary (threaded: --freeze-on). */
export const CTL_PAUSE = 1;
// Words 2 and 3 are unused.
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
/** 1 once the hypervisor panicked (hv/nmi.ts): its crash NMIs stop the other pCPUs (Xen's nmi_callback). Atomics. */
export const CTL_HOST_PANIC = 13;
// Words 14..31 are unused: the lax-sync words below sit on a 64-byte line of their own, so their changes
// do not invalidate the line with CTL_STOP that every pCPU reads at every step.
/**
 * Threaded engine, lax sync: number of pCPUs asleep waiting for the slowest clock (PC_SYNC_WAITING set).
 * Every pCPU reads it after each burst, behind a fence on its own block (engine/pcpu-thread.ts), and
 * looks for waiters to wake only when it is not 0. Atomics.
 */
export const CTL_SYNC_WAITERS = 32;
/**
 * Threaded engine, lax sync: bumped (Atomics.add) by a pCPU that starts running again after being idle.
 * Its clock may be below the slowest clock the others last read and cached, so they read the clocks
 * again when this changes instead of when their cached bound runs out.
 */
export const CTL_SYNC_EPOCH = 33;
export const CTL_WORDS = 48;
assertLayout('machine', CTL_SYNC_EPOCH, CTL_WORDS);

/** Upper bound on pCPUs: one xAPIC physical ID byte, less the broadcast ID 0xFF. */
export const MAX_PCPUS = 255;
