// The body of one pCPU thread in the threaded engine (workers/pcpu.worker.ts only forwards here).
// Hot path: Pcpu.step plus lax sync over shared words. The loop never yields to its event loop while it
// runs: stop and pause are shared words it reads at every burst boundary (one load each). Only while
// parked (CTL_PAUSE) does it turn its event loop, and that is when comlink requests (the freeze frame)
// are served.
import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MessagePort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import * as C from '../../shared/machine.js';
import { PC_CLOCK_F64, PC_PARKED, PC_PENDING, PC_STARTED, PC_STATE, PC_SYNC_NEED_F64, PC_SYNC_WAITING, PEND_SYNC, PS_RUNNING, SW_ASLEEP, SW_NONE, SW_WOKEN } from '../../shared/pcpu.js';
import { Machine, type MachineBuffers } from '../machine.js';
import { Pcpu, STEP_IDLE, STEP_STOPPED, type PcpuParams } from '../hv/pcpu-loop.js';
import { RingWaitForConsumer } from '../trace/ring.js';
import { pcpuCoreFrame, type CoreFrame } from './freeze.js';

export interface PcpuTask {
  buffers: MachineBuffers;
  id: number;
  params: PcpuParams;
  slackCycles: number;
  burst: number;
  port: MessagePort;
  /** Testing aid (--inject-worker-fault): this pCPU's thread throws after its first burst. */
  injectFault: boolean;
}

/**
 * Control API exposed over comlink, answered only while the pCPU is parked (CTL_PAUSE set, PC_PARKED
 * published): the state only this thread holds, taken between two bursts.
 */
export interface PcpuControl {
  frame(): CoreFrame;
}

const SPIN = 2000;
/** While parked: how often the thread looks at the pause and stop words again (its event loop runs between). */
const PARKED_POLL_MS = 1;
/**
 * Longest lax-sync wait before the waiter looks again by itself. Wake-ups are targeted (syncWake), so
 * this is only a safety net; it is long enough that 64 waiting threads on 2 cores do not spend the
 * cores waking up to find nothing changed.
 */
const SYNC_WAIT_MS = 5;

export async function pcpuThread(task: PcpuTask): Promise<void> {
  const m = new Machine(task.buffers);
  const ctl = m.ctl;
  const stopped = (): boolean => Atomics.load(ctl, C.CTL_STOP) !== 0;
  const p = new Pcpu(m, task.id, task.params, new RingWaitForConsumer(m.ring32, m.ringBase(task.id), stopped));
  // Spinning only pays while threads <= cores (../shared/reference/toolchain.md §5e).
  const spin = m.npcpus <= availableParallelism() ? SPIN : 0;
  const control: PcpuControl = { frame: () => pcpuCoreFrame(p) };
  Comlink.expose(control, task.port as unknown as Comlink.Endpoint);
  // The start barrier (CTL_START_PENDING): every pCPU thread ready and every agent's setup returned.
  if (Atomics.sub(ctl, C.CTL_START_PENDING, 1) === 1) Atomics.notify(ctl, C.CTL_START_PENDING);
  for (let v; (v = Atomics.load(ctl, C.CTL_START_PENDING)) !== 0 && !stopped();) Atomics.wait(ctl, C.CTL_START_PENDING, v, 5);
  Atomics.store(m.pc32, p.base + PC_STARTED, 1);
  // Lax sync keeps a bound: this pCPU may run up to `horizon` (the slowest running clock it last read, plus
  // the slack) without reading the other pCPUs' clocks, which live on lines their owners write at every
  // burst. Running clocks only move forward, so the bound is safe, except that a pCPU leaving idle comes back
  // with the clock it had then: it bumps CTL_SYNC_EPOCH and every pCPU reads the clocks again.
  const pc32 = m.pc32, slack = task.slackCycles, fenceIdx = p.base + PC_SYNC_WAITING;
  let horizon = -Infinity, epoch = Atomics.load(ctl, C.CTL_SYNC_EPOCH), wasIdle = false;
  try {
    for (;;) {
      const before = p.core.clock;
      const r = p.step(task.burst);
      if (r === STEP_STOPPED) break;
      if (task.injectFault) throw new Error(`injected fault on pCPU ${task.id} (--inject-worker-fault)`);
      // A fence (an RMW of 0 on a word of our own) orders our clock, published by step as a plain store,
      // before our read of the waiter count; the waiters' side is in laxSyncWait.
      Atomics.add(pc32, fenceIdx, 0);
      const waiters = Atomics.load(ctl, C.CTL_SYNC_WAITERS);
      if (r === STEP_IDLE) {
        wasIdle = true;
        // Leaving the running set can raise the slowest clock. Then follow the others' time while idle,
        // and sleep until kicked (bounded, so STOP is seen).
        const min = minRunningClock(m, task.id);
        if (waiters !== 0) syncWake(m, min);
        if (min !== Infinity) p.idleUntil(min);
        Atomics.wait(pc32, p.base + PC_PENDING, 0, 2);
      } else {
        if (wasIdle) { wasIdle = false; Atomics.add(ctl, C.CTL_SYNC_EPOCH, 1); }
        const clock = p.core.clock, ep = Atomics.load(ctl, C.CTL_SYNC_EPOCH);
        if (clock > horizon || waiters !== 0 || ep !== epoch) {
          epoch = ep;
          const min = Math.min(clock, minRunningClock(m, task.id));
          // Only a pCPU that was the slowest before its burst can have raised the slowest clock.
          if (waiters !== 0 && before <= min) syncWake(m, min);
          horizon = min + slack;
          if (clock > horizon) {
            horizon = laxSyncWait(m, p, clock - slack, spin) + slack;
          }
        }
      }
      if (Atomics.load(ctl, C.CTL_PAUSE) !== 0) {
        // Park between two bursts: the event loop turns (comlink is served) until the pause or the run ends.
        Atomics.store(pc32, p.base + PC_PARKED, 1);
        Atomics.notify(pc32, p.base + PC_PARKED);
        while (Atomics.load(ctl, C.CTL_PAUSE) !== 0 && !stopped()) await sleep(PARKED_POLL_MS);
        Atomics.store(pc32, p.base + PC_PARKED, 0);
        horizon = -Infinity; // the others may have moved while this thread was parked
      }
    }
  } finally {
    p.stop();
    task.port.close();
  }
}

