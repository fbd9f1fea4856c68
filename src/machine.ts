// Builds the simulated machine in SharedArrayBuffers (layouts in shared/) and attaches typed views
// to them. The main thread builds; every thread (main, pCPU workers, campaign workers) attaches.
import * as C from '../shared/machine.js';
import { ipiPathHwApic, APIC_GFN_NUMBER as APIC_GFN, IPI_PATH_XAPIC_PASSTHROUGH, DM_IPI_PATH, DM_VCPU_MAP_GPA, VCPU_MAP_ENTRY_WORDS, DOMAIN_STRIDE_WORDS, DM_DEAD_HALTED, DM_ENDED_BY, DM_FIRST_VCPU, DM_NVCPUS, DM_P2M_ROOT, DM_RAM_FRAMES, DM_STATE, DS_RUNNING } from '../shared/domain.js';
import { ACCESS_RW, ACCESS_RWX, P2MT_APIC_ACCESS, P2MT_MMIO_DIRECT, P2M_HDR_CAPACITY, P2M_HDR_NEXT, P2M_HDR_WORDS, P2M_LEAF_ENTRIES, P2M_LEAF_WORDS, P2M_ROOT_ENTRIES, P2MT_RAM_RW, p2mAttr } from '../shared/p2m.js';
import { PCPU_STRIDE_WORDS, PC_BELL_AT, PC_CURRENT, PC_PENDING, PC_STATE, PS_RUNNING } from '../shared/pcpu.js';
import { RING_STRIDE_WORDS } from '../shared/ring.js';
import { LAPIC_DFR, LAPIC_LDR, LAPIC_PAGE_WORDS, LAPIC_SVR } from '../shared/lapic.js';
import { genapicDfr, genapicLdr, genapicSelect } from './hv/genapic.js';
import { lapicReset, lapicWrite, lapicWriteX2apic } from './hw/lapic.js';
import {
  FL_FIXED, RS_RUNNABLE, VCPU_STRIDE_WORDS, VC_APIC_ID, VC_DOMAIN, VC_ID, VC_IDTR, VC_PC, VC_PCPU, VC_REGS,
  VC_RUNSTATE, VC_FLAGS, VC_AFFINITY, VC_CREDIT, VC_SOFT_AFFINITY,
} from '../shared/vcpu.js';
import { REG_ESP } from './isa/opcodes.js';
import { p2mAllocRoot, p2mSetEntry } from './hw/ept.js';
import {
  AD_ACCESS_REQUIRED, AD_APIC_VIEW, AD_EPTP, AD_EPT_SYNC, AD_HOST_DEFAULT_ACCESS, AD_MODE, AD_NR, AD_REALM_HI, AD_REALM_LO, AD_SECRET_HI,
  AD_SECRET_LO, AD_STRIDE_WORDS, AD_TRAMP_HI, AD_TRAMP_LO, AD_VISIBLE, ALTP2M_MODE_DISABLED, EPTP_INVALID, EPT_SYNC_XEN, MAX_VIEWS, VW_ROOT,
  altp2mBase, viewBase,
} from '../shared/altp2m.js';
import { VR_STRIDE_WORDS } from '../shared/vm-event.js';
import { INVALID_ALTP2M, VC_EPTP_INDEX, VC_P2MIDX, VC_VE_GFN } from '../shared/vcpu.js';
import { CREDIT_INIT } from './hv/sched/credit2.js';
import { assert } from './errors.js';

export const PAGE = 4096;
/** Spare frames beyond guest RAM (views, VE-info pages and device pages in later layers). */
export const SPARE_FRAMES = 64;
/** Host memory is addressed with Int32 byte offsets: keep it below 1 GiB. */
export const MAX_HOST_BYTES = 1 << 30;

export interface DomainSpec {
  name: string;
  vcpus: number;
  memoryKb: number;
  /** Program bytes, loaded at gpa 0. */
  image: Uint8Array;
  /** Address of `_start`. */
  entry: number;
  /** pCPUs this domain's vCPUs may run on (hard affinity, `cpus=`). */
  affinity: number[];
  /** Soft affinity (`cpus_soft=`), pCPU indices; empty = no preference. */
  softAffinity: number[];
  /** Per vCPU (`cpus = ["0", "1", ...]`): vCPU i's hard affinity; absent = `affinity` for every vCPU. */
  vcpuAffinity?: number[][];
  /** Per vCPU soft affinity (`cpus_soft = [...]`); absent = `softAffinity` for every vCPU. */
  vcpuSoftAffinity?: number[][];
  /** IPI_PATH_* (shared/domain.ts). */
  ipiPath: number;
  /** gpa of the published vCPU -> pCPU map, or -1. */
  vcpuMapGpa: number;
  /** ALTP2M_MODE_* and the number of view slots (altp2m_count; unused when disabled). Default: disabled. */
  altp2mMode?: number;
  altp2mCount?: number;
  /** EPT_SYNC_* (ept_sync). Default: Xen's. */
  eptSync?: number;
  /** With no vm_event listener, an access violation crashes the domain (xc_domain_set_access_required). */
  accessRequired?: boolean;
  /** Regions as inclusive gfn ranges, or null: the oracles ROGUE_VMFUNC and REALM_ESCAPE read them. */
  trampoline?: [number, number] | null;
  realm?: [number, number] | null;
  secret?: [number, number] | null;
  /** The view that maps the host xAPIC (xapic-passthrough only in that view); -1 or absent: as ipi_path says. */
  apicView?: number;
}

