// Both ends of an agent's mailbox (shared/agent-mailbox.ts): turn hand-offs, the vm_event request and
// response as numbers, and libxc calls carried across: the agent's side gets an object with XenControl's
// methods whose every call is one round trip to the engine, which makes the real call on the machine and
// sends back the result or the errno.
import {
  AA_BOOL, AA_LIST, AA_NUMBER, AM_BYTES, AM_ERRNO, AM_F64, AM_LIST_BYTE, AM_LIST_LEN, AM_LIST_MAX, AM_MAX_ARGS, AM_METHOD, AM_NARGS, AM_OP,
  AM_OP_XC_CALL, AM_OP_XC_RESULT, AM_TAGS, AM_TEXT_BYTE, AM_TEXT_LEN, AM_TEXT_MAX, AM_TURN, AM_TURN_AGENT, AM_TURN_ENGINE,
} from '../../shared/agent-mailbox.js';
import type { VmEventRequest, VmEventResponse } from '../hv/vm-event.js';
import { XcError, type XenControl } from './xc.js';
import { AdaptiveSpin } from '../spin.js';

/**
 * A waiting side's spin before Atomics.wait (src/spin.ts), in wall µs. Without it a serial run's agent in
 * its worker kept about a tenth of the in-thread round-trip rate: most hand-offs paid a futex wake.
 */
const SPIN_MIN_US = 5;
const SPIN_MAX_US = 500;
const SPIN_START_US = 50;

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder();

export class Mailbox {
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  /** The header as Float64 (index = word offset / 2). */
  readonly hf64: Float64Array;
  readonly list: Float64Array;
  private readonly text: Uint8Array;
  /** This side's spin. */
  private readonly spin = new AdaptiveSpin(SPIN_MIN_US, SPIN_MAX_US, SPIN_START_US);

  constructor(readonly sab: SharedArrayBuffer = new SharedArrayBuffer(AM_BYTES)) {
    this.i32 = new Int32Array(sab, 0, AM_F64 + 2 * AM_MAX_ARGS);
    this.f64 = new Float64Array(sab, AM_F64 * 4, AM_MAX_ARGS);
    this.hf64 = new Float64Array(sab, 0, AM_F64 / 2);
    this.list = new Float64Array(sab, AM_LIST_BYTE, AM_LIST_MAX);
    this.text = new Uint8Array(sab, AM_TEXT_BYTE, AM_TEXT_MAX);
  }

  /** Give the turn to `to`. The message is written first: the store of the turn publishes it. */
  handTo(to: number): void {
    Atomics.store(this.i32, AM_TURN, to);
    Atomics.notify(this.i32, AM_TURN);
  }

  /** Spin, then wait until it is `mine`'s turn, at most `ms` (Infinity: forever). Returns whether it is. */
  waitTurn(mine: number, ms: number): boolean {
    const i32 = this.i32;
    const spinEnd = this.spin.deadline();
    for (let i = 1; ; i++) {
      if (Atomics.load(i32, AM_TURN) === mine) { this.spin.hit(); return true; }
      if ((i & 63) === 0 && performance.now() > spinEnd) break;
    }
    const t0 = performance.now();
    const other = mine === AM_TURN_ENGINE ? AM_TURN_AGENT : AM_TURN_ENGINE;
    let got = true;
    if (ms === Infinity) {
      while (Atomics.load(i32, AM_TURN) !== mine) Atomics.wait(i32, AM_TURN, other);
    } else {
      const end = t0 + ms;
      for (;;) {
        if (Atomics.load(i32, AM_TURN) === mine) break;
        const left = end - performance.now();
        if (left <= 0) { got = false; break; }
        Atomics.wait(i32, AM_TURN, other, left);
      }
    }
    this.spin.waited((performance.now() - t0) * 1000, got);
    return got;
  }

