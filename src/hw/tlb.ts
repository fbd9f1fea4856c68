// Per-pCPU software TLB: a direct-mapped cache of gfn -> host byte offset + permissions for the
// view the loaded vCPU uses. pCPU-private (never shared), so plain arrays suffice. Flushed on every
// vCPU switch and, once views exist, by INVEPT before VM entry.
/** Size of the direct-mapped TLB (a const enum so the hot path sees literals). */
export const enum TlbSize { ENTRIES = 256, MASK = 255 }
export const TLB_ENTRIES = TlbSize.ENTRIES;
export const TLB_MASK = TlbSize.MASK;

export class Tlb {
  /** gfn cached in each slot, -1 when empty. */
  readonly tag = new Int32Array(TLB_ENTRIES).fill(-1);
  /** host byte offset of the frame (mfn << 12). */
  readonly base = new Int32Array(TLB_ENTRIES);
  /** PERM_* bits the entry allows. */
  readonly perm = new Int32Array(TLB_ENTRIES);
  flushes = 0;

  flushAll(): void {
    this.tag.fill(-1);
    this.flushes++;
  }
}
