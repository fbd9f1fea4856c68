// altp2m views with Xen's semantics (../shared/reference/xen-altp2m.md §0, §2, §4): slots, lazy fill
// from the host, propagation of host writes, resets, per-vCPU switching. Everything here that writes a
// p2m entry runs with the domain's p2m lock held (AD_P2M_LOCK) and stamps entries with the generation of
// the operation (P2E_STAMP), so the STALE_TRANSLATION oracle can tell when a TLB entry went stale.
import {
  AD_ACTIVE, AD_APIC_VIEW, AD_DONE, AD_EPTP, AD_GEN, AD_HOST_DEFAULT_ACCESS, AD_NR, AD_P2M_LOCK, AD_VISIBLE, EPTP_INVALID,
  VW_ACTIVE_VCPUS, VW_DEFAULT_ACCESS, VW_MAX_REMAP, VW_MIN_REMAP, VW_ROOT, altp2mBase, viewBase,
} from '../../shared/altp2m.js';
import { APIC_GFN_NUMBER, DM_FIRST_VCPU, DM_NVCPUS, DM_P2M_ROOT } from '../../shared/domain.js';
import {
  ACCESS_RW, ATTR_SUPPRESS_VE, P2E_ATTR, P2E_MFN, P2E_STAMP, P2MT_INVALID, P2MT_RAM_RW, P2M_LEAF_ENTRIES, P2M_NO_LEAF,
  P2M_ROOT_ENTRIES, P2M_ENTRY_WORDS, P2MT_MMIO_DIRECT, p2mAttr, p2mAttrType,
} from '../../shared/p2m.js';
import { INVALID_ALTP2M, VCPU_STRIDE_WORDS, VC_EPTP_INDEX, VC_P2MIDX } from '../../shared/vcpu.js';
import { p2mEnsureEntry, p2mEntryOffset } from '../hw/ept.js';
import type { Machine } from '../machine.js';

/** Table index of the host p2m where a function takes "host or view". Views are 0..nr-1. */
export const HOST_TABLE = -1;
/** Xen's INVALID_GFN (~0) as the low word a 32-bit guest writes. */
export const INVALID_GFN32 = -1;

export function altp2mActive(m: Machine, d: number): boolean {
  return Atomics.load(m.ap32, altp2mBase(d) + AD_ACTIVE) !== 0;
}
export function altp2mNr(m: Machine, d: number): number { return m.ap32[altp2mBase(d) + AD_NR]; }

/** Root of a table: the host p2m, or view `t`'s preallocated root. */
export function tableRoot(m: Machine, d: number, t: number): number {
  return t === HOST_TABLE ? m.dm32[m.domainBase(d) + DM_P2M_ROOT] : m.ap32[viewBase(d, t) + VW_ROOT];
}

/** valid(idx) in the fact sheet: idx < nr and altp2m_eptp[idx] holds an EPTP. */
export function viewValid(m: Machine, d: number, idx: number): boolean {
  return idx >= 0 && idx < altp2mNr(m, d) && Atomics.load(m.ap32, altp2mBase(d) + AD_EPTP + idx) !== EPTP_INVALID;
}
export function viewVisible(m: Machine, d: number, idx: number): boolean {
  return idx >= 0 && idx < altp2mNr(m, d) && Atomics.load(m.ap32, altp2mBase(d) + AD_VISIBLE + idx) !== EPTP_INVALID;
}

// ---- the p2m lock -------------------------------------------------------------------------------------
// A try-lock only: a pCPU never blocks inside a step (the serial engine has one thread). Callers that fail
// restart their operation later (a guest's hypercall is re-executed, Xen's -ERESTART).

export function p2mTryLock(m: Machine, d: number, holder: number): boolean {
  return Atomics.compareExchange(m.ap32, altp2mBase(d) + AD_P2M_LOCK, 0, holder) === 0;
}
export function p2mUnlock(m: Machine, d: number, holder: number): void {
  const was = Atomics.compareExchange(m.ap32, altp2mBase(d) + AD_P2M_LOCK, holder, 0);
  if (was !== holder) throw new Error(`this is a bug in vcpulab: p2m lock of domain ${d} released by ${holder}, held by ${was}`);
}
/** Start a p2m-writing operation (lock held): its generation, the stamp of every entry it writes. */
export function p2mBeginWrite(m: Machine, d: number): number {
  return Atomics.add(m.ap32, altp2mBase(d) + AD_GEN, 1) + 1;
}
/** The operation of generation `gen` has returned to its caller (after its EPT sync). */
export function p2mEndWrite(m: Machine, d: number, gen: number): void {
  Atomics.store(m.ap32, altp2mBase(d) + AD_DONE, gen);
}
/** Stamp for writes that need no generation of their own (lazy fills: not-present to present). */
export function p2mCurrentGen(m: Machine, d: number): number { return Atomics.load(m.ap32, altp2mBase(d) + AD_GEN); }

