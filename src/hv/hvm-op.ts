// HVMOP_altp2m (hvm_op 34, sub-op 25): the 16 sub-ops with Xen's struct layout, order of checks and error
// codes (../shared/reference/xen-altp2m.md §1-§2, hvm.c:do_altp2m_op). One implementation serves both
// callers: a guest's vmcall (hypercall.ts drives it on its pCPU, as a continuation when it must wait)
// and the agent's libxc-style calls (agent/xc.ts).
//
// The struct is handled as 20 little-endian words (80 bytes), laid out in shared/altp2m-op.ts (W_* word
// indices; the guest's byte offsets and names are declared there too).
import {
  AD_ACTIVE, AD_EPTP, AD_HOST_DEFAULT_ACCESS, AD_MODE, AD_NR, AD_VISIBLE, ALTP2M_MODE_DISABLED, ALTP2M_MODE_EXTERNAL,
  ALTP2M_MODE_LIMITED, EPTP_INVALID, VW_ACTIVE_VCPUS, VW_DEFAULT_ACCESS, VW_MAX_REMAP, VW_MIN_REMAP, altp2mBase, viewBase,
} from '../../shared/altp2m.js';
import {
  DOMID_SELF, HVMOP_ALTP2M, HVMOP_ALTP2M_CHANGE_GFN, HVMOP_ALTP2M_CREATE_P2M, HVMOP_ALTP2M_DESTROY_P2M,
  HVMOP_ALTP2M_GET_DOMAIN_STATE, HVMOP_ALTP2M_GET_MEM_ACCESS, HVMOP_ALTP2M_GET_P2M_IDX, HVMOP_ALTP2M_GET_SUPPRESS_VE,
  HVMOP_ALTP2M_INTERFACE_VERSION, HVMOP_ALTP2M_SET_DOMAIN_STATE, HVMOP_ALTP2M_SET_MEM_ACCESS, HVMOP_ALTP2M_SET_MEM_ACCESS_MULTI,
  HVMOP_ALTP2M_SET_SUPPRESS_VE, HVMOP_ALTP2M_SET_SUPPRESS_VE_MULTI, HVMOP_ALTP2M_SET_VISIBILITY, HVMOP_ALTP2M_SWITCH_P2M,
  HVMOP_ALTP2M_VCPU_DISABLE_NOTIFY, HVMOP_ALTP2M_VCPU_ENABLE_NOTIFY, W_CMD, W_DOMAIN, W_PAD2, W_Q24_HI, W_Q24_LO, W_Q32_HI,
  W_Q32_LO, W_Q40_HI, W_Q40_LO, W_U0, W_U1, W_VERSION,
} from '../../shared/altp2m-op.js';
import { ACCESS_DEFAULT, ATTR_ACCESS_MASK, ATTR_SUPPRESS_VE, P2MT_INVALID, P2MT_RAM_RW, p2mAttr, p2mAttrAccess, p2mAttrType } from '../../shared/p2m.js';
import { INVALID_ALTP2M, RS_RUNNING, VCA_VE, VCA_VMFUNC, VCPU_STRIDE_WORDS, VC_ALTP2M_FLAGS, VC_P2MIDX, VC_RUNSTATE, VC_VE_GFN } from '../../shared/vcpu.js';
import type { Machine } from '../machine.js';
import {
  HOST_TABLE, INVALID_GFN32, altp2mActive, altp2mNr, domainVcpus, entryOut, hostDefaultAccess, p2mBeginWrite, p2mTryLock,
  propagateHostChange, readEntry, tableRoot, vcpuSetView, viewActivate, viewDeactivate, viewFindFree, viewPrepopulate, viewValid,
  writeEntry, clearEntry,
} from './altp2m.js';

export const HVMOP_altp2m = HVMOP_ALTP2M;
export { HVMOP_ALTP2M_INTERFACE_VERSION, DOMID_SELF };
/** The control domain: the agent's calls come from it. */
export const DOMID_CONTROL = 0;

