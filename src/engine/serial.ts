// The serial engine: every pCPU stepped in this one thread, the next one chosen by a seeded
// strategy at shared accesses (CpuCore.sharedLeft). Deterministic: no wall-clock input
// reaches the machine, rings are drained synchronously, and the schedule can be recorded/replayed.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import * as C from '../../shared/machine.js';
import { PC_EXITS, PC_PENDING, PC_STATE, PS_WAIT_SIPI } from '../../shared/pcpu.js';
import { EXIT_APIC_ACCESS } from '../isa/interp.js';
import { schedHasRunnable } from '../hv/sched/sched.js';
import { Pcpu, STEP_STOPPED } from '../hv/pcpu-loop.js';
import type { RingFullHandler } from '../trace/ring.js';
import type { Collector } from '../trace/collector.js';
import { agentFailedFinding, stallIdleDetail, totalInstructions, type AgentResult, type EngineInput, type EngineResult } from './common.js';
import { GuidedReplayStrategy, makeStrategy, ReplayStrategy, ScheduleDiverged, ScheduleRecorder, type Strategy } from './strategies/index.js';
import { bug } from '../errors.js';
import { freezeReport, pcpuCoreFrame, type FreezeReport } from './freeze.js';
import { AgentFailure, AgentPending, AgentRunner, inlineCalls, loadAgent, type AgentCalls } from '../agent/runner.js';
import { RemoteAgent } from '../agent/remote.js';
import { AgentStopped, type AgentHost } from '../agent/xc.js';
import { domainVcpus } from '../hv/altp2m.js';
import { VM_EVENT_INTERFACE_VERSION } from '../../shared/vm-event.js';

/** Guest instructions a pCPU may run without touching shared state before it must offer a choice. */
export const SERIAL_BURST = 1000;
/** Steps between ring drains, progress reports and event-loop yields. */
const CHUNK = 1 << 14;

class DrainNow implements RingFullHandler {
  constructor(private readonly c: Collector) {}
  ringFull(p: number): void { this.c.drainOne(p); }
}

/** Could stepping this pCPU do anything? */
function hasWork(p: Pcpu, all: readonly Pcpu[]): boolean {
  if (p.cur >= 0) {
    // A hypervisor wait held off by another pCPU's LAPIC (a guest raised its TPR) goes on only while that
    // pCPU still runs something that could give the LAPIC back; else stepping it would spin for ever.
    const q = p.waitHeldOffOn();
    if (q < 0 || q === p.id) return true;
    const t = all[q];
    return t.cur >= 0 ? t.waitHeldOffOn() < 0 : idleHasWork(t);
  }
  return idleHasWork(p);
}

/** A pCPU with no vCPU loaded: something pending, or a vCPU to pick up. */
function idleHasWork(p: Pcpu): boolean {
  // (a reset pCPU has dropped its vCPU: cur is -1 there)
  // A pCPU an INIT reset runs nothing again: stepping it would only hold the others back (its clock stops).
  if (p.m.pc32[p.base + PC_STATE] === PS_WAIT_SIPI) return false;
  if (p.m.pc32[p.base + PC_PENDING] !== 0) return true;
  return schedHasRunnable(p.m, p.id, p.params.migrate);
}

const STEPPED = 0, NOTHING = 1, DIVERGED = 2, AGENT_PENDING = 3, AGENT_FAILED = 4, INTERRUPTED = 5;