  writeText(s: string): void {
    const r = ENCODER.encodeInto(s.length > AM_TEXT_MAX ? s.slice(0, AM_TEXT_MAX) : s, this.text);
    this.i32[AM_TEXT_LEN] = r.written;
  }

  readText(): string {
    // Copy out of the shared buffer: TextDecoder does not take views of a SharedArrayBuffer.
    return DECODER.decode(this.text.slice(0, Math.min(this.i32[AM_TEXT_LEN], AM_TEXT_MAX)));
  }
}

// ---- vm_event records as numbers ----

export const REQ_FIELDS = 10;

export function putRequest(mb: Mailbox, r: VmEventRequest): void {
  const f = mb.f64;
  f[0] = r.version; f[1] = r.flags; f[2] = r.reason; f[3] = r.vcpuId; f[4] = r.altp2mIdx;
  f[5] = r.gfn; f[6] = r.offset; f[7] = r.gla; f[8] = r.accessFlags; f[9] = r.pc;
  mb.i32[AM_NARGS] = REQ_FIELDS;
}

export function getRequest(mb: Mailbox): VmEventRequest {
  const f = mb.f64;
  return { version: f[0], flags: f[1], reason: f[2], vcpuId: f[3], altp2mIdx: f[4], gfn: f[5], offset: f[6], gla: f[7], accessFlags: f[8], pc: f[9] };
}

/** A checked response (runner.ts vmEventResponseError), or null for none. */
export function putResponse(mb: Mailbox, r: VmEventResponse | null): void {
  if (r === null) { mb.i32[AM_NARGS] = 0; return; }
  const f = mb.f64;
  f[0] = r.version; f[1] = r.flags; f[2] = r.reason; f[3] = r.vcpuId; f[4] = r.altp2mIdx;
  f[5] = r.fastSinglestepIdx ?? NaN;
  mb.i32[AM_NARGS] = 6;
}

export function getResponse(mb: Mailbox): VmEventResponse | null {
  if (mb.i32[AM_NARGS] === 0) return null;
  const f = mb.f64;
  const r: VmEventResponse = { version: f[0], flags: f[1], reason: f[2], vcpuId: f[3], altp2mIdx: f[4] };
  if (!Number.isNaN(f[5])) r.fastSinglestepIdx = f[5];
  return r;
}

// ---- libxc calls ----

/** How a method's result travels: nothing, one number, one boolean, or a small record. */
type Ret = 'void' | 'number' | 'bool' | 'info' | 'sve';

/** XenControl's methods an agent may call, in table order (the index is AM_METHOD). */
export const XC_METHODS: readonly (readonly [keyof XenControl & string, Ret])[] = [
  ['getDomainState', 'bool'], ['setDomainState', 'void'], ['setVcpuEnableNotify', 'void'], ['setVcpuDisableNotify', 'void'],
  ['createView', 'number'], ['destroyView', 'void'], ['switchToView', 'void'], ['setMemAccess', 'void'], ['setMemAccessMulti', 'void'],
  ['getMemAccess', 'number'], ['changeGfn', 'void'], ['setSuppressVe', 'void'], ['setSuppressVeMulti', 'sve'], ['getSuppressVe', 'bool'],
  ['getVcpuP2mIdx', 'number'], ['setVisibility', 'void'], ['setAccessRequired', 'void'], ['monitorSinglestep', 'void'],
  ['decreaseReservation', 'void'], ['domainGetInfo', 'info'], ['monitorEnable', 'void'],
];

/** What an agent's code sees as `xc`: XenControl's methods, nothing else. */
export type XcApi = { [K in (typeof XC_METHODS)[number][0]]: XenControl[K] };

const EINVAL = 22, E2BIG = 7;

/**
 * The agent's `xc` in its worker: each call is written to the mailbox, the turn goes to the engine, and the
 * worker waits for the result. `onCall` counts calls (for the report).
 */
