// The vm_event (monitor) ring of a domain: requests from the hypervisor to the agent, responses back.
// Fields follow Xen's vm_event_st (xen-altp2m.md §3, VM_EVENT_INTERFACE_VERSION 7) one word each; the ring
// is ours (Xen's is a shared page of the same records). Producers of requests are the pCPUs (many: a
// small lock, VR_LOCK, orders them); the agent is the only consumer and the only producer of responses.
import { assertLayout } from './layout.js';

export const VM_EVENT_INTERFACE_VERSION = 7;
/** Slots in each direction. A full request ring makes the faulting vCPU retry (Xen puts it on a wait queue). */
export const VR_SLOTS = 64;
export const VR_SLOT_WORDS = 16;

/** Requests posted / taken, responses posted / taken: free-running counters. Atomics. */
export const VR_REQ_PROD = 0;
export const VR_REQ_CONS = 1;
export const VR_RSP_PROD = 2;
export const VR_RSP_CONS = 3;
/** Producers' lock (0 free, else pCPU + 1). */
export const VR_LOCK = 4;
/** The event channel: bumped after each request; the agent Atomics.waits on it. */
export const VR_NOTIFY = 5;
/** Requests ever posted (for the report). */
export const VR_POSTED = 6;
export const VR_REQS = 16;
export const VR_RSPS = VR_REQS + VR_SLOTS * VR_SLOT_WORDS;
export const VR_STRIDE_WORDS = VR_RSPS + VR_SLOTS * VR_SLOT_WORDS;
assertLayout('vm_event header', VR_POSTED, VR_REQS);

// Slot fields (vm_event_st and its mem_access / fast_singlestep union members)
export const VE_VERSION = 0;
export const VE_FLAGS = 1;
export const VE_REASON = 2;
export const VE_VCPU_ID = 3;
export const VE_ALTP2M_IDX = 4;
/** u.mem_access.gfn / offset / gla / flags */
export const VE_GFN = 5;
export const VE_OFFSET = 6;
export const VE_GLA = 7;
export const VE_MA_FLAGS = 8;
/** u.fast_singlestep.p2midx (responses) */
export const VE_FAST_SS_IDX = 9;
/** The vCPU's pc when the event was raised (a register from the `data` union). */
export const VE_PC = 10;
assertLayout('vm_event slot', VE_PC, VR_SLOT_WORDS);

// vm_event_st.flags (bit numbers from xen/include/public/vm_event.h)
export const VM_EVENT_FLAG_VCPU_PAUSED = 1 << 0;
export const VM_EVENT_FLAG_FOREIGN = 1 << 1;
export const VM_EVENT_FLAG_EMULATE = 1 << 2;
export const VM_EVENT_FLAG_EMULATE_NOWRITE = 1 << 3;
export const VM_EVENT_FLAG_TOGGLE_SINGLESTEP = 1 << 4;
export const VM_EVENT_FLAG_SET_EMUL_READ_DATA = 1 << 5;
export const VM_EVENT_FLAG_DENY = 1 << 6;
export const VM_EVENT_FLAG_ALTERNATE_P2M = 1 << 7;
export const VM_EVENT_FLAG_SET_REGISTERS = 1 << 8;
export const VM_EVENT_FLAG_SET_EMUL_INSN_DATA = 1 << 9;
export const VM_EVENT_FLAG_GET_NEXT_INTERRUPT = 1 << 10;
export const VM_EVENT_FLAG_FAST_SINGLESTEP = 1 << 11;

// reasons
export const VM_EVENT_REASON_MEM_ACCESS = 1;
export const VM_EVENT_REASON_SINGLESTEP = 7;

// u.mem_access.flags
export const MEM_ACCESS_R = 1 << 0;
export const MEM_ACCESS_W = 1 << 1;
export const MEM_ACCESS_X = 1 << 2;
export const MEM_ACCESS_GLA_VALID = 1 << 3;
export const MEM_ACCESS_FAULT_WITH_GLA = 1 << 4;
export const MEM_ACCESS_FAULT_IN_GPT = 1 << 5;

export function vmEventRingBase(dom: number): number { return dom * VR_STRIDE_WORDS; }
