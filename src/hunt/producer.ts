// The producer side of a distributed hunt (DESIGN.md §9): an executor for runHunt (campaign.ts) that sends
// tasks as BullMQ jobs instead of piscina tasks. The campaign itself — dispatch order, the reorder buffer,
// merging, deduplication by signature, shrinking — is the local hunt's code, unchanged, so the same
// campaign seed, runs and strategies give the same signatures on any set of workers.
//
// The campaign is a flow: its record (scenario files, versions) is the parent job in the `campaigns` queue,
// and the batches of tasks are its children in the campaign's own queue, added as the dispatch window
// allows (a run's step estimate depends on runs merged before it). Results come back as the batches'
// return values, read from the queue's event stream; every few seconds the producer also looks at each
// batch still out, so a missed event or a server that lost its data (restarted without persistence) costs
// a re-send, never a run: a batch is merged once, by its id, whatever arrives twice. Retries, stalled
// batches (a killed worker) and backoff are BullMQ's. At the end, or on Ctrl-C, the campaign's queue is
// obliterated and its record removed, so nothing of it stays in Redis.
import { hostname } from 'node:os';
import { FlowProducer, Job, Queue, QueueEvents } from 'bullmq';
import { TOOL_VERSION } from '../lab.js';
import { SCHEDULE_VERSION } from '../schedule.js';
import { bundleScenario } from './bundle.js';
import { ESTIMATE_LAG, HuntLost, type ExecutorFactory, type HuntExecutor } from './campaign.js';
import {
  BATCH_ATTEMPTS, BATCH_BACKOFF_MS, batchQueueName, CAMPAIGN_FORMAT, CAMPAIGNS_QUEUE, EVENTS_MAX_LEN, KEEP_COMPLETED, KEEP_FAILED, LOST_AFTER_MS,
  QUEUE_PREFIX, queueConnection, resultFromWire, taskToWire, type BatchData, type BatchResult, type CampaignRecord, type QueueUrl,
} from './queue.js';
import type { HuntTask, TaskResult } from './task.js';

/** How often the producer checks the batches still out, and publishes its progress on the campaign record. */
const CHECK_MS = 2000;
/** A batch out this long without its completion event is looked up (a missed event, a server that lost it). */
const STALE_MS = 5000;

export interface QueueHuntOptions {
  queue: QueueUrl;
  /** Most runs per job. */
  batch: number;
  scenario: string;
  strategies: string[];
  runs: number;
  seed: number;
  pcpus?: number;
  vcpus?: number;
  /** One line for the user (a re-send after the server lost the campaign). */
  warn: (line: string) => void;
}

interface Waiter { resolve: (r: TaskResult) => void; reject: (e: unknown) => void }
interface OutBatch { id: string; data: BatchData; waiters: Waiter[]; sent: number }

/** Latest progress of the campaign, published on its record for `--status`. */
export interface CampaignProgress { done: number; total: number; runs_per_s: number; signatures: number; machines: Record<string, number>; phase: string }

