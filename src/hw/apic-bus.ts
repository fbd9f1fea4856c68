// The APIC bus: which LAPICs an interrupt message reaches, as pure functions over plain values.
// Sources: ../shared/reference/apic.md §2 (ICR fields), §3 (destination matching, lowest priority);
// Xen `vlapic_match_dest`, `vlapic_match_logical_addr`, `vlapic_lowest_prio` (xen-sched-ipi.md §2.3).
// Each target is matched on its own state, in its own mode, as every APIC compares the message destination
// address (MDA) with its ID/LDR independently (SDM p384-387). Where implementations disagree ([DIV] in the
// sheet) the behaviour is an ApicBusOptions field whose default is Xen's.
//
// Simplified: no APIC-bus arbitration or retries (P6), no focus processor, no ESR "send accept error" for
// absent destinations (modern parts and Xen drop the message silently, §3 "Absent destination").
import {
  DFR_MODEL_CLUSTER, DFR_MODEL_FLAT, ICR_DEST_LOGICAL, ICR_DM_LOWEST, ICR_DM_MASK,
  ICR_HI_XAPIC_DEST_SHIFT, ICR_SH_ALL_EXCL, ICR_SH_ALL_INCL, ICR_SH_NONE, ICR_SH_SELF, ICR_SHORTHAND_MASK,
  ICR_VECTOR_MASK,
} from '../../shared/lapic.js';

/** xAPIC physical broadcast ID (SDM p384; 0x0F on P6, not modelled). */
export const APIC_BROADCAST_XAPIC = 0xff;
/** x2APIC broadcast, physical and logical (SDM p407). */
export const APIC_BROADCAST_X2APIC = 0xffffffff;

/**
 * Lowest-priority arbitration ([DIV], apic.md §3 table). The SDM leaves it to the chipset and says sending it
 * "should be avoided", so each policy is one hypervisor's reading:
 * - 'xen': scan round-robin from the previous winner; the enabled match with strictly lowest PPR wins, so
 *   ties go to the first one after the previous winner (`vlapic_lowest_prio`). Default.
 * - 'kvm-hash': KVM `vector_hashing=1`: the (vector mod N)-th of the N matching enabled APICs, in index
 *   order; PPR is ignored. A physical-broadcast lowest-priority IPI is delivered as fixed to all.
 * - 'lowest-ppr': lowest PPR, then lowest index: the sheet's deterministic simulator rule [D].
 * - 'qemu-first': the first matching APIC, enabled or not (QEMU TCG "XXX: arbitration").
 * Not modelled: KVM `vector_hashing=0` (per-vCPU arb_prio counters) and Bochs' focus/TPR rule.
 */
export type ApicLowestPriorityPolicy = 'xen' | 'kvm-hash' | 'lowest-ppr' | 'qemu-first';

/**
 * Logical-mode broadcast and LDR = 0 ([DIV], apic.md §3, vectors 32, 33, 35):
 * - 'xen': no broadcast case at all: flat is a plain AND (LDR 0 never matches, not even MDA 0xFF); cluster 0xFF
 *   matches only cluster 0xF; x2APIC logical 0xFFFFFFFF matches only cluster 0xFFFF. Default (Xen as read).
 * - 'sdm': MDA 0xFF (xAPIC, flat or cluster) and 0xFFFFFFFF (x2APIC) match every APIC whatever its LDR
 *   (SDM p386/p407; KVM `kvm_apic_match_logical_addr`; Bochs).
 * - 'qemu': flat is a plain AND; cluster nibble 0xF means every cluster but the low nibble is still ANDed;
 *   x2APIC 0xFFFFFFFF matches every x2APIC-mode APIC.
 */
export type ApicLogicalBroadcast = 'xen' | 'sdm' | 'qemu';

export interface ApicBusOptions {
  /** Default 'xen'. See ApicLowestPriorityPolicy. */
  readonly lowestPriority: ApicLowestPriorityPolicy;
  /** Default 'xen'. See ApicLogicalBroadcast. */
  readonly logicalBroadcast: ApicLogicalBroadcast;
}

