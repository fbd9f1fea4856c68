// Conformance of the guest side of HVMOP_altp2m, written from the specification alone
// (../../../shared/reference/xen-altp2m.md §1, §2, §5, §6; DESIGN.md §5.2-5.3; ISA.md).
//
// Each test builds one small guest program from a table of hypercalls. Every hypercall reports its eax
// (and, on success, the OUT fields it is expected to fill) with `magic 1`; the test compares the whole
// list against the table's expectations at once, so a mismatch shows every wrong entry in one diff.
// Serial engine, fixed seed, 1 pCPU and 1 vCPU unless a case needs more.
import { describe, expect, it } from 'vitest';
import { assemble } from '../../src/isa/assembler.js';
import type { RunReport } from '../../src/report.js';
import { runGuest, type GuestOpts } from '../helpers/run.js';

// ---- ABI constants (DESIGN.md §5.2; xen-altp2m.md §2, §3) ----------------------------------------------

const HYPERVISOR_hvm_op = 34;
const HVMOP_altp2m = 25;
const DOMID_SELF = 0x7ff0;
/** The first [[domain]] of a scenario is domid 1, the second domid 2. */
const DOMID_GUEST = 1;
const DOMID_OTHER = 2;

const EPERM = -1, ESRCH = -3, EFAULT = -14, EBUSY = -16, EEXIST = -17, EINVAL = -22, EOPNOTSUPP = -95;

/** Sub-op numbers (xen-altp2m.md §2). */
const CMD = {
  get_domain_state: 1, set_domain_state: 2, vcpu_enable_notify: 3, create_p2m: 4, destroy_p2m: 5,
  switch_p2m: 6, set_mem_access: 7, change_gfn: 8, set_mem_access_multi: 9, set_suppress_ve: 10,
  get_suppress_ve: 11, get_mem_access: 12, vcpu_disable_notify: 13, get_p2m_idx: 14,
  set_suppress_ve_multi: 15, set_visibility: 16,
} as const;

/** xenmem_access_t (xen-altp2m.md §3, the 4.20+ numbering). */
const ACC = { n: 0, r: 1, w: 2, rw: 3, x: 4, rx: 5, wx: 6, rwx: 7, rx2rw: 8, n2rwx: 9, r_pw: 10, default: 11 } as const;
const ACC_BAD = 12;

type U64 = readonly [number, number];
/** INVALID_GFN (~0) as the two 32-bit words of a u64 field. */
const INV: U64 = [0xffffffff, 0xffffffff];
const q = (v: number | U64): U64 => (typeof v === 'number' ? [v >>> 0, 0] : v);

// ---- guest memory layout (1 MiB of RAM: gfns 0..255) ---------------------------------------------------

const RAM_TOP = 0x100000;
/** The first gfn past the end of RAM. */
const GFN_PAST_RAM = RAM_TOP >> 12;
const STRUCTS = 0x10000; // the xen_hvm_altp2m_op structs and other hypercall data (never restricted)
const IDT = 0x20000;
const VE_GFN = 0x30, VE_GFN2 = 0x31; // #VE info pages (ordinary RAM)
const GFN_A = 0x40, GFN_B = 0x41; // change_gfn pair: distinct first words
const WORD_A = 0xaaaa0001, WORD_B = 0xbbbb0002;
/** Scratch gfns the tests restrict or mark; nothing else lives there. */
const G = 0x50;
const APIC_GFN = 0xfee00;
/** Keys under which the #UD and #VE handlers report the pc they found on the stack. */
const KEY_UD = 900;
const KEY_VE = 901;

// ---- the hypercall table and the program builder --------------------------------------------------------

/** A union word: a number, or a label whose address the assembler fills in. */
type Word = number | string;

interface Hc {
  cmd: number;
  /** The 64-byte union as 32-bit words (missing words are 0). */
  u?: Word[];
  version?: number;
  domain?: number;
  pad1?: number;
  pad2?: number;
  /** Pass this gpa in ecx instead of the struct's own address. */
  at?: number;
  /** OUT fields of the union: name -> [byte offset in the union, size in bytes]. */
  outs?: Record<string, [number, 1 | 2 | 4]>;
}

/** Sub-op constructors with the union layouts of xen-altp2m.md §2. IN-only words that Xen writes are pre-set
 * to a marker (0xee...) so a field left unwritten shows. */
const op = {
  getDomainState: (): Hc => ({ cmd: CMD.get_domain_state, u: [0xeeeeeeee], outs: { state: [0, 1] } }),
  setDomainState: (state: number): Hc => ({ cmd: CMD.set_domain_state, u: [state] }),
  // u32 vcpu_id; u32 pad; u64 gfn
  enableNotify: (vcpu: number, gfn: number | U64, pad = 0): Hc => ({ cmd: CMD.vcpu_enable_notify, u: [vcpu, pad, ...q(gfn)] }),
  // u32 vcpu_id
  disableNotify: (vcpu: number): Hc => ({ cmd: CMD.vcpu_disable_notify, u: [vcpu] }),
  // u16 view (OUT); u16 hvmmem_default_access
  createP2m: (access: number): Hc => ({ cmd: CMD.create_p2m, u: [(0xeeee | (access << 16)) >>> 0], outs: { view: [0, 2] } }),
  destroyP2m: (view: number): Hc => ({ cmd: CMD.destroy_p2m, u: [view] }),
  switchP2m: (view: number): Hc => ({ cmd: CMD.switch_p2m, u: [view] }),
  // u16 view; u16 access; u32 pad; u64 gfn
  setMemAccess: (view: number, access: number, gfn: number | U64, pad = 0): Hc =>
    ({ cmd: CMD.set_mem_access, u: [(view | (access << 16)) >>> 0, pad, ...q(gfn)] }),
  getMemAccess: (view: number, gfn: number | U64, pad = 0): Hc =>
    ({ cmd: CMD.get_mem_access, u: [(view | (0xeeee << 16)) >>> 0, pad, ...q(gfn)], outs: { access: [2, 2] } }),
  // u16 view; u16 pad1; u32 pad2; u64 old_gfn; u64 new_gfn
  changeGfn: (view: number, oldGfn: number | U64, newGfn: number | U64, pad1 = 0, pad2 = 0): Hc =>
    ({ cmd: CMD.change_gfn, u: [(view | (pad1 << 16)) >>> 0, pad2, ...q(oldGfn), ...q(newGfn)] }),
  // u16 view; u16 pad; u32 nr; u64 opaque; u64 pfn_list; u64 access_list
  setMemAccessMulti: (view: number, nr: number, opaque: number, pfnList: Word, accessList: Word, pad = 0): Hc =>
    ({ cmd: CMD.set_mem_access_multi, u: [(view | (pad << 16)) >>> 0, nr, opaque, 0, pfnList, 0, accessList, 0] }),
  // u16 view; u8 suppress_ve; u8 pad1; u32 pad2; u64 gfn
  setSve: (view: number, sve: number, gfn: number | U64, pad1 = 0, pad2 = 0): Hc =>
    ({ cmd: CMD.set_suppress_ve, u: [(view | (sve << 16) | (pad1 << 24)) >>> 0, pad2, ...q(gfn)] }),
  getSve: (view: number, gfn: number | U64, pad1 = 0, pad2 = 0): Hc =>
    ({ cmd: CMD.get_suppress_ve, u: [(view | (0xee << 16) | (pad1 << 24)) >>> 0, pad2, ...q(gfn)], outs: { sve: [2, 1] } }),
  // u16 view; u8 suppress_ve; u8 pad1; i32 first_error; u64 first_gfn; u64 last_gfn; u64 first_error_gfn
  setSveMulti: (view: number, sve: number, first: number, last: number, pad1 = 0): Hc => ({
    cmd: CMD.set_suppress_ve_multi,
    u: [(view | (sve << 16) | (pad1 << 24)) >>> 0, 0, ...q(first), ...q(last), 0xeeeeeeee, 0xeeeeeeee],
    outs: { first_error: [4, 4], first_error_gfn: [24, 4], first_error_gfn_hi: [28, 4] },
  }),
  // u32 vcpu_id; u16 altp2m_idx (OUT)
  getP2mIdx: (vcpu: number): Hc => ({ cmd: CMD.get_p2m_idx, u: [vcpu, 0xeeee], outs: { idx: [4, 2] } }),
  // u16 altp2m_idx; u8 visible; u8 pad
  setVisibility: (view: number, visible: number, pad = 0): Hc =>
    ({ cmd: CMD.set_visibility, u: [(view | (visible << 16) | (pad << 24)) >>> 0] }),
  /** A struct with this cmd and an all-zero union. */
  raw: (cmd: number): Hc => ({ cmd, u: [] }),
};

