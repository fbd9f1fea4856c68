// Memory rows of `npm run bench`: a run's memory is bounded by the machine, not by how long it runs. Three
// workloads, each on both engines, each run in a child process of its own (the report's
// metrics.peak_rss_mb is that process's peak resident memory) for a long and a short wall time:
//   - magic loop: 1 vCPU, `l: magic 1` / `jmp l` (a report per two instructions; the report keeps the first
//     ones and counts the rest);
//   - vmcall loop: 4 vCPUs on 4 pCPUs, `l: vmcall` / `jmp l` (an exit and an event per two instructions);
//   - secure-realm (built in), --max-instructions 0.
// The row's definition is 60 s against 6 s (target: long / short peak RSS <= 1.2, flat). The durations
// can be shortened for a quicker look (--mem-long-s S --mem-short-s S; --quick: 6 and 2), and the note
// says which were used.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errText, runStandalone } from './format.js';

const BIN = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../bin/vcpulab.js' : '../../bin/vcpulab.js', import.meta.url));
export const MEMORY_LONG_S = 60;
export const MEMORY_SHORT_S = 6;
export const MEMORY_TARGET_RATIO = 1.2;

export interface MemoryRow { name: string; kind: 'memory'; value: number; unit: string; show: string; note: string; detail: Record<string, unknown>; error?: string }
export interface MemoryRatio { name: string; value: number; target: number; targetText: string; how: string; lowerIsBetter: true }

const LOOP = (body: string): string => `_start:\nl:  ${body}\n    jmp l\n`;
const WORKLOADS: { name: string; files?: { toml: string; prog: string }; scenario?: string }[] = [
  { name: 'magic 1 loop, 1 vCPU', files: { prog: LOOP('magic 1'), toml: '[machine]\npcpus = 1\n[[domain]]\nname = "g"\nvcpus = 1\nmemory_kb = 64\nprogram = "prog.s"\n' } },
  { name: 'vmcall loop, 4 vCPUs', files: { prog: LOOP('vmcall'), toml: '[machine]\npcpus = 4\n[[domain]]\nname = "g"\nvcpus = 4\nmemory_kb = 64\nprogram = "prog.s"\ncpus = "all"\n' } },
  { name: 'secure-realm', scenario: 'secure-realm' },
];

function peakRss(scenario: string, engine: string, seconds: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const args = [BIN, 'sim', '--scenario', scenario, '--engine', engine, '--max-ms', String(seconds * 1000), '--max-instructions', '0', '--json', '--no-progress'];
    execFile(process.execPath, args, { maxBuffer: 256 << 20, timeout: seconds * 1000 + 120_000 }, (err, stdout) => {
      // Exit 1 is a run with findings that fail it (secure-realm's own); the report is still whole.
      if (err !== null && (err as { code?: unknown }).code !== 1) { reject(err); return; }
      try {
        resolve((JSON.parse(stdout) as { metrics: { peak_rss_mb: number } }).metrics.peak_rss_mb);
      } catch (e) { reject(e as Error); }
    });
  });
}

function argSeconds(flag: string, fallback: number): number {
  const i = process.argv.indexOf(flag);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

export async function memoryBench(o: { quick: boolean; progress: (line: string) => void }): Promise<{ rows: MemoryRow[]; ratios: MemoryRatio[] }> {
  const longS = argSeconds('--mem-long-s', o.quick ? 6 : MEMORY_LONG_S);
  const shortS = argSeconds('--mem-short-s', o.quick ? 2 : MEMORY_SHORT_S);
  const full = longS === MEMORY_LONG_S && shortS === MEMORY_SHORT_S;
  const rows: MemoryRow[] = [];
  const ratios: MemoryRatio[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'vcpulab-bench-memory-'));
  try {
    for (const w of WORKLOADS) {
      let scenario = w.scenario ?? '';
      if (w.files !== undefined) {
        const d = mkdtempSync(join(dir, 'w-'));
        writeFileSync(join(d, 'prog.s'), w.files.prog);
        writeFileSync(join(d, 's.toml'), w.files.toml);
        scenario = join(d, 's.toml');
      }
      for (const engine of ['serial', 'threaded']) {
        const name = `peak RSS, ${w.name}, ${engine}: ${longS} s run / ${shortS} s run`;
        try {
          const short = await peakRss(scenario, engine, shortS);
          const long = await peakRss(scenario, engine, longS);
          const ratio = long / short;
          o.progress(`memory: ${w.name}, ${engine}: ${short} MiB at ${shortS} s, ${long} MiB at ${longS} s (x${ratio.toFixed(2)})`);
          rows.push({
            name, kind: 'memory', value: ratio, unit: 'x', show: ratio.toFixed(2),
            note: `${short} MiB after ${shortS} s, ${long} MiB after ${longS} s${full ? '' : ` (the row is defined as ${MEMORY_LONG_S} s / ${MEMORY_SHORT_S} s; shortened here)`}`,
            detail: { short_s: shortS, long_s: longS, short_mb: short, long_mb: long },
          });
          ratios.push({ name: `peak RSS growth, ${w.name}, ${engine} (${longS} s / ${shortS} s)`, value: ratio, target: MEMORY_TARGET_RATIO, targetText: `<= ${MEMORY_TARGET_RATIO}`, how: 'metrics.peak_rss_mb of the long run / of the short run, each in its own process', lowerIsBetter: true });
        } catch (e) {
          rows.push({ name, kind: 'memory', value: NaN, unit: 'x', show: 'failed', note: errText(e), detail: {}, error: errText(e) });
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { rows, ratios };
}

await runStandalone(import.meta.url, (o) => memoryBench(o));