/** Xen's choices (apic.md §3: Xen `vlapic_lowest_prio`, `vlapic_match_logical_addr`). */
export const APIC_BUS_DEFAULTS: ApicBusOptions = Object.freeze({ lowestPriority: 'xen', logicalBroadcast: 'xen' });

/**
 * The physical APIC bus: what the SDM says, not what a hypervisor's virtual APIC chose. Logical MDA 0xFF and
 * 0xFFFFFFFF reach every APIC (SDM p386, p407); lowest priority goes to the lowest-priority APIC, here the
 * lowest PPR, then the lowest index (the SDM leaves the tie to the chipset; apic.md §3 [D]). Scenario keys
 * set only the virtual bus (PcpuParams.apicBus); the machine's own LAPICs always route with this.
 */
export const APIC_BUS_HARDWARE: ApicBusOptions = Object.freeze({ lowestPriority: 'lowest-ppr', logicalBroadcast: 'sdm' });

/** What the bus needs to know about one LAPIC: a snapshot (lapicBusView builds one from a register page). */
export interface ApicBusTarget {
  /** xAPIC mode: the 8-bit ID (ID register bits 31:24). x2APIC mode: the 32-bit ID, unsigned. */
  readonly apicId: number;
  /** The target is in x2APIC mode: its broadcast is 0xFFFFFFFF and its LDR is the x2APIC cluster form. */
  readonly x2apic: boolean;
  /** Raw LDR register value. */
  readonly ldr: number;
  /** Raw DFR register value (ignored in x2APIC mode, which has no DFR). */
  readonly dfr: number;
  /** Xen `vlapic_enabled`: hardware-enabled (IA32_APIC_BASE.EN) and software-enabled (SVR bit 8). */
  readonly enabled: boolean;
  /** Processor priority (lapicPpr), used by lowest-priority arbitration. */
  readonly ppr: number;
}

// ---- ICR decoding ----
export function icrVector(icrLo: number): number { return icrLo & ICR_VECTOR_MASK; }
/** Delivery mode, still shifted (compare with ICR_DM_*). */
export function icrDeliveryMode(icrLo: number): number { return icrLo & ICR_DM_MASK; }
/** Shorthand, still shifted (compare with ICR_SH_*). */
export function icrShorthand(icrLo: number): number { return icrLo & ICR_SHORTHAND_MASK; }
export function icrIsLogical(icrLo: number): boolean { return (icrLo & ICR_DEST_LOGICAL) !== 0; }

/**
 * The destination a sender's ICR carries, unsigned: xAPIC ICR_HI[31:24], x2APIC the whole high half
 * (Xen `_VLAPIC_ID(sender, icr_high)`). A sender that is not a LAPIC (I/O APIC, MSI) uses the xAPIC form.
 */
export function apicIcrDest(icrHi: number, senderX2apic: boolean): number {
  return senderX2apic ? icrHi >>> 0 : icrHi >>> ICR_HI_XAPIC_DEST_SHIFT;
}

/** The x2APIC logical ID: cluster ID[19:4] in 31:16, one-hot ID[3:0] in 15:0 (SDM p407-408; Xen `x2apic_ldr_from_id`). */
export function x2apicLdrFromId(id: number): number {
  return ((((id >>> 4) & 0xffff) << 16) | (1 << (id & 0xf))) >>> 0;
}

/** Is `dest` the physical broadcast address for a target in this mode? Decided by the target's mode (KVM `kvm_apic_broadcast`, Xen). */
export function apicIsBroadcast(dest: number, x2apic: boolean): boolean {
  return (dest >>> 0) === (x2apic ? APIC_BROADCAST_X2APIC : APIC_BROADCAST_XAPIC);
}

/**
 * Physical destination mode: the MDA equals the target's ID, or is the broadcast for the target's mode.
 * So 0xFF sent to x2APIC-mode targets is a unicast to ID 0xFF (vector 25), and duplicate IDs all accept
 * (vector 34). The comparison is exact: hardware's "dest & 0xFF" match of xAPIC-mode targets for x2APIC IDs
 * above 0xFF is not modelled (KVM and Xen do not do it either, §3 "Duplicate IDs").
 */