/**
 * Builds a guest program: a straight line of steps for vCPU 0 (optionally other code for vCPU 1 and for a
 * second domain), each step reporting under its own key, and the expected value of every report.
 */
class Guest {
  private code: string[] = [];
  private vcpu1: string[] = [];
  private other: string[] = [];
  private data: string[] = [];
  private names: string[] = [];
  private wantMap: Record<string, number> = {};
  private udLabels: string[] = [];
  private nStruct = 0;
  private nLabel = 0;
  private target: string[] = this.code;

  /** Emit the steps that follow into vCPU 1's code path (vCPU 0 is the default). */
  onVcpu1(f: () => void): this { this.target = this.vcpu1; f(); this.target = this.code; return this; }
  /** Emit the steps that follow into the second domain's code path (scenarios with defines ROLE = 1). */
  onOtherDomain(f: () => void): this { this.target = this.other; f(); this.target = this.code; return this; }

  private key(name: string): number {
    if (this.names.includes(name)) throw new Error(`duplicate report name ${name}`);
    this.names.push(name);
    return this.names.length;
  }

  private rep(name: string, reg: string, want: number | undefined): void {
    const k = this.key(name);
    if (want !== undefined) this.wantMap[name] = want | 0;
    this.target.push(`    mov ecx, ${reg}`, `    mov ebx, ${k}`, '    magic 1');
  }

  /** Raw assembly (one step). */
  asm(text: string): this { this.target.push(text); return this; }

  /**
   * One HVMOP_altp2m call: report its eax as `name` (expected `eax`), then each OUT field named in `outs` as
   * `name.field` (expected value).
   */
  hc(name: string, h: Hc, eax: number, outs: Record<string, number> = {}): this {
    const s = `hc_${this.nStruct++}`;
    const u = [...(h.u ?? [])];
    while (u.length < 16) u.push(0);
    this.data.push('    .align 8', `${s}:`,
      `    .word ${h.version ?? 1}, ${h.cmd}, ${((h.domain ?? DOMID_SELF) | ((h.pad1 ?? 0) << 16)) >>> 0}, ${h.pad2 ?? 0}`,
      `    .word ${u.join(', ')}`);
    this.target.push(`    ; ${name}`, `    mov eax, ${HYPERVISOR_hvm_op}`, `    mov ebx, ${HVMOP_altp2m}`,
      `    mov ecx, ${h.at ?? s}`, '    vmcall');
    this.rep(name, 'eax', eax);
    for (const [f, want] of Object.entries(outs)) {
      const o = h.outs?.[f];
      if (o === undefined) throw new Error(`${name}: no OUT field ${f}`);
      const [off, size] = o;
      const addr = `${s}+${16 + off}`;
      if (size === 1) {
        this.target.push(`    movb eax, [${addr}]`);
      } else {
        // 32-bit loads must be aligned: load the word holding the field, then shift and mask.
        const sh = (off & 3) * 8;
        this.target.push(`    mov eax, [${s}+${16 + (off & ~3)}]`);
        if (sh) this.target.push(`    shr eax, ${sh}`);
        if (size === 2) this.target.push('    and eax, 0xffff');
      }
      this.rep(`${name}.${f}`, 'eax', want);
    }
    return this;
  }

  /** Report the 32-bit word at `addr` as `name` (expected `want`; undefined: report only). */
  read(name: string, addr: number | string, want?: number): this {
    this.target.push(`    mov eax, [${addr}]`);
    this.rep(name, 'eax', want);
    return this;
  }

  /** Report a register or immediate as `name`. */
  value(name: string, what: string, want?: number): this { this.rep(name, what, want); return this; }

  /** `vmfunc` with eax = leaf, ecx = index; `ud`: the test expects #UD on it (the handler skips it). */
  vmfunc(leaf: number, idx: number, ud: boolean): this {
    const l = `vmf_${this.nLabel++}`;
    this.target.push(`    mov eax, ${leaf}`, `    mov ecx, ${idx}`, `${l}:`, '    vmfunc');
    if (ud) this.udLabels.push(l);
    return this;
  }

  /**
   * Touch every page these programs use (code, structs, IDT, both vCPUs' stacks) in `view`, so each view
   * holds them before #VE is enabled: whether a first-touch fill of a not-present entry could itself be a
   * convertible violation is left open by §6 (the zeroed root table note), and these tests do not depend on it.
   */
  warm(view: number): this {
    const n = this.nLabel++;
    if (view !== 0) this.hc(`warm${n}.switch`, op.switchP2m(view), 0);
    for (const gfn of [0, 1, 2, 3, 4, 5, 6, 7, STRUCTS >> 12, (STRUCTS >> 12) + 1, IDT >> 12, 0xfe, 0xff]) {
      this.target.push(`    mov eax, [${gfn << 12}]`);
    }
    if (view !== 0) this.hc(`warm${n}.back`, op.switchP2m(0), 0);
    return this;
  }

  /** Extra data lines (placed in the data area after the structs). */
  blob(lines: string[]): this { this.data.push(...lines); return this; }

  build(): string {
    return [
      `.equ RAM_TOP, ${RAM_TOP}`,
      '_start:',
      `    lidt ${IDT}`,
      ...(this.other.length ? ['    mov eax, ROLE', '    cmp eax, 0', '    jne other_domain'] : []),
      ...(this.vcpu1.length ? ['    cmp esp, RAM_TOP            ; vCPU i starts with esp = RAM top - i * 4 KiB', '    jne vcpu1_main'] : []),
      ...this.code,
      '    mov ebx, 0',
      '    magic 0',
      '',
      '; #UD: report the pc the delivery pushed (flags first, then pc), then step over the 8-byte',
      '; instruction, since #UD (and Xen\'s #UD after a VMFUNC exit) leaves pc on it.',
      'ud_handler:',
      '    push ebx',
      '    push ecx',
      '    mov ecx, [esp+8]',
      `    mov ebx, ${KEY_UD}`,
      '    magic 1',
      '    mov ecx, [esp+8]',
      '    add ecx, 8',
      '    mov [esp+8], ecx',
      '    pop ecx',
      '    pop ebx',
      '    iret',
      '',
      '; #VE: none of these tests expects one; report where it hit and retry (the busy word stays set, so',
      '; the retry is an ordinary EPT violation).',
      've_handler:',
      '    push ebx',
      '    push ecx',
      '    mov ecx, [esp+8]',
      `    mov ebx, ${KEY_VE}`,
      '    magic 1',
      '    pop ecx',
      '    pop ebx',
      '    iret',
      '',
      ...(this.vcpu1.length ? ['vcpu1_main:', ...this.vcpu1,
        '    hlt                         ; IF=0: parks this vCPU for good', 'vcpu1_park:', '    jmp vcpu1_park'] : []),
      ...(this.other.length ? ['other_domain:', ...this.other, '    mov ebx, 0', '    magic 0'] : []),
      `.org ${STRUCTS}`,
      ...this.data,
      `.org ${IDT + 6 * 4}`,
      '    .word ud_handler',
      `.org ${IDT + 20 * 4}`,
      '    .word ve_handler',
      `.org ${GFN_A << 12}`,
      `    .word ${WORD_A}`,
      `.org ${GFN_B << 12}`,
      `    .word ${WORD_B}`,
      '',
    ].join('\n');
  }

