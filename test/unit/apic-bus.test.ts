// APIC bus semantics (src/hw/apic-bus.ts): one test per SDM rule or fact-sheet conformance vector
// (../shared/reference/apic.md §3 and §7 C; "vector N" = row N of §7; XS-n = xen-sched-ipi.md §4.7).
import { describe, expect, it } from 'vitest';
import {
  APIC_BUS_DEFAULTS, type ApicBusOptions, type ApicBusTarget, apicDestinationSet, apicIcrDest, apicIsBroadcast,
  apicLowestPriorityPick, apicMatchLogical, apicMatchPhysical, apicRouteIpi, icrDeliveryMode, icrIsLogical,
  icrShorthand, icrVector, x2apicLdrFromId,
} from '../../src/hw/apic-bus.js';
import {
  ICR_DEST_LOGICAL, ICR_DM_FIXED, ICR_DM_INIT, ICR_DM_LOWEST, ICR_DM_NMI, ICR_DM_SHIFT, ICR_DM_SIPI,
  ICR_LEVEL_ASSERT, ICR_SH_ALL_EXCL, ICR_SH_ALL_INCL, ICR_SH_NONE, ICR_SH_SELF,
} from '../../shared/lapic.js';

const FLAT = 0xffffffff;
const CLUSTER = 0x0fffffff;

/** An enabled xAPIC-mode target in flat mode with LDR 0 and PPR 0, overridden by `o`. */
function tgt(apicId: number, o: Partial<ApicBusTarget> = {}): ApicBusTarget {
  return { apicId, x2apic: false, ldr: 0, dfr: FLAT, enabled: true, ppr: 0, ...o };
}
function x2(apicId: number, o: Partial<ApicBusTarget> = {}): ApicBusTarget {
  return tgt(apicId, { x2apic: true, ldr: x2apicLdrFromId(apicId), ...o });
}
/** xAPIC ICR_HI for a destination byte. */
function hi(dest: number): number {
  return (dest << 24) >>> 0;
}
function opts(o: Partial<ApicBusOptions>): ApicBusOptions {
  return { ...APIC_BUS_DEFAULTS, ...o };
}
const PHYS_FIXED = ICR_LEVEL_ASSERT | ICR_DM_FIXED;
const LOGICAL_FIXED = ICR_LEVEL_ASSERT | ICR_DEST_LOGICAL | ICR_DM_FIXED;

describe('ICR decoding (SDM p380-383, Figure 10-12)', () => {
  it('splits vector, delivery mode, destination mode and shorthand', () => {
    const lo = 0x000c46a5;  // all-excluding-self, level assert, SIPI, vector 0xA5
    expect(icrVector(lo)).toBe(0xa5);
    expect(icrDeliveryMode(lo)).toBe(ICR_DM_SIPI);
    expect(icrShorthand(lo)).toBe(ICR_SH_ALL_EXCL);
    expect(icrIsLogical(lo)).toBe(false);
    expect(icrIsLogical(lo | ICR_DEST_LOGICAL)).toBe(true);
  });

  it('reads the destination in the sender\'s mode: xAPIC ICR_HI[31:24], x2APIC all 32 bits', () => {
    expect(apicIcrDest(0xab123456, false)).toBe(0xab);
    expect(apicIcrDest(0xab123456, true)).toBe(0xab123456);
    expect(apicIcrDest(-1, true)).toBe(0xffffffff);
  });
});

