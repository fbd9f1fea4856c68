// The privileged tools' view of the machine: a TypeScript API named after libxc's altp2m and monitor
// calls (xen-project/xen tools/include/xenctrl.h; ../shared/reference/xen-altp2m.md §2, §7). An agent
// runs in the control domain (domid 0), outside the simulated pCPUs: its calls go through the same
// HVMOP_altp2m code as a guest's (hv/hvm-op.ts), with the privileges of the control domain, and it waits
// the way Xen's toolstack does (domain pause, EPT sync) through its host: in the serial engine the wait
// steps the machine; in the threaded engine the agent's thread waits while the pCPU threads run.
import { AD_ACCESS_REQUIRED, AD_MONITOR, AD_PAUSE_LOCK, AD_SINGLESTEP_MONITOR, LOCK_AGENT, altp2mBase } from '../../shared/altp2m.js';
import { ALTP2M_OP_WORDS, W_CMD, W_DOMAIN, W_Q40_LO, W_U0, W_U1, W_VERSION } from '../../shared/altp2m-op.js';
import type { LapicOptions } from '../hw/lapic.js';
import type { Machine } from '../machine.js';
import {
  HOST_TABLE, clearEntry, domainVcpus, entryOut, p2mBeginWrite, p2mEndWrite, p2mTryLock, p2mUnlock, propagateHostChange, readEntry, tableRoot,
} from '../hv/altp2m.js';
import { P2MT_RAM_RW, p2mAttrType } from '../../shared/p2m.js';
import { eptMarkTables, eptSyncAcked, eptSyncSend } from '../hv/ept-sync.js';
import {
  ALTP2M_OP_NAMES, ALTP2M_change_gfn, ALTP2M_create_p2m, ALTP2M_destroy_p2m, ALTP2M_get_domain_state, ALTP2M_get_mem_access,
  ALTP2M_get_p2m_idx, ALTP2M_get_suppress_ve, ALTP2M_set_domain_state, ALTP2M_set_mem_access, ALTP2M_set_mem_access_multi,
  ALTP2M_set_suppress_ve, ALTP2M_set_suppress_ve_multi, ALTP2M_set_visibility, ALTP2M_switch_p2m, ALTP2M_vcpu_disable_notify,
  ALTP2M_vcpu_enable_notify, HVMOP_ALTP2M_INTERFACE_VERSION, OP_NEEDS_PAUSE, OP_RESTART, altp2mOp, type AltCtx,
} from '../hv/hvm-op.js';
import { pauseFromOutside, unpauseFromOutside } from '../hv/vm-event.js';
import { schedOnCpu } from '../hv/sched/sched.js';

/** How the agent waits: the engine decides what "meanwhile" means. */
export interface AgentHost {
  /** Return once `cond()` holds, letting the machine run meanwhile. Throws AgentStopped when the run ends first. */
  waitUntil(cond: () => boolean, what: string): void;
}

export class AgentStopped extends Error {}

const ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: 'EPERM', 3: 'ESRCH', 14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST', 22: 'EINVAL', 95: 'EOPNOTSUPP',
};

/** A failed call: libxc's -1 with errno, as an exception. */
export class XcError extends Error {
  constructor(readonly op: string, readonly errno: number) {
    super(`${op}: ${ERRNO_NAMES[errno] ?? `errno ${errno}`}`);
  }
}

const INVALID_GFN = -1;

/** A gfn as the two words of a u64 (-1: INVALID_GFN, ~0). */
function u64(gfn: number): [number, number] {
  if (gfn === INVALID_GFN) return [-1, -1];
  return [gfn % 4294967296 | 0, Math.floor(gfn / 4294967296) | 0];
}

export class XenControl implements AltCtx {
  readonly callerDom = -1;
  readonly selfVcpu = -1;
  readonly holder = LOCK_AGENT;
  paused = false;
  gen = 0;
  readonly touched: number[] = [];
  private readonly words = new Int32Array(ALTP2M_OP_WORDS);
  private readonly snap: Int32Array;
  private lists: { pfns: number[]; access: number[] } = { pfns: [], access: [] };
  /** Operations issued, for the report. */
  calls = 0;

  constructor(readonly m: Machine, readonly host: AgentHost, private readonly lapic: LapicOptions) {
    this.snap = new Int32Array(m.npcpus);
  }

  // ---- AltCtx ----
  preemptPending(): boolean { return false; }
  readU64(handle: number, i: number): number | null {
    if (handle !== 1 || i >= this.lists.pfns.length) return null;
    const g = this.lists.pfns[i];
    return g === INVALID_GFN ? -1 : g < 0 || g > 0xfffff ? -2 : g;
  }
  readU8(handle: number, i: number): number | null {
    if (handle !== 2 || i >= this.lists.access.length) return null;
    return this.lists.access[i];
  }

