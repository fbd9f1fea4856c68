// The engine's side of an agent that runs in a worker thread of its own. Serial engine: RemoteAgent sends
// each call (setup, one event) through the mailbox and waits for the answer synchronously, serving the
// agent's libxc calls meanwhile, so the machine is still stepped by one thread in one order (deterministic).
// Threaded engine: AgentThread starts the agent's thread (agent/agent-thread.ts) and watches it. Either
// way the agent's time per call is bounded (--agent-timeout-ms), and its thread can be terminated whatever
// it is doing: a loop, a never-settling promise, process.exit.
import { Worker } from 'node:worker_threads';
import {
  AC_EVENT, AC_LOAD, AC_NAMES, AC_NONE, AF_EXITED, AF_LOAD, AF_TIMEOUT, AM_CALL, AM_CALL_SEQ, AM_CALL_T0_F64, AM_ERRNO, AM_FAILED, AM_OP, AM_OP_EVENT,
  AM_OP_EVENT_DONE, AM_OP_FAILED, AM_OP_SETUP, AM_OP_SETUP_DONE, AM_OP_XC_CALL, AM_TURN, AM_TURN_AGENT, AM_TURN_ENGINE, AM_XC_CALLS,
} from '../../shared/agent-mailbox.js';
import type { VmEventRequest } from '../hv/vm-event.js';
import type { LapicOptions } from '../hw/lapic.js';
import type { MachineBuffers } from '../machine.js';
import { Mailbox, getResponse, putRequest, xcServe } from './mailbox.js';
import { AgentFailure, AgentPending, thrownText, type AgentCalls, type AgentSpec } from './runner.js';
import type { XenControl } from './xc.js';

/** Default of --agent-timeout-ms: the most wall time one agent call (setup, one event) may take. */
export const AGENT_TIMEOUT_MS_DEFAULT = 5000;
/**
 * An agent module gets at least this long to load (a worker's start-up on a loaded machine takes a good
 * part of a second; a top-level await with nothing pending ends the thread at once, exit code 13).
 */
export const AGENT_LOAD_MS_MIN = 10_000;
/** Serial: how long the engine waits for an answer on its thread before it waits asynchronously (Ctrl-C gets through). */
const SYNC_WAIT_MS = 20;
/** Asynchronous waits are cut into slices this long (checks of Ctrl-C, the time limit, the thread's death). */
const SLICE_MS = 25;

/** The agent worker's compiled file (run from the sources too: workers always load the build). */
function agentWorkerFile(): { url: URL; execArgv: string[] } {
  const fromSource = import.meta.url.endsWith('.ts');
  return { url: new URL(`${fromSource ? '../../dist/' : '../../'}workers/agent.worker.js`, import.meta.url), execArgv: [] };
}

/** A worker for an agent, with its death recorded (an 'exit' or 'error' event; seen when the engine's thread is free). */
class AgentWorkerThread {
  readonly mb = new Mailbox();
  readonly worker: Worker;
  /** Why the thread is gone, or null while it lives. */
  dead: string | null = null;
  readonly exited: Promise<void>;
  /** The thread said it loaded the module (null), or why it could not (text). */
  readonly loaded: Promise<string | null>;

  constructor(workerData: Record<string, unknown>) {
    const { url, execArgv } = agentWorkerFile();
    this.worker = new Worker(url, { workerData: { ...workerData, sab: this.mb.sab }, execArgv });
    this.worker.on('error', (e) => { this.dead ??= `its thread crashed: ${thrownText(e)}`; });
    this.exited = new Promise((resolve) => this.worker.once('exit', (code) => { this.dead ??= `its thread exited with code ${code}`; resolve(); }));
    this.loaded = new Promise((resolve) => {
      this.worker.once('message', (msg: { loaded?: true; failed?: string }) => resolve(msg.failed ?? null));
      void this.exited.then(() => resolve(this.dead));
    });
  }

  /** End the thread whatever it is doing, and wait until it is gone (no orphan threads). */
  async stop(): Promise<void> {
    await this.worker.terminate();
    await this.exited;
  }
}

/** Serial: the agent's calls, made in its worker. */
export class RemoteAgent extends AgentWorkerThread implements AgentCalls {
  /** Wall ms the current call has spent with the agent (serving its libxc calls is the engine's time, not counted). */
  private waitedMs = 0;
  private loadFailure: string | null = null;

  constructor(spec: AgentSpec, nvcpus: number, private readonly timeoutMs: number) {
    super({ mode: 'calls', module: spec.module, args: spec.args, domid: spec.dom + 1, nvcpus });
  }

  /** Wait (at most the time limit) until the worker has loaded the agent's module. */
  async start(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const ms = Math.max(this.timeoutMs, AGENT_LOAD_MS_MIN);
    const late = new Promise<string>((resolve) => { timer = setTimeout(() => resolve(`the module did not finish loading within ${ms} ms`), ms); });
    this.loadFailure = await Promise.race([this.loaded, late]);
    clearTimeout(timer);
  }

  setup(xc: XenControl): unknown {
    if (this.loadFailure !== null) throw new AgentFailure(AF_LOAD, '', this.loadFailure);
    return this.ask(xc, AM_OP_SETUP);
  }

  onEvent(xc: XenControl, _domid: number, req: VmEventRequest): unknown {
    putRequest(this.mb, req);
    return this.ask(xc, AM_OP_EVENT);
  }

  resume(xc: XenControl): unknown { return this.pump(xc); }