export const EPERM = 1, ESRCH = 3, EFAULT = 14, EBUSY = 16, EEXIST = 17, EINVAL = 22, EOPNOTSUPP = 95;

// Sub-op numbers under Xen's spelling (shared/altp2m-op.ts declares them)
export const ALTP2M_get_domain_state = HVMOP_ALTP2M_GET_DOMAIN_STATE;
export const ALTP2M_set_domain_state = HVMOP_ALTP2M_SET_DOMAIN_STATE;
export const ALTP2M_vcpu_enable_notify = HVMOP_ALTP2M_VCPU_ENABLE_NOTIFY;
export const ALTP2M_create_p2m = HVMOP_ALTP2M_CREATE_P2M;
export const ALTP2M_destroy_p2m = HVMOP_ALTP2M_DESTROY_P2M;
export const ALTP2M_switch_p2m = HVMOP_ALTP2M_SWITCH_P2M;
export const ALTP2M_set_mem_access = HVMOP_ALTP2M_SET_MEM_ACCESS;
export const ALTP2M_change_gfn = HVMOP_ALTP2M_CHANGE_GFN;
export const ALTP2M_set_mem_access_multi = HVMOP_ALTP2M_SET_MEM_ACCESS_MULTI;
export const ALTP2M_set_suppress_ve = HVMOP_ALTP2M_SET_SUPPRESS_VE;
export const ALTP2M_get_suppress_ve = HVMOP_ALTP2M_GET_SUPPRESS_VE;
export const ALTP2M_get_mem_access = HVMOP_ALTP2M_GET_MEM_ACCESS;
export const ALTP2M_vcpu_disable_notify = HVMOP_ALTP2M_VCPU_DISABLE_NOTIFY;
export const ALTP2M_get_p2m_idx = HVMOP_ALTP2M_GET_P2M_IDX;
export const ALTP2M_set_suppress_ve_multi = HVMOP_ALTP2M_SET_SUPPRESS_VE_MULTI;
export const ALTP2M_set_visibility = HVMOP_ALTP2M_SET_VISIBILITY;
export const ALTP2M_OP_NAMES: Readonly<Record<number, string>> = {
  1: 'get_domain_state', 2: 'set_domain_state', 3: 'vcpu_enable_notify', 4: 'create_p2m', 5: 'destroy_p2m',
  6: 'switch_p2m', 7: 'set_mem_access', 8: 'change_gfn', 9: 'set_mem_access_multi', 10: 'set_suppress_ve',
  11: 'get_suppress_ve', 12: 'get_mem_access', 13: 'vcpu_disable_notify', 14: 'get_p2m_idx',
  15: 'set_suppress_ve_multi', 16: 'set_visibility',
};

/** Internal results that never reach a caller: retry later (Xen's -ERESTART), or pause the domain first. */
export const OP_RESTART = 0x40000000;
export const OP_NEEDS_PAUSE = 0x40000001;
/** Sub-ops whose outputs are copied back into the caller's struct. */
const COPY_BACK = new Set([ALTP2M_get_domain_state, ALTP2M_create_p2m, ALTP2M_get_mem_access, ALTP2M_get_suppress_ve,
  ALTP2M_get_p2m_idx, ALTP2M_set_mem_access_multi, ALTP2M_set_suppress_ve_multi]);
export function altp2mOpCopiesBack(cmd: number): boolean { return COPY_BACK.has(cmd); }

/** 2^maxphysaddr - 1 in frames: guest-physical addresses are 32-bit here. */
const MAX_GFN = 0xfffff;
/** set_mem_access_multi yields every 64 elements when preemption is pending (mask 0x3F). */
const MULTI_BATCH_MASK = 0x3f;

