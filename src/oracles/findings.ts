// The findings table: one entry per kind with a count, the first occurrence plus its evidence, the count of
// each cause and of each signature, and every occurrence up to a cap (`instances`, so memory stays bounded).
// Oracles add to it; nothing here changes the run (DESIGN.md §6).
//
// A signature (DESIGN.md §8, contract) is `kind:cause:pcs`: the finding kind, a stable cause token, and the
// guest pcs that identify the bug, as lowercase hex joined with `,` (`xen` where the hypervisor is the party,
// nothing when no pc applies). Never times, seeds or vCPU numbers: one bug hit on many runs is one signature,
// different bugs differ. Example: `IPI_MISDIRECTED:icr_window:0x9140,xen`.
//
// Cause tokens, per kind (pcs in brackets):
//   IPI_MISDIRECTED     (one occurrence per wrong receiver of a send; oracles/ipi.ts)
//     on any path:      vector_mismatch the intended vCPU took it, with another vector than the intent's [send]
//                       shorthand       a self / all / all-but-self shorthand reached another vCPU [send]
//                       broadcast       the destination was the broadcast ID [send]
//                       logical         a logical destination matched another vCPU [send]
//                       lowest_priority lowest-priority arbitration chose another vCPU [send]
//     physical (a passthrough path: the copy came through a pCPU's LAPIC):
//                       icr_window      ICR_HI rewritten, or already sent with, between a send's ICR_HI and
//                                       ICR_LO writes [the ICR_LO write, then the interloper's ICR_HI write or xen]
//                       nmi             the same window, opened by the vCPU's own NMI handler: cli does not stop
//                                       an NMI [the ICR_LO write, then the handler's ICR_HI write]
//                       stale_map       destination from a stale vCPU -> pCPU map: the target ran elsewhere [send]
//                       not_running     the target was waiting for a pCPU; the pCPU's current vCPU took it [send]
//                       left_pcpu       the target ran on the destination pCPU when the IPI left, but was
//                                       descheduled before it was taken there [send]
//                       other           none of the above [send]
//     virtual (vlapic, posted, ipiv, avic: the hypervisor routes virtual APIC IDs; never pCPU reasoning):
//                       virtual_dest    the ICR's destination named the vCPU that took it [send]
//                       virtual_other   the ICR's destination did not name the vCPU that took it [send]
//     the hypervisor:   hv_window       its own IPI, ICR_HI rewritten by a handler mid-send [xen]
//   IPI_LOST            dropped         the hypervisor dropped the vector (no handler, no vCPU to reflect it to);
//                                       a one-destination send is lost at once [send]
//                       undelivered     an intended IPI reached no vCPU within the bound [send]
//   IPI_FOREIGN         foreign_domain  delivered into another domain [send]
//   IPI_UNKNOWN_VECTOR  dropped         a vector no one handles reached a pCPU [send, or xen]
//                       reflected       the same, passed on to the running vCPU [send, or xen]
//   HOST_RESET          init            an INIT really reset a pCPU (AMD: host mode, or guest mode with amd_init = "pending") [send]
//                       sipi            a SIPI reached a pCPU in wait-for-SIPI [send]
//   HOST_INIT           vmexit_ignored | held_in_root | domain_crash | core_reset | domain_crash_core_reset
//                                       a guest sent INIT through a
//                                       host LAPIC; the cause is what it did there (hv/init.ts) [send]
//   HOST_NMI            watchdog | dropped_ap | dropped_watchdog | ignored | dom0 | fatal | absorbed_watchdog
//                                       a guest sent an NMI through a host LAPIC; what Xen's do_nmi did (hv/nmi.ts) [send]
//   HOST_APIC_TAMPER    tpr | svr | lvt | eoi  a guest wrote that register of a passed-through host LAPIC
//                                       [the writing instruction]; apic-tamper.ts
//                       held_off        the hypervisor waits for a pCPU whose LAPIC keeps its vector off
//                                       (a raised TPR, a software-disabled LAPIC) [xen]
//   ROGUE_VMFUNC        outside_trampoline  VMFUNC outside the trampoline region [the VMFUNC]
//   REALM_ESCAPE        secret_access   the secret touched from outside the realm [the accessing instruction]
//   REALM_ENTRY         fallthrough | jump | call | return | iret | interrupt | other  control entered the realm
//                                       from outside the trampoline, by that [the transferring instruction or
//                                       xen, then the realm instruction reached]
//                       not_entry_point from the trampoline to an address realm_entries does not list [same]
//   KERNEL_IN_REALM_VIEW interrupt | left_realm | view_switch  code outside realm and trampoline ran in a realm
//                                       view: a handler, code the realm went on to, a view switch [that code]
//   STALE_TRANSLATION   no_flush        an access through a TLB entry older than a completed change [where the
//                                       burst that made it stopped: the interpreter does not keep the access's pc]
//   GUEST_ASSERT        code<N>         magic 3 with code N, unsigned decimal [the magic]
//   DOMAIN_CRASH        triple_fault | ept_violation | vmfunc | init_exit | host_panic | other  [the crashing
//                                       instruction; xen for host_panic]
//   AGENT_FAILED        threw | bad_response | exited | timeout | load  a vm_event agent's code threw (or its
//                                       promise rejected), answered with something that is not a vm_event
//                                       response, ended its thread, took longer than --agent-timeout-ms, or its
//                                       module did not load in the run's worker; the run ends there [none]
//   STALL               all_blocked     no pCPU can make progress: every vCPU blocked or done [none]
//                       hung            threaded: no pCPU completed a burst within the watchdog period [none]
import { cyclesToNs } from '../hw/clock.js';

