// The mailbox between the engine and one agent's worker thread: one SharedArrayBuffer, one message in
// flight at a time, turns handed over with Atomics (store, then notify; the other side spins briefly, then
// waits). A round trip is two hand-offs and no postMessage. The serial engine sends setup and events and
// answers the agent's libxc calls (the machine stays on the engine's thread); the threaded engine's agent
// thread only publishes which call it is in and since when, so the main thread can time it out.
import { assertF64Aligned, assertLayout } from './layout.js';

// ---- Int32 header (word offsets) ----
/** Whose turn it is: AM_TURN_ENGINE or AM_TURN_AGENT. Atomics; the only word either side waits on. */
export const AM_TURN = 0;
/** The message kind (AM_OP_*), written before the turn is handed over. */
export const AM_OP = 1;
/** libxc call (agent -> engine): index into the method table (agent/xc-proxy.ts). */
export const AM_METHOD = 2;
/** Call result (engine -> agent): 0, or the errno of a failed libxc call. Failure (agent -> engine): the AF_* cause. */
export const AM_ERRNO = 3;
/** Arguments or fields in AM_F64 that are in use. */
export const AM_NARGS = 4;
/** Per argument: AA_* (how to read AM_F64[i]). */
export const AM_TAGS = 5;
export const AM_MAX_ARGS = 12;
/** Bytes of UTF-8 text in the text area (a failure's reason, an error's operation name). */
export const AM_TEXT_LEN = AM_TAGS + AM_MAX_ARGS;
/** Numbers in the list area (set_mem_access_multi's gfn and access lists, back to back). */
export const AM_LIST_LEN = AM_TEXT_LEN + 1;
/** Threaded: the call the agent thread is in (AC_*; AC_NONE between calls). Atomics. */
export const AM_CALL = AM_LIST_LEN + 1;
/** Threaded: requests handled so far (the failing one's number, for the finding). */
export const AM_CALL_SEQ = AM_CALL + 1;
/** Threaded: libxc calls made so far (for the report). */
export const AM_XC_CALLS = AM_CALL_SEQ + 1;
/** Threaded: the agent thread failed: the AF_* cause (0 none), reason in the text area. Atomics. */
export const AM_FAILED = AM_XC_CALLS + 1;
/** Threaded: when the current call began (performance.timeOrigin + now, ms). Float64 at this word offset. */
export const AM_CALL_T0_F64 = 24;
/** Arguments, request and response fields, results: Float64 at this word offset. */
export const AM_F64 = 32;
export const AM_HEADER_WORDS = AM_F64 + 2 * AM_MAX_ARGS;
assertLayout('agent mailbox header', AM_FAILED, AM_CALL_T0_F64);
assertLayout('agent mailbox header', AM_CALL_T0_F64 + 1, AM_F64);
assertF64Aligned('AM_CALL_T0_F64', AM_CALL_T0_F64);
assertF64Aligned('AM_F64', AM_F64);

/** Float64 slots of the list area (after the header). */
export const AM_LIST_MAX = 1 << 16;
/** Bytes of the text area (after the list area). Longer text is cut. */
export const AM_TEXT_MAX = 2048;
export const AM_BYTES = AM_HEADER_WORDS * 4 + AM_LIST_MAX * 8 + AM_TEXT_MAX;
export const AM_LIST_BYTE = AM_HEADER_WORDS * 4;
export const AM_TEXT_BYTE = AM_LIST_BYTE + AM_LIST_MAX * 8;

export const AM_TURN_ENGINE = 0;
export const AM_TURN_AGENT = 1;

// ---- message kinds ----
/** engine -> agent: make the agent (the module's factory), then call setup(xc, domid, args). */
export const AM_OP_SETUP = 1;
/** engine -> agent: onEvent with the request's fields in AM_F64 (VmEventRequest order, agent/mailbox.ts). */
export const AM_OP_EVENT = 2;
/** engine -> agent: the result of the libxc call the agent made (AM_ERRNO, values in AM_F64). */
export const AM_OP_XC_RESULT = 3;
/** agent -> engine: a libxc call (AM_METHOD, arguments in AM_F64 and the list area). */
export const AM_OP_XC_CALL = 4;
/** agent -> engine: setup returned. */
export const AM_OP_SETUP_DONE = 5;
/** agent -> engine: onEvent returned; AM_NARGS 0 = null (no response), else the response's fields. */
export const AM_OP_EVENT_DONE = 6;
/** agent -> engine: the call failed: AM_ERRNO holds the AF_* cause, the text area the reason. */
export const AM_OP_FAILED = 7;

// ---- argument tags ----
export const AA_NUMBER = 0;
export const AA_BOOL = 1;
/** A list: AM_F64[i] is its length; lists lie in the list area back to back, in argument order. */
export const AA_LIST = 2;

// ---- the calls an agent thread is in (threaded) ----
export const AC_NONE = 0;
export const AC_LOAD = 1;
export const AC_SETUP = 2;
export const AC_EVENT = 3;
export const AC_NAMES = ['', 'loading the module', 'setup', 'onEvent'] as const;

// ---- why an agent failed (AGENT_FAILED cause tokens, oracles/findings.ts) ----
export const AF_THREW = 1;
export const AF_BAD_RESPONSE = 2;
export const AF_EXITED = 3;
export const AF_TIMEOUT = 4;
export const AF_LOAD = 5;
export const AF_CAUSES = ['', 'threw', 'bad_response', 'exited', 'timeout', 'load'] as const;
