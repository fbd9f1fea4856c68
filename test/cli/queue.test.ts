// Distributed hunts as a user runs them: `vcpulab hunt --queue URL` and `vcpulab worker` processes on a
// private redis-server. The same campaign gives the same signatures on the local pool and on one or two
// remote workers; a worker killed mid-batch loses nothing and counts nothing twice; a worker of another
// version leaves the batches alone; Redis holds nothing of a finished or cancelled campaign and its event
// streams stay capped; a bad URL is one line, exit 2.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import { FlowProducer, Queue } from 'bullmq';
import { BIN, expectBadInput, ROOT, vcpulab, type Run } from '../helpers/cli.js';
import { REDIS_REQUIRED, redisMissing, startRedis, type TestRedis } from '../helpers/redis.js';
import type * as BundleModule from '../../src/hunt/bundle.js';
import type * as LabModule from '../../src/lab.js';
import type * as CampaignModule from '../../src/hunt/campaign.js';

const dist = async <T>(p: string): Promise<T> => (await import(new URL(`../../dist/src/${p}`, import.meta.url).href)) as T;

const LOST_UPDATE = join(ROOT, 'test', 'fixtures', 'lost-update', 'lost-update.toml');
const missing = redisMissing();
if (missing !== null && !REDIS_REQUIRED) console.warn(`test/cli/queue.test.ts: distributed-hunt tests skipped: ${missing}`);

interface HuntJson {
  hunt: { runs: number; workers: number; stopped: string | null; queue?: { campaign: string; per_worker: Record<string, number>; batches: number } };
  signatures: { signature: string; hits: number; first: { run: number; strategy: string; seed: number }; shrunk: Record<string, unknown> | null; schedule: string | null }[];
  per_strategy: Record<string, { runs: number; first_hit: Record<string, number> }>;
}

/** What must not depend on where the runs ran. */
const essence = (j: HuntJson) => ({
  sigs: j.signatures.map((s) => ({ signature: s.signature, hits: s.hits, first: s.first, shrunk: s.shrunk })),
  per_strategy: j.per_strategy,
});

/** Every worker process a test started: the suite's end kills any a failed test left running. */
const started: ChildProcess[] = [];

/** A `vcpulab worker` process, and its stderr so far. */
interface WorkerProc { p: ChildProcess; log: () => string; name: string; stop: () => Promise<number | null> }

function startWorker(url: string, extra: string[] = []): Promise<WorkerProc> {
  const p = spawn(process.execPath, [BIN, 'worker', '--queue', url, '--workers', '1', '--lock-ms', '2000', ...extra], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  started.push(p);
  let err = '';
  p.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
  const w: WorkerProc = {
    p, log: () => err, name: '',
    stop: () => new Promise((resolve) => {
      if (p.exitCode !== null || p.signalCode !== null) { resolve(p.exitCode); return; }
      const t = setTimeout(() => p.kill('SIGKILL'), 15_000);
      p.once('exit', (code) => { clearTimeout(t); resolve(code); });
      p.kill('SIGTERM');
    }),
  };
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`worker did not start: ${err}`)), 20_000);
    const check = (): void => {
      const m = /vcpulab worker (\S+): \d+ pool workers, waiting/.exec(err);
      if (m !== null) { clearTimeout(t); w.name = m[1]; resolve(w); }
    };
    p.stderr?.on('data', check);
    p.on('exit', (code) => { clearTimeout(t); reject(new Error(`worker exited ${code}: ${err}`)); });
  });
}

/** `vcpulab ARGS` in a child process we can signal. */
function startHunt(args: string[]): { p: ChildProcess; done: Promise<Run> } {
  const p = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(p);
  let stdout = '', stderr = '';
  p.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
  p.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  return { p, done: new Promise((resolve) => { p.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr })); }) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('vcpulab hunt --queue: bad input, no server needed', () => {
  it('a URL that is not redis://HOST:PORT[/DB] is one line, exit 2', async () => {
    expectBadInput(await vcpulab('hunt', '--queue', 'http://127.0.0.1:6379'), /^vcpulab hunt: --queue must be redis:\/\/HOST:PORT\[\/DB\] \(scheme 'http' is not redis\)/);
    expectBadInput(await vcpulab('hunt', '--queue', 'redis://127.0.0.1:6379/x'), /database 'x' is not a number/);
    expectBadInput(await vcpulab('worker', '--queue', 'not a url'), /^vcpulab worker: --queue must be redis:/);
    expectBadInput(await vcpulab('worker'), /^vcpulab worker: --queue URL is required/);
    expectBadInput(await vcpulab('hunt', '--status'), /--status needs --queue URL/);
  });
});