  /** What the run should report: every named step, and the #UD list (faulting pcs, in order). */
  want(src: string): Record<string, unknown> {
    const labels = assemble(src, 'prog.s', new Map([['ROLE', 0]])).labels;
    return {
      domain: { state: 'shutdown', exit_code: 0, crash: null },
      ...this.wantMap,
      ud: this.udLabels.map((l) => labels.get(l)),
      ve: [],
    };
  }

  /** What the run did report (`domain`: the domain name in the scenario). */
  got(r: RunReport, domain = 'guest'): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const d = r.domains.find((x) => x.name === domain);
    out.domain = { state: d?.state, exit_code: d?.exit_code, crash: d?.crash };
    const ud: number[] = [];
    const ve: number[] = [];
    for (const x of r.reports) {
      if (x.domain !== domain) continue;
      if (x.key === KEY_UD) { ud.push(x.value); continue; }
      if (x.key === KEY_VE) { ve.push(x.value); continue; }
      const name = this.names[x.key - 1] ?? `key${x.key}`;
      if (name in out) out[name] = [out[name], x.value].flat(); // reported twice: show both
      else out[name] = x.value;
    }
    // Only the steps with an expectation take part in the comparison.
    for (const k of Object.keys(out)) if (k !== 'domain' && !(k in this.wantMap)) delete out[k];
    out.ud = ud;
    out.ve = ve;
    return out;
  }
}

const MODES = ['disabled', 'mixed', 'external', 'limited'] as const;
type Mode = (typeof MODES)[number];

function opts(mode: Mode, extra: GuestOpts = {}): GuestOpts {
  return {
    engine: 'serial', seed: 1, pcpus: 1, vcpus: 1, memoryKb: RAM_TOP >> 10, maxInstructions: 2_000_000,
    ...extra,
    domainExtra: [`altp2m = "${mode}"`, ...(extra.domainExtra ?? [])],
  };
}

/** Run the program and compare every report with the table's expectation. */
async function check(g: Guest, o: GuestOpts, domain = 'guest'): Promise<RunReport> {
  const src = g.build();
  const r = await runGuest(src, o);
  expect(g.got(r, domain), `outcome ${r.outcome} ${r.reason ?? ''}`).toEqual(g.want(src));
  return r;
}

/**
 * The result of a sub-op while altp2m is not active, by the order of the common checks (§2): get/set_domain_state
 * skip the "not active" check and meet the mode check (disabled: -EINVAL) and XSM (§1: only mixed lets the
 * guest call them; limited allows only vcpu_enable_notify, which is not one of them); every other cmd stops at
 * "not active" with -EOPNOTSUPP before the mode is even looked at.
 */
function inactiveResult(mode: Mode, cmd: number): number {
  if (cmd !== CMD.get_domain_state && cmd !== CMD.set_domain_state) return EOPNOTSUPP;
  if (mode === 'disabled') return EINVAL;
  return mode === 'mixed' ? 0 : EPERM;
}

/** A plausible, otherwise valid call of each sub-op (view 1, scratch gfn G). */
function sample(cmd: number): Hc {
  switch (cmd) {
    case CMD.get_domain_state: return op.getDomainState();
    case CMD.set_domain_state: return op.setDomainState(1);
    case CMD.vcpu_enable_notify: return op.enableNotify(0, VE_GFN);
    case CMD.create_p2m: return op.createP2m(ACC.rwx);
    case CMD.destroy_p2m: return op.destroyP2m(1);
    case CMD.switch_p2m: return op.switchP2m(0);
    case CMD.set_mem_access: return op.setMemAccess(0, ACC.rwx, G);
    case CMD.change_gfn: return op.changeGfn(0, GFN_A, INV);
    case CMD.set_mem_access_multi: return op.setMemAccessMulti(0, 1, 0, 'multi_pfns0', 'multi_acc0');
    case CMD.set_suppress_ve: return op.setSve(0, 1, G);
    case CMD.get_suppress_ve: return op.getSve(0, G);
    case CMD.get_mem_access: return op.getMemAccess(0, G);
    case CMD.vcpu_disable_notify: return op.disableNotify(0);
    case CMD.get_p2m_idx: return op.getP2mIdx(0);
    case CMD.set_suppress_ve_multi: return op.setSveMulti(0, 1, G, G);
    case CMD.set_visibility: return op.setVisibility(0, 1);
    default: throw new Error(`cmd ${cmd}`);
  }
}
const MULTI_SAMPLE_DATA = ['    .align 8', 'multi_pfns0:', `    .word ${G}, 0`, 'multi_acc0:', `    .byte ${ACC.rwx}`];
const ALL_CMDS = Object.values(CMD);

// ---- 1. every sub-op in every mode -----------------------------------------------------------------------