export interface MachineSpec {
  pcpus: number;
  apicMode: 'xapic' | 'x2apic';
  domains: DomainSpec[];
}

/** The shared buffers: everything a pCPU thread needs to attach. Structured-clone safe. */
export interface MachineBuffers {
  ctl: SharedArrayBuffer;
  pcpus: SharedArrayBuffer;
  vcpus: SharedArrayBuffer;
  domains: SharedArrayBuffer;
  p2m: SharedArrayBuffer;
  mem: SharedArrayBuffer;
  rings: SharedArrayBuffer;
  /** LAPIC register pages (shared/lapic.ts): pCPU p's physical LAPIC is page p, vCPU v's vLAPIC page npcpus + v. */
  lapics: SharedArrayBuffer;
  /** altp2m state, one block per domain (shared/altp2m.ts). */
  altp2m: SharedArrayBuffer;
  /** vm_event rings, one per domain (shared/vm-event.ts). */
  vmEvent: SharedArrayBuffer;
  /**
   * 256 words per LAPIC page: the source tag of the IPI that set each pending IRR vector (trace/events.ts);
   * then 256 words per vCPU for its posted-interrupt PIR (page npcpus + nvcpus + v).
   */
  irqsrc: SharedArrayBuffer;
}

/** Typed views over MachineBuffers. */
export class Machine {
  readonly ctl: Int32Array;
  readonly pc32: Int32Array;
  readonly pcF64: Float64Array;
  readonly vc32: Int32Array;
  readonly vcF64: Float64Array;
  readonly dm32: Int32Array;
  readonly p2m: Int32Array;
  readonly mem32: Int32Array;
  readonly mem8: Uint8Array;
  readonly ring32: Int32Array;
  readonly ringF64: Float64Array;
  readonly lapic32: Int32Array;
  readonly irqsrc: Int32Array;
  readonly ap32: Int32Array;
  readonly vr32: Int32Array;
  readonly npcpus: number;
  readonly nvcpus: number;
  readonly ndomains: number;
  /**
   * One thread drives the whole machine (the serial engine sets it before creating its pCPUs): then the pCPU
   * code reads shared words and does guest atomics with plain accesses, which give identical results when no
   * other thread exists (hw/mem-order.ts). Per thread, never shared: false in every worker.
   */
  exclusive = false;

  constructor(readonly buffers: MachineBuffers) {
    this.ctl = new Int32Array(buffers.ctl);
    this.pc32 = new Int32Array(buffers.pcpus);
    this.pcF64 = new Float64Array(buffers.pcpus);
    this.vc32 = new Int32Array(buffers.vcpus);
    this.vcF64 = new Float64Array(buffers.vcpus);
    this.dm32 = new Int32Array(buffers.domains);
    this.p2m = new Int32Array(buffers.p2m);
    this.mem32 = new Int32Array(buffers.mem);
    this.mem8 = new Uint8Array(buffers.mem);
    this.ring32 = new Int32Array(buffers.rings);
    this.ringF64 = new Float64Array(buffers.rings);
    this.lapic32 = new Int32Array(buffers.lapics);
    this.irqsrc = new Int32Array(buffers.irqsrc);
    this.ap32 = new Int32Array(buffers.altp2m);
    this.vr32 = new Int32Array(buffers.vmEvent);
    this.npcpus = this.ctl[C.CTL_NPCPUS];
    this.nvcpus = this.ctl[C.CTL_NVCPUS];
    this.ndomains = this.ctl[C.CTL_NDOMAINS];
  }

