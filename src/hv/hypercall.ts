// vmcall dispatch with Xen's 32-bit HVM ABI (DESIGN.md §5.2): eax = number, args ebx ecx edx esi edi,
// result in eax as a negative errno. Numbers are Xen's (xen/include/public/xen.h).
import { DS_SHUTDOWN } from '../../shared/domain.js';
import { RS_BLOCKED, VC_RUNSTATE, VCPU_STRIDE_WORDS } from '../../shared/vcpu.js';
import { REG_EAX, REG_EBX, REG_ECX } from '../isa/opcodes.js';
import { hostGpaToHost } from './altp2m.js';
import { EV_DOMAIN_END } from '../trace/events.js';
import { domainEnd } from './domain-ops.js';
import type { PcpuCtx } from './pcpu-ctx.js';
import { HVMOP_altp2m } from './hvm-op.js';
import { hvmOpAltp2mGuest, type GuestPcpu } from './hvm-op-guest.js';

export const HYPERVISOR_xen_version = 17;
export const HYPERVISOR_sched_op = 29;
export const HYPERVISOR_hvm_op = 34;
export const SCHEDOP_yield = 0;
export const SCHEDOP_block = 1;
export const SCHEDOP_shutdown = 2;
export const XENVER_version = 0;
/** Xen 4.19, as XENVER_version encodes it (major << 16 | minor). */
export const XEN_VERSION = (4 << 16) | 19;

export const EPERM = 1, ESRCH = 3, EFAULT = 14, EBUSY = 16, EEXIST = 17, EINVAL = 22, ENOSYS = 38, EOPNOTSUPP = 95;

/**
 * Handle the vmcall the loaded vCPU just made. Returns true when it is complete (eax written; the caller
 * advances pc), false when it continues (hvm-op-guest.ts: the vCPU stays on the vmcall, as a hypercall
 * continuation or -ERESTART leaves it in Xen).
 */
export function hypercallDispatch(p: GuestPcpu): boolean {
  const R = p.core.R;
  const nr = R[REG_EAX] >>> 0;
  let ret: number;
  switch (nr) {
    case HYPERVISOR_xen_version: ret = R[REG_EBX] === XENVER_version ? XEN_VERSION : -EINVAL; break;
    case HYPERVISOR_sched_op: ret = schedOp(p, R[REG_EBX], R[REG_ECX]); break;
    case HYPERVISOR_hvm_op:
      if (R[REG_EBX] === HVMOP_altp2m) return hvmOpAltp2mGuest(p);
      ret = -ENOSYS;
      break;
    default: ret = -ENOSYS;
  }
  R[REG_EAX] = ret;
  return true;
}

function schedOp(p: PcpuCtx, cmd: number, arg: number): number {
  const m = p.m;
  switch (cmd) {
    case SCHEDOP_yield:
      p.sliceEnd = p.core.clock; // the scheduler runs at the next step
      return 0;
    case SCHEDOP_block:
      // Xen enables event delivery and blocks until an event arrives.
      Atomics.store(m.vc32, p.cur * VCPU_STRIDE_WORDS + VC_RUNSTATE, RS_BLOCKED);
      return 0;
    case SCHEDOP_shutdown: {
      // struct sched_shutdown { unsigned int reason; } at gpa `arg`.
      if ((arg & 3) !== 0) return -EFAULT;
      const h = hostGpaToHost(m, p.curDomain, arg);
      if (h < 0) return -EFAULT;
      const reason = Atomics.load(m.mem32, h >> 2);
      if (domainEnd(m, p.curDomain, DS_SHUTDOWN, reason, 0, 0, 0, p.cur)) p.emit(EV_DOMAIN_END, DS_SHUTDOWN, reason, 0);
      return 0;
    }
    default:
      return -EINVAL;
  }
}