  private ask(xc: XenControl, op: number): unknown {
    this.mb.i32[AM_OP] = op;
    this.waitedMs = 0;
    this.mb.handTo(AM_TURN_AGENT);
    return this.pump(xc);
  }

  /** Wait for the agent's answer, serving its libxc calls. Throws AgentPending after SYNC_WAIT_MS (see waitAnswer). */
  private pump(xc: XenControl): unknown {
    const mb = this.mb, i32 = mb.i32;
    const syncEnd = performance.now() + SYNC_WAIT_MS;
    for (;;) {
      const t = performance.now();
      const ok = mb.waitTurn(AM_TURN_ENGINE, Math.max(0, Math.min(SYNC_WAIT_MS, this.timeoutMs - this.waitedMs)));
      this.waitedMs += performance.now() - t;
      if (!ok) {
        if (this.dead !== null) throw new AgentFailure(AF_EXITED, '', this.dead);
        if (this.waitedMs >= this.timeoutMs) throw new AgentFailure(AF_TIMEOUT, '', `no answer within ${this.timeoutMs} ms (--agent-timeout-ms)`);
        if (performance.now() >= syncEnd) throw new AgentPending();
        continue;
      }
      switch (i32[AM_OP]) {
        case AM_OP_XC_CALL: xcServe(mb, xc); mb.handTo(AM_TURN_AGENT); continue;
        case AM_OP_SETUP_DONE: return undefined;
        case AM_OP_EVENT_DONE: return getResponse(mb);
        case AM_OP_FAILED: throw new AgentFailure(i32[AM_ERRNO], '', mb.readText());
        default: throw new Error(`this is a bug in vcpulab: agent mailbox holds message ${i32[AM_OP]}`);
      }
    }
  }

  /**
   * After AgentPending: wait without blocking this thread's event loop until the answer is there, the
   * thread died, the time limit passed ('ready': resume() then returns or throws), or Ctrl-C ('interrupted').
   */
  async waitAnswer(interrupt: { requested: boolean }): Promise<'ready' | 'interrupted'> {
    const i32 = this.mb.i32;
    for (;;) {
      if (Atomics.load(i32, AM_TURN) === AM_TURN_ENGINE || this.dead !== null || this.waitedMs >= this.timeoutMs) return 'ready';
      if (interrupt.requested) return 'interrupted';
      const t = performance.now();
      const w = Atomics.waitAsync(i32, AM_TURN, AM_TURN_AGENT, Math.min(SLICE_MS, this.timeoutMs - this.waitedMs));
      if (w.async) await w.value;
      else await new Promise((r) => setImmediate(r));
      this.waitedMs += performance.now() - t;
    }
  }
}

/** Threaded: the agent's own thread, running the runner and the agent's code (agent/agent-thread.ts). */
export class AgentThread extends AgentWorkerThread {
  constructor(readonly spec: AgentSpec, buffers: MachineBuffers, lapic: LapicOptions, private readonly timeoutMs: number) {
    super({ mode: 'thread', buffers, spec, lapic });
  }

  /** Why the agent failed (cause and text), or null while it is fine. Call from the engine's poll loop. */
  failure(now: number): AgentFailure | null {
    const i32 = this.mb.i32;
    const failed = Atomics.load(i32, AM_FAILED);
    if (failed !== 0) {
      const t = this.mb.readText(), cut = t.indexOf('\0');
      return new AgentFailure(failed, cut < 0 ? '' : t.slice(0, cut), t.slice(cut + 1));
    }
    const call = Atomics.load(i32, AM_CALL);
    const limit = call === AC_LOAD ? Math.max(this.timeoutMs, AGENT_LOAD_MS_MIN) : this.timeoutMs;
    if (call !== AC_NONE && now - this.mb.hf64[AM_CALL_T0_F64 >> 1] > limit) {
      return new AgentFailure(AF_TIMEOUT, AC_NAMES[call] + (call === AC_EVENT ? ` (request ${Atomics.load(i32, AM_CALL_SEQ)})` : ''),
        `no answer within ${limit} ms${call === AC_LOAD ? '' : ' (--agent-timeout-ms)'}`);
    }
    if (this.dead !== null) return new AgentFailure(AF_EXITED, AC_NAMES[call] ?? '', this.dead);
    return null;
  }

  /** Is the agent's thread inside a call (load, setup, one event) now? */
  inCall(): boolean { return Atomics.load(this.mb.i32, AM_CALL) !== AC_NONE; }

  get events(): number { return Atomics.load(this.mb.i32, AM_CALL_SEQ); }
  get calls(): number { return Atomics.load(this.mb.i32, AM_XC_CALLS); }
}

/**
 * Check an agent module before a run, in a throwaway worker (its top-level code may loop, exit or never
 * settle): it must import within `timeoutMs` and export an agent. Returns null, or why not (bad input).
 */
export async function agentModuleCheck(module: string, timeoutMs: number): Promise<string | null> {
  const t = new AgentWorkerThread({ mode: 'check', module });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`agent module did not finish loading within ${timeoutMs} ms (--agent-timeout-ms): does its top-level code wait for something that never comes?`), timeoutMs);
  });
  try {
    const r = await Promise.race([t.loaded, late]);
    if (r === null) return null;
    // Node ends a thread whose top-level await can never settle with exit code 13.
    if (r === 'its thread exited with code 13') return 'agent module never finished loading (a top-level await that never settles)';
    return r.startsWith('its thread') ? `agent module ended the thread that loaded it (${r.slice(11)})` : r;
  } finally {
    clearTimeout(timer);
    await t.stop();
  }
}
