// The HVMOP_altp2m argument struct, xen_hvm_altp2m_op (xen/include/public/hvm/hvm_op.h;
// ../shared/reference/xen-altp2m.md §1): 80 bytes in guest memory, copied in and out by the hypervisor
// (hv/hvm-op-guest.ts for a guest's vmcall, agent/xc.ts for the agent's calls) and handled as 20
// little-endian words by hv/hvm-op.ts. Guest-visible: programs reach every name below as an assembler
// symbol (ALTP2M_OP_GUEST_SYMBOLS), e.g. `mov [edi+ALTP2M_VIEW], ebx`.
//
// Offsets are in bytes from the start of the struct; the W_* word indices are the same offsets / 4, for
// the hypervisor's Int32Array copy. The union `u` starts at 16; each sub-op reads its own member of it,
// so several names share an offset (ALTP2M_VIEW and ALTP2M_VCPU_ID are both the union's first field).
import { assertLayout } from './layout.js';

// ---- header (every sub-op) ----
/** u32: HVMOP_ALTP2M_INTERFACE_VERSION. In. */
export const ALTP2M_VERSION = 0;
/** u32: the sub-op (HVMOP_ALTP2M_* below). In. */
export const ALTP2M_CMD = 4;
/** u16 domid (DOMID_SELF for the caller's own domain), then u16 pad1 (must be 0). In. */
export const ALTP2M_DOMAIN = 8;
/** u32 pad2, must be 0. In. */
export const ALTP2M_PAD2 = 12;
/** Start of the 64-byte union `u`. */
export const ALTP2M_U = 16;

// ---- union members, by field ----
/** u16 view (altp2m index) of view, set_mem_access, get_mem_access, change_gfn, suppress_ve*, set_visibility. In. */
export const ALTP2M_VIEW = 16;
/** u32 vcpu_id of vcpu_enable_notify, vcpu_disable_notify and get_p2m_idx. In. */
export const ALTP2M_VCPU_ID = 16;
/** u8 state of get/set_domain_state (1: altp2m active). In for set, out for get. */
export const ALTP2M_STATE = 16;
/** u16 access (xenmem_access_t) beside the view: create_p2m's default access, set/get_mem_access's access. In/out. */
export const ALTP2M_ACCESS = 18;
/** u8 suppress_ve of set/get_suppress_ve and set_suppress_ve_multi. In/out. */
export const ALTP2M_SUPPRESS_VE = 18;
/** u8 visible of set_visibility. In. */
export const ALTP2M_VISIBLE = 18;
/** u32 pad of set_mem_access, get_mem_access, change_gfn, suppress_ve; must be 0. In. */
export const ALTP2M_PAD = 20;
/** u32 nr (list length) of set_mem_access_multi. In. */
export const ALTP2M_NR = 20;
/** u16 altp2m_idx of get_p2m_idx (after vcpu_id). Out. */
export const ALTP2M_IDX = 20;
/** s32 first_error of set_suppress_ve_multi. Out. */
export const ALTP2M_FIRST_ERROR = 20;
/** u64 gfn of vcpu_enable_notify (the #VE info page), set/get_mem_access and set/get_suppress_ve. In. */
export const ALTP2M_GFN = 24;
/** u64 old_gfn of change_gfn. In. */
export const ALTP2M_OLD_GFN = 24;
/** u64 opaque of set_mem_access_multi: elements done so far (progress across restarts). In/out. */
export const ALTP2M_OPAQUE = 24;
/** u64 first_gfn of set_suppress_ve_multi; advanced as it goes. In/out. */
export const ALTP2M_FIRST_GFN = 24;
/** u64 new_gfn of change_gfn (~0: remove the remapping). In. */
export const ALTP2M_NEW_GFN = 32;
/** u64 guest handle pfn_list (gpa of u64 gfns) of set_mem_access_multi. In. */
export const ALTP2M_PFN_LIST = 32;
/** u64 last_gfn of set_suppress_ve_multi. In. */
export const ALTP2M_LAST_GFN = 32;
/** u64 guest handle access_list (gpa of u8 accesses) of set_mem_access_multi. In. */
export const ALTP2M_ACCESS_LIST = 40;
/** u64 first_error_gfn of set_suppress_ve_multi. Out. */
export const ALTP2M_FIRST_ERROR_GFN = 40;
/** Bytes of the whole struct (header 16 + union 64). */
export const ALTP2M_OP_BYTES = 80;
export const ALTP2M_OP_WORDS = ALTP2M_OP_BYTES / 4;
assertLayout('xen_hvm_altp2m_op', ALTP2M_U + 64 - 1, ALTP2M_OP_BYTES);