export const FINDING_KINDS = [
  'IPI_MISDIRECTED', 'IPI_LOST', 'IPI_FOREIGN', 'IPI_UNKNOWN_VECTOR', 'HOST_RESET', 'HOST_INIT', 'HOST_NMI', 'HOST_APIC_TAMPER', 'ROGUE_VMFUNC',
  'REALM_ESCAPE', 'REALM_ENTRY', 'KERNEL_IN_REALM_VIEW', 'STALE_TRANSLATION', 'DOMAIN_CRASH', 'GUEST_ASSERT', 'AGENT_FAILED', 'STALL',
] as const;
export type FindingKind = (typeof FINDING_KINDS)[number];

/** In a pcs list: the hypervisor is the party (no guest pc). Written `xen`. */
export const PC_XEN = -1;
/** Distinct signatures (and causes) kept per kind; occurrences of new ones past it are only counted. */
export const SIGNATURES_PER_KIND = 256;
/** Default of `--max-instances`: occurrences kept per finding kind in `instances`. */
export const MAX_INSTANCES_DEFAULT = 1000;
/** IPI_MISDIRECTED cause tokens in table order (the compare table's columns follow it). */
export const MISDIRECTED_CAUSES = [
  'not_running', 'stale_map', 'left_pcpu', 'icr_window', 'nmi', 'broadcast', 'shorthand', 'logical', 'lowest_priority',
  'vector_mismatch', 'virtual_dest', 'virtual_other', 'other', 'hv_window',
] as const;

export interface FindingFirst {
  time_ns: number;
  pcpu: number;
  domain: string;
  vcpu: number;
  detail: string;
  cause: string;
  signature: string;
}

/** One occurrence of a finding. */
export interface FindingInstance {
  time_ns: number;
  pcpu: number;
  domain: string;
  vcpu: number;
  cause: string;
  /** The signature's pcs: `0x1a8`, or `xen` for the hypervisor. */
  pcs: string[];
}

export interface Finding {
  kind: FindingKind;
  count: number;
  first: FindingFirst;
  /** Occurrences per cause token. */
  causes: Record<string, number>;
  /** Occurrences per signature, at most SIGNATURES_PER_KIND distinct. */
  signatures: Record<string, number>;
  /** Occurrences whose signature was new when `signatures` was full. */
  signatures_dropped: number;
  /** Every occurrence in the order found, up to the cap (`--max-instances`). */
  instances: FindingInstance[];
  /** The cap was hit: `instances_dropped` occurrences are only counted. */
  instances_truncated: boolean;
  instances_dropped: number;
  /** The last events of the pCPU involved before the first occurrence, oldest first. */
  evidence: string[];
  /** How to see it again (filled in by the report: the run's command, and what it reproduces). */
  reproduce?: string;
}

/** One distinct signature of a run: how often it was hit and its first occurrence's detail. */
export interface SignatureEntry {
  signature: string;
  kind: FindingKind;
  cause: string;
  count: number;
  detail: string;
}

export interface SignatureParts {
  kind: FindingKind;
  cause: string;
  /** Guest pcs (unsigned), PC_XEN for the hypervisor. */
  pcs: number[];
}

const CAUSE_RE = /^[a-z0-9_]+$/;
const PC_RE = /^0x[0-9a-f]+$/;
const KINDS: ReadonlySet<string> = new Set(FINDING_KINDS);

function findingsBug(msg: string): never {
  throw new Error(`this is a bug in vcpulab: findings: ${msg}`);
}

/** One pc as a signature writes it: `0x1a8`, or `xen`. */
export function pcText(pc: number): string {
  return pc === PC_XEN ? 'xen' : '0x' + (pc >>> 0).toString(16);
}

/** A pcs list as a signature writes it: `0x1a8,xen`. */
export function pcsText(pcs: readonly number[]): string {
  let s = '';
  for (let i = 0; i < pcs.length; i++) {
    if (i > 0) s += ',';
    s += pcText(pcs[i]);
  }
  return s;
}

/** `kind:cause:pcs` (DESIGN.md §8). */
export function signatureOf(kind: FindingKind, cause: string, pcs: readonly number[]): string {
  if (!CAUSE_RE.test(cause)) findingsBug(`cause token '${cause}' of ${kind} is not [a-z0-9_]+`);
  return `${kind}:${cause}:${pcsText(pcs)}`;
}

