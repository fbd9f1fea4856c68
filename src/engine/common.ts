// What both engines take and return.
import * as C from '../../shared/machine.js';
import { PC_INSNS_F64 } from '../../shared/pcpu.js';
import { RS_BLOCKED, VCPU_STRIDE_WORDS, VC_RUNSTATE } from '../../shared/vcpu.js';
import type { Machine } from '../machine.js';
import type { PcpuParams } from '../hv/pcpu-loop.js';
import type { Collector } from '../trace/collector.js';
import type { AgentSpec } from '../agent/runner.js';

export type Outcome = 'completed' | 'limit' | 'aborted';

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
  /** Serial: keep the chosen schedule (for --schedule-out). */
  recordSchedule: boolean;
  /** Guest instructions per burst between hypervisor checks (threaded; serial bursts end at shared accesses). */
  burst: number;
  /** Called now and then with the guest instructions retired so far. */
  onProgress?: (instructions: number) => void;
  /** Threaded: the pCPU whose thread throws after its first burst (testing aid), -1 none. */
  injectWorkerFault: number;
  /** Set by the SIGINT handler; the engine stops and returns a partial result. */
  interrupt: { requested: boolean };
}

export interface EngineResult {
  outcome: Outcome;
  /** Why the run was aborted or stopped early (null when it completed on its own). */
  reason: string | null;
  wallMs: number;
  /** Serial: the schedule, as runs of (pCPU, steps). */
  schedule?: Int32Array;
  steps: number;
  agents?: AgentResult[];
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
