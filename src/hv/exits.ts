// What counts as a VM exit: the one place that changes a pCPU's exit counters (PC_EXITS, by EXIT_*
// reason), which the report and the compare table show and the IPI paths are judged by (exits per IPI).
// A leaf: the pCPU loop counts what the interpreter returned, and the handlers below it correct the
// count where the interpreter cannot tell (an EPT violation that was an APIC access, one the CPU turned
// into a #VE without exiting). Cycles are charged by whoever handles the exit (the cost differs per
// reason); counting and charging are paired at each call site.
import { PC_EXITS, PC_TIMER_EXITS } from '../../shared/pcpu.js';
import { assert } from '../errors.js';
import type { Machine } from '../machine.js';

/** The pCPU context the counters need: its machine and its block's base word. */
export interface ExitCounterCtx { readonly m: Machine; readonly base: number }

/** The CPU left guest mode for `reason`. */
export function exitCount(p: ExitCounterCtx, reason: number): void {
  p.m.pc32[p.base + PC_EXITS + reason]++;
}

/** The external-interrupt exit just counted was the LAPIC timer's tick (PC_TIMER_EXITS). */
export function exitCountTimer(p: ExitCounterCtx): void {
  p.m.pc32[p.base + PC_TIMER_EXITS]++;
}

/**
 * The interpreter stopped for `reason`, but the CPU would not have exited: a violation that the CPU
 * delivers to the guest as a #VE (mem-access.ts). Pairs with the exitCount of the same reason.
 */
export function exitNotTaken(p: ExitCounterCtx, reason: number): void {
  const i = p.base + PC_EXITS + reason;
  assert(p.m.pc32[i] > 0, `an exit (reason ${reason}) taken back that was never counted`);
  p.m.pc32[i]--;
}

/** The exit counted as `from` is really a `to` exit (an access to an APIC-access page is not an EPT violation). */
export function exitReclassify(p: ExitCounterCtx, from: number, to: number): void {
  exitNotTaken(p, from);
  exitCount(p, to);
}