// ---- entries ------------------------------------------------------------------------------------------

/**
 * Claim an entry for writing: its stamp goes to -1 (busy) by compareExchange, so a lock-free lazy fill
 * (viewFillFromHost) and a writer holding the p2m lock never write the same entry at once. Busy only for
 * a few stores, so spinning here cannot block a step.
 */
function claimEntry(p2m: Int32Array, e: number): void {
  for (;;) {
    const s = Atomics.load(p2m, e + P2E_STAMP);
    if (s !== -1 && Atomics.compareExchange(p2m, e + P2E_STAMP, s, -1) === s) return;
  }
}

/**
 * Write an entry: claimed (stamp -1), then mfn and attr, then the final stamp, so a reader that sees the
 * same stamp before and after reading mfn and attr has a consistent pair (readEntry).
 */
export function writeEntry(m: Machine, root: number, gfn: number, mfn: number, attr: number, stamp: number): void {
  const e = p2mEnsureEntry(m.p2m, root, gfn);
  claimEntry(m.p2m, e);
  Atomics.store(m.p2m, e + P2E_MFN, mfn);
  Atomics.store(m.p2m, e + P2E_ATTR, attr);
  Atomics.store(m.p2m, e + P2E_STAMP, stamp);
}

/** Remove an entry (attr 0 = not present). */
export function clearEntry(m: Machine, root: number, gfn: number, stamp: number): void {
  const e = p2mEntryOffset(m.p2m, root, gfn);
  if (e < 0) return;
  claimEntry(m.p2m, e);
  Atomics.store(m.p2m, e + P2E_ATTR, 0);
  Atomics.store(m.p2m, e + P2E_STAMP, stamp);
}

/** Scratch for readEntry (one per thread: modules are per isolate). */
export const entryOut = { mfn: 0, attr: 0, stamp: 0 };

/** Read a consistent (mfn, attr, stamp) of gfn into entryOut; attr 0 when absent. Returns the entry offset or -1. */
export function readEntry(m: Machine, root: number, gfn: number): number {
  // gfns beyond the 32-bit guest-physical space have no entry (the root covers 2^20 frames).
  const e = gfn < 0 || gfn > 0xfffff ? -1 : p2mEntryOffset(m.p2m, root, gfn);
  if (e < 0) { entryOut.mfn = -1; entryOut.attr = 0; entryOut.stamp = 0; return -1; }
  for (;;) {
    const s1 = Atomics.load(m.p2m, e + P2E_STAMP);
    const attr = Atomics.load(m.p2m, e + P2E_ATTR);
    const mfn = Atomics.load(m.p2m, e + P2E_MFN);
    const s2 = Atomics.load(m.p2m, e + P2E_STAMP);
    if (s1 === s2 && s1 !== -1 && attr === Atomics.load(m.p2m, e + P2E_ATTR)) {
      entryOut.mfn = mfn; entryOut.attr = attr; entryOut.stamp = s1;
      return e;
    }
  }
}

function present(attr: number): boolean { return p2mAttrType(attr) !== P2MT_INVALID; }

/**
 * Xen's p2m_altp2m_get_or_propagate (xen-altp2m.md §3 step 2): a view without an entry for gfn copies
 * the host's, with the view's default_access and suppress-VE set (a new entry's default). Returns true
 * when the faulting access should simply be retried (filled now, or being written by someone else).
 *
 * Lock-free, so that event delivery and a pCPU whose writer is waiting for flush acknowledgements never
 * wait on the p2m lock: the entry is claimed by compareExchange and filled only if still absent; if the
 * host entry changed meanwhile (a writer's propagation may have passed this view before the fill), the
 * fill is undone and the access faults again.
 */
export function viewFillFromHost(m: Machine, d: number, view: number, gfn: number): boolean {
  const hroot = tableRoot(m, d, HOST_TABLE), vroot = tableRoot(m, d, view);
  readEntry(m, hroot, gfn);
  if (!present(entryOut.attr)) return false;
  const hmfn = entryOut.mfn, hattr = entryOut.attr, hstamp = entryOut.stamp;
  const p2m = m.p2m;
  const e = p2mEnsureEntry(p2m, vroot, gfn);
  const s = Atomics.load(p2m, e + P2E_STAMP);
  // Someone else is writing this entry right now: retry the access (it will see their entry).
  if (s === -1 || Atomics.compareExchange(p2m, e + P2E_STAMP, s, -1) !== s) return true;
  if (present(Atomics.load(p2m, e + P2E_ATTR))) { Atomics.store(p2m, e + P2E_STAMP, s); return false; }
  const access = m.ap32[viewBase(d, view) + VW_DEFAULT_ACCESS];
  Atomics.store(p2m, e + P2E_MFN, hmfn);
  Atomics.store(p2m, e + P2E_ATTR, p2mAttr(p2mAttrType(hattr), access, true));
  Atomics.store(p2m, e + P2E_STAMP, s);
  readEntry(m, hroot, gfn);
  if (entryOut.stamp !== hstamp || entryOut.attr !== hattr || entryOut.mfn !== hmfn) {
    const s2 = Atomics.load(p2m, e + P2E_STAMP);
    if (s2 === s && Atomics.compareExchange(p2m, e + P2E_STAMP, s, -1) === s) {
      if (Atomics.load(p2m, e + P2E_MFN) === hmfn) Atomics.store(p2m, e + P2E_ATTR, 0);
      Atomics.store(p2m, e + P2E_STAMP, s);
    }
  }
  return true;
}