  pcpuBase(p: number): number { return p * PCPU_STRIDE_WORDS; }
  vcpuBase(v: number): number { return v * VCPU_STRIDE_WORDS; }
  domainBase(d: number): number { return d * DOMAIN_STRIDE_WORDS; }
  ringBase(p: number): number { return p * RING_STRIDE_WORDS; }
  /** Word offset of pCPU p's physical LAPIC page. */
  plapicBase(p: number): number { return p * LAPIC_PAGE_WORDS; }
  /** Word offset of vCPU v's virtual LAPIC page. */
  vlapicBase(v: number): number { return (this.npcpus + v) * LAPIC_PAGE_WORDS; }
  /** Word offset of the IRR source tags of LAPIC page `page` (pCPU p: p; vCPU v: npcpus + v). */
  irqsrcBase(page: number): number { return page * 256; }
  /** irqsrc "page" of vCPU v's PIR tags. */
  pirTagPage(v: number): number { return this.npcpus + this.nvcpus + v; }

  /**
   * Set PEND_* `bits` on pCPU p and wake its thread if it sleeps: on p's own PC_PENDING, or, when p shares a
   * thread with other pCPUs, on that thread's PC_BELL (bumped first, see shared/pcpu.ts). Every cross-pCPU
   * wake-up goes through here.
   */
  kick(p: number, bits: number): void {
    const pc32 = this.pc32, b = p * PCPU_STRIDE_WORDS;
    Atomics.or(pc32, b + PC_PENDING, bits);
    const bell = pc32[b + PC_BELL_AT];
    if (bell === 0) { Atomics.notify(pc32, b + PC_PENDING); return; }
    Atomics.add(pc32, bell, 1);
    Atomics.notify(pc32, bell);
  }
}

/**
 * Choose the pCPU for each vCPU: the least-loaded pCPU of its affinity (ties to the lowest
 * index). Deterministic, so both engines place vCPUs identically. Returns pCPU per global vCPU.
 */
export function placeVcpus(spec: MachineSpec): number[] {
  const load = new Array<number>(spec.pcpus).fill(0);
  const out: number[] = [];
  for (const d of spec.domains) {
    for (let i = 0; i < d.vcpus; i++) {
      let best = -1;
      // Soft affinity first (only where it narrows the hard one), as csched2_res_pick.
      const hard = vcpuHardAffinity(d, i), soft = vcpuSoftEffective(d, i);
      const pool = soft.length > 0 ? soft : hard;
      for (const p of pool) if (best < 0 || load[p] < load[best]) best = p;
      assert(best >= 0, `domain ${d.name} has an empty affinity`);
      load[best]++;
      out.push(best);
    }
  }
  return out;
}

/** vCPU i's hard affinity: its own entry of a per-vCPU list, else the domain's. */
export function vcpuHardAffinity(d: DomainSpec, i: number): number[] {
  return d.vcpuAffinity?.[i] ?? d.affinity;
}

/**
 * vCPU i's soft affinity as the scheduler uses it: soft ∩ hard, and only where it narrows the hard one
 * (Xen's soft_aff_effective); else empty.
 */
export function vcpuSoftEffective(d: DomainSpec, i: number): number[] {
  const hard = vcpuHardAffinity(d, i);
  const soft = (d.vcpuSoftAffinity?.[i] ?? d.softAffinity).filter((p) => hard.includes(p));
  return soft.length > 0 && soft.length < hard.length ? soft : [];
}

