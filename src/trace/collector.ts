// Main-thread consumer of the event rings: run report pieces (reports, console), findings from the
// guest-visible oracles, a digest of the machine's events (determinism checks; the oracles' verdicts are
// left out, so the digest is the same with the oracles on or off), and the recent events of each pCPU
// (evidence for findings).
import {
  CRASH_EPT_VIOLATION, CRASH_NAMES, CRASH_TRIPLE_FAULT, EVENT_NAMES, EV_ALTP2M_OP, EV_ASSERT, EV_CONSOLE, EV_DOMAIN_END, EV_EXIT, EV_INVEPT,
  EV_MEM_EVENT, EV_REALM_ESCAPE, EV_REPORT, EV_ROGUE_VMFUNC, EV_STALE, EV_VE, EV_VMFUNC, EV_SCHED_IN, EV_SCHED_OUT, EV_EXCEPTION, EV_MARKER,
  EV_INTENT, EV_IPI_SEND, EV_IPI_DELIVER, EV_IPI_COALESCED, EV_PHYS_IRQ, EV_HOST_RESET, EV_ICR_WINDOW, EV_HV_IPI_MISDIRECTED, EV_SINGLESTEP, EV_HOST_APIC_TAMPER, EV_HV_HELD_OFF,
  CRASH_BAD_VMFUNC, CRASH_HOST_PANIC, CRASH_INIT_EXIT, EV_HOST_INIT, EV_NMI, EV_VNMI, EV_HOST_PANIC, HINIT_NAMES, HINIT_HELD, HINIT_IGNORED,
  HINIT_DOMAIN_CRASH, HINIT_CRASH_RESET, NMI_NAMES, NMI_DOM0, NMI_DROPPED_AP, NMI_DROPPED_WATCHDOG, NMI_FATAL, NMI_IGNORED, ICRW_NMI, ICRW_REUSED, ipiTagSender, ipiTagSeq, EV_REALM_ENTRY, EV_KERNEL_IN_REALM_VIEW, eventIsVerdict,
} from './events.js';
import { ALTP2M_OP_NAMES } from '../hv/hvm-op.js';
import { hostGpaToHost } from '../hv/altp2m.js';
import { disassemble } from '../isa/disasm.js';
import { isWideOp } from '../isa/opcodes.js';
import { DM_CRASH_A, DM_CRASH_B, DM_CRASH_C, DM_CRASH_REASON, DS_CRASHED } from '../../shared/domain.js';
import { EXIT_NAMES } from '../isa/interp.js';
import { Findings, MAX_INSTANCES_DEFAULT, PC_XEN } from '../oracles/findings.js';
import { IpiOracle, type IpiMetrics } from '../oracles/ipi.js';
import { ViewOracle, viewName } from '../oracles/views.js';
import { apicRegName, apicTamperFinding } from '../oracles/apic-tamper.js';
import { VCPU_STRIDE_WORDS, VC_DOMAIN, VC_ID } from '../../shared/vcpu.js';
import { PC_CLOCK_F64 } from '../../shared/pcpu.js';
import { cyclesToNs } from '../hw/clock.js';
import { ringDrain } from './ring.js';
import type { Machine } from '../machine.js';

export const RECENT_EVENTS = 20;
/**
 * `magic 1` reports kept in the report; past it they are only counted (reports_dropped). A guest that reports
 * in a loop must not make the run's memory grow with its length.
 */
export const REPORTS_MAX = 10_000;
/** Console characters kept per domain (the first ones); past it they are only counted (console_dropped). */
export const CONSOLE_MAX_CHARS = 64 * 1024;
/** Words kept per recent event: kind, dom, vcpu, a, b, c, pc. */
const RECENT_WORDS = 7;

export interface ReportEntry { domain: string; vcpu: number; key: number; value: number; seq: number }

/** Optional extra consumer (trace writer). `pc` is the record's (shared/ring.ts REC_PC). */
export interface EventListener {
  onEvent(pcpu: number, time: number, kind: number, dom: number, vcpu: number, a: number, b: number, c: number, pc: number): void;
}

