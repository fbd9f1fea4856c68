// `--freeze-on KIND[:CAUSE]`: the machine as it stood when the first matching finding was judged. Both
// engines stop every pCPU at a step (serial) or burst (threaded) boundary, take one frame per pCPU, and end
// the run. What only the pCPU's own thread holds (the loaded vCPU's registers, pc and view live in its
// CpuCore until the vCPU is descheduled) comes from `pcpuCoreFrame`, run on that thread; the LAPIC pages
// are shared memory and are read here by whoever builds the report.
import { UserError } from '../errors.js';
import { FINDING_KINDS, type FindingKind, type WatchedFinding } from '../oracles/findings.js';
import { REG_NAMES } from '../isa/opcodes.js';
import { cyclesToNs } from '../hw/clock.js';
import {
  APIC_MODE_X2APIC, LAPIC_BITMAP_REGS, LAPIC_ICR_HI, LAPIC_ICR_LO, LAPIC_IRR, LAPIC_ISR, LAPIC_SIM_MODE, LAPIC_SLOT_BYTES, lapicWord,
} from '../../shared/lapic.js';
import { PC_CLOCK_F64, PC_STATE, PS_IDLE, PS_RUNNING, PS_STOPPED, PS_WAIT_SIPI } from '../../shared/pcpu.js';
import { INVALID_ALTP2M, VCPU_STRIDE_WORDS, VC_DOMAIN, VC_ID } from '../../shared/vcpu.js';
import type { Pcpu } from '../hv/pcpu-loop.js';
import type { Machine } from '../machine.js';
import type { CodeReader } from '../trace/collector.js';

/** What `--freeze-on` waits for: a finding kind, and optionally one cause token of it. */
export interface FreezeSpec {
  kind: FindingKind;
  cause: string | null;
}

const CAUSE_RE = /^[a-z0-9_]+$/;

/** `KIND` or `KIND:CAUSE` (`--freeze-on`); bad input is one line (exit 2). */
export function parseFreezeOn(s: string): FreezeSpec {
  const i = s.indexOf(':');
  const kind = i < 0 ? s : s.slice(0, i);
  const cause = i < 0 ? null : s.slice(i + 1);
  if (!(FINDING_KINDS as readonly string[]).includes(kind)) {
    throw new UserError(`vcpulab sim: --freeze-on: '${kind}' is not a finding kind (${FINDING_KINDS.join(', ')})`);
  }
  if (cause !== null && !CAUSE_RE.test(cause)) {
    throw new UserError(`vcpulab sim: --freeze-on ${s}: the cause must be a cause token such as icr_window (lowercase letters, digits, _)`);
  }
  return { kind: kind as FindingKind, cause };
}

/** The part of a frame only the pCPU's thread can see: its loaded vCPU's core. Plain data (crosses comlink). */
export interface CoreFrame {
  pcpu: number;
  /** Global vCPU index loaded on the pCPU, -1 when none. */
  vcpu: number;
  pc: number;
  regs: number[];
  flags: number;
  /** The view (EPTP index) the core translates through; INVALID_ALTP2M for the host p2m. */
  view: number;
  clock: number;
}

/** Taken on the pCPU's own thread, between two steps. */
export function pcpuCoreFrame(p: Pcpu): CoreFrame {
  const c = p.core;
  const loaded = p.cur >= 0;
  return {
    pcpu: p.id, vcpu: p.cur, pc: loaded ? c.pc : 0, regs: loaded ? Array.from(c.R.subarray(0, REG_NAMES.length)) : [],
    flags: loaded ? c.flags : 0, view: loaded ? c.view : INVALID_ALTP2M, clock: c.clock,
  };
}

export interface LapicFrame {
  /** Vectors with their IRR / ISR bit set, as hex. */
  irr: string[];
  isr: string[];
  icr_lo: string;
  icr_hi: string;
  /** The ICR decoded: destination (an APIC ID; the shorthand, when one is set, overrides it), mode, vector. */
  icr: { destination: number; dest_mode: 'physical' | 'logical'; shorthand: string; mode: string; vector: string };
}

