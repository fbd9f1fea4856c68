// The serial engine's agent worker: the agent's code and nothing else. It waits for a call in its mailbox
// (setup, or one event), runs it, awaits it if it returns a promise, checks the response and hands the
// turn back; each libxc call the agent makes inside is one more round trip to the engine, which owns the
// machine. Whatever the agent does here — loop, throw, exit, never settle — the engine's thread stays free
// to time it out, report it, and terminate this thread.
import { AF_BAD_RESPONSE, AF_EXITED, AF_LOAD, AF_THREW, AM_ERRNO, AM_OP, AM_OP_EVENT, AM_OP_EVENT_DONE, AM_OP_FAILED, AM_OP_SETUP,
  AM_OP_SETUP_DONE, AM_TURN_AGENT, AM_TURN_ENGINE } from '../../shared/agent-mailbox.js';
import { VM_EVENT_INTERFACE_VERSION } from '../../shared/vm-event.js';
import { Mailbox, getRequest, putResponse, xcProxy } from './mailbox.js';
import { AgentFailure, importAgentModule, keepAlive, makeAgent, thrownText, vmEventResponseError, type Agent } from './runner.js';
import type { VmEventResponse } from '../hv/vm-event.js';

export interface AgentCallsData {
  mode: 'calls';
  sab: SharedArrayBuffer;
  module: string;
  args: Record<string, unknown>;
  domid: number;
  /** The domain's vCPU count (the range of a response's vcpuId). */
  nvcpus: number;
}

/** `loaded` / `loadFailed`: tell the engine (once, by message) whether the module imported. */
export async function agentCallsThread(d: AgentCallsData, loaded: () => void, loadFailed: (why: string) => void): Promise<void> {
  const mb = new Mailbox(d.sab);
  const xc = xcProxy(mb);
  let inCall = false;
  const fail = (cause: number, why: string): void => {
    mb.i32[AM_OP] = AM_OP_FAILED;
    mb.i32[AM_ERRNO] = cause;
    mb.writeText(why);
    inCall = false;
    mb.handTo(AM_TURN_ENGINE);
  };
  // process.exit in a worker ends only this thread; say so while the engine waits for an answer.
  process.on('exit', (code) => { if (inCall) fail(AF_EXITED, `the agent called process.exit(${code})`); });
  let mod: Awaited<ReturnType<typeof importAgentModule>> | null = null;
  let loadError = '';
  try { mod = await importAgentModule(d.module); } catch (e) { loadError = e instanceof Error ? e.message : String(e); }
  if (mod !== null) loaded(); else loadFailed(loadError);
  let agent: Agent | null = null;
  for (;;) {
    mb.waitTurn(AM_TURN_AGENT, Infinity);
    inCall = true;
    const op = mb.i32[AM_OP];
    try {
      if (mod === null) { fail(AF_LOAD, loadError); continue; }
      if (op === AM_OP_SETUP) {
        agent = makeAgent(mod);
        const r = agent.setup(xc, d.domid, d.args);
        if (r !== undefined && r !== null && typeof (r as Promise<void>).then === 'function') await keepAlive(r as Promise<void>);
        mb.i32[AM_OP] = AM_OP_SETUP_DONE;
      } else if (op === AM_OP_EVENT && agent !== null) {
        let r: unknown = agent.onEvent(xc, d.domid, getRequest(mb));
        if (r !== null && typeof r === 'object' && typeof (r as Promise<unknown>).then === 'function') r = await keepAlive(r as Promise<void>);
        const bad = vmEventResponseError(r, d.nvcpus, VM_EVENT_INTERFACE_VERSION);
        if (bad !== null) { fail(AF_BAD_RESPONSE, bad); continue; }
        putResponse(mb, r as VmEventResponse | null);
        mb.i32[AM_OP] = AM_OP_EVENT_DONE;
      } else {
        fail(AF_THREW, `this is a bug in vcpulab: agent worker got message ${op}`);
        continue;
      }
    } catch (e) {
      if (e instanceof AgentFailure) fail(e.failCause, e.why);
      else fail(AF_THREW, `threw ${thrownText(e)}`);
      continue;
    }
    inCall = false;
    mb.handTo(AM_TURN_ENGINE);
  }
}