export function xcProxy(mb: Mailbox): XcApi {
  const api: Record<string, (...args: unknown[]) => unknown> = {};
  XC_METHODS.forEach(([name, ret], index) => {
    api[name] = (...args: unknown[]): unknown => {
      const i32 = mb.i32, f = mb.f64;
      if (args.length > AM_MAX_ARGS) throw new XcError(name, E2BIG);
      let listAt = 0;
      for (let i = 0; i < args.length; i++) {
        const a = args[i];
        if (typeof a === 'boolean') { i32[AM_TAGS + i] = AA_BOOL; f[i] = a ? 1 : 0; }
        else if (Array.isArray(a)) {
          if (listAt + a.length > AM_LIST_MAX) throw new XcError(name, E2BIG);
          i32[AM_TAGS + i] = AA_LIST; f[i] = a.length;
          for (let k = 0; k < a.length; k++) mb.list[listAt + k] = typeof a[k] === 'number' ? a[k] as number : NaN;
          listAt += a.length;
        } else { i32[AM_TAGS + i] = AA_NUMBER; f[i] = typeof a === 'number' ? a : NaN; }
      }
      i32[AM_NARGS] = args.length;
      i32[AM_LIST_LEN] = listAt;
      i32[AM_METHOD] = index;
      i32[AM_OP] = AM_OP_XC_CALL;
      mb.handTo(AM_TURN_ENGINE);
      mb.waitTurn(AM_TURN_AGENT, Infinity);
      if (i32[AM_ERRNO] !== 0) throw new XcError(mb.readText(), i32[AM_ERRNO]);
      switch (ret) {
        case 'void': return undefined;
        case 'number': return f[0];
        case 'bool': return f[0] !== 0;
        case 'info': return { vcpus: f[0] };
        case 'sve': return { firstError: f[0], firstErrorGfn: f[1] };
      }
    };
  });
  return api as unknown as XcApi;
}

/**
 * The engine's side of one libxc call the agent made: decode, call the real XenControl (which may step the
 * machine while it waits), and write the result or the errno. An argument that is not a finite number, a
 * boolean or a list of numbers is EINVAL, as libxc's own argument checks would make it. Errors other than a
 * failed call (the run ending while it waited) propagate to the engine.
 */
export function xcServe(mb: Mailbox, xc: XenControl): void {
  const i32 = mb.i32, f = mb.f64;
  const entry = XC_METHODS[i32[AM_METHOD]];
  i32[AM_OP] = AM_OP_XC_RESULT;
  i32[AM_ERRNO] = 0;
  const fail = (op: string, errno: number): void => { i32[AM_ERRNO] = errno; mb.writeText(op); };
  if (entry === undefined) { fail('xc', EINVAL); return; }
  const [name, ret] = entry;
  const n = i32[AM_NARGS], args: unknown[] = [];
  let listAt = 0;
  for (let i = 0; i < n; i++) {
    const tag = i32[AM_TAGS + i];
    if (tag === AA_BOOL) args.push(f[i] !== 0);
    else if (tag === AA_LIST) {
      const len = f[i], l: number[] = [];
      for (let k = 0; k < len; k++) l.push(mb.list[listAt + k]);
      listAt += len;
      if (l.some((x) => !Number.isFinite(x))) { fail(name, EINVAL); return; }
      args.push(l);
    } else {
      if (!Number.isFinite(f[i])) { fail(name, EINVAL); return; }
      args.push(f[i]);
    }
  }
  let r: unknown;
  try {
    r = (xc[name] as (...a: unknown[]) => unknown).apply(xc, args);
  } catch (e) {
    if (e instanceof XcError) { fail(e.op, e.errno); return; }
    throw e;
  }
  switch (ret) {
    case 'void': break;
    case 'number': f[0] = r as number; break;
    case 'bool': f[0] = r === true ? 1 : 0; break;
    case 'info': f[0] = (r as { vcpus: number }).vcpus; break;
    case 'sve': f[0] = (r as { firstError: number }).firstError; f[1] = (r as { firstErrorGfn: number }).firstErrorGfn; break;
  }
}
