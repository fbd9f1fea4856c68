// `vcpulab worker --queue URL`: work the distributed hunts published on a BullMQ server (src/hunt/worker.ts).
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { EXIT_INTERRUPTED, EXIT_OK, UserError } from '../errors.js';
import { LOCK_MS_DEFAULT, parseQueueUrl, queueProbe } from '../hunt/queue.js';
import { runQueueWorker } from '../hunt/worker.js';
import { sigintFlag } from './interrupt.js';
import { intFlag as cliIntFlag } from './flags.js';

export const WORKER_USAGE = `usage: vcpulab worker --queue URL [flags]
  --queue URL              the BullMQ server of the campaigns, redis://HOST:PORT[/DB]
  --workers W              pool workers (threads) running this process's runs, 1..256 (default: the number of cores)
  --lock-ms N              how long a batch stays locked to this worker without renewal; a worker that dies
                           mid-batch gives its batch back after about this long, 1000..600000 (default: ${LOCK_MS_DEFAULT})
  -h, --help               this text
Runs until Ctrl-C (or SIGTERM), which finishes the batches in hand; a second Ctrl-C leaves at once.`;

const intFlag = (name: string, v: string | undefined, lo: number, hi: number): number | undefined => cliIntFlag('vcpulab worker', name, v, lo, hi);

export async function workerCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args, strict: true, allowPositionals: false,
      options: { queue: { type: 'string' }, workers: { type: 'string' }, 'lock-ms': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0].replace(/\. To specify a positional argument.*$/, '');
    throw new UserError(`vcpulab worker: ${msg} (see vcpulab worker --help)`);
  }
  const v = parsed.values;
  if (v.help === true) { process.stdout.write(WORKER_USAGE + '\n'); return EXIT_OK; }
  if (v.queue === undefined) throw new UserError('vcpulab worker: --queue URL is required (redis://HOST:PORT[/DB])');
  const queue = parseQueueUrl('worker', v.queue);
  const workers = intFlag('workers', v.workers, 1, 256) ?? availableParallelism();
  const lockMs = intFlag('lock-ms', v['lock-ms'], 1000, 600_000) ?? LOCK_MS_DEFAULT;
  await queueProbe('worker', queue);
  const interrupt = sigintFlag();
  // SIGTERM as Ctrl-C: the first finishes the batches in hand, a second leaves at once.
  const term = (): void => { if (interrupt.requested) process.exit(EXIT_INTERRUPTED); interrupt.requested = true; };
  process.on('SIGTERM', term);
  try {
    const s = await runQueueWorker({ queue, workers, lockMs, interrupt, log: (line) => { process.stderr.write(line + '\n'); } });
    process.stderr.write(`vcpulab worker ${s.name}: stopped after ${s.runs} runs in ${s.batches} batches of ${s.campaigns} campaigns\n`);
  } finally {
    process.off('SIGTERM', term);
  }
  return EXIT_INTERRUPTED;
}
