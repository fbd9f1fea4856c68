// Ctrl-C for every command, from the moment the launcher starts (bin/vcpulab.js installs it before it loads
// the rest of the CLI, which takes tens of ms): the first SIGINT only sets the shared flag, which engines,
// hunts and comparisons poll and answer with partial results (exit 130); a second one leaves at once.
import { EXIT_INTERRUPTED } from '../errors.js';

/** What the launcher installed before anything else (bin/vcpulab.js): its flag and handler. */
const early = (globalThis as Record<symbol, unknown>)[Symbol.for('vcpulab.sigint')] as
  { flag: { requested: boolean }; handler: () => void } | undefined;

/** The one interrupt flag of this process (the launcher's, so a SIGINT it caught is not lost). */
export const sigint: { requested: boolean } = early?.flag ?? { requested: false };
let installed = false;

/** Install the handler (idempotent) and return the flag. */
export function sigintFlag(): { requested: boolean } {
  if (!installed) {
    installed = true;
    if (early !== undefined) process.off('SIGINT', early.handler);
    process.on('SIGINT', () => {
      if (sigint.requested) process.exit(EXIT_INTERRUPTED);
      sigint.requested = true;
    });
  }
  return sigint;
}