/** The parts of a signature, or null when `s` is not one. signatureOf(parts) gives `s` back. */
export function parseSignature(s: string): SignatureParts | null {
  const parts = s.split(':');
  if (parts.length !== 3) return null;
  const [kind, cause, list] = parts;
  if (!KINDS.has(kind) || !CAUSE_RE.test(cause)) return null;
  const pcs: number[] = [];
  if (list !== '') {
    for (const t of list.split(',')) {
      if (t === 'xen') pcs.push(PC_XEN);
      else if (PC_RE.test(t) && t.length <= 10 && (t.length === 3 || t[2] !== '0')) pcs.push(parseInt(t.slice(2), 16));
      else return null;
    }
  }
  return { kind: kind as FindingKind, cause, pcs };
}

interface KindState {
  finding: Finding;
  /** First detail per kept signature (same keys as finding.signatures). */
  details: Map<string, string>;
  /** Distinct causes kept. */
  causes: number;
}

/** The first occurrence that matched Findings.watch (what `--freeze-on` stops the run at). */
export interface WatchedFinding {
  kind: FindingKind;
  cause: string;
  signature: string;
  time_ns: number;
  pcpu: number;
  domain: string;
  vcpu: number;
  detail: string;
}

export class Findings {
  private readonly byKind = new Map<FindingKind, KindState>();
  private watchKind: FindingKind | null = null;
  private watchCause: string | null = null;
  /** The first occurrence matching `watch`, or null (none yet, or nothing watched). */
  watched: WatchedFinding | null = null;

  /** `maxInstances`: occurrences kept per kind in `instances` (`--max-instances`); past it they are only counted. */
  constructor(readonly maxInstances: number = MAX_INSTANCES_DEFAULT) {
    if (!Number.isSafeInteger(maxInstances) || maxInstances < 0) findingsBug(`maxInstances ${maxInstances} is not a count`);
  }

  /**
   * One occurrence: `cause` is a token from the table above, `pcs` the guest pcs that identify the bug
   * (PC_XEN for the hypervisor). `evidence` is called for the first occurrence of the kind only.
   */
  add(kind: FindingKind, cause: string, pcs: readonly number[], timeCycles: number, pcpu: number, domain: string, vcpu: number,
    detail: string, evidence: () => string[]): void {
    const signature = signatureOf(kind, cause, pcs);
    let st = this.byKind.get(kind);
    if (st === undefined) {
      st = {
        finding: {
          kind, count: 0,
          first: { time_ns: round2(cyclesToNs(timeCycles)), pcpu, domain, vcpu, detail, cause, signature },
          causes: {}, signatures: {}, signatures_dropped: 0, instances: [], instances_truncated: false, instances_dropped: 0,
          evidence: evidence(),
        },
        details: new Map(), causes: 0,
      };
      this.byKind.set(kind, st);
    }
    if (kind === this.watchKind && this.watched === null && (this.watchCause === null || cause === this.watchCause)) {
      this.watched = { kind, cause, signature, time_ns: round2(cyclesToNs(timeCycles)), pcpu, domain, vcpu, detail };
    }
    const f = st.finding;
    f.count++;
    if (f.instances.length < this.maxInstances) {
      f.instances.push({ time_ns: round2(cyclesToNs(timeCycles)), pcpu, domain, vcpu, cause, pcs: pcs.map(pcText) });
    } else {
      f.instances_truncated = true;
      f.instances_dropped++;
    }
    if (Object.hasOwn(f.causes, cause)) f.causes[cause]++;
    else if (st.causes < SIGNATURES_PER_KIND) { f.causes[cause] = 1; st.causes++; }
    if (st.details.has(signature)) f.signatures[signature]++;
    else if (st.details.size < SIGNATURES_PER_KIND) {
      st.details.set(signature, detail);
      f.signatures[signature] = 1;
    } else f.signatures_dropped++;
  }

  /** Remember the first occurrence of `kind` (with `cause`, when not null) in `watched`. Observes only. */
  watch(kind: FindingKind, cause: string | null): void {
    this.watchKind = kind;
    this.watchCause = cause;
  }

  count(kind: FindingKind): number { return this.byKind.get(kind)?.finding.count ?? 0; }

  list(): Finding[] {
    return FINDING_KINDS.filter((k) => this.byKind.has(k)).map((k) => (this.byKind.get(k) as KindState).finding);
  }

  /** Every distinct signature of the run (kinds in FINDING_KINDS order, each kind's in first-seen order). */
  signatureList(): SignatureEntry[] {
    const out: SignatureEntry[] = [];
    for (const k of FINDING_KINDS) {
      const st = this.byKind.get(k);
      if (st === undefined) continue;
      for (const [signature, detail] of st.details) {
        const cause = signature.slice(k.length + 1, signature.indexOf(':', k.length + 1));
        out.push({ signature, kind: k, cause, count: st.finding.signatures[signature], detail });
      }
    }
    return out;
  }
}

function round2(x: number): number { return Math.round(x * 100) / 100; }
