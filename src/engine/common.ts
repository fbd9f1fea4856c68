// What both engines take and return.
import * as C from '../../shared/machine.js';
import { PC_CLOCK_F64, PC_INSNS_F64 } from '../../shared/pcpu.js';
import { RS_BLOCKED, VCPU_STRIDE_WORDS, VC_RUNSTATE } from '../../shared/vcpu.js';
import type { Machine } from '../machine.js';
import type { PcpuParams } from '../hv/pcpu-ctx.js';
import type { Collector } from '../trace/collector.js';
import type { AgentFailure, AgentSpec } from '../agent/runner.js';
import type { FreezeReport } from './freeze.js';

export type Outcome = 'completed' | 'limit' | 'aborted';

/**
 * How long a serial run is, in the units pct places its change points in: choice steps and device steps
 * (SerialStats). A hunt measures them from a first run (EngineResult.stats) and grows them when it sees
 * longer runs.
 */
export interface StepEstimate {
  choice: number;
  device: number;
}

/**
 * Serial: how a recorded tape is followed. 'exact': a step the tape names that is not possible here is a
 * divergence and aborts the run. 'guided' (shrinking): such a step goes to the next eligible participant,
 * and when the tape ends the run finishes with a fixed tail (round-robin, one shared access per step).
 */
export type ReplayMode = 'exact' | 'guided';

export interface EngineOptions {
  seed: number;
  strategy: string;
  /** Lax synchronisation: a pCPU may run at most this many cycles ahead of the slowest running one. */
  slackCycles: number;
  /** Wall-clock limit in ms; 0 = none. */
  maxMs: number;
  /** Wall ms without any pCPU progress before STALL (threaded engine). */
  watchdogMs: number;
  /** Serial: recorded schedule to follow instead of the strategy. */
  replayRuns?: Int32Array;
  /** Serial: how replayRuns is followed; default 'exact'. */
  replayMode?: ReplayMode;
  /** Serial, pct: bug depth d (d - 1 change points); default PCT_DEPTH_DEFAULT (3). */
  pctDepth?: number;
  /** Serial, pct: where change points may fall; default STEP_ESTIMATE_DEFAULT (strategies/pct.ts). */
  stepEstimate?: StepEstimate;
  /** Serial: keep the chosen schedule (for --schedule-out). */
  recordSchedule: boolean;
  /** Guest instructions per burst between hypervisor checks (threaded; serial bursts end at shared accesses). */
  burst: number;
  /** Called now and then with the guest instructions retired so far. */
  onProgress?: (instructions: number) => void;
  /** Threaded: the pCPU whose thread throws after its first burst (testing aid), -1 none. */
  injectWorkerFault: number;
  /** Threaded: worker threads that host the pCPUs (pCPU i runs on thread i mod threads); see threadsFor. */
  threads: number;
  /** The most wall ms one agent call (setup, one event) may take (--agent-timeout-ms). */
  agentTimeoutMs: number;
  /**
   * Serial: call agents in the engine's thread instead of their own workers (the bench's baseline for the
   * cost of the isolation; an agent that hangs then hangs the run).
   */
  agentsInline?: boolean;
  /** Set by the SIGINT handler; the engine stops and returns a partial result. */
  interrupt: { requested: boolean };
  /**
   * `--freeze-on` as given: once the collector's Findings.watched is set, the engine stops every pCPU at a
   * step (serial) or burst (threaded) boundary, returns their frames and ends the run (outcome limit).
   */
  freezeOn?: string;
}

export interface EngineResult {
  outcome: Outcome;
  /** Why the run was aborted or stopped early (null when it completed on its own). */
  reason: string | null;
  wallMs: number;
  /** Serial: the schedule, as runs of (pCPU, steps). */
  schedule?: Int32Array;
  steps: number;
  /** Threads that ran the pCPUs (threaded: --threads or its default; serial: 1). */
  threads?: number;
  agents?: AgentResult[];
  /** Serial: what the run's steps were (a hunt grows its StepEstimate from these; shrinking reports preemptions). */
  stats?: SerialStats;
  /** --freeze-on: the machine when the first matching finding was judged. */
  freeze?: FreezeReport;
}

export interface SerialStats {
  /** Steps taken when more than one participant was eligible (StepEstimate.choice). */
  choiceSteps: number;
  /**
   * LAPIC steps after which a scheduler timer interrupt would have taken the vCPU off its pCPU
   * (Pcpu.preemptSwitches): where pct places its preemptions (StepEstimate.device).
   */
  deviceSteps: number;
  /**
   * pCPU steps in which the guest accessed a LAPIC register: the passed-through xAPIC page or x2APIC
   * MSRs, an x2APIC MSR exit, or an APIC-access exit. With one shared access per step (pct, pos,
   * round-robin) the step ended on that access.
   */
  lapicSteps: number;
  /** pCPU steps that began with a scheduler timer interrupt (a negative tape entry). */
  preemptions: number;
}

export interface EngineInput {
  m: Machine;
  params: PcpuParams;
  collector: Collector;
  opts: EngineOptions;
  /** vm_event agents, one per domain that names one. */
  agents?: AgentSpec[];
}

/** The agents' counters, for the report. */
export interface AgentResult {
  dom: number;
  events: number;
  calls: number;
  /** Why the agent stopped before the run did (its code threw), or null. */
  error: string | null;
}

export function totalInstructions(m: Machine): number {
  let n = 0;
  for (let p = 0; p < m.npcpus; p++) n += m.pcF64[(m.pcpuBase(p) + PC_INSNS_F64) >> 1];
  return n;
}

/** The STALL detail when every pCPU is idle: nothing can ever run again. */
export function stallIdleDetail(m: Machine): string {
  let blocked = 0;
  for (let v = 0; v < m.nvcpus; v++) if (Atomics.load(m.vc32, v * VCPU_STRIDE_WORDS + VC_RUNSTATE) === RS_BLOCKED) blocked++;
  return `no pCPU can make progress: ${blocked} vCPU(s) blocked in hlt with nothing left to wake them`;
}

/** Why the run should end now, judged from shared state alone (same answer in both engines). */
export function endReason(m: Machine): Outcome | null {
  if (Atomics.load(m.ctl, C.CTL_LIVE_DOMAINS) === 0) return 'completed';
  return null;
}

/**
 * An agent failed: the AGENT_FAILED finding (at the furthest pCPU clock: the agent has no pCPU) and the
 * run's reason. The run ends (outcome 'aborted').
 */
export function agentFailedFinding(m: Machine, collector: Collector, dom: number, f: AgentFailure): string {
  const name = collector.domainNames[dom];
  const detail = `the agent of domain ${name} failed in ${f.call !== '' ? f.call : 'a call'}: ${f.why}`;
  let t = 0;
  for (let i = 0; i < m.npcpus; i++) t = Math.max(t, m.pcF64[(m.pcpuBase(i) + PC_CLOCK_F64) >> 1]);
  collector.findings.add('AGENT_FAILED', f.causeToken, [], t, -1, name, -1, detail, () => []);
  return detail;
}
