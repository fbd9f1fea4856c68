// The threaded engine: one worker thread per pCPU, each a long-running piscina task; real
// parallelism and real races. Past THREADS_PER_CORE pCPUs per core (or with --threads) a thread hosts several pCPUs
// and runs them in turn (engine/pcpu-thread.ts). The main thread only drains event rings, watches for the end, the
// wall limit, SIGINT and stalls, and controls the pCPUs: stop and pause through shared control words
// (read at every burst boundary), the frames of a freeze (--freeze-on) over comlink while they are parked.
import { MessageChannel } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { Piscina } from 'piscina';
import * as Comlink from 'comlink';
import * as C from '../../shared/machine.js';
import { PC_BURSTS, PC_CLOCK_F64, PC_PARKED, PC_STARTED, PC_STATE, PEND_KICK, PS_IDLE, PS_STOPPED, PS_WAIT_SIPI } from '../../shared/pcpu.js';
import type { PcpuControl, PcpuTask } from './pcpu-thread.js';
import { freezeReport, type CoreFrame, type FreezeReport } from './freeze.js';
import { endReason, stallIdleDetail, totalInstructions, type EngineInput, type EngineResult, type Outcome } from './common.js';
import type { Machine } from '../machine.js';
import type { AgentResult } from './common.js';
import { agentFailedFinding } from './common.js';
import { AgentThread } from '../agent/remote.js';
import { VR_NOTIFY, vmEventRingBase } from '../../shared/vm-event.js';

/**
 * The main thread's poll of the event rings and end conditions backs off from POLL_MIN_MS to POLL_MAX_MS
 * while the rings stay empty, and goes back to POLL_MIN_MS as soon as a drain finds events (a full ring
 * makes its pCPU wait for the drain). On 2 cores every wake-up of the main thread preempts a pCPU thread,
 * and under lax sync the others then wait for that one too. The end of the last domain wakes the main
 * thread at once (domainEnd notifies CTL_LIVE_DOMAINS); other ends (STOP by a limit, an abort, SIGINT, a
 * stall) are seen within POLL_MAX_MS.
 */
const POLL_MIN_MS = 2;
const POLL_MAX_MS = 16;
/** How long stopped workers get to return before their threads are terminated. */
const STOP_GRACE_MS = 3000;
/** How long agent threads get to return once the run stopped (one still in the agent's code is then terminated). */
const AGENT_STOP_GRACE_MS = 500;

/**
 * The worker entry point, always the build's: from the sources (vitest importing src/) too, since Node 20
 * cannot load TypeScript in a worker (the tests build first). No execArgv is given, so workers inherit the
 * process's: `--cpu-prof` then profiles each pCPU thread as well.
 */
export function workerFile(name: 'pcpu' | 'agent' | 'hunt'): string {
  const fromSource = import.meta.url.endsWith('.ts');
  return new URL(`${fromSource ? '../../dist/' : '../../'}workers/${name}.worker.js`, import.meta.url).href;
}

/**
 * Default worker threads: one per pCPU up to THREADS_PER_CORE per core (at least THREADS_MIN), so each core
 * keeps several threads that the OS preempts at arbitrary points (the races the threaded engine is for);
 * beyond that, pCPUs share the threads and interleave a burst at a time. A thread is a V8 isolate with its
 * own heap and compiled code, about 5 MiB and 12 ms of a core to start before any of vcpulab loads
 * (bench/startup.ts): on 2 cores, 64 pCPUs on 64 threads took 3.8 s and 990 MiB to run the counter
 * scenario, on 8 threads 1.3 s and 195 MiB; 254 on 254 threads 13 s and 3 GiB.
 */
export const THREADS_PER_CORE = 4;
export const THREADS_MIN = 8;

/** Default worker threads for `pcpus` pCPUs on `cores` cores (see THREADS_PER_CORE). */
export function threadsFor(pcpus: number, cores: number): number {
  return Math.min(pcpus, Math.max(THREADS_MIN, THREADS_PER_CORE * cores));
}

/** How long the pCPUs get to park at a burst boundary, and each to answer for its frame, on a freeze. */
const FREEZE_GRACE_MS = 3000;

