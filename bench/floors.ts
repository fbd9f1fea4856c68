// Floors for `npm run bench`, measured in the same run as the simulator (../shared/reference/toolchain.md §5):
//  (a) a bare interpreter: a plain JS `switch` loop over an Int32Array program with the counter loop's shape
//      (2 words per instruction, plain loads/stores, the lock xadd as Atomics.add), no simulation around it;
//      1 worker, and 2 workers in parallel on their own regions (256 KiB apart) for the 2-worker speed-up;
//  (b) the Atomics spin ping-pong round trip between two workers.
// Workers are `new Worker(source, { eval: true })` over plain JS, so no TypeScript loader is involved and
// the main thread stays idle while they run.
import { Worker } from 'node:worker_threads';

/** Instructions per loop iteration of the floor's program (the same as the guest counter loop). */
export const FLOOR_INSNS_PER_ITER = 8;

// Op numbers and encoding: w0 = op | rd << 8 | rs << 12, w1 = imm. Memory is word-addressed.
// The dispatch loop, compiled in the worker with `new Function` (its own JIT feedback).
const INTERP_BODY = `
  const R = new Int32Array(17);
  let pc = 0, n = 0, zf = false;
  for (;;) {
    const w0 = code[pc], w1 = code[pc + 1];
    const op = w0 & 0xff, rd = (w0 >>> 8) & 15, rs = (w0 >>> 12) & 15;
    n++;
    switch (op) {
      case 0: R[rd] = w1; pc += 2; continue;                                    // movi
      case 1: R[rd] = Atomics.add(mem, (R[rs] + w1) | 0, R[rd]); pc += 2; continue; // xadd (lock)
      case 2: R[rd] = mem[(R[rs] + w1) | 0]; pc += 2; continue;                 // ld
      case 3: R[rd] = (R[rd] + w1) | 0; pc += 2; continue;                      // addi
      case 4: mem[(R[rs] + w1) | 0] = R[rd]; pc += 2; continue;                 // st
      case 5: R[rd] = (R[rd] + R[rs]) | 0; pc += 2; continue;                   // add
      case 6: { const r = (R[rd] - 1) | 0; R[rd] = r; zf = r === 0; pc += 2; continue; } // dec
      case 7: pc = zf ? pc + 2 : w1 * 2; continue;                              // jnz
      case 8: return n;                                                         // halt
      default: throw new Error('bad op ' + op + ' at ' + pc);
    }
  }
`;

const INTERP_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { mem, go, region, iters, warmIters } = workerData;
const mem32 = new Int32Array(mem);
const go32 = new Int32Array(go);
const MOVI = 0, XADD = 1, LD = 2, ADDI = 3, ST = 4, ADD = 5, DEC = 6, JNZ = 7, HALT = 8;
const enc = (op, rd, rs) => op | (rd << 8) | (rs << 12);
// r1 = counter, r3 = base of this worker's region; one iteration = 8 instructions:
//   movi r2,1; xadd [r3+0],r2; ld r0,[r3+1]; addi r0,1; st [r3+1],r0; add r6,r2; dec r1; jnz loop
function program(n) {
  return Int32Array.from([
    enc(MOVI, 1, 0), n,
    enc(MOVI, 3, 0), region,
    enc(MOVI, 2, 0), 1,            // loop: (instruction 2)
    enc(XADD, 2, 3), 0,
    enc(LD, 0, 3), 1,
    enc(ADDI, 0, 0), 1,
    enc(ST, 0, 3), 1,
    enc(ADD, 6, 2), 0,
    enc(DEC, 1, 0), 0,
    enc(JNZ, 0, 0), 2,
    enc(HALT, 0, 0), 0,
  ]);
}
const run = new Function('code', 'mem', 'Atomics', ${JSON.stringify(INTERP_BODY)});
function once(k) {
  mem32[region] = 0; mem32[region + 1] = 0;
  const n = run(program(k), mem32, Atomics);
  if (n !== 8 * k + 3 || mem32[region] !== k || mem32[region + 1] !== k) {
    throw new Error('floor interpreter self-check failed: n=' + n + ' mem=' + mem32[region] + ',' + mem32[region + 1]);
  }
  return n;
}
once(1000);
once(warmIters);
parentPort.postMessage({ ready: true });
Atomics.wait(go32, 0, 0);
const t0 = performance.timeOrigin + performance.now();
const n = once(iters);
const t1 = performance.timeOrigin + performance.now();
parentPort.postMessage({ n, t0, t1 });
`;

const PINGPONG_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { sab, role, trips, warm } = workerData;
const w = new Int32Array(sab);
const total = trips + warm;
if (role === 0) {
  const rt = new Float64Array(trips);
  for (let i = 0; i < total; i++) {
    const t0 = performance.now();
    Atomics.store(w, 0, 2 * i + 1);
    while (Atomics.load(w, 0) !== 2 * i + 2) { /* spin */ }
    const t1 = performance.now();
    if (i >= warm) rt[i - warm] = t1 - t0;
  }
  parentPort.postMessage({ rt }, [rt.buffer]);
} else {
  for (let i = 0; i < total; i++) {
    while (Atomics.load(w, 0) !== 2 * i + 1) { /* spin */ }
    Atomics.store(w, 0, 2 * i + 2);
  }
  parentPort.postMessage({ done: true });
}
`;