export function queueExecutor(o: QueueHuntOptions, progress: () => CampaignProgress | null): ExecutorFactory {
  return async (prep, spec) => {
    const id = `${Date.now().toString(36)}-${Math.floor(Math.random() * 36 ** 6).toString(36)}`;
    const record: CampaignRecord = {
      format: CAMPAIGN_FORMAT, tool: TOOL_VERSION, schedule: SCHEDULE_VERSION, id, scenario: o.scenario, strategies: o.strategies, runs: o.runs,
      seed: o.seed, producer: `${hostname()}:${process.pid}`, started: Date.now(), bundle: bundleScenario(prep), pcpus: spec.pcpus, vcpus: spec.vcpus,
    };
    const qname = batchQueueName(id);
    const conns = [queueConnection(o.queue, 'vcpulab-hunt'), queueConnection(o.queue, 'vcpulab-hunt'), queueConnection(o.queue, 'vcpulab-hunt'),
      queueConnection(o.queue, 'vcpulab-hunt-events')];
    const [cFlow, cQueue, cCamp, cEvents] = conns;
    const flow = new FlowProducer({ connection: cFlow, prefix: QUEUE_PREFIX });
    const queue = new Queue(qname, { connection: cQueue, prefix: QUEUE_PREFIX, streams: { events: { maxLen: EVENTS_MAX_LEN } } });
    const campaigns = new Queue(CAMPAIGNS_QUEUE, { connection: cCamp, prefix: QUEUE_PREFIX, streams: { events: { maxLen: EVENTS_MAX_LEN } } });
    const events = new QueueEvents(qname, { connection: cEvents, prefix: QUEUE_PREFIX, lastEventId: '0' });
    // The connection watch below reports a lost server once; these would print every reconnect attempt.
    flow.on('error', () => {}); queue.on('error', () => {}); campaigns.on('error', () => {}); events.on('error', () => {});
    await Promise.all([queue.waitUntilReady(), campaigns.waitUntilReady(), events.waitUntilReady()]);

    const out = new Map<string, OutBatch>();
    const perWorker = new Map<string, number>();
    const t0 = performance.now();
    let seq = 0, batches = 0, resent = 0, lost: string | null = null, downSince: number | null = null, wasDown = false;
    const parent = { id, queue: `${QUEUE_PREFIX}:${CAMPAIGNS_QUEUE}` };
    const jobOpts = (jobId: string) => ({
      jobId, attempts: BATCH_ATTEMPTS, backoff: { type: 'exponential', delay: BATCH_BACKOFF_MS },
      removeOnComplete: { count: KEEP_COMPLETED }, removeOnFail: { count: KEEP_FAILED },
    });
    // The flow: the record as parent with the first batches as children (the calibration run); the later
    // batches join it as children when the window allows. Adds go out one after another, so a child never
    // arrives before its parent.
    let created = false, chain: Promise<void> = Promise.resolve();
    const publish = (bs: OutBatch[]): Promise<void> => flow.add({
      name: 'campaign', queueName: CAMPAIGNS_QUEUE, data: record, opts: { jobId: id },
      children: bs.map((b) => ({ name: 'batch', queueName: qname, data: b.data, opts: jobOpts(b.id) })),
    }).then(() => {});

    const finish = (b: OutBatch, res: BatchResult): void => {
      if (!out.delete(b.id)) return; // merged already: a batch counts once
      // Whatever completed the job (a worker of this version; anything else writing to the queue): a wrong shape
      // fails the batch's tasks, it does not throw in an event listener.
      if (typeof res !== 'object' || res === null || !Array.isArray(res.results) || typeof res.worker !== 'string') {
        for (const w of b.waiters) w.reject(new Error(`batch ${b.id} came back with a result that is not a vcpulab worker's`));
        return;
      }
      if (res.results.length !== b.waiters.length) {
        for (const w of b.waiters) w.reject(new Error(`batch ${b.id} came back with ${res.results.length} results for ${b.waiters.length} tasks`));
        return;
      }
      perWorker.set(res.worker, (perWorker.get(res.worker) ?? 0) + res.results.filter((r) => r.run >= 0).length);
      batches++;
      res.results.forEach((r, k) => {
        try { b.waiters[k].resolve(resultFromWire(r)); } catch (e) { b.waiters[k].reject(e); }
      });
      queue.remove(b.id).catch(() => {}); // merged: nothing in Redis needs it any more
    };
    const fail = (b: OutBatch, reason: string): void => {
      if (!out.delete(b.id)) return;
      for (const w of b.waiters) w.reject(new Error(`batch ${b.id} failed on every try: ${reason}`));
    };
    const loseAll = (why: string): void => {
      lost = why;
      for (const b of out.values()) for (const w of b.waiters) w.reject(new HuntLost(why));
      out.clear();
    };
    events.on('completed', ({ jobId, returnvalue }) => {
      const b = out.get(jobId);
      if (b !== undefined) finish(b, returnvalue as unknown as BatchResult);
    });
    events.on('failed', ({ jobId, failedReason }) => {
      const b = out.get(jobId);
      if (b === undefined) return;
      // 'failed' comes for the last try only when no retry is left; check the job's state to be sure.
      queue.getJobState(jobId).then((s) => { if (s === 'failed') fail(b, failedReason); }, () => {});
    });

    const send = async (b: OutBatch): Promise<void> => {
      await queue.add('batch', b.data, { ...jobOpts(b.id), parent });
    };
    const sendAll = (bs: OutBatch[]): void => {
      const first = !created;
      created = true;
      // A failed add (the server is away) is retried by check(): the batch is out, its job 'unknown'.
      chain = chain.then(() => (first ? publish(bs) : Promise.all(bs.map(send)).then(() => {}))).catch(() => {});
    };
    // Look at every batch out for a while: finished without our hearing of it, failed, or gone.
    let checking = false;
    const check = async (): Promise<void> => {
      if (checking || lost !== null) return;
      checking = true;
      try {
        const p = progress();
        const rec = await campaigns.getJob(id);
        if (rec === undefined) {
          // The server lost the campaign (restarted without persistence): publish it again, and every batch out.
          if (!created) return;
          await chain;
          if (await campaigns.getJob(id) !== undefined) return;
          const pending = [...out.values()];
          await publish(pending);
          resent += pending.length;
          o.warn(`vcpulab hunt: the Redis server lost campaign ${id} (restarted?); sent it and its ${pending.length} unfinished batches again`);
          return;
        }
        if (p !== null) await rec.updateProgress(p as unknown as object);
        const now = Date.now();
        for (const b of [...out.values()]) {
          if (now - b.sent < STALE_MS) continue;
          const s = await queue.getJobState(b.id);
          if (s === 'completed') {
            const j = await Job.fromId(queue, b.id);
            if (j !== undefined) finish(b, j.returnvalue as BatchResult);
          } else if (s === 'failed') {
            const j = await Job.fromId(queue, b.id);
            fail(b, j?.failedReason ?? 'unknown');
          } else if (s === 'unknown') {
            await chain;
            if (!out.has(b.id) || await queue.getJobState(b.id) !== 'unknown') continue;
            await send(b);
            resent++;
          }
        }
      } catch {
        // The server is away: the connection watch decides when to give up.
      } finally {
        checking = false;
      }
    };
    let ticks = 0;
    const timer = setInterval(() => {
      const up = cQueue.status === 'ready' && cCamp.status === 'ready';
      if (up) downSince = null;
      else downSince ??= Date.now();
      if (downSince !== null && Date.now() - downSince > LOST_AFTER_MS && lost === null) {
        loseAll(`lost the Redis server at ${o.queue.shown} for ${LOST_AFTER_MS / 1000} s`);
      }
      if (up && (++ticks % 4 === 0 || wasDown)) void check();
      wasDown = !up;
    }, CHECK_MS / 4);

    let pending: HuntTask[] = [];
    let pendingWaiters: Waiter[] = [];
    let flushing = false;
    const flush = (): void => {
      flushing = false;
      const tasks = pending, waiters = pendingWaiters;
      pending = []; pendingWaiters = [];
      // Tasks sent together become at least four jobs when they can (shrinking sends four candidates at a
      // time, and they should reach four workers), and at most o.batch tasks each.
      const size = Math.max(1, Math.min(o.batch, Math.floor(tasks.length / 4)));
      const bs: OutBatch[] = [];
      for (let i = 0; i < tasks.length; i += size) {
        const b: OutBatch = {
          id: `b${seq++}`, sent: Date.now(), waiters: waiters.slice(i, i + size),
          data: { tool: TOOL_VERSION, schedule: SCHEDULE_VERSION, campaign: id, hash: spec.hash, pcpus: spec.pcpus, vcpus: spec.vcpus, tasks: tasks.slice(i, i + size).map(taskToWire) },
        };
        if (lost !== null) { for (const w of b.waiters) w.reject(new HuntLost(lost)); continue; }
        out.set(b.id, b);
        bs.push(b);
      }
      if (bs.length > 0) sendAll(bs);
    };

    const exec: HuntExecutor = {
      // A run may start only once the runs ESTIMATE_LAG before it are merged, so more than this never helps.
      window: ESTIMATE_LAG,
      calibrations: 1,
      run(task: HuntTask): Promise<TaskResult> {
        return new Promise<TaskResult>((resolve, reject) => {
          if (lost !== null) { reject(new HuntLost(lost)); return; }
          pending.push(task);
          pendingWaiters.push({ resolve, reject });
          // Everything the dispatch loop sends in one turn goes out together, as few jobs as the split allows.
          if (!flushing) { flushing = true; setImmediate(flush); }
        });
      },
      machines(): Record<string, number> {
        const el = (performance.now() - t0) / 1000;
        return Object.fromEntries([...perWorker].map(([k, n]) => [k, el > 0 ? Math.round((n / el) * 100) / 100 : 0]));
      },
      workers: () => perWorker.size,
      describe: () => ({ url: o.queue.shown, campaign: id, batches, resent, per_worker: Object.fromEntries(perWorker) }),
      async destroy(): Promise<void> {
        clearInterval(timer);
        // Cancel what is left (Ctrl-C, a failure) and clean up after a finished one alike: nothing stays.
        // Each step bounded: with the server away, BullMQ's calls wait for a connection that may never come.
        const bounded = (p: Promise<unknown>): Promise<unknown> => Promise.race([p.catch(() => {}), new Promise((r) => setTimeout(r, 3000).unref())]);
        if (lost === null) {
          await bounded(chain);
          await bounded(queue.obliterate({ force: true }).then(() => campaigns.remove(id, { removeChildren: false })));
        }
        await bounded(Promise.allSettled([events.close(), queue.close(), campaigns.close(), flow.close()]));
        for (const c of conns) c.disconnect();
      },
    };
    return exec;
  };
}

