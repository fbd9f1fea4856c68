// Start-up rows of `npm run bench`: what a big machine costs before it computes anything. The threaded
// engine with 254 pCPUs (the most an xAPIC machine has) runs the counter scenario to its end in a child
// process, as a user runs it (the guests' own work included: the run must start every thread to end), on its default threads (engine/threaded.ts threadsFor: 8 on 2 cores);
// the row is the wall time from spawn to exit and the process's peak resident memory (the report's
// metrics.peak_rss_mb). Targets: under 2 s and under 1 GiB (reported, not asserted). Beside it, for
// scale: as many empty Node worker threads, in a process of their own, which is what a thread per pCPU
// would cost whatever ran in the threads.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { median } from './floors.js';
import { errText, fmtN, runStandalone } from './format.js';

const BIN = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../bin/vcpulab.js' : '../../bin/vcpulab.js', import.meta.url));
export const STARTUP_PCPUS = 254;

export interface StartupRow { name: string; kind: 'startup'; value: number; unit: string; show: string; note: string; detail: Record<string, unknown>; error?: string }
export interface StartupRatio { name: string; value: number; target: number; targetText: string; how: string; lowerIsBetter: true }

function once(pcpus: number): Promise<{ wallS: number; rssMb: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    execFile(process.execPath, [BIN, 'sim', '--scenario', 'counter', '--pcpus', String(pcpus), '--json'], { maxBuffer: 256 << 20, timeout: 300_000 }, (err, stdout) => {
      const wallS = (performance.now() - t0) / 1000;
      if (err !== null) { reject(err); return; }
      try {
        const r = JSON.parse(stdout) as { outcome: string; metrics: { peak_rss_mb: number; instructions: number } };
        if (r.outcome !== 'completed' || !(r.metrics.instructions > 0)) throw new Error(`counter on ${pcpus} pCPUs: outcome ${r.outcome}, ${r.metrics.instructions} instructions`);
        resolve({ wallS, rssMb: r.metrics.peak_rss_mb });
      } catch (e) { reject(e as Error); }
    });
  });
}

/**
 * For scale: the same number of Node worker threads doing nothing (each starts, says so, and waits for the
 * end), spawned in a child process, from spawn to exit, and that process's peak resident memory. What one
 * thread per pCPU costs before any of vcpulab's code loads.
 */
const FLOOR_CHILD = `
import { Worker } from 'node:worker_threads';
const n = Number(process.argv[1]);
const ws = [];
let online = 0;
await new Promise((done) => {
  for (let i = 0; i < n; i++) {
    const w = new Worker("require('node:worker_threads').parentPort.postMessage(1)", { eval: true, execArgv: [] });
    w.once('message', () => { if (++online === n) done(); });
    ws.push(w);
  }
});
await Promise.all(ws.map((w) => w.terminate()));
process.stdout.write(JSON.stringify({ rssMb: Math.round(process.resourceUsage().maxRSS / 1024) }));
`;

function floorOnce(threads: number): Promise<{ wallS: number; rssMb: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    execFile(process.execPath, ['--input-type=module', '-e', FLOOR_CHILD, String(threads)], { timeout: 300_000 }, (err, stdout) => {
      const wallS = (performance.now() - t0) / 1000;
      if (err !== null) { reject(err); return; }
      try { resolve({ wallS, rssMb: (JSON.parse(stdout) as { rssMb: number }).rssMb }); } catch (e) { reject(e as Error); }
    });
  });
}

export async function startupBench(o: { quick: boolean; reps: number; progress: (line: string) => void }): Promise<{ rows: StartupRow[]; ratios: StartupRatio[] }> {
  const pcpus = o.quick ? 16 : STARTUP_PCPUS;
  const rows: StartupRow[] = [];
  const ratios: StartupRatio[] = [];
  try {
    const runs: { wallS: number; rssMb: number }[] = [];
    for (let r = 0; r < o.reps; r++) runs.push(await once(pcpus));
    const wall = median(runs.map((x) => x.wallS)), rss = median(runs.map((x) => x.rssMb));
    o.progress(`start-up: ${pcpus} pCPUs threaded, ${wall.toFixed(1)} s, ${rss} MiB peak`);
    rows.push({ name: `start-up, threaded, ${pcpus} pCPUs: the counter scenario, spawn to exit`, kind: 'startup', value: wall, unit: 's', show: fmtN(wall), note: `reps ${runs.map((x) => x.wallS.toFixed(1)).join(', ')}`, detail: { reps: runs.map((x) => x.wallS) } });
    rows.push({ name: `peak resident memory, threaded, ${pcpus} pCPUs`, kind: 'startup', value: rss, unit: 'MiB', show: fmtN(rss), note: `reps ${runs.map((x) => x.rssMb).join(', ')}`, detail: { reps: runs.map((x) => x.rssMb) } });
    ratios.push({ name: `start-up of ${pcpus} pCPUs, threaded (s)`, value: wall, target: 2, targetText: '< 2 s', how: 'spawn to exit of sim --scenario counter --pcpus N', lowerIsBetter: true });
    ratios.push({ name: `peak memory of ${pcpus} pCPUs, threaded (MiB)`, value: rss, target: 1024, targetText: '< 1024 MiB', how: 'metrics.peak_rss_mb', lowerIsBetter: true });
    const floor: { wallS: number; rssMb: number }[] = [];
    for (let r = 0; r < o.reps; r++) floor.push(await floorOnce(pcpus));
    const fw = median(floor.map((x) => x.wallS)), fr = median(floor.map((x) => x.rssMb));
    o.progress(`for scale: ${pcpus} empty worker threads, ${fw.toFixed(1)} s, ${fr} MiB peak`);
    rows.push({ name: `for scale: ${pcpus} empty Node worker threads (spawn to exit)`, kind: 'startup', value: fw, unit: 's', show: fmtN(fw), note: `reps ${floor.map((x) => x.wallS.toFixed(1)).join(', ')}`, detail: { reps: floor.map((x) => x.wallS) } });
    rows.push({ name: `for scale: peak resident memory of ${pcpus} empty Node worker threads`, kind: 'startup', value: fr, unit: 'MiB', show: fmtN(fr), note: `reps ${floor.map((x) => x.rssMb).join(', ')}`, detail: { reps: floor.map((x) => x.rssMb) } });
    ratios.push({ name: `start-up of ${pcpus} pCPUs / ${pcpus} empty worker threads (wall)`, value: wall / fw, target: NaN, targetText: 'info: x empty threads', how: 'spawn to exit, each in its own process', lowerIsBetter: true });
    ratios.push({ name: `peak memory of ${pcpus} pCPUs / ${pcpus} empty worker threads`, value: rss / fr, target: NaN, targetText: 'info: x empty threads', how: 'peak RSS, each in its own process', lowerIsBetter: true });
  } catch (e) {
    rows.push({ name: `start-up, threaded, ${pcpus} pCPUs`, kind: 'startup', value: NaN, unit: 's', show: 'failed', note: errText(e), detail: {}, error: errText(e) });
  }
  return { rows, ratios };
}

await runStandalone(import.meta.url, startupBench);
