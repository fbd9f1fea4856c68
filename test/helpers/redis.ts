// A private redis-server for the distributed-hunt tests: a free loopback port, no persistence, noeviction
// (what BullMQ needs), stopped by the test. Without redis-server the tests skip and say why; with
// VCPULAB_REQUIRE_REDIS=1 (CI) they fail instead.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

export const REDIS_REQUIRED = process.env.VCPULAB_REQUIRE_REDIS === '1';

/** null when redis-server can run here, else why not. */
export function redisMissing(): string | null {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (r.error !== undefined || r.status !== 0) return `redis-server not found (${r.error?.message ?? `exit ${r.status}`}); install Debian's redis-server to run these tests`;
  return null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface TestRedis { port: number; url: string; stop(): Promise<void>; restart(): Promise<void> }

function launch(port: number): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`redis-server on port ${port} did not start: ${out.slice(-400)}`)); }, 10_000);
    p.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) { clearTimeout(t); resolve(p); }
    });
    p.on('exit', (code) => { clearTimeout(t); reject(new Error(`redis-server exited (${code}): ${out.slice(-400)}`)); });
  });
}

function stopProc(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) { resolve(); return; }
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
  });
}

export async function startRedis(): Promise<TestRedis> {
  const port = await freePort();
  let proc = await launch(port);
  return {
    port, url: `redis://127.0.0.1:${port}`,
    stop: () => stopProc(proc),
    async restart() { await stopProc(proc); proc = await launch(port); },
  };
}
