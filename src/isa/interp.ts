// The guest interpreter: executes instructions of the vCPU loaded on one pCPU until a VM exit, a
// pending physical interrupt, the burst budget, or (serial engine) a shared-memory access.
//
// Shape (../shared/STYLE.md §7): one function, locals for pc and flags, one switch; exceptions go
// through small out-of-line functions; nothing here allocates or closes over anything. Every case
// either `continue`s the loop (the common path) or leaves the switch with `fault` set or the loop
// with `exit` set.
//
// Semantics follow ../shared/ISA.md. Where it is silent we follow x86 and say so here:
//  - logic ops (and/or/xor/test/not) clear CF and OF; shifts set CF to the last bit shifted out
//    (count taken mod 32, count 0 leaves flags alone, as x86); imul sets CF=OF on signed overflow;
//    inc/dec leave CF unchanged; neg sets CF when the operand was non-zero.
//  - a fault (#UD, #GP) pushes the address of the faulting instruction; `int n` pushes the next one.
//  - a jump to an address that is not 8-aligned raises #GP at the first fetch.
//
// The inline oracles (DESIGN.md §6) only observe: they read what the interpreter already has and report
// through CpuHooks, and a core with `oracles` off runs the same instructions with the same cycles, the
// same translations and the same burst ends. The realm oracles look where the code fetch changes page
// (realmFetch) and where a secret frame is accessed from outside the realm (secretJudge, through the
// probe copy of the TLB's permissions, CoreTlb.probe).
import { Op, Reg, REG_ZERO } from './opcodes.js';
import { FL_CF, FL_FIXED, FL_IF, FL_OF, FL_SF, FL_ZF } from '../../shared/vcpu.js';
import { ATTR_SUPPRESS_VE, P2E_ATTR, P2E_MFN, P2E_STAMP, P2MT_INVALID, P2MT_MMIO_DIRECT, P2MT_RAM_RW, p2mAttrAccess, p2mAttrType } from '../../shared/p2m.js';
import { INVALID_ALTP2M } from '../../shared/vcpu.js';
import { AD_VIEWS, AD_VISIBLE, VIEW_WORDS, VW_DEFAULT_ACCESS } from '../../shared/altp2m.js';
import { eptAccessPerms, p2mEntryOffset, Perm, PERM_R, PERM_W, PERM_X } from '../hw/ept.js';
import { Tlb, TLB_ENTRIES, TlbSize } from '../hw/tlb.js';
import {
  KIRV_INTERRUPT, KIRV_LEFT_REALM, KIRV_VIEW_SWITCH, XFER_CALL, XFER_FALLTHROUGH, XFER_INTERRUPT, XFER_IRET, XFER_JUMP,
  XFER_OTHER, XFER_RETURN, REALM_ENTRY_NOT_LISTED,
} from '../trace/events.js';
import * as Mo from '../hw/mem-order.js';

// ---- exit reasons (also the index into the pCPU's exit counters) ----
/** Not an exit: the burst ended (budget, or a shared access under the serial engine). */
export const EXIT_NONE = 0;
export const EXIT_HLT = 1;
export const EXIT_VMCALL = 2;
export const EXIT_MAGIC = 3;
export const EXIT_CPUID = 4;
export const EXIT_RDMSR = 5;
export const EXIT_WRMSR = 6;
export const EXIT_IO = 7;
export const EXIT_EPT_VIOLATION = 8;
export const EXIT_TRIPLE_FAULT = 9;
/** A physical interrupt (or control kick) is pending on this pCPU. */
export const EXIT_EXTINT = 10;
export const EXIT_VMFUNC = 11;
/** Time slice over (raised by the hypervisor's scheduler, not by an instruction). */
export const EXIT_PREEMPT = 12;
/** An EPT violation on an APIC-access page: the vLAPIC emulates the access (counted apart). */
export const EXIT_APIC_ACCESS = 13;
/** Monitor trap flag: the exit after a single-stepped instruction (vm_event single-step). Counted by the pCPU. */
export const EXIT_MTF = 14;
/** INIT in VMX non-root (basic reason 3) or an intercepted INIT on SVM (apic.md §9). */
export const EXIT_INIT = 15;
/** A physical NMI while the guest ran (Xen sets NMI exiting; reason 0 with an NMI). */
export const EXIT_NMI = 16;
/** NMI-window exiting: the guest's IRET ended virtual-NMI blocking with another NMI pending. */
export const EXIT_NMI_WINDOW = 17;
/** Interrupt-window exiting: the guest set IF with a virtual interrupt waiting (after STI's one-instruction shadow). */
export const EXIT_IRQ_WINDOW = 18;
export const EXIT_COUNT = 19;
export const EXIT_NAMES = ['none', 'hlt', 'vmcall', 'magic', 'cpuid', 'rdmsr', 'wrmsr', 'io', 'ept_violation',
  'triple_fault', 'external_interrupt', 'vmfunc', 'preempt', 'apic_access', 'monitor_trap', 'init', 'nmi', 'nmi_window', 'irq_window'] as const;

// x86 exception vectors used here
export const VEC_NMI = 2;
export const VEC_UD = 6;
export const VEC_DF = 8;
export const VEC_GP = 13;
export const VEC_VE = 20;

/** sharedLeft for engines that never need a choice point inside a burst. */
export const SHARED_UNLIMITED = 0x3fffffff;

/** Why an EPT violation happened (stored in CpuCore.exitAccess). */
export const ACC_READ = PERM_R, ACC_WRITE = PERM_W, ACC_EXEC = PERM_X;

/**
 * The physical local APIC of the pCPU, as guest code reaches it when a design passes it through
 * (xAPIC page mapped into the guest's p2m, or x2APIC MSRs not intercepted). Accesses go straight to the
 * hardware register: no VM exit. Implemented by the hypervisor's pCPU object (src/hv/ipi.ts).
 */
export interface LapicPort {
  /** 32-bit read of the xAPIC register at `offset` (0..0xFF0). */
  apicRead(offset: number): number;
  /**
   * 32-bit write of the xAPIC register at `offset`; a write to ICR_LO sends. Returns false when the
   * hardware cannot complete it and the access must exit to the hypervisor (IPIv/AVIC non-unicast sends).
   */
  apicWrite(offset: number, value: number): boolean;
  /** x2APIC MSR read; returns false when the MSR is #GP. */
  x2apicRdmsr(msr: number): boolean;
  /** x2APIC MSR write: PORT_OK, PORT_GP, or PORT_EXIT (take a WRMSR exit instead). */
  x2apicWrmsr(msr: number, lo: number, hi: number): number;
}

export const PORT_OK = 0, PORT_GP = 1, PORT_EXIT = 2;

/** Page types xlateSlow reports in CpuCore.mmioKind when an access is not to RAM. */
export const MMIO_NONE = 0;
/** pc bits that must match the code page key: the page number, and the low 3 (an unaligned pc never matches). */
const CODE_KEY_MASK = ~0xff8;
/** See CpuCore.deliveryHook. */
export interface DeliveryHook {
  /** Make gpa's page present in the current view if it can be (lazy fill). True: retry the access. */
  fillForDelivery(gpa: number): boolean;
}

/** The pCPU's own xAPIC page, passed through: handled inline through CpuCore.lapic. */
export const MMIO_LAPIC_DIRECT = 1;

/**
 * What the core tells the pCPU as it runs (STYLE.md §12: checkers observe through hooks). Called from the
 * interpreter's out-of-line paths only, never per instruction; the pCPU records events, nothing here may
 * change the core's state. The oracle hooks are called only when CpuCore.oracles is on.
 */
