// altp2m state per domain (xen-altp2m.md §0): the view table, the EPTP lists VMFUNC reads, the domain's
// p2m lock and generation, and the EPT `invalidate` masks. One block of AD_STRIDE_WORDS per domain.
// Owner: any pCPU running the domain's vCPUs and the domain's agent. Every word is read and written with
// Atomics; entries of the views themselves live in the p2m buffer (shared/p2m.ts).
import { assertLayout } from './layout.js';

/** Xen's MAX_EPTP: one 4 KiB page of 8-byte EPTPs. The most views a domain can have. */
export const MAX_VIEWS = 512;
/** Words in a cpumask of pCPUs (MAX_PCPUS = 255 fits). */
export const CPUMASK_WORDS = 8;

/** 1 while altp2m is active (Xen's altp2m_active). */
export const AD_ACTIVE = 0;
/** ALTP2M_MODE_* (HVM_PARAM_ALTP2M, fixed when the domain is built). */
export const AD_MODE = 1;
/** nr_altp2m: view slots, fixed at build time (0 when altp2m is disabled). */
export const AD_NR = 2;
/** The domain's p2m lock: 0 free, else holder + 1 (pCPU p: p + 1; the agent: LOCK_AGENT). Host and every view. */
export const AD_P2M_LOCK = 3;
/** Xen's hypercall_deadlock_mutex: held by whoever pauses the whole domain (set_domain_state, destroy, switch). */
export const AD_PAUSE_LOCK = 4;
/** Generation of the last p2m-writing operation; entries it writes carry it as their stamp (P2E_STAMP). */
export const AD_GEN = 5;
/**
 * Generation whose operation has returned to its caller (after its EPT sync). Operations are serialised by
 * AD_P2M_LOCK, so this only grows, and stamp <= AD_DONE means "the write that made this entry has returned".
 */
export const AD_DONE = 6;
/** xc_domain_set_access_required: with no listener, a violation crashes the domain instead of relaxing. */
export const AD_ACCESS_REQUIRED = 7;
/** The host p2m's default_access (xenmem_access_t). */
export const AD_HOST_DEFAULT_ACCESS = 8;
/** EPT_SYNC_* (scenario key ept_sync). */
export const AD_EPT_SYNC = 9;
/** 1 while a vm_event listener (the agent) holds the monitor ring. */
export const AD_MONITOR = 10;
/** 1 when the agent asked for single-step events (xc_monitor_singlestep). */
export const AD_SINGLESTEP_MONITOR = 11;
/**
 * Scenario regions (inclusive; lo > hi when absent): the oracles ROGUE_VMFUNC and REALM_ESCAPE read them.
 * Trampoline and realm are gfn ranges (where code runs); the secret is the machine frames behind its gfns.
 */
export const AD_TRAMP_LO = 12;
export const AD_TRAMP_HI = 13;
export const AD_REALM_LO = 14;
export const AD_REALM_HI = 15;
export const AD_SECRET_LO = 16;
export const AD_SECRET_HI = 17;
/**
 * The view whose xAPIC window maps the host's xAPIC (scenario key apic_view; -1: the host p2m decides, as
 * ipi_path says). The researcher's design: passthrough in the realm's view only, trapped elsewhere.
 */
export const AD_APIC_VIEW = 18;
/** d->dirty_cpumask: pCPUs that loaded one of this domain's vCPUs and have not loaded another domain's since. */
export const AD_DIRTY = 24;
/** The host p2m's ept.invalidate mask. */
export const AD_HOST_INVALIDATE = AD_DIRTY + CPUMASK_WORDS;
/** altp2m_eptp[512]: the root of each valid view (our EPTP), or EPTP_INVALID. */
export const AD_EPTP = 40;
/** altp2m_visible_eptp[512]: the list VMFUNC reads (the hardware EPTP list). */
export const AD_VISIBLE = AD_EPTP + MAX_VIEWS;
/** View blocks, VIEW_WORDS each. */
export const AD_VIEWS = AD_VISIBLE + MAX_VIEWS;
export const VIEW_WORDS = 16;
export const AD_STRIDE_WORDS = AD_VIEWS + MAX_VIEWS * VIEW_WORDS;
assertLayout('altp2m header', AD_HOST_INVALIDATE + CPUMASK_WORDS - 1, AD_EPTP);

// View block fields
/** Root table of this slot in the p2m buffer (allocated when the domain is built, kept for its life). */
export const VW_ROOT = 0;
/** default_access given to entries filled lazily from the host. */
export const VW_DEFAULT_ACCESS = 1;
/** vCPUs whose p2midx is this view (Xen's active_vcpus). */
export const VW_ACTIVE_VCPUS = 2;
/** [min, max]_remapped_gfn: range of change_gfn targets; min = -1 (INVALID_GFN) when empty. */
export const VW_MIN_REMAP = 3;
export const VW_MAX_REMAP = 4;
/** ept.invalidate: pCPUs that must INVEPT this view before their next VM entry. */
export const VW_INVALIDATE = 8;
assertLayout('altp2m view', VW_INVALIDATE + CPUMASK_WORDS - 1, VIEW_WORDS);

/** Xen's INVALID_MFN in an EPTP list slot. */
export const EPTP_INVALID = -1;
/** AD_P2M_LOCK / AD_PAUSE_LOCK holder value for the agent (pCPUs use p + 1 <= 255). */
export const LOCK_AGENT = 0x1000;

export const ALTP2M_MODE_DISABLED = 0;
export const ALTP2M_MODE_MIXED = 1;
export const ALTP2M_MODE_EXTERNAL = 2;
export const ALTP2M_MODE_LIMITED = 3;

/** ept_sync: Xen's (mark every pCPU, IPI the dirty mask, wait); marks but no IPI; nothing at all. */
export const EPT_SYNC_XEN = 0;
export const EPT_SYNC_NO_KICK = 1;
export const EPT_SYNC_NONE = 2;
export const EPT_SYNC_NAMES = ['xen', 'no-kick', 'none'] as const;

export function altp2mBase(dom: number): number { return dom * AD_STRIDE_WORDS; }
export function viewBase(dom: number, view: number): number { return dom * AD_STRIDE_WORDS + AD_VIEWS + view * VIEW_WORDS; }