/**
 * Make sure view `view` holds gfn, copying the host entry as it is (type, access and all) when it does
 * not: the "prepopulate" step of set_mem_access / set_suppress_ve. -ESRCH (as -3) unless the host entry is
 * ordinary RAM. Lock held.
 */
export function viewPrepopulate(m: Machine, d: number, view: number, gfn: number, stamp: number): number {
  const vroot = tableRoot(m, d, view);
  readEntry(m, vroot, gfn);
  if (present(entryOut.attr)) return 0;
  readEntry(m, tableRoot(m, d, HOST_TABLE), gfn);
  if (p2mAttrType(entryOut.attr) !== P2MT_RAM_RW) return -3;
  writeEntry(m, vroot, gfn, entryOut.mfn, entryOut.attr | ATTR_SUPPRESS_VE, stamp);
  return 0;
}

/**
 * A host entry was written: Xen's p2m_altp2m_propagate_change (§4). Removal (the host entry is gone, as
 * after decrease_reservation) overlapping a view's change_gfn target range resets that view, and a second
 * such view resets every view. Otherwise views that hold the gfn take the host's mfn, type and access,
 * keeping their own suppress-VE: their own access and any change_gfn of that gfn are lost, as in Xen.
 * The tables it changed are appended to `touched`.
 */
export function propagateHostChange(m: Machine, d: number, gfn: number, mfn: number, attr: number, stamp: number, touched: number[]): void {
  if (!altp2mActive(m, d)) return;
  const nr = altp2mNr(m, d);
  const removed = !present(attr);
  let resets = 0;
  for (let i = 0; i < nr; i++) {
    if (!viewValid(m, d, i)) continue;
    if (removed) {
      const vb = viewBase(d, i);
      const lo = Atomics.load(m.ap32, vb + VW_MIN_REMAP), hi = Atomics.load(m.ap32, vb + VW_MAX_REMAP);
      if (lo !== INVALID_GFN32 && gfn >= lo && gfn <= hi) {
        if (resets++ === 0) { viewReset(m, d, i, stamp); touched.push(i); continue; }
        for (let j = 0; j < nr; j++) {
          if (!viewValid(m, d, j)) continue;
          viewReset(m, d, j, stamp);
          if (!touched.includes(j)) touched.push(j);
        }
        return;
      }
    }
    const vroot = tableRoot(m, d, i);
    readEntry(m, vroot, gfn);
    if (!present(entryOut.attr)) continue;
    if (removed) clearEntry(m, vroot, gfn, stamp);
    else writeEntry(m, vroot, gfn, mfn, (attr & ~ATTR_SUPPRESS_VE) | (entryOut.attr & ATTR_SUPPRESS_VE), stamp);
    if (!touched.includes(i)) touched.push(i);
  }
}

/**
 * Empty a table (p2m_reset_altp2m / p2m_flush_table): every present entry becomes not present, stamped
 * with `stamp`. Leaves stay allocated (Xen frees them; here they are reused by the next fill).
 */
export function tableClear(m: Machine, root: number, stamp: number): void {
  const p2m = m.p2m;
  for (let r = 0; r < P2M_ROOT_ENTRIES; r++) {
    const leaf = Atomics.load(p2m, root + r);
    if (leaf === P2M_NO_LEAF) continue;
    for (let i = 0; i < P2M_LEAF_ENTRIES; i++) {
      const e = leaf + i * P2M_ENTRY_WORDS;
      if (Atomics.load(p2m, e + P2E_ATTR) === 0) continue;
      claimEntry(p2m, e);
      Atomics.store(p2m, e + P2E_ATTR, 0);
      Atomics.store(p2m, e + P2E_STAMP, stamp);
    }
  }
}

