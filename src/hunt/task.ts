// One hunt task: run or replay one serial schedule of a prepared scenario and return a small record of
// what it found (signatures, step counts, digest). Runs inside a warm pool worker
// (workers/hunt.worker.ts): the scenario is prepared once per worker and campaign, then reused by every
// task that names the same scenario, CPU counts and content hash.
import { labPrepare, labRun, type Prepared, type RunConfig } from '../lab.js';
import type { ReplayMode } from '../schedule.js';
import { bug } from '../errors.js';
import type { RunReport } from '../report.js';

/** What a task needs to find (or make) its prepared scenario. */
export interface PrepSpec { scenario: string; pcpus?: number; vcpus?: number; hash: string }

export type HuntTask =
  | { type: 'run'; prep: PrepSpec; config: RunConfig; run: number; stepEstimate?: StepEstimate; record: boolean }
  | { type: 'replay'; prep: PrepSpec; config: RunConfig; run: number; tape: Int32Array; mode: ReplayMode };

export interface StepEstimate { choice: number; device: number }

/** One distinct signature a run produced. */
export interface SigHit { signature: string; kind: string; cause: string; count: number; detail: string }

export interface TaskResult {
  run: number;
  signatures: SigHit[];
  steps: number;
  stats: { choiceSteps: number; deviceSteps: number; preemptions: number } | null;
  digest: string;
  outcome: string;
  reason: string | null;
  wallMs: number;
  /** The estimate the run used (pct/pos), so a later re-run can use the same one. */
  stepEstimate?: StepEstimate;
  /** The recorded tape, when asked for. */
  tape?: Int32Array;
}

/** Prepared scenarios of this worker. A handful at most: a worker serves one campaign at a time. */
const cache = new Map<string, Prepared>();
const CACHE_MAX = 4;
let prepares = 0;

async function prepared(spec: PrepSpec): Promise<Prepared> {
  const key = `${spec.hash}\0${spec.scenario}\0${spec.pcpus ?? ''}\0${spec.vcpus ?? ''}`;
  let p = cache.get(key);
  if (p === undefined) {
    p = await labPrepare(spec.scenario, { pcpus: spec.pcpus, vcpus: spec.vcpus });
    prepares++;
    if (p.hash !== spec.hash) throw new Error(`scenario '${spec.scenario}' changed on disk during the campaign`);
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
    cache.set(key, p);
  }
  return p;
}

/** How many times this worker prepared a scenario (the bench checks warm tasks prepare nothing). */
export function huntPrepareCount(): number { return prepares; }

export async function huntTask(t: HuntTask): Promise<TaskResult> {
  const prep = await prepared(t.prep);
  const t0 = performance.now();
  const { report, result } = t.type === 'run'
    ? await labRun(prep, t.config, { stepEstimate: t.stepEstimate, recordSchedule: t.record })
    : await labRun(prep, t.config, { replayRuns: t.tape, replayMode: t.mode });
  const out: TaskResult = {
    run: t.run, signatures: reportSignatures(report), steps: result.steps, stats: result.stats ?? null, digest: report.digest,
    outcome: report.outcome, reason: report.reason, wallMs: performance.now() - t0,
  };
  if (t.type === 'run') {
    out.stepEstimate = t.stepEstimate;
    if (t.record) {
      if (result.schedule === undefined) bug('a recorded serial run returned no schedule');
      out.tape = result.schedule;
    }
  }
  return out;
}

/** Every distinct signature of a report, with the first occurrence's detail where the report has it. */
export function reportSignatures(r: RunReport): SigHit[] {
  const out: SigHit[] = [];
  for (const f of r.findings) {
    for (const [signature, count] of Object.entries(f.signatures)) {
      const [kind, cause] = signature.split(':');
      out.push({ signature, kind, cause, count, detail: f.first.signature === signature ? f.first.detail : '' });
    }
  }
  return out;
}
