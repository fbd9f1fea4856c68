// Runs one agent (a vm_event listener with altp2m control) against its domain: attach the monitor ring,
// call the agent's setup, then take requests, ask the agent, put its responses and apply them as
// vm_event_resume does. The same object runs in both engines: stepped by the serial engine as one more
// participant, or looped by the agent's own worker thread in the threaded engine.
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors.js';
import type { Machine } from '../machine.js';
import type { LapicOptions } from '../hw/lapic.js';
import { vmEventNextBlocked, vmEventPutResponse, vmEventResume, vmEventTake, type VmEventRequest, type VmEventResponse } from '../hv/vm-event.js';
import { VR_REQ_CONS, VR_REQ_PROD, VR_RSP_CONS, VR_RSP_PROD, vmEventRingBase } from '../../shared/vm-event.js';
import { XenControl, type AgentHost } from './xc.js';

/**
 * What an agent module exports: as its default export either an Agent or a function that makes one
 * (called once per run and domain, so state in it is per agent), or setup and onEvent themselves.
 */
export interface Agent {
  /** Called once, before any event: create views, switch, restrict (the ring is already attached). */
  setup(xc: XenControl, domid: number, args: Record<string, unknown>): void;
  /** One request in, one response out; null leaves the vCPU paused (no response). */
  onEvent(xc: XenControl, domid: number, req: VmEventRequest): VmEventResponse | null;
}

/** The agent of one domain, as both engines describe it. Plain data (sent to the agent's worker). */
export interface AgentSpec {
  /** Domain index (domid - 1). */
  dom: number;
  /** File URL of the agent module. */
  module: string;
  args: Record<string, unknown>;
}

/** Load an agent module and make its agent. A module that does not load or lacks the two calls is bad input. */
export async function loadAgent(url: string): Promise<Agent> {
  const file = url.startsWith('file:') ? fileURLToPath(url) : url;
  let mod: { default?: Agent | (() => Agent) } & Partial<Agent>;
  try {
    mod = (await import(url)) as typeof mod;
  } catch (e) {
    throw new UserError(`${file}: agent module does not load (${(e instanceof Error ? e.message : String(e)).split('\n')[0]})`);
  }
  const d = mod.default ?? mod;
  const a = (typeof d === 'function' ? d() : d) as Partial<Agent>;
  if (typeof a !== 'object' || a === null || typeof a.setup !== 'function' || typeof a.onEvent !== 'function') {
    throw new UserError(`${file}: an agent module exports (as default) an object, or a function returning one, with setup(xc, domid, args) and onEvent(xc, domid, request)`);
  }
  return a as Agent;
}

export class AgentRunner {
  readonly xc: XenControl;
  private started = false;
  /** Requests handled, for the report. */
  events = 0;
  readonly domid: number;

  constructor(readonly m: Machine, readonly spec: AgentSpec, private readonly agent: Agent, host: AgentHost, lapic: LapicOptions) {
    this.xc = new XenControl(m, host, lapic);
    this.domid = spec.dom + 1;
  }

  /** Is there anything for the agent to do now? */
  hasWork(): boolean {
    if (!this.started) return true;
    const m = this.m, rb = vmEventRingBase(this.spec.dom);
    if (Atomics.load(m.vr32, rb + VR_REQ_CONS) !== Atomics.load(m.vr32, rb + VR_REQ_PROD)) return true;
    return Atomics.load(m.vr32, rb + VR_RSP_CONS) !== Atomics.load(m.vr32, rb + VR_RSP_PROD) && !vmEventNextBlocked(m, this.spec.dom);
  }

  /** Do one unit of work: setup, or pending responses, or one request. Returns false when there was none. */
  step(): boolean {
    const m = this.m, d = this.spec.dom;
    if (!this.started) {
      this.started = true;
      this.xc.monitorEnable(this.domid, true);
      this.agent.setup(this.xc, this.domid, this.spec.args);
      return true;
    }
    const rb = vmEventRingBase(d);
    if (Atomics.load(m.vr32, rb + VR_RSP_CONS) !== Atomics.load(m.vr32, rb + VR_RSP_PROD)) {
      if (vmEventNextBlocked(m, d)) return false;
      vmEventResume(m, d);
      return true;
    }
    const req = vmEventTake(m, d);
    if (req === null) return false;
    this.events++;
    const rsp = this.agent.onEvent(this.xc, this.domid, req);
    if (rsp !== null) {
      vmEventPutResponse(m, d, rsp);
      vmEventResume(m, d); // applies it now unless the vCPU is still leaving its pCPU (then a later step)
    }
    return true;
  }
}