interface WorkerMsg { ready?: boolean; n?: number; t0?: number; t1?: number; rt?: Float64Array; done?: boolean }

function withTimeout<T>(p: Promise<T>, ms: number, what: string, workers: Worker[]): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      for (const w of workers) void w.terminate();
      reject(new Error(`${what}: no answer within ${ms} ms`));
    }, ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Messages of one worker: resolves each `next()` with the following message. */
function inbox(w: Worker): { next(): Promise<WorkerMsg>; exited: Promise<number> } {
  const queue: WorkerMsg[] = [];
  const waiters: { resolve: (m: WorkerMsg) => void; reject: (e: Error) => void }[] = [];
  let failure: Error | null = null;
  w.on('message', (m: WorkerMsg) => { const x = waiters.shift(); if (x !== undefined) x.resolve(m); else queue.push(m); });
  w.on('error', (e: Error) => { failure = e; for (const x of waiters.splice(0)) x.reject(e); });
  const exited = new Promise<number>((resolve) => w.on('exit', resolve));
  return {
    next: () => {
      const m = queue.shift();
      if (m !== undefined) return Promise.resolve(m);
      if (failure !== null) return Promise.reject(failure);
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    },
    exited,
  };
}

export interface InterpRun {
  workers: number;
  instructions: number;
  seconds: number;
  /** Aggregate million instructions per second: all workers' instructions over first start to last end. */
  mips: number;
}

/** One run of the bare interpreter floor on `workers` fresh workers, each over its own region. */
export async function bareInterp(workers: number, iters: number): Promise<InterpRun> {
  const mem = new SharedArrayBuffer(workers * 256 * 1024 + 64);
  const go = new SharedArrayBuffer(4);
  const ws: Worker[] = [];
  for (let k = 0; k < workers; k++) {
    ws.push(new Worker(INTERP_WORKER, { eval: true, workerData: { mem, go, region: k * 65536, iters, warmIters: Math.min(iters, 200_000) } }));
  }
  const boxes = ws.map(inbox);
  try {
    return await withTimeout((async () => {
      const ready = await Promise.all(boxes.map((b) => b.next()));
      if (!ready.every((m) => m.ready === true)) throw new Error('floor worker: unexpected message');
      Atomics.store(new Int32Array(go), 0, 1);
      Atomics.notify(new Int32Array(go), 0);
      const res = await Promise.all(boxes.map((b) => b.next()));
      let n = 0, t0 = Infinity, t1 = -Infinity;
      for (const r of res) {
        if (r.n === undefined || r.t0 === undefined || r.t1 === undefined) throw new Error('floor worker: no result');
        n += r.n; t0 = Math.min(t0, r.t0); t1 = Math.max(t1, r.t1);
      }
      const seconds = (t1 - t0) / 1000;
      return { workers, instructions: n, seconds, mips: n / seconds / 1e6 };
    })(), 120_000, 'bare interpreter floor', ws);
  } finally {
    await Promise.all(ws.map((w) => w.terminate()));
  }
}

export interface PingPongRun {
  trips: number;
  medianUs: number;
  meanUs: number;
  p99Us: number;
}

/** Atomics spin ping-pong between two fresh workers: `trips` timed round trips after `warm` untimed ones. */
export async function pingPong(trips: number, warm = 10_000): Promise<PingPongRun> {
  const sab = new SharedArrayBuffer(64);
  const ws = [0, 1].map((role) => new Worker(PINGPONG_WORKER, { eval: true, workerData: { sab, role, trips, warm } }));
  const boxes = ws.map(inbox);
  try {
    return await withTimeout((async () => {
      const [a] = await Promise.all(boxes.map((b) => b.next()));
      if (a.rt === undefined) throw new Error('ping-pong worker: no result');
      const rt = Float64Array.from(a.rt).sort();
      const mean = rt.reduce((s, x) => s + x, 0) / rt.length;
      return { trips, medianUs: quantile(rt, 0.5) * 1000, meanUs: mean * 1000, p99Us: quantile(rt, 0.99) * 1000 };
    })(), 60_000, 'ping-pong floor', ws);
  } finally {
    await Promise.all(ws.map((w) => w.terminate()));
  }
}

/** q-quantile of sorted values (nearest rank). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

export function median(xs: number[]): number {
  return quantile([...xs].sort((a, b) => a - b), 0.5);
}