export function buildMachine(spec: MachineSpec): Machine {
  const nvcpus = spec.domains.reduce((s, d) => s + d.vcpus, 0);
  const ramFrames = spec.domains.map((d) => Math.ceil((d.memoryKb * 1024) / PAGE));
  const frames = ramFrames.reduce((s, f) => s + f, 0) + SPARE_FRAMES;
  assert(frames * PAGE <= MAX_HOST_BYTES, 'host memory over 1 GiB (the scenario loader should have refused it)');
  // Each table (the host p2m and every view slot) needs a root and at most the host's leaves: views hold
  // only gfns the host maps. The host's: RAM, the xAPIC window, one spare.
  const tables = spec.domains.map((d) => 1 + viewSlots(d));
  const leavesPerTable = ramFrames.map((f) => Math.ceil(f / P2M_LEAF_ENTRIES) + 2);
  const p2mWords = P2M_HDR_WORDS + 8 * P2M_LEAF_WORDS +
    tables.reduce((s, t, i) => s + t * (P2M_ROOT_ENTRIES + leavesPerTable[i] * P2M_LEAF_WORDS), 0);
  const sab = (words: number) => new SharedArrayBuffer(words * 4);
  const buffers: MachineBuffers = {
    ctl: sab(C.CTL_WORDS),
    pcpus: sab(spec.pcpus * PCPU_STRIDE_WORDS),
    vcpus: sab(Math.max(1, nvcpus) * VCPU_STRIDE_WORDS),
    domains: sab(Math.max(1, spec.domains.length) * DOMAIN_STRIDE_WORDS),
    p2m: sab(p2mWords),
    mem: new SharedArrayBuffer(frames * PAGE),
    rings: sab(spec.pcpus * RING_STRIDE_WORDS),
    lapics: sab((spec.pcpus + nvcpus) * LAPIC_PAGE_WORDS),
    irqsrc: sab((spec.pcpus + 2 * nvcpus) * 256),
    altp2m: sab(Math.max(1, spec.domains.length) * AD_STRIDE_WORDS),
    vmEvent: sab(Math.max(1, spec.domains.length) * VR_STRIDE_WORDS),
  };
  const ctl = new Int32Array(buffers.ctl);
  ctl[C.CTL_NPCPUS] = spec.pcpus;
  ctl[C.CTL_NVCPUS] = nvcpus;
  ctl[C.CTL_NDOMAINS] = spec.domains.length;
  ctl[C.CTL_LIVE_DOMAINS] = spec.domains.length;
  const p2m = new Int32Array(buffers.p2m);
  p2m[P2M_HDR_NEXT] = P2M_HDR_WORDS;
  p2m[P2M_HDR_CAPACITY] = p2mWords;
  const m = new Machine(buffers);
  const genapic = genapicSelect(spec.pcpus, spec.apicMode === 'x2apic');
  for (let p = 0; p < spec.pcpus; p++) {
    // Physical APIC ID = pCPU index; the hypervisor software-enables every LAPIC at boot.
    lapicReset(m.lapic32, m.plapicBase(p), p, spec.apicMode === 'x2apic', p === 0);
    lapicWrite(m.lapic32, m.plapicBase(p), LAPIC_SVR, 0x1ff);
    if (spec.apicMode === 'x2apic') lapicWriteX2apic(m.lapic32, m.plapicBase(p), 0x80f, 0x1ff, 0);
    // Xen's init_apic_ldr: flat logical IDs for its default xAPIC driver (x2APIC derives LDR in hardware,
    // bigsmp programs nothing), before any pCPU sends, so a logical IPI never misses a CPU still booting.
    if (genapic === 'flat') {
      lapicWrite(m.lapic32, m.plapicBase(p), LAPIC_DFR, genapicDfr());
      lapicWrite(m.lapic32, m.plapicBase(p), LAPIC_LDR, genapicLdr(genapic, p));
    }
    m.pc32[m.pcpuBase(p) + PC_STATE] = PS_RUNNING;
    m.pc32[m.pcpuBase(p) + PC_CURRENT] = -1;
  }
  const placement = placeVcpus(spec);
  let nextMfn = 0, firstVcpu = 0;
  spec.domains.forEach((d, di) => {
    const db = m.domainBase(di);
    const root = p2mAllocRoot(p2m);
    m.dm32[db + DM_STATE] = DS_RUNNING;
    m.dm32[db + DM_FIRST_VCPU] = firstVcpu;
    m.dm32[db + DM_NVCPUS] = d.vcpus;
    m.dm32[db + DM_RAM_FRAMES] = ramFrames[di];
    m.dm32[db + DM_P2M_ROOT] = root;
    m.dm32[db + DM_DEAD_HALTED] = 0;
    m.dm32[db + DM_ENDED_BY] = -1;
    m.dm32[db + DM_IPI_PATH] = d.ipiPath;
    m.dm32[db + DM_VCPU_MAP_GPA] = d.vcpuMapGpa;
    // The xAPIC window: trapped (APIC-access page, the vLAPIC emulates) or the machine's own LAPIC of
    // whatever pCPU the vCPU runs on (the passthrough design; mfn is unused for that type).
    const apicInView = (d.apicView ?? -1) >= 0;
    if ((d.ipiPath === IPI_PATH_XAPIC_PASSTHROUGH && !apicInView) || ipiPathHwApic(d.ipiPath)) p2mSetEntry(p2m, root, APIC_GFN, -1, p2mAttr(P2MT_MMIO_DIRECT, ACCESS_RW, true));
    else p2mSetEntry(p2m, root, APIC_GFN, -1, p2mAttr(P2MT_APIC_ACCESS, ACCESS_RW, true));
    const base = nextMfn;
    for (let g = 0; g < ramFrames[di]; g++) p2mSetEntry(p2m, root, g, base + g, p2mAttr(P2MT_RAM_RW, ACCESS_RWX, true));
    assert(d.image.length <= ramFrames[di] * PAGE, 'program larger than RAM (the loader should have refused it)');
    m.mem8.set(d.image, base * PAGE);
    nextMfn += ramFrames[di];
    const ramTop = ramFrames[di] * PAGE;
    if (d.vcpuMapGpa >= 0) {
      for (let i = 0; i < d.vcpus * VCPU_MAP_ENTRY_WORDS; i++) m.mem32[((base * PAGE + d.vcpuMapGpa) >> 2) + i] = -1;
    }
    initAltp2m(m, di, d, base);
    for (let i = 0; i < d.vcpus; i++) {
      const v = firstVcpu + i;
      const vb = m.vcpuBase(v);
      m.vc32[vb + VC_P2MIDX] = INVALID_ALTP2M;
      m.vc32[vb + VC_EPTP_INDEX] = INVALID_ALTP2M;
      m.vc32[vb + VC_VE_GFN] = -1;
      m.vc32[vb + VC_REGS + REG_ESP] = ramTop - PAGE * i;
      m.vc32[vb + VC_PC] = d.entry;
      m.vc32[vb + VC_FLAGS] = FL_FIXED;
      m.vc32[vb + VC_IDTR] = -1;
      m.vc32[vb + VC_RUNSTATE] = RS_RUNNABLE;
      m.vc32[vb + VC_PCPU] = placement[v];
      m.vc32[vb + VC_DOMAIN] = di;
      m.vc32[vb + VC_ID] = i;
      m.vc32[vb + VC_APIC_ID] = 2 * i;
      m.vc32[vb + VC_CREDIT] = CREDIT_INIT;
      // vLAPIC: ID 2n as Xen, xAPIC mode. Software-enabled from the start (Xen resets SVR to 0xFF and the
      // guest enables it) so small test programs need no APIC set-up.
      lapicReset(m.lapic32, m.vlapicBase(v), 2 * i, false, i === 0);
      lapicWrite(m.lapic32, m.vlapicBase(v), LAPIC_SVR, 0x1ff);
      for (const p of vcpuHardAffinity(d, i)) m.vc32[vb + VC_AFFINITY + (p >> 5)] |= 1 << (p & 31);
      for (const p of vcpuSoftEffective(d, i)) m.vc32[vb + VC_SOFT_AFFINITY + (p >> 5)] |= 1 << (p & 31);
    }
    firstVcpu += d.vcpus;
  });
  return m;
}