export function apicMatchPhysical(destId: number, apicId: number, x2apic: boolean): boolean {
  return apicIsBroadcast(destId, x2apic) || (destId >>> 0) === (apicId >>> 0);
}

/**
 * Logical destination mode (SDM p386, p407). Flat: MDA AND LDR[31:24]. Cluster: MDA[7:4] == LDR[31:28]
 * and MDA[3:0] AND LDR[27:24]. x2APIC: MDA[31:16] == LDR[31:16] and MDA[15:0] AND LDR[15:0]. A DFR model
 * other than flat or cluster matches nothing (KVM and Xen). Broadcast handling: see ApicLogicalBroadcast.
 */
export function apicMatchLogical(mda: number, ldr: number, dfr: number, x2apic: boolean,
  broadcast: ApicLogicalBroadcast = APIC_BUS_DEFAULTS.logicalBroadcast): boolean {
  if (x2apic) return apicMatchLogicalX2apic(mda >>> 0, ldr >>> 0, broadcast);
  const m = mda & 0xff;
  const id = ldr >>> 24;
  if (broadcast === 'sdm' && m === APIC_BROADCAST_XAPIC) return true;
  const model = dfr >>> 28;
  if (model === DFR_MODEL_FLAT) return (m & id) !== 0;
  if (model !== DFR_MODEL_CLUSTER) return false;
  // QEMU reads cluster nibble 0xF as "every cluster" but still needs a member bit.
  const clusterOk = (m >>> 4) === (id >>> 4) || (broadcast === 'qemu' && (m >>> 4) === 0xf);
  return clusterOk && (m & id & 0xf) !== 0;
}

function apicMatchLogicalX2apic(mda: number, ldr: number, broadcast: ApicLogicalBroadcast): boolean {
  if (broadcast !== 'xen' && mda === APIC_BROADCAST_X2APIC) return true;
  return (mda >>> 16) === (ldr >>> 16) && (mda & ldr & 0xffff) !== 0;
}

/**
 * Does the message reach target `targetIndex`? Shorthands ignore destination and mode (SDM p382, p386):
 * self = the sender only, all-including = everyone, all-excluding = everyone but the sender.
 * `sender` is -1 for a message that no LAPIC sent (I/O APIC, MSI): then "self" matches nobody.
 */
export function apicMatchDest(target: ApicBusTarget, targetIndex: number, sender: number, icrLo: number,
  dest: number, options: ApicBusOptions = APIC_BUS_DEFAULTS): boolean {
  switch (icrShorthand(icrLo)) {
    case ICR_SH_NONE:
      return icrIsLogical(icrLo)
        ? apicMatchLogical(dest, target.ldr, target.dfr, target.x2apic, options.logicalBroadcast)
        : apicMatchPhysical(dest, target.apicId, target.x2apic);
    case ICR_SH_SELF: return targetIndex === sender;
    case ICR_SH_ALL_INCL: return true;
    case ICR_SH_ALL_EXCL: return targetIndex !== sender;
    default: return false;
  }
}

/**
 * Indices of every LAPIC in `apics` the message matches, in index order, before any lowest-priority
 * arbitration. The destination is decoded in the sender's mode (apicIcrDest) and compared in each target's.
 * Enabled state is not checked here: NMI, INIT and SIPI reach a software-disabled APIC, and the receiver
 * (lapicAcceptIpi) drops fixed interrupts itself (apic.md §4 "Software disable").
 */
export function apicDestinationSet(icrLo: number, icrHi: number, sender: number, apics: readonly ApicBusTarget[],
  options: ApicBusOptions = APIC_BUS_DEFAULTS): number[] {
  const senderX2apic = sender >= 0 && sender < apics.length && apics[sender].x2apic;
  const dest = apicIcrDest(icrHi, senderX2apic);
  const out: number[] = [];
  for (let i = 0; i < apics.length; i++) {
    if (apicMatchDest(apics[i], i, sender, icrLo, dest, options)) out.push(i);
  }
  return out;
}