/**
 * Slowest clock among the pCPUs other than `self` that have work (idle and stopped pCPUs hold nobody back).
 * Plain reads, like the clocks themselves: a state or clock read a moment late only makes a pCPU wait or go
 * on a moment late, and this runs over every pCPU (an Atomics.load is a builtin call in Node 20, not
 * inlined: at 64 pCPUs the scans were a fifth of the run).
 */
export function minRunningClock(m: Machine, self = -1): number {
  let min = Infinity;
  const pc32 = m.pc32;
  for (let i = 0; i < m.npcpus; i++) {
    const b = m.pcpuBase(i);
    if (i === self || pc32[b + PC_STATE] !== PS_RUNNING) continue;
    const t = m.pcF64[(b + PC_CLOCK_F64) >> 1];
    if (t < min) min = t;
  }
  return min;
}

/**
 * Wait until the slowest other running pCPU reaches `need` (this pCPU's clock less the slack); returns the
 * slowest clock it saw last, which may still be short of `need` when a kick, an interrupt or STOP ended the
 * wait (the caller then steps once to serve it and looks again). Spins briefly, then publishes what it waits
 * for (PC_SYNC_NEED_F64, PC_SYNC_WAITING = SW_ASLEEP, CTL_SYNC_WAITERS) and sleeps on its own PC_PENDING.
 * Dekker order with syncWake: our RMW on CTL_SYNC_WAITERS comes before our clock reads, theirs (the fence)
 * after their clock store, so either we see the clock that meets our need or the waker sees us.
 */
function laxSyncWait(m: Machine, p: Pcpu, need: number, spin: number): number {
  const ctl = m.ctl, pc32 = m.pc32, self = p.id;
  let min = minRunningClock(m, self);
  for (let i = 0; i < spin && min < need; i++) min = minRunningClock(m, self);
  if (min >= need) return min;
  const pend = p.base + PC_PENDING, wi = p.base + PC_SYNC_WAITING;
  m.pcF64[(p.base + PC_SYNC_NEED_F64) >> 1] = need;
  Atomics.store(pc32, wi, SW_ASLEEP);
  Atomics.add(ctl, C.CTL_SYNC_WAITERS, 1);
  for (;;) {
    min = minRunningClock(m, self);
    // A pause ends the wait too: the pCPU it waits for may be parked already.
    if (min >= need || Atomics.load(ctl, C.CTL_STOP) !== 0 || Atomics.load(ctl, C.CTL_PAUSE) !== 0) break;
    const v = Atomics.load(pc32, pend);
    if (v === PEND_SYNC) {
      // A waker met our need, and still the slowest clock is short of it: a pCPU left idle with an older
      // clock. Take the bit and wait on.
      Atomics.and(pc32, pend, ~PEND_SYNC);
      Atomics.store(pc32, wi, SW_ASLEEP);
      continue;
    }
    if (v !== 0) break; // a kick or an interrupt: the guest loop serves it
    Atomics.wait(pc32, pend, 0, SYNC_WAIT_MS);
  }
  Atomics.sub(ctl, C.CTL_SYNC_WAITERS, 1);
  if (Atomics.exchange(pc32, wi, SW_NONE) === SW_WOKEN) {
    // A waker claimed us: its PEND_SYNC is set or about to be. Take it here, so it never reaches the guest
    // loop (where any pending bit ends a burst).
    for (let v; ((v = Atomics.load(pc32, pend)) & PEND_SYNC) === 0 && Atomics.load(ctl, C.CTL_STOP) === 0;) {
      Atomics.wait(pc32, pend, v, 1);
    }
    Atomics.and(pc32, pend, ~PEND_SYNC);
  }
  return min;
}

/**
 * After this pCPU may have raised the slowest running clock to `min` (its clock is already published and
 * fenced): wake the lax-sync waiters whose need is now met, and only those, each once (the compareExchange
 * claims it). One notify per waiter that can go on, instead of waking every waiter to find most still too
 * far ahead: with 64 pCPU threads on 2 cores those wasted wake-ups were most of the run.
 */
function syncWake(m: Machine, min: number): void {
  const pc32 = m.pc32;
  for (let i = 0; i < m.npcpus; i++) {
    const b = m.pcpuBase(i);
    if (pc32[b + PC_SYNC_WAITING] === SW_ASLEEP && m.pcF64[(b + PC_SYNC_NEED_F64) >> 1] <= min &&
      Atomics.compareExchange(pc32, b + PC_SYNC_WAITING, SW_ASLEEP, SW_WOKEN) === SW_ASLEEP) {
      Atomics.or(pc32, b + PC_PENDING, PEND_SYNC);
      Atomics.notify(pc32, b + PC_PENDING);
    }
  }
}