/** Who is calling and how lists are read. */
export interface AltCtx {
  readonly m: Machine;
  /** Calling domain index, or -1 for the control domain (the agent). */
  readonly callerDom: number;
  /** Lock holder id (pCPU + 1, or LOCK_AGENT). */
  readonly holder: number;
  /** The other vCPUs of the target domain are paused and off their pCPUs. */
  paused: boolean;
  /** Global index of the calling vCPU (a guest), or -1 (the agent). */
  readonly selfVcpu: number;
  /** Preemption is pending (set_mem_access_multi may stop and restart). */
  preemptPending(): boolean;
  /**
   * u64 element i of a guest list at `handle`: the gfn, -1 for INVALID_GFN (~0), -2 for a gfn beyond the
   * 32-bit guest-physical space; null on a copy fault.
   */
  readU64(handle: number, i: number): number | null;
  readU8(handle: number, i: number): number | null;
  /** Filled by a writing sub-op (the p2m lock is then held): its generation and the tables it changed. */
  gen: number;
  readonly touched: number[];
}

function u16lo(w: number): number { return w & 0xffff; }
function u16hi(w: number): number { return (w >>> 16) & 0xffff; }
function isInvalidGfn(lo: number, hi: number): boolean { return lo === -1 && hi === -1; }
/** A u64 gfn as a number, or -2 when it is beyond the 32-bit guest-physical space (never mapped). */
function gfnOf(lo: number, hi: number): number { return hi !== 0 || (lo >>> 0) > MAX_GFN ? -2 : lo >>> 0; }

/** Target domain of the struct: index, or -ESRCH / -EOPNOTSUPP. */
function targetDomain(ctx: AltCtx, domid: number): number {
  if (domid === DOMID_SELF) return ctx.callerDom >= 0 ? ctx.callerDom : -EOPNOTSUPP;
  if (domid === DOMID_CONTROL) return -EOPNOTSUPP; // exists, but is not an HVM guest
  const d = domid - 1;
  if (d < 0 || d >= ctx.m.ndomains) return -ESRCH;
  return d;
}

/** XSM: may the caller issue `cmd` on domain d in `mode`? (dummy.h: XSM_TARGET vs XSM_DM_PRIV) */
export function altp2mXsmAllows(mode: number, cmd: number, callerDom: number, d: number): boolean {
  const privileged = callerDom < 0;
  const target = privileged || callerDom === d;
  if (mode === ALTP2M_MODE_EXTERNAL) return privileged;
  if (mode === ALTP2M_MODE_LIMITED) return cmd === ALTP2M_vcpu_enable_notify ? target : privileged;
  return target; // mixed
}

/**
 * Run one HVMOP_altp2m on `w` (the 20-word struct, updated in place with outputs). Returns 0, -errno,
 * OP_RESTART (try again later; nothing changed, or a partial multi-op recorded its progress) or
 * OP_NEEDS_PAUSE (set ctx.paused once the other vCPUs are off their pCPUs, then call again).
 * When ctx.gen is non-zero on return the caller holds the p2m lock and must sync and release it.
 */