describe('physical destination mode (SDM p384, p407)', () => {
  it('matches the exact ID; 0xFF is the xAPIC broadcast, 0xFFFFFFFF the x2APIC one', () => {
    expect(apicMatchPhysical(5, 5, false)).toBe(true);
    expect(apicMatchPhysical(6, 5, false)).toBe(false);
    expect(apicMatchPhysical(0xff, 5, false)).toBe(true);
    expect(apicMatchPhysical(0xffffffff, 0x1234, true)).toBe(true);
    expect(apicMatchPhysical(-1, 0x1234, true)).toBe(true);
    expect(apicIsBroadcast(0xff, true)).toBe(false);
  });

  it('vector 22: physical broadcast reaches every CPU, sender included (xAPIC FF000000, x2APIC FFFFFFFF)', () => {
    const xs = [tgt(0), tgt(2), tgt(4)];
    expect(apicDestinationSet(0x000040cf, hi(0xff), 1, xs)).toEqual([0, 1, 2]);
    const x2s = [x2(0), x2(2), x2(4)];
    expect(apicDestinationSet(0x000040cf, 0xffffffff, 1, x2s)).toEqual([0, 1, 2]);
  });

  it('vector 25: x2APIC destination 0xFF is a unicast to ID 0xFF, so no x2APIC CPU gets it', () => {
    const x2s = [x2(0), x2(2), x2(4)];
    expect(apicDestinationSet(PHYS_FIXED | 0x40, 0xff, 0, x2s)).toEqual([]);
    expect(apicDestinationSet(PHYS_FIXED | 0x40, 0xff, 0, [...x2s, x2(0xff)])).toEqual([3]);
    // Broadcast is decided by the target's mode (KVM, Xen): an xAPIC-mode target takes 0xFF as broadcast.
    expect(apicDestinationSet(PHYS_FIXED | 0x40, 0xff, 0, [x2(0), tgt(7)])).toEqual([1]);
  });

  it('vector 26: IPIs to absent IDs are dropped silently, in every delivery mode', () => {
    const xs = [tgt(0), tgt(2)];
    for (let dm = 0; dm < 8; dm++) {
      expect(apicDestinationSet((dm << ICR_DM_SHIFT) | 0xff, hi(0x7f), 0, xs), `mode ${dm}`).toEqual([]);
      expect(apicRouteIpi((dm << ICR_DM_SHIFT) | 0xff, hi(0x7f), 0, xs), `mode ${dm}`).toEqual([]);
    }
  });

  it('vector 34: duplicate xAPIC IDs all accept, for every destination ID', () => {
    for (let id = 0; id < 255; id++) {
      expect(apicDestinationSet(PHYS_FIXED | 0x40, hi(id), 2, [tgt(id), tgt(id), tgt(id === 9 ? 8 : 9)])).toEqual([0, 1]);
    }
  });

  it('a message from a non-APIC source (sender -1) uses the xAPIC destination form', () => {
    expect(apicDestinationSet(PHYS_FIXED | 0x40, hi(2), -1, [tgt(0), tgt(2)])).toEqual([1]);
  });
});

describe('shorthands ignore destination and mode (SDM p382, p386)', () => {
  const xs = [tgt(0), tgt(2), tgt(4)];

  it('vector 19/20: self reaches the sender only, whatever ICR_HI holds', () => {
    expect(apicDestinationSet(ICR_SH_SELF | 0xf1, hi(4), 1, xs)).toEqual([1]);
    expect(apicDestinationSet(ICR_SH_SELF | ICR_DEST_LOGICAL | 0xf1, hi(0xff), 1, xs)).toEqual([1]);
    expect(apicDestinationSet(ICR_SH_SELF | 0xf1, 0xffffffff, 0, [x2(0), x2(2)])).toEqual([0]);
  });

  it('vector 23: all-including-self reaches everyone', () => {
    expect(apicDestinationSet(0x000840cf, 0, 1, xs)).toEqual([0, 1, 2]);
  });

  it('vector 24: all-excluding-self reaches everyone but the sender', () => {
    expect(apicDestinationSet(0x000c40cf, 0, 1, xs)).toEqual([0, 2]);
  });

  it('without a LAPIC sender, self reaches nobody and all-excluding reaches all', () => {
    expect(apicDestinationSet(ICR_SH_SELF | 0x40, 0, -1, xs)).toEqual([]);
    expect(apicDestinationSet(ICR_SH_ALL_EXCL | 0x40, 0, -1, xs)).toEqual([0, 1, 2]);
  });
});