export class Collector {
  readonly reports: ReportEntry[] = [];
  /** `magic 1` reports past REPORTS_MAX: counted, not kept. */
  reportsDropped = 0;
  readonly console: string[];
  /** Per domain: console characters past CONSOLE_MAX_CHARS, counted, not kept. */
  readonly consoleDropped: number[];
  readonly findings: Findings;
  private readonly views = new ViewOracle();
  /** Evidence shows the guest instruction at each event's pc (read through the domain's host p2m). */
  readonly code: CodeReader = (dom, pc) => {
    if ((pc & 7) !== 0) return null;
    const h = hostGpaToHost(this.m, dom, pc), h2 = hostGpaToHost(this.m, dom, pc + 4);
    if (h < 0 || h2 < 0) return null;
    const w0 = Atomics.load(this.m.mem32, h >> 2), w1 = Atomics.load(this.m.mem32, h2 >> 2);
    if (!isWideOp(w0 & 0x7f)) return disassemble(w0, w1);
    // A wide instruction: its tail slot may lie on the next page.
    const t0 = hostGpaToHost(this.m, dom, pc + 8), t1 = hostGpaToHost(this.m, dom, pc + 12);
    const tail: [number, number] | undefined = t0 < 0 || t1 < 0 ? undefined : [Atomics.load(this.m.mem32, t0 >> 2), Atomics.load(this.m.mem32, t1 >> 2)];
    return disassemble(w0, w1, undefined, tail);
  };
  readonly events: number[];
  private readonly digests: Uint32Array;
  private readonly recentT: Float64Array;
  private readonly recentW: Int32Array;
  private readonly recentN: Int32Array;
  listener: EventListener | undefined;
  readonly ipi: IpiOracle;
  private ipiMetrics: IpiMetrics | undefined;
  readonly sink = (pcpu: number, time: number, kind: number, dom: number, vcpu: number, a: number, b: number, c: number, pc: number): void =>
    this.onEvent(pcpu, time, kind, dom, vcpu, a, b, c, pc);

  /** `maxInstances`: occurrences kept per finding kind (`--max-instances`). */
  constructor(readonly m: Machine, readonly domainNames: string[], ipiLostBoundUs?: number, maxInstances = MAX_INSTANCES_DEFAULT) {
    this.findings = new Findings(maxInstances);
    const vc32 = m.vc32;
    this.ipi = new IpiOracle({
      findings: this.findings, names: domainNames, npcpus: m.npcpus, lostBoundUs: ipiLostBoundUs,
      who: (g) => ({ dom: vc32[g * VCPU_STRIDE_WORDS + VC_DOMAIN], vcpu: vc32[g * VCPU_STRIDE_WORDS + VC_ID] }),
      fmt: (e) => formatEvent(this.domainNames, e.pcpu, e.time, e.kind, e.dom, e.vcpu, e.a, e.b, e.c, this.code, e.pc),
    });
    const n = m.npcpus;
    this.console = domainNames.map(() => '');
    this.consoleDropped = domainNames.map(() => 0);
    this.events = new Array<number>(n).fill(0);
    this.digests = new Uint32Array(n).fill(0x811c9dc5);
    this.recentT = new Float64Array(n * RECENT_EVENTS);
    this.recentW = new Int32Array(n * RECENT_EVENTS * RECENT_WORDS);
    this.recentN = new Int32Array(n);
  }

  drainAll(): number {
    const m = this.m;
    let n = 0;
    for (let p = 0; p < m.npcpus; p++) {
      n += ringDrain(m.ring32, m.ringF64, m.ringBase(p), p, this.sink);
      this.drained(p);
    }
    this.ipi.advance();
    return n;
  }

  drainOne(p: number): void {
    ringDrain(this.m.ring32, this.m.ringF64, this.m.ringBase(p), p, this.sink);
    this.drained(p);
    this.ipi.advance();
  }

  /**
   * When one thread drives the machine, pCPU p's published clock, read after its ring was drained, bounds
   * every event it will still emit (it stamps events with its own clock, which only grows, and publishes
   * a value it had): the IPI oracle may judge up to there even while p idles. With threads, an event may
   * still sit unpublished in the ring, so only the events themselves say how far a pCPU is.
   */
  private drained(p: number): void {
    if (this.m.exclusive) this.ipi.progress(p, this.m.pcF64[(this.m.pcpuBase(p) + PC_CLOCK_F64) >> 1]);
  }

