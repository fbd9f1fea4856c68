// What every command's integer flags share: the value is checked against its range, and a bad one is the
// command's one-line error (bad input, exit 2).
import { UserError } from '../errors.js';

/** `--name v` as an integer in lo..hi, or undefined when the flag was not given. `cmd`: "vcpulab sim", ... */
export function intFlag(cmd: string, name: string, v: string | undefined, lo: number, hi: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v.trim()) || Number(v) < lo || Number(v) > hi) throw new UserError(`${cmd}: --${name} must be an integer from ${lo} to ${hi}, got '${v}'`);
  return Number(v);
}