export interface CpuHooks {
  /** A VMFUNC switched the view without an exit, `from` -> `to`, at `pc` (c.clock is up to date). */
  vmfuncDone(from: number, to: number, pc: number): void;
  /** REALM_ESCAPE: a data access (`perm`) to the secret at `gpa` by the instruction at `pc`, outside the realm. */
  secretAccess(gpa: number, perm: number, pc: number): void;
  /**
   * REALM_ENTRY: control reached `target` in the realm from `src` (how: XFER_*, with REALM_ENTRY_NOT_LISTED),
   * the previous instruction having run on gfn `prevGfn` (-1 unknown). c.clock is this instruction's time.
   */
  realmEntry(src: number, how: number, prevGfn: number, target: number): void;
  /** KERNEL_IN_REALM_VIEW: code at `pc`, outside realm and trampoline, runs in a realm view (why: KIRV_*). */
  kernelInRealmView(pc: number, why: number, from: number): void;
}

/** A TLB with the realm oracle's copy of its permissions. */
export class CoreTlb extends Tlb {
  /**
   * `perm`, except 0 for translations to a secret frame. While code outside the realm runs, the interpreter
   * checks permissions here instead of in `perm`, so every access to the secret misses the fast path and is
   * judged in xlateSlow, which then uses the translation exactly as `perm` allows: the TLB's contents (what
   * the hardware caches) are the same with or without the oracle. Kept in step with `perm` by every writer
   * while CpuCore.secretProbe is on.
   */
  readonly probe = new Int32Array(TLB_ENTRIES);
}

/**
 * The pCPU's "hardware" state for the loaded vCPU: registers, flags, TLB and the memory it sees.
 * pCPU-private. The hypervisor loads it from the vCPU block at context switch and saves it back.
 */
export class CpuCore {
  /** eax..r15, then slots 16..31 that always read 0 (REG_ZERO and any unused b encoding). */
  readonly R = new Int32Array(32);
  pc = 0;
  /** EFLAGS image (FL_* bits). */
  flags = FL_FIXED;
  idtr = -1;
  /** VMFUNC enabled for this vCPU (Xen: only through vcpu_enable_notify). */
  vmfuncEnabled = false;
  /** One TLB per EPT table: views 0..511, then the host p2m at TLB_HOST. Created on first use. */
  private readonly tlbs: (CoreTlb | undefined)[] = new Array(TLB_HOST + 1);
  private readonly tlbsUsed: CoreTlb[] = [];
  /** The TLB of the table in use. */
  tlb: CoreTlb;
  /** Root of the p2m (view) this vCPU uses now, a word offset into p2m. */
  p2mRoot = 0;
  /** The view in use (the VMCS EPTP index), or INVALID_ALTP2M for the host p2m. */
  view = INVALID_ALTP2M;
  /** The altp2m buffer and, for the loaded domain, the word index of its visible EPTP list and of AD_DONE. */
  ap32: Int32Array = EMPTY;
  visibleBase = 0;
  doneIdx = 0;
  /** Word index of the loaded domain's AD_GEN, and the generation the TLBs were last audited at. */
  genIdx = 0;
  auditGen = -1;
  /** The pCPU's side of what the core observes (VMFUNCs, the oracles' verdicts). */
  hooks: CpuHooks | null = null;
  /** The inline oracles run (PcpuParams.oracles). Off, the core runs exactly the same, unobserved. */
  oracles = true;
  /** Trampoline region, gfns [lo, hi] (ROGUE_VMFUNC, REALM_ENTRY). Default: everywhere. */
  trampLo = 0;
  trampHi = 0xfffff;
  /** Realm region, gfns [lo, hi] (lo > hi: none). */
  realmLo = 1;
  realmHi = 0;
  /** The realm's entry points, sorted (scenario key realm_entries), or null: any realm address. */
  realmEntries: Int32Array | null = null;
  /** oracles on and the loaded domain has a realm: realmFetch runs at every fetch that changes page. */
  realmCheck = false;
  /**
   * Secret region as machine frames [lo, hi] (lo > hi: none): every data access that reaches them, through
   * whatever gfn (change_gfn can alias), is judged by the REALM_ESCAPE oracle (xlateSlow) unless realm code makes it.
   */
  secretLo = 1;
  secretHi = 0;
  /** oracles on and the loaded domain has a secret: the TLBs keep CoreTlb.probe in step. */
  secretProbe = false;
  /** True only inside guestRun: hypervisor reads of guest memory are not judged. */
  probing = false;
  /** Root of the loaded domain's host p2m (the realm oracle reads guest code through it). */
  hostRoot = 0;
  // The realm oracles' memory of the loaded vCPU (saved in its block, VC_ORC_*, while it is off this pCPU).
  /** gfn of the page the last instruction ran on; -1 unknown. */
  execGfn = -1;
  /** The last control transfer's pc (bit 0: an interrupt or exception delivery); -1 none. */
  xferFrom = -1;
  /** The page of the last instruction is in the realm (then accesses to the secret are not judged). */
  inRealm = false;
  /** KERNEL_IN_REALM_VIEW was reported for the stretch of kernel code running now. */
  kirv = false;
  /** Cache of viewIsRealm: the view, the p2m generation it was judged at, and the answer. */
  rvView = -1;
  rvGen = -1;
  rvIs = false;
  /** Accesses a stale TLB entry allowed (STALE_TRANSLATION), with the first one's details. */
  stale = 0;
  staleGpa = 0;
  staleAccess = 0;
  staleView = 0;
  staleStamp = 0;
  staleFill = 0;
  /** The pc of the first stale access (the oracle's signature names the instruction). */
  stalePc = 0;
  /** EMULATE from vm_event: the next instruction ignores the view's access restriction (not its mapping). */
  ignoreAccess = false;
  /** After an EPT violation: the deciding entry has suppress-VE clear (the violation may become a #VE). */
  exitVeConvertible = false;
  /**
   * The hypervisor's help when event delivery (IDT read, stack pushes) meets an entry a view has not
   * filled yet: it fills it, as the EPT violation Xen takes during delivery would, and delivery retries.
   */
  deliveryHook: DeliveryHook | null = null;
  /** Simulated cycles of this pCPU. */
  clock = 0;
  /** Instructions retired in the last guestRun. */
  retired = 0;
  /**
   * Guest-memory accesses left before the burst must end so another pCPU can be chosen there
   * (DESIGN.md §1). The serial engine sets it per step (the strategy's choice of how many shared
   * accesses this pCPU makes before the next choice point); the threaded engine sets it out of reach,
   * since real threads interleave on their own.
   */
  sharedLeft = SHARED_UNLIMITED;
  // Exit information (valid after guestRun returns an exit).
  exitQual = 0;
  exitGpa = 0;
  exitAccess = 0;
  /** Set by xlateSlow when the failed access hit a passed-through device page (MMIO_*). */
  mmioKind = MMIO_NONE;
  /** The physical LAPIC behind MMIO_LAPIC_DIRECT pages and passed-through x2APIC MSRs. */
  lapic: LapicPort | null = null;
  /**
   * Guest accesses to a LAPIC register that did not go through the hypervisor's APIC-access page: the
   * passed-through xAPIC page and x2APIC MSRs (through `lapic`), and x2APIC MSR exits. Counted only on
   * those paths, never on plain memory; the serial engine compares it around a step to tell a LAPIC step.
   */
  apicAccesses = 0;
  /** The loaded vCPU's x2APIC MSRs (0x800-0x8FF) are not intercepted (x2apic-passthrough). */
  x2apicPassthrough = false;
  /** Code page cached across bursts (gfn, host word index of its first word); -1 after a TLB flush. */
  codeGfn = -1;
  codeBase = 0;
  /** One thread drives the whole machine (Machine.exclusive): shared words need no Atomics (hw/mem-order.ts). */
  exclusive = false;
  /** Cycles of a plain instruction (the cost table's `insn`; opcodes that cost more add the difference). */
  readonly insnCost: number;
  /** Cycles for one delivery through the guest IDT. */
  exceptionCost = 0;
  /**
   * Virtual-NMI blocking: set when a virtual NMI is delivered, cleared by the guest's next IRET (SDM "virtual
   * NMIs"). While set, another NMI waits; `cli` has nothing to do with it.
   */
  nmiBlocked = false;
  /** A virtual NMI waits for blocking to end: IRET then exits (NMI-window exiting) so it can be injected. */
  nmiWindow = false;
  /**
   * A virtual interrupt waits for IF (Xen's vmx_intr_assist turns on interrupt-window exiting): the
   * instruction that sets IF ends the burst with EXIT_IRQ_WINDOW (STI one instruction later: its shadow).
   */
  irqWindow = false;