describe.each(MODES)('altp2m = "%s": every sub-op, before and after set_domain_state(1)', (mode) => {
  it('each sub-op gives the mode table\'s result; only mixed mode lets the guest activate and use altp2m', async () => {
    const g = new Guest().blob(MULTI_SAMPLE_DATA);
    // Not active yet: the "not active" check comes before the mode check for all but get/set_domain_state.
    for (const cmd of ALL_CMDS) {
      if (cmd === CMD.set_domain_state) continue;
      const h = sample(cmd);
      g.hc(`inactive.${cmd}`, h, inactiveResult(mode, cmd), cmd === CMD.get_domain_state && mode === 'mixed' ? { state: 0 } : {});
    }
    g.hc('activate', op.setDomainState(1), inactiveResult(mode, CMD.set_domain_state));
    const on = mode === 'mixed';
    g.hc('state', op.getDomainState(), on ? 0 : inactiveResult(mode, CMD.get_domain_state), on ? { state: 1 } : {});
    // Then one successful call of every sub-op (mixed), or the same refusal as before (the others: the guest
    // could not activate altp2m, so nothing changed).
    const r = (cmd: number, ok: number = 0) => (on ? ok : inactiveResult(mode, cmd));
    const ok = (outs: Record<string, number>) => (on ? outs : {});
    g.hc('create', op.createP2m(ACC.rwx), r(CMD.create_p2m), ok({ view: 1 }))
      .hc('visible', op.setVisibility(1, 1), r(CMD.set_visibility))
      .hc('switch1', op.switchP2m(1), r(CMD.switch_p2m))
      .hc('idx', op.getP2mIdx(0), r(CMD.get_p2m_idx), ok({ idx: 1 }))
      .hc('switch0', op.switchP2m(0), r(CMD.switch_p2m))
      .hc('setacc', op.setMemAccess(1, ACC.rw, G), r(CMD.set_mem_access))
      .hc('getacc', op.getMemAccess(1, G), r(CMD.get_mem_access), ok({ access: ACC.rw }))
      .hc('multi', op.setMemAccessMulti(1, 1, 0, 'multi_pfns0', 'multi_acc0'), r(CMD.set_mem_access_multi))
      .hc('setsve', op.setSve(1, 0, G + 1), r(CMD.set_suppress_ve))
      .hc('getsve', op.getSve(1, G + 1), r(CMD.get_suppress_ve), ok({ sve: 0 }))
      .hc('svemulti', op.setSveMulti(1, 1, G + 1, G + 1), r(CMD.set_suppress_ve_multi), ok({ first_error: 0 }))
      .hc('change', op.changeGfn(1, GFN_A, GFN_B), r(CMD.change_gfn))
      .warm(0)
      .hc('enable', op.enableNotify(0, VE_GFN), r(CMD.vcpu_enable_notify))
      .hc('disable', op.disableNotify(0), r(CMD.vcpu_disable_notify))
      .hc('destroy', op.destroyP2m(1), r(CMD.destroy_p2m))
      .hc('deactivate', op.setDomainState(0), r(CMD.set_domain_state))
      .hc('state_after', op.getDomainState(), r(CMD.get_domain_state), ok({ state: 0 }));
    await check(g, opts(mode));
  });

  it('common checks: copy fault, version and pads, unknown cmd, unknown domain, in that order', async () => {
    const g = new Guest();
    const get = op.getDomainState();
    g.hc('past_ram', { ...get, at: RAM_TOP + 0x1000 }, EFAULT)
      // The 80 bytes start in RAM and run past its end: the copy still fails.
      .hc('straddles_end', { ...get, at: RAM_TOP - 40 }, EFAULT)
      .hc('version0', { ...get, version: 0 }, EINVAL)
      .hc('version2', { ...get, version: 2 }, EINVAL)
      .hc('pad1', { ...get, pad1: 1 }, EINVAL)
      .hc('pad2', { ...get, pad2: 0x80000000 }, EINVAL)
      // The version and pads are checked before the cmd is decoded (§2 check order).
      .hc('version2_badcmd', { ...op.raw(99), version: 2 }, EINVAL)
      .hc('pad1_badcmd', { ...op.raw(0), pad1: 1 }, EINVAL)
      .hc('cmd0', op.raw(0), EOPNOTSUPP)
      .hc('cmd17', op.raw(17), EOPNOTSUPP)
      .hc('cmd_huge', op.raw(0x80000001), EOPNOTSUPP)
      // The cmd is decoded before the domain is looked up ...
      .hc('badcmd_baddom', { ...op.raw(17), domain: 9 }, EOPNOTSUPP)
      // ... and the domain before "not active", the mode and XSM.
      .hc('baddom_get', { ...get, domain: 9 }, ESRCH)
      .hc('baddom_set', { ...op.setDomainState(1), domain: 9 }, ESRCH)
      .hc('baddom_create', { ...op.createP2m(ACC.rwx), domain: 9 }, ESRCH)
      .hc('baddom_7fef', { ...get, domain: 0x7fef }, ESRCH)
      // The guest's own numeric domid means the same as DOMID_SELF.
      .hc('own_domid_get', { ...get, domain: DOMID_GUEST }, inactiveResult(mode, CMD.get_domain_state), mode === 'mixed' ? { state: 0 } : {})
      .hc('own_domid_create', { ...op.createP2m(ACC.rwx), domain: DOMID_GUEST }, EOPNOTSUPP);
    await check(g, opts(mode));
  });

  it('naming another existing domain: -EPERM (XSM) except in disabled mode (-EINVAL); the other domain is untouched', async () => {
    // Two domains in the same mode run this program; ROLE tells them apart. The second one waits long enough for
    // the first to finish, then reads its own state.
    const g = new Guest();
    const refused = mode === 'disabled' ? EINVAL : EPERM;
    g.hc('other_get', { ...op.getDomainState(), domain: DOMID_OTHER }, refused)
      .hc('other_set', { ...op.setDomainState(1), domain: DOMID_OTHER }, refused)
      // The target is not active: that check comes before the mode and XSM.
      .hc('other_create', { ...op.createP2m(ACC.rwx), domain: DOMID_OTHER }, EOPNOTSUPP)
      .hc('third', { ...op.getDomainState(), domain: 3 }, ESRCH);
    g.onOtherDomain(() => {
      g.asm(['    mov esi, 200000', 'other_wait:', '    dec esi', '    jnz other_wait'].join('\n'))
        .hc('other_self_state', op.getDomainState(), inactiveResult(mode, CMD.get_domain_state), mode === 'mixed' ? { state: 0 } : {});
    });
    const o = opts(mode, {
      pcpus: 2,
      domainExtra: [
        'defines = { ROLE = 0 }', '',
        '[[domain]]', 'name = "other"', 'vcpus = 1', `memory_kb = ${RAM_TOP >> 10}`, 'program = "prog.s"',
        'cpus = "all"', `altp2m = "${mode}"`, 'defines = { ROLE = 1 }',
      ],
    });
    const src = g.build();
    const r = await runGuest(src, o);
    const want = g.want(src);
    const part = (mine: boolean) => Object.fromEntries(Object.entries(want)
      .filter(([k]) => k === 'domain' || k === 'ud' || k === 've' || k.startsWith('other_self') !== mine));
    expect(g.got(r, 'guest'), `${r.outcome} ${r.reason ?? ''}`).toEqual(part(true));
    expect(g.got(r, 'other'), `${r.outcome} ${r.reason ?? ''}`).toEqual(part(false));
  });
});

// ---- 1b. each sub-op's own success and error paths (mixed mode, after activation) -------------------------

