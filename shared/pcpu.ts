// pCPU blocks: one fixed-stride record per physical CPU, Int32 words with a Float64 overlay.
// Owner: the pCPU's own thread writes everything except PC_PENDING (any thread may set bits there),
// PC_SYNC_WAITING (a lax-sync waker claims a waiter there) and PC_BELL (any waker bumps it).
import { assertF64Aligned, assertLayout } from './layout.js';

export const PCPU_STRIDE_WORDS = 64;

/** PS_* below. Atomics: read by the main thread (watchdog, STALL) and by other pCPUs (lax sync). */
export const PC_STATE = 0;
/** Global index of the vCPU loaded on this pCPU, -1 when none. Atomics. */
export const PC_CURRENT = 1;
/**
 * Pending physical interrupt / kick bits (PEND_*). Any thread sets bits with Atomics.or; the pCPU
 * checks it with a plain load at every guest instruction boundary (DESIGN.md §4) and clears with Atomics.and.
 */
export const PC_PENDING = 2;
/** 1 while the pCPU is parked between two bursts in response to CTL_PAUSE (threaded; the owner writes, Atomics). */
export const PC_PARKED = 3;
/** Bursts completed; the watchdog compares successive samples. Atomics. */
export const PC_BURSTS = 4;
/** Set to 1 by the pCPU's thread when its loop starts (the watchdog does not count start-up time). */
export const PC_STARTED = 5;
/**
 * vCPU index + 1 that this pCPU is claiming (published before it re-reads the vCPU's pause count and
 * compares-and-exchanges it to RUNNING), 0 when none. Atomics. A pauser waiting for a vCPU to be off every
 * pCPU reads it too (sched.ts schedClaim / schedOnCpu).
 */
export const PC_CLAIMING = 6;
/**
 * External-interrupt exits that the LAPIC timer's tick caused (also counted in PC_EXITS): exits per IPI
 * leaves them out, since no IPI caused them. Owner only.
 */
export const PC_TIMER_EXITS = 7;
/** Number of VM exits per reason (EXIT_*), EXIT_COUNT words. Owner only; read when the run ends. */
export const PC_EXITS = 8;
export const PC_EXITS_WORDS = 24;
/** Simulated cycles of this pCPU's clock (Float64). Read by other pCPUs for lax sync: plain load. */
export const PC_CLOCK_F64 = 32;
/** Guest instructions retired on this pCPU (Float64). */
export const PC_INSNS_F64 = 34;
/** Cycles spent idle (Float64). */
export const PC_IDLE_F64 = 36;
/** vCPU context switches (Float64). */
export const PC_CTXSW_F64 = 38;
/** VM entries (Float64). */
export const PC_ENTRIES_F64 = 40;
/** Cycles spent in the hypervisor: exit handling, scheduling (Float64). */
export const PC_HV_F64 = 42;
/**
 * Set (Atomics) by whoever marks an EPT `invalidate` mask: this pCPU should look at the masks of the domain
 * it runs before its next VM entry. A hint only; the masks (shared/altp2m.ts) are the truth.
 */
export const PC_INVEPT_HINT = 44;
/** Flush IPIs this pCPU has taken (CALL_FUNCTION with no body, ept_sync_domain). Senders wait for it to move. Atomics. */
export const PC_FLUSH_ACKS = 45;
/** INVEPT single-context and all-context executed (owner only). */
export const PC_INVEPT_SINGLE = 46;
export const PC_INVEPT_ALL = 47;
/** Successful guest VMFUNCs, #VEs delivered, flush IPIs sent (owner only). */
export const PC_VMFUNCS = 48;
export const PC_VE_DELIVERED = 49;
export const PC_FLUSH_IPIS = 50;
/**
 * Threaded engine, lax sync: SW_* below. SW_ASLEEP while this pCPU's thread waits for the slowest running
 * clock to reach PC_SYNC_NEED_F64 (blocked in Atomics.wait on its own PC_PENDING). A pCPU that moves the
 * slowest clock claims each waiter whose need it met (compareExchange SW_ASLEEP -> SW_WOKEN) and only then
 * sets PEND_SYNC and notifies, so each waiter is woken once (engine/pcpu-thread.ts). Atomics.
 */
export const PC_SYNC_WAITING = 51;
/** The slowest running clock this pCPU waits for (Float64; written before PC_SYNC_WAITING is set). */
export const PC_SYNC_NEED_F64 = 52;
/**
 * Threaded engine, a thread that hosts several pCPUs (--threads): on the first pCPU of the thread, a count
 * every waker bumps before it notifies this word, so the thread can sleep on one word for all its pCPUs
 * without losing a kick that lands between its last look and its Atomics.wait. Unused elsewhere. Atomics.
 */
export const PC_BELL = 54;
/**
 * Where a waker of this pCPU rings: the pc32 word index of its thread's PC_BELL, or 0 when its thread
 * hosts only it (the waker notifies its PC_PENDING). Written before the start barrier, then read only.
 */
export const PC_BELL_AT = 55;
assertLayout('pcpu', PC_BELL_AT, PCPU_STRIDE_WORDS);
assertLayout('pcpu f64 before altp2m', PC_HV_F64 + 1, PC_INVEPT_HINT);
assertLayout('pcpu exits', PC_EXITS + PC_EXITS_WORDS - 1, PC_CLOCK_F64);
for (const [n, o] of [['clock', PC_CLOCK_F64], ['insns', PC_INSNS_F64], ['idle', PC_IDLE_F64],
  ['ctxsw', PC_CTXSW_F64], ['entries', PC_ENTRIES_F64], ['hv', PC_HV_F64], ['sync need', PC_SYNC_NEED_F64]] as const) assertF64Aligned(`pcpu ${n}`, o);

// PC_SYNC_WAITING values
export const SW_NONE = 0;   // not waiting
export const SW_ASLEEP = 1; // waiting, not yet claimed by a waker
export const SW_WOKEN = 2;  // a waker claimed it: PEND_SYNC is set, or about to be

// PC_STATE values
export const PS_RUNNING = 0;   // has a runnable vCPU or hypervisor work
export const PS_IDLE = 1;      // nothing to run; excluded from lax sync
export const PS_STOPPED = 2;   // its loop has ended
export const PS_WAIT_SIPI = 3; // INIT reset it behind the hypervisor's back: it runs nothing any more

// PC_PENDING bits
/** Control kick from the main thread: stop or pause requested; leave the guest now. */
export const PEND_KICK = 1 << 0;
/** Something arrived at this pCPU's physical LAPIC (a fixed vector, NMI, INIT or SIPI). */
export const PEND_IRQ = 1 << 1;
/**
 * Threaded engine: a lax-sync waker ended this pCPU's wait. A bit rather than a bare notify, because a
 * notify that lands between the waiter's last look at the clocks and its Atomics.wait is lost (the wait
 * compares the word). Set only by the waker that claimed the waiter (PC_SYNC_WAITING SW_WOKEN), and the
 * waiter clears it before it leaves the wait, so the guest loop never sees it.
 */
export const PEND_SYNC = 1 << 2;