  onEvent(pcpu: number, time: number, kind: number, dom: number, vcpu: number, a: number, b: number, c: number, pc: number): void {
    this.events[pcpu]++;
    if (!eventIsVerdict(kind)) {
      let h = this.digests[pcpu];
      h = Math.imul(h ^ kind, 0x01000193); h = Math.imul(h ^ dom, 0x01000193); h = Math.imul(h ^ vcpu, 0x01000193);
      h = Math.imul(h ^ a, 0x01000193); h = Math.imul(h ^ b, 0x01000193); h = Math.imul(h ^ c, 0x01000193);
      h = Math.imul(h ^ pc, 0x01000193);
      h = Math.imul(h ^ (time % 4294967296), 0x01000193);
      this.digests[pcpu] = h >>> 0;
    }
    const slot = this.recentN[pcpu]++ % RECENT_EVENTS;
    const ri = pcpu * RECENT_EVENTS + slot;
    this.recentT[ri] = time;
    const w = this.recentW, wi = ri * RECENT_WORDS;
    w[wi] = kind; w[wi + 1] = dom; w[wi + 2] = vcpu; w[wi + 3] = a; w[wi + 4] = b; w[wi + 5] = c; w[wi + 6] = pc;
    switch (kind) {
      case EV_REPORT:
        if (this.reports.length < REPORTS_MAX) this.reports.push({ domain: this.domainNames[dom], vcpu, key: a, value: b, seq: c });
        else this.reportsDropped++;
        break;
      case EV_CONSOLE:
        if (this.console[dom].length < CONSOLE_MAX_CHARS) this.console[dom] += String.fromCharCode(a & 0xff);
        else this.consoleDropped[dom]++;
        break;
      case EV_ASSERT:
        this.findings.add('GUEST_ASSERT', `code${a >>> 0}`, [b], time, pcpu, this.domainNames[dom], vcpu,
          `magic 3 with code ${a} at pc 0x${hex(b)}`, () => this.recent(pcpu));
        break;
      case EV_DOMAIN_END:
        if (a === DS_CRASHED) {
          this.findings.add('DOMAIN_CRASH', CRASH_CAUSES[b] ?? 'other', [crashPc(this.m, dom, pc)], time, pcpu, this.domainNames[dom], vcpu,
            `${CRASH_NAMES[b] ?? `reason ${b}`}: ${crashDetail(this.m, dom)}`, () => this.recent(pcpu));
        }
        break;
      case EV_HOST_INIT: this.hostInit(time, pcpu, a, b, c, pc); break;
      case EV_NMI: this.hostNmi(time, pcpu, a, b, c, pc); break;
      case EV_HOST_APIC_TAMPER: case EV_HV_HELD_OFF:
        apicTamperFinding(this.findings, this.domainNames, pcpu, time, kind, dom, vcpu, a, b, c, pc, () => this.recent(pcpu));
        break;
      case EV_STALE: case EV_ROGUE_VMFUNC: case EV_REALM_ESCAPE: case EV_REALM_ENTRY: case EV_KERNEL_IN_REALM_VIEW:
        this.views.onEvent(this.findings, this.domainNames, pcpu, time, kind, dom, vcpu, a, b, c, pc, () => this.recent(pcpu));
        break;
      default: break;
    }
    this.ipi.onEvent(pcpu, time, kind, dom, vcpu, a, b, c, pc); // it keeps only the kinds it judges, judging as they stream
    if (this.listener !== undefined) this.listener.onEvent(pcpu, time, kind, dom, vcpu, a, b, c, pc);
  }

  /** Judge what the oracles still hold, once; returns their metrics (their warnings: `warnings()`). */
  finishOracles(endTime: number): IpiMetrics {
    if (this.ipiMetrics === undefined) this.ipiMetrics = this.ipi.finish(endTime);
    return this.ipiMetrics;
  }

  /** What the oracles want the reader of the report to know about the run's length (after finishOracles). */
  warnings(): string[] {
    return [...this.ipi.warnings];
  }

  /** One digest over all rings (each ring's stream is ordered; combining per ring keeps drain timing out). */
  digest(): string {
    let h = 0x811c9dc5;
    for (const d of this.digests) h = Math.imul(h ^ d, 0x01000193) >>> 0;
    return h.toString(16).padStart(8, '0');
  }

  /** Recent events of one pCPU, oldest first, as readable lines. */
  /** The sender a source tag names, as `domain/vN`, with its domain and vCPU id (undefined: the hypervisor). */
  private tagSender(tag: number): { dom: string; vcpu: number } | undefined {
    const g = ipiTagSender(tag);
    if (g < 0 || g >= this.m.nvcpus) return undefined;
    return { dom: this.domainNames[this.m.vc32[g * VCPU_STRIDE_WORDS + VC_DOMAIN]], vcpu: this.m.vc32[g * VCPU_STRIDE_WORDS + VC_ID] };
  }

