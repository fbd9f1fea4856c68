// `vcpulab worker --queue URL` (DESIGN.md §9): a process that works the campaigns published on a BullMQ
// server. It looks for campaign records every second; for each of its own version it writes the scenario's
// files from the record (bundle.ts), prepares them once to check their content hash, and takes the
// campaign's batches with a BullMQ Worker. A batch's runs go to this process's piscina pool, so the event
// loop stays free and BullMQ renews its locks on time; a worker that dies mid-batch loses its lock, and
// another worker's stalled check puts the batch back. A campaign of another vcpulab version is refused in
// one line and its batches stay for a matching worker. When a campaign's record goes (finished or
// cancelled), its Worker closes and its runs still on the pool are aborted.
import { hostname } from 'node:os';
import { DelayedError, Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Piscina } from 'piscina';
import { labPrepare } from '../lab.js';
import { bundleMaterialize } from './bundle.js';
import { huntPool } from './campaign.js';
import {
  batchQueueName, CAMPAIGN_FORMAT, CAMPAIGNS_QUEUE, MAX_STALLED, QUEUE_PREFIX, queueConnection, resultToWire, taskFromWire, versionMismatch,
  type BatchData, type BatchResult, type CampaignRecord, type QueueUrl,
} from './queue.js';
import type { TaskResult } from './task.js';

export interface QueueWorkerOptions {
  queue: QueueUrl;
  /** Pool workers (threads) of this process. */
  workers: number;
  /** BullMQ lock duration of a batch. */
  lockMs: number;
  log: (line: string) => void;
  interrupt: { requested: boolean };
}

export interface QueueWorkerSummary { name: string; campaigns: number; batches: number; runs: number }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Wait for `p`, but at most `ms`. */
const bounded = (p: Promise<unknown>, ms = 3000): Promise<unknown> => Promise.race([p.catch(() => {}), sleep(ms)]);

/** How often the worker looks for campaigns that started or ended. */
const DISCOVER_MS = 1000;

type Joined =
  | { kind: 'working'; id: string; worker: Worker; conn: ReturnType<typeof queueConnection>; abort: AbortController; scenario: string; hash: string; runs: number }
  | { kind: 'refused' };

