// Runs one agent (a vm_event listener with altp2m control) against its domain: attach the monitor ring,
// call the agent's setup, then take requests, ask the agent, check and put its responses and apply them as
// vm_event_resume does. The same object runs in both engines: stepped by the serial engine as one more
// participant (the agent's code then runs in its own worker, agent/remote.ts), or looped by the agent's
// own thread in the threaded engine (the agent's code in that thread).
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors.js';
import type { Machine } from '../machine.js';
import type { LapicOptions } from '../hw/lapic.js';
import { vmEventNextBlocked, vmEventPutResponse, vmEventResume, vmEventTake, type VmEventRequest, type VmEventResponse } from '../hv/vm-event.js';
import { VR_REQ_CONS, VR_REQ_PROD, VR_RSP_CONS, VR_RSP_PROD, vmEventRingBase } from '../../shared/vm-event.js';
import { AF_BAD_RESPONSE, AF_CAUSES, AF_THREW } from '../../shared/agent-mailbox.js';
import { MAX_VIEWS } from '../../shared/altp2m.js';
import { domainVcpus } from '../hv/altp2m.js';
import { AgentStopped, XenControl, type AgentHost } from './xc.js';
import type { XcApi } from './mailbox.js';

/**
 * What an agent module exports: as its default export either an Agent or a function that makes one
 * (called once per run and domain, so state in it is per agent), or setup and onEvent themselves.
 * Either call may return a promise (the run waits for it, within --agent-timeout-ms).
 */
export interface Agent {
  /** Called once, before any event: create views, switch, restrict (the ring is already attached). */
  setup(xc: XcApi, domid: number, args: Record<string, unknown>): void | Promise<void>;
  /** One request in, one response out; null leaves the vCPU paused (no response). */
  onEvent(xc: XcApi, domid: number, req: VmEventRequest): VmEventResponse | null | Promise<VmEventResponse | null>;
}

/** The agent of one domain, as both engines describe it. Plain data (sent to the agent's worker). */
export interface AgentSpec {
  /** Domain index (domid - 1). */
  dom: number;
  /** File URL of the agent module. */
  module: string;
  args: Record<string, unknown>;
}

/** An agent's code failed: it threw, answered badly, exited, took too long or did not load. Ends the run (AGENT_FAILED). */
export class AgentFailure extends Error {
  /** `cause`: an AF_* code; `call`: what the agent was asked ("setup", "onEvent (request 3: ...)"). */
  constructor(readonly failCause: number, readonly call: string, readonly why: string) {
    super(`${call}: ${why}`);
  }
  get causeToken(): string { return AF_CAUSES[this.failCause] ?? 'threw'; }
}

/** An agent's call has not answered yet (serial: the engine waits for it without blocking its event loop). */
export class AgentPending extends Error {}

/** The text of whatever an agent threw. */
export function thrownText(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`.split('\n')[0];
  return typeof e === 'string' ? JSON.stringify(e.slice(0, 200)) : String(e);
}

/**
 * Await an agent's promise with the thread kept alive: with nothing else pending, a promise that never
 * settles would end the thread (exit code 13) instead of running into the call's time limit.
 */
export async function keepAlive<T>(p: PromiseLike<T>): Promise<T> {
  const timer = setInterval(() => {}, 1 << 30);
  try { return await p; } finally { clearInterval(timer); }
}

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return typeof x === 'object' && x !== null && typeof (x as { then?: unknown }).then === 'function';
}

type Exported = { default?: unknown; setup?: unknown; onEvent?: unknown };

/**
 * Import an agent module and check its exports (without calling a factory). A module that does not load or
 * lacks the two calls is bad input (UserError): its file is wrong whatever the run.
 */
export async function importAgentModule(url: string): Promise<Exported> {
  const file = url.startsWith('file:') ? fileURLToPath(url) : url;
  let mod: Exported;
  try {
    mod = (await import(url)) as Exported;
  } catch (e) {
    throw new UserError(`${file}: agent module does not load (${(e instanceof Error ? e.message : String(e)).split('\n')[0]})`);
  }
  const d = mod.default ?? mod;
  const ok = typeof d === 'function' || (typeof d === 'object' && d !== null &&
    typeof (d as Exported).setup === 'function' && typeof (d as Exported).onEvent === 'function');
  if (!ok) {
    throw new UserError(`${file}: an agent module exports (as default) an object, or a function returning one, with setup(xc, domid, args) and onEvent(xc, domid, request)`);
  }
  return mod;
}

/** Make the run's agent from its module (calls the factory: the agent's own code, so a failure is AGENT_FAILED). */
export function makeAgent(mod: Exported): Agent {
  const d = mod.default ?? mod;
  let a: unknown;
  try {
    a = typeof d === 'function' ? (d as () => unknown)() : d;
  } catch (e) {
    throw new AgentFailure(AF_THREW, 'setup', `the module's factory threw ${thrownText(e)}`);
  }
  if (typeof a !== 'object' || a === null || typeof (a as Agent).setup !== 'function' || typeof (a as Agent).onEvent !== 'function') {
    throw new AgentFailure(AF_BAD_RESPONSE, 'setup', 'the module\'s factory returned no object with setup and onEvent');
  }
  return a as Agent;
}

