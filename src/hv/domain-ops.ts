// Ending a domain (shutdown, crash, all vCPUs dead-halted). Any pCPU may race to end the same
// domain; compareExchange on DM_STATE picks exactly one winner, which alone decrements the live count.
import * as C from '../../shared/machine.js';
import {
  DM_CRASH_A, DM_CRASH_B, DM_CRASH_C, DM_CRASH_REASON, DM_ENDED_BY, DM_EXIT_CODE, DM_STATE, DS_CRASHED, DS_RUNNING,
} from '../../shared/domain.js';
import type { Machine } from '../machine.js';

/** Returns true if this call ended the domain. */
export function domainEnd(m: Machine, dom: number, state: number, code: number, a: number, b: number, c: number, byVcpu: number): boolean {
  const db = m.domainBase(dom);
  if (Atomics.compareExchange(m.dm32, db + DM_STATE, DS_RUNNING, state) !== DS_RUNNING) return false;
  if (state === DS_CRASHED) {
    m.dm32[db + DM_CRASH_REASON] = code;
    m.dm32[db + DM_CRASH_A] = a;
    m.dm32[db + DM_CRASH_B] = b;
    m.dm32[db + DM_CRASH_C] = c;
  } else m.dm32[db + DM_EXIT_CODE] = code;
  m.dm32[db + DM_ENDED_BY] = byVcpu;
  // The threaded engine's main thread waits on this word between polls (engine/threaded.ts).
  if (Atomics.sub(m.ctl, C.CTL_LIVE_DOMAINS, 1) === 1) Atomics.notify(m.ctl, C.CTL_LIVE_DOMAINS);
  return true;
}
