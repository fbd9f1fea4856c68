#!/usr/bin/env node
// Launcher: runs the compiled CLI (npm install builds it through the `prepare` script).
import { existsSync } from 'node:fs';
const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('vcpulab: not built yet; run `npm run build` (npm install does it too)\n');
  process.exit(2);
}
const { main } = await import(entry.href);
const code = await main(process.argv.slice(2));
// Flush stdout before leaving (large JSON reports to a pipe).
process.stdout.write('', () => process.exit(code));