/** View slots a domain has: altp2m_count, or none when altp2m is disabled. */
function viewSlots(d: DomainSpec): number {
  return (d.altp2mMode ?? ALTP2M_MODE_DISABLED) === ALTP2M_MODE_DISABLED ? 0 : d.altp2mCount ?? 10;
}

/** The domain's altp2m block: mode, slots with their roots (all allocated up front, as Xen), empty EPTP lists. */
function initAltp2m(m: Machine, di: number, d: DomainSpec, ramBaseMfn: number): void {
  const ab = altp2mBase(di);
  const nr = viewSlots(d);
  m.ap32[ab + AD_MODE] = d.altp2mMode ?? ALTP2M_MODE_DISABLED;
  m.ap32[ab + AD_NR] = nr;
  m.ap32[ab + AD_EPT_SYNC] = d.eptSync ?? EPT_SYNC_XEN;
  m.ap32[ab + AD_ACCESS_REQUIRED] = d.accessRequired === true ? 1 : 0;
  m.ap32[ab + AD_APIC_VIEW] = d.apicView ?? -1;
  m.ap32[ab + AD_HOST_DEFAULT_ACCESS] = ACCESS_RWX;
  const region = (lo: number, hi: number, r: [number, number] | null, none: [number, number]) => {
    const [a, b] = r ?? none;
    m.ap32[ab + lo] = a;
    m.ap32[ab + hi] = b;
  };
  // No trampoline region: VMFUNC is allowed everywhere. No realm: every pc is outside it. No secret: nothing probed.
  region(AD_TRAMP_LO, AD_TRAMP_HI, d.trampoline ?? null, [0, 0xfffff]);
  region(AD_REALM_LO, AD_REALM_HI, d.realm ?? null, [1, 0]);
  const secret = d.secret ?? null;
  region(AD_SECRET_LO, AD_SECRET_HI, secret === null ? null : [ramBaseMfn + secret[0], ramBaseMfn + secret[1]], [1, 0]);
  for (let i = 0; i < MAX_VIEWS; i++) {
    m.ap32[ab + AD_EPTP + i] = EPTP_INVALID;
    m.ap32[ab + AD_VISIBLE + i] = EPTP_INVALID;
    m.ap32[viewBase(di, i) + VW_ROOT] = i < nr ? p2mAllocRoot(m.p2m) : -1;
  }
}