describe('logical destination mode, xAPIC (SDM p386)', () => {
  it('vector 29: flat, one target: destination bit i | k reaches only the APIC with LDR bit i', () => {
    for (let i = 0; i < 8; i++) {
      const apics = [tgt(0, { ldr: 0 }), tgt(1, { ldr: (1 << (24 + i)) >>> 0 })];
      for (let k = 0; k < 256; k++) {
        const dest = (1 << i) | k;
        if ((k & (1 << i)) !== 0 || dest === 0xff) continue;
        expect(apicDestinationSet(LOGICAL_FIXED | 0x40, hi(dest), 0, apics), `i=${i} k=${k}`).toEqual([1]);
      }
    }
  });

  it('vector 30: cluster, one target: same cluster and a member bit; another cluster gets none', () => {
    for (let c = 0; c < 15; c++) {
      for (let i = 0; i < 4; i++) {
        const apics = [tgt(0, { ldr: 0, dfr: CLUSTER }), tgt(1, { ldr: (((c << 4) | (1 << i)) << 24) >>> 0, dfr: CLUSTER })];
        for (let k = 0; k < 16; k++) {
          const dest = (c << 4) | (1 << i) | k;
          expect(apicDestinationSet(LOGICAL_FIXED | 0x40, hi(dest), 0, apics), `c=${c} i=${i} k=${k}`).toEqual([1]);
          const other = (((c + 1) % 15) << 4) | (1 << i) | k;
          expect(apicDestinationSet(LOGICAL_FIXED | 0x40, hi(other), 0, apics)).toEqual([]);
        }
      }
    }
  });

  it('vector 31: two targets in flat mode and within one cluster get exactly 2 IPIs', () => {
    for (const [li, lj] of [[0x01, 0x02], [0x03, 0x03]]) {
      const flat = [tgt(0, { ldr: (li << 24) >>> 0 }), tgt(1, { ldr: (lj << 24) >>> 0 })];
      expect(apicDestinationSet(LOGICAL_FIXED | 0x40, hi(0x03 | 0x40), 0, flat)).toEqual([0, 1]);
      const cl = [tgt(0, { ldr: ((0x20 | li) << 24) >>> 0, dfr: CLUSTER }), tgt(1, { ldr: ((0x20 | lj) << 24) >>> 0, dfr: CLUSTER })];
      expect(apicDestinationSet(LOGICAL_FIXED | 0x40, hi(0x23 | 0x08), 0, cl)).toEqual([0, 1]);
    }
  });

  it('vector 32 [DIV]: flat 0xFF with LDRs 01, 02, 00: Xen ANDs (2 receive), SDM/KVM broadcast (3)', () => {
    const apics = [tgt(0, { ldr: 0x01000000 }), tgt(1, { ldr: 0x02000000 }), tgt(2, { ldr: 0 })];
    expect(apicDestinationSet(LOGICAL_FIXED | 0x40, hi(0xff), 0, apics)).toEqual([0, 1]);
    expect(apicDestinationSet(LOGICAL_FIXED | 0x40, hi(0xff), 0, apics, opts({ logicalBroadcast: 'sdm' }))).toEqual([0, 1, 2]);
    expect(apicDestinationSet(LOGICAL_FIXED | 0x40, hi(0xff), 0, apics, opts({ logicalBroadcast: 'qemu' }))).toEqual([0, 1]);
  });

  it('vector 33 [DIV]: cluster 0xFF to clusters 0 and 3: Xen only cluster 0xF, SDM all, QEMU all clusters', () => {
    const apics = [tgt(0, { ldr: 0x01000000, dfr: CLUSTER }), tgt(1, { ldr: 0x32000000, dfr: CLUSTER }),
      tgt(2, { ldr: 0xf4000000, dfr: CLUSTER })];
    expect(apicDestinationSet(LOGICAL_FIXED | 0x40, hi(0xff), 0, apics)).toEqual([2]);
    expect(apicDestinationSet(LOGICAL_FIXED | 0x40, hi(0xff), 0, apics, opts({ logicalBroadcast: 'sdm' }))).toEqual([0, 1, 2]);
    expect(apicDestinationSet(LOGICAL_FIXED | 0x40, hi(0xff), 0, apics, opts({ logicalBroadcast: 'qemu' }))).toEqual([0, 1, 2]);
    // QEMU still needs a member bit: cluster nibble F with member 1 reaches only bit-0 members.
    expect(apicDestinationSet(LOGICAL_FIXED | 0x40, hi(0xf1), 0, apics, opts({ logicalBroadcast: 'qemu' }))).toEqual([0]);
  });

  it('LDR 0 matches nothing but a broadcast; a DFR model other than flat or cluster matches nothing', () => {
    expect(apicMatchLogical(0x7f, 0, FLAT, false)).toBe(false);
    expect(apicMatchLogical(0xff, 0, FLAT, false, 'sdm')).toBe(true);
    expect(apicMatchLogical(0x01, 0x01000000, 0x5fffffff, false)).toBe(false);
    expect(apicMatchLogical(0xff, 0x01000000, 0x5fffffff, false, 'sdm')).toBe(true);
  });
});

describe('x2APIC logical mode (SDM p407-408)', () => {
  it('vector 15: LDR = cluster ID[19:4] << 16 | 1 << ID[3:0]', () => {
    expect(x2apicLdrFromId(0x23)).toBe(0x00020008);
    expect(x2apicLdrFromId(0x10)).toBe(0x00010001);
    expect(x2apicLdrFromId(0)).toBe(0x00000001);
    expect(x2apicLdrFromId(0xfffff)).toBe(0xffff8000);
  });

  it('vector 35: target 0x23 with destinations 00020008, 0002000C, 00030008, FFFFFFFF', () => {
    const ldr = x2apicLdrFromId(0x23);
    expect(apicMatchLogical(0x00020008, ldr, 0, true)).toBe(true);
    expect(apicMatchLogical(0x0002000c, ldr, 0, true)).toBe(true);
    expect(apicMatchLogical(0x00030008, ldr, 0, true)).toBe(false);
    // SDM, KVM, QEMU, Bochs: logical broadcast. Xen as read has no broadcast case [DIV].
    expect(apicMatchLogical(0xffffffff, ldr, 0, true, 'sdm')).toBe(true);
    expect(apicMatchLogical(0xffffffff, ldr, 0, true, 'qemu')).toBe(true);
    expect(apicMatchLogical(0xffffffff, ldr, 0, true, 'xen')).toBe(false);
  });

  it('Linux sends one IPI per cluster with the members\' LDRs ORed', () => {
    const apics = [0x20, 0x21, 0x22, 0x30].map((id) => x2(id));
    const dest = (x2apicLdrFromId(0x20) | x2apicLdrFromId(0x22)) >>> 0;
    expect(apicDestinationSet(LOGICAL_FIXED | 0x40, dest, 1, apics)).toEqual([0, 2]);
  });
});

