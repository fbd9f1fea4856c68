// Event delivery through a view that is filled lazily (isa/interp.ts guestDeliver, deliveryXlate). The
// threaded engine's race is staged here in one thread: the delivery misses on the IDT page, and by the time
// the hypervisor's fill looks, another pCPU has filled the entry, so the fill finds it present and does
// nothing. Delivery must look again and succeed; only an entry that still forbids the access is a fault.
import { describe, expect, it } from 'vitest';
import { CpuCore, EXIT_NONE, EXIT_TRIPLE_FAULT, guestDeliver, type DeliveryHook } from '../../src/isa/interp.js';
import { REG_ESP } from '../../src/isa/opcodes.js';
import { p2mAllocRoot, p2mSetEntry } from '../../src/hw/ept.js';
import { opcodeCosts, DEFAULT_COSTS } from '../../src/hw/clock.js';
import { ACCESS_N, ACCESS_RWX, P2MT_RAM_RW, P2M_HDR_CAPACITY, P2M_HDR_NEXT, P2M_HDR_WORDS, p2mAttr } from '../../shared/p2m.js';

const IDT = 0x1000, HANDLER = 0x2000, STACK_TOP = 0x4000;

/** A core on one view (index 1) where every page but the IDT's (gfn 1) is present; the stack is at gfn 3. */
function setup(): { core: CpuCore; p2m: Int32Array; root: number } {
  const mem = new SharedArrayBuffer(16 * 4096);
  const p2m = new Int32Array(new SharedArrayBuffer(1 << 22));
  p2m[P2M_HDR_NEXT] = P2M_HDR_WORDS;
  p2m[P2M_HDR_CAPACITY] = p2m.length;
  const root = p2mAllocRoot(p2m);
  for (const gfn of [0, 2, 3]) p2mSetEntry(p2m, root, gfn, gfn, p2mAttr(P2MT_RAM_RW, ACCESS_RWX, true));
  new Int32Array(mem)[(IDT + 2 * 4) >> 2] = HANDLER; // vector 2
  const core = new CpuCore(new Int32Array(mem), new Uint8Array(mem), p2m, new Int32Array(64), 2, opcodeCosts(DEFAULT_COSTS));
  core.setTable(1, root);
  core.idtr = IDT;
  core.R[REG_ESP] = STACK_TOP;
  core.pc = 0x100;
  return { core, p2m, root };
}

/** A fill that finds the entry already there (another pCPU was first): it writes `access` and reports no fill. */
function filledMeanwhile(p2m: Int32Array, root: number, access: number): DeliveryHook {
  return { fillForDelivery: (gpa) => { p2mSetEntry(p2m, root, gpa >>> 12, gpa >>> 12, p2mAttr(P2MT_RAM_RW, access, true)); return false; } };
}

describe('event delivery through a lazily filled view', () => {
  it('an entry another pCPU filled between the miss and the fill: the delivery looks again and goes through', () => {
    const { core, p2m, root } = setup();
    core.deliveryHook = filledMeanwhile(p2m, root, ACCESS_RWX);
    expect(guestDeliver(core, 2, 0x100)).toBe(EXIT_NONE);
    expect(core.pc).toBe(HANDLER);
    expect(core.R[REG_ESP]).toBe(STACK_TOP - 8);
  });

  it('an entry that is there but forbids the read is still a fault during delivery (control)', () => {
    const { core, p2m, root } = setup();
    core.deliveryHook = filledMeanwhile(p2m, root, ACCESS_N);
    expect(guestDeliver(core, 2, 0x100)).toBe(EXIT_TRIPLE_FAULT);
    expect(core.exitQual).toBe(2);
  });
});