describe('mixed mode: each sub-op, success and every guest-reachable error', () => {
  it('get/set_domain_state: activate, repeat is a no-op, deactivate wipes every view', async () => {
    const g = new Guest()
      .hc('get0', op.getDomainState(), 0, { state: 0 })
      .hc('off_when_off', op.setDomainState(0), 0)
      .hc('get_still0', op.getDomainState(), 0, { state: 0 })
      .hc('on', op.setDomainState(1), 0)
      .hc('get1', op.getDomainState(), 0, { state: 1 })
      .hc('on_again', op.setDomainState(1), 0)
      .hc('create1', op.createP2m(ACC.rwx), 0, { view: 1 })
      .hc('create2', op.createP2m(ACC.rwx), 0, { view: 2 })
      .hc('off', op.setDomainState(0), 0)
      .hc('get_off', op.getDomainState(), 0, { state: 0 })
      .hc('create_off', op.createP2m(ACC.rwx), EOPNOTSUPP)
      .hc('idx_off', op.getP2mIdx(0), EOPNOTSUPP)
      .hc('on2', { ...op.setDomainState(1), domain: DOMID_GUEST }, 0)
      // Every view was wiped when altp2m went off: the first new view is slot 1 again, with its own default.
      .hc('create_again', op.createP2m(ACC.rx), 0, { view: 1 })
      .hc('default_again', op.getMemAccess(1, INV), 0, { access: ACC.rx })
      .hc('view2_gone', op.switchP2m(2), EINVAL)
      .hc('idx_on', op.getP2mIdx(0), 0, { idx: 0 });
    await check(g, opts('mixed'));
  });

  it('vcpu_enable_notify / vcpu_disable_notify (2 vCPUs)', async () => {
    const g = new Guest()
      .hc('on', op.setDomainState(1), 0)
      .warm(0)
      .hc('en_pad', op.enableNotify(0, VE_GFN, 1), EINVAL)
      .hc('en_vcpu2', op.enableNotify(2, VE_GFN), EINVAL)
      .hc('en_vcpu_huge', op.enableNotify(0x80000000, VE_GFN), EINVAL)
      .hc('en_past_ram', op.enableNotify(0, GFN_PAST_RAM), EINVAL)
      .hc('en_far', op.enableNotify(0, 0x12345), EINVAL)
      .hc('en_apic', op.enableNotify(0, APIC_GFN), EINVAL)
      .hc('en_ok', op.enableNotify(0, VE_GFN), 0)
      .hc('en_twice', op.enableNotify(0, VE_GFN), EEXIST)
      // "Already enabled" is checked before the gfn.
      .hc('en_twice_badgfn', op.enableNotify(0, GFN_PAST_RAM), EEXIST)
      // Any vCPU of the domain may be named, not only the caller.
      .hc('en_vcpu1', op.enableNotify(1, VE_GFN2), 0)
      .hc('en_vcpu1_twice', op.enableNotify(1, VE_GFN2), EEXIST)
      .hc('dis_vcpu2', op.disableNotify(2), EINVAL)
      .hc('dis_ok', op.disableNotify(0), 0)
      .hc('dis_none', op.disableNotify(0), 0)
      .hc('en_after_dis', op.enableNotify(0, VE_GFN), 0)
      .hc('dis_vcpu1', op.disableNotify(1), 0)
      .hc('dis_vcpu1_none', op.disableNotify(1), 0);
    g.onVcpu1(() => { /* parks at once (hlt with IF=0) */ g.asm('    nop'); });
    await check(g, opts('mixed', { vcpus: 2 }));
  });

  it('create_p2m / destroy_p2m: lowest free slot, -EINVAL for a bad access, -EBUSY for 0, invalid, in use', async () => {
    const g = new Guest()
      .hc('on', op.setDomainState(1), 0)
      .hc('c_bad_access', op.createP2m(ACC_BAD), EINVAL)
      .hc('c_bad_access_ffff', op.createP2m(0xffff), EINVAL)
      .hc('c1', op.createP2m(ACC.rwx), 0, { view: 1 })
      .hc('c2', op.createP2m(ACC.rx2rw), 0, { view: 2 })
      // XENMEM_access_default: the host p2m's default access (rwx).
      .hc('c3', op.createP2m(ACC.default), 0, { view: 3 })
      .hc('c4', op.createP2m(ACC.n), 0, { view: 4 })
      .hc('d1_default', op.getMemAccess(1, INV), 0, { access: ACC.rwx })
      .hc('d2_default', op.getMemAccess(2, INV), 0, { access: ACC.rx2rw })
      .hc('d3_default', op.getMemAccess(3, INV), 0, { access: ACC.rwx })
      .hc('d4_default', op.getMemAccess(4, INV), 0, { access: ACC.n })
      .hc('x0', op.destroyP2m(0), EBUSY)
      .hc('x_nr', op.destroyP2m(10), EBUSY)
      .hc('x_600', op.destroyP2m(600), EBUSY)
      .hc('x_invalid', op.destroyP2m(7), EBUSY)
      .hc('x2', op.destroyP2m(2), 0)
      .hc('x2_again', op.destroyP2m(2), EBUSY)
      .hc('x2_gone', op.getMemAccess(2, INV), EINVAL)
      .hc('c_reuse2', op.createP2m(ACC.rwx), 0, { view: 2 })
      .hc('c5', op.createP2m(ACC.rwx), 0, { view: 5 })
      .hc('x1', op.destroyP2m(1), 0)
      .hc('x3', op.destroyP2m(3), 0)
      .hc('c_reuse1', op.createP2m(ACC.rwx), 0, { view: 1 })
      .hc('c_reuse3', op.createP2m(ACC.rwx), 0, { view: 3 })
      .hc('c6', op.createP2m(ACC.rwx), 0, { view: 6 })
      // In use (switch_p2m put the vCPU there): busy until the vCPU leaves.
      .hc('s5', op.switchP2m(5), 0)
      .hc('x5_in_use', op.destroyP2m(5), EBUSY)
      .hc('s0', op.switchP2m(0), 0)
      .hc('x5', op.destroyP2m(5), 0);
    await check(g, opts('mixed'));
  });

  it('create_p2m with no free slot: -EINVAL (altp2m_count = 3 and 1)', async () => {
    const g3 = new Guest()
      .hc('on', op.setDomainState(1), 0)
      .hc('c1', op.createP2m(ACC.rwx), 0, { view: 1 })
      .hc('c2', op.createP2m(ACC.rwx), 0, { view: 2 })
      .hc('c_full', op.createP2m(ACC.rwx), EINVAL)
      .hc('x_nr', op.destroyP2m(3), EBUSY)
      .hc('s_nr', op.switchP2m(3), EINVAL)
      .hc('x1', op.destroyP2m(1), 0)
      .hc('c_again', op.createP2m(ACC.rwx), 0, { view: 1 });
    await check(g3, opts('mixed', { domainExtra: ['altp2m_count = 3'] }));
    const g1 = new Guest()
      .hc('on', op.setDomainState(1), 0)
      .hc('c_full', op.createP2m(ACC.rwx), EINVAL)
      .hc('x1', op.destroyP2m(1), EBUSY)
      .hc('s1', op.switchP2m(1), EINVAL)
      .hc('s0', op.switchP2m(0), 0)
      .hc('idx', op.getP2mIdx(0), 0, { idx: 0 });
    await check(g1, opts('mixed', { domainExtra: ['altp2m_count = 1'] }));
  });

  it('switch_p2m switches every vCPU; -EINVAL out of range, invalid or hidden; get_p2m_idx', async () => {
    const g = new Guest()
      .hc('idx_inactive', op.getP2mIdx(0), EOPNOTSUPP)
      .hc('on', op.setDomainState(1), 0)
      .hc('idx0', op.getP2mIdx(0), 0, { idx: 0 })
      .hc('idx0_v1', op.getP2mIdx(1), 0, { idx: 0 })
      .hc('idx_bad_vcpu', op.getP2mIdx(2), EINVAL)
      .hc('idx_huge_vcpu', op.getP2mIdx(0xffffffff), EINVAL)
      .hc('c1', op.createP2m(ACC.rwx), 0, { view: 1 })
      .hc('s1', op.switchP2m(1), 0)
      .hc('idx1', op.getP2mIdx(0), 0, { idx: 1 })
      .hc('idx1_v1', op.getP2mIdx(1), 0, { idx: 1 })
      .hc('s_nr', op.switchP2m(10), EINVAL)
      .hc('s_600', op.switchP2m(600), EINVAL)
      .hc('s_invalid', op.switchP2m(4), EINVAL)
      .hc('idx_still1', op.getP2mIdx(0), 0, { idx: 1 })
      .hc('s0', op.switchP2m(0), 0)
      .hc('hide1', op.setVisibility(1, 0), 0)
      .hc('s1_hidden', op.switchP2m(1), EINVAL)
      .hc('idx_after_hidden', op.getP2mIdx(0), 0, { idx: 0 })
      .hc('show1', op.setVisibility(1, 1), 0)
      .hc('s1_shown', op.switchP2m(1), 0)
      .hc('idx_shown', op.getP2mIdx(1), 0, { idx: 1 })
      .hc('s0_end', op.switchP2m(0), 0)
      .hc('idx_end', op.getP2mIdx(1), 0, { idx: 0 });
    g.onVcpu1(() => { g.asm('    nop'); });
    await check(g, opts('mixed', { vcpus: 2 }));
  });

  it('set_visibility: -EINVAL for a pad or an invalid view; hidden views refuse switch_p2m, view 0 included', async () => {
    const g = new Guest()
      .hc('on', op.setDomainState(1), 0)
      .hc('c1', op.createP2m(ACC.rwx), 0, { view: 1 })
      .hc('v_pad', op.setVisibility(1, 0, 1), EINVAL)
      .hc('v_invalid', op.setVisibility(5, 0), EINVAL)
      .hc('v_nr', op.setVisibility(10, 0), EINVAL)
      .hc('v_600', op.setVisibility(600, 1), EINVAL)
      .hc('hide1', op.setVisibility(1, 0), 0)
      .hc('hide1_again', op.setVisibility(1, 0), 0)
      .hc('s1', op.switchP2m(1), EINVAL)
      .hc('hide0', op.setVisibility(0, 0), 0)
      .hc('s0_hidden', op.switchP2m(0), EINVAL)
      .hc('show0', op.setVisibility(0, 1), 0)
      .hc('s0', op.switchP2m(0), 0)
      // A hidden view is still valid: it can be destroyed, and is invalid afterwards.
      .hc('x1_hidden', op.destroyP2m(1), 0)
      .hc('show1_gone', op.setVisibility(1, 1), EINVAL);
    await check(g, opts('mixed'));
  });

  it('set_mem_access / get_mem_access', async () => {
    const g = new Guest()
      .hc('on', op.setDomainState(1), 0)
      .hc('c1', op.createP2m(ACC.rx), 0, { view: 1 })
      .hc('g_default', op.getMemAccess(1, INV), 0, { access: ACC.rx })
      .hc('g_host_default', op.getMemAccess(0, INV), 0, { access: ACC.rwx })
      // The view reads only its own entries: nothing is filled yet.
      .hc('g_unfilled', op.getMemAccess(1, G), ESRCH)
      .hc('g_host', op.getMemAccess(0, G), 0, { access: ACC.rwx })
      .hc('g_pad', op.getMemAccess(1, G, 1), EINVAL)
      .hc('g_invalid', op.getMemAccess(4, G), EINVAL)
      .hc('g_600', op.getMemAccess(600, INV), EINVAL)
      .hc('s_pad', op.setMemAccess(1, ACC.r, G, 1), EINVAL)
      .hc('s_invalid', op.setMemAccess(4, ACC.r, G), EINVAL)
      .hc('s_600', op.setMemAccess(600, ACC.r, G), EINVAL)
      .hc('s_bad_access', op.setMemAccess(1, ACC_BAD, G), EINVAL)
      .hc('s_r', op.setMemAccess(1, ACC.r, G), 0)
      .hc('g_r', op.getMemAccess(1, G), 0, { access: ACC.r })
      .hc('g_host_untouched', op.getMemAccess(0, G), 0, { access: ACC.rwx })
      .hc('s_rx2rw', op.setMemAccess(1, ACC.rx2rw, G + 1), 0)
      .hc('g_rx2rw', op.getMemAccess(1, G + 1), 0, { access: ACC.rx2rw })
      .hc('s_n2rwx', op.setMemAccess(1, ACC.n2rwx, G + 2), 0)
      .hc('g_n2rwx', op.getMemAccess(1, G + 2), 0, { access: ACC.n2rwx })
      // A gfn with no RAM behind it: the prepopulate path quietly returns 0.
      .hc('s_past_ram', op.setMemAccess(1, ACC.r, GFN_PAST_RAM), 0)
      // gfn ~0 sets the *host* default access, even when a view is named.
      .hc('s_default_via_view', op.setMemAccess(1, ACC.x, INV), 0)
      .hc('g_view_default_kept', op.getMemAccess(1, INV), 0, { access: ACC.rx })
      .hc('g_host_default_x', op.getMemAccess(0, INV), 0, { access: ACC.x })
      .hc('c2_default', op.createP2m(ACC.default), 0, { view: 2 })
      .hc('g2_default', op.getMemAccess(2, INV), 0, { access: ACC.x })
      .hc('s_host_default', op.setMemAccess(0, ACC.rwx, INV), 0)
      .hc('g_host_default_back', op.getMemAccess(0, INV), 0, { access: ACC.rwx })
      // A gfn view 1 fills lazily on first touch gets the view's default access and SVE = 1; a write the rx
      // entry refuses (no listener, access_required off) relaxes it to rwx and goes on. (The hypercall structs'
      // pages are made rwx in view 1 first: which p2m Xen copies them through is not what this tests.)
      .hc('structs_rwx0', op.setMemAccess(1, ACC.rwx, STRUCTS >> 12), 0)
      .hc('structs_rwx1', op.setMemAccess(1, ACC.rwx, (STRUCTS >> 12) + 1), 0)
      .hc('s1', op.switchP2m(1), 0)
      .read('touch', `${(G + 3) << 12}`, 0)
      .hc('g_filled', op.getMemAccess(1, G + 3), 0, { access: ACC.rx })
      .hc('sve_filled', op.getSve(1, G + 3), 0, { sve: 1 })
      .asm(`    mov eax, 0x5a5a0003\n    mov [${(G + 3) << 12}], eax`)
      .read('written', `${(G + 3) << 12}`, 0x5a5a0003)
      .hc('g_relaxed', op.getMemAccess(1, G + 3), 0, { access: ACC.rwx })
      .hc('s0', op.switchP2m(0), 0)
      .read('host_sees_write', `${(G + 3) << 12}`, 0x5a5a0003);
    await check(g, opts('mixed'));
  });

  it('set_mem_access_multi: pad, opaque > nr, invalid view, bad access stops, copy faults, opaque starts, > 64 elements', async () => {
    const K = 0x80; // 100 gfns from here
    const g = new Guest().blob([
      '    .align 8',
      'pfns3:', `    .word ${G}, 0, ${G + 1}, 0, ${G + 2}, 0`,
      'acc3:', `    .byte ${ACC.r}, ${ACC.rw}, ${ACC.rx}`,
      '    .align 8',
      'pfnsH:', `    .word ${G + 4}, 0, ${G + 5}, 0, ${G + 6}, 0`,
      'accH:', `    .byte ${ACC.r}, ${ACC.r}, ${ACC.r}`,
      '    .align 8',
      'pfnsJ:', `    .word ${G + 8}, 0, ${G + 9}, 0, ${G + 10}, 0`,
      'accJ:', `    .byte ${ACC.x}, ${ACC_BAD}, ${ACC.x}`,
      '    .align 8',
      'pfnsL:', `    .word ${G + 12}, 0`,
      'accL:', `    .byte ${ACC.r}`,
      'accL7:', `    .byte ${ACC.rwx}`,
      '    .align 8',
      'pfnsK:', ...Array.from({ length: 100 }, (_, i) => `    .word ${K + i}, 0`),
      'accK:', `    .byte ${Array(100).fill(ACC.rw).join(', ')}`,
    ]);
    g.hc('on', op.setDomainState(1), 0)
      .hc('c1', op.createP2m(ACC.rwx), 0, { view: 1 })
      .hc('m_pad', op.setMemAccessMulti(1, 3, 0, 'pfns3', 'acc3', 1), EINVAL)
      .hc('m_opaque', op.setMemAccessMulti(1, 3, 4, 'pfns3', 'acc3'), EINVAL)
      .hc('m_invalid', op.setMemAccessMulti(4, 3, 0, 'pfns3', 'acc3'), EINVAL)
      .hc('m_nr0', op.setMemAccessMulti(1, 0, 0, 'pfns3', 'acc3'), 0)
      .hc('g_nr0', op.getMemAccess(1, G), ESRCH)
      .hc('m3', op.setMemAccessMulti(1, 3, 0, 'pfns3', 'acc3'), 0)
      .hc('g3_0', op.getMemAccess(1, G), 0, { access: ACC.r })
      .hc('g3_1', op.getMemAccess(1, G + 1), 0, { access: ACC.rw })
      .hc('g3_2', op.getMemAccess(1, G + 2), 0, { access: ACC.rx })
      // opaque is where a (restarted) call resumes: the elements before it are not touched.
      .hc('mH_opaque2', op.setMemAccessMulti(1, 3, 2, 'pfnsH', 'accH'), 0)
      .hc('gH_0', op.getMemAccess(1, G + 4), ESRCH)
      .hc('gH_1', op.getMemAccess(1, G + 5), ESRCH)
      .hc('gH_2', op.getMemAccess(1, G + 6), 0, { access: ACC.r })
      // A bad access value stops the loop with -EINVAL: earlier elements are applied, later ones not.
      .hc('mJ_bad', op.setMemAccessMulti(1, 3, 0, 'pfnsJ', 'accJ'), EINVAL)
      .hc('gJ_0', op.getMemAccess(1, G + 8), 0, { access: ACC.x })
      .hc('gJ_1', op.getMemAccess(1, G + 9), ESRCH)
      .hc('gJ_2', op.getMemAccess(1, G + 10), ESRCH)
      .hc('m_pfn_fault', op.setMemAccessMulti(1, 2, 0, RAM_TOP + 0x10000, 'acc3'), EFAULT)
      .hc('m_acc_fault', op.setMemAccessMulti(1, 2, 0, 'pfns3', RAM_TOP + 0x10000), EFAULT)
      // Past 64 elements Xen may preempt and restart the call (-ERESTART): the guest sees one call and 0.
      .hc('mK', op.setMemAccessMulti(1, 100, 0, 'pfnsK', 'accK'), 0)
      .hc('gK_0', op.getMemAccess(1, K), 0, { access: ACC.rw })
      .hc('gK_63', op.getMemAccess(1, K + 63), 0, { access: ACC.rw })
      .hc('gK_64', op.getMemAccess(1, K + 64), 0, { access: ACC.rw })
      .hc('gK_99', op.getMemAccess(1, K + 99), 0, { access: ACC.rw })
      .hc('gK_100', op.getMemAccess(1, K + 100), ESRCH)
      // View 0 is the host p2m.
      .hc('mL_host', op.setMemAccessMulti(0, 1, 0, 'pfnsL', 'accL'), 0)
      .hc('gL_host', op.getMemAccess(0, G + 12), 0, { access: ACC.r })
      .hc('mL_host_back', op.setMemAccessMulti(0, 1, 0, 'pfnsL', 'accL7'), 0)
      .hc('gL_host_back', op.getMemAccess(0, G + 12), 0, { access: ACC.rwx });
    await check(g, opts('mixed'));
  });

  it('change_gfn: pads, invalid view, -ESRCH without RAM, revert, SVE = 0 for the guest, slot 0 is not the host', async () => {
    const A = GFN_A << 12;
    const g = new Guest()
      .hc('on', op.setDomainState(1), 0)
      .hc('c1', op.createP2m(ACC.rwx), 0, { view: 1 })
      .hc('cg_pad1', op.changeGfn(1, GFN_A, GFN_B, 1), EINVAL)
      .hc('cg_pad2', op.changeGfn(1, GFN_A, GFN_B, 0, 1), EINVAL)
      .hc('cg_invalid', op.changeGfn(4, GFN_A, GFN_B), EINVAL)
      .hc('cg_600', op.changeGfn(600, GFN_A, GFN_B), EINVAL)
      .hc('cg_old_past_ram', op.changeGfn(1, GFN_PAST_RAM, GFN_B), ESRCH)
      .hc('cg_new_past_ram', op.changeGfn(1, GFN_A, GFN_PAST_RAM), ESRCH)
      .hc('cg_revert_nothing', op.changeGfn(1, GFN_A, INV), 0)
      // new_gfn's access comes from the view's own entry first.
      .hc('b_rx', op.setMemAccess(1, ACC.rx, GFN_B), 0)
      .hc('cg', op.changeGfn(1, GFN_A, GFN_B), 0)
      .hc('cg_sve', op.getSve(1, GFN_A), 0, { sve: 0 })
      .hc('cg_access', op.getMemAccess(1, GFN_A), 0, { access: ACC.rx })
      .hc('s1', op.switchP2m(1), 0)
      .read('a_in_1', A, WORD_B)
      .read('b_in_1', GFN_B << 12, WORD_B)
      .hc('s0', op.switchP2m(0), 0)
      .read('a_in_0', A, WORD_A)
      .hc('cg_revert', op.changeGfn(1, GFN_A, INV), 0)
      .hc('reverted_unfilled', op.getMemAccess(1, GFN_A), ESRCH)
      .hc('s1b', op.switchP2m(1), 0)
      .read('a_in_1_reverted', A, WORD_A)
      .hc('s0b', op.switchP2m(0), 0)
      // View 0 names altp2m slot 0 (the view every vCPU starts on), not the host p2m: a view created
      // afterwards fills from the host and still sees A.
      .hc('cg0', op.changeGfn(0, GFN_A, GFN_B), 0)
      .read('a_in_slot0', A, WORD_B)
      .hc('c2', op.createP2m(ACC.rwx), 0, { view: 2 })
      .hc('s2', op.switchP2m(2), 0)
      .read('a_in_2', A, WORD_A)
      .hc('s0c', op.switchP2m(0), 0)
      .read('a_in_slot0_again', A, WORD_B)
      .hc('cg0_revert', op.changeGfn(0, GFN_A, INV), 0)
      .read('a_in_slot0_reverted', A, WORD_A);
    await check(g, opts('mixed'));
  });

  it('set_suppress_ve / get_suppress_ve / set_suppress_ve_multi', async () => {
    const g = new Guest()
      .hc('on', op.setDomainState(1), 0)
      .hc('c1', op.createP2m(ACC.r), 0, { view: 1 })
      .hc('s_pad1', op.setSve(1, 0, G, 1), EINVAL)
      .hc('s_pad2', op.setSve(1, 0, G, 0, 1), EINVAL)
      .hc('s_invalid', op.setSve(4, 0, G), EINVAL)
      .hc('s_600', op.setSve(600, 0, G), EINVAL)
      .hc('s_past_ram', op.setSve(1, 0, GFN_PAST_RAM), ESRCH)
      .hc('g_unfilled', op.getSve(1, G), ESRCH)
      .hc('g_pad1', op.getSve(1, G, 1), EINVAL)
      .hc('g_pad2', op.getSve(1, G, 0, 1), EINVAL)
      .hc('g_invalid', op.getSve(4, G), EINVAL)
      .hc('s0', op.setSve(1, 0, G), 0)
      .hc('g0', op.getSve(1, G), 0, { sve: 0 })
      // The entry set_suppress_ve filled was copied from the host, with the host's access, not the view default.
      .hc('g0_access', op.getMemAccess(1, G), 0, { access: ACC.rwx })
      .hc('s1', op.setSve(1, 1, G), 0)
      .hc('g1', op.getSve(1, G), 0, { sve: 1 })
      // View 0 is the host p2m, whose entries start with SVE = 1.
      .hc('g_host', op.getSve(0, G + 1), 0, { sve: 1 })
      .hc('s_host0', op.setSve(0, 0, G + 1), 0)
      .hc('g_host0', op.getSve(0, G + 1), 0, { sve: 0 })
      .hc('s_host1', op.setSve(0, 1, G + 1), 0)
      .hc('m_pad1', op.setSveMulti(1, 0, G + 4, G + 7, 1), EINVAL)
      .hc('m_first_gt_last', op.setSveMulti(1, 0, G + 7, G + 4), EINVAL)
      .hc('m_invalid', op.setSveMulti(4, 0, G + 4, G + 7), EINVAL)
      .hc('m', op.setSveMulti(1, 0, G + 4, G + 7), 0, { first_error: 0 })
      .hc('gm_4', op.getSve(1, G + 4), 0, { sve: 0 })
      .hc('gm_7', op.getSve(1, G + 7), 0, { sve: 0 })
      .hc('gm_8', op.getSve(1, G + 8), ESRCH)
      // Per-gfn errors do not stop the loop; the first is recorded.
      .hc('m_end', op.setSveMulti(1, 0, GFN_PAST_RAM - 2, GFN_PAST_RAM + 1), 0,
        { first_error: ESRCH, first_error_gfn: GFN_PAST_RAM, first_error_gfn_hi: 0 })
      .hc('gm_end2', op.getSve(1, GFN_PAST_RAM - 2), 0, { sve: 0 })
      .hc('gm_end1', op.getSve(1, GFN_PAST_RAM - 1), 0, { sve: 0 });
    await check(g, opts('mixed'));
  });
});