// Each test starts child processes that compete for two cores with the rest of the suite: generous timeouts.
describe.runIf(missing === null || REDIS_REQUIRED)('distributed hunts on a private redis-server', { timeout: 180_000 }, () => {
  let redis: TestRedis;
  let r: Redis;
  beforeAll(async () => {
    if (missing !== null) throw new Error(`VCPULAB_REQUIRE_REDIS=1 but ${missing}`);
    redis = await startRedis();
    r = new Redis(redis.url, { maxRetriesPerRequest: null });
  });
  // A failed test leaves no worker behind to take the next test's batches.
  afterEach(() => { for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); });
  afterAll(async () => {
    r?.disconnect();
    await redis?.stop();
  });
  const campaignKeys = async (): Promise<string[]> => (await r.keys('vcpulab:campaign-*')).sort();
  /** Nothing of any campaign stays once its producer and the workers are done with it. */
  const nothingLeft = async (): Promise<void> => {
    await until('no campaign keys', async () => ((await campaignKeys()).length === 0 ? true : undefined), 5000).catch(() => {});
    expect(await campaignKeys()).toEqual([]);
  };

  it('an unreachable server is one line, exit 2, for hunt and worker', async () => {
    const dead = await startRedis();
    await dead.stop();
    expectBadInput(await vcpulab('hunt', '--queue', dead.url, '--runs', '2'), /^vcpulab hunt: --queue redis:\/\/127\.0\.0\.1:\d+\/0: cannot reach the Redis server \(ECONNREFUSED\)$/);
    expectBadInput(await vcpulab('worker', '--queue', dead.url), /^vcpulab worker: --queue redis:\/\/127\.0\.0\.1:\d+\/0: cannot reach the Redis server \(ECONNREFUSED\)$/);
  });

  it('the same signatures, hits, first hits and shrunk schedules on the local pool, one remote worker and two', async () => {
    const args = ['hunt', '--scenario', 'secure-realm', '--runs', '8', '--max-instructions', '20000', '--seed', '3', '--shrink-budget', '4', '--json'];
    const local = await vcpulab(...args, '--out', mkdtempSync(join(tmpdir(), 'vcpulab-q-')), '--workers', '2');
    expect(local.code, local.stderr).toBe(0);
    const jl = JSON.parse(local.stdout) as HuntJson;
    expect(jl.signatures.length).toBeGreaterThan(3);
    // Negative control: another campaign seed is another campaign, so the comparison below can fail.
    const other = await vcpulab('hunt', '--scenario', 'secure-realm', '--runs', '8', '--max-instructions', '20000', '--seed', '4', '--no-shrink', '--json', '--workers', '2');
    expect(essence(JSON.parse(other.stdout) as HuntJson).sigs.map((s) => [s.signature, s.hits, s.first])).not.toEqual(essence(jl).sigs.map((s) => [s.signature, s.hits, s.first]));

    const a = await startWorker(redis.url);
    const outA = mkdtempSync(join(tmpdir(), 'vcpulab-q-'));
    const one = await vcpulab(...args, '--out', outA, '--queue', redis.url);
    expect(one.code, one.stderr).toBe(0);
    const j1 = JSON.parse(one.stdout) as HuntJson;
    const b = await startWorker(redis.url);
    const two = await vcpulab(...args, '--out', mkdtempSync(join(tmpdir(), 'vcpulab-q-')), '--queue', redis.url, '--batch', '2');
    expect(two.code, two.stderr).toBe(0);
    const j2 = JSON.parse(two.stdout) as HuntJson;
    await Promise.all([a.stop(), b.stop()]);

    expect(essence(j1)).toEqual(essence(jl));
    expect(essence(j2)).toEqual(essence(jl));
    expect(Object.keys(j1.hunt.queue?.per_worker ?? {})).toEqual([a.name]);
    // Which worker takes which batch is BullMQ's business (B may join after A took them all): only these two ran any.
    expect([a.name, b.name]).toEqual(expect.arrayContaining(Object.keys(j2.hunt.queue?.per_worker ?? {})));
    // The shrunk files are the local hunt's, byte for byte.
    for (const s of j1.signatures.filter((x) => x.schedule !== null)) {
      const mine = jl.signatures.find((x) => x.signature === s.signature)?.schedule as string;
      expect(readFileSync(s.schedule as string)).toEqual(readFileSync(mine));
    }
    await nothingLeft();
    expect(a.log()).toMatch(/campaign \S+ \(secure-realm, 8 runs, from \S+\): working/);
  });

  it('--pcpus reaches the workers: a scenario that loads only with the override is worked, not refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vcpulab-q-pcpus-'));
    cpSync(dirname(LOST_UPDATE), dir, { recursive: true });
    const toml = join(dir, 'lost-update.toml');
    writeFileSync(toml, `${readFileSync(toml, 'utf8')}cpus = "2-3"\n`); // pCPUs 2 and 3: only with --pcpus 4
    expectBadInput(await vcpulab('hunt', '--scenario', toml, '--runs', '2', '--no-shrink'), /cpus/); // control: it needs the override
    const w = await startWorker(redis.url);
    const h = await vcpulab('hunt', '--scenario', toml, '--pcpus', '4', '--runs', '4', '--strategy', 'random', '--no-shrink', '--json', '--queue', redis.url);
    await w.stop();
    expect(h.code, h.stderr + w.log()).toBe(0);
    expect((JSON.parse(h.stdout) as HuntJson).hunt.runs).toBe(4);
    expect(w.log()).not.toMatch(/left for a matching worker/);
    await nothingLeft();
  });

  it('a worker killed with SIGKILL mid-batch: its batch is retried, every run counted once', async () => {
    const args = ['hunt', '--scenario', 'secure-realm', '--runs', '12', '--max-instructions', '150000', '--seed', '2', '--no-shrink', '--json'];
    const local = await vcpulab(...args, '--workers', '2');
    expect(local.code, local.stderr).toBe(0);
    const a = await startWorker(redis.url), b = await startWorker(redis.url);
    const h = startHunt([...args, '--queue', redis.url, '--batch', '4']);
    // Wait until A holds a batch (BullMQ records the worker's name on the job it is processing), then kill it.
    const held = await until('a batch active on worker A', async () => {
      for (const active of await r.keys('vcpulab:campaign-*:active')) {
        for (const id of await r.lrange(active, 0, -1)) {
          const by = await r.hget(active.replace(/active$/, id), 'pb'); // BullMQ's "processed by": the worker's name
          if (by === a.name) return id;
        }
      }
      return undefined;
    });
    a.p.kill('SIGKILL');
    const res = await h.done;
    await b.stop();
    expect(res.code, res.stderr).toBe(0);
    const jd = JSON.parse(res.stdout) as HuntJson, jl = JSON.parse(local.stdout) as HuntJson;
    expect(held).toMatch(/^b\d+$/);
    expect(essence(jd)).toEqual(essence(jl));
    // Every run merged once: the per-strategy counts add up to the runs, and so do the runs each worker returned.
    expect(Object.values(jd.per_strategy).reduce((s, x) => s + x.runs, 0)).toBe(12);
    expect(Object.values(jd.hunt.queue?.per_worker ?? {}).reduce((s, x) => s + x, 0)).toBe(12);
    expect(jd.hunt.queue?.per_worker[b.name]).toBeGreaterThan(0);
    await nothingLeft();
  });

  it('a worker of another version refuses the campaign and its batches stay for a matching worker', async () => {
    const conn = new Redis(redis.url, { maxRetriesPerRequest: null });
    const flow = new FlowProducer({ connection: conn, prefix: 'vcpulab' });
    const { bundleScenario } = await dist<typeof BundleModule>('hunt/bundle.js');
    const { labPrepare, TOOL_VERSION } = await dist<typeof LabModule>('lab.js');
    const { campaignRunConfig } = await dist<typeof CampaignModule>('hunt/campaign.js');
    const prep = await labPrepare(LOST_UPDATE);
    const bundle = bundleScenario(prep);
    const record = (id: string, tool: string) => ({ format: 'vcpulab-campaign', tool, schedule: 2, id, scenario: 'lost-update', strategies: ['random'], runs: 1, seed: 1, producer: 'test:1', started: Date.now(), bundle });
    const config = campaignRunConfig({ scenario: LOST_UPDATE, strategies: ['random'], seed: 1, maxInstructions: 100000, slack: 30000, pctDepth: 3 } as never, 0);
    const batch = (tool: string) => ({ tool, schedule: 2, campaign: '', hash: bundle.hash, tasks: [{ type: 'run', config, run: 0, record: false }] });
    const add = (id: string, recTool: string, batchTool: string) => flow.add({ name: 'campaign', queueName: 'campaigns', data: record(id, recTool), opts: { jobId: id },
      children: [{ name: 'batch', queueName: `campaign-${id}`, data: batch(batchTool), opts: { jobId: 'b0', attempts: 3 } }] });
    await add('cold', '0.0.0-other', '0.0.0-other');            // another version, campaign and batch
    await add('cmixed', TOOL_VERSION, '0.0.0-other');          // a batch of another version in a campaign of ours
    await add('cgood', TOOL_VERSION, TOOL_VERSION);           // negative control: the same worker runs this one
    const w = await startWorker(redis.url);
    await until('refusals', () => (/campaign cold needs vcpulab 0\.0\.0-other/.test(w.log()) && /campaign cmixed has a batch that needs vcpulab 0\.0\.0-other/.test(w.log()) ? true : undefined));
    const q = (id: string) => new Queue(`campaign-${id}`, { connection: conn, prefix: 'vcpulab' });
    const good = await until('the matching batch done', async () => ((await q('cgood').getJobState('b0')) === 'completed' ? true : undefined));
    expect(good).toBe(true);
    const done = await q('cgood').getJob('b0');
    expect((done?.returnvalue as { worker: string; results: { run: number; signatures: unknown[] }[] }).results[0].run).toBe(0);
    await sleep(1500); // a refused batch must stay refused, not come back to this worker
    for (const id of ['cold', 'cmixed']) {
      const job = await q(id).getJob('b0');
      expect(['waiting', 'delayed']).toContain(await q(id).getJobState('b0'));
      expect(job?.attemptsMade).toBe(0);
    }
    expect(w.log()).toMatch(/campaign cold needs vcpulab 0\.0\.0-other \(schedule format 2\); this worker is vcpulab \S+ \(schedule format 2\): left for a matching worker/);
    await w.stop();
    for (const id of ['cold', 'cmixed', 'cgood']) { await q(id).obliterate({ force: true }); }
    await new Queue('campaigns', { connection: conn, prefix: 'vcpulab' }).obliterate({ force: true });
    await flow.close();
    conn.disconnect();
  });

  it('Redis stays bounded over a long campaign: event streams capped, finished jobs removed, nothing left after', async () => {
    const a = await startWorker(redis.url), b = await startWorker(redis.url);
    const args = ['hunt', '--scenario', LOST_UPDATE, '--runs', '40', '--no-shrink', '--json', '--queue', redis.url, '--batch', '1'];
    expect((await vcpulab(...args)).code).toBe(0); // warm: BullMQ's scripts are loaded once
    const info = async (): Promise<number> => Number(/^used_memory:(\d+)/m.exec(await r.info('memory'))?.[1]);
    const before = await info();
    const h = startHunt(['hunt', '--scenario', LOST_UPDATE, '--runs', '300', '--no-shrink', '--json', '--queue', redis.url, '--batch', '1']);
    let maxEvents = 0, maxJobs = 0, samples = 0;
    let finished = false;
    void h.done.then(() => { finished = true; });
    while (!finished) {
      for (const k of await r.keys('vcpulab:campaign-*:events')) maxEvents = Math.max(maxEvents, await r.xlen(k));
      maxJobs = Math.max(maxJobs, (await r.keys('vcpulab:campaign-*:b*')).length);
      samples++;
      await sleep(20);
    }
    const res = await h.done;
    await Promise.all([a.stop(), b.stop()]);
    expect(res.code, res.stderr).toBe(0);
    const j = JSON.parse(res.stdout) as HuntJson;
    expect(j.hunt.runs).toBe(300);
    expect(j.hunt.queue?.batches).toBeGreaterThan(300); // a job per run: the stream saw more events than its cap
    expect(samples).toBeGreaterThan(5);
    expect(maxEvents).toBeGreaterThan(0);
    expect(maxEvents).toBeLessThanOrEqual(1200); // EVENTS_MAX_LEN 1000, trimmed approximately
    expect(maxJobs).toBeLessThanOrEqual(2 * 64 + 8); // the dispatch window, not the campaign
    await nothingLeft();
    expect(await r.llen('vcpulab:campaigns:wait') + await r.zcard('vcpulab:campaigns:waiting-children')).toBe(0);
    expect(await info()).toBeLessThan(before + 256 * 1024);
  });

  it('Redis restarted mid-campaign: producer and workers reconnect, the campaign is sent again and ends as the local one', async () => {
    const args = ['hunt', '--scenario', 'secure-realm', '--runs', '24', '--max-instructions', '150000', '--seed', '7', '--no-shrink', '--json'];
    const local = await vcpulab(...args, '--workers', '2');
    expect(local.code, local.stderr).toBe(0);
    const a = await startWorker(redis.url), b = await startWorker(redis.url);
    const h = startHunt([...args, '--queue', redis.url]);
    await until('a batch active', async () => ((await r.keys('vcpulab:campaign-*:active')).length > 0 ? true : undefined));
    await redis.restart(); // no persistence: the server comes back empty
    const res = await h.done;
    await Promise.all([a.stop(), b.stop()]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/the Redis server lost campaign \S+ \(restarted\?\); sent it and its \d+ unfinished batches again/);
    const jd = JSON.parse(res.stdout) as HuntJson;
    expect(essence(jd)).toEqual(essence(JSON.parse(local.stdout) as HuntJson));
    expect(Object.values(jd.hunt.queue?.per_worker ?? {}).reduce((s, x) => s + x, 0)).toBe(24);
  });

  it('Ctrl-C on the producer cancels the remaining batches and prints partial results', async () => {
    const w = await startWorker(redis.url);
    const h = startHunt(['hunt', '--scenario', 'secure-realm', '--runs', '400', '--max-instructions', '150000', '--no-shrink', '--json', '--queue', redis.url]);
    await until('some batches done', async () => (/ended|working/.test(w.log()) && (await r.keys('vcpulab:campaign-*:id')).length > 0 ? true : undefined));
    await sleep(1500);
    // --status shows the running campaign: its scenario, its size, the worker on its queue, its progress.
    const st = await vcpulab('hunt', '--queue', redis.url, '--status', '--json');
    expect(st.code, st.stderr).toBe(0);
    const list = (JSON.parse(st.stdout) as { campaigns: { scenario: string; runs: number; workers: string[]; progress: { done: number; total: number } | null }[] }).campaigns;
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ scenario: 'secure-realm', runs: 400 });
    expect(list[0].workers).toContain(w.name);
    const text = await vcpulab('hunt', '--queue', redis.url, '--status');
    expect(text.stdout).toMatch(/^campaign \S+: secure-realm, 400 runs of random, preempt, pct, pos, vcpulab \S+, from \S+ since /);
    h.p.kill('SIGINT');
    const res = await h.done;
    expect(res.code, res.stderr).toBe(130);
    const j = JSON.parse(res.stdout) as HuntJson;
    expect(j.hunt.stopped).toBe('interrupted');
    expect(j.hunt.runs).toBeLessThan(400);
    await nothingLeft();
    await until('the worker leaves the campaign', () => (/campaign \S+ ended/.test(w.log()) ? true : undefined));
    await w.stop();
  });
});