  // ---- libxc names ----
  /** xc_altp2m_get_domain_state */
  getDomainState(domid: number): boolean {
    this.call(ALTP2M_get_domain_state, domid, [0]);
    return (this.words[W_U0] & 0xff) !== 0;
  }
  /** xc_altp2m_set_domain_state */
  setDomainState(domid: number, state: boolean): void { this.call(ALTP2M_set_domain_state, domid, [state ? 1 : 0]); }
  /** xc_altp2m_set_vcpu_enable_notify */
  setVcpuEnableNotify(domid: number, vcpuId: number, gfn: number): void { this.call(ALTP2M_vcpu_enable_notify, domid, [vcpuId, 0, ...u64(gfn)]); }
  /** xc_altp2m_set_vcpu_disable_notify */
  setVcpuDisableNotify(domid: number, vcpuId: number): void { this.call(ALTP2M_vcpu_disable_notify, domid, [vcpuId]); }
  /** xc_altp2m_create_view: returns the new view's index. */
  createView(domid: number, defaultAccess: number): number {
    this.call(ALTP2M_create_p2m, domid, [((defaultAccess & 0xffff) << 16) >>> 0]);
    return this.words[W_U0] & 0xffff;
  }
  /** xc_altp2m_destroy_view */
  destroyView(domid: number, view: number): void { this.call(ALTP2M_destroy_p2m, domid, [view]); }
  /** xc_altp2m_switch_to_view: every vCPU of the domain. */
  switchToView(domid: number, view: number): void { this.call(ALTP2M_switch_p2m, domid, [view]); }
  /** xc_altp2m_set_mem_access (view 0 = the host p2m; gfn -1 = the default access). */
  setMemAccess(domid: number, view: number, gfn: number, access: number): void {
    this.call(ALTP2M_set_mem_access, domid, [(view & 0xffff) | ((access & 0xffff) << 16), 0, ...u64(gfn)]);
  }
  /** xc_altp2m_set_mem_access_multi */
  setMemAccessMulti(domid: number, view: number, gfns: number[], access: number[]): void {
    if (gfns.length !== access.length) throw new XcError('set_mem_access_multi', 22);
    this.lists = { pfns: gfns, access };
    try {
      this.call(ALTP2M_set_mem_access_multi, domid, [view & 0xffff, gfns.length, 0, 0, 1, 0, 2, 0]);
    } finally { this.lists = { pfns: [], access: [] }; }
  }
  /** xc_altp2m_get_mem_access: the view's own entry (an unfilled gfn is ESRCH). */
  getMemAccess(domid: number, view: number, gfn: number): number {
    this.call(ALTP2M_get_mem_access, domid, [view & 0xffff, 0, ...u64(gfn)]);
    return (this.words[W_U0] >>> 16) & 0xffff;
  }
  /** xc_altp2m_change_gfn (newGfn -1 = revert). */
  changeGfn(domid: number, view: number, oldGfn: number, newGfn: number): void {
    this.call(ALTP2M_change_gfn, domid, [view & 0xffff, 0, ...u64(oldGfn), ...u64(newGfn)]);
  }
  /** xc_altp2m_set_suppress_ve */
  setSuppressVe(domid: number, view: number, gfn: number, sve: boolean): void {
    this.call(ALTP2M_set_suppress_ve, domid, [(view & 0xffff) | ((sve ? 1 : 0) << 16), 0, ...u64(gfn)]);
  }
  /** xc_altp2m_set_supress_ve_multi (sic): returns the first error and its gfn (0 and -1 when none). */
  setSuppressVeMulti(domid: number, view: number, firstGfn: number, lastGfn: number, sve: boolean): { firstError: number; firstErrorGfn: number } {
    this.call(ALTP2M_set_suppress_ve_multi, domid, [(view & 0xffff) | ((sve ? 1 : 0) << 16), 0, ...u64(firstGfn), ...u64(lastGfn), 0, 0]);
    return { firstError: this.words[W_U1], firstErrorGfn: this.words[W_U1] === 0 ? -1 : this.words[W_Q40_LO] };
  }
  /** xc_altp2m_get_suppress_ve */
  getSuppressVe(domid: number, view: number, gfn: number): boolean {
    this.call(ALTP2M_get_suppress_ve, domid, [view & 0xffff, 0, ...u64(gfn)]);
    return ((this.words[W_U0] >>> 16) & 0xff) !== 0;
  }
  /** xc_altp2m_get_vcpu_p2m_idx: what Xen knows, which lags a guest VMFUNC until that vCPU's next exit. */
  getVcpuP2mIdx(domid: number, vcpuId: number): number {
    this.call(ALTP2M_get_p2m_idx, domid, [vcpuId, 0]);
    return this.words[W_U1] & 0xffff;
  }
  /** xc_altp2m_set_visibility */
  setVisibility(domid: number, view: number, visible: boolean): void {
    this.call(ALTP2M_set_visibility, domid, [(view & 0xffff) | ((visible ? 1 : 0) << 16)]);
  }
  /** xc_domain_set_access_required */
  setAccessRequired(domid: number, required: boolean): void {
    Atomics.store(this.m.ap32, altp2mBase(this.dom(domid)) + AD_ACCESS_REQUIRED, required ? 1 : 0);
  }
  /** xc_monitor_singlestep: SINGLESTEP events for vCPUs whose single-step a response turned on. */
  monitorSinglestep(domid: number, enable: boolean): void {
    Atomics.store(this.m.ap32, altp2mBase(this.dom(domid)) + AD_SINGLESTEP_MONITOR, enable ? 1 : 0);
  }
  /**
   * xc_domain_decrease_reservation of one frame (a balloon driver giving gfn back): the host entry goes,
   * and the change reaches the views by Xen's propagation rules (a view whose change_gfn targets cover
   * gfn is reset; two such views reset them all). ESRCH if gfn is not RAM now.
   */
  decreaseReservation(domid: number, gfn: number): void {
    const m = this.m, d = this.dom(domid);
    this.host.waitUntil(() => p2mTryLock(m, d, LOCK_AGENT), 'p2m lock');
    this.gen = p2mBeginWrite(m, d);
    this.calls++;
    const root = tableRoot(m, d, HOST_TABLE);
    readEntry(m, root, gfn);
    if (p2mAttrType(entryOut.attr) !== P2MT_RAM_RW) {
      this.sync(d);
      throw new XcError('decrease_reservation', 3);
    }
    clearEntry(m, root, gfn, this.gen);
    this.touched.push(HOST_TABLE);
    propagateHostChange(m, d, gfn, -1, 0, this.gen, this.touched);
    this.sync(d);
  }

