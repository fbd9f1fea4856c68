// Memory-view oracles (DESIGN.md §6): STALE_TRANSLATION, ROGUE_VMFUNC, REALM_ESCAPE, and the realm oracles
// REALM_ENTRY and KERNEL_IN_REALM_VIEW (realm.ts). Each judgement is made inline where the event happens
// (interp.ts xlateStale, the VMFUNC instruction, xlateSlow for an access to the secret, realmFetch where the
// code fetch changes page) and only observes: the oracles off (PcpuParams.oracles), the machine runs the same.
// This module turns the events into findings with readable details.
import { INVALID_ALTP2M } from '../../shared/vcpu.js';
import { EV_KERNEL_IN_REALM_VIEW, EV_REALM_ENTRY, EV_REALM_ESCAPE, EV_ROGUE_VMFUNC, EV_STALE } from '../trace/events.js';
import type { Findings } from './findings.js';
import { kernelInRealmViewFinding, realmEntryFinding } from './realm.js';

function hex(v: number): string { return '0x' + (v >>> 0).toString(16); }
export function viewName(v: number): string { return v === INVALID_ALTP2M || v < 0 ? 'host p2m' : `view ${v}`; }
const PERMS = ['', 'read', 'write', 'read+write', 'execute', 'read+execute', 'write+execute', 'any'];

export class ViewOracle {
  onEvent(findings: Findings, domains: string[], pcpu: number, time: number, kind: number, dom: number, vcpu: number,
    a: number, b: number, c: number, pc: number, evidence: () => string[]): void {
    switch (kind) {
      case EV_STALE: {
        // The record's pc is the accessing instruction's (the interpreter hands it to the slow path).
        const access = b & 0xff, view = (b >>> 8) & 0xffff;
        findings.add('STALE_TRANSLATION', 'no_flush', [pc], time, pcpu, domains[dom], vcpu,
          `${PERMS[access] ?? access} of gpa ${hex(a)} in ${viewName(view)} allowed by this pCPU's TLB after the change that ` +
          `removed it (p2m generation ${c}) had returned: the pCPU was not made to flush before its next access`, evidence);
        break;
      }
      case EV_ROGUE_VMFUNC:
        findings.add('ROGUE_VMFUNC', 'outside_trampoline', [b], time, pcpu, domains[dom], vcpu,
          `VMFUNC to ${viewName(a)} from ${viewName(c)} at pc ${hex(b)}, outside the trampoline region: any code that ` +
          `runs VMFUNC enters every visible view`, evidence);
        break;
      case EV_REALM_ESCAPE:
        findings.add('REALM_ESCAPE', 'secret_access', [b], time, pcpu, domains[dom], vcpu,
          `secret gpa ${hex(a)} accessed by code at pc ${hex(b)}, outside the realm, in ${viewName(c)}`, evidence);
        break;
      case EV_REALM_ENTRY: realmEntryFinding(findings, domains[dom], pcpu, time, vcpu, a, b, c, pc, evidence); break;
      case EV_KERNEL_IN_REALM_VIEW: kernelInRealmViewFinding(findings, domains[dom], pcpu, time, vcpu, a, b, c, evidence); break;
      default: break;
    }
  }
}
