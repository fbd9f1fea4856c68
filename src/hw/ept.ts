// EPT / p2m entry semantics as pure functions over the shared p2m buffer (layout in shared/p2m.ts).
// Simplified from the SDM: one level of permissions (r/w/x), no A/D bits, no large pages.
import {
  ACCESS_N, ACCESS_N2RWX, ACCESS_RX, ACCESS_RX2RW, P2E_ATTR, P2E_MFN, P2M_ENTRY_WORDS, P2M_HDR_CAPACITY,
  P2M_HDR_NEXT, P2M_LEAF_BITS, P2M_LEAF_ENTRIES, P2M_LEAF_WORDS, P2M_NO_LEAF, P2M_ROOT_ENTRIES,
  P2MT_INVALID, p2mAttrAccess, p2mAttrType,
} from '../../shared/p2m.js';
import { assert } from '../errors.js';

/** Access rights as the TLB stores them (a const enum: inlined as literals on the interpreter's hot path). */
export const enum Perm { R = 1, W = 2, X = 4 }
export const PERM_R = Perm.R;
export const PERM_W = Perm.W;
export const PERM_X = Perm.X;

/**
 * Effective r/w/x of a xenmem_access_t. rx2rw and n2rwx are "automatic" types: the hardware entry is rx
 * and n respectively, and Xen changes them on the first violation (../shared/reference/xen-altp2m.md).
 */
export function eptAccessPerms(access: number): number {
  if (access <= 7) return access;
  if (access === ACCESS_RX2RW) return ACCESS_RX;
  if (access === ACCESS_N2RWX) return ACCESS_N;
  return ACCESS_N;
}

/** Word offset of the entry for gfn in the p2m rooted at `root`, or -1 when no leaf holds it. */
export function p2mEntryOffset(p2m: Int32Array, root: number, gfn: number): number {
  const leaf = Atomics.load(p2m, root + (gfn >>> P2M_LEAF_BITS));
  if (leaf === P2M_NO_LEAF) return -1;
  return leaf + (gfn & (P2M_LEAF_ENTRIES - 1)) * P2M_ENTRY_WORDS;
}

/** Allocate a root table (all entries P2M_NO_LEAF). Any thread may call it. */
export function p2mAllocRoot(p2m: Int32Array): number {
  const at = p2mAllocWords(p2m, P2M_ROOT_ENTRIES);
  p2m.fill(P2M_NO_LEAF, at, at + P2M_ROOT_ENTRIES);
  return at;
}

function p2mAllocWords(p2m: Int32Array, words: number): number {
  const at = Atomics.add(p2m, P2M_HDR_NEXT, words);
  assert(at + words <= Atomics.load(p2m, P2M_HDR_CAPACITY), 'p2m buffer exhausted');
  return at;
}

/** Entry offset for gfn, creating the leaf if needed (race-free: the loser of the CAS leaks one leaf). */
export function p2mEnsureEntry(p2m: Int32Array, root: number, gfn: number): number {
  const slot = root + (gfn >>> P2M_LEAF_BITS);
  let leaf = Atomics.load(p2m, slot);
  if (leaf === P2M_NO_LEAF) {
    const fresh = p2mAllocWords(p2m, P2M_LEAF_WORDS);
    // A fresh leaf is all zero: mfn 0, type P2MT_INVALID (0) - i.e. not mapped.
    const prev = Atomics.compareExchange(p2m, slot, P2M_NO_LEAF, fresh);
    leaf = prev === P2M_NO_LEAF ? fresh : prev;
  }
  return leaf + (gfn & (P2M_LEAF_ENTRIES - 1)) * P2M_ENTRY_WORDS;
}

export function p2mSetEntry(p2m: Int32Array, root: number, gfn: number, mfn: number, attr: number): void {
  const e = p2mEnsureEntry(p2m, root, gfn);
  Atomics.store(p2m, e + P2E_MFN, mfn);
  Atomics.store(p2m, e + P2E_ATTR, attr);
}

/** Attribute word for gfn (0 = P2MT_INVALID when unmapped). */
export function p2mGetAttr(p2m: Int32Array, root: number, gfn: number): number {
  const e = p2mEntryOffset(p2m, root, gfn);
  return e < 0 ? 0 : Atomics.load(p2m, e + P2E_ATTR);
}

export function p2mGetMfn(p2m: Int32Array, root: number, gfn: number): number {
  const e = p2mEntryOffset(p2m, root, gfn);
  return e < 0 ? -1 : Atomics.load(p2m, e + P2E_MFN);
}

/** Does an entry with `attr` allow an access needing `perm` (PERM_* bits)? */
export function eptPermits(attr: number, perm: number): boolean {
  if (p2mAttrType(attr) === P2MT_INVALID) return false;
  return (eptAccessPerms(p2mAttrAccess(attr)) & perm) === perm;
}