export function altp2mOp(ctx: AltCtx, w: Int32Array): number {
  const m = ctx.m;
  const cmd = w[W_CMD];
  if ((w[W_DOMAIN] >>> 16) !== 0 || w[W_PAD2] !== 0 || w[W_VERSION] !== HVMOP_ALTP2M_INTERFACE_VERSION) return -EINVAL;
  if (ALTP2M_OP_NAMES[cmd] === undefined) return -EOPNOTSUPP;
  const d = targetDomain(ctx, u16lo(w[W_DOMAIN]));
  if (d < 0) return d;
  if (cmd !== ALTP2M_get_domain_state && cmd !== ALTP2M_set_domain_state && !altp2mActive(m, d)) return -EOPNOTSUPP;
  const ab = altp2mBase(d);
  const mode = m.ap32[ab + AD_MODE];
  if (mode === ALTP2M_MODE_DISABLED) return -EINVAL;
  if (m.ap32[ab + AD_NR] === 0) return -EOPNOTSUPP;
  if (!altp2mXsmAllows(mode, cmd, ctx.callerDom, d)) return -EPERM;
  switch (cmd) {
    case ALTP2M_get_domain_state: w[W_U0] = (w[W_U0] & ~0xff) | (altp2mActive(m, d) ? 1 : 0); return 0;
    case ALTP2M_set_domain_state: return setDomainState(ctx, d, (w[W_U0] & 0xff) !== 0);
    case ALTP2M_vcpu_enable_notify: return vcpuEnableNotify(m, d, w[W_U0] >>> 0, w[W_U1], w[W_Q24_LO], w[W_Q24_HI]);
    case ALTP2M_vcpu_disable_notify: return vcpuDisableNotify(m, d, w[W_U0] >>> 0);
    case ALTP2M_create_p2m: return createP2m(m, d, w);
    case ALTP2M_destroy_p2m: return destroyP2m(ctx, d, u16lo(w[W_U0]));
    case ALTP2M_switch_p2m: return switchP2m(ctx, d, u16lo(w[W_U0]));
    case ALTP2M_set_mem_access: {
      if (w[W_U1] !== 0) return -EINVAL;
      return setMemAccessOne(ctx, d, u16lo(w[W_U0]), u16hi(w[W_U0]), w[W_Q24_LO], w[W_Q24_HI], true);
    }
    case ALTP2M_set_mem_access_multi: return setMemAccessMulti(ctx, d, w);
    case ALTP2M_get_mem_access: return getMemAccess(m, d, w);
    case ALTP2M_change_gfn: return changeGfn(ctx, d, w);
    case ALTP2M_set_suppress_ve: {
      if (((w[W_U0] >>> 24) & 0xff) !== 0 || w[W_U1] !== 0) return -EINVAL;
      const view = u16lo(w[W_U0]);
      if (view > 0 && !viewValid(m, d, view)) return -EINVAL;
      if (!lock(ctx, d)) return OP_RESTART;
      return setSuppressVeOne(ctx, d, view, ((w[W_U0] >>> 16) & 0xff) !== 0, w[W_Q24_LO], w[W_Q24_HI]);
    }
    case ALTP2M_set_suppress_ve_multi: return setSuppressVeMulti(ctx, d, w);
    case ALTP2M_get_suppress_ve: return getSuppressVe(m, d, w);
    case ALTP2M_get_p2m_idx: {
      const [first, n] = domainVcpus(m, d);
      const id = w[W_U0] >>> 0;
      if (id >= n) return -EINVAL;
      w[W_U1] = (w[W_U1] & ~0xffff) | (Atomics.load(m.vc32, (first + id) * VCPU_STRIDE_WORDS + VC_P2MIDX) & 0xffff);
      return 0;
    }
    case ALTP2M_set_visibility: {
      const idx = u16lo(w[W_U0]), visible = (w[W_U0] >>> 16) & 0xff;
      if (((w[W_U0] >>> 24) & 0xff) !== 0) return -EINVAL;
      if (!viewValid(m, d, idx)) return -EINVAL;
      Atomics.store(m.ap32, ab + AD_VISIBLE + idx, visible !== 0 ? Atomics.load(m.ap32, ab + AD_EPTP + idx) : EPTP_INVALID);
      return 0;
    }
    default: return -EOPNOTSUPP;
  }
}

/**
 * The whole-domain sub-ops run only when every vCPU of d but the caller's is off its pCPU (Xen's
 * domain_pause_except_self returns only then). An invariant: a failure is a bug in the pause protocol.
 */
function assertQuiesced(ctx: AltCtx, d: number, self: number): void {
  const [first, n] = domainVcpus(ctx.m, d);
  for (let i = 0; i < n; i++) {
    if (first + i === self) continue;
    if (Atomics.load(ctx.m.vc32, (first + i) * VCPU_STRIDE_WORDS + VC_RUNSTATE) === RS_RUNNING) {
      throw new Error(`this is a bug in vcpulab: a whole-domain altp2m op ran while vCPU ${i} of domain ${d} was on a pCPU`);
    }
  }
}

/** Take the p2m lock for a writing sub-op and open its generation. False: busy, restart. */
function lock(ctx: AltCtx, d: number): boolean {
  if (ctx.gen !== 0) return true;
  if (!p2mTryLock(ctx.m, d, ctx.holder)) return false;
  ctx.gen = p2mBeginWrite(ctx.m, d);
  return true;
}