  /** xc_domain_getinfo, the part agents need: the domain's vCPU count. */
  domainGetInfo(domid: number): { vcpus: number } {
    return { vcpus: domainVcpus(this.m, this.dom(domid))[1] };
  }

  /** xc_monitor_enable: attach the vm_event ring (the runner does this before the agent's setup). */
  monitorEnable(domid: number, enable: boolean): void {
    Atomics.store(this.m.ap32, altp2mBase(this.dom(domid)) + AD_MONITOR, enable ? 1 : 0);
  }

  private dom(domid: number): number {
    const d = domid - 1;
    if (d < 0 || d >= this.m.ndomains) throw new XcError('domain', 3);
    return d;
  }

  /** One HVMOP_altp2m: pause the domain when the sub-op asks, restart while the p2m is busy, sync after writes. */
  private call(cmd: number, domid: number, u: number[]): void {
    const w = this.words;
    w.fill(0);
    w[W_VERSION] = HVMOP_ALTP2M_INTERFACE_VERSION;
    w[W_CMD] = cmd;
    w[W_DOMAIN] = domid & 0xffff;
    for (let i = 0; i < u.length; i++) w[W_U0 + i] = u[i];
    const name = ALTP2M_OP_NAMES[cmd];
    this.calls++;
    let pausedDom = -1;
    try {
      for (;;) {
        const r = altp2mOp(this, w);
        if (r === OP_NEEDS_PAUSE) {
          pausedDom = domid - 1;
          this.pauseDomain(pausedDom);
          continue;
        }
        if (r === OP_RESTART) {
          if (this.gen !== 0) this.sync(domid - 1); // set_mem_access_multi's progress is in its opaque field
          this.host.waitUntil(() => true, `${name}: p2m lock`);
          continue;
        }
        if (this.gen !== 0) this.sync(domid - 1);
        if (r < 0) throw new XcError(name, -r);
        return;
      }
    } finally {
      if (pausedDom >= 0) this.unpauseDomain(pausedDom);
    }
  }

  /** domain_pause: every vCPU, then wait until none is on a pCPU. The deadlock mutex is shared with guests. */
  private pauseDomain(d: number): void {
    const m = this.m, lockIdx = altp2mBase(d) + AD_PAUSE_LOCK;
    this.host.waitUntil(() => Atomics.compareExchange(m.ap32, lockIdx, 0, LOCK_AGENT) === 0, 'domain pause lock');
    const [first, n] = domainVcpus(m, d);
    for (let i = 0; i < n; i++) pauseFromOutside(m, first + i);
    this.paused = true;
    this.host.waitUntil(() => {
      for (let i = 0; i < n; i++) if (schedOnCpu(m, first + i)) return false;
      return true;
    }, 'vCPUs off their pCPUs');
  }

  private unpauseDomain(d: number): void {
    const m = this.m;
    const [first, n] = domainVcpus(m, d);
    for (let i = 0; i < n; i++) unpauseFromOutside(m, first + i);
    this.paused = false;
    Atomics.compareExchange(m.ap32, altp2mBase(d) + AD_PAUSE_LOCK, LOCK_AGENT, 0);
  }

  /** ept_sync_domain from outside the machine, then the write is returned and the p2m lock released. */
  private sync(d: number): void {
    const m = this.m;
    eptMarkTables(m, d, this.touched);
    if (eptSyncSend(m, d, null, this.lapic, this.snap) > 0) this.host.waitUntil(() => eptSyncAcked(m, this.snap), 'flush acknowledgements');
    p2mEndWrite(m, d, this.gen);
    p2mUnlock(m, d, LOCK_AGENT);
    this.gen = 0;
    this.touched.length = 0;
  }
}