  constructor(
    readonly mem32: Int32Array,
    readonly mem8: Uint8Array,
    readonly p2m: Int32Array,
    /** The pCPU block array and the index of this pCPU's PC_PENDING word. */
    readonly pend: Int32Array,
    readonly pendIdx: number,
    readonly cost: Int32Array,
  ) {
    this.tlb = this.tlbFor(INVALID_ALTP2M);
    this.insnCost = cost[Op.MOV];
  }

  private tlbFor(view: number): CoreTlb {
    const i = view === INVALID_ALTP2M || view < 0 ? TLB_HOST : view;
    let t = this.tlbs[i];
    if (t === undefined) {
      t = new CoreTlb();
      this.tlbs[i] = t;
      this.tlbsUsed.push(t);
    }
    return t;
  }

  /** Use table `view` (INVALID_ALTP2M: the host p2m) rooted at `root`. No flush: TLBs are per table. */
  setTable(view: number, root: number): void {
    this.view = view;
    this.p2mRoot = root;
    this.tlb = this.tlbFor(view);
    this.codeGfn = -1;
  }

  /** INVEPT single-context: forget the translations of one table (-1 or INVALID_ALTP2M: the host p2m). */
  tlbFlushTable(view: number): void {
    this.tlbFor(view).flushAll();
    this.codeGfn = -1;
  }

  /** The TLBs created so far (the audit walks them). */
  tlbsInUse(): readonly CoreTlb[] { return this.tlbsUsed; }

  /** The permissions the interpreter checks: the probe copy while code outside the realm runs (CoreTlb.probe). */
  permArray(): Int32Array { return this.secretProbe && !this.inRealm ? this.tlb.probe : this.tlb.perm; }

  /** INVEPT all-context (and a vCPU switch): forget every table's translations. */
  tlbFlushAll(): void {
    for (const t of this.tlbsUsed) t.flushAll();
    this.codeGfn = -1;
  }
}

const EMPTY = new Int32Array(1);
/** TLB index of the host p2m (after the 512 views). */
const TLB_HOST = 512;

/**
 * Translate gpa for an access needing `perm`; returns the host byte offset, or -1 after recording an
 * EPT violation in the core. The fast path is a TLB hit; the slow path reads the p2m.
 */
export function xlate(c: CpuCore, gpa: number, perm: number): number {
  const t = c.tlb;
  return xlateFast(c, t.tag, t.base, t.perm, gpa, perm, c.pc);
}

/** xlate with the TLB arrays already in locals (the interpreter's hot path: no property chains). */
function xlateFast(c: CpuCore, tag: Int32Array, base: Int32Array, tperm: Int32Array, gpa: number, perm: number, pc: number): number {
  const gfn = gpa >>> 12;
  const s = gfn & TlbSize.MASK;
  if (tag[s] === gfn && (tperm[s] & perm) === perm) return base[s] + (gpa & 0xfff);
  return xlateSlow(c, gpa, perm, pc);
}

/**
 * At a burst's start, if the domain's p2m generation moved since the last audit: every TLB entry whose p2m
 * entry has been rewritten since its fill becomes suspect (Tlb.hold). The hardware keeps using it; the
 * oracle judges each access through it (xlateStale). One Atomics load per burst when nothing changed, so the
 * hot path is untouched. Exact in the serial engine (bursts end at every shared access); in the threaded
 * engine a change made during a burst is judged from the next burst on (no false positives either way).
 */
export function tlbAudit(c: CpuCore): void {
  const gen = Mo.ld(c.ap32, c.genIdx, c.exclusive);
  if (gen === c.auditGen) return;
  c.auditGen = gen;
  const p2m = c.p2m;
  for (const t of c.tlbsInUse()) {
    const tag = t.tag, perm = t.perm, eoff = t.eoff, stamp = t.stamp, hold = t.hold, probe = t.probe;
    for (let s = 0; s < TlbSize.ENTRIES; s++) {
      if (tag[s] < 0 || perm[s] === 0) continue;
      if (Atomics.load(p2m, eoff[s]) === stamp[s]) continue;
      hold[s] = perm[s];
      perm[s] = 0;
      probe[s] = 0;
      if (tag[s] === c.codeGfn) c.codeGfn = -1;
    }
  }
}

/**
 * An access through a suspect translation (see tlbAudit). The hardware uses the TLB entry whatever the p2m
 * says; the oracle judges it: if the current entry no longer allows this access (or maps another frame) and
 * the operation that rewrote it has returned (stamp <= AD_DONE, read after the entry: happens-before), the
 * access is STALE_TRANSLATION. If the entry still allows it, the translation is simply brought up to date.
 */
function xlateStale(c: CpuCore, gpa: number, perm: number, s: number, pc: number): number {
  const t = c.tlb, p2m = c.p2m;
  const e = t.eoff[s] - P2E_STAMP;
  let attr = 0, mfn = 0, stamp = 0;
  for (;;) {
    stamp = Atomics.load(p2m, e + P2E_STAMP);
    attr = Atomics.load(p2m, e + P2E_ATTR);
    mfn = Atomics.load(p2m, e + P2E_MFN);
    if (Atomics.load(p2m, e + P2E_STAMP) === stamp && Atomics.load(p2m, e + P2E_ATTR) === attr) break;
  }
  const allowed = eptAccessPerms(p2mAttrAccess(attr));
  if (stamp !== -1 && p2mAttrType(attr) === P2MT_RAM_RW && (allowed & perm) === perm && (mfn << 12) === t.base[s]) {
    t.stamp[s] = stamp;
    t.perm[s] = allowed;
    t.probe[s] = mfn >= c.secretLo && mfn <= c.secretHi ? 0 : allowed;
    t.hold[s] = 0;
  } else if (stamp !== -1 && stamp <= Atomics.load(c.ap32, c.doneIdx)) {
    if (c.stale++ === 0) {
      c.staleGpa = gpa; c.staleAccess = perm; c.staleView = c.view; c.staleStamp = stamp; c.staleFill = t.stamp[s]; c.stalePc = pc;
    }
  }
  return t.base[s] + (gpa & 0xfff);
}

/**
 * `pc` is the accessing instruction's (the interpreter keeps it in a local): STALE_TRANSLATION and
 * REALM_ESCAPE name it. A data access by code outside the realm (c.probing, !c.inRealm) to a secret frame is
 * judged here, whichever way it is translated; the translation itself is what it would be unjudged.
 */
