// The body of one pCPU thread in the threaded engine (workers/pcpu.worker.ts only forwards here).
// Hot path: Pcpu.step plus lax sync over shared words. The loop never yields to its event loop while it
// runs: stop and pause are shared words it reads at every burst boundary (one load each). Only while
// parked (CTL_PAUSE) does it turn its event loop, and that is when comlink requests (the freeze frame)
// are served.
//
// A thread normally hosts one pCPU. With --threads below the pCPU count it hosts several and runs them
// in turn, a burst each, as the serial engine does (a step never blocks on another pCPU, so any subset
// of pCPUs can share a thread); it sleeps only when none of them can run, on one word for all of them
// (PC_BELL), and lax sync holds back a pCPU that is too far ahead without holding back the others.
import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MessagePort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import * as C from '../../shared/machine.js';
import { PC_BELL, PC_BELL_AT, PC_CLOCK_F64, PC_PARKED, PC_PENDING, PC_STARTED, PC_STATE, PC_SYNC_NEED_F64, PC_SYNC_WAITING, PEND_SYNC, PS_RUNNING, SW_ASLEEP, SW_NONE, SW_WOKEN } from '../../shared/pcpu.js';
import { Machine, type MachineBuffers } from '../machine.js';
import { Pcpu, STEP_IDLE, STEP_STOPPED, type PcpuParams } from '../hv/pcpu-loop.js';
import { RingWaitForConsumer } from '../trace/ring.js';
import { pcpuCoreFrame, type CoreFrame } from './freeze.js';
import { AdaptiveSpin } from '../spin.js';

export interface PcpuTask {
  buffers: MachineBuffers;
  /** The pCPUs this thread runs (one, unless --threads is below the pCPU count). */
  ids: number[];
  /** Threads of the run (spinning pays only while they are no more than the cores). */
  threads: number;
  params: PcpuParams;
  slackCycles: number;
  burst: number;
  port: MessagePort;
  /** Testing aid (--inject-worker-fault): the pCPU whose thread throws after its first burst, or -1. */
  injectFault: number;
}

/**
 * Control API exposed over comlink, answered only while the pCPU is parked (CTL_PAUSE set, PC_PARKED
 * published): the state only this thread holds, taken between two bursts.
 */
export interface PcpuControl {
  /** The frame of pCPU `id`, one of this thread's. */
  frame(id: number): CoreFrame | null;
}

const SPIN = 2000;
/**
 * The idle poll's bounds and start (wall µs). Every vm_event round trip ends in a kick of the pCPU whose vCPU
 * waited; a futex wake of a sleeping thread costs the waker about 9 µs on a 2-core VM and the wakee tens of
 * µs more. Longer spins cost more than they save when an agent's thread shares the cores.
 */
const IDLE_SPIN_MIN_US = 1;
const IDLE_SPIN_MAX_US = 50;
const IDLE_SPIN_START_US = 10;
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
  const ps = task.ids.map((id) => new Pcpu(m, id, task.params, new RingWaitForConsumer(m.ring32, m.ringBase(id), stopped)));
  // Wakers of a shared thread ring its first pCPU's PC_BELL (Machine.kick); published before the barrier.
  if (ps.length > 1) for (const q of ps) m.pc32[q.base + PC_BELL_AT] = ps[0].base + PC_BELL;
  const control: PcpuControl = {
    frame: (id) => {
      const q = ps.find((x) => x.id === id);
      return q === undefined ? null : pcpuCoreFrame(q);
    },
  };
  Comlink.expose(control, task.port as unknown as Comlink.Endpoint);
  // The start barrier (CTL_START_PENDING): every pCPU thread ready and every agent's setup returned.
  if (Atomics.sub(ctl, C.CTL_START_PENDING, 1) === 1) Atomics.notify(ctl, C.CTL_START_PENDING);
  for (let v; (v = Atomics.load(ctl, C.CTL_START_PENDING)) !== 0 && !stopped();) Atomics.wait(ctl, C.CTL_START_PENDING, v, 5);
  for (const q of ps) Atomics.store(m.pc32, q.base + PC_STARTED, 1);
  try {
    if (ps.length === 1) await soloLoop(m, ps[0], task);
    else await groupLoop(m, ps, task);
  } finally {
    for (const q of ps) q.stop();
    task.port.close();
  }
}

