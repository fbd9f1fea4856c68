// Schedule files (DESIGN.md §8, contract): msgpack, a header then the decision tape.
//
// The tape is what the serial engine's strategy decided at each step: the participant (pCPU, or agent
// n + k) and how many shared accesses it makes before the next choice, negative when the step starts with
// a scheduler timer interrupt (a vCPU preemption). In the file it is run-length coded as triples
// (participant, signed shared, repeat): a strategy that keeps one pCPU running for thousands of steps
// costs three numbers.
//
// Header fields: format and version of this layout, the tool's version, the scenario's content hash
// (lab.ts scenarioHash), engine (always serial), the run's flags, the strategy and seed that first
// produced the tape, the signature it reproduces (hunts) or null, the digest of the run the tape
// produces, and how it is followed: 'exact' (every entry must be possible, as when recorded) or
// 'guided' (a shrunk tape: an impossible entry falls back to the next eligible participant and the
// tape's end hands over to a fixed round-robin tail; serial.ts).
// A replay checks the header first (another scenario: exit 2, one line) and the digest last (a
// mismatch is a divergence: exit 1).
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Packr, unpack } from 'msgpackr';
import { parseFreezeOn } from './engine/freeze.js';
import { MAX_PCPUS } from '../shared/machine.js';
import { MAX_VCPUS_PER_DOMAIN } from './scenario/loader.js';
import { UserError } from './errors.js';
import { RUN_DEFAULTS, TOOL_VERSION, type RunConfig } from './lab.js';

export const SCHEDULE_FORMAT = 'vcpulab-schedule';
/** 1: whole recorded runs as pairs, no hash. 2: run-length tape, content hash, signature, replay mode. */
export const SCHEDULE_VERSION = 2;

export type ReplayMode = 'exact' | 'guided';

export interface ScheduleHeader {
  format: string;
  version: number;
  tool: string;
  /** Scenario content hash, '' for version 1 files (not checked). */
  scenario_hash: string;
  engine: 'serial';
  config: RunConfig;
  strategy: string;
  seed: number;
  signature: string | null;
  digest: string;
  mode: ReplayMode;
}

export interface Schedule {
  header: ScheduleHeader;
  /** Pairs (participant, signed shared accesses), one per step. */
  tape: Int32Array;
}

/** Run-length code a tape of pairs into triples. */
export function tapeEncode(tape: Int32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < tape.length; i += 2) {
    const n = out.length;
    if (n >= 3 && out[n - 3] === tape[i] && out[n - 2] === tape[i + 1]) out[n - 1]++;
    else out.push(tape[i], tape[i + 1], 1);
  }
  return out;
}

/** Expand triples back into pairs; null when the triples are malformed. */
export function tapeDecode(rle: unknown, maxSteps = 1 << 28): Int32Array | null {
  if (!Array.isArray(rle) || rle.length % 3 !== 0) return null;
  let steps = 0;
  for (let i = 0; i < rle.length; i += 3) {
    const [p, s, k] = [rle[i], rle[i + 1], rle[i + 2]] as unknown[];
    if (!Number.isInteger(p) || !Number.isInteger(s) || !Number.isInteger(k)) return null;
    if ((p as number) < 0 || (p as number) > 0xffff || s === 0 || Math.abs(s as number) > 0x7fffffff || (k as number) < 1) return null;
    steps += k as number;
    if (steps > maxSteps) return null;
  }
  const tape = new Int32Array(steps * 2);
  let j = 0;
  for (let i = 0; i < rle.length; i += 3) {
    for (let k = 0; k < (rle[i + 2] as number); k++) { tape[j++] = rle[i] as number; tape[j++] = rle[i + 1] as number; }
  }
  return tape;
}

/** Steps and preemptions of a tape. */
export function tapeStats(tape: Int32Array): { steps: number; preemptions: number } {
  let pre = 0;
  for (let i = 1; i < tape.length; i += 2) if (tape[i] < 0) pre++;
  return { steps: tape.length >> 1, preemptions: pre };
}

/**
 * sha256 over everything but the checksum itself (the header fields in a fixed order, then the tape), so a
 * corrupted or hand-edited file is refused before anything runs.
 */
function scheduleChecksum(body: Record<string, unknown>): string {
  const h = createHash('sha256');
  for (const k of Object.keys(body).filter((x) => x !== 'checksum').sort()) h.update(`${k}\0${JSON.stringify(body[k])}\0`);
  return h.digest('hex');
}