// ---- 2. view index conventions ---------------------------------------------------------------------------

describe('view index conventions (mixed)', () => {
  it('slot 0 after set_domain_state(1), lowest free slot, -EBUSY for 0 and the current view, hidden, unfilled, default', async () => {
    const g = new Guest()
      .hc('idx_inactive', op.getP2mIdx(0), EOPNOTSUPP)
      .hc('en_inactive', op.enableNotify(0, VE_GFN), EOPNOTSUPP)
      .hc('on', op.setDomainState(1), 0)
      // Slot 0 exists and the vCPU is on it.
      .hc('idx0', op.getP2mIdx(0), 0, { idx: 0 })
      .hc('slot0_valid', op.setVisibility(0, 1), 0)
      .hc('slot0_switch', op.switchP2m(0), 0)
      .hc('slot0_default', op.getMemAccess(0, INV), 0, { access: ACC.rwx })
      .hc('slot0_destroy', op.destroyP2m(0), EBUSY)
      .hc('c1', op.createP2m(ACC.rwx), 0, { view: 1 })
      .hc('c2', op.createP2m(ACC.rwx), 0, { view: 2 })
      .hc('c3', op.createP2m(ACC.rwx), 0, { view: 3 })
      .hc('x2', op.destroyP2m(2), 0)
      .hc('c_lowest', op.createP2m(ACC.rwx), 0, { view: 2 })
      .hc('c4', op.createP2m(ACC.rwx), 0, { view: 4 })
      .hc('s3', op.switchP2m(3), 0)
      .hc('x3_current', op.destroyP2m(3), EBUSY)
      .hc('s0', op.switchP2m(0), 0)
      .hc('hide4', op.setVisibility(4, 0), 0)
      .hc('s4_hidden', op.switchP2m(4), EINVAL)
      .hc('idx_not_moved', op.getP2mIdx(0), 0, { idx: 0 })
      .hc('unfilled', op.getMemAccess(1, G), ESRCH)
      .hc('view_default', op.getMemAccess(1, INV), 0, { access: ACC.rwx })
      .hc('c_access12', op.createP2m(ACC_BAD), EINVAL)
      .warm(0)
      .warm(1)
      .hc('en_past_ram', op.enableNotify(0, GFN_PAST_RAM), EINVAL)
      .hc('en', op.enableNotify(0, VE_GFN), 0)
      .hc('en_twice', op.enableNotify(0, VE_GFN), EEXIST)
      // On view 1 by VMFUNC (no exit): the vmcall's own exit tells Xen, so the view is current and busy.
      .vmfunc(0, 1, false)
      .hc('idx_after_vmfunc', op.getP2mIdx(0), 0, { idx: 1 })
      .hc('x1_current', op.destroyP2m(1), EBUSY)
      .vmfunc(0, 0, false)
      .hc('idx_back', op.getP2mIdx(0), 0, { idx: 0 })
      .hc('x1', op.destroyP2m(1), 0);
    await check(g, opts('mixed'));
  });

  it('get_p2m_idx of another vCPU shows the view Xen knew at that vCPU\'s last exit (2 vCPUs, 2 pCPUs)', async () => {
    // vCPU 1 switches by VMFUNC and then spins without exiting: Xen has not seen the switch, so vCPU 0's
    // get_p2m_idx(1) still says 0. After vCPU 1 makes a vmcall (an exit), it says 1.
    // Flags in the data area: go (0 -> 1), switched, ask, done.
    const g = new Guest().blob(['    .align 8', 'f_go: .word 0', 'f_switched: .word 0', 'f_ask: .word 0', 'f_done: .word 0',
      '    .align 8', `v1_get: .word 1, ${CMD.get_domain_state}, ${DOMID_SELF}, 0`, '    .space 64']);
    const wait = (flag: string, l: string) => `${l}:\n    mov eax, [${flag}]\n    cmp eax, 0\n    jz ${l}`;
    g.hc('on', op.setDomainState(1), 0)
      .hc('c1', op.createP2m(ACC.rwx), 0, { view: 1 })
      .warm(0)
      .warm(1)
      .hc('en1', op.enableNotify(1, VE_GFN2), 0)
      .asm('    mov [f_go], 1')
      .asm(wait('f_switched', 'w_sw'))
      .hc('idx1_stale', op.getP2mIdx(1), 0, { idx: 0 })
      .asm('    mov [f_ask], 1')
      .asm(wait('f_done', 'w_done'))
      .hc('idx1_current', op.getP2mIdx(1), 0, { idx: 1 })
      .hc('x1_busy', op.destroyP2m(1), EBUSY);
    g.onVcpu1(() => {
      g.asm(wait('f_go', 'w_go'))
        .vmfunc(0, 1, false)
        .asm('    mov [f_switched], 1')
        .asm(wait('f_ask', 'w_ask'))
        .asm(`    mov eax, ${HYPERVISOR_hvm_op}\n    mov ebx, ${HVMOP_altp2m}\n    mov ecx, v1_get\n    vmcall   ; any exit will do`)
        .asm('    mov [f_done], 1')
        .asm('v1_spin:\n    jmp v1_spin');
    });
    await check(g, opts('mixed', { vcpus: 2, pcpus: 2 }));
  });
});

