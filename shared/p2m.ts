// p2m tables: gfn -> (mfn, type, access, suppress-VE) for each domain, two-level and sparse so that
// a mapping at gfn 0xFEE00 (the xAPIC window) costs one leaf, not a 4 GiB table.
//
//   root: P2M_ROOT_ENTRIES words, indexed by gfn >> P2M_LEAF_BITS; each holds the word offset of a
//         leaf in this buffer, or P2M_NO_LEAF.
//   leaf: P2M_LEAF_ENTRIES entries of 4 words: [mfn, attr, stamp, spare].
// Leaves are carved from the buffer with Atomics.add on P2M_HDR_NEXT, so any thread may add one.
// Entries are written mfn first, then attr (Atomics.store); a reader that sees a valid attr sees its mfn.
import { assertLayout } from './layout.js';

export const P2M_LEAF_BITS = 10;
export const P2M_LEAF_ENTRIES = 1 << P2M_LEAF_BITS;
export const P2M_ROOT_ENTRIES = 1 << (32 - 12 - P2M_LEAF_BITS);
export const P2M_ENTRY_WORDS = 4;
export const P2M_LEAF_WORDS = P2M_LEAF_ENTRIES * P2M_ENTRY_WORDS;
export const P2M_NO_LEAF = -1;

/** Header: next free word (bump allocator) and buffer capacity in words. */
export const P2M_HDR_NEXT = 0;
export const P2M_HDR_CAPACITY = 1;
export const P2M_HDR_WORDS = 16;
assertLayout('p2m header', P2M_HDR_CAPACITY, P2M_HDR_WORDS);

/** Entry word 0: machine frame number. */
export const P2E_MFN = 0;
/** Entry word 1: attributes (below). */
export const P2E_ATTR = 1;
/**
 * Entry word 2: the domain's p2m generation (AD_GEN, shared/altp2m.ts) of the operation that last wrote
 * the entry. A TLB entry remembers it, so the STALE_TRANSLATION oracle can tell an entry changed since.
 */
export const P2E_STAMP = 2;

// attr layout
/** bits 0..3: access, Xen's xenmem_access_t numbering (ACCESS_*). */
export const ATTR_ACCESS_MASK = 0xf;
/** bits 4..11: p2m type (P2MT_*). P2MT_INVALID (0) means "not mapped". */
export const ATTR_TYPE_SHIFT = 4;
export const ATTR_TYPE_MASK = 0xff << ATTR_TYPE_SHIFT;
/** bit 12: suppress #VE (SDM: EPT entry bit 63). */
export const ATTR_SUPPRESS_VE = 1 << 12;

// p2m types (our numbering; names follow Xen's p2m_type_t)
export const P2MT_INVALID = 0;
export const P2MT_RAM_RW = 1;
export const P2MT_MMIO_DM = 2;       // emulated MMIO: access exits to the hypervisor
export const P2MT_MMIO_DIRECT = 3;   // passed through to a machine device page
export const P2MT_APIC_ACCESS = 4;   // APIC-access page (trap and emulate)

// xenmem_access_t (Xen public/memory.h order, 4.20 and later: r_pw took 10 and moved `default` to 11)
export const ACCESS_N = 0, ACCESS_R = 1, ACCESS_W = 2, ACCESS_RW = 3, ACCESS_X = 4, ACCESS_RX = 5,
  ACCESS_WX = 6, ACCESS_RWX = 7, ACCESS_RX2RW = 8, ACCESS_N2RWX = 9, ACCESS_R_PW = 10, ACCESS_DEFAULT = 11;
export const ACCESS_NAMES = ['n', 'r', 'w', 'rw', 'x', 'rx', 'wx', 'rwx', 'rx2rw', 'n2rwx', 'r_pw', 'default'] as const;

export function p2mAttr(type: number, access: number, suppressVe: boolean): number {
  return (access & ATTR_ACCESS_MASK) | ((type << ATTR_TYPE_SHIFT) & ATTR_TYPE_MASK) | (suppressVe ? ATTR_SUPPRESS_VE : 0);
}
export function p2mAttrType(attr: number): number { return (attr & ATTR_TYPE_MASK) >>> ATTR_TYPE_SHIFT; }
export function p2mAttrAccess(attr: number): number { return attr & ATTR_ACCESS_MASK; }
