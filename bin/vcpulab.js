#!/usr/bin/env node
// Launcher: runs the compiled CLI (npm install builds it through the `prepare` script).
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
// Ctrl-C is caught from here on: loading the CLI below takes tens of ms, and a SIGINT in that time must still
// end with a report (src/cli/interrupt.ts), not kill the process.
const { sigintFlag } = await import(new URL('../dist/src/cli/interrupt.js', import.meta.url).href);
sigintFlag();
const { main } = await import(entry.href);
const code = await main(process.argv.slice(2));
// Flush stdout before leaving (large JSON reports to a pipe).
process.stdout.write('', () => process.exit(code));