/** Load an agent module and make its agent, in this thread. */
export async function loadAgent(url: string): Promise<Agent> {
  return makeAgent(await importAgentModule(url));
}

const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x);
const U32_MAX = 0xffffffff;

/** Why field `k` of a response is not an integer in lo..hi (absent: fine when optional), or null. */
function fieldError(r: Record<string, unknown>, k: string, lo: number, hi: number, optional: boolean): string | null {
  const v = r[k];
  if (v === undefined) return optional ? null : `field ${k} is missing`;
  if (!isInt(v)) return `field ${k} is ${typeof v === 'number' ? String(v) : typeof v}, not an integer`;
  if (v < lo || v > hi) return `field ${k} = ${v} is out of range ${lo}..${hi}`;
  return null;
}

/**
 * Why `rsp` is not a vm_event_st response an agent may give (a domain of `nvcpus` vCPUs), or null when it
 * is one or is null (no response). Fields are integers in their field's range; a version other than
 * VM_EVENT_INTERFACE_VERSION is wrong too (Xen would drop it and leave the vCPU paused).
 */
export function vmEventResponseError(rsp: unknown, nvcpus: number, version: number): string | null {
  if (rsp === null) return null;
  if (rsp === undefined) return 'it returned undefined (return null for no response)';
  if (typeof rsp !== 'object' || Array.isArray(rsp)) return `it returned ${typeof rsp === 'string' ? JSON.stringify(rsp.slice(0, 40)) : Array.isArray(rsp) ? 'an array' : String(rsp)}, not a vm_event response object`;
  const r = rsp as Record<string, unknown>;
  const e = fieldError(r, 'version', 0, U32_MAX, false) ?? fieldError(r, 'flags', -0x80000000, U32_MAX, false) ??
    fieldError(r, 'reason', 0, U32_MAX, false) ?? fieldError(r, 'vcpuId', 0, nvcpus - 1, false) ??
    fieldError(r, 'altp2mIdx', 0, MAX_VIEWS - 1, false) ?? fieldError(r, 'fastSinglestepIdx', 0, MAX_VIEWS - 1, true);
  if (e !== null) return e;
  if (r.version !== version) return `field version = ${String(r.version)}, the interface is version ${version}`;
  return null;
}

/** How the runner calls the agent: directly (AgentCalls.inline), or through its worker (agent/remote.ts). */
export interface AgentCalls {
  setup(xc: XenControl, domid: number, args: Record<string, unknown>): unknown;
  onEvent(xc: XenControl, domid: number, req: VmEventRequest): unknown;
  /** Go on with a call that threw AgentPending; returns what it returned, or throws AgentPending again. */
  resume(xc: XenControl): unknown;
}

/** The agent called in this thread (threaded engine: the agent's own thread). Promises are awaited by the caller (AgentRunner.awaiting). */
export function inlineCalls(agent: Agent): AgentCalls {
  return {
    setup: (xc, domid, args) => agent.setup(xc, domid, args),
    onEvent: (xc, domid, req) => agent.onEvent(xc, domid, req),
    resume: () => { throw new Error('this is a bug in vcpulab: an inline agent call cannot be pending'); },
  };
}

const P_NONE = 0, P_SETUP = 1, P_EVENT = 2;