function touch(ctx: AltCtx, t: number): void {
  if (!ctx.touched.includes(t)) ctx.touched.push(t);
}

function setDomainState(ctx: AltCtx, d: number, on: boolean): number {
  const m = ctx.m, ab = altp2mBase(d);
  if (!ctx.paused) return OP_NEEDS_PAUSE;
  assertQuiesced(ctx, d, ctx.selfVcpu);
  if (altp2mActive(m, d) === on) return 0;
  if (!lock(ctx, d)) return OP_RESTART;
  const [first, n] = domainVcpus(m, d);
  if (on) {
    // Slot 0 with the host's default access; every vCPU starts on it (p2m_init_altp2m_ept, altp2m_vcpu_initialise).
    viewActivate(m, d, 0, hostDefaultAccess(m, d));
    Atomics.store(m.ap32, ab + AD_ACTIVE, 1);
    for (let i = 0; i < n; i++) vcpuSetView(m, d, first + i, 0);
    touch(ctx, 0);
  } else {
    for (let i = 0; i < n; i++) {
      const b = (first + i) * VCPU_STRIDE_WORDS;
      Atomics.and(m.vc32, b + VC_ALTP2M_FLAGS, ~(VCA_VE | VCA_VMFUNC));
      Atomics.store(m.vc32, b + VC_VE_GFN, -1);
      vcpuSetView(m, d, first + i, INVALID_ALTP2M);
    }
    Atomics.store(m.ap32, ab + AD_ACTIVE, 0);
    // p2m_flush_altp2m: every view emptied, every list entry INVALID.
    const nr = altp2mNr(m, d);
    for (let i = 0; i < nr; i++) {
      viewDeactivate(m, d, i, ctx.gen);
      touch(ctx, i);
    }
    touch(ctx, HOST_TABLE);
  }
  return 0;
}

function vcpuEnableNotify(m: Machine, d: number, id: number, pad: number, gfnLo: number, gfnHi: number): number {
  const [first, n] = domainVcpus(m, d);
  if (pad !== 0 || id >= n) return -EINVAL;
  const b = (first + id) * VCPU_STRIDE_WORDS;
  if (Atomics.load(m.vc32, b + VC_VE_GFN) !== -1) return -EEXIST;
  // The #VE page must be ordinary guest RAM (check_get_page_from_gfn; Xen then holds a page reference).
  const gfn = gfnOf(gfnLo, gfnHi);
  readEntry(m, tableRoot(m, d, HOST_TABLE), gfn < 0 ? MAX_GFN + 1 : gfn);
  if (gfn < 0 || p2mAttrType(entryOut.attr) !== P2MT_RAM_RW) return -EINVAL;
  if (Atomics.compareExchange(m.vc32, b + VC_VE_GFN, -1, gfn) !== -1) return -EEXIST; // a lost race, as Xen
  Atomics.or(m.vc32, b + VC_ALTP2M_FLAGS, VCA_VE | VCA_VMFUNC);
  return 0;
}

function vcpuDisableNotify(m: Machine, d: number, id: number): number {
  const [first, n] = domainVcpus(m, d);
  if (id >= n) return -EINVAL;
  const b = (first + id) * VCPU_STRIDE_WORDS;
  // #VE off and the page reference dropped; VMFUNC stays enabled while altp2m is active (xen-altp2m.md §1).
  Atomics.and(m.vc32, b + VC_ALTP2M_FLAGS, ~VCA_VE);
  Atomics.store(m.vc32, b + VC_VE_GFN, -1);
  return 0;
}

function validAccess(a: number): boolean { return a >= 0 && a <= ACCESS_DEFAULT; }

function createP2m(m: Machine, d: number, w: Int32Array): number {
  let access = u16hi(w[W_U0]);
  if (!validAccess(access)) return -EINVAL;
  if (access === ACCESS_DEFAULT) access = hostDefaultAccess(m, d);
  const slot = viewFindFree(m, d);
  if (slot < 0) return -EINVAL;
  viewActivate(m, d, slot, access);
  w[W_U0] = (w[W_U0] & ~0xffff) | slot;
  return 0;
}