// ---- the same, as word indices of the hypervisor's copy ----
export const W_VERSION = ALTP2M_VERSION >> 2;
export const W_CMD = ALTP2M_CMD >> 2;
export const W_DOMAIN = ALTP2M_DOMAIN >> 2;
export const W_PAD2 = ALTP2M_PAD2 >> 2;
/** view | access << 16 (and the other 16-bit / 8-bit pairs at 16-19). */
export const W_U0 = ALTP2M_U >> 2;
/** The word at 20: pad, nr, altp2m_idx or first_error. */
export const W_U1 = ALTP2M_PAD >> 2;
/** Low and high words of the u64 at 24 (gfn, old_gfn, opaque, first_gfn). */
export const W_Q24_LO = ALTP2M_GFN >> 2;
export const W_Q24_HI = W_Q24_LO + 1;
/** Low and high words of the u64 at 32 (new_gfn, pfn_list, last_gfn). */
export const W_Q32_LO = ALTP2M_NEW_GFN >> 2;
export const W_Q32_HI = W_Q32_LO + 1;
/** Low and high words of the u64 at 40 (access_list, first_error_gfn). */
export const W_Q40_LO = ALTP2M_ACCESS_LIST >> 2;
export const W_Q40_HI = W_Q40_LO + 1;

// ---- numbers ----
/** __HYPERVISOR_hvm_op, and its sub-op HVMOP_altp2m. */
export const HYPERVISOR_HVM_OP = 34;
export const HVMOP_ALTP2M = 25;
export const HVMOP_ALTP2M_INTERFACE_VERSION = 1;
/** domid_t of the caller's own domain. */
export const DOMID_SELF = 0x7ff0;

/** Sub-ops (the `cmd` field), Xen's HVMOP_altp2m_* numbers. */
export const HVMOP_ALTP2M_GET_DOMAIN_STATE = 1;
export const HVMOP_ALTP2M_SET_DOMAIN_STATE = 2;
export const HVMOP_ALTP2M_VCPU_ENABLE_NOTIFY = 3;
export const HVMOP_ALTP2M_CREATE_P2M = 4;
export const HVMOP_ALTP2M_DESTROY_P2M = 5;
export const HVMOP_ALTP2M_SWITCH_P2M = 6;
export const HVMOP_ALTP2M_SET_MEM_ACCESS = 7;
export const HVMOP_ALTP2M_CHANGE_GFN = 8;
export const HVMOP_ALTP2M_SET_MEM_ACCESS_MULTI = 9;
export const HVMOP_ALTP2M_SET_SUPPRESS_VE = 10;
export const HVMOP_ALTP2M_GET_SUPPRESS_VE = 11;
export const HVMOP_ALTP2M_GET_MEM_ACCESS = 12;
export const HVMOP_ALTP2M_VCPU_DISABLE_NOTIFY = 13;
export const HVMOP_ALTP2M_GET_P2M_IDX = 14;
export const HVMOP_ALTP2M_SET_SUPPRESS_VE_MULTI = 15;
export const HVMOP_ALTP2M_SET_VISIBILITY = 16;

/** xenmem_access_t values a guest writes into ALTP2M_ACCESS (the same numbers as shared/p2m.ts ACCESS_*). */
const XENMEM_ACCESS = ['N', 'R', 'W', 'RW', 'X', 'RX', 'WX', 'RWX', 'RX2RW', 'N2RWX'] as const;

/**
 * Every name above that a guest program may use, as the assembler predefines them (scenario loader and
 * `vcpulab asm`): struct offsets, HVMOP numbers, sub-ops, and XENMEM_ACCESS_N .. XENMEM_ACCESS_N2RWX.
 */