function xlateSlow(c: CpuCore, gpa: number, perm: number, pc: number): number {
  const gfn = gpa >>> 12;
  const ts = gfn & TlbSize.MASK;
  const tl = c.tlb;
  if (tl.tag[ts] === gfn) {
    if ((tl.perm[ts] & perm) === perm) {
      // A TLB hit that the probe copy sent here: a secret frame (CoreTlb.probe).
      if (c.probing && !c.inRealm && (perm & Perm.X) === 0) secretJudge(c, gpa, perm, pc, tl.base[ts] >>> 12);
      return tl.base[ts] + (gpa & 0xfff);
    }
    if ((tl.hold[ts] & perm) === perm) {
      const h = xlateStale(c, gpa, perm, ts, pc);
      if (c.probing && !c.inRealm && (perm & Perm.X) === 0) secretJudge(c, gpa, perm, pc, h >>> 12);
      return h;
    }
  }
  const p2m = c.p2m;
  const e = p2mEntryOffset(p2m, c.p2mRoot, gfn);
  let attr = 0, mfn = 0, stamp = 0;
  if (e >= 0) {
    // A consistent (stamp, attr, mfn): altp2m.ts writeEntry marks the stamp busy (-1) while it writes.
    for (;;) {
      stamp = Atomics.load(p2m, e + P2E_STAMP);
      attr = Atomics.load(p2m, e + P2E_ATTR);
      mfn = Atomics.load(p2m, e + P2E_MFN);
      if (stamp !== -1 && Atomics.load(p2m, e + P2E_STAMP) === stamp && Atomics.load(p2m, e + P2E_ATTR) === attr) break;
    }
  }
  const allowed = c.ignoreAccess ? (Perm.R | Perm.W | Perm.X) : eptAccessPerms(p2mAttrAccess(attr));
  const type = p2mAttrType(attr);
  if (type !== P2MT_RAM_RW || (allowed & perm) !== perm) {
    c.exitGpa = gpa;
    c.exitAccess = perm;
    // Not-present entries suppress #VE here (Xen's default for new entries; the zeroed-root case is unconfirmed).
    c.exitVeConvertible = type !== P2MT_INVALID && (attr & ATTR_SUPPRESS_VE) === 0;
    c.mmioKind = type === P2MT_MMIO_DIRECT && (allowed & perm) === perm && c.lapic !== null && (perm & Perm.X) === 0
      ? MMIO_LAPIC_DIRECT : MMIO_NONE;
    return -1;
  }
  if (c.probing && !c.inRealm && (perm & Perm.X) === 0) secretJudge(c, gpa, perm, pc, mfn);
  if (c.ignoreAccess) return (mfn << 12) + (gpa & 0xfff); // an emulated access leaves no translation behind
  const s = gfn & TlbSize.MASK;
  const t = c.tlb;
  t.tag[s] = gfn;
  t.base[s] = mfn << 12;
  t.perm[s] = allowed;
  if (c.secretProbe) t.probe[s] = mfn >= c.secretLo && mfn <= c.secretHi ? 0 : allowed;
  t.eoff[s] = e + P2E_STAMP;
  t.stamp[s] = stamp;
  t.hold[s] = 0;
  return t.base[s] + (gpa & 0xfff);
}

/** REALM_ESCAPE: code outside the realm reached machine frame `mfn` with a data access; the secret's? */
function secretJudge(c: CpuCore, gpa: number, perm: number, pc: number, mfn: number): void {
  if (mfn >= c.secretLo && mfn <= c.secretHi && c.hooks !== null) c.hooks.secretAccess(gpa, perm, pc);
}

// ---- the realm oracles (REALM_ENTRY, KERNEL_IN_REALM_VIEW), out of line ----

/**
 * A fetch from a page other than the last instruction's, or the first fetch after a view switch, a flush or
 * a burst's start (the interpreter calls it only where its code page changes). Judges the step from the
 * page the last instruction ran on (c.execGfn) to `pc`: into the realm from outside is REALM_ENTRY unless
 * it came from the trampoline to an entry point; code outside realm and trampoline in a realm view is
 * KERNEL_IN_REALM_VIEW, once per stretch of such code. `from`: the last control transfer's pc.
 */
function realmFetch(c: CpuCore, pc: number, from: number, spent: number): void {
  const g = pc >>> 12, prev = c.execGfn;
  const inRealm = g >= c.realmLo && g <= c.realmHi;
  const prevInside = prev >= 0 && ((prev >= c.realmLo && prev <= c.realmHi) || (prev >= c.trampLo && prev <= c.trampHi));
  c.inRealm = inRealm;
  if (g !== prev) {
    c.execGfn = g;
    if (inRealm && !(prev >= c.realmLo && prev <= c.realmHi)) realmEntered(c, prev, pc, from, spent);
  }
  if (inRealm || (g >= c.trampLo && g <= c.trampHi) || !viewIsRealm(c)) { c.kirv = false; return; }
  if (c.kirv) return;
  c.kirv = true;
  const why = g !== prev && prevInside ? ((from & 1) !== 0 ? KIRV_INTERRUPT : KIRV_LEFT_REALM) : KIRV_VIEW_SWITCH;
  if (c.hooks === null) return;
  // The burst's cycles so far are the interpreter's locals: lend them to the clock while the event is stamped.
  c.clock += spent;
  c.hooks.kernelInRealmView(pc, why, from);
  c.clock -= spent;
}

/**
 * A realm view: an altp2m view other than slot 0 (where every vCPU starts, the host's stand-in) in which the
 * realm's first page is executable (its entry, or the view's default access until it is filled). Cached
 * per view until the domain's p2m generation moves.
 */
function viewIsRealm(c: CpuCore): boolean {
  const v = c.view;
  if (v === INVALID_ALTP2M || v <= 0) return false;
  const gen = Mo.ld(c.ap32, c.genIdx, c.exclusive);
  if (v === c.rvView && gen === c.rvGen) return c.rvIs;
  const e = p2mEntryOffset(c.p2m, c.p2mRoot, c.realmLo);
  const attr = e >= 0 ? Atomics.load(c.p2m, e + P2E_ATTR) : 0;
  const access = p2mAttrType(attr) !== P2MT_INVALID ? p2mAttrAccess(attr)
    : Atomics.load(c.ap32, c.visibleBase - AD_VISIBLE + AD_VIEWS + v * VIEW_WORDS + VW_DEFAULT_ACCESS);
  c.rvView = v;
  c.rvGen = gen;
  c.rvIs = (eptAccessPerms(access) & Perm.X) !== 0;
  return c.rvIs;
}

/** Control reached `target` in the realm; the last instruction ran on `prevGfn` (outside it, or -1). */
function realmEntered(c: CpuCore, prevGfn: number, target: number, from: number, spent: number): void {
  const fromTramp = prevGfn >= c.trampLo && prevGfn <= c.trampHi;
  const listed = c.realmEntries === null || entryListed(c.realmEntries, target);
  if ((fromTramp && listed) || c.hooks === null) return;
  const src = transferSource(c, prevGfn, target, from);
  c.clock += spent;
  c.hooks.realmEntry(src, entryHow | (fromTramp ? REALM_ENTRY_NOT_LISTED : 0), prevGfn, target);
  c.clock -= spent;
}

function entryListed(list: Int32Array, pc: number): boolean {
  let lo = 0, hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid] === pc) return true;
    if (list[mid] < pc) lo = mid + 1; else hi = mid - 1;
  }
  return false;
}

/** XFER_* of the last transferSource. */
let entryHow = XFER_OTHER;
/** Words of the instruction readInsn read. */
let insnW0 = 0, insnW1 = 0;

/** Read the guest instruction at gpa through the host p2m (the code as the domain holds it). */
function readInsn(c: CpuCore, gpa: number): boolean {
  if ((gpa & 7) !== 0 || gpa < 0) return false;
  const e = p2mEntryOffset(c.p2m, c.hostRoot, gpa >>> 12);
  if (e < 0 || p2mAttrType(Atomics.load(c.p2m, e + P2E_ATTR)) !== P2MT_RAM_RW) return false;
  const w = ((Atomics.load(c.p2m, e + P2E_MFN) << 12) + (gpa & 0xfff)) >> 2;
  insnW0 = Atomics.load(c.mem32, w);
  insnW1 = Atomics.load(c.mem32, w + 1);
  return true;
}

/** Can the instruction at gpa be followed by the next one in memory (not jmp, call, ret, iret)? */
function fallsThrough(c: CpuCore, gpa: number): boolean {
  if (!readInsn(c, gpa)) return true;
  const op = insnW0 & 0x7f;
  return op !== Op.JMP && op !== Op.CALL && op !== Op.RET && op !== Op.IRET;
}