export async function runSerial({ m, params, collector, opts, agents }: EngineInput): Promise<EngineResult> {
  const n = m.npcpus;
  m.exclusive = true; // this thread is the only one touching the machine (agents are stepped here too)
  const full = new DrainNow(collector);
  const pcpus: Pcpu[] = [];
  for (let i = 0; i < n; i++) {
    pcpus.push(new Pcpu(m, i, params, full));
  }
  // Agents are participants n, n+1, ...: the strategy chooses them like pCPUs whenever they have work.
  const participants = n + (agents?.length ?? 0);
  const strategy: Strategy = opts.replayRuns === undefined
    ? makeStrategy(opts.strategy, opts.seed, { pctDepth: opts.pctDepth, stepEstimate: opts.stepEstimate, participants })
    : opts.replayMode === 'guided' ? new GuidedReplayStrategy(opts.replayRuns) : new ReplayStrategy(opts.replayRuns);
  const recorder = opts.recordSchedule ? new ScheduleRecorder() : undefined;
  const runners: AgentRunner[] = [];
  const agentResults: AgentResult[] = [];
  const elig = new Int32Array(participants);
  const clocks = new Float64Array(n);
  const work = new Uint8Array(n);
  // Where each pCPU counts its APIC-access exits: with CpuCore.apicAccesses, what tells a LAPIC step.
  const apicExitIdx = new Int32Array(n);
  for (let i = 0; i < n; i++) apicExitIdx[i] = pcpus[i].base + PC_EXITS + EXIT_APIC_ACCESS;
  const pc32 = m.pc32;
  const t0 = performance.now();
  let steps = 0, choiceSteps = 0, lapicSteps = 0, deviceSteps = 0, preemptions = 0;
  const liveIdx = C.CTL_LIVE_DOMAINS;
  let outcome: EngineResult['outcome'] | null = null;
  let reason: string | null = null;
  let divergence = '';
  let inAgent = false;
  let freeze: FreezeReport | undefined;
  // --freeze-on: judge after every step, so the run stops at the step where the finding was judged.
  const freezeOn = opts.freezeOn;
  /** The agent whose call is still to answer (AGENT_PENDING), and the participant its step was chosen as. */
  let pendingAgent = -1;
  let failure: { k: number; f: AgentFailure } | null = null;

  /** One choice and one step (a pCPU's, or an agent's unless `allowAgents` is false). */
  const stepOnce = (allowAgents: boolean): number => {
    let min = Infinity;
    for (let i = 0; i < n; i++) {
      const w = hasWork(pcpus[i], pcpus);
      work[i] = w ? 1 : 0;
      clocks[i] = pcpus[i].core.clock;
      if (w && clocks[i] < min) min = clocks[i];
    }
    let count = 0;
    const bound = min + opts.slackCycles;
    for (let i = 0; i < n; i++) if (work[i] === 1 && clocks[i] <= bound) elig[count++] = i;
    if (allowAgents) for (let k = 0; k < runners.length; k++) if (agentResults[k].error === null && runners[k].hasWork()) elig[count++] = n + k;
    if (count === 0) return NOTHING;
    if (count > 1) choiceSteps++;
    let p: number;
    try {
      p = strategy.next(elig, count);
    } catch (e) {
      if (e instanceof ScheduleDiverged) { divergence = e.message; return DIVERGED; }
      throw e;
    }
    let shared = strategy.shared;
    if (recorder !== undefined) recorder.record(p, shared);
    steps++;
    if (p >= n) {
      const r = agentStep(p - n);
      if (r !== AGENT_PENDING) strategy.after(p, false, false); // else when it settles (settleAgent)
      return r;
    }
    const pcpu = pcpus[p], core = pcpu.core, ix = apicExitIdx[p];
    // A LAPIC step: the guest reached a LAPIC register (passed through, an x2APIC MSR exit, or the
    // APIC-access page); with one shared access per step the step ended on it. A device step: a LAPIC
    // step after which a timer interrupt would take the vCPU off the pCPU (where pct and pos preempt).
    const a0 = core.apicAccesses + pc32[ix];
    if (shared < 0) { preemptions++; pcpu.preempt(); shared = -shared; }
    if (pcpu.step(SERIAL_BURST, shared) === STEP_STOPPED) bug('a serial pCPU stopped on its own');
    const lapic = core.apicAccesses + pc32[ix] !== a0;
    let dev = false;
    if (lapic) {
      lapicSteps++;
      dev = pcpu.preemptSwitches();
      if (dev) deviceSteps++;
    }
    strategy.after(p, lapic, dev);
    return STEPPED;
  };

  /** An agent's wait steps the machine (never another agent) until its condition holds. */
  const host: AgentHost = {
    waitUntil(cond: () => boolean, what: string): void {
      while (!cond()) {
        if (Atomics.load(m.ctl, liveIdx) === 0) throw new AgentStopped(`the run ended while the agent waited for ${what}`);
        const r = stepOnce(false);
        if (r === DIVERGED) throw new ScheduleDiverged(divergence);
        if (r === NOTHING) throw new AgentStopped(`nothing can run while the agent waits for ${what}`);
      }
    },
  };
  /** One agent step: STEPPED, AGENT_PENDING (its answer is still to come), or AGENT_FAILED (`failure`). */
  const agentStep = (k: number): number => {
    if (inAgent) bug('an agent was stepped inside another agent call');
    inAgent = true;
    try {
      runners[k].step();
      return STEPPED;
    } catch (e) {
      if (e instanceof ScheduleDiverged) throw e;
      if (e instanceof AgentPending) { pendingAgent = k; return AGENT_PENDING; }
      agentResults[k].error = e instanceof Error ? e.message : String(e);
      if (e instanceof AgentFailure) { failure = { k, f: e }; return AGENT_FAILED; }
      if (!(e instanceof AgentStopped)) throw e;
      return STEPPED; // the run ended, or nothing can run, while the agent waited: it stops, the run goes on
    } finally {
      inAgent = false;
    }
  };
  /**
   * An agent's call did not answer at once: wait for it off this thread's event loop (Ctrl-C gets in), then
   * finish its step. Nothing else is stepped meanwhile, so the run is the same as if it had answered at once.
   */
  const settleAgent = async (p: number): Promise<number> => {
    const k = pendingAgent;
    for (;;) {
      if (await (remotes[k] as RemoteAgent).waitAnswer(opts.interrupt) === 'interrupted') return INTERRUPTED;
      const r = agentStep(k);
      if (r === AGENT_PENDING) continue;
      pendingAgent = -1;
      if (p >= 0) strategy.after(p, false, false);
      return r;
    }
  };
  const remotes: (RemoteAgent | null)[] = [];
  try {
    for (const a of agents ?? []) {
      let calls: AgentCalls;
      if (opts.agentsInline === true) { calls = inlineCalls(await loadAgent(a.module)); remotes.push(null); }
      else {
        const r = new RemoteAgent(a, domainVcpus(m, a.dom)[1], opts.agentTimeoutMs);
        remotes.push(r);
        await r.start();
        calls = r;
      }
      runners.push(new AgentRunner(m, a, calls, host, params.lapic, VM_EVENT_INTERFACE_VERSION));
      agentResults.push({ dom: a.dom, events: 0, calls: 0, error: null });
    }
    // Agents attach and set up before the domains run (a tool and a domain created paused), as in threaded.
    for (let k = 0; k < runners.length && outcome === null; k++) {
      let r = agentStep(k);
      if (r === AGENT_PENDING) r = await settleAgent(-1);
      if (r === INTERRUPTED) { outcome = 'aborted'; reason = 'interrupted (SIGINT)'; }
      else if (r === AGENT_FAILED && failure !== null) {
        const fl: { k: number; f: AgentFailure } = failure;
        outcome = 'aborted';
        reason = agentFailedFinding(m, collector, runners[fl.k].spec.dom, fl.f);
      }
    }

    /** Ends the run for a step's result that ends it (returns true), else returns false. */
    const endFor = (r: number): boolean => {
      if (r === INTERRUPTED) { outcome = 'aborted'; reason = 'interrupted (SIGINT)'; return true; }
      if (r === AGENT_FAILED && failure !== null) {
        const fl: { k: number; f: AgentFailure } = failure;
        outcome = 'aborted';
        reason = agentFailedFinding(m, collector, runners[fl.k].spec.dom, fl.f);
        return true;
      }
      if (r === DIVERGED) { outcome = 'aborted'; reason = `replay diverged: ${divergence}`; return true; }
      if (r === NOTHING) {
        if (Atomics.load(m.ctl, C.CTL_LIMITED_VCPUS) > 0) { outcome = 'limit'; reason = 'every vCPU that can still run reached --max-instructions'; }
        else { outcome = 'completed'; reason = stallFinding(pcpus, collector); }
        return true;
      }
      return false;
    };
    /** --freeze-on: the run stops at the step where the first matching finding was judged (returns true). */
    const frozen = (): boolean => {
      collector.drainAll();
      const hit = collector.findings.watched;
      if (hit === null || freezeOn === undefined) return false;
      freeze = freezeReport(m, collector.domainNames, collector.code, freezeOn, hit, pcpus.map(pcpuCoreFrame));
      outcome = 'limit'; reason = `--freeze-on ${freezeOn}: frozen at the first ${hit.signature}`;
      return true;
    };
    run: for (; outcome === null;) {
      // No await in this loop (V8 optimizes it on the stack): an agent's answer that is still to come is
      // waited for below, where the loop yields anyway.
      let pending = false;
      for (let k = 0; k < CHUNK; k++) {
        if (m.ctl[liveIdx] === 0) { outcome = 'completed'; break run; } // endReason, inlined; plain: one thread
        let r: number;
        try {
          r = stepOnce(true);
        } catch (e) {
          if (e instanceof ScheduleDiverged) { divergence = e.message; r = DIVERGED; } else throw e;
        }
        // --freeze-on: judge after every step, so the run stops at the step where the finding was judged.
        if (r === STEPPED) { if (freezeOn !== undefined && frozen()) break run; continue; }
        if (r === AGENT_PENDING) { pending = true; break; }
        if (endFor(r)) break run;
      }
      if (pending) {
        let r: number;
        try {
          r = await settleAgent(n + pendingAgent);
        } catch (e) {
          if (e instanceof ScheduleDiverged) { divergence = e.message; r = DIVERGED; } else throw e;
        }
        if (endFor(r)) break;
        if (freezeOn !== undefined && frozen()) break;
      }
      collector.drainAll();
      if (opts.onProgress !== undefined) opts.onProgress(totalInstructions(m));
      if (opts.maxMs > 0 && performance.now() - t0 > opts.maxMs) { outcome = 'limit'; reason = `--max-ms ${opts.maxMs} reached`; break; }
      await yieldToLoop(); // lets SIGINT and timers in; changes nothing in the machine
      if (opts.interrupt.requested) { outcome = 'aborted'; reason = 'interrupted (SIGINT)'; break; }
    }
    if (strategy instanceof ReplayStrategy && outcome !== 'aborted' && !strategy.exhausted && opts.maxMs === 0 && freeze === undefined) {
      outcome = 'aborted';
      reason = 'replay diverged: the run ended before the schedule did';
    }
    Atomics.store(m.ctl, C.CTL_STOP, 1);
    for (const p of pcpus) p.stop();
    collector.drainAll();
    runners.forEach((r, k) => { agentResults[k].events = r.events; agentResults[k].calls = r.xc.calls; });
  } finally {
    // The agents' threads end with the run, whatever they are doing (no orphan threads).
    await Promise.all(remotes.map((r) => r?.stop()));
  }
  return {
    outcome: outcome ?? 'aborted', reason, wallMs: performance.now() - t0, schedule: recorder?.runs(), steps, agents: agentResults,
    stats: { choiceSteps, deviceSteps, lapicSteps, preemptions }, freeze,
  };
}

function stallFinding(pcpus: Pcpu[], collector: Collector): string {
  const m = pcpus[0].m;
  const detail = stallIdleDetail(m);
  let t = 0, at = 0;
  for (const p of pcpus) if (p.core.clock > t) { t = p.core.clock; at = p.id; }
  collector.drainAll();
  collector.findings.add('STALL', 'all_blocked', [], t, at, '', -1, detail, () => collector.recent(at));
  return detail;
}
