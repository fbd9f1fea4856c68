// Replaying saved schedules: one file (`vcpulab replay`) or a folder of them as a regression corpus
// (`vcpulab regress DIR`, and `regressDir` for test suites). A schedule that still produces its
// signature with the digest it was saved with passes; one whose signature is gone is "fixed" (the bug
// was removed, or the model changed under it); one whose signature shows with another digest "diverged".
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { labPrepare, labRun } from '../lab.js';
import { readScheduleFile, type Schedule } from '../schedule.js';
import { UserError } from '../errors.js';
import type { RunReport } from '../report.js';
import { reportSignatures } from './task.js';

export type ReplayStatus = 'ok' | 'fixed' | 'diverged';

export interface ReplayOutcome {
  file: string;
  signature: string | null;
  status: ReplayStatus;
  /** One line: what happened, and what changed if anything did. */
  detail: string;
  /** The scenario's content differs from the one the schedule was made on. */
  scenarioChanged: boolean;
  report: RunReport;
}

/**
 * Replay one schedule. With `strictScenario`, a schedule made on other scenario content is bad input
 * (one line, exit 2): a replay must never diverge silently. A corpus run replays it anyway, to say
 * whether the bug is still there.
 */
export async function replaySchedule(file: string, strictScenario: boolean, sched?: Schedule): Promise<ReplayOutcome> {
  const s = sched ?? readScheduleFile(file);
  const h = s.header;
  const prep = await labPrepare(h.config.scenario, { pcpus: h.config.pcpus, vcpus: h.config.vcpus });
  const changed = h.scenario_hash !== '' && h.scenario_hash !== prep.hash;
  if (changed && strictScenario) {
    throw new UserError(`${file}: scenario '${h.config.scenario}' changed since this schedule was written (content hash ${prep.hash.slice(0, 12)}, schedule ${h.scenario_hash.slice(0, 12)}); it no longer replays`);
  }
  const { report } = await labRun(prep, { ...h.config, engine: 'serial', maxMs: 0 }, { replayRuns: s.tape, replayMode: h.mode });
  const sigs = reportSignatures(report).map((x) => x.signature);
  const has = h.signature === null || sigs.includes(h.signature);
  const same = h.digest === '' || report.digest === h.digest;
  const note = changed ? ' (the scenario changed since the schedule was written)' : '';
  let status: ReplayStatus, detail: string;
  if (report.outcome === 'aborted') { status = h.signature !== null && has ? 'diverged' : 'fixed'; detail = `the replay aborted: ${report.reason ?? ''}${note}`; }
  else if (!has) { status = 'fixed'; detail = `${h.signature} no longer shows${note}; it found ${sigs.length === 0 ? 'nothing' : sigs.join(' ')}`; }
  else if (!same) { status = 'diverged'; detail = `${h.signature ?? 'the run'} shows, but the run diverged from the saved one (digest ${report.digest}, saved ${h.digest})${note}`; }
  else { status = 'ok'; detail = h.signature === null ? 'the run replayed exactly' : `${h.signature} reproduced, digest ${report.digest}`; }
  return { file, signature: h.signature, status, detail, scenarioChanged: changed, report };
}

/** Every `.schedule` file under a folder (subfolders too: one per scenario, say), in path order. */
function scheduleFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith('.schedule')) out.push(join(d, e.name));
    }
  };
  walk(dir);
  return out;
}

/** Replay every schedule under a folder. A folder with none is bad input. */
export async function regressDir(dir: string): Promise<ReplayOutcome[]> {
  let files: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new UserError(`${dir}: not a directory (vcpulab regress DIR takes a folder of .schedule files)`);
    files = scheduleFiles(dir);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${dir}: cannot read directory (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (files.length === 0) throw new UserError(`${dir}: no .schedule files (vcpulab hunt --out ${dir} writes them)`);
  // Check every file before replaying any: a corrupt corpus is bad input, not a failed regression.
  const scheds = files.map((f) => readScheduleFile(f));
  const out: ReplayOutcome[] = [];
  for (let i = 0; i < files.length; i++) out.push(await replaySchedule(files[i], false, scheds[i]));
  return out;
}