/**
 * Which instruction brought control to `target`, from the page `prevGfn` the last instruction ran on:
 * the last control transfer (`from`) if it was on that page, else the instruction before `target`
 * (straight-line code across the page boundary). When both are possible, a direct jump or call to
 * `target` at `from` decides for the transfer. Sets entryHow; returns the source pc.
 */
function transferSource(c: CpuCore, prevGfn: number, target: number, from: number): number {
  // The instruction before `target`: 8 bytes back, or 16 when that slot is a wide instruction's tail.
  const before = (target - (readInsn(c, (target - 8) | 0) && insnW0 === Op.WIDE_TAIL ? 16 : 8)) | 0;
  const beforeOnPrev = prevGfn >= 0 && (before >>> 12) === prevGfn;
  const fromOnPrev = from !== -1 && prevGfn >= 0 && (from >>> 12) === prevGfn;
  let src = from;
  if (!fromOnPrev) src = beforeOnPrev ? before : from;
  else if (beforeOnPrev && (from & ~7) !== before && !directTo(c, from, target) && fallsThrough(c, before)) src = before;
  if (src === -1) { entryHow = XFER_OTHER; return -1; }
  if ((src & 1) !== 0) { entryHow = XFER_INTERRUPT; return src & ~7; }
  if (src === before && src !== from) { entryHow = XFER_FALLTHROUGH; return src; }
  entryHow = XFER_OTHER;
  if (readInsn(c, src)) {
    const op = insnW0 & 0x7f;
    if (op === Op.CALL) entryHow = XFER_CALL;
    else if (op === Op.RET) entryHow = XFER_RETURN;
    else if (op === Op.IRET) entryHow = XFER_IRET;
    else if (op >= Op.JMP && op <= Op.JAE) entryHow = src === before && !directTo(c, src, target) ? XFER_FALLTHROUGH : XFER_JUMP;
    else if (src === before) entryHow = XFER_FALLTHROUGH;
  }
  return src;
}

/** Is the instruction at gpa a jmp, jcc or call whose target is `target` without a register? */
function directTo(c: CpuCore, gpa: number, target: number): boolean {
  if (!readInsn(c, gpa)) return false;
  const op = insnW0 & 0x7f;
  return op >= Op.JMP && op <= Op.CALL && ((insnW0 >>> 11) & 31) >= REG_ZERO && insnW1 === target;
}

/** Exit qualification of in/out: port in bits 0..15, register in 16..19, bit 20 set for out. */
export function ioQual(port: number, reg: number, isOut: boolean): number {
  return (port & 0xffff) | (reg << 16) | (isOut ? 1 << 20 : 0);
}
export function ioQualPort(q: number): number { return q & 0xffff; }
export function ioQualReg(q: number): number { return (q >>> 16) & 15; }
export function ioQualIsOut(q: number): boolean { return (q & (1 << 20)) !== 0; }

export function packFlags(cf: boolean, zf: boolean, sf: boolean, of: boolean, ifl: boolean): number {
  return FL_FIXED | (cf ? FL_CF : 0) | (zf ? FL_ZF : 0) | (sf ? FL_SF : 0) | (of ? FL_OF : 0) | (ifl ? FL_IF : 0);
}

/**
 * Deliver exception/interrupt `vec` through the guest IDT: push flags, push `retPc`, clear IF, jump.
 * A missing IDT, a 0 handler, or a fault while pushing is a triple fault (ISA.md: no double-fault
 * handler in this model). Returns EXIT_NONE on success, else EXIT_TRIPLE_FAULT or EXIT_EPT_VIOLATION.
 */
export function guestDeliver(c: CpuCore, vec: number, retPc: number): number {
  if (c.idtr === -1) { c.exitQual = vec; return EXIT_TRIPLE_FAULT; }
  const entry = (c.idtr + vec * 4) | 0;
  if ((entry & 3) !== 0) { c.exitQual = vec; return EXIT_TRIPLE_FAULT; }
  const he = deliveryXlate(c, entry, Perm.R);
  if (he < 0) { c.exitQual = vec; return EXIT_TRIPLE_FAULT; }
  const handler = Atomics.load(c.mem32, he >> 2);
  if (handler === 0) { c.exitQual = vec; return EXIT_TRIPLE_FAULT; }
  const R = c.R;
  const sp1 = (R[Reg.ESP] - 4) | 0;
  const sp2 = (R[Reg.ESP] - 8) | 0;
  if ((sp1 & 3) !== 0) { c.exitQual = vec; return EXIT_TRIPLE_FAULT; }
  const h1 = deliveryXlate(c, sp1, Perm.W);
  const h2 = deliveryXlate(c, sp2, Perm.W);
  if (h1 < 0 || h2 < 0) { c.exitQual = vec; return EXIT_TRIPLE_FAULT; }
  c.mem32[h1 >> 2] = c.flags;
  c.mem32[h2 >> 2] = retPc;
  R[Reg.ESP] = sp2;
  c.flags &= ~FL_IF;
  c.pc = handler;
  c.xferFrom = retPc | 1; // the realm oracles: control moved by a delivery (see realmFetch)
  return EXIT_NONE;
}

/**
 * xlate for event delivery, with the hypervisor's lazy fill of an unfilled view entry (deliveryHook), and
 * then one more look whatever the fill said: another pCPU may have filled the entry between this miss and
 * the fill, which then finds it present and has nothing to do (eptViolation's "changed since this vCPU's
 * TLB miss"). Only a second miss is a fault during delivery.
 */
function deliveryXlate(c: CpuCore, gpa: number, perm: number): number {
  const h = xlate(c, gpa, perm);
  if (h >= 0 || c.deliveryHook === null) return h;
  c.deliveryHook.fillForDelivery(gpa);
  return xlate(c, gpa, perm);
}

/**
 * Run the loaded vCPU for at most `budget` instructions. Returns EXIT_* (EXIT_NONE: burst over).
 * On an exit caused by an instruction, c.pc still points at it; the handler advances it.
 */
