// The findings table: one entry per kind with a count and the first occurrence plus its evidence.
// Oracles add to it; nothing here changes the run (DESIGN.md §6).
import { cyclesToNs } from '../engine/clock.js';

export const FINDING_KINDS = [
  'IPI_MISDIRECTED', 'IPI_LOST', 'IPI_FOREIGN', 'IPI_UNKNOWN_VECTOR', 'HOST_RESET', 'ROGUE_VMFUNC',
  'REALM_ESCAPE', 'STALE_TRANSLATION', 'DOMAIN_CRASH', 'GUEST_ASSERT', 'STALL',
] as const;
export type FindingKind = (typeof FINDING_KINDS)[number];

export interface FindingFirst {
  time_ns: number;
  pcpu: number;
  domain: string;
  vcpu: number;
  detail: string;
}

export interface Finding {
  kind: FindingKind;
  count: number;
  first: FindingFirst;
  /** The last events of the pCPU involved before the first occurrence, oldest first. */
  evidence: string[];
  /** How to see it again (filled in by the report: the run's command, and what it reproduces). */
  reproduce?: string;
}

export class Findings {
  private readonly byKind = new Map<FindingKind, Finding>();

  add(kind: FindingKind, timeCycles: number, pcpu: number, domain: string, vcpu: number, detail: string, evidence: () => string[]): void {
    const f = this.byKind.get(kind);
    if (f !== undefined) { f.count++; return; }
    this.byKind.set(kind, { kind, count: 1, first: { time_ns: round2(cyclesToNs(timeCycles)), pcpu, domain, vcpu, detail }, evidence: evidence() });
  }

  count(kind: FindingKind): number { return this.byKind.get(kind)?.count ?? 0; }

  list(): Finding[] {
    return FINDING_KINDS.filter((k) => this.byKind.has(k)).map((k) => this.byKind.get(k) as Finding);
  }
}

function round2(x: number): number { return Math.round(x * 100) / 100; }
