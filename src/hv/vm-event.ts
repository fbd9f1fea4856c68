// vm_event: requests from pCPUs to the domain's agent, and Xen's handling of the agent's responses
// (../shared/reference/xen-altp2m.md §3, common/vm_event.c:vm_event_resume). Ring layout: shared/vm-event.ts.
import { AD_MONITOR, altp2mBase } from '../../shared/altp2m.js';
import { PEND_KICK } from '../../shared/pcpu.js';
import { P2MT_RAM_RW, p2mAttrAccess, p2mAttrType } from '../../shared/p2m.js';
import {
  INVALID_ALTP2M, RS_RUNNABLE, RS_RUNNING, VCA_EMULATE, VCA_FAST_SS, VCA_SINGLESTEP, VCPU_STRIDE_WORDS, VC_ALTP2M_FLAGS,
  VC_EPTP_INDEX, VC_FAST_SS_IDX, VC_PAUSE_COUNT, VC_PCPU, VC_P2MIDX, VC_RUNSTATE, VC_VIOL_ACCESS, VC_VIOL_GPA, VC_VM_EVENT_PAUSE,
} from '../../shared/vcpu.js';
import {
  VE_ALTP2M_IDX, VE_FAST_SS_IDX, VE_FLAGS, VE_GFN, VE_GLA, VE_MA_FLAGS, VE_OFFSET, VE_PC, VE_REASON, VE_VCPU_ID, VE_VERSION,
  VM_EVENT_FLAG_ALTERNATE_P2M, VM_EVENT_FLAG_EMULATE, VM_EVENT_FLAG_FAST_SINGLESTEP, VM_EVENT_FLAG_TOGGLE_SINGLESTEP,
  VM_EVENT_FLAG_VCPU_PAUSED, VM_EVENT_INTERFACE_VERSION, VM_EVENT_REASON_MEM_ACCESS, VR_LOCK, VR_NOTIFY, VR_POSTED, VR_REQS, VR_REQ_CONS, VR_REQ_PROD,
  VR_RSPS, VR_RSP_CONS, VR_RSP_PROD, VR_SLOTS, VR_SLOT_WORDS, vmEventRingBase,
} from '../../shared/vm-event.js';
import { eptAccessPerms } from '../hw/ept.js';
import type { Machine } from '../machine.js';
import { HOST_TABLE, altp2mActive, altp2mNr, domainVcpus, entryOut, readEntry, tableRoot, vcpuSetView, viewValid } from './altp2m.js';
import { schedOnCpu, schedTickleTarget } from './sched/sched.js';

/** Has the domain a listener on its monitor ring? */
export function monitorAttached(m: Machine, d: number): boolean {
  return Atomics.load(m.ap32, altp2mBase(d) + AD_MONITOR) !== 0;
}

/** A request as the agent sees it (one ring slot). */
export interface VmEventRequest {
  version: number;
  flags: number;
  reason: number;
  vcpuId: number;
  altp2mIdx: number;
  gfn: number;
  offset: number;
  gla: number;
  accessFlags: number;
  pc: number;
}
/** A response: the request's fields the agent keeps, plus its flags and indices. */
export interface VmEventResponse {
  version: number;
  flags: number;
  reason: number;
  vcpuId: number;
  altp2mIdx: number;
  fastSinglestepIdx?: number;
}

/**
 * Post a request (monitor_traps) from pCPU `holder` - 1. Returns false when the ring is full (the caller
 * retries the instruction later). A sync request pauses the vCPU first (vm_event_pause_count, pause_count).
 */
export function vmEventPost(m: Machine, d: number, holder: number, v: number, sync: boolean, reason: number,
  gfn: number, offset: number, accessFlags: number, pc: number): boolean {
  const rb = vmEventRingBase(d);
  while (Atomics.compareExchange(m.vr32, rb + VR_LOCK, 0, holder) !== 0) { /* a few stores long: spin */ }
  const prod = Atomics.load(m.vr32, rb + VR_REQ_PROD);
  if (prod - Atomics.load(m.vr32, rb + VR_REQ_CONS) >= VR_SLOTS) {
    Atomics.store(m.vr32, rb + VR_LOCK, 0);
    return false;
  }
  const b = v * VCPU_STRIDE_WORDS;
  const s = rb + VR_REQS + (prod % VR_SLOTS) * VR_SLOT_WORDS;
  const active = altp2mActive(m, d);
  m.vr32[s + VE_VERSION] = VM_EVENT_INTERFACE_VERSION;
  m.vr32[s + VE_FLAGS] = (sync ? VM_EVENT_FLAG_VCPU_PAUSED : 0) | (active ? VM_EVENT_FLAG_ALTERNATE_P2M : 0);
  m.vr32[s + VE_REASON] = reason;
  m.vr32[s + VE_VCPU_ID] = v - domainVcpus(m, d)[0];
  m.vr32[s + VE_ALTP2M_IDX] = active ? Atomics.load(m.vc32, b + VC_P2MIDX) : 0;
  m.vr32[s + VE_GFN] = gfn;
  m.vr32[s + VE_OFFSET] = offset;
  m.vr32[s + VE_GLA] = (gfn << 12) | offset; // guest-linear = guest-physical (ISA.md)
  m.vr32[s + VE_MA_FLAGS] = accessFlags;
  m.vr32[s + VE_PC] = pc;
  if (sync) {
    Atomics.add(m.vc32, b + VC_VM_EVENT_PAUSE, 1);
    Atomics.add(m.vc32, b + VC_PAUSE_COUNT, 1); // the vCPU is this pCPU's own: it leaves at the next step
  }
  Atomics.store(m.vr32, rb + VR_REQ_PROD, prod + 1);
  Atomics.add(m.vr32, rb + VR_POSTED, 1);
  Atomics.store(m.vr32, rb + VR_LOCK, 0);
  Atomics.add(m.vr32, rb + VR_NOTIFY, 1);
  Atomics.notify(m.vr32, rb + VR_NOTIFY);
  return true;
}