export function guestRun(c: CpuCore, budget: number): number {
  const R = c.R, mem32 = c.mem32, mem8 = c.mem8, pend = c.pend, pendIdx = c.pendIdx, cost = c.cost, ex = c.exclusive;
  if (c.oracles) tlbAudit(c);
  let tTag = c.tlb.tag, tBase = c.tlb.base, tPerm = c.permArray();
  let sh = c.sharedLeft;
  c.probing = c.secretProbe;
  let pc = c.pc | 0;
  // The last control transfer's pc (realm oracles): a register move in the transfer cases, read only where
  // the code page changes.
  let from = c.xferFrom;
  const fl = c.flags;
  let cf = (fl & FL_CF) !== 0, zf = (fl & FL_ZF) !== 0, sf = (fl & FL_SF) !== 0, of = (fl & FL_OF) !== 0;
  let ifl = (fl & FL_IF) !== 0;
  // Cycles so far are always `cyc + n * ic`: every instruction costs ic (the cost table's `insn`), and the
  // few opcodes that cost more add their difference in their own case, so the common path loads no cost.
  const ic = c.insnCost;
  let n = 0, cyc = 0, exit = EXIT_NONE, fault = -1;
  // The code page in use as (gfn << 12), or -1: `(pc & CODE_KEY_MASK) !== codeKey` is one test for both
  // "another page" and "not 8-aligned", so the common path pays one compare for fetch checks.
  let codeKey = c.codeGfn < 0 || c.tlb.tag[c.codeGfn & TlbSize.MASK] !== c.codeGfn ? -1 : c.codeGfn << 12;
  let codeBase = c.codeBase;
  // Pending physical interrupts are looked at before the first instruction, after every control transfer
  // and fault delivery, and after each access that reaches a LAPIC: the only points inside a burst where
  // this pCPU's own actions can raise one (serial engine: exact, as if checked before every instruction).
  // Under the threaded engine another thread's IPI is seen at the next control transfer, which straight-line
  // code reaches within one page of instructions.
  if (pend[pendIdx] !== 0) exit = EXIT_EXTINT;
  else loop: while (n < budget) {
    if ((pc & CODE_KEY_MASK) !== codeKey) {
      if ((pc & 7) !== 0) { fault = VEC_GP; } else {
        const hb = xlateFast(c, tTag, tBase, tPerm, pc, Perm.X, pc);
        if (hb < 0) { exit = EXIT_EPT_VIOLATION; break; }
        codeKey = pc & ~0xfff;
        codeBase = (hb - (pc & 0xfff)) >> 2;
        if (c.realmCheck) {
          realmFetch(c, pc, from, cyc + n * ic); // the cycles so far: events it records carry this instruction's time
          tPerm = c.permArray();
        }
      }
    }
    if (fault < 0) {
      const wi = codeBase + ((pc & 0xfff) >> 2);
      const w0 = mem32[wi];
      const w1 = mem32[wi + 1];
      const op = w0 & 0x7f;
      const a = (w0 >>> 7) & 15;
      const src = (R[(w0 >>> 11) & 31] + w1) | 0;
      n++;
      switch (op) {
        // ---- moves ----
        case Op.MOV: R[a] = src; pc += 8; continue;
        case Op.LD: {
          if ((src & 3) !== 0) { fault = VEC_GP; break; }
          const g = src >>> 12, ts = g & TlbSize.MASK; // xlateFast, inlined by hand on the hottest paths
          const h = tTag[ts] === g && (tPerm[ts] & Perm.R) !== 0 ? tBase[ts] + (src & 0xfff) : xlateSlow(c, src, Perm.R, pc);
          if (h < 0) {
            if (c.mmioKind !== MMIO_LAPIC_DIRECT) { exit = EXIT_EPT_VIOLATION; break loop; }
            c.clock += cyc + n * ic; cyc = -n * ic;
            R[a] = (c.lapic as LapicPort).apicRead(src & 0xfff);
            c.apicAccesses++;
            pc += 8;
            if (--sh === 0) break loop;
            if (n < budget && pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; }
            continue;
          }
          R[a] = mem32[h >> 2];
          pc += 8;
          if (--sh === 0) break loop;
          continue;
        }
        case Op.ST: {
          if ((src & 3) !== 0) { fault = VEC_GP; break; }
          const g = src >>> 12, ts = g & TlbSize.MASK;
          const h = tTag[ts] === g && (tPerm[ts] & Perm.W) !== 0 ? tBase[ts] + (src & 0xfff) : xlateSlow(c, src, Perm.W, pc);
          if (h < 0) {
            if (c.mmioKind !== MMIO_LAPIC_DIRECT) { exit = EXIT_EPT_VIOLATION; break loop; }
            c.clock += cyc + n * ic; cyc = -n * ic; c.pc = pc;
            if (!(c.lapic as LapicPort).apicWrite(src & 0xfff, R[a])) { c.mmioKind = MMIO_NONE; exit = EXIT_EPT_VIOLATION; break loop; }
            c.apicAccesses++;
            pc += 8;
            if (--sh === 0) break loop;
            if (n < budget && pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; } // e.g. a self-IPI
            continue;
          }
          mem32[h >> 2] = R[a];
          pc += 8;
          if (--sh === 0) break loop;
          continue;
        }
        case Op.ST_SD: case Op.ST_SI: {
          const ad = op === Op.ST_SD ? (R[(w0 >>> 11) & 31] + (w0 >> 16)) | 0 : src;
          const v = op === Op.ST_SD ? w1 : w0 >> 16;
          if ((ad & 3) !== 0) { fault = VEC_GP; break; }
          const h = xlateFast(c, tTag, tBase, tPerm, ad, Perm.W, pc);
          if (h < 0) {
            if (c.mmioKind !== MMIO_LAPIC_DIRECT) { exit = EXIT_EPT_VIOLATION; break loop; }
            c.clock += cyc + n * ic; cyc = -n * ic; c.pc = pc;
            if (!(c.lapic as LapicPort).apicWrite(ad & 0xfff, v)) { c.mmioKind = MMIO_NONE; exit = EXIT_EPT_VIOLATION; break loop; }
            c.apicAccesses++;
            pc += 8;
            if (--sh === 0) break loop;
            if (n < budget && pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; }
            continue;
          }
          mem32[h >> 2] = v;
          pc += 8;
          if (--sh === 0) break loop;
          continue;
        }
        case Op.LDB: {
          const h = xlateFast(c, tTag, tBase, tPerm, src, Perm.R, pc);
          if (h < 0) { exit = EXIT_EPT_VIOLATION; break loop; }
          R[a] = mem8[h]; pc += 8;
          if (--sh === 0) break loop;
          continue;
        }
        case Op.STB: {
          const h = xlateFast(c, tTag, tBase, tPerm, src, Perm.W, pc);
          if (h < 0) { exit = EXIT_EPT_VIOLATION; break loop; }
          mem8[h] = R[a]; pc += 8;
          if (--sh === 0) break loop;
          continue;
        }
        // ---- arithmetic ----
        case Op.ADD: case Op.CMP: case Op.SUB: {
          const x = R[a];
          let r: number;
          if (op === Op.ADD) {
            r = (x + src) | 0;
            cf = (r >>> 0) < (x >>> 0);
            of = ((x ^ r) & (src ^ r)) < 0;
          } else {
            r = (x - src) | 0;
            cf = (x >>> 0) < (src >>> 0);
            of = ((x ^ src) & (x ^ r)) < 0;
          }
          zf = r === 0; sf = r < 0;
          if (op !== Op.CMP) R[a] = r;
          pc += 8; continue;
        }
        case Op.AND: case Op.TEST: case Op.OR: case Op.XOR: {
          const r = op === Op.OR ? R[a] | src : op === Op.XOR ? R[a] ^ src : R[a] & src;
          zf = r === 0; sf = r < 0; cf = false; of = false;
          if (op !== Op.TEST) R[a] = r;
          pc += 8; continue;
        }
        case Op.SHL: case Op.SHR: case Op.SAR: {
          const k = src & 31;
          if (k !== 0) {
            const x = R[a];
            let r: number;
            if (op === Op.SHL) { r = x << k; cf = ((x >>> (32 - k)) & 1) !== 0; }
            else if (op === Op.SHR) { r = (x >>> k) | 0; cf = ((x >>> (k - 1)) & 1) !== 0; }
            else { r = x >> k; cf = ((x >> (k - 1)) & 1) !== 0; }
            zf = r === 0; sf = r < 0; of = false;
            R[a] = r;
          }
          pc += 8; continue;
        }
        case Op.IMUL: {
          cyc += cost[op] - ic;
          const r = Math.imul(R[a], src);
          of = cf = r !== R[a] * src;
          zf = r === 0; sf = r < 0;
          R[a] = r; pc += 8; continue;
        }
        case Op.INC: { const x = R[a]; const r = (x + 1) | 0; of = r === -0x80000000; zf = r === 0; sf = r < 0; R[a] = r; pc += 8; continue; }
        case Op.DEC: { const x = R[a]; const r = (x - 1) | 0; of = x === -0x80000000; zf = r === 0; sf = r < 0; R[a] = r; pc += 8; continue; }
        case Op.NEG: { const x = R[a]; const r = (-x) | 0; cf = x !== 0; of = x === -0x80000000; zf = r === 0; sf = r < 0; R[a] = r; pc += 8; continue; }
        case Op.NOT: { const r = ~R[a]; zf = r === 0; sf = r < 0; cf = false; of = false; R[a] = r; pc += 8; continue; }
        // ---- control flow ----
        case Op.JMP: from = pc; pc = src; if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; } continue;
        case Op.JZ: from = pc; pc = zf ? src : pc + 8; if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; } continue;
        case Op.JNZ: from = pc; pc = !zf ? src : pc + 8; if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; } continue;
        case Op.JL: from = pc; pc = sf !== of ? src : pc + 8; if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; } continue;
        case Op.JLE: from = pc; pc = zf || sf !== of ? src : pc + 8; if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; } continue;
        case Op.JG: from = pc; pc = !zf && sf === of ? src : pc + 8; if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; } continue;
        case Op.JGE: from = pc; pc = sf === of ? src : pc + 8; if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; } continue;
        case Op.JB: from = pc; pc = cf ? src : pc + 8; if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; } continue;
        case Op.JBE: from = pc; pc = cf || zf ? src : pc + 8; if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; } continue;
        case Op.JA: from = pc; pc = !cf && !zf ? src : pc + 8; if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; } continue;
        case Op.JAE: from = pc; pc = !cf ? src : pc + 8; if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; } continue;
        case Op.CALL: case Op.PUSH: case Op.PUSHF: {
          const sp = (R[Reg.ESP] - 4) | 0;
          if ((sp & 3) !== 0) { fault = VEC_GP; break; }
          const h = xlateFast(c, tTag, tBase, tPerm, sp, Perm.W, pc);
          if (h < 0) { exit = EXIT_EPT_VIOLATION; break loop; }
          mem32[h >> 2] = op === Op.CALL ? pc + 8 : op === Op.PUSH ? src : packFlags(cf, zf, sf, of, ifl);
          R[Reg.ESP] = sp;
          if (op === Op.CALL) { from = pc; pc = src; } else pc += 8;
          if (--sh === 0) break loop;
          if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; }
          continue;
        }
        case Op.POP: case Op.RET: case Op.POPF: {
          const sp = R[Reg.ESP];
          if ((sp & 3) !== 0) { fault = VEC_GP; break; }
          const h = xlateFast(c, tTag, tBase, tPerm, sp, Perm.R, pc);
          if (h < 0) { exit = EXIT_EPT_VIOLATION; break loop; }
          const v = mem32[h >> 2];
          R[Reg.ESP] = (sp + 4) | 0;
          if (op === Op.POP) { R[a] = v; pc += 8; }
          else if (op === Op.RET) { from = pc; pc = v; }
          else {
            cf = (v & FL_CF) !== 0; zf = (v & FL_ZF) !== 0; sf = (v & FL_SF) !== 0; of = (v & FL_OF) !== 0;
            ifl = (v & FL_IF) !== 0; pc += 8;
            if (ifl && c.irqWindow) { exit = EXIT_IRQ_WINDOW; break loop; }
          }
          if (--sh === 0) break loop;
          if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; }
          continue;
        }
        case Op.IRET: {
          const sp = R[Reg.ESP];
          if ((sp & 3) !== 0) { fault = VEC_GP; break; }
          const h1 = xlateFast(c, tTag, tBase, tPerm, sp, Perm.R, pc);
          const h2 = xlateFast(c, tTag, tBase, tPerm, (sp + 4) | 0, Perm.R, pc);
          if (h1 < 0 || h2 < 0) { exit = EXIT_EPT_VIOLATION; break loop; }
          from = pc;
          pc = mem32[h1 >> 2];
          const v = mem32[h2 >> 2];
          cf = (v & FL_CF) !== 0; zf = (v & FL_ZF) !== 0; sf = (v & FL_SF) !== 0; of = (v & FL_OF) !== 0;
          ifl = (v & FL_IF) !== 0;
          R[Reg.ESP] = (sp + 8) | 0;
          if (c.nmiBlocked) {
            c.nmiBlocked = false; // IRET ends NMI blocking, whichever handler it returns from
            if (c.nmiWindow) { exit = EXIT_NMI_WINDOW; break loop; } // IRET completed: the exit comes after it
          }
          if (ifl && c.irqWindow) { exit = EXIT_IRQ_WINDOW; break loop; }
          if (--sh === 0) break loop;
          if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; }
          continue;
        }
        // ---- atomics (atomic across pCPUs, as the lock prefix is: hw/mem-order.ts) ----
        case Op.XCHG: case Op.XADD: case Op.CMPXCHG: case Op.LADD: case Op.LOR: case Op.LAND: {
          cyc += cost[op] - ic;
          if ((src & 3) !== 0) { fault = VEC_GP; break; }
          const g = src >>> 12, ts = g & TlbSize.MASK;
          const h = tTag[ts] === g && (tPerm[ts] & (Perm.R | Perm.W)) === (Perm.R | Perm.W) ? tBase[ts] + (src & 0xfff) : xlateSlow(c, src, Perm.R | Perm.W, pc);
          if (h < 0) { exit = EXIT_EPT_VIOLATION; break loop; }
          const wi2 = h >> 2, v = R[a];
          if (op === Op.XCHG) R[a] = Mo.xchg(mem32, wi2, v, ex);
          else if (op === Op.XADD) {
            const old = Mo.add(mem32, wi2, v, ex);
            const r = (old + v) | 0;
            cf = (r >>> 0) < (old >>> 0); of = ((old ^ r) & (v ^ r)) < 0; zf = r === 0; sf = r < 0;
            R[a] = old;
          } else if (op === Op.CMPXCHG) {
            const exp = R[Reg.EAX];
            const old = Mo.cmpxchg(mem32, wi2, exp, v, ex);
            const r = (exp - old) | 0;
            zf = old === exp; sf = r < 0; cf = (exp >>> 0) < (old >>> 0); of = ((exp ^ old) & (exp ^ r)) < 0;
            if (!zf) R[Reg.EAX] = old;
          } else {
            const old = op === Op.LADD ? Mo.add(mem32, wi2, v, ex) : op === Op.LOR ? Mo.or(mem32, wi2, v, ex) : Mo.and(mem32, wi2, v, ex);
            const r = op === Op.LADD ? (old + v) | 0 : op === Op.LOR ? old | v : old & v;
            zf = r === 0; sf = r < 0;
            if (op === Op.LADD) { cf = (r >>> 0) < (old >>> 0); of = ((old ^ r) & (v ^ r)) < 0; } else { cf = false; of = false; }
          }
          pc += 8;
          if (--sh === 0) break loop;
          continue;
        }
        case Op.LADD_SD: case Op.LADD_SI: case Op.LOR_SD: case Op.LOR_SI: case Op.LAND_SD: case Op.LAND_SI: {
          cyc += cost[op] - ic;
          const sd = op === Op.LADD_SD || op === Op.LOR_SD || op === Op.LAND_SD;
          const ad = sd ? (R[(w0 >>> 11) & 31] + (w0 >> 16)) | 0 : src;
          const v = sd ? w1 : w0 >> 16;
          if ((ad & 3) !== 0) { fault = VEC_GP; break; }
          const h = xlateFast(c, tTag, tBase, tPerm, ad, Perm.R | Perm.W, pc);
          if (h < 0) { exit = EXIT_EPT_VIOLATION; break loop; }
          const isAdd = op === Op.LADD_SD || op === Op.LADD_SI, isOr = op === Op.LOR_SD || op === Op.LOR_SI;
          const old = isAdd ? Mo.add(mem32, h >> 2, v, ex) : isOr ? Mo.or(mem32, h >> 2, v, ex) : Mo.and(mem32, h >> 2, v, ex);
          const r = isAdd ? (old + v) | 0 : isOr ? old | v : old & v;
          zf = r === 0; sf = r < 0;
          if (isAdd) { cf = (r >>> 0) < (old >>> 0); of = ((old ^ r) & (v ^ r)) < 0; } else { cf = false; of = false; }
          pc += 8;
          if (--sh === 0) break loop;
          continue;
        }
        // ---- wide forms (opcodes.ts): address = src, the value is the tail slot's imm32 ----
        case Op.ST_W: case Op.LADD_W: case Op.LOR_W: case Op.LAND_W: {
          cyc += cost[op] - ic;
          let t0: number, v: number;
          if ((pc & 0xfff) !== 0xff8) { t0 = mem32[wi + 2]; v = mem32[wi + 3]; }
          else {
            // The tail is on the next page: fetched through its own translation, as x86 fetches an
            // instruction that crosses a page (the realm oracles judge the head's page only).
            const ht = xlateFast(c, tTag, tBase, tPerm, (pc + 8) | 0, Perm.X, pc);
            if (ht < 0) { exit = EXIT_EPT_VIOLATION; break loop; }
            t0 = mem32[ht >> 2]; v = mem32[(ht >> 2) + 1];
          }
          if (t0 !== Op.WIDE_TAIL) { fault = VEC_UD; break; }
          if ((src & 3) !== 0) { fault = VEC_GP; break; }
          if (op === Op.ST_W) {
            const h = xlateFast(c, tTag, tBase, tPerm, src, Perm.W, pc);
            if (h < 0) {
              if (c.mmioKind !== MMIO_LAPIC_DIRECT) { exit = EXIT_EPT_VIOLATION; break loop; }
              c.clock += cyc + n * ic; cyc = -n * ic; c.pc = pc;
              if (!(c.lapic as LapicPort).apicWrite(src & 0xfff, v)) { c.mmioKind = MMIO_NONE; exit = EXIT_EPT_VIOLATION; break loop; }
              c.apicAccesses++;
              pc += 16;
              if (--sh === 0) break loop;
              if (n < budget && pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; }
              continue;
            }
            mem32[h >> 2] = v;
          } else {
            const h = xlateFast(c, tTag, tBase, tPerm, src, Perm.R | Perm.W, pc);
            if (h < 0) { exit = EXIT_EPT_VIOLATION; break loop; }
            const old = op === Op.LADD_W ? Mo.add(mem32, h >> 2, v, ex) : op === Op.LOR_W ? Mo.or(mem32, h >> 2, v, ex) : Mo.and(mem32, h >> 2, v, ex);
            const r = op === Op.LADD_W ? (old + v) | 0 : op === Op.LOR_W ? old | v : old & v;
            zf = r === 0; sf = r < 0;
            if (op === Op.LADD_W) { cf = (r >>> 0) < (old >>> 0); of = ((old ^ r) & (v ^ r)) < 0; } else { cf = false; of = false; }
          }
          pc += 16;
          if (--sh === 0) break loop;
          continue;
        }
        case Op.MFENCE: case Op.LFENCE: case Op.NOP: cyc += cost[op] - ic; pc += 8; continue;
        case Op.PAUSE: cyc += cost[op] - ic; pc += 8; if (--sh === 0) break loop; continue;
        // ---- interrupts ----
        case Op.CLI: ifl = false; pc += 8; continue;
        case Op.STI:
          // The STI shadow: a waiting interrupt is taken after the next instruction (the burst ends there).
          if (!ifl && c.irqWindow && n < budget) budget = n + 1;
          ifl = true; pc += 8; continue;
        case Op.LIDT: c.idtr = src; pc += 8; continue;
        case Op.INT: fault = w1 & 255; pc += 8; break; // a trap: the pushed pc is the next instruction
        case Op.UD2: fault = VEC_UD; break;
        // ---- system: instructions the hypervisor handles (pc stays on the instruction) ----
        case Op.HLT: exit = EXIT_HLT; break loop;
        case Op.VMCALL: exit = EXIT_VMCALL; break loop;
        case Op.MAGIC: c.exitQual = w1; exit = EXIT_MAGIC; break loop;
        case Op.CPUID: exit = EXIT_CPUID; break loop;
        case Op.RDMSR: case Op.WRMSR: {
          const msr = R[Reg.ECX] >>> 0;
          if (c.x2apicPassthrough && msr >= 0x800 && msr <= 0x8ff) {
            // The MSR bitmap lets these through: the physical x2APIC sees the access, no exit.
            c.clock += cyc + n * ic; cyc = -n * ic; c.pc = pc;
            const r = op === Op.WRMSR ? (c.lapic as LapicPort).x2apicWrmsr(msr, R[Reg.EAX], R[Reg.EDX])
              : (c.lapic as LapicPort).x2apicRdmsr(msr) ? PORT_OK : PORT_GP;
            c.apicAccesses++;
            if (r === PORT_GP) { fault = VEC_GP; break; }
            if (r === PORT_EXIT) { exit = EXIT_WRMSR; break loop; }
            pc += 8;
            if (--sh === 0) break loop;
            if (n < budget && pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break loop; }
            continue;
          }
          if (msr >= 0x800 && msr <= 0x8ff) c.apicAccesses++; // the vLAPIC emulates it at the exit
          exit = op === Op.WRMSR ? EXIT_WRMSR : EXIT_RDMSR; break loop;
        }
        case Op.IN: case Op.OUT:
          c.exitQual = ioQual(w1, a, op === Op.OUT); exit = EXIT_IO; break loop;
        case Op.RDTSC: {
          cyc += cost[op] - ic;
          const t = c.clock + cyc + n * ic;
          R[Reg.EAX] = t % 4294967296 | 0;
          R[Reg.EDX] = Math.floor(t / 4294967296) | 0;
          pc += 8; continue;
        }
        case Op.VMFUNC: {
          cyc += cost[op] - ic;
          // SDM order (xen-altp2m.md §5): #UD when not enabled or eax >= 64; a leaf other than 0 (its
          // control bit is clear), ecx >= 512 or an invalid EPTP-list slot exits (reason 59). No CPL check.
          const leaf = R[Reg.EAX] >>> 0, idx = R[Reg.ECX] >>> 0;
          if (!c.vmfuncEnabled || leaf >= 64) { fault = VEC_UD; break; }
          const root = leaf === 0 && idx < 512 ? Atomics.load(c.ap32, c.visibleBase + idx) : -1;
          if (root === -1) { c.exitQual = R[Reg.ECX]; exit = EXIT_VMFUNC; break loop; }
          const was = c.view;
          c.setTable(idx, root);
          tTag = c.tlb.tag; tBase = c.tlb.base; tPerm = c.permArray();
          codeKey = -1; // the next fetch goes through the new view
          c.clock += cyc + n * ic; cyc = -n * ic;
          if (c.hooks !== null) c.hooks.vmfuncDone(was, idx, pc);
          pc += 8;
          // The EPTP-list read is the burst's one shared access here (another pCPU or the agent may change the
          // list): a choice point like any load, not the end of the burst.
          if (--sh === 0) break loop;
          continue;
        }
        default:
          fault = VEC_UD; break;
      }
    }
    // Only faults reach here: deliver through the guest IDT and carry on.
    c.flags = packFlags(cf, zf, sf, of, ifl);
    // Faults left pc on the faulting instruction; `int` already advanced it past itself.
    const r = guestDeliver(c, fault, pc);
    fault = -1;
    cyc += c.exceptionCost;
    if (r !== EXIT_NONE) { exit = r; break; }
    from = c.xferFrom;
    pc = c.pc; ifl = false;
    if (--sh === 0) break;
    if (pend[pendIdx] !== 0) { exit = EXIT_EXTINT; break; }
  }
  // The burst an STI shortened ends in the interrupt-window exit (not when an exit of its own ended it).
  if (exit === EXIT_NONE && ifl && c.irqWindow && fault < 0) exit = EXIT_IRQ_WINDOW;
  c.probing = false;
  c.xferFrom = from;
  c.pc = pc;
  c.flags = packFlags(cf, zf, sf, of, ifl);
  c.retired = n;
  c.sharedLeft = sh;
  c.codeGfn = codeKey === -1 ? -1 : codeKey >>> 12;
  c.codeBase = codeBase;
  c.clock += cyc + n * ic;
  return exit;
}