describe('lowest-priority arbitration (SDM p384-387; [DIV] policies)', () => {
  const LP = ICR_LEVEL_ASSERT | ICR_DM_LOWEST | 0x41;

  it('XS-22 (Xen): the lower PPR wins; equal PPRs rotate round-robin from the previous winner', () => {
    const apics = [tgt(0, { ppr: 0x20 }), tgt(2, { ppr: 0x10 }), tgt(4, { ppr: 0x30 })];
    expect(apicRouteIpi(LP, hi(0xff), 0, apics)).toEqual([1]);
    const equal = [tgt(0), tgt(2), tgt(4)];
    let prev = 0;
    const winners: number[] = [];
    for (let n = 0; n < 6; n++) {
      const [w] = apicRouteIpi(LP, hi(0xff), 0, equal, APIC_BUS_DEFAULTS, prev);
      winners.push(w);
      prev = w;
    }
    expect(winners).toEqual([1, 2, 0, 1, 2, 0]);
  });

  it('Xen: disabled APICs never win; no enabled match drops the message', () => {
    const apics = [tgt(0, { ppr: 0x20 }), tgt(2, { ppr: 0x00, enabled: false })];
    expect(apicRouteIpi(LP, hi(0xff), 0, apics)).toEqual([0]);
    expect(apicRouteIpi(LP, hi(0xff), 0, [tgt(0, { enabled: false })])).toEqual([]);
  });

  it('kvm-hash: the (vector mod N)-th enabled match, PPR ignored', () => {
    const apics = [tgt(0, { ppr: 0 }), tgt(2, { enabled: false }), tgt(4, { ppr: 0xf0 }), tgt(6)];
    const cands = [0, 1, 2, 3];
    expect(apicLowestPriorityPick(cands, apics, 0x40, 'kvm-hash', 0)).toBe(2);  // 0x40 % 3 = 1 -> second enabled
    expect(apicLowestPriorityPick(cands, apics, 0x42, 'kvm-hash', 0)).toBe(0);  // 0x42 % 3 = 0
  });

  it('kvm-hash: lowest priority to the physical broadcast is delivered as fixed to all', () => {
    const apics = [tgt(0), tgt(2), tgt(4)];
    expect(apicRouteIpi(LP, hi(0xff), 0, apics, opts({ lowestPriority: 'kvm-hash' }))).toEqual([0, 1, 2]);
    expect(apicRouteIpi(LP | ICR_DEST_LOGICAL, hi(0xff), 0, apics.map((a, i) => ({ ...a, ldr: (1 << (24 + i)) >>> 0 })),
      opts({ lowestPriority: 'kvm-hash' }))).toHaveLength(1);
  });

  it('lowest-ppr: lowest PPR, then lowest index; qemu-first: the first match, enabled or not', () => {
    const apics = [tgt(0, { ppr: 0x30 }), tgt(2, { ppr: 0x10 }), tgt(4, { ppr: 0x10 })];
    expect(apicLowestPriorityPick([0, 1, 2], apics, 0x41, 'lowest-ppr', 1)).toBe(1);
    expect(apicLowestPriorityPick([0, 1, 2], apics, 0x41, 'qemu-first', 1)).toBe(0);
    expect(apicLowestPriorityPick([], apics, 0x41, 'lowest-ppr', 0)).toBe(-1);
  });

  it('all-excluding-self lowest priority arbitrates among the others only (Xen)', () => {
    const apics = [tgt(0, { ppr: 0 }), tgt(2, { ppr: 0x40 }), tgt(4, { ppr: 0x50 })];
    expect(apicRouteIpi(ICR_SH_ALL_EXCL | ICR_DM_LOWEST | 0x41, 0, 0, apics)).toEqual([1]);
  });

  it('other delivery modes are not narrowed: NMI, INIT and SIPI reach every match', () => {
    const apics = [tgt(0), tgt(2, { enabled: false }), tgt(4)];
    for (const dm of [ICR_DM_FIXED, ICR_DM_NMI, ICR_DM_INIT, ICR_DM_SIPI]) {
      expect(apicRouteIpi(ICR_SH_NONE | dm, hi(0xff), 0, apics)).toEqual([0, 1, 2]);
    }
    expect(apicRouteIpi(ICR_SH_ALL_INCL | ICR_DM_FIXED | 0x40, 0, 0, apics)).toEqual([0, 1, 2]);
  });
});