export class AgentRunner {
  readonly xc: XenControl;
  private started = false;
  /** Requests handled, for the report. */
  events = 0;
  readonly domid: number;
  private readonly nvcpus: number;
  /** The call a pending (serial) or promised (threaded) answer belongs to. */
  private pending = P_NONE;
  private pendingReq: VmEventRequest | null = null;
  /** Called with the request's number when one is taken (threaded: published for the main thread's timeout message). */
  onTake: ((n: number) => void) | null = null;
  /** Threaded: a promise the agent's call returned; the agent thread awaits it and calls settle(). */
  awaiting: PromiseLike<unknown> | null = null;

  constructor(readonly m: Machine, readonly spec: AgentSpec, private readonly agent: AgentCalls, host: AgentHost, lapic: LapicOptions,
    private readonly version: number) {
    this.xc = new XenControl(m, host, lapic);
    this.domid = spec.dom + 1;
    this.nvcpus = domainVcpus(m, spec.dom)[1];
  }

  /** Is there anything for the agent to do now? */
  hasWork(): boolean {
    if (!this.started) return true;
    const m = this.m, rb = vmEventRingBase(this.spec.dom);
    if (Atomics.load(m.vr32, rb + VR_REQ_CONS) !== Atomics.load(m.vr32, rb + VR_REQ_PROD)) return true;
    return Atomics.load(m.vr32, rb + VR_RSP_CONS) !== Atomics.load(m.vr32, rb + VR_RSP_PROD) && !vmEventNextBlocked(m, this.spec.dom);
  }

  /** What the agent is being asked now, for a failure's message. */
  callText(): string {
    if (this.pending === P_SETUP || !this.started) return 'setup';
    const q = this.pendingReq;
    return q === null ? 'onEvent' : `onEvent (request ${this.events}: reason ${q.reason}, vCPU ${q.vcpuId}, gfn 0x${(q.gfn >>> 0).toString(16)})`;
  }

  /**
   * Do one unit of work: setup, or pending responses, or one request. Returns false when there was none.
   * Throws AgentFailure when the agent fails, AgentPending when its answer is still to come (serial).
   */
  step(): boolean {
    const m = this.m, d = this.spec.dom;
    if (this.pending !== P_NONE) {
      this.finish(this.call(() => this.agent.resume(this.xc)));
      return true;
    }
    if (!this.started) {
      this.started = true;
      this.xc.monitorEnable(this.domid, true);
      this.pending = P_SETUP;
      this.finish(this.call(() => this.agent.setup(this.xc, this.domid, this.spec.args)));
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
    if (this.onTake !== null) this.onTake(this.events);
    this.pending = P_EVENT;
    this.pendingReq = req;
    this.finish(this.call(() => this.agent.onEvent(this.xc, this.domid, req)));
    return true;
  }

  /** Threaded: the promise in `awaiting` settled with `value` (a rejection is thrown by the caller's await). */
  settle(value: unknown): void {
    this.awaiting = null;
    this.finish(value);
  }

  private call(f: () => unknown): unknown {
    try {
      return f();
    } catch (e) {
      if (e instanceof AgentFailure && e.call === '') throw new AgentFailure(e.failCause, this.callText(), e.why);
      if (e instanceof AgentFailure || e instanceof AgentPending || !this.userCode(e)) throw e;
      throw new AgentFailure(AF_THREW, this.callText(), `threw ${thrownText(e)}`);
    }
  }

  /** An inline agent's exception is the agent's; the engine's own (a run that ended, a diverged replay) pass through. */
  private userCode(e: unknown): boolean {
    return !(e instanceof AgentStopped || (e instanceof Error && e.constructor.name === 'ScheduleDiverged'));
  }

  private finish(value: unknown): void {
    if (isThenable(value)) { this.awaiting = value; return; }
    const kind = this.pending;
    this.pending = P_NONE;
    if (kind === P_SETUP) return;
    const err = vmEventResponseError(value, this.nvcpus, this.version);
    if (err !== null) {
      this.pending = P_EVENT; // for callText
      const text = this.callText();
      this.pending = P_NONE;
      throw new AgentFailure(AF_BAD_RESPONSE, text, err);
    }
    this.pendingReq = null;
    const rsp = value as VmEventResponse | null;
    if (rsp !== null) {
      vmEventPutResponse(this.m, this.spec.dom, rsp);
      vmEventResume(this.m, this.spec.dom); // applies it now unless the vCPU is still leaving its pCPU (then a later step)
    }
  }
}