function destroyP2m(ctx: AltCtx, d: number, view: number): number {
  const m = ctx.m;
  if (view === 0 || view >= altp2mNr(m, d)) return -EBUSY;
  if (!ctx.paused) return OP_NEEDS_PAUSE;
  assertQuiesced(ctx, d, ctx.selfVcpu);
  if (!viewValid(m, d, view)) return -EBUSY;
  // Pausing made every vCPU exit, and exits resync p2midx after guest VMFUNCs, so the count is current.
  if (Atomics.load(m.ap32, viewBase(d, view) + VW_ACTIVE_VCPUS) !== 0) return -EBUSY;
  if (!lock(ctx, d)) return OP_RESTART;
  viewDeactivate(m, d, view, ctx.gen);
  touch(ctx, view);
  return 0;
}

function switchP2m(ctx: AltCtx, d: number, view: number): number {
  const m = ctx.m;
  if (view >= altp2mNr(m, d)) return -EINVAL;
  if (!ctx.paused) return OP_NEEDS_PAUSE;
  assertQuiesced(ctx, d, ctx.selfVcpu);
  if (Atomics.load(m.ap32, altp2mBase(d) + AD_VISIBLE + view) === EPTP_INVALID) return -EINVAL;
  const [first, n] = domainVcpus(m, d);
  for (let i = 0; i < n; i++) vcpuSetView(m, d, first + i, view);
  return 0;
}

/**
 * p2m_set_mem_access for one gfn (view 0 = the host p2m; gfn ~0 = the host default_access). Takes the lock.
 * With `checkView`, an invalid view is -EINVAL (the multi form checks it once).
 */
function setMemAccessOne(ctx: AltCtx, d: number, view: number, access: number, gfnLo: number, gfnHi: number, checkView: boolean): number {
  const m = ctx.m;
  if (checkView && view !== 0 && !viewValid(m, d, view)) return -EINVAL;
  if (!validAccess(access)) return -EINVAL;
  if (isInvalidGfn(gfnLo, gfnHi)) {
    // The host's default_access, whatever the view [code].
    if (access !== ACCESS_DEFAULT) Atomics.store(m.ap32, altp2mBase(d) + AD_HOST_DEFAULT_ACCESS, access);
    return 0;
  }
  const gfn = gfnOf(gfnLo, gfnHi);
  if (!lock(ctx, d)) return OP_RESTART;
  if (gfn < 0) return 0;
  if (access === ACCESS_DEFAULT) access = hostDefaultAccess(m, d);
  if (view === 0) {
    const root = tableRoot(m, d, HOST_TABLE);
    readEntry(m, root, gfn);
    if (p2mAttrType(entryOut.attr) === P2MT_INVALID) return 0;
    const attr = (entryOut.attr & ~ATTR_ACCESS_MASK) | access;
    const mfn = entryOut.mfn;
    writeEntry(m, root, gfn, mfn, attr, ctx.gen);
    touch(ctx, HOST_TABLE);
    propagateHostChange(m, d, gfn, mfn, attr, ctx.gen, ctx.touched);
    return 0;
  }
  // An altp2m: fill from the host first; a host entry that is not RAM is quietly skipped (-ESRCH swallowed).
  if (viewPrepopulate(m, d, view, gfn, ctx.gen) !== 0) return 0;
  const root = tableRoot(m, d, view);
  readEntry(m, root, gfn);
  writeEntry(m, root, gfn, entryOut.mfn, (entryOut.attr & ~ATTR_ACCESS_MASK) | access, ctx.gen);
  touch(ctx, view);
  return 0;
}

