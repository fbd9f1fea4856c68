// Start-up rows of `npm run bench`: what a big machine costs before it computes anything. The threaded
// engine with 254 pCPUs (the most an xAPIC machine has) runs the counter scenario for --max-ms 100 in a
// child process, as a user runs it; the row is the wall time from spawn to exit and the process's peak
// resident memory (the report's metrics.peak_rss_mb). Targets: under 2 s and under 1 GiB (reported, not
// asserted).
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
    execFile(process.execPath, [BIN, 'sim', '--scenario', 'counter', '--pcpus', String(pcpus), '--max-ms', '100', '--json'], { maxBuffer: 256 << 20, timeout: 300_000 }, (err, stdout) => {
      const wallS = (performance.now() - t0) / 1000;
      if (err !== null) { reject(err); return; }
      try {
        const r = JSON.parse(stdout) as { metrics: { peak_rss_mb: number } };
        resolve({ wallS, rssMb: r.metrics.peak_rss_mb });
      } catch (e) { reject(e as Error); }
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
    rows.push({ name: `start-up, threaded, ${pcpus} pCPUs, --max-ms 100 (spawn to exit)`, kind: 'startup', value: wall, unit: 's', show: fmtN(wall), note: `reps ${runs.map((x) => x.wallS.toFixed(1)).join(', ')}`, detail: { reps: runs.map((x) => x.wallS) } });
    rows.push({ name: `peak resident memory, threaded, ${pcpus} pCPUs`, kind: 'startup', value: rss, unit: 'MiB', show: fmtN(rss), note: `reps ${runs.map((x) => x.rssMb).join(', ')}`, detail: { reps: runs.map((x) => x.rssMb) } });
    ratios.push({ name: `start-up of ${pcpus} pCPUs, threaded (s)`, value: wall, target: 2, targetText: '< 2 s', how: 'spawn to exit of sim --pcpus N --max-ms 100', lowerIsBetter: true });
    ratios.push({ name: `peak memory of ${pcpus} pCPUs, threaded (MiB)`, value: rss, target: 1024, targetText: '< 1024 MiB', how: 'metrics.peak_rss_mb', lowerIsBetter: true });
  } catch (e) {
    rows.push({ name: `start-up, threaded, ${pcpus} pCPUs`, kind: 'startup', value: NaN, unit: 's', show: 'failed', note: errText(e), detail: {}, error: errText(e) });
  }
  return { rows, ratios };
}

await runStandalone(import.meta.url, startupBench);
