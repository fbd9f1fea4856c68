// xen-access's `altp2m_write` mode (xen-project/xen tools/misc/xen-access.c; xen-altp2m.md §7) as a vcpulab
// agent: every page of the guest is write-protected in a view of its own; a write pauses the vCPU, which
// then steps over that one instruction in the unrestricted view 0 with single-step on, and returns to the
// restricted view. The other vCPUs stay in the restricted view meanwhile: the "one vCPU steps, the rest
// stay protected" pattern views exist for.
//
// agent_args: mode = "altp2m_write" (the only one: the rx default access) | "altp2m_exec" (rw: every
// instruction fetch is an event), access_required = true|false.
import type { Agent } from '../runner.js';
import type { VmEventRequest, VmEventResponse } from '../../hv/vm-event.js';
import {
  VM_EVENT_FLAG_ALTERNATE_P2M, VM_EVENT_FLAG_TOGGLE_SINGLESTEP, VM_EVENT_FLAG_VCPU_PAUSED, VM_EVENT_REASON_MEM_ACCESS,
  VM_EVENT_REASON_SINGLESTEP,
} from '../../../shared/vm-event.js';
import { ACCESS_RW, ACCESS_RX } from '../../../shared/p2m.js';
import type { XcApi } from '../mailbox.js';

export default function xenAccess(): Agent {
  let view = 0;
  return {
  setup(xc: XcApi, domid: number, args: Record<string, unknown>): void {
    const mode = args.mode ?? 'altp2m_write';
    if (mode !== 'altp2m_write' && mode !== 'altp2m_exec') throw new Error(`xen-access: unknown mode ${String(mode)}`);
    xc.setAccessRequired(domid, args.access_required === true);
    xc.setDomainState(domid, true);
    view = xc.createView(domid, mode === 'altp2m_write' ? ACCESS_RX : ACCESS_RW);
    xc.switchToView(domid, view);
    xc.monitorSinglestep(domid, true);
  },

  onEvent(_xc: XcApi, _domid: number, req: VmEventRequest): VmEventResponse | null {
    // Each response starts from the request: version, vCPU, the paused flag, reason.
    const rsp: VmEventResponse = { version: req.version, vcpuId: req.vcpuId, reason: req.reason, flags: req.flags & VM_EVENT_FLAG_VCPU_PAUSED, altp2mIdx: 0 };
    if (req.reason === VM_EVENT_REASON_MEM_ACCESS && (req.flags & VM_EVENT_FLAG_ALTERNATE_P2M) !== 0) {
      // Run the instruction in view 0 with single-step on.
      rsp.flags |= VM_EVENT_FLAG_ALTERNATE_P2M | VM_EVENT_FLAG_TOGGLE_SINGLESTEP;
      rsp.altp2mIdx = 0;
    } else if (req.reason === VM_EVENT_REASON_SINGLESTEP) {
      // Back into the restricted view, single-step off.
      rsp.flags |= VM_EVENT_FLAG_ALTERNATE_P2M | VM_EVENT_FLAG_TOGGLE_SINGLESTEP;
      rsp.altp2mIdx = view;
    }
    return rsp;
  },
  };
}