export function writeScheduleFile(file: string, s: Schedule): void {
  const body: Record<string, unknown> = { ...s.header, tape: tapeEncode(s.tape) };
  body.checksum = scheduleChecksum(body);
  try { writeFileSync(file, new Packr({ useRecords: false }).pack(body)); } catch (e) {
    throw new UserError(`${file}: cannot write schedule file (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

const CONFIG_INT_FIELDS = ['seed', 'maxInstructions', 'maxMs', 'slack', 'burst', 'watchdogMs'] as const;

/** Read and check a schedule file; every defect is one line naming the file and the field. */
export function readScheduleFile(file: string): Schedule {
  let raw: Buffer;
  try { raw = readFileSync(file); } catch (e) {
    throw new UserError(`${file}: cannot read schedule file (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let s: Record<string, unknown>;
  try { s = unpack(raw) as Record<string, unknown>; } catch { throw new UserError(`${file}: not a vcpulab schedule file (msgpack decoding failed)`); }
  if (s === null || typeof s !== 'object' || s.format !== SCHEDULE_FORMAT) throw new UserError(`${file}: not a vcpulab schedule file`);
  const bad = (field: string, why: string): never => { throw new UserError(`${file}: schedule field '${field}' ${why}`); };
  const version = s.version;
  if (version !== 1 && version !== SCHEDULE_VERSION) bad('version', `is ${String(version)}; this vcpulab reads versions 1 and ${SCHEDULE_VERSION}`);
  const config = checkConfig(s.config, bad);
  if (version === 1) {
    if (!Array.isArray(s.runs) || s.runs.length % 2 !== 0 || !s.runs.every((x) => Number.isInteger(x))) bad('runs', 'is not a list of (pCPU, steps) pairs');
    return {
      header: { format: SCHEDULE_FORMAT, version: 1, tool: '', scenario_hash: '', engine: 'serial', config, strategy: config.strategy, seed: config.seed,
        signature: null, digest: typeof s.digest === 'string' ? s.digest : '', mode: 'exact' },
      tape: Int32Array.from(s.runs as number[]),
    };
  }
  const str = (k: string): string => (typeof s[k] === 'string' ? s[k] as string : bad(k, 'is missing or not a string'));
  if (str('checksum') !== scheduleChecksum(s)) throw new UserError(`${file}: checksum mismatch: the schedule file is corrupt or was edited`);
  const mode = str('mode');
  if (mode !== 'exact' && mode !== 'guided') bad('mode', `must be 'exact' or 'guided', got '${mode}'`);
  const sig = s.signature;
  if (sig !== null && typeof sig !== 'string') bad('signature', 'must be a string or null');
  if (s.engine !== 'serial') bad('engine', `must be 'serial'`);
  if (!Number.isInteger(s.seed)) bad('seed', 'must be an integer');
  const tape = tapeDecode(s.tape);
  if (tape === null) bad('tape', 'is not a list of (participant, shared, repeat) triples');
  return {
    header: { format: SCHEDULE_FORMAT, version: SCHEDULE_VERSION, tool: str('tool'), scenario_hash: str('scenario_hash'), engine: 'serial', config,
      strategy: str('strategy'), seed: s.seed as number, signature: sig as string | null, digest: str('digest'), mode: mode as ReplayMode },
    tape: tape as Int32Array,
  };
}

function checkConfig(c: unknown, bad: (f: string, why: string) => never): RunConfig {
  if (c === null || typeof c !== 'object') return bad('config', 'is missing');
  const o = c as Record<string, unknown>;
  if (typeof o.scenario !== 'string' || o.scenario === '') bad('config.scenario', 'is missing');
  if (typeof o.strategy !== 'string') bad('config.strategy', 'is missing');
  for (const k of CONFIG_INT_FIELDS) if (!Number.isInteger(o[k]) || (o[k] as number) < 0) bad(`config.${k}`, 'must be a non-negative integer');
  for (const k of ['pcpus', 'vcpus', 'pctDepth'] as const) if (o[k] === null) delete o[k];
  const lim = { pcpus: MAX_PCPUS, vcpus: MAX_VCPUS_PER_DOMAIN, pctDepth: 16 } as const;
  for (const k of ['pcpus', 'vcpus', 'pctDepth'] as const) {
    if (o[k] !== undefined && (!Number.isInteger(o[k]) || (o[k] as number) < 1 || (o[k] as number) > lim[k])) bad(`config.${k}`, `must be an integer from 1 to ${lim[k]}`);
  }
  if (!Number.isSafeInteger(o.maxInstructions) || (o.slack as number) < 1 || (o.seed as number) > 0xffffffff) bad('config', 'has a field out of range (maxInstructions, slack or seed)');
  if (o.engine !== undefined && o.engine !== 'serial') bad('config.engine', `must be 'serial' (a schedule drives the serial engine), got '${String(o.engine)}'`);
  return {
    scenario: o.scenario as string, engine: 'serial', strategy: o.strategy as string,
    seed: o.seed as number, maxInstructions: o.maxInstructions as number, maxMs: o.maxMs as number, slack: o.slack as number,
    burst: o.burst as number, watchdogMs: o.watchdogMs as number,
    pcpus: o.pcpus as number | undefined, vcpus: o.vcpus as number | undefined, pctDepth: (o.pctDepth as number | undefined) ?? RUN_DEFAULTS.pctDepth,
    // Flags that change what the report shows, not the run: carried so a replay reports like the original.
    ...(o.oracles === false ? { oracles: false } : {}),
    ...(Number.isInteger(o.maxInstances) && (o.maxInstances as number) >= 0 ? { maxInstances: o.maxInstances as number } : {}),
    // The run stopped at a finding (--freeze-on): a replay must stop there too, or it runs past the tape.
    ...(o.freezeOn !== undefined ? { freezeOn: checkFreezeOn(o.freezeOn, bad) } : {}),
  };
}

function checkFreezeOn(v: unknown, bad: (f: string, why: string) => never): string {
  if (typeof v !== 'string') return bad('config.freezeOn', 'must be a string KIND[:CAUSE]');
  try {
    parseFreezeOn(v);
  } catch {
    bad('config.freezeOn', `'${v}' is not KIND[:CAUSE] with a known finding kind`);
  }
  return v;
}

/** The header of a schedule this tool writes now. */
export function scheduleHeader(config: RunConfig, hash: string, digest: string, mode: ReplayMode, signature: string | null): ScheduleHeader {
  return {
    format: SCHEDULE_FORMAT, version: SCHEDULE_VERSION, tool: TOOL_VERSION, scenario_hash: hash, engine: 'serial',
    config: JSON.parse(JSON.stringify({ ...config, engine: 'serial', maxMs: 0 })) as RunConfig, strategy: config.strategy, seed: config.seed, signature, digest, mode,
  };
}
