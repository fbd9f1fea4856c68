// The EPT-violation path (../shared/reference/xen-altp2m.md §3 and §6): #VE in hardware first; then Xen's
// hvm_hap_nested_page_fault — lazy fill of a view from the host, p2m_mem_access_check (rx2rw, n2rwx,
// no listener: crash or relax), and a MEM_ACCESS request to the agent that pauses the vCPU.
import { exitNotTaken } from './exits.js';
import { AD_ACCESS_REQUIRED, altp2mBase } from '../../shared/altp2m.js';
import { ACCESS_N2RWX, ACCESS_RW, ACCESS_RWX, ACCESS_RX2RW, ATTR_ACCESS_MASK, P2MT_INVALID, P2MT_RAM_RW, p2mAttrAccess, p2mAttrType } from '../../shared/p2m.js';
import { PC_VE_DELIVERED } from '../../shared/pcpu.js';
import { INVALID_ALTP2M, VCA_VE, VCPU_STRIDE_WORDS, VC_ALTP2M_FLAGS, VC_VE_GFN, VC_VIOL_ACCESS, VC_VIOL_GPA } from '../../shared/vcpu.js';
import { MEM_ACCESS_FAULT_WITH_GLA, MEM_ACCESS_GLA_VALID, MEM_ACCESS_R, MEM_ACCESS_W, MEM_ACCESS_X, VM_EVENT_REASON_MEM_ACCESS } from '../../shared/vm-event.js';
import { PERM_R, PERM_W, PERM_X, eptAccessPerms } from '../hw/ept.js';
import { EXIT_EPT_VIOLATION, guestDeliver } from '../isa/interp.js';
import { CRASH_EPT_VIOLATION, CRASH_TRIPLE_FAULT, EV_DOMAIN_END, EV_MEM_EVENT, EV_VE } from '../trace/events.js';
import { DS_CRASHED } from '../../shared/domain.js';
import {
  HOST_TABLE, altp2mActive, entryOut, p2mBeginWrite, p2mEndWrite, p2mTryLock, p2mUnlock, propagateHostChange, readEntry,
  tableRoot, viewFillFromHost, writeEntry,
} from './altp2m.js';
import { domainEnd } from './domain-ops.js';
import { eptMarkTables } from './ept-sync.js';
import { monitorAttached, vmEventPost } from './vm-event.js';
import { vlapicMmioExit } from './vlapic.js';
import type { PcpuCtx } from './pcpu-ctx.js';

/** EPT violation exit reason, written into the #VE information area. */
const EXIT_REASON_EPT_VIOLATION = 48;
/** #VE vector. */
export const VEC_VE = 20;

export function eptViolation(p: PcpuCtx): void {
  const c = p.core, m = p.m, d = p.curDomain;
  const gpa = c.exitGpa, gfn = gpa >>> 12, access = c.exitAccess;
  const inView = c.view !== INVALID_ALTP2M && altp2mActive(m, d);
  // A view's first touch of any page (the APIC page included) copies the host's entry and retries.
  if (inView && viewFillFromHost(m, d, c.view, gfn)) { p.hvCycles(p.params.costs.ept_violation); return; }
  if (vlapicMmioExit(p)) return;
  // The CPU converts first: such a violation never reaches the hypervisor.
  if (inView && c.exitVeConvertible && veDeliver(p, gpa, access)) return;
  p.hvCycles(p.params.costs.ept_violation);
  const t = inView ? c.view : HOST_TABLE;
  const holder = p.id + 1;
  if (!p2mTryLock(m, d, holder)) return; // another writer holds the p2m: the instruction faults again later
  const root = tableRoot(m, d, t);
  readEntry(m, root, gfn);
  const attr = entryOut.attr, mfn = entryOut.mfn;
  if (p2mAttrType(attr) === P2MT_INVALID) {
    p2mUnlock(m, d, holder);
    // Not mapped at all: no listener or #VE can help; Xen crashes the domain.
    return crash(p, CRASH_EPT_VIOLATION, gpa, access, c.pc);
  }
  const a = p2mAttrAccess(attr);
  if ((eptAccessPerms(a) & access) === access && p2mAttrType(attr) === P2MT_RAM_RW) {
    // Changed since this vCPU's TLB miss (another pCPU filled or widened it): no violation any more.
    p2mUnlock(m, d, holder);
    return;
  }
  if (a === ACCESS_RX2RW && (access & PERM_W) !== 0) return relax(p, t, root, gfn, mfn, attr, ACCESS_RW, false);
  if (a === ACCESS_N2RWX) return relax(p, t, root, gfn, mfn, attr, ACCESS_RWX, true);
  if (!monitorAttached(m, d)) {
    p2mUnlock(m, d, holder);
    if (Atomics.load(m.ap32, altp2mBase(d) + AD_ACCESS_REQUIRED) !== 0) return crash(p, CRASH_EPT_VIOLATION, gpa, access, c.pc);
    if (!p2mTryLock(m, d, holder)) return;
    return relax(p, t, root, gfn, mfn, attr, ACCESS_RWX, false);
  }
  p2mUnlock(m, d, holder);
  // A sync MEM_ACCESS request: the vCPU pauses; the agent's response decides what happens next.
  const b = p.cur * VCPU_STRIDE_WORDS;
  m.vc32[b + VC_VIOL_GPA] = gpa;
  m.vc32[b + VC_VIOL_ACCESS] = access;
  if (vmEventPost(m, d, holder, p.cur, true, VM_EVENT_REASON_MEM_ACCESS, gfn, gpa & 0xfff, memAccessFlags(access), c.pc)) {
    p.emit(EV_MEM_EVENT, gpa, access, c.view);
  }
}

