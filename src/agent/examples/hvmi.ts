// An HVMI-style agent (Bitdefender HVMI; xen-altp2m.md §7, §8) for the realm workload in external mode: the
// agent, not the guest, owns the views.
//   - KVIEW (untrusted), where the kernel runs: the realm's pages are not accessible, and the secret's gfn
//     is remapped to a decoy frame, so nothing the kernel reads there is the secret.
//   - RVIEW (protected), where the realm runs: only the realm's and the trampoline's pages are executable;
//     everything else is read-write, no execute.
// VMFUNC is given to every vCPU (vcpu_enable_notify), so any kernel code can still switch to RVIEW, but its
// very next instruction fetch there is an EPT violation: the agent moves that vCPU back to KVIEW (a denial
// of service at worst) and the secret stays where it was. An interrupt taken inside the realm runs its
// handler the same way: out to KVIEW for the handler.
//
// Into RVIEW the agent moves a vCPU (whose fetch of realm code in KVIEW faulted) only at one of the realm's
// entry points, or once to resume the realm after it took the vCPU out for a handler (it cannot see where
// the realm was interrupted: the resume point is the kernel's to choose, which REALM_ENTRY reports). Any
// other realm address stays shut: the vCPU is left paused (HVMI would inject a fault). An entry point is an
// entry point whoever calls it, though: the agent sees only where a fetch faulted, not where control came
// from, so a kernel `call` to one still gets in (REALM_ENTRY names the caller).
//
// agent_args: trampoline, realm_first, realm_last, secret, decoy, ve_gfn0 (gfns; vCPU n's #VE page is ve_gfn0 + n),
// realm_entries (addresses; the scenario's entry points by default, scenario/loader.ts scenarioAgents).
import type { Agent } from '../runner.js';
import type { VmEventRequest, VmEventResponse } from '../../hv/vm-event.js';
import { MEM_ACCESS_X, VM_EVENT_FLAG_ALTERNATE_P2M, VM_EVENT_FLAG_VCPU_PAUSED, VM_EVENT_REASON_MEM_ACCESS } from '../../../shared/vm-event.js';
import { ACCESS_N, ACCESS_RW, ACCESS_RWX, ACCESS_RX } from '../../../shared/p2m.js';
import type { XcApi } from '../mailbox.js';

function gfnArg(args: Record<string, unknown>, key: string): number {
  const v = args[key];
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw new Error(`hvmi: agent_args.${key} must be a gfn`);
  return n;
}

function addressList(args: Record<string, unknown>, key: string): number[] {
  const v = args[key];
  if (v === undefined) return [];
  const bad = (): never => { throw new Error(`hvmi: agent_args.${key} must be a list of addresses`); };
  if (!Array.isArray(v)) bad();
  return (v as unknown[]).map((x) => {
    const n = typeof x === 'bigint' ? Number(x) : x;
    return typeof n === 'number' && Number.isInteger(n) && n >= 0 ? n : bad();
  });
}

export default function hvmi(): Agent {
  let kview = 0, rview = 0, realmFirst = 0, realmLast = 0, tramp = 0;
  let entries: ReadonlySet<number> = new Set();
  /** vCPUs taken out of RVIEW while kernel code ran there: each may resume the realm once. */
  const mayResume = new Set<number>();
  const inRealm = (pc: number): boolean => {
    const g = pc >>> 12;
    return g >= realmFirst && g <= realmLast;
  };
  const inRealmCode = (pc: number): boolean => inRealm(pc) || pc >>> 12 === tramp;
  return {
    setup(xc: XcApi, domid: number, args: Record<string, unknown>): void {
      tramp = gfnArg(args, 'trampoline');
      realmFirst = gfnArg(args, 'realm_first');
      realmLast = gfnArg(args, 'realm_last');
      const secret = gfnArg(args, 'secret'), decoy = gfnArg(args, 'decoy');
      const veGfn0 = gfnArg(args, 've_gfn0');
      entries = new Set(addressList(args, 'realm_entries'));
      const { vcpus } = xc.domainGetInfo(domid);
      xc.setDomainState(domid, true);
      kview = xc.createView(domid, ACCESS_RWX);
      rview = xc.createView(domid, ACCESS_RW);
      for (let g = realmFirst; g <= realmLast; g++) {
        xc.setMemAccess(domid, kview, g, ACCESS_N);
        xc.setMemAccess(domid, rview, g, ACCESS_RX);
      }
      xc.setMemAccess(domid, rview, tramp, ACCESS_RX);
      xc.changeGfn(domid, kview, secret, decoy);
      for (let i = 0; i < vcpus; i++) xc.setVcpuEnableNotify(domid, i, veGfn0 + i);
      xc.switchToView(domid, kview);
    },

    onEvent(_xc: XcApi, _domid: number, req: VmEventRequest): VmEventResponse | null {
      const rsp: VmEventResponse = { version: req.version, vcpuId: req.vcpuId, reason: req.reason, flags: req.flags & VM_EVENT_FLAG_VCPU_PAUSED, altp2mIdx: 0 };
      if (req.reason !== VM_EVENT_REASON_MEM_ACCESS || (req.accessFlags & MEM_ACCESS_X) === 0) return rsp; // unpause, nothing else
      if (req.altp2mIdx === rview && !inRealmCode(req.pc)) {
        // Kernel code in the protected view (a stray VMFUNC, or a handler that interrupted the realm): back out.
        rsp.flags |= VM_EVENT_FLAG_ALTERNATE_P2M;
        rsp.altp2mIdx = kview;
        mayResume.add(req.vcpuId);
      } else if (req.altp2mIdx === kview && inRealm(req.pc)) {
        // Realm code fetched in KVIEW: an entry point (a nested realm call from a handler), or the realm
        // resuming after a handler ran in KVIEW. Anything else is refused: the vCPU stays paused.
        if (!entries.has(req.pc) && !mayResume.delete(req.vcpuId)) return null;
        rsp.flags |= VM_EVENT_FLAG_ALTERNATE_P2M;
        rsp.altp2mIdx = rview;
      }
      return rsp;
    },
  };
}