  /** HOST_INIT: a guest made a host LAPIC deliver INIT to a pCPU; the cause is what the INIT really did there. */
  private hostInit(time: number, pcpu: number, d: number, runDom: number, tag: number, pc: number): void {
    const s = this.tagSender(tag);
    if (s === undefined) return;
    const running = runDom >= 0 ? `domain ${this.domainNames[runDom]}` : 'no domain';
    const what = d === HINIT_IGNORED ? `a VM exit (INIT, reason 3) out of ${running}; Xen logs "INIT received - ignoring" and re-enters`
      : d === HINIT_HELD ? 'nothing yet: INIT is blocked in VMX root operation and stays pending; the next VM entry on that pCPU exits on it'
        : d === HINIT_DOMAIN_CRASH ? `a VM exit Xen has no case for ("Unexpected vmexit"): ${running} crashed`
          : d === HINIT_CRASH_RESET ? `a #VMEXIT Xen has no case for ("Unexpected vmexit"): ${running} crashed; the INIT stayed pending and reset the core when Xen set GIF again, behind its back`
            : 'a reset of the core behind Xen\'s back: it waits for a SIPI, and Xen\'s state on it is gone';
    this.findings.add('HOST_INIT', HINIT_NAMES[d] ?? 'other', [pc], time, pcpu, s.dom, s.vcpu,
      `${s.dom}/v${s.vcpu} sent INIT through the host LAPIC to pCPU ${pcpu}; on this vendor that is ${what}`, () => this.recent(pcpu));
  }

  /** HOST_NMI: a guest made a host LAPIC deliver an NMI to a pCPU; the cause is what Xen's handler did with it. */
  private hostNmi(time: number, pcpu: number, d: number, merged: number, tag: number, pc: number): void {
    const s = this.tagSender(tag);
    if (s === undefined) return;
    const what = merged !== 0 ? 'it merged with the watchdog\'s own NMI (one latch): the handler saw the watchdog\'s'
      : d === NMI_DROPPED_AP ? 'only the BSP looks at an NMI of unknown reason: dropped'
        : d === NMI_DROPPED_WATCHDOG ? 'with the watchdog on (not forced), an NMI of unknown reason is not reported'
          : d === NMI_IGNORED ? 'nmi=ignore: dropped'
            : d === NMI_DOM0 ? 'nmi=dom0: passed to a PV hardware domain\'s vCPU 0 (an HVM or PVH one gets nothing); no guest here sees it'
              : d === NMI_FATAL ? 'nmi=fatal: "NMI received for unknown reason", and the hypervisor panicked'
                : 'taken by the crash shootdown';
    this.findings.add('HOST_NMI', merged !== 0 ? 'absorbed_watchdog' : NMI_NAMES[d] ?? 'other', [pc], time, pcpu, s.dom, s.vcpu,
      `${s.dom}/v${s.vcpu} sent an NMI through the host LAPIC to pCPU ${pcpu}; Xen's do_nmi: ${what}`, () => this.recent(pcpu));
  }

  recent(pcpu: number): string[] {
    const n = this.recentN[pcpu];
    const out: string[] = [];
    for (let i = Math.max(0, n - RECENT_EVENTS); i < n; i++) {
      const ri = pcpu * RECENT_EVENTS + (i % RECENT_EVENTS);
      const w = this.recentW.subarray(ri * RECENT_WORDS, ri * RECENT_WORDS + RECENT_WORDS);
      out.push(formatEvent(this.domainNames, pcpu, this.recentT[ri], w[0], w[1], w[2], w[3], w[4], w[5], this.code, w[6]));
    }
    return out;
  }
}

const PERM_NAMES = ['-', 'r', 'w', 'rw', 'x', 'rx', 'wx', 'rwx'];

export function hex(v: number): string { return (v >>> 0).toString(16).padStart(8, '0'); }

/** Disassembly of the guest instruction at (domain, pc), or null when it cannot be read. */
export type CodeReader = (dom: number, pc: number) => string | null;

const DM_NAMES = ['fixed', 'lowest', 'smi', 'dm3', 'nmi', 'init', 'sipi', 'extint'];
const SHORTHANDS = ['', ' self', ' all', ' all-but-self'];
const RUNSTATES = ['runnable', 'running', 'blocked', 'done', 'limit', 'lost', 'wait-for-SIPI'];

