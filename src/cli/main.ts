// vcpulab command dispatcher. Bad input ends with one line on stderr and exit code 2; anything else
// unexpected is a bug in vcpulab and says so (exit 1), with the stack only when VCPULAB_DEBUG is set.
import { EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, UserError } from '../errors.js';
import { asmCommand } from './asm.js';
import { sigintFlag } from './interrupt.js';
import { simCommand } from './sim.js';
import { traceCommand } from './trace.js';
import { huntCommand } from './hunt.js';
import { regressCommand, replayCommand } from './replay.js';
import { reproduceCommand } from './reproduce.js';
import { listBuiltins } from '../scenario/loader.js';

const USAGE = `usage: vcpulab <command> [args]
commands:
  sim [flags]          run a scenario (vcpulab sim --help for the flags)
  replay FILE          replay a schedule (hunt --out or sim --schedule-out); exit 1 if it no longer produces its finding
  hunt [flags]         search many serial schedules for races on a worker pool (vcpulab hunt --help)
  worker --queue URL   run the batches of distributed hunts (hunt --queue URL) on this machine's pool
  regress DIR          replay every DIR/*.schedule; exit 1 naming those that no longer reproduce
  reproduce REPORT     hunt serial schedules for a finding of a (threaded) sim --json report, then shrink it
  asm FILE             assemble a guest program and print its listing
  trace FILE [flags]   summarize a sim --trace file, grep its events, or export it for Perfetto (vcpulab trace --help)
  scenarios            list the built-in scenarios`;

export async function main(argv: string[]): Promise<number> {
  sigintFlag(); // already installed by the launcher; here for callers that start at main()
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'sim': return await simCommand(rest);
      case 'replay': return await replayCommand(rest);
      case 'hunt': return await huntCommand(rest);
      case 'regress': return await regressCommand(rest);
      case 'reproduce': return await reproduceCommand(rest);
      case 'worker': return await (await import('./worker.js')).workerCommand(rest); // loads BullMQ only here
      case 'asm': return await asmCommand(rest);
      case 'trace': return await traceCommand(rest);
      case 'scenarios':
        for (const b of listBuiltins()) process.stdout.write(`${b.name.padEnd(22)} ${b.description}\n`);
        return EXIT_OK;
      case undefined: case '-h': case '--help': case 'help':
        process.stdout.write(USAGE + '\n');
        return cmd === undefined ? EXIT_BAD_INPUT : EXIT_OK;
      default:
        throw new UserError(`vcpulab: unknown command '${cmd}' (commands: sim, replay, hunt, worker, regress, reproduce, asm, trace, scenarios)`);
    }
  } catch (e) {
    if (e instanceof UserError) {
      // One line, always: a value quoted from a file may hold line breaks (a TOML multi-line string).
      process.stderr.write(`${e.message.replace(/\r?\n/g, '\\n')}\n`);
      return EXIT_BAD_INPUT;
    }
    const err = e as Error;
    process.stderr.write(`vcpulab: internal error: ${err.message}\n`);
    if (process.env.VCPULAB_DEBUG !== undefined) process.stderr.write(`${err.stack ?? ''}\n`);
    return EXIT_FAILURE;
  }
}