function setMemAccessMulti(ctx: AltCtx, d: number, w: Int32Array): number {
  const m = ctx.m;
  const view = u16lo(w[W_U0]), nr = w[W_U1] >>> 0, opaque = w[W_Q24_LO] >>> 0;
  if (u16hi(w[W_U0]) !== 0 || w[W_Q24_HI] !== 0 || opaque > nr) return -EINVAL;
  if (view !== 0 && !viewValid(m, d, view)) return -EINVAL;
  const pfns = w[W_Q32_LO], accesses = w[W_Q40_LO];
  for (let i = opaque; i < nr; i++) {
    const gfn = ctx.readU64(pfns, i);
    const access = ctx.readU8(accesses, i);
    if (gfn === null || access === null) return -EFAULT;
    const r = setMemAccessOne(ctx, d, view, access, gfn === -2 ? 0 : gfn, gfn === -1 ? -1 : gfn === -2 ? 1 : 0, false);
    if (r === OP_RESTART) { w[W_Q24_LO] = i; return OP_RESTART; }
    if (r !== 0) return r;
    // Preemption point every 64 elements: record progress in `opaque` and restart the hypercall.
    if (((i + 1) & MULTI_BATCH_MASK) === 0 && i + 1 < nr && ctx.preemptPending()) { w[W_Q24_LO] = i + 1; w[W_Q24_HI] = 0; return OP_RESTART; }
  }
  w[W_Q24_LO] = nr;
  return 0;
}

function getMemAccess(m: Machine, d: number, w: Int32Array): number {
  const view = u16lo(w[W_U0]);
  if (w[W_U1] !== 0) return -EINVAL;
  if (view !== 0 && !viewValid(m, d, view)) return -EINVAL;
  let access: number;
  if (isInvalidGfn(w[W_Q24_LO], w[W_Q24_HI])) {
    access = view === 0 ? hostDefaultAccess(m, d) : m.ap32[viewBase(d, view) + VW_DEFAULT_ACCESS];
  } else {
    const gfn = gfnOf(w[W_Q24_LO], w[W_Q24_HI]);
    if (gfn < 0) return -ESRCH;
    // The table's own entry only: an unfilled gfn of a view is -ESRCH [code].
    readEntry(m, tableRoot(m, d, view === 0 ? HOST_TABLE : view), gfn);
    if (p2mAttrType(entryOut.attr) === P2MT_INVALID) return -ESRCH;
    access = p2mAttrAccess(entryOut.attr);
  }
  w[W_U0] = (w[W_U0] & 0xffff) | (access << 16);
  return 0;
}

function changeGfn(ctx: AltCtx, d: number, w: Int32Array): number {
  const m = ctx.m;
  const view = u16lo(w[W_U0]);
  if (u16hi(w[W_U0]) !== 0 || w[W_U1] !== 0 || !viewValid(m, d, view)) return -EINVAL;
  const oldGfn = gfnOf(w[W_Q24_LO], w[W_Q24_HI]);
  if (!lock(ctx, d)) return OP_RESTART;
  const vroot = tableRoot(m, d, view);
  if (isInvalidGfn(w[W_Q32_LO], w[W_Q32_HI])) {
    // Revert: drop the view's entry; the next access refills it from the host.
    if (oldGfn >= 0) clearEntry(m, vroot, oldGfn, ctx.gen);
    touch(ctx, view);
    return 0;
  }
  const newGfn = gfnOf(w[W_Q32_LO], w[W_Q32_HI]);
  if (oldGfn < 0 || newGfn < 0) return -ESRCH;
  if (viewPrepopulate(m, d, view, oldGfn, ctx.gen) !== 0) return -ESRCH;
  // new_gfn's effective entry: the view's own, else the host's.
  readEntry(m, vroot, newGfn);
  if (p2mAttrType(entryOut.attr) === P2MT_INVALID) readEntry(m, tableRoot(m, d, HOST_TABLE), newGfn);
  if (p2mAttrType(entryOut.attr) !== P2MT_RAM_RW) return -ESRCH;
  const self = ctx.callerDom === d;
  const attr = p2mAttr(p2mAttrType(entryOut.attr), p2mAttrAccess(entryOut.attr), !self);
  writeEntry(m, vroot, oldGfn, entryOut.mfn, attr, ctx.gen);
  const vb = viewBase(d, view);
  const lo = Atomics.load(m.ap32, vb + VW_MIN_REMAP);
  if (lo === INVALID_GFN32 || newGfn < lo) Atomics.store(m.ap32, vb + VW_MIN_REMAP, newGfn);
  if (newGfn > Atomics.load(m.ap32, vb + VW_MAX_REMAP)) Atomics.store(m.ap32, vb + VW_MAX_REMAP, newGfn);
  touch(ctx, view);
  return 0;
}