/** An ICR low word, decoded: vector, delivery mode, destination mode, shorthand. */
export function icrText(lo: number): string {
  const mode = DM_NAMES[(lo >>> 8) & 7];
  return `ICR_LO=0x${hex(lo)} (vector 0x${(lo & 0xff).toString(16)} ${mode}${(lo & 0x800) !== 0 ? ' logical' : ''}${SHORTHANDS[(lo >>> 18) & 3]})`;
}

/** The IPI a source tag names: "v3#12" (global vCPU 3's 12th send), or "xen". */
export function tagText(tag: number): string {
  return tag === 0 ? 'xen' : `v${ipiTagSender(tag)}#${ipiTagSeq(tag)}`;
}

/**
 * One event as a readable line: time, pCPU, who ran there, the event, its fields decoded (ICR contents,
 * views, access), and with `code`, the guest instruction at the event's pc. `pc` is the record's (absent in
 * trace files): IPI sends and ICR windows show it.
 */
export function formatEvent(names: string[], pcpu: number, time: number, kind: number, dom: number, vcpu: number, a: number, b: number, c: number,
  code?: CodeReader, pc = -1): string {
  const who = dom >= 0 ? `${names[dom]}/v${vcpu}` : 'xen';
  const t = cyclesToNs(time).toFixed(1).padStart(12);
  const k = EVENT_NAMES[kind] ?? `event${kind}`;
  const at = (pc: number): string => {
    const text = code !== undefined && dom >= 0 ? code(dom, pc) : null;
    return `pc=0x${hex(pc)}${text !== null ? ` [${text}]` : ''}`;
  };
  let what: string;
  switch (kind) {
    case EV_EXIT: what = `${EXIT_NAMES[a] ?? a} ${at(b)} qual=0x${hex(c)}`; break;
    case EV_REPORT: what = `key=${a} value=${b}`; break;
    case EV_CONSOLE: what = JSON.stringify(String.fromCharCode(a & 0xff)); break;
    case EV_SCHED_IN: what = `loaded at ${at(b)}`; break;
    case EV_SCHED_OUT: what = `descheduled ${RUNSTATES[a] ?? a} at pc=0x${hex(b)}${c !== pcpu ? `, queued on pCPU ${c}` : ''}`; break;
    case EV_EXCEPTION: what = `vector ${a} ${at(b)}`; break;
    case EV_ASSERT: what = `code ${a} ${at(b)}`; break;
    case EV_MARKER: what = `marker ${a} ${at(b)}`; break;
    case EV_INTENT: what = `next IPI meant for vCPU ${a}, vector 0x${(b & 0xff).toString(16)}`; break;
    case EV_IPI_SEND:
      what = `${tagText(a)} ${icrText(b)} ${(c >>> 0) > 0xffffff ? `ICR_HI=0x${hex(c)} (destination ${c >>> 24})` : `destination ${c}`}${pc >= 0 ? ` ${at(pc)}` : ''}`;
      break;
    case EV_IPI_DELIVER: what = `${tagText(a)} vector 0x${(b & 0xff).toString(16)} entered the handler (accepted on pCPU ${c})`; break;
    case EV_IPI_COALESCED: what = `${tagText(a)} vector 0x${(b & 0xff).toString(16)} already pending: merged`; break;
    case EV_PHYS_IRQ: what = `vector 0x${(a & 0xff).toString(16)} ${['handled by xen', 'no handler (dropped)', 'reflected to the running vCPU'][b] ?? b} from ${tagText(c)}`; break;
    case EV_HOST_RESET: what = `${DM_NAMES[b & 7] ?? b} reached pCPU ${a} from ${tagText(c)}`; break;
    case EV_ICR_WINDOW:
      what = `${tagText(a)} sent with an ICR_HI ${(b & ICRW_REUSED) !== 0 ? 'a nested send had already used' : 'someone else wrote'}${(b & ICRW_NMI) !== 0 ? ' (in an NMI handler)' : ''} ` +
        `(last writer ${c === 0 ? 'xen' : `v${c - 1}${pc >= 0 ? `, ICR_HI written at pc=0x${hex(pc)}` : ''}`})`;
      break;
    case EV_HOST_INIT: what = `INIT from ${tagText(c)}: ${HINIT_NAMES[a] ?? a}${b >= 0 ? ` (domain ${names[b] ?? b} ran here)` : ''}`; break;
    case EV_NMI: what = `NMI from ${c === 0 ? 'xen or the watchdog' : tagText(c)}: ${NMI_NAMES[a] ?? a}${b !== 0 ? ' (merged with the watchdog\'s)' : ''}`; break;
    case EV_VNMI: what = `${a === 1 ? 'guest watchdog' : 'NMI IPI'} NMI into the guest at ${at(b)}`; break;
    case EV_HOST_PANIC: what = `the hypervisor panicked on pCPU ${b} (NMI of unknown reason, nmi=fatal)`; break;
    case EV_HOST_APIC_TAMPER: what = `wrote 0x${hex(b)} to the host LAPIC's ${apicRegName(a)}${c === 1 ? ' (WRMSR)' : ''}`; break;
    case EV_HV_HELD_OFF: what = `xen waits for pCPU ${a} to take vector 0x${(b & 0xff).toString(16)}: ${c < 0 ? 'its LAPIC is software-disabled' : `its TPR 0x${hex(c)} holds it off`}`; break;
    case EV_HV_IPI_MISDIRECTED: what = `xen's vector 0x${(b & 0xff).toString(16)} for pCPU ${a} left for pCPU ${c}`; break;
    case EV_VMFUNC: what = `${viewName(a)} -> ${viewName(c)} ${at(b)}`; break;
    case EV_ROGUE_VMFUNC: what = `to ${viewName(a)} from ${viewName(c)} ${at(b)}`; break;
    case EV_VE: case EV_MEM_EVENT: what = `gpa=0x${hex(a)} access=${PERM_NAMES[b] ?? b} ${viewName(c)}`; break;
    case EV_STALE: what = `gpa=0x${hex(a)} access=${PERM_NAMES[b & 0xff] ?? b} ${viewName((b >>> 8) & 0xffff)} gen=${c}`; break;
    case EV_REALM_ESCAPE: what = `gpa=0x${hex(a)} ${at(b)} ${viewName(c)}`; break;
    case EV_REALM_ENTRY: what = `to ${at(pc)} from ${a === -1 ? 'an unknown place' : at(a)} ${viewName((b >>> 16) & 0xffff)}`; break;
    case EV_KERNEL_IN_REALM_VIEW: what = `${at(a)} ${viewName((b >>> 16) & 0xffff)}`; break;
    case EV_INVEPT: what = a === -2 ? `all-context (${b} tables marked)` : `single-context ${viewName(a)}`; break;
    case EV_ALTP2M_OP: what = `${ALTP2M_OP_NAMES[a] ?? a} -> ${b}${c !== 0 ? ` (p2m generation ${c})` : ''}`; break;
    case EV_SINGLESTEP: what = at(a); break;
    default: what = `a=${a} b=0x${hex(b)} c=${c}`;
  }
  return `${t} ns  p${pcpu}  ${who}  ${k} ${what}`;
}