export const ALTP2M_OP_GUEST_SYMBOLS: ReadonlyMap<string, number> = new Map<string, number>([
  ['ALTP2M_VERSION', ALTP2M_VERSION], ['ALTP2M_CMD', ALTP2M_CMD], ['ALTP2M_DOMAIN', ALTP2M_DOMAIN],
  ['ALTP2M_PAD2', ALTP2M_PAD2], ['ALTP2M_U', ALTP2M_U], ['ALTP2M_VIEW', ALTP2M_VIEW],
  ['ALTP2M_VCPU_ID', ALTP2M_VCPU_ID], ['ALTP2M_STATE', ALTP2M_STATE], ['ALTP2M_ACCESS', ALTP2M_ACCESS],
  ['ALTP2M_SUPPRESS_VE', ALTP2M_SUPPRESS_VE], ['ALTP2M_VISIBLE', ALTP2M_VISIBLE], ['ALTP2M_PAD', ALTP2M_PAD],
  ['ALTP2M_NR', ALTP2M_NR], ['ALTP2M_IDX', ALTP2M_IDX], ['ALTP2M_FIRST_ERROR', ALTP2M_FIRST_ERROR],
  ['ALTP2M_GFN', ALTP2M_GFN], ['ALTP2M_OLD_GFN', ALTP2M_OLD_GFN], ['ALTP2M_OPAQUE', ALTP2M_OPAQUE],
  ['ALTP2M_FIRST_GFN', ALTP2M_FIRST_GFN], ['ALTP2M_NEW_GFN', ALTP2M_NEW_GFN], ['ALTP2M_PFN_LIST', ALTP2M_PFN_LIST],
  ['ALTP2M_LAST_GFN', ALTP2M_LAST_GFN], ['ALTP2M_ACCESS_LIST', ALTP2M_ACCESS_LIST],
  ['ALTP2M_FIRST_ERROR_GFN', ALTP2M_FIRST_ERROR_GFN], ['ALTP2M_OP_BYTES', ALTP2M_OP_BYTES],
  ['HYPERVISOR_HVM_OP', HYPERVISOR_HVM_OP], ['HVMOP_ALTP2M', HVMOP_ALTP2M],
  ['HVMOP_ALTP2M_INTERFACE_VERSION', HVMOP_ALTP2M_INTERFACE_VERSION], ['DOMID_SELF', DOMID_SELF],
  ['HVMOP_ALTP2M_GET_DOMAIN_STATE', HVMOP_ALTP2M_GET_DOMAIN_STATE], ['HVMOP_ALTP2M_SET_DOMAIN_STATE', HVMOP_ALTP2M_SET_DOMAIN_STATE],
  ['HVMOP_ALTP2M_VCPU_ENABLE_NOTIFY', HVMOP_ALTP2M_VCPU_ENABLE_NOTIFY], ['HVMOP_ALTP2M_CREATE_P2M', HVMOP_ALTP2M_CREATE_P2M],
  ['HVMOP_ALTP2M_DESTROY_P2M', HVMOP_ALTP2M_DESTROY_P2M], ['HVMOP_ALTP2M_SWITCH_P2M', HVMOP_ALTP2M_SWITCH_P2M],
  ['HVMOP_ALTP2M_SET_MEM_ACCESS', HVMOP_ALTP2M_SET_MEM_ACCESS], ['HVMOP_ALTP2M_CHANGE_GFN', HVMOP_ALTP2M_CHANGE_GFN],
  ['HVMOP_ALTP2M_SET_MEM_ACCESS_MULTI', HVMOP_ALTP2M_SET_MEM_ACCESS_MULTI], ['HVMOP_ALTP2M_SET_SUPPRESS_VE', HVMOP_ALTP2M_SET_SUPPRESS_VE],
  ['HVMOP_ALTP2M_GET_SUPPRESS_VE', HVMOP_ALTP2M_GET_SUPPRESS_VE], ['HVMOP_ALTP2M_GET_MEM_ACCESS', HVMOP_ALTP2M_GET_MEM_ACCESS],
  ['HVMOP_ALTP2M_VCPU_DISABLE_NOTIFY', HVMOP_ALTP2M_VCPU_DISABLE_NOTIFY], ['HVMOP_ALTP2M_GET_P2M_IDX', HVMOP_ALTP2M_GET_P2M_IDX],
  ['HVMOP_ALTP2M_SET_SUPPRESS_VE_MULTI', HVMOP_ALTP2M_SET_SUPPRESS_VE_MULTI], ['HVMOP_ALTP2M_SET_VISIBILITY', HVMOP_ALTP2M_SET_VISIBILITY],
  ...XENMEM_ACCESS.map((n, i): [string, number] => [`XENMEM_ACCESS_${n}`, i]),
]);
