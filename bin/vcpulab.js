#!/usr/bin/env node
// Launcher: runs the compiled CLI (npm install builds it through the `prepare` script).
// Ctrl-C is caught from the first statement: until the CLI's own handler takes over (src/cli/interrupt.ts,
// which adopts this flag), a SIGINT is remembered, and the run that starts later stops at once with a report.
const earlySigint = { requested: false };
const onEarlySigint = () => { if (earlySigint.requested) process.exit(130); earlySigint.requested = true; };
process.on('SIGINT', onEarlySigint);
globalThis[Symbol.for('vcpulab.sigint')] = { flag: earlySigint, handler: onEarlySigint };
import { existsSync } from 'node:fs';
import v8 from 'node:v8';
// pCPU worker threads each compile the interpreter with TurboFan. With more threads than cores, V8's
// background compile jobs starve behind the busy workers and most pCPUs run unoptimized code for
// seconds; compiling on the worker's own thread instead makes 64 pCPUs on 2 cores about twice as fast.
// Set before any worker isolate exists, so every pCPU thread gets it.
v8.setFlagsFromString('--no-concurrent-recompilation');
v8.setFlagsFromString('--no-concurrent-osr');
const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('vcpulab: not built yet; run `npm run build` (npm install does it too)\n');
  process.exit(2);
}
const { sigintFlag } = await import(new URL('../dist/src/cli/interrupt.js', import.meta.url).href);
sigintFlag();
const { main } = await import(entry.href);
const code = await main(process.argv.slice(2));
// Flush stdout before leaving (large JSON reports to a pipe).
process.stdout.write('', () => process.exit(code));