/** Reset view `view`: empty, remapped range [INVALID_GFN, 0]. The EPTP list is untouched. Lock held. */
export function viewReset(m: Machine, d: number, view: number, stamp: number): void {
  tableClear(m, tableRoot(m, d, view), stamp);
  const vb = viewBase(d, view);
  Atomics.store(m.ap32, vb + VW_MIN_REMAP, INVALID_GFN32);
  Atomics.store(m.ap32, vb + VW_MAX_REMAP, 0);
}

/** Activate slot `view` with `access` as its default_access: both EPTP lists name it (create_p2m, enable). */
export function viewActivate(m: Machine, d: number, view: number, access: number): void {
  const vb = viewBase(d, view), ab = altp2mBase(d);
  Atomics.store(m.ap32, vb + VW_DEFAULT_ACCESS, access);
  Atomics.store(m.ap32, vb + VW_ACTIVE_VCPUS, 0);
  Atomics.store(m.ap32, vb + VW_MIN_REMAP, INVALID_GFN32);
  Atomics.store(m.ap32, vb + VW_MAX_REMAP, 0);
  const root = m.ap32[vb + VW_ROOT];
  if (m.ap32[ab + AD_APIC_VIEW] === view) {
    // The design maps the host's xAPIC into this view (mfn unused for a passed-through LAPIC page).
    writeEntry(m, root, APIC_GFN_NUMBER, -1, p2mAttr(P2MT_MMIO_DIRECT, ACCESS_RW, true), p2mCurrentGen(m, d));
  }
  Atomics.store(m.ap32, ab + AD_EPTP + view, root);
  Atomics.store(m.ap32, ab + AD_VISIBLE + view, root);
}

/** Deactivate slot `view`: emptied, both EPTP list entries INVALID. Lock held. */
export function viewDeactivate(m: Machine, d: number, view: number, stamp: number): void {
  const ab = altp2mBase(d);
  Atomics.store(m.ap32, ab + AD_EPTP + view, EPTP_INVALID);
  Atomics.store(m.ap32, ab + AD_VISIBLE + view, EPTP_INVALID);
  viewReset(m, d, view, stamp);
}

/** Lowest free slot (eptp INVALID), or -1. */
export function viewFindFree(m: Machine, d: number): number {
  const nr = altp2mNr(m, d), ab = altp2mBase(d);
  for (let i = 0; i < nr; i++) if (Atomics.load(m.ap32, ab + AD_EPTP + i) === EPTP_INVALID) return i;
  return -1;
}

export function hostDefaultAccess(m: Machine, d: number): number {
  return Atomics.load(m.ap32, altp2mBase(d) + AD_HOST_DEFAULT_ACCESS);
}

/**
 * Move vCPU v (off-CPU, or the caller's own vCPU whose core the caller updates) to view `idx`: Xen's
 * bookkeeping (p2midx, active_vcpus) and the hardware's EPTP index together.
 */
export function vcpuSetView(m: Machine, d: number, v: number, idx: number): void {
  vcpuResyncP2midx(m, d, v, idx);
  Atomics.store(m.vc32, v * VCPU_STRIDE_WORDS + VC_EPTP_INDEX, idx);
}

/**
 * Xen learns of a guest VMFUNC at the vCPU's next exit (vmx_vmexit_handler reads EPTP_INDEX): bring
 * p2midx and the active_vcpus counts up to the hardware's index.
 */
export function vcpuResyncP2midx(m: Machine, d: number, v: number, hwIdx: number): void {
  const b = v * VCPU_STRIDE_WORDS;
  const old = Atomics.load(m.vc32, b + VC_P2MIDX);
  if (old === hwIdx) return;
  if (old !== INVALID_ALTP2M) Atomics.sub(m.ap32, viewBase(d, old) + VW_ACTIVE_VCPUS, 1);
  if (hwIdx !== INVALID_ALTP2M) Atomics.add(m.ap32, viewBase(d, hwIdx) + VW_ACTIVE_VCPUS, 1);
  Atomics.store(m.vc32, b + VC_P2MIDX, hwIdx);
}

/**
 * Host byte offset of gpa for the hypervisor's own accesses (copy_from/to_guest): through the host p2m,
 * whatever view a vCPU uses, as Xen's get_page_from_gfn. -1 unless ordinary RAM.
 */
export function hostGpaToHost(m: Machine, d: number, gpa: number): number {
  readEntry(m, tableRoot(m, d, HOST_TABLE), gpa >>> 12);
  if (p2mAttrType(entryOut.attr) !== P2MT_RAM_RW) return -1;
  return (entryOut.mfn << 12) + (gpa & 0xfff);
}

/** Global vCPU indices of domain d. */
export function domainVcpus(m: Machine, d: number): [number, number] {
  const db = m.domainBase(d);
  return [m.dm32[db + DM_FIRST_VCPU], m.dm32[db + DM_NVCPUS]];
}