/** The agent's side: take the next request, or null. */
export function vmEventTake(m: Machine, d: number): VmEventRequest | null {
  const rb = vmEventRingBase(d);
  const cons = Atomics.load(m.vr32, rb + VR_REQ_CONS);
  if (cons === Atomics.load(m.vr32, rb + VR_REQ_PROD)) return null;
  const s = rb + VR_REQS + (cons % VR_SLOTS) * VR_SLOT_WORDS;
  const r = m.vr32;
  const req: VmEventRequest = {
    version: r[s + VE_VERSION], flags: r[s + VE_FLAGS], reason: r[s + VE_REASON], vcpuId: r[s + VE_VCPU_ID],
    altp2mIdx: r[s + VE_ALTP2M_IDX], gfn: r[s + VE_GFN], offset: r[s + VE_OFFSET], gla: r[s + VE_GLA],
    accessFlags: r[s + VE_MA_FLAGS], pc: r[s + VE_PC],
  };
  Atomics.store(m.vr32, rb + VR_REQ_CONS, cons + 1);
  return req;
}

/** The agent's side: put a response on the ring (the agent then calls vmEventResume). */
export function vmEventPutResponse(m: Machine, d: number, rsp: VmEventResponse): void {
  const rb = vmEventRingBase(d);
  const prod = Atomics.load(m.vr32, rb + VR_RSP_PROD);
  if (prod - Atomics.load(m.vr32, rb + VR_RSP_CONS) >= VR_SLOTS) throw new Error('vm_event response ring full: call resume first');
  const s = rb + VR_RSPS + (prod % VR_SLOTS) * VR_SLOT_WORDS;
  m.vr32[s + VE_VERSION] = rsp.version;
  m.vr32[s + VE_FLAGS] = rsp.flags;
  m.vr32[s + VE_REASON] = rsp.reason;
  m.vr32[s + VE_VCPU_ID] = rsp.vcpuId;
  m.vr32[s + VE_ALTP2M_IDX] = rsp.altp2mIdx;
  m.vr32[s + VE_FAST_SS_IDX] = rsp.fastSinglestepIdx ?? 0;
  Atomics.store(m.vr32, rb + VR_RSP_PROD, prod + 1);
}

/** Is the next response's vCPU still on a pCPU (it paused itself but has not been descheduled yet)? */
export function vmEventNextBlocked(m: Machine, d: number): boolean {
  const rb = vmEventRingBase(d);
  const cons = Atomics.load(m.vr32, rb + VR_RSP_CONS);
  if (cons === Atomics.load(m.vr32, rb + VR_RSP_PROD)) return false;
  const s = rb + VR_RSPS + (cons % VR_SLOTS) * VR_SLOT_WORDS;
  const [first, n] = domainVcpus(m, d);
  const id = m.vr32[s + VE_VCPU_ID];
  if (id < 0 || id >= n) return false;
  return schedOnCpu(m, first + id);
}

/**
 * vm_event_resume: apply responses in order, stopping at one whose vCPU is still on its pCPU (the caller
 * waits until vmEventNextBlocked is false and calls again). Returns the number applied. Effects, in Xen's
 * order, only while the vCPU is paused by vm_event: the EMULATE check against the view it faulted in,
 * single-step toggles, ALTERNATE_P2M (validity checked, visibility not), then the unpause.
 */