export async function runThreaded({ m, params, collector, opts, agents }: EngineInput): Promise<EngineResult> {
  const n = m.npcpus;
  const nt = Math.max(1, Math.min(n, opts.threads));
  const filename = workerFile('pcpu');
  Atomics.store(m.ctl, C.CTL_START_PENDING, (agents?.length ?? 0) + nt);
  const pool = new Piscina({ filename, minThreads: nt, maxThreads: nt, idleTimeout: Infinity, maxQueue: nt, concurrentTasksPerWorker: 1 });
  const t0 = performance.now();
  /** Per pCPU, the control of the thread that hosts it. */
  const controls: Comlink.Remote<PcpuControl>[] = [];
  const ports: MessageChannel['port1'][] = [];
  let failure: string | null = null;
  const tasks: Promise<void>[] = [];
  for (let t = 0; t < nt; t++) {
    const { port1, port2 } = new MessageChannel();
    // Interleaved, so the low pCPUs a small domain is placed on land on different threads.
    const ids: number[] = [];
    for (let id = t; id < n; id += nt) ids.push(id);
    const task: PcpuTask = { buffers: m.buffers, ids, threads: nt, params, slackCycles: opts.slackCycles, burst: opts.burst, port: port2, injectFault: opts.injectWorkerFault };
    const what = ids.length === 1 ? `pCPU ${ids[0]} worker` : `worker thread ${t} (pCPUs ${ids.join(', ')})`;
    tasks.push(pool.run(task, { transferList: [port2] as never }).catch((e: unknown) => {
      failure ??= `${what} failed: ${e instanceof Error ? e.message : String(e)}`;
      Atomics.store(m.ctl, C.CTL_ABORT, 1);
    }));
    const control = Comlink.wrap<PcpuControl>(port1 as unknown as Comlink.Endpoint);
    for (const id of ids) controls[id] = control;
    ports.push(port1);
  }
  // Each agent in a thread of its own (not the pool's: the main thread terminates it when it fails or hangs).
  const agentSpecs = agents ?? [];
  const agentThreads = agentSpecs.map((spec) => new AgentThread(spec, m.buffers, params.lapic, opts.agentTimeoutMs));

  let outcome: Outcome | null = null;
  let reason: string | null = null;
  let freeze: FreezeReport | undefined;
  let agentError: ReturnType<AgentThread['failure']> = null;
  let agentErrorAt = -1;
  let lastProgress = -1, lastProgressAt = performance.now(), lastReport = 0, pollMs = POLL_MIN_MS;
  while (outcome === null) {
    const live = Atomics.load(m.ctl, C.CTL_LIVE_DOMAINS);
    if (live !== 0) {
      const w = Atomics.waitAsync(m.ctl, C.CTL_LIVE_DOMAINS, live, pollMs);
      if (w.async) await w.value;
    }
    pollMs = collector.drainAll() > 0 ? POLL_MIN_MS : Math.min(2 * pollMs, POLL_MAX_MS);
    const now = performance.now();
    if (failure !== null) { outcome = 'aborted'; reason = failure; break; }
    const wall = performance.timeOrigin + now;
    const failedAgent = agentThreads.findIndex((a) => a.failure(wall) !== null);
    if (failedAgent >= 0) {
      const a = agentThreads[failedAgent];
      agentError = (a.failure(wall) as NonNullable<ReturnType<AgentThread['failure']>>);
      agentErrorAt = failedAgent;
      void a.stop(); // now: it may be in a loop that never ends
      outcome = 'aborted';
      reason = agentFailedFinding(m, collector, a.spec.dom, agentError);
      break;
    }
    const hit = opts.freezeOn !== undefined ? collector.findings.watched : null;
    if (hit !== null) {
      freeze = freezeReport(m, collector.domainNames, collector.code, opts.freezeOn as string, hit, await freezeFrames(m, collector, controls));
      outcome = 'limit';
      reason = `--freeze-on ${opts.freezeOn}: frozen at the first ${hit.signature}`;
      break;
    }
    const end = endReason(m);
    if (end !== null) { outcome = end; break; }
    if (opts.interrupt.requested) { outcome = 'aborted'; reason = 'interrupted (SIGINT)'; break; }
    if (opts.maxMs > 0 && now - t0 > opts.maxMs) { outcome = 'limit'; reason = `--max-ms ${opts.maxMs} reached`; break; }
    const progress = progressCount(m);
    if (allIdle(m)) {
      if (Atomics.load(m.ctl, C.CTL_LIMITED_VCPUS) > 0) { outcome = 'limit'; reason = 'every vCPU that can still run reached --max-instructions'; break; }
    }
    // Worker start-up (~0.5 s, more under load) is not a hang: the watchdog starts once all threads run.
    // An agent in a call holds its vCPUs paused: that is not a stall (its time limit ends a hung call).
    if (progress !== lastProgress || !allStarted(m) || agentThreads.some((a) => a.inCall())) { lastProgress = progress; lastProgressAt = now; }
    else if (now - lastProgressAt > opts.watchdogMs || (allIdle(m) && now - lastProgressAt > Math.min(opts.watchdogMs, 200))) {
      // All idle: the guests can never run again (a result). Not idle: a pCPU thread is hung (an abort).
      const idle = allIdle(m);
      outcome = idle ? 'completed' : 'aborted';
      reason = stall(m, collector, idle);
      break;
    }
    if (opts.onProgress !== undefined && now - lastReport > 100) { lastReport = now; opts.onProgress(totalInstructions(m)); }
  }

  // Stop every pCPU: the shared word, then a kick so sleepers wake now.
  Atomics.store(m.ctl, C.CTL_STOP, 1);
  for (let id = 0; id < n; id++) {
    m.kick(id, PEND_KICK);
  }
  const drainer = setInterval(() => collector.drainAll(), POLL_MIN_MS);
  for (const a of agentSpecs) Atomics.notify(m.vr32, vmEventRingBase(a.dom) + VR_NOTIFY);
  const settled = await Promise.race([Promise.all(tasks).then(() => true), sleep(STOP_GRACE_MS).then(() => false)]);
  // An agent thread that does not return soon (its code is in a loop that ignores the stop) is terminated.
  const agentsDone = await Promise.race([Promise.all(agentThreads.map((a) => a.exited)).then(() => true), sleep(settled ? AGENT_STOP_GRACE_MS : 0).then(() => false)]);
  clearInterval(drainer);
  if (!settled) {
    const stuck = [];
    for (let id = 0; id < n; id++) if (Atomics.load(m.pc32, m.pcpuBase(id) + PC_STATE) !== PS_STOPPED) stuck.push(id);
    outcome = 'aborted';
    reason = `${reason !== null ? reason + '; ' : ''}pCPU thread(s) ${stuck.join(', ')} did not stop within ${STOP_GRACE_MS} ms and were terminated`;
  }
  for (const c of new Set(controls)) c[Comlink.releaseProxy]();
  for (const p of ports) p.close();
  const agentResults: AgentResult[] = agentThreads.map((a, k) => ({
    dom: a.spec.dom, events: a.events, calls: a.calls,
    error: k === agentErrorAt && agentError !== null ? agentError.message : agentsDone || a.dead !== null ? null : 'did not stop in time',
  }));
  await pool.destroy(); // terminates any thread still running: no orphans
  await Promise.all(agentThreads.map((a) => a.stop()));
  collector.drainAll();
  return { outcome, reason, wallMs: performance.now() - t0, steps: progressCount(m), threads: nt, agents: agentResults, freeze };
}

