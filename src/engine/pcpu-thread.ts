// The body of one pCPU thread in the threaded engine (workers/pcpu.worker.ts only forwards here).
// Hot path: Pcpu.step plus lax sync over shared words; comlink carries control only, and the loop
// yields to the event loop every few ms so those control messages are delivered.
import { availableParallelism } from 'node:os';
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises';
import type { MessagePort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import * as C from '../../shared/machine.js';
import { PC_CLOCK_F64, PC_PARKED, PC_PENDING, PC_STARTED, PC_STATE, PS_RUNNING } from '../../shared/pcpu.js';
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
  // Wait for the agents' setup (CTL_AGENTS_PENDING) before the guests run.
  for (let v; (v = Atomics.load(ctl, C.CTL_AGENTS_PENDING)) !== 0 && !stopped();) Atomics.wait(ctl, C.CTL_AGENTS_PENDING, v, 5);
  Atomics.store(m.pc32, p.base + PC_STARTED, 1);
  try {
    for (;;) {
      const before = p.core.clock;
      const wasLaggard = before <= minRunningClock(m);
      const r = p.step(task.burst);
      if (r === STEP_STOPPED) break;
      if (task.injectFault) throw new Error(`injected fault on pCPU ${task.id} (--inject-worker-fault)`);
      if (wasLaggard && Atomics.load(ctl, C.CTL_SYNC_WAITERS) > 0) {
        Atomics.add(ctl, C.CTL_SYNC_EPOCH, 1);
        Atomics.notify(ctl, C.CTL_SYNC_EPOCH);
      }
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

/** Slowest clock among pCPUs that have work (idle and stopped pCPUs do not hold others back). */
export function minRunningClock(m: Machine): number {
  let min = Infinity;
  for (let i = 0; i < m.npcpus; i++) {
    const b = m.pcpuBase(i);
    if (Atomics.load(m.pc32, b + PC_STATE) !== PS_RUNNING) continue;
    const t = m.pcF64[(b + PC_CLOCK_F64) >> 1];
    if (t < min) min = t;
  }
  return min;
}

/** Block while this pCPU is more than `slack` cycles ahead. Returns true if it had to wait. */
function laxSyncWait(m: Machine, p: Pcpu, slack: number, spin: number): boolean {
  const ctl = m.ctl;
  if (p.core.clock <= minRunningClock(m) + slack) return false;
  for (let i = 0; i < spin; i++) if (p.core.clock <= minRunningClock(m) + slack) return true;
  while (p.core.clock > minRunningClock(m) + slack && Atomics.load(ctl, C.CTL_STOP) === 0) {
    const epoch = Atomics.load(ctl, C.CTL_SYNC_EPOCH);
    Atomics.add(ctl, C.CTL_SYNC_WAITERS, 1);
    // Re-check after announcing ourselves, so a laggard that moved in between is not missed.
    if (p.core.clock > minRunningClock(m) + slack) Atomics.wait(ctl, C.CTL_SYNC_EPOCH, epoch, 1);
    Atomics.sub(ctl, C.CTL_SYNC_WAITERS, 1);
    if ((m.pc32[p.base + PC_PENDING]) !== 0) break;
  }
  return true;
}