export function vmEventResume(m: Machine, d: number): number {
  const rb = vmEventRingBase(d);
  let applied = 0;
  for (;;) {
    const cons = Atomics.load(m.vr32, rb + VR_RSP_CONS);
    if (cons === Atomics.load(m.vr32, rb + VR_RSP_PROD)) return applied;
    if (vmEventNextBlocked(m, d)) return applied;
    const s = rb + VR_RSPS + (cons % VR_SLOTS) * VR_SLOT_WORDS;
    const r = m.vr32;
    const [first, n] = domainVcpus(m, d);
    const id = r[s + VE_VCPU_ID], flags = r[s + VE_FLAGS];
    Atomics.store(m.vr32, rb + VR_RSP_CONS, cons + 1);
    applied++;
    if (r[s + VE_VERSION] !== VM_EVENT_INTERFACE_VERSION || id < 0 || id >= n) continue; // skipped, as Xen
    const v = first + id, b = v * VCPU_STRIDE_WORDS;
    if ((flags & VM_EVENT_FLAG_VCPU_PAUSED) === 0 || Atomics.load(m.vc32, b + VC_VM_EVENT_PAUSE) === 0) continue;
    // 1. EMULATE (for a MEM_ACCESS event) takes effect only if the access would still violate the vCPU's current view.
    if ((flags & VM_EVENT_FLAG_EMULATE) !== 0 && r[s + VE_REASON] === VM_EVENT_REASON_MEM_ACCESS && wouldViolate(m, d, v)) {
      Atomics.or(m.vc32, b + VC_ALTP2M_FLAGS, VCA_EMULATE);
    }
    // 3. single-step toggles; fast single-step is ignored for an index >= nr.
    if ((flags & VM_EVENT_FLAG_TOGGLE_SINGLESTEP) !== 0) {
      if ((Atomics.load(m.vc32, b + VC_ALTP2M_FLAGS) & VCA_SINGLESTEP) !== 0) Atomics.and(m.vc32, b + VC_ALTP2M_FLAGS, ~VCA_SINGLESTEP);
      else Atomics.or(m.vc32, b + VC_ALTP2M_FLAGS, VCA_SINGLESTEP);
    }
    if ((flags & VM_EVENT_FLAG_FAST_SINGLESTEP) !== 0 && (r[s + VE_FAST_SS_IDX] >>> 0) < altp2mNr(m, d)) {
      Atomics.store(m.vc32, b + VC_FAST_SS_IDX, r[s + VE_FAST_SS_IDX]);
      Atomics.or(m.vc32, b + VC_ALTP2M_FLAGS, VCA_FAST_SS);
    }
    // 4. p2m_altp2m_check: invalid indices are ignored quietly; visibility is not checked [code].
    if ((flags & VM_EVENT_FLAG_ALTERNATE_P2M) !== 0 && altp2mActive(m, d) && viewValid(m, d, r[s + VE_ALTP2M_IDX])) {
      vcpuSetView(m, d, v, r[s + VE_ALTP2M_IDX]);
    }
    // 8. unpause.
    Atomics.sub(m.vc32, b + VC_VM_EVENT_PAUSE, 1);
    unpauseFromOutside(m, v);
  }
}

/** Would the recorded violation of vCPU v still violate its current table? (p2m_mem_access_emulate_check) */
function wouldViolate(m: Machine, d: number, v: number): boolean {
  const b = v * VCPU_STRIDE_WORDS;
  const view = Atomics.load(m.vc32, b + VC_EPTP_INDEX);
  const t = view === INVALID_ALTP2M || !altp2mActive(m, d) ? HOST_TABLE : view;
  readEntry(m, tableRoot(m, d, t), Atomics.load(m.vc32, b + VC_VIOL_GPA) >>> 12);
  if (p2mAttrType(entryOut.attr) !== P2MT_RAM_RW) return true;
  const need = Atomics.load(m.vc32, b + VC_VIOL_ACCESS);
  return (eptAccessPerms(p2mAttrAccess(entryOut.attr)) & need) !== need;
}

/**
 * vcpu_unpause from outside the machine (the agent runs in the control domain, whose pCPU is not
 * modelled): its kick reaches the target pCPU as a pending event, without an ICR write.
 */
export function unpauseFromOutside(m: Machine, v: number): void {
  const b = v * VCPU_STRIDE_WORDS;
  if (Atomics.sub(m.vc32, b + VC_PAUSE_COUNT, 1) !== 1) return;
  if (Atomics.load(m.vc32, b + VC_RUNSTATE) !== RS_RUNNABLE) return;
  kickFromOutside(m, schedTickleTarget(m, v, Atomics.load(m.vc32, b + VC_PCPU)));
}

export function pauseFromOutside(m: Machine, v: number): void {
  const b = v * VCPU_STRIDE_WORDS;
  Atomics.add(m.vc32, b + VC_PAUSE_COUNT, 1);
  if (Atomics.load(m.vc32, b + VC_RUNSTATE) === RS_RUNNING) kickFromOutside(m, Atomics.load(m.vc32, b + VC_PCPU));
}

export function kickFromOutside(m: Machine, pcpu: number): void {
  if (pcpu < 0) return;
  m.kick(pcpu, PEND_KICK);
}