/** A thread with one pCPU: it sleeps on that pCPU's own PC_PENDING, and in lax-sync waits. */
async function soloLoop(m: Machine, p: Pcpu, task: PcpuTask): Promise<void> {
  const ctl = m.ctl;
  // Spinning only pays while threads <= cores (../shared/reference/toolchain.md §5e).
  const spin = task.threads <= availableParallelism() ? SPIN : 0;
  // Lax sync keeps a bound: this pCPU may run up to `horizon` (the slowest running clock it last read, plus
  // the slack) without reading the other pCPUs' clocks, which live on lines their owners write at every
  // burst. Running clocks only move forward, so the bound is safe, except that a pCPU leaving idle comes back
  // with the clock it had then: it bumps CTL_SYNC_EPOCH and every pCPU reads the clocks again.
  const pc32 = m.pc32, slack = task.slackCycles, fenceIdx = p.base + PC_SYNC_WAITING;
  let horizon = -Infinity, epoch = Atomics.load(ctl, C.CTL_SYNC_EPOCH), wasIdle = false;
  // An idle pCPU is usually kicked again soon (a vm_event response, an IPI): while threads <= cores it polls
  // its pending word a little before it sleeps, for as long as kicks tend to come (src/spin.ts).
  const idleSpin = spin > 0 ? new AdaptiveSpin(IDLE_SPIN_MIN_US, IDLE_SPIN_MAX_US, IDLE_SPIN_START_US) : null;
  for (;;) {
    const before = p.core.clock;
    const r = p.step(task.burst);
    if (r === STEP_STOPPED) break;
    if (task.injectFault === p.id) throw new Error(`injected fault on pCPU ${p.id} (--inject-worker-fault)`);
    // A fence (an RMW of 0 on a word of our own) orders our clock, published by step as a plain store,
    // before our read of the waiter count; the waiters' side is in laxSyncWait.
    Atomics.add(pc32, fenceIdx, 0);
    const waiters = Atomics.load(ctl, C.CTL_SYNC_WAITERS);
    if (r === STEP_IDLE) {
      wasIdle = true;
      // Leaving the running set can raise the slowest clock. Then follow the others' time while idle,
      // and sleep until kicked (bounded, so STOP is seen).
      const min = minRunningClock(m, p.id);
      if (waiters !== 0) syncWake(m, min);
      if (min !== Infinity) p.idleUntil(min);
      let kicked = false;
      if (idleSpin !== null) {
        const end = idleSpin.deadline();
        for (let i = 1; ; i++) {
          if (pc32[p.base + PC_PENDING] !== 0) { kicked = true; break; }
          if ((i & 15) === 0 && performance.now() > end) break;
        }
      }
      if (kicked) (idleSpin as AdaptiveSpin).hit();
      else {
        const t0 = performance.now();
        const r = Atomics.wait(pc32, p.base + PC_PENDING, 0, IDLE_POLL_MS);
        if (idleSpin !== null) idleSpin.waited((performance.now() - t0) * 1000, r !== 'timed-out');
      }
    } else {
      if (wasIdle) { wasIdle = false; Atomics.add(ctl, C.CTL_SYNC_EPOCH, 1); }
      const clock = p.core.clock, ep = Atomics.load(ctl, C.CTL_SYNC_EPOCH);
      if (clock > horizon || waiters !== 0 || ep !== epoch) {
        epoch = ep;
        const min = Math.min(clock, minRunningClock(m, p.id));
        // Only a pCPU that was the slowest before its burst can have raised the slowest clock.
        if (waiters !== 0 && before <= min) syncWake(m, min);
        horizon = min + slack;
        if (clock > horizon) {
          horizon = laxSyncWait(m, p, clock - slack, spin) + slack;
        }
      }
    }
    if (Atomics.load(ctl, C.CTL_PAUSE) !== 0) {
      await park(m, [p]);
      horizon = -Infinity; // the others may have moved while this thread was parked
    }
  }
}

/** Park between two bursts: the event loop turns (comlink is served) until the pause or the run ends. */
async function park(m: Machine, ps: readonly Pcpu[]): Promise<void> {
  const ctl = m.ctl, pc32 = m.pc32;
  for (const p of ps) {
    Atomics.store(pc32, p.base + PC_PARKED, 1);
    Atomics.notify(pc32, p.base + PC_PARKED);
  }
  while (Atomics.load(ctl, C.CTL_PAUSE) !== 0 && Atomics.load(ctl, C.CTL_STOP) === 0) await sleep(PARKED_POLL_MS);
  for (const p of ps) Atomics.store(pc32, p.base + PC_PARKED, 0);
}

/**
 * How long a shared thread leaves an idle pCPU of its own unstepped when nothing kicked it, in ms: as long as
 * a lone pCPU's thread sleeps (soloLoop), so an idle pCPU follows the others' time and looks for work to
 * pull as often either way.
 */
const IDLE_POLL_MS = 2;

/**
 * A thread with several pCPUs. Each round steps, a burst each, every pCPU that can run: not idle (or idle
 * and kicked, or not stepped for IDLE_POLL_MS), and within the slack of the slowest running clock of the
 * machine (its own pCPUs included, so one of them that lags is run, not waited for). When none could run
 * it sleeps on PC_BELL; if lax sync held some back, the slowest of them waits as a lone pCPU does (it
 * publishes its need and a waker that meets it kicks it), so the thread is woken when that one can run.
 */
