// Three tiers of errors (../shared/STYLE.md §13):
//  - bad user input (flags, scenario files, guest assembly): UserError, one line, exit code 2;
//  - guest misbehaviour: never an exception here; the guest gets #UD/#GP or its domain crashes;
//  - a broken simulator invariant: bug(), which says so plainly and ends the run with exit code 1.

export const EXIT_OK = 0;
/** A guest assert or an internal invariant failed, or the run aborted. */
export const EXIT_FAILURE = 1;
export const EXIT_BAD_INPUT = 2;
/** Interrupted by SIGINT after writing the partial report (shell convention 128 + 2). */
export const EXIT_INTERRUPTED = 130;

/** Bad input. `message` is already the whole line the user sees, e.g. `prog.s:12:9: unknown register 'eaz'`. */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** Build a `file:line:col: message` (line/col omitted when unknown). */
export function located(file: string, line: number | undefined, col: number | undefined, msg: string): string {
  let where = file;
  if (line !== undefined) where += `:${line}`;
  if (line !== undefined && col !== undefined) where += `:${col}`;
  return `${where}: ${msg}`;
}

export function userError(file: string, line: number | undefined, col: number | undefined, msg: string): UserError {
  return new UserError(located(file, line, col, msg));
}

/** An invariant of the simulator itself failed. */
export function bug(msg: string): never {
  throw new Error(`this is a bug in vcpulab: ${msg}`);
}

export function assert(cond: boolean, msg: string): asserts cond {
  if (!cond) bug(msg);
}
