// The body of an agent's own thread in the threaded engine (workers/agent.worker.ts only forwards
// here): it waits on the vm_event ring's event channel, handles requests as they come, and waits for
// the machine the way a control-domain tool does, while the pCPU threads run.
import * as C from '../../shared/machine.js';
import { VR_NOTIFY, vmEventRingBase } from '../../shared/vm-event.js';
import type { LapicOptions } from '../hw/lapic.js';
import { Machine, type MachineBuffers } from '../machine.js';
import type { AgentResult } from '../engine/common.js';
import { AgentRunner, loadAgent, type AgentSpec } from './runner.js';
import { AgentStopped, type AgentHost } from './xc.js';

export interface AgentTask {
  buffers: MachineBuffers;
  spec: AgentSpec;
  lapic: LapicOptions;
}

/** Polls before a wait falls back to Atomics.wait (the agent's condition is usually met within a few). */
const SPIN = 200;
const WAIT_MS = 1;

export async function agentThread(task: AgentTask): Promise<AgentResult> {
  const m = new Machine(task.buffers);
  const notify = vmEventRingBase(task.spec.dom) + VR_NOTIFY;
  const stopped = (): boolean => Atomics.load(m.ctl, C.CTL_STOP) !== 0;
  const host: AgentHost = {
    waitUntil(cond: () => boolean, what: string): void {
      for (let i = 0; !cond(); i++) {
        if (stopped()) throw new AgentStopped(`the run ended while the agent waited for ${what}`);
        if (i > SPIN) Atomics.wait(m.vr32, notify, Atomics.load(m.vr32, notify), WAIT_MS);
      }
    },
  };
  const result: AgentResult = { dom: task.spec.dom, events: 0, calls: 0, error: null };
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    if (Atomics.sub(m.ctl, C.CTL_START_PENDING, 1) === 1) Atomics.notify(m.ctl, C.CTL_START_PENDING);
  };
  let runner: AgentRunner | null = null;
  try {
    runner = new AgentRunner(m, task.spec, await loadAgent(task.spec.module), host, task.lapic);
    runner.step(); // attach and setup, before the domain runs
    release();
    while (!stopped()) {
      if (runner.step()) continue;
      const seen = Atomics.load(m.vr32, notify);
      if (!runner.hasWork()) Atomics.wait(m.vr32, notify, seen, WAIT_MS);
    }
  } catch (e) {
    if (!(e instanceof AgentStopped)) result.error = e instanceof Error ? e.message : String(e);
  } finally {
    release();
  }
  if (runner !== null) {
    result.events = runner.events;
    result.calls = runner.xc.calls;
  }
  return result;
}