async function groupLoop(m: Machine, ps: readonly Pcpu[], task: PcpuTask): Promise<void> {
  const ctl = m.ctl, pc32 = m.pc32, slack = task.slackCycles, n = ps.length;
  const bell = ps[0].base + PC_BELL;
  const idle = new Uint8Array(n), done = new Uint8Array(n);
  const idleSince = new Float64Array(n);
  let live = n;
  // A pause that the run's end overtakes (a freeze stops the run while paused) is over: the steps then stop.
  const paused = (): boolean => Atomics.load(ctl, C.CTL_PAUSE) !== 0 && Atomics.load(ctl, C.CTL_STOP) === 0;
  while (live > 0) {
    const rung = Atomics.load(pc32, bell);
    const now = performance.now();
    // The slowest running clock, this thread's pCPUs included.
    let min = minRunningClock(m);
    let ran = 0, held = -1;
    for (let k = 0; k < n; k++) {
      if (done[k] !== 0) continue;
      if (paused()) break; // park at the next burst boundary, as a lone pCPU does
      const p = ps[k];
      const pend = pc32[p.base + PC_PENDING];
      if (idle[k] !== 0 && pend === 0 && now - idleSince[k] < IDLE_POLL_MS) continue;
      // Too far ahead: sit the round out, unless something is pending there (a kick, an interrupt), which a
      // step serves as laxSyncWait's caller does; held back, it would end every wait at once.
      if (idle[k] === 0 && p.core.clock > min + slack && (pend & ~PEND_SYNC) === 0) {
        if (held < 0 || p.core.clock < ps[held].core.clock) held = k;
        continue;
      }
      const before = p.core.clock;
      const r = p.step(task.burst);
      if (r === STEP_STOPPED) { done[k] = 1; live--; continue; }
      if (task.injectFault === p.id) throw new Error(`injected fault on pCPU ${p.id} (--inject-worker-fault)`);
      Atomics.add(pc32, p.base + PC_SYNC_WAITING, 0); // the fence of soloLoop: clock store before the waiter count
      const waiters = Atomics.load(ctl, C.CTL_SYNC_WAITERS);
      if (r === STEP_IDLE) {
        if (idle[k] === 0) { idle[k] = 1; idleSince[k] = now; }
        else if (now - idleSince[k] >= IDLE_POLL_MS) idleSince[k] = now;
        const mr = minRunningClock(m, p.id);
        if (waiters !== 0) syncWake(m, mr);
        if (mr !== Infinity) p.idleUntil(mr);
      } else {
        ran++;
        if (idle[k] !== 0) { idle[k] = 0; Atomics.add(ctl, C.CTL_SYNC_EPOCH, 1); }
        if (waiters !== 0) {
          // As soloLoop: only a pCPU that was the slowest before its burst can have raised the slowest clock.
          const mo = Math.min(p.core.clock, minRunningClock(m, p.id));
          if (before <= mo) { min = mo; syncWake(m, mo); }
        }
      }
    }
    if (paused()) { await park(m, ps); continue; }
    if (ran !== 0 || live === 0) continue;
    if (held >= 0) groupSyncWait(m, ps, ps[held], ps[held].core.clock - slack, bell);
    else Atomics.wait(pc32, bell, rung, IDLE_POLL_MS);
  }
}

/**
 * laxSyncWait for a shared thread: pCPU p (its slowest held-back pCPU) publishes its need and the thread
 * sleeps on PC_BELL until the need is met, a waker claims p, or any of the thread's pCPUs is kicked.
 */
function groupSyncWait(m: Machine, ps: readonly Pcpu[], p: Pcpu, need: number, bell: number): void {
  const ctl = m.ctl, pc32 = m.pc32, pend = p.base + PC_PENDING, wi = p.base + PC_SYNC_WAITING;
  m.pcF64[(p.base + PC_SYNC_NEED_F64) >> 1] = need;
  Atomics.store(pc32, wi, SW_ASLEEP);
  Atomics.add(ctl, C.CTL_SYNC_WAITERS, 1);
  for (;;) {
    const rung = Atomics.load(pc32, bell);
    if (minRunningClock(m, p.id) >= need || Atomics.load(ctl, C.CTL_STOP) !== 0 || Atomics.load(ctl, C.CTL_PAUSE) !== 0) break;
    if ((Atomics.load(pc32, pend) & PEND_SYNC) !== 0) {
      Atomics.and(pc32, pend, ~PEND_SYNC); // claimed, and still short: a pCPU left idle with an older clock
      Atomics.store(pc32, wi, SW_ASLEEP);
      continue;
    }
    let kicked = false;
    for (const q of ps) if ((pc32[q.base + PC_PENDING] & ~PEND_SYNC) !== 0) kicked = true;
    if (kicked) break;
    Atomics.wait(pc32, bell, rung, SYNC_WAIT_MS);
  }
  Atomics.sub(ctl, C.CTL_SYNC_WAITERS, 1);
  if (Atomics.exchange(pc32, wi, SW_NONE) === SW_WOKEN) {
    for (let rung; ((rung = Atomics.load(pc32, bell)), (Atomics.load(pc32, pend) & PEND_SYNC) === 0) && Atomics.load(ctl, C.CTL_STOP) === 0;) {
      Atomics.wait(pc32, bell, rung, 1);
    }
  }
  Atomics.and(pc32, pend, ~PEND_SYNC);
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
      m.kick(i, PEND_SYNC);
    }
  }
}