export async function runQueueWorker(o: QueueWorkerOptions): Promise<QueueWorkerSummary> {
  const name = `${hostname()}:${process.pid}`;
  const pool: Piscina = huntPool(o.workers);
  const control = queueConnection(o.queue, 'vcpulab-worker');
  const campaigns = new Queue(CAMPAIGNS_QUEUE, { connection: control, prefix: QUEUE_PREFIX, skipMetasUpdate: true });
  campaigns.on('error', () => {});
  const joined = new Map<string, Joined>();
  const summary: QueueWorkerSummary = { name, campaigns: 0, batches: 0, runs: 0 };
  let wasDown = false;

  const refuse = (id: string, why: string): void => {
    const j = joined.get(id);
    if (j?.kind === 'refused') return;
    joined.set(id, { kind: 'refused' });
    o.log(`vcpulab worker ${name}: campaign ${id} ${why}: left for a matching worker`);
    if (j?.kind === 'working') void leave(j);
  };
  const leave = async (j: Extract<Joined, { kind: 'working' }>, graceful = false): Promise<void> => {
    if (graceful) {
      // Finish the batches in hand, but not forever (a server that is away cannot take their results).
      await bounded(j.worker.close(), o.lockMs + 5000);
    }
    j.abort.abort();
    await bounded(j.worker.close(true));
    // A Worker writes its queue's meta and stalled-check keys while it polls, after the producer's
    // obliterate too: once the campaign's record is gone, clear what is left of its queue.
    ended.set(j.id, 0);
    await clearEnded();
    j.conn.disconnect();
  };
  // Campaigns left, whose queues are cleared on the next passes too: a closing Worker's last commands (a
  // failed try of an aborted batch, a poll) can still land after the first clear.
  const ended = new Map<string, number>();
  const clearEnded = async (): Promise<void> => {
    for (const [id, passes] of ended) {
      try {
        if (control.status !== 'ready') return;
        if (await campaigns.getJob(id) !== undefined) { ended.delete(id); continue; } // back (a restarted server)
        const q = new Queue(batchQueueName(id), { connection: control, prefix: QUEUE_PREFIX });
        q.on('error', () => {});
        await bounded(q.obliterate({ force: true }));
        await bounded(q.close());
        if (passes >= 2) ended.delete(id); else ended.set(id, passes + 1);
      } catch { /* the server is away: nothing to clear there now */ }
    }
  };

  const join = async (r: CampaignRecord): Promise<void> => {
    const mismatch = versionMismatch(r);
    if (mismatch !== null) { refuse(r.id, mismatch); return; }
    let scenario: string;
    try {
      scenario = bundleMaterialize(r.bundle);
      const p = await labPrepare(scenario, { pcpus: r.pcpus, vcpus: r.vcpus });
      // CPU-count overrides change nothing in the files: the hash is of the files alone.
      if (p.hash !== r.bundle.hash) throw new Error(`its files prepare to content hash ${p.hash.slice(0, 12)}, not ${r.bundle.hash.slice(0, 12)} (a built-in agent differs?)`);
    } catch (e) {
      refuse(r.id, `cannot be prepared here (${(e as Error).message.split('\n')[0]})`);
      return;
    }
    const abort = new AbortController();
    const processBatch = async (job: Job, token?: string): Promise<BatchResult> => {
      const d = job.data as BatchData;
      const mm = versionMismatch(d);
      if (mm !== null) {
        // Back to the queue without spending a try: a worker of the right version takes it.
        await job.moveToDelayed(Date.now() + DISCOVER_MS, token);
        setImmediate(() => refuse(r.id, `has a batch that ${mm}`));
        throw new DelayedError();
      }
      if (d.hash !== r.bundle.hash) throw new UnrecoverableError(`batch ${job.id} names scenario ${String(d.hash).slice(0, 12)}, the campaign ${r.bundle.hash.slice(0, 12)}`);
      const prep = { scenario, pcpus: d.pcpus, vcpus: d.vcpus, hash: d.hash };
      const results = await Promise.all(d.tasks.map((w) => pool.run(taskFromWire(w, prep), { signal: abort.signal }) as Promise<TaskResult>));
      // The result travels in the completion event and the finished job; keeping it out of the parent's
      // record of finished children keeps that record from growing with the campaign.
      await job.removeChildDependency().catch(() => false);
      const runs = results.filter((x) => x.run >= 0).length;
      summary.batches++; summary.runs += runs;
      const j = joined.get(r.id);
      if (j?.kind === 'working') j.runs += runs;
      return { worker: name, results: results.map(resultToWire) };
    };
    const conn = queueConnection(o.queue, 'vcpulab-worker');
    const worker = new Worker(batchQueueName(r.id), processBatch, {
      connection: conn, prefix: QUEUE_PREFIX, name, concurrency: o.workers + 1,
      lockDuration: o.lockMs, stalledInterval: Math.max(500, Math.floor(o.lockMs / 2)), maxStalledCount: MAX_STALLED,
    });
    worker.on('error', () => {}); // lost connections and cancelled campaigns: the discovery loop sorts them out
    joined.set(r.id, { kind: 'working', id: r.id, worker, conn, abort, scenario: r.scenario, hash: r.bundle.hash, runs: 0 });
    summary.campaigns++;
    o.log(`vcpulab worker ${name}: campaign ${r.id} (${r.scenario}, ${r.runs} runs, from ${r.producer}): working`);
  };

  const discover = async (): Promise<void> => {
    let jobs;
    try {
      // Commands wait through a reconnect (maxRetriesPerRequest: null); the loop must not.
      if (control.status !== 'ready') throw new Error('down');
      jobs = await Promise.race([campaigns.getJobs(['waiting-children', 'wait', 'delayed', 'prioritized']),
        sleep(5000).then(() => { throw new Error('timeout'); })]);
    } catch {
      if (!wasDown) o.log(`vcpulab worker ${name}: lost the Redis server at ${o.queue.shown}; reconnecting`);
      wasDown = true;
      return;
    }
    if (wasDown) o.log(`vcpulab worker ${name}: reconnected to ${o.queue.shown}`);
    wasDown = false;
    const live = new Set<string>();
    for (const job of jobs) {
      const r = job.data as CampaignRecord;
      if (r?.format !== CAMPAIGN_FORMAT || typeof r.id !== 'string') continue;
      live.add(r.id);
      if (!joined.has(r.id)) await join(r);
    }
    await clearEnded();
    for (const [id, j] of joined) {
      if (live.has(id)) continue;
      joined.delete(id);
      if (j.kind === 'working') {
        o.log(`vcpulab worker ${name}: campaign ${id} ended (${j.runs} runs here)`);
        await leave(j);
      }
    }
  };

  await campaigns.waitUntilReady().catch(() => {});
  o.log(`vcpulab worker ${name}: ${o.workers} pool workers, waiting for campaigns on ${o.queue.shown}`);
  try {
    while (!o.interrupt.requested) {
      await discover();
      for (let t = 0; t < DISCOVER_MS && !o.interrupt.requested; t += 100) await sleep(100);
    }
  } finally {
    // Ctrl-C: finish the batches in hand (a second Ctrl-C leaves at once; their locks then lapse and
    // another worker takes them).
    // Every step bounded: with the server gone, BullMQ's closes can wait for a connection that never comes.
    await Promise.allSettled([...joined.values()].map((j) => (j.kind === 'working' ? leave(j, true) : Promise.resolve())));
    await bounded(campaigns.close());
    control.disconnect();
    await bounded(pool.destroy());
  }
  return summary;
}
