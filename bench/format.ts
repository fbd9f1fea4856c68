// Small helpers the bench row modules (bench/ipi.ts, bench/altp2m.ts) share: number formatting, error
// text, and running one module alone from the command line.
import { pathToFileURL } from 'node:url';

export const num = (x: unknown): number => (typeof x === 'number' ? x : NaN);
export function r2(x: number): number { return Math.round(x * 100) / 100; }
export function r3(x: number): number { return Math.round(x * 1000) / 1000; }
/** A figure with about three significant digits, 'n/a' when not finite. */
export function fmtN(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toFixed(3);
}
export const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

interface RowLike { name: string; show: string; unit: string; note: string }
interface RatioLike { name: string; value: number }
type BenchFn = (o: { quick: boolean; reps: number; pingPongUs: number; progress: (line: string) => void }) => Promise<{ rows: RowLike[]; ratios: RatioLike[] }>;

/**
 * When `moduleUrl` is the script node was started with, run `bench` alone (ping-pong RT from a fresh floor
 * measurement) and print its rows: `node dist/bench/NAME.js [--quick]`.
 */
export async function runStandalone(moduleUrl: string, bench: BenchFn): Promise<void> {
  if (process.argv[1] === undefined || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  const { pingPong } = await import('./floors.js');
  const quick = process.argv.includes('--quick');
  const t0 = performance.now();
  const pp = await pingPong(quick ? 20_000 : 100_000);
  const progress = (s: string): void => { process.stderr.write(`  ${s}\n`); };
  progress(`ping-pong RT ${pp.medianUs.toFixed(3)} us`);
  const { rows, ratios } = await bench({ quick, reps: quick ? 1 : 3, pingPongUs: pp.medianUs, progress });
  for (const r of rows) process.stdout.write(`| ${r.name} | ${r.show} | ${r.unit} | ${r.note} |\n`);
  for (const q of ratios) process.stdout.write(`| ${q.name} | ${q.value.toFixed(2)} |\n`);
  process.stdout.write(`(${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
}