// ---- 3. VMFUNC -------------------------------------------------------------------------------------------

describe('VMFUNC leaf 0 from the guest (mixed)', () => {
  it('#UD until vcpu_enable_notify; then switches without an exit; #UD (after an exit) for leaf 1..63, ecx >= 512, invalid or hidden views', async () => {
    const A = GFN_A << 12;
    const g = new Guest()
      .hc('on', op.setDomainState(1), 0)
      .hc('c1', op.createP2m(ACC.rwx), 0, { view: 1 })
      .hc('cg', op.changeGfn(1, GFN_A, GFN_B), 0)
      .vmfunc(0, 0, true) // not enabled: #UD from the CPU, no exit
      .vmfunc(0, 1, true)
      .warm(0)
      .warm(1)
      .hc('en', op.enableNotify(0, VE_GFN), 0)
      .vmfunc(0, 1, false)
      .read('a_in_1', A, WORD_B) // the view really changed
      .hc('idx1', op.getP2mIdx(0), 0, { idx: 1 })
      .vmfunc(1, 0, true) // leaf 1: exit, Xen injects #UD
      .vmfunc(63, 0, true) // exit, #UD
      .vmfunc(64, 0, true) // eax >= 64: #UD from the CPU
      .vmfunc(0, 600, true) // ecx >= 512: exit, #UD
      .vmfunc(0, 512, true) // exit, #UD
      .vmfunc(0, 5, true) // a slot with no view: exit, #UD
      .read('a_still_1', A, WORD_B) // a refused VMFUNC leaves the view alone
      .vmfunc(0, 0, false)
      .read('a_in_0', A, WORD_A)
      .hc('hide1', op.setVisibility(1, 0), 0)
      .vmfunc(0, 1, true) // hidden: exit, #UD
      .read('a_hidden', A, WORD_A)
      .hc('show1', op.setVisibility(1, 1), 0)
      .vmfunc(0, 1, false)
      .read('a_shown', A, WORD_B)
      .vmfunc(0, 0, false)
      // disable_notify turns off #VE only: VMFUNC stays on while altp2m is active.
      .hc('dis', op.disableNotify(0), 0)
      .vmfunc(0, 1, false)
      .read('a_after_dis', A, WORD_B)
      .vmfunc(0, 0, false)
      // A new view is visible to VMFUNC at once; a destroyed one is not.
      .hc('c2', op.createP2m(ACC.rwx), 0, { view: 2 })
      .vmfunc(0, 2, false)
      .hc('idx2', op.getP2mIdx(0), 0, { idx: 2 })
      .vmfunc(0, 0, false)
      .hc('x2', op.destroyP2m(2), 0)
      .vmfunc(0, 2, true) // destroyed: exit, #UD
      // Turning altp2m off turns VMFUNC off; turning it on again does not turn it back on.
      .hc('off', op.setDomainState(0), 0)
      .vmfunc(0, 0, true)
      .hc('on2', op.setDomainState(1), 0)
      .vmfunc(0, 0, true)
      .warm(0) // the views were wiped
      .hc('en2', op.enableNotify(0, VE_GFN), 0)
      .vmfunc(0, 0, false)
      .hc('idx_end', op.getP2mIdx(0), 0, { idx: 0 });
    const r = await check(g, opts('mixed'));
    // Successful VMFUNCs and the CPU's own #UDs take no exit; leaf 1 and 63, ecx 600 and 512, slot 5, the hidden
    // view and the destroyed one do: 7 VMFUNC exits.
    expect((r.metrics.exits as Record<string, number>).vmfunc ?? 0).toBe(7);
  });

  it('in external and limited mode the guest cannot enable VMFUNC itself: #UD', async () => {
    for (const mode of ['external', 'limited', 'disabled'] as const) {
      const g = new Guest()
        .hc('en', op.enableNotify(0, VE_GFN), EOPNOTSUPP)
        .vmfunc(0, 0, true);
      await check(g, opts(mode));
    }
  });
});
