// The body of one pCPU thread in the threaded engine (workers/pcpu.worker.ts only forwards here).
// Hot path: Pcpu.step plus lax sync over shared words; comlink carries control only, and the loop
// yields to the event loop every few ms so those control messages are delivered.
import { availableParallelism } from 'node:os';
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises';
import type { MessagePort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import * as C from '../../shared/machine.js';
import { PC_CLOCK_F64, PC_PARKED, PC_PENDING, PC_STARTED, PC_STATE, PC_SYNC_NEED_F64, PC_SYNC_WAITING, PS_RUNNING } from '../../shared/pcpu.js';
import { Machine, type MachineBuffers } from '../machine.js';
import { Pcpu, STEP_IDLE, STEP_STOPPED, type PcpuParams } from '../hv/pcpu-loop.js';
import { RingWaitForConsumer } from '../trace/ring.js';

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

export interface PcpuStats {
  id: number;
  clock: number;
  paused: boolean;
  syncWaits: number;
}

/** Control API exposed over comlink (never used on the hot path). */
export interface PcpuControl {
  pause(): void;
  resume(): void;
  stats(): PcpuStats;
  stop(): void;
}

const SPIN = 2000;
const YIELD_MS = 4;
/**
 * Longest lax-sync wait before the waiter looks again by itself. Wake-ups are targeted (syncWake), so
 * this is only a safety net; it is long enough that 64 waiting threads on 2 cores do not spend the
 * cores waking up to find nothing changed.
 */
const SYNC_WAIT_MS = 5;

export async function pcpuThread(task: PcpuTask): Promise<PcpuStats> {
  const m = new Machine(task.buffers);
  const ctl = m.ctl;
  const stopped = (): boolean => Atomics.load(ctl, C.CTL_STOP) !== 0;
  const p = new Pcpu(m, task.id, task.params, new RingWaitForConsumer(m.ring32, m.ringBase(task.id), stopped));
  // Spinning only pays while threads <= cores (../shared/reference/toolchain.md §5e).
  const spin = m.npcpus <= availableParallelism() ? SPIN : 0;
  let paused = false, syncWaits = 0;
  const stats = (): PcpuStats => ({ id: task.id, clock: p.core.clock, paused, syncWaits });
  const control: PcpuControl = {
    pause: () => { paused = true; kick(m, task.id); },
    resume: () => { paused = false; },
    stats,
    stop: () => { Atomics.store(ctl, C.CTL_STOP, 1); kick(m, task.id); },
  };
  Comlink.expose(control, task.port as unknown as Comlink.Endpoint);
  let lastYield = performance.now();
  // The start barrier (CTL_START_PENDING): every pCPU thread ready and every agent's setup returned.
  if (Atomics.sub(ctl, C.CTL_START_PENDING, 1) === 1) Atomics.notify(ctl, C.CTL_START_PENDING);
  for (let v; (v = Atomics.load(ctl, C.CTL_START_PENDING)) !== 0 && !stopped();) Atomics.wait(ctl, C.CTL_START_PENDING, v, 5);
  Atomics.store(m.pc32, p.base + PC_STARTED, 1);
  try {
    for (;;) {
      const before = p.core.clock;
      const wasLaggard = before <= minRunningClock(m);
      const r = p.step(task.burst);
      if (r === STEP_STOPPED) break;
      if (task.injectFault) throw new Error(`injected fault on pCPU ${task.id} (--inject-worker-fault)`);
      // Only the slowest pCPU moving on (or one leaving the running set) can raise the slowest clock.
      if (wasLaggard || r === STEP_IDLE) syncWake(m);
      if (r === STEP_IDLE) {
        // Follow the others' time while idle, then sleep until kicked (bounded, so STOP is seen).
        const min = minRunningClock(m);
        if (min !== Infinity) p.idleUntil(min);
        Atomics.wait(m.pc32, p.base + PC_PENDING, 0, 2);
      } else if (laxSyncWait(m, p, task.slackCycles, spin)) syncWaits++;
      const now = performance.now();
      if (now - lastYield > YIELD_MS) {
        await yieldToLoop();
        while ((paused || Atomics.load(ctl, C.CTL_PAUSE) !== 0) && !stopped()) {
          Atomics.store(m.pc32, p.base + PC_PARKED, 1);
          await sleep(1);
        }
        Atomics.store(m.pc32, p.base + PC_PARKED, 0);
        lastYield = performance.now();
      }
    }
  } finally {
    p.stop();
    task.port.close();
  }
  return stats();
}

function kick(m: Machine, id: number): void {
  Atomics.or(m.pc32, m.pcpuBase(id) + PC_PENDING, 1);
  Atomics.notify(m.pc32, m.pcpuBase(id) + PC_PENDING);
}

/**
 * Slowest clock among pCPUs that have work (idle and stopped pCPUs do not hold others back). Plain reads,
 * like the clocks themselves: a state or clock read a moment late only makes a pCPU wait or go on a moment
 * late, and this runs several times per burst over every pCPU (an Atomics.load is a builtin call in
 * Node 20, not inlined: at 64 pCPUs the scans were a fifth of the run).
 */
export function minRunningClock(m: Machine): number {
  let min = Infinity;
  const pc32 = m.pc32;
  for (let i = 0; i < m.npcpus; i++) {
    const b = m.pcpuBase(i);
    if (pc32[b + PC_STATE] !== PS_RUNNING) continue;
    const t = m.pcF64[(b + PC_CLOCK_F64) >> 1];
    if (t < min) min = t;
  }
  return min;
}

/**
 * Block while this pCPU is more than `slack` cycles ahead of the slowest running pCPU. Returns true if
 * it had to wait. The waiter publishes what it waits for (PC_SYNC_NEED_F64, then PC_SYNC_WAITING and
 * CTL_SYNC_WAITERS) and sleeps on its own PC_PENDING word, so a kick or an interrupt wakes it as well
 * as syncWake; it then re-checks the clocks, so a pCPU that moved in between is never missed (Dekker
 * order: our RMW on CTL_SYNC_WAITERS before our clock reads, theirs after their clock store).
 */
function laxSyncWait(m: Machine, p: Pcpu, slack: number, spin: number): boolean {
  const ctl = m.ctl, need = p.core.clock - slack;
  if (minRunningClock(m) >= need) return false;
  for (let i = 0; i < spin; i++) if (minRunningClock(m) >= need) return true;
  const pend = p.base + PC_PENDING, wi = p.base + PC_SYNC_WAITING;
  m.pcF64[(p.base + PC_SYNC_NEED_F64) >> 1] = need;
  Atomics.store(m.pc32, wi, 1);
  Atomics.add(ctl, C.CTL_SYNC_WAITERS, 1);
  while (minRunningClock(m) < need && Atomics.load(ctl, C.CTL_STOP) === 0 && Atomics.load(m.pc32, pend) === 0) {
    Atomics.wait(m.pc32, pend, 0, SYNC_WAIT_MS);
  }
  Atomics.sub(ctl, C.CTL_SYNC_WAITERS, 1);
  Atomics.store(m.pc32, wi, 0);
  return true;
}

/**
 * After this pCPU may have raised the slowest running clock (its clock is already published): wake the
 * lax-sync waiters whose need is now met, and only those. One notify per waiter that can go on, instead
 * of waking every waiter to find most still too far ahead: with 64 pCPU threads on 2 cores those wasted
 * wake-ups were most of the run.
 */
function syncWake(m: Machine): void {
  // Atomics.add of 0: a full fence, so our clock store is visible before we read who waits (laxSyncWait).
  if (Atomics.add(m.ctl, C.CTL_SYNC_WAITERS, 0) === 0) return;
  // Plain reads from here: the fence ordered them after every waiter's announcement that it counted.
  const min = minRunningClock(m), pc32 = m.pc32;
  for (let i = 0; i < m.npcpus; i++) {
    const b = m.pcpuBase(i);
    if (pc32[b + PC_SYNC_WAITING] !== 0 && m.pcF64[(b + PC_SYNC_NEED_F64) >> 1] <= min) {
      Atomics.notify(m.pc32, b + PC_PENDING);
    }
  }
}