/** u.mem_access.flags for an access: a write also counts as a read (ept_handle_violation). */
function memAccessFlags(access: number): number {
  return ((access & (PERM_R | PERM_W)) !== 0 ? MEM_ACCESS_R : 0) | ((access & PERM_W) !== 0 ? MEM_ACCESS_W : 0) |
    ((access & PERM_X) !== 0 ? MEM_ACCESS_X : 0) | MEM_ACCESS_GLA_VALID | MEM_ACCESS_FAULT_WITH_GLA;
}

/**
 * Widen an entry's access (rx2rw on a write, n2rwx, or the no-listener relax to rwx) and retry the access.
 * Lock held on entry, released here. A widening cannot make any translation allow more than the new entry,
 * so the pCPUs are marked for INVEPT but not waited for.
 */
function relax(p: PcpuCtx, t: number, root: number, gfn: number, mfn: number, attr: number, access: number, asyncEvent: boolean): void {
  const m = p.m, d = p.curDomain, holder = p.id + 1;
  const gen = p2mBeginWrite(m, d);
  const na = (attr & ~ATTR_ACCESS_MASK) | access;
  writeEntry(m, root, gfn, mfn, na, gen);
  const touched = [t];
  if (t === HOST_TABLE) propagateHostChange(m, d, gfn, mfn, na, gen, touched);
  eptMarkTables(m, d, touched);
  p2mEndWrite(m, d, gen);
  p2mUnlock(m, d, holder);
  if (asyncEvent && monitorAttached(m, d)) {
    const c = p.core;
    vmEventPost(m, d, holder, p.cur, false, VM_EVENT_REASON_MEM_ACCESS, gfn, c.exitGpa & 0xfff, memAccessFlags(c.exitAccess), c.pc);
  }
}

/**
 * The CPU's #VE (xen-altp2m.md §6): with #VE enabled and the information area's semaphore clear, write
 * the 34-byte record, set the semaphore and deliver vector 20 without leaving guest mode (the exit the
 * interpreter reported is taken back). False when the conditions do not hold: a normal exit.
 */
function veDeliver(p: PcpuCtx, gpa: number, access: number): boolean {
  const m = p.m, c = p.core, b = p.cur * VCPU_STRIDE_WORDS;
  if ((Atomics.load(m.vc32, b + VC_ALTP2M_FLAGS) & VCA_VE) === 0) return false;
  const veGfn = Atomics.load(m.vc32, b + VC_VE_GFN);
  if (veGfn < 0) return false;
  // The VMCS holds the page's machine address: the host p2m's frame, whatever view the vCPU is in.
  readEntry(m, tableRoot(m, p.curDomain, HOST_TABLE), veGfn);
  if (p2mAttrType(entryOut.attr) === P2MT_INVALID) return false;
  const w = (entryOut.mfn << 12) >> 2;
  if (Atomics.compareExchange(m.mem32, w + 1, 0, -1) !== 0) return false; // busy: the guest has not cleared it
  Atomics.store(m.mem32, w, EXIT_REASON_EPT_VIOLATION);
  // Exit qualification: access type in bits 0-2, linear address valid (7), a translation (8).
  Atomics.store(m.mem32, w + 2, access | (1 << 7) | (1 << 8));
  Atomics.store(m.mem32, w + 3, 0);
  Atomics.store(m.mem32, w + 4, gpa); // guest-linear = guest-physical
  Atomics.store(m.mem32, w + 5, 0);
  Atomics.store(m.mem32, w + 6, gpa);
  Atomics.store(m.mem32, w + 7, 0);
  Atomics.store(m.mem32, w + 8, c.view & 0xffff);
  exitNotTaken(p, EXIT_EPT_VIOLATION); // the CPU delivered a #VE instead of exiting
  m.pc32[p.base + PC_VE_DELIVERED]++;
  p.emit(EV_VE, gpa, access, c.view);
  p.hvCycles(p.params.costs.exception);
  if (guestDeliver(c, VEC_VE, c.pc) !== 0) crash(p, CRASH_TRIPLE_FAULT, VEC_VE, c.pc, 0);
  return true;
}

function crash(p: PcpuCtx, reason: number, a: number, b: number, c: number): void {
  if (domainEnd(p.m, p.curDomain, DS_CRASHED, reason, a, b, c, p.cur)) p.emit(EV_DOMAIN_END, DS_CRASHED, reason, a);
}
