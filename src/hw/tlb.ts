// Per-pCPU software TLB: a direct-mapped cache of gfn -> host byte offset + permissions, one per EPT
// table the pCPU has used (the host p2m and each altp2m view), as hardware tags translations with the
// EPTP. pCPU-private (never shared), so plain arrays suffice. Flushed on every vCPU switch, and per table
// by INVEPT before VM entry (hv/ept-sync.ts); VMFUNC switches tables without flushing.
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
  /** Word index of the p2m entry's stamp (P2E_STAMP) this translation came from. */
  readonly eoff = new Int32Array(TLB_ENTRIES);
  /** The stamp it had then: a different stamp now means the entry was rewritten since. */
  readonly stamp = new Int32Array(TLB_ENTRIES);
  /**
   * A translation whose p2m entry was rewritten since it was filled (found by the audit at a burst's start,
   * interp.ts tlbAudit): its permissions move here and `perm` goes to 0, so every access through it takes
   * the slow path, where the STALE_TRANSLATION oracle judges it; the hardware still uses it. 0 = not suspect.
   */
  readonly hold = new Int32Array(TLB_ENTRIES);
  flushes = 0;

  flushAll(): void {
    this.tag.fill(-1);
    this.hold.fill(0);
    this.flushes++;
  }
}
