// `vcpulab replay FILE` and `vcpulab regress DIR`: replay saved schedules and say whether each still
// produces what it was saved for.
import { parseArgs } from 'node:util';
import { EXIT_FAILURE, EXIT_OK, UserError } from '../errors.js';
import { regressDir, replaySchedule, type ReplayOutcome } from '../hunt/regress.js';
import { formatHuman } from './human.js';

function flags(cmd: string, args: string[], usage: string): { target: string; json: boolean } | 'help' {
  let parsed;
  try {
    parsed = parseArgs({ args, strict: true, allowPositionals: true, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  } catch (e) {
    throw new UserError(`vcpulab ${cmd}: ${(e as Error).message.split('\n')[0]} (${usage})`);
  }
  if (parsed.values.help === true) return 'help';
  if (parsed.positionals.length !== 1) throw new UserError(`vcpulab ${cmd}: ${usage}`);
  return { target: parsed.positionals[0], json: parsed.values.json === true };
}

const REPLAY_USAGE = 'usage: vcpulab replay FILE [--json]   (a schedule from hunt --out or sim --schedule-out)';
const REGRESS_USAGE = 'usage: vcpulab regress DIR [--json]   (every DIR/*.schedule must still produce its signature)';

/** Exit 0 when the schedule produced what it was saved for, 1 when it did not (fixed or diverged), 2 for bad input. */
export async function replayCommand(args: string[]): Promise<number> {
  const f = flags('replay', args, REPLAY_USAGE);
  if (f === 'help') { process.stdout.write(REPLAY_USAGE + '\n'); return EXIT_OK; }
  const r = await replaySchedule(f.target, true);
  r.report.replay = `npm run vcpulab -- replay ${f.target}`;
  if (f.json) process.stdout.write(JSON.stringify({ ...r.report, replay_check: check(r) }, null, 2) + '\n');
  else process.stdout.write(formatHuman(r.report) + `replay: ${r.status}: ${r.detail}\n`);
  return r.status === 'ok' ? EXIT_OK : EXIT_FAILURE;
}

export async function regressCommand(args: string[]): Promise<number> {
  const f = flags('regress', args, REGRESS_USAGE);
  if (f === 'help') { process.stdout.write(REGRESS_USAGE + '\n'); return EXIT_OK; }
  const rs = await regressDir(f.target);
  const bad = rs.filter((r) => r.status !== 'ok');
  if (f.json) process.stdout.write(JSON.stringify({ regress: { dir: f.target, schedules: rs.length, ok: rs.length - bad.length, failed: bad.length }, results: rs.map(check) }, null, 2) + '\n');
  else {
    for (const r of rs) process.stdout.write(`${r.status.padEnd(8)} ${r.file}: ${r.detail}\n`);
    process.stdout.write(`${rs.length - bad.length} of ${rs.length} schedules reproduce${bad.length > 0 ? `; no longer: ${bad.map((r) => r.file).join(', ')}` : ''}\n`);
  }
  return bad.length === 0 ? EXIT_OK : EXIT_FAILURE;
}

function check(r: ReplayOutcome): { file: string; signature: string | null; status: string; detail: string; scenario_changed: boolean; digest: string } {
  return { file: r.file, signature: r.signature, status: r.status, detail: r.detail, scenario_changed: r.scenarioChanged, digest: r.report.digest };
}
