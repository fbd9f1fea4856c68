// Domain blocks. Owner: any pCPU running one of its vCPUs may end the domain (compareExchange on
// DM_STATE decides which one wins); the main thread reads them when the run ends.
import { assertLayout } from './layout.js';

export const DOMAIN_STRIDE_WORDS = 32;

/** DS_* below. Changed only with Atomics.compareExchange from DS_RUNNING. */
export const DM_STATE = 0;
/** Exit code given to magic 0 / SCHEDOP_shutdown. */
export const DM_EXIT_CODE = 1;
/** CRASH_* reason when DS_CRASHED; details in DM_CRASH_A/B/C. */
export const DM_CRASH_REASON = 2;
export const DM_CRASH_A = 3;
export const DM_CRASH_B = 4;
export const DM_CRASH_C = 5;
/** Global index of vCPU 0 of this domain. */
export const DM_FIRST_VCPU = 6;
export const DM_NVCPUS = 7;
/** Guest RAM size in 4 KiB frames (RAM spans gfn 0..DM_RAM_FRAMES-1). */
export const DM_RAM_FRAMES = 8;
/** Word offset of this domain's host p2m root table in the p2m buffer. */
export const DM_P2M_ROOT = 9;
/** vCPUs halted with IF=0 (they can never wake); when it reaches DM_NVCPUS the domain is done. Atomics. */
export const DM_DEAD_HALTED = 10;
/** vCPU that ended the domain (-1 none). */
export const DM_ENDED_BY = 11;
/** IPI_PATH_* below: how this domain's guest IPIs reach their targets. */
export const DM_IPI_PATH = 12;
/** gpa where the hypervisor publishes each vCPU's pCPU and physical APIC ID (-1: not published). */
export const DM_VCPU_MAP_GPA = 13;
/** Round-robin position of lowest-priority arbitration (Xen's round_robin_prev_vcpu). */
export const DM_LOWEST_PRIO_PREV = 14;
assertLayout('domain', DM_LOWEST_PRIO_PREV, DOMAIN_STRIDE_WORDS);

export const IPI_PATH_VLAPIC = 0;
export const IPI_PATH_XAPIC_PASSTHROUGH = 1;
export const IPI_PATH_X2APIC_PASSTHROUGH = 2;
/** vlapic trap on the sender; delivery by posted-interrupt descriptor (PIR/ON) and notification vector. */
export const IPI_PATH_POSTED = 3;
/** Intel IPI virtualization: fixed physical unicast sends post without an exit; the rest trap. */
export const IPI_PATH_IPIV = 4;
/** AMD AVIC: sends to running targets go without exit; a target not running gives an incomplete-IPI exit. */
export const IPI_PATH_AVIC = 5;
export const IPI_PATH_NAMES = ['vlapic', 'xapic-passthrough', 'x2apic-passthrough', 'posted', 'ipiv', 'avic'] as const;
/** Paths whose physical vectors the hypervisor does not own (passthrough designs). */
export function ipiPathIsPassthrough(path: number): boolean {
  return path === IPI_PATH_XAPIC_PASSTHROUGH || path === IPI_PATH_X2APIC_PASSTHROUGH;
}
/** Paths that deliver through posted-interrupt descriptors. */
export function ipiPathPosts(path: number): boolean {
  return path === IPI_PATH_POSTED || path === IPI_PATH_IPIV || path === IPI_PATH_AVIC;
}
/** Paths where the CPU virtualizes the APIC page and x2APIC MSRs itself (accesses do not exit). */
export function ipiPathHwApic(path: number): boolean {
  return path === IPI_PATH_IPIV || path === IPI_PATH_AVIC;
}
/** gfn of the xAPIC window (gpa 0xFEE00000). */
export const APIC_GFN_NUMBER = 0xfee00;
/** vcpu_map page: per vCPU two words, [pCPU index, physical APIC ID]; -1 while it runs nowhere yet. */
export const VCPU_MAP_ENTRY_WORDS = 2;

export const DS_RUNNING = 0;
export const DS_SHUTDOWN = 1;
export const DS_CRASHED = 2;
/** Every vCPU halted with interrupts disabled: nothing can run again. Reported as "shutdown". */
export const DS_HALTED = 3;