/**
 * Park every pCPU at its next burst boundary (CTL_PAUSE; a pCPU in a lax-sync wait gives up the wait) and
 * ask each parked one for its frame over comlink. The rings are drained meanwhile, since a pCPU whose ring
 * is full waits for the drain before it can reach the boundary. A thread that does not park in time (or
 * ended) gets a null frame: its LAPIC pages are still shown. The run ends after this; nothing resumes.
 */
async function freezeFrames(m: Machine, collector: EngineInput['collector'], controls: Comlink.Remote<PcpuControl>[]): Promise<(CoreFrame | null)[]> {
  Atomics.store(m.ctl, C.CTL_PAUSE, 1);
  const deadline = performance.now() + FREEZE_GRACE_MS;
  const parked = (id: number): boolean => Atomics.load(m.pc32, m.pcpuBase(id) + PC_PARKED) !== 0;
  const settled = (id: number): boolean => parked(id) || Atomics.load(m.pc32, m.pcpuBase(id) + PC_STATE) === PS_STOPPED;
  for (let id = 0; id < m.npcpus && performance.now() < deadline; id++) {
    while (!settled(id) && performance.now() < deadline && Atomics.load(m.ctl, C.CTL_ABORT) === 0) {
      collector.drainAll();
      await sleep(1);
    }
  }
  const ac = new AbortController();
  const timeout = sleep(Math.max(0, deadline - performance.now()) + FREEZE_GRACE_MS, null, { signal: ac.signal }).catch(() => null);
  try {
    return await Promise.all(controls.map((c, id) => parked(id) ? Promise.race([c.frame(id), timeout]) : null));
  } finally {
    ac.abort();
  }
}

function progressCount(m: Machine): number {
  let s = 0;
  for (let i = 0; i < m.npcpus; i++) s += Atomics.load(m.pc32, m.pcpuBase(i) + PC_BURSTS);
  return s;
}

function allStarted(m: Machine): boolean {
  for (let i = 0; i < m.npcpus; i++) if (Atomics.load(m.pc32, m.pcpuBase(i) + PC_STARTED) === 0) return false;
  return true;
}

function allIdle(m: Machine): boolean {
  for (let i = 0; i < m.npcpus; i++) {
    const st = Atomics.load(m.pc32, m.pcpuBase(i) + PC_STATE);
    // A pCPU an INIT reset runs nothing again: as good as idle for deciding that nothing can run.
    if (st !== PS_IDLE && st !== PS_STOPPED && st !== PS_WAIT_SIPI) return false;
  }
  return true;
}

function stall(m: Machine, collector: EngineInput['collector'], idle: boolean): string {
  const detail = idle
    ? stallIdleDetail(m)
    : 'no pCPU completed a burst within the watchdog period (a pCPU thread is hung)';
  let t = 0;
  for (let i = 0; i < m.npcpus; i++) t = Math.max(t, m.pcF64[(m.pcpuBase(i) + PC_CLOCK_F64) >> 1]);
  collector.findings.add('STALL', idle ? 'all_blocked' : 'hung', [], t, 0, '', -1, detail, () => collector.recent(0));
  return detail;
}