/** One gfn of set_suppress_ve(_multi): view 0 is the host p2m. Lock held. */
function setSuppressVeOne(ctx: AltCtx, d: number, view: number, sve: boolean, gfnLo: number, gfnHi: number): number {
  const m = ctx.m;
  const gfn = gfnOf(gfnLo, gfnHi);
  if (gfn < 0) return -ESRCH;
  const t = view === 0 ? HOST_TABLE : view;
  const root = tableRoot(m, d, t);
  readEntry(m, root, gfn);
  if (p2mAttrType(entryOut.attr) === P2MT_INVALID) {
    if (t === HOST_TABLE) return -ESRCH;
    // Unfilled in the view: a 4K entry copied from the host, with the host's type and access [code].
    readEntry(m, tableRoot(m, d, HOST_TABLE), gfn);
    if (p2mAttrType(entryOut.attr) !== P2MT_RAM_RW) return -ESRCH;
  }
  const attr = sve ? entryOut.attr | ATTR_SUPPRESS_VE : entryOut.attr & ~ATTR_SUPPRESS_VE;
  const mfn = entryOut.mfn;
  writeEntry(m, root, gfn, mfn, attr, ctx.gen);
  touch(ctx, t);
  if (t === HOST_TABLE) propagateHostChange(m, d, gfn, mfn, attr, ctx.gen, ctx.touched);
  return 0;
}

function setSuppressVeMulti(ctx: AltCtx, d: number, w: Int32Array): number {
  const m = ctx.m;
  const view = u16lo(w[W_U0]), sve = ((w[W_U0] >>> 16) & 0xff) !== 0;
  if (((w[W_U0] >>> 24) & 0xff) !== 0) return -EINVAL;
  const first = gfnOf(w[W_Q24_LO], w[W_Q24_HI]);
  let last = gfnOf(w[W_Q32_LO], w[W_Q32_HI]);
  if (last < 0 || last > MAX_GFN) last = MAX_GFN; // clamped to 2^maxphysaddr - 1
  if (first < 0 || first > last) return -EINVAL;
  if (view > 0 && !viewValid(m, d, view)) return -EINVAL;
  if (!lock(ctx, d)) return OP_RESTART;
  for (let g = first; g <= last; g++) {
    const r = setSuppressVeOne(ctx, d, view, sve, g, 0);
    if (r !== 0 && w[W_U1] === 0) { w[W_U1] = r; w[W_Q40_LO] = g; w[W_Q40_HI] = 0; }
  }
  w[W_Q24_LO] = last + 1; w[W_Q24_HI] = 0;
  return 0;
}

function getSuppressVe(m: Machine, d: number, w: Int32Array): number {
  const view = u16lo(w[W_U0]);
  if (((w[W_U0] >>> 24) & 0xff) !== 0 || w[W_U1] !== 0) return -EINVAL;
  if (view > 0 && !viewValid(m, d, view)) return -EINVAL;
  const gfn = gfnOf(w[W_Q24_LO], w[W_Q24_HI]);
  if (gfn < 0) return -ESRCH;
  readEntry(m, tableRoot(m, d, view === 0 ? HOST_TABLE : view), gfn);
  if (p2mAttrType(entryOut.attr) === P2MT_INVALID) return -ESRCH;
  const sve = (entryOut.attr & ATTR_SUPPRESS_VE) !== 0 ? 1 : 0;
  w[W_U0] = (w[W_U0] & ~0x00ff0000) | (sve << 16);
  return 0;
}
