// The threaded engine's agent thread (workers/agent.worker.ts forwards here): the runner and the agent's
// code together in one thread of their own. It waits on the vm_event ring's event channel, handles
// requests as they come, and waits for the machine the way a control-domain tool does, while the pCPU
// threads run. It publishes in its mailbox which call it is in and since when (the main thread times calls
// out and terminates this thread), and why it failed.
import * as C from '../../shared/machine.js';
import { VM_EVENT_INTERFACE_VERSION, VR_NOTIFY, vmEventRingBase } from '../../shared/vm-event.js';
import {
  AC_EVENT, AC_LOAD, AC_NAMES, AC_NONE, AC_SETUP, AF_EXITED, AF_LOAD, AF_THREW, AM_CALL, AM_CALL_SEQ, AM_CALL_T0_F64, AM_FAILED, AM_XC_CALLS,
} from '../../shared/agent-mailbox.js';
import type { LapicOptions } from '../hw/lapic.js';
import { Machine, type MachineBuffers } from '../machine.js';
import { Mailbox } from './mailbox.js';
import { AgentFailure, AgentRunner, importAgentModule, inlineCalls, keepAlive, makeAgent, thrownText, type AgentSpec } from './runner.js';
import { AgentStopped, type AgentHost } from './xc.js';
import { AdaptiveSpin } from '../spin.js';

export interface AgentThreadData {
  mode: 'thread';
  buffers: MachineBuffers;
  spec: AgentSpec;
  lapic: LapicOptions;
  sab: SharedArrayBuffer;
}

/** Polls before a wait for the machine falls back to Atomics.wait (the agent's condition is usually met within a few). */
const SPIN = 200;
const WAIT_MS = 1;
/**
 * The spin (src/spin.ts, wall µs) before the thread sleeps on the event channel between requests. A vCPU
 * that got its response usually traps again within tens of µs; sleeping each time cost a futex wake per
 * request and kept the threaded round trips at about half the rate.
 */
const EVENT_SPIN_MIN_US = 5;
const EVENT_SPIN_MAX_US = 200;
const EVENT_SPIN_START_US = 50;

export async function agentThread(d: AgentThreadData): Promise<void> {
  const m = new Machine(d.buffers);
  const mb = new Mailbox(d.sab);
  const i32 = mb.i32;
  const notify = vmEventRingBase(d.spec.dom) + VR_NOTIFY;
  const stopped = (): boolean => Atomics.load(m.ctl, C.CTL_STOP) !== 0;
  const host: AgentHost = {
    waitUntil(cond: () => boolean, what: string): void {
      for (let i = 0; !cond(); i++) {
        if (stopped()) throw new AgentStopped(`the run ended while the agent waited for ${what}`);
        if (i > SPIN) Atomics.wait(m.vr32, notify, Atomics.load(m.vr32, notify), WAIT_MS);
      }
    },
  };
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    if (Atomics.sub(m.ctl, C.CTL_START_PENDING, 1) === 1) Atomics.notify(m.ctl, C.CTL_START_PENDING);
  };
  const begin = (call: number): void => {
    mb.hf64[AM_CALL_T0_F64 >> 1] = performance.timeOrigin + performance.now();
    Atomics.store(i32, AM_CALL, call);
  };
  let runner: AgentRunner | null = null;
  const spin = new AdaptiveSpin(EVENT_SPIN_MIN_US, EVENT_SPIN_MAX_US, EVENT_SPIN_START_US);
  const callText = (): string => {
    const c = Atomics.load(i32, AM_CALL);
    return c === AC_EVENT && runner !== null ? runner.callText() : AC_NAMES[c] ?? '';
  };
  const fail = (cause: number, call: string, why: string): void => {
    mb.writeText(`${call}\0${why}`); // AgentThread.failure splits it
    Atomics.store(i32, AM_FAILED, cause);
  };
  // process.exit in a worker ends only this thread: say why before it goes. A failed agent never lets the
  // domain start (the start barrier stays closed; the main thread stops the run, which opens it).
  process.on('exit', (code) => {
    if (Atomics.load(i32, AM_FAILED) === 0 && !stopped()) fail(AF_EXITED, callText() || 'between calls', `the agent called process.exit(${code})`);
  });
  try {
    begin(AC_LOAD);
    let mod: Awaited<ReturnType<typeof importAgentModule>>;
    try { mod = await importAgentModule(d.spec.module); } catch (e) { throw new AgentFailure(AF_LOAD, AC_NAMES[AC_LOAD], e instanceof Error ? e.message : String(e)); }
    begin(AC_SETUP);
    runner = new AgentRunner(m, d.spec, inlineCalls(makeAgent(mod)), host, d.lapic, VM_EVENT_INTERFACE_VERSION);
    // A call into the agent begins when a request is taken (what the time limit measures).
    runner.onTake = (n) => { Atomics.store(i32, AM_CALL_SEQ, n); begin(AC_EVENT); };
    runner.step(); // attach and setup, before the domain runs
    while (runner.awaiting !== null) runner.settle(await keepAlive(runner.awaiting));
    Atomics.store(i32, AM_CALL, AC_NONE);
    Atomics.store(i32, AM_XC_CALLS, runner.xc.calls);
    release();
    while (!stopped()) {
      const did = runner.step();
      while (runner.awaiting !== null) runner.settle(await keepAlive(runner.awaiting));
      Atomics.store(i32, AM_CALL, AC_NONE);
      if (did) {
        Atomics.store(i32, AM_XC_CALLS, runner.xc.calls);
        continue;
      }
      const seen = Atomics.load(m.vr32, notify);
      const spinEnd = spin.deadline();
      let ready = false;
      for (let i = 1; ; i++) {
        if (runner.hasWork() || stopped()) { ready = true; break; }
        if ((i & 15) === 0 && performance.now() > spinEnd) break;
      }
      if (ready) { spin.hit(); continue; }
      const t0 = performance.now();
      const r = Atomics.wait(m.vr32, notify, seen, WAIT_MS);
      spin.waited((performance.now() - t0) * 1000, r !== 'timed-out');
    }
  } catch (e) {
    if (e instanceof AgentStopped) { /* the run ended while the agent waited: nothing failed */ }
    else if (e instanceof AgentFailure) fail(e.failCause, e.call, e.why);
    else fail(AF_THREW, callText(), `threw ${thrownText(e)}`);
  } finally {
    Atomics.store(i32, AM_CALL, AC_NONE);
    if (Atomics.load(i32, AM_FAILED) === 0) release();
  }
  if (runner !== null) {
    Atomics.store(i32, AM_CALL_SEQ, runner.events);
    Atomics.store(i32, AM_XC_CALLS, runner.xc.calls);
  }
}