/** `vcpulab hunt --queue URL --status`: every campaign on the server, with its progress and its queue. */
export interface CampaignStatus {
  id: string; scenario: string; tool: string; producer: string; started: string; runs: number; strategies: string[];
  progress: CampaignProgress | null;
  batches: Record<string, number>;
  workers: string[];
}

export async function queueStatus(q: QueueUrl): Promise<CampaignStatus[]> {
  const conn = queueConnection(q, 'vcpulab-status');
  const campaigns = new Queue(CAMPAIGNS_QUEUE, { connection: conn, prefix: QUEUE_PREFIX, skipMetasUpdate: true });
  campaigns.on('error', () => {});
  try {
    const jobs = await campaigns.getJobs(['waiting-children', 'wait', 'delayed', 'prioritized']);
    const out: CampaignStatus[] = [];
    for (const j of jobs) {
      const r = j.data as CampaignRecord;
      if (r?.format !== CAMPAIGN_FORMAT) continue;
      const bq = new Queue(batchQueueName(r.id), { connection: conn, prefix: QUEUE_PREFIX, skipMetasUpdate: true });
      bq.on('error', () => {});
      const counts = await bq.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed');
      // BullMQ names a Worker's connection <queue client name>:w:<worker name>; the worker name is host:pid.
      const workers = (await bq.getWorkers()).map((w) => {
        const raw = String((w as { rawname?: string; name?: string }).rawname ?? (w as { name?: string }).name ?? '');
        const i = raw.indexOf(':w:');
        return i >= 0 ? raw.slice(i + 3) : '';
      }).filter((n) => n !== '');
      out.push({
        id: r.id, scenario: r.scenario, tool: r.tool, producer: r.producer, started: new Date(r.started).toISOString(), runs: r.runs, strategies: r.strategies,
        progress: typeof j.progress === 'object' && j.progress !== null ? j.progress as unknown as CampaignProgress : null,
        batches: counts, workers: [...new Set(workers)].sort(),
      });
    }
    return out.sort((a, b) => (a.started < b.started ? -1 : 1));
  } finally {
    await campaigns.close().catch(() => {});
    conn.disconnect();
  }
}

export function formatStatus(q: QueueUrl, list: CampaignStatus[]): string {
  if (list.length === 0) return `no campaign running on ${q.shown}\n`;
  const lines: string[] = [];
  for (const c of list) {
    const p = c.progress;
    lines.push(`campaign ${c.id}: ${c.scenario}, ${c.runs} runs of ${c.strategies.join(', ')}, vcpulab ${c.tool}, from ${c.producer} since ${c.started}`);
    lines.push(p === null ? '  no progress yet'
      : `  ${p.phase} ${p.done}/${p.total}, ${p.runs_per_s} runs/s, ${p.signatures} signatures so far`);
    const b = c.batches;
    lines.push(`  batches: ${b.waiting ?? 0} waiting, ${b.active ?? 0} active, ${b.delayed ?? 0} delayed (retry), ${b.failed ?? 0} failed`);
    const rates = p?.machines ?? {};
    const names = [...new Set([...c.workers, ...Object.keys(rates)])].sort();
    lines.push(names.length === 0 ? '  no worker' : `  workers: ${names.map((n) => (rates[n] !== undefined ? `${n} ${rates[n]} runs/s` : n)).join(', ')}`);
  }
  return lines.join('\n') + '\n';
}