/** DOMAIN_CRASH cause tokens by CRASH_* reason (oracles/findings.ts). */
const CRASH_CAUSES: Readonly<Record<number, string>> = {
  [CRASH_TRIPLE_FAULT]: 'triple_fault', [CRASH_EPT_VIOLATION]: 'ept_violation', [CRASH_BAD_VMFUNC]: 'vmfunc',
  [CRASH_INIT_EXIT]: 'init_exit', [CRASH_HOST_PANIC]: 'host_panic',
};

/** The crashing instruction's pc (DM_CRASH_*, see crashDetail), else the record's; PC_XEN when neither. */
function crashPc(m: Machine, dom: number, recordPc: number): number {
  const db = m.domainBase(dom);
  const reason = m.dm32[db + DM_CRASH_REASON];
  if (reason === CRASH_TRIPLE_FAULT) return m.dm32[db + DM_CRASH_B];
  if (reason === CRASH_EPT_VIOLATION) return m.dm32[db + DM_CRASH_C];
  return recordPc >= 0 ? recordPc : PC_XEN;
}

function crashDetail(m: Machine, dom: number): string {
  const db = m.domainBase(dom);
  // DM_CRASH_* are written right after the state change, before the event is published.
  const a = m.dm32[db + DM_CRASH_A], b = m.dm32[db + DM_CRASH_B], c = m.dm32[db + DM_CRASH_C];
  const reason = m.dm32[db + DM_CRASH_REASON];
  if (reason === CRASH_TRIPLE_FAULT) return `vector ${a} at pc 0x${hex(b)}`;
  if (reason === CRASH_EPT_VIOLATION) return `gpa 0x${hex(a)} access ${['', 'r', 'w', 'rw', 'x', 'rx', 'wx', 'rwx'][b] ?? b} at pc 0x${hex(c)}`;
  return `a=${a} b=${b} c=${c}`;
}
