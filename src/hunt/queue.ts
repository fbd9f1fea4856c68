// What the producer (`vcpulab hunt --queue URL`) and the workers (`vcpulab worker`) of a distributed hunt
// agree on (DESIGN.md §9): the queue names, the job shapes, the versions, and how to reach the server.
// BullMQ on Redis does the queue work: a campaign is a flow, its record the parent job in the `campaigns`
// queue and its batches of run tasks the children, in a queue of their own (`campaign-<id>`), so one
// obliterate ends everything a campaign left. Jobs are JSON; tapes travel run-length coded.
import { Redis } from 'ioredis';
import { TOOL_VERSION } from '../lab.js';
import { SCHEDULE_VERSION, tapeDecode, tapeEncode } from '../schedule.js';
import { UserError } from '../errors.js';
import type { QueueUrl } from './queue-url.js';
import type { ScenarioBundle } from './bundle.js';
import type { HuntTask, TaskResult } from './task.js';

export { parseQueueUrl, type QueueUrl } from './queue-url.js';

/** BullMQ key prefix of every queue here. */
export const QUEUE_PREFIX = 'vcpulab';
/** The queue that holds one record (the flow's parent job) per running campaign. */
export const CAMPAIGNS_QUEUE = 'campaigns';
export const CAMPAIGN_FORMAT = 'vcpulab-campaign';
/** Events kept per queue (BullMQ trims its event stream to about this many). */
export const EVENTS_MAX_LEN = 1000;
/** Finished batches kept (the producer removes each as it merges it; this bounds what a lost producer leaves). */
export const KEEP_COMPLETED = 200;
export const KEEP_FAILED = 50;
/** Tries per batch, with exponential backoff from BATCH_BACKOFF_MS (a run that throws is a bug; a crash is not). */
export const BATCH_ATTEMPTS = 3;
export const BATCH_BACKOFF_MS = 1000;
/** How long a worker's lock on a batch lasts unless renewed (a killed worker's batch comes back after about this). */
export const LOCK_MS_DEFAULT = 10_000;
/** A batch may stall (its worker died) this many times before it fails. */
export const MAX_STALLED = 5;
/** How long the producer waits for a lost server before it ends with partial results. */
export const LOST_AFTER_MS = 30_000;

export function batchQueueName(campaign: string): string {
  return `campaign-${campaign}`;
}

/** The parent job's data: everything a worker needs besides the batches. */
export interface CampaignRecord {
  format: typeof CAMPAIGN_FORMAT;
  /** vcpulab version and schedule-format version: a worker of another version refuses the campaign. */
  tool: string;
  schedule: number;
  id: string;
  /** As the user named it (built-in name or path on the producer's machine). */
  scenario: string;
  strategies: string[];
  runs: number;
  seed: number;
  /** host:pid of the producer. */
  producer: string;
  started: number;
  bundle: ScenarioBundle;
  /** --pcpus / --vcpus of the campaign: a worker prepares the scenario with them (they can decide whether it loads). */
  pcpus?: number;
  vcpus?: number;
}

/** A task as it travels: the tape run-length coded. */
export type WireTask = Omit<Extract<HuntTask, { type: 'run' }>, 'prep'> | (Omit<Extract<HuntTask, { type: 'replay' }>, 'prep' | 'tape'> & { tape: number[] });

export interface BatchData {
  tool: string;
  schedule: number;
  campaign: string;
  /** The scenario bundle's hash (the campaign record carries the bundle). */
  hash: string;
  /** CPU-count overrides every task of the campaign prepares the scenario with. */
  pcpus?: number;
  vcpus?: number;
  tasks: WireTask[];
}

export type WireResult = Omit<TaskResult, 'tape'> & { tape?: number[] };

export interface BatchResult {
  /** host:pid of the worker process that ran it. */
  worker: string;
  results: WireResult[];
}

export function taskToWire(t: HuntTask): WireTask {
  const { prep: _prep, ...rest } = t;
  return rest.type === 'replay' ? { ...rest, tape: tapeEncode(rest.tape) } : rest;
}

export function taskFromWire(w: WireTask, prep: HuntTask['prep']): HuntTask {
  if (w.type === 'replay') {
    const tape = tapeDecode(w.tape);
    if (tape === null) throw new Error('a replay task carries a malformed tape');
    return { ...w, prep, tape };
  }
  return { ...w, prep };
}

export function resultToWire(r: TaskResult): WireResult {
  const { tape, ...rest } = r;
  return tape === undefined ? rest : { ...rest, tape: tapeEncode(tape) };
}

export function resultFromWire(w: WireResult): TaskResult {
  const { tape, ...rest } = w;
  if (tape === undefined) return rest;
  const t = tapeDecode(tape);
  if (t === null) throw new Error(`run ${w.run}: a result carries a malformed tape`);
  return { ...rest, tape: t };
}

/** Why a worker of this version cannot run a job of that one, or null when it can. */
export function versionMismatch(j: { tool?: unknown; schedule?: unknown }): string | null {
  if (j.tool === TOOL_VERSION && j.schedule === SCHEDULE_VERSION) return null;
  return `needs vcpulab ${String(j.tool)} (schedule format ${String(j.schedule)}); this worker is vcpulab ${TOOL_VERSION} (schedule format ${SCHEDULE_VERSION})`;
}

/**
 * A connection for BullMQ. `maxRetriesPerRequest: null` lets commands wait through a reconnect (BullMQ
 * workers need it); ioredis reconnects on its own. Errors while the server is away are expected and
 * reported once by whoever watches the connection, so they are not printed here.
 */
export function queueConnection(q: QueueUrl, name: string): Redis {
  const r = new Redis(q.url, { maxRetriesPerRequest: null, connectionName: name, retryStrategy: (n) => Math.min(200 * n, 2000) });
  r.on('error', () => {});
  return r;
}

/**
 * Reach the server once, quickly, before anything is published: an unreachable server or one BullMQ cannot
 * use is bad input (one line, exit 2), not a hang. Returns the server's version.
 */
export async function queueProbe(flag: string, q: QueueUrl): Promise<string> {
  const r = new Redis(q.url, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  let first: NodeJS.ErrnoException | null = null;
  r.on('error', (e: NodeJS.ErrnoException) => { first ??= e; });
  try {
    try {
      await r.connect();
      await r.ping();
    } catch (e) {
      const err = first ?? (e as NodeJS.ErrnoException);
      const why = err.code ?? err.message.split('\n')[0];
      throw new UserError(`vcpulab ${flag}: --queue ${q.shown}: cannot reach the Redis server (${why})`);
    }
    const info = await r.info();
    const field = (k: string): string => new RegExp(`^${k}:(.*)$`, 'm').exec(info)?.[1]?.trim() ?? '';
    const version = field('redis_version');
    const [maj, min] = version.split('.').map(Number);
    if (!(maj > 6 || (maj === 6 && min >= 2))) throw new UserError(`vcpulab ${flag}: --queue ${q.shown}: Redis ${version || '(unknown version)'} is too old; BullMQ needs 6.2 or later`);
    const policy = field('maxmemory_policy');
    if (policy !== '' && policy !== 'noeviction') {
      throw new UserError(`vcpulab ${flag}: --queue ${q.shown}: the server's maxmemory-policy is ${policy}; BullMQ needs noeviction (redis-server --maxmemory-policy noeviction)`);
    }
    return version;
  } finally {
    r.disconnect();
  }
}