/**
 * Lowest-priority arbitration among `candidates` (indices into `apics`, ascending, e.g. from
 * apicDestinationSet). `rrPrev` is the previous winner's index for the 'xen' policy (Xen's per-domain
 * `round_robin_prev_vcpu`, zero-initialised, so pass 0 first and the returned index afterwards).
 * Returns the winner's index, or -1 when no candidate qualifies (the message is dropped).
 */
export function apicLowestPriorityPick(candidates: readonly number[], apics: readonly ApicBusTarget[],
  vector: number, policy: ApicLowestPriorityPolicy, rrPrev: number): number {
  switch (policy) {
    case 'xen': return apicPickXen(candidates, apics, rrPrev);
    case 'kvm-hash': return apicPickKvmHash(candidates, apics, vector);
    case 'lowest-ppr': return apicPickLowestPpr(candidates, apics);
    case 'qemu-first': return candidates.length > 0 ? candidates[0] : -1;
  }
}

/**
 * Xen scans vcpus prev+1, ..., n-1, 0, ..., prev and keeps a match only if its PPR is strictly lower than
 * the best so far: the winner is the lowest PPR, ties broken by scan order. Same result, no allocation:
 * minimise (ppr, distance after prev).
 */
function apicPickXen(candidates: readonly number[], apics: readonly ApicBusTarget[], rrPrev: number): number {
  const n = apics.length;
  const prev = rrPrev >= 0 && rrPrev < n ? rrPrev : 0;
  let best = -1, bestPpr = 0, bestDist = 0;
  for (const i of candidates) {
    if (!apics[i].enabled) continue;
    const ppr = apics[i].ppr, dist = (i - prev - 1 + n) % n;
    if (best < 0 || ppr < bestPpr || (ppr === bestPpr && dist < bestDist)) {
      best = i; bestPpr = ppr; bestDist = dist;
    }
  }
  return best;
}

/** KVM `kvm_vector_to_index`: the (vector mod N)-th set bit of the enabled-candidate bitmap. */
function apicPickKvmHash(candidates: readonly number[], apics: readonly ApicBusTarget[], vector: number): number {
  let n = 0;
  for (const i of candidates) if (apics[i].enabled) n++;
  if (n === 0) return -1;
  let k = vector % n;
  for (const i of candidates) {
    if (!apics[i].enabled) continue;
    if (k === 0) return i;
    k--;
  }
  return -1;
}

function apicPickLowestPpr(candidates: readonly number[], apics: readonly ApicBusTarget[]): number {
  let best = -1;
  for (const i of candidates) {
    if (apics[i].enabled && (best < 0 || apics[i].ppr < apics[best].ppr)) best = i;
  }
  return best;
}

/**
 * Final targets of an IPI: the destination set, narrowed to one winner for lowest-priority delivery.
 * Under 'kvm-hash', lowest priority to the physical broadcast is delivered as fixed to every match (KVM
 * converts it, apic.md §3 "Physical"). With the 'xen' policy the caller stores targets[0] as the next rrPrev.
 */
export function apicRouteIpi(icrLo: number, icrHi: number, sender: number, apics: readonly ApicBusTarget[],
  options: ApicBusOptions = APIC_BUS_DEFAULTS, rrPrev = 0): number[] {
  const set = apicDestinationSet(icrLo, icrHi, sender, apics, options);
  if (icrDeliveryMode(icrLo) !== ICR_DM_LOWEST) return set;
  if (options.lowestPriority === 'kvm-hash' && apicIsKvmPhysicalBroadcast(icrLo, icrHi, sender, apics)) return set;
  const winner = apicLowestPriorityPick(set, apics, icrVector(icrLo), options.lowestPriority, rrPrev);
  return winner < 0 ? [] : [winner];
}

/** Physical mode, no shorthand, and the broadcast address in the sender's mode (what KVM converts to fixed). */
function apicIsKvmPhysicalBroadcast(icrLo: number, icrHi: number, sender: number, apics: readonly ApicBusTarget[]): boolean {
  if (icrShorthand(icrLo) !== ICR_SH_NONE || icrIsLogical(icrLo)) return false;
  const senderX2apic = sender >= 0 && sender < apics.length && apics[sender].x2apic;
  return apicIsBroadcast(apicIcrDest(icrHi, senderX2apic), senderX2apic);
}