export interface PcpuFrame {
  pcpu: number;
  state: string;
  /** The pCPU's simulated clock at the freeze (pCPUs drift apart by up to --slack). */
  clock_ns: number;
  /** false: the pCPU's thread did not stop at a burst boundary in time; only shared memory is shown. */
  parked: boolean;
  /** The loaded vCPU, null when the pCPU ran none. */
  vcpu: { domain: string; vcpu: number; pc: string; insn: string | null; regs: Record<string, string>; flags: string; view: number | null } | null;
  lapic: LapicFrame;
  /** The loaded vCPU's virtual LAPIC (what vlapic, posted and ipiv designs deliver into). */
  vlapic: LapicFrame | null;
}

export interface FreezeReport {
  /** The --freeze-on value. */
  on: string;
  /** The occurrence that stopped the run. */
  finding: WatchedFinding;
  pcpus: PcpuFrame[];
}

const STATES: Readonly<Record<number, string>> = { [PS_RUNNING]: 'running', [PS_IDLE]: 'idle', [PS_STOPPED]: 'stopped', [PS_WAIT_SIPI]: 'wait-for-SIPI' };
const MODES = ['fixed', 'lowest', 'smi', 'reserved', 'nmi', 'init', 'sipi', 'extint'];
const SHORTHANDS = ['none', 'self', 'all', 'all-but-self'];

function hex(v: number): string { return '0x' + (v >>> 0).toString(16); }

/** IRR/ISR/ICR of the LAPIC page at word `base`. */
export function lapicFrame(lapic32: Int32Array, base: number): LapicFrame {
  const bits = (reg: number): string[] => {
    const out: string[] = [];
    for (let w = 0; w < LAPIC_BITMAP_REGS; w++) {
      const v = Atomics.load(lapic32, lapicWord(base, reg + w * LAPIC_SLOT_BYTES));
      for (let b = 0; b < 32; b++) if ((v >>> b) & 1) out.push(hex(w * 32 + b));
    }
    return out;
  };
  const lo = Atomics.load(lapic32, lapicWord(base, LAPIC_ICR_LO)), hi = Atomics.load(lapic32, lapicWord(base, LAPIC_ICR_HI));
  const x2 = Atomics.load(lapic32, lapicWord(base, LAPIC_SIM_MODE)) === APIC_MODE_X2APIC;
  return {
    irr: bits(LAPIC_IRR), isr: bits(LAPIC_ISR), icr_lo: hex(lo), icr_hi: hex(hi),
    icr: {
      destination: x2 ? hi >>> 0 : hi >>> 24, dest_mode: (lo & 0x800) !== 0 ? 'logical' : 'physical',
      shorthand: SHORTHANDS[(lo >>> 18) & 3], mode: MODES[(lo >>> 8) & 7], vector: hex(lo & 0xff),
    },
  };
}

/** One frame per pCPU: its core (null: the thread did not park) and the LAPIC pages it and its vCPU own. */
export function freezeReport(m: Machine, names: readonly string[], code: CodeReader, on: string, finding: WatchedFinding,
  cores: (CoreFrame | null)[]): FreezeReport {
  const pcpus: PcpuFrame[] = [];
  for (let id = 0; id < m.npcpus; id++) {
    const core = cores[id];
    const b = m.pcpuBase(id);
    const clock = core?.clock ?? m.pcF64[(b + PC_CLOCK_F64) >> 1];
    let vcpu: PcpuFrame['vcpu'] = null;
    if (core !== null && core.vcpu >= 0) {
      const vb = core.vcpu * VCPU_STRIDE_WORDS, dom = m.vc32[vb + VC_DOMAIN];
      const regs: Record<string, string> = {};
      core.regs.forEach((r, i) => { regs[REG_NAMES[i]] = hex(r); });
      vcpu = {
        domain: names[dom], vcpu: m.vc32[vb + VC_ID], pc: hex(core.pc), insn: code(dom, core.pc), regs, flags: hex(core.flags),
        view: core.view === INVALID_ALTP2M ? null : core.view,
      };
    }
    pcpus.push({
      pcpu: id, state: STATES[Atomics.load(m.pc32, b + PC_STATE)] ?? 'unknown', clock_ns: Math.round(cyclesToNs(clock) * 100) / 100,
      parked: core !== null, vcpu, lapic: lapicFrame(m.lapic32, m.plapicBase(id)),
      vlapic: core !== null && core.vcpu >= 0 ? lapicFrame(m.lapic32, m.vlapicBase(core.vcpu)) : null,
    });
  }
  return { on, finding: { ...finding }, pcpus };
}
