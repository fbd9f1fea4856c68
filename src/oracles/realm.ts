// The realm oracles (DESIGN.md §6): what a realm must enforce, beyond the secret itself (REALM_ESCAPE).
//
// REALM_ENTRY: control enters the `realm` region from outside other than from the `trampoline` region to one
// of the realm's entry points (`realm_entries`; none listed: any realm address), however it got there: a
// jump, call, return or iret, straight-line code running across a page boundary, an interrupt or exception
// whose handler is in the realm, or a view switch (an agent's, say) that let a fetch at a realm address
// through. Each entry is judged once, at the realm instruction that runs first.
//
// KERNEL_IN_REALM_VIEW: code outside realm and trampoline runs while the vCPU is in a realm view: an altp2m
// view other than slot 0 in which the realm's code is executable (its first page; the view's default
// access until that page is filled). There the kernel has whatever the realm's view gives the realm:
// its code, its secret, in the seed's design the host's xAPIC. One occurrence per stretch of such code.
//
// Both are judged inline by the interpreter where its code fetch changes page (isa/interp.ts realmFetch),
// so the hot path is untouched; this module turns their events into findings with readable details.
import {
  KIRV_INTERRUPT, KIRV_LEFT_REALM, REALM_ENTRY_NOT_LISTED, XFER_CALL, XFER_FALLTHROUGH, XFER_INTERRUPT, XFER_IRET, XFER_JUMP,
  XFER_RETURN,
} from '../trace/events.js';
import { PC_XEN, type Findings } from './findings.js';

/** REALM_ENTRY cause tokens by XFER_* (from outside the trampoline, named by how control came). */
export const REALM_ENTRY_HOW = ['fallthrough', 'jump', 'call', 'return', 'iret', 'interrupt', 'other'] as const;
/** KERNEL_IN_REALM_VIEW cause tokens by KIRV_*. */
export const KIRV_CAUSES = ['interrupt', 'left_realm', 'view_switch'] as const;

function hex(v: number): string { return '0x' + (v >>> 0).toString(16); }
function view(v: number): string { return v === 0xffff ? 'the host p2m' : `view ${v}`; }

const HOW_TEXT: Readonly<Record<number, string>> = {
  [XFER_FALLTHROUGH]: 'straight-line code running across the page boundary',
  [XFER_JUMP]: 'a jump', [XFER_CALL]: 'a call', [XFER_RETURN]: 'a ret', [XFER_IRET]: 'an iret',
  [XFER_INTERRUPT]: 'an interrupt or exception delivered to a handler in the realm',
};

/**
 * EV_REALM_ENTRY: a = the transferring instruction (-1 unknown), b = XFER_* | REALM_ENTRY_NOT_LISTED | view << 16,
 * c = gfn the previous instruction ran on, pc = the realm instruction reached.
 */
export function realmEntryFinding(findings: Findings, domain: string, pcpu: number, time: number, vcpu: number,
  a: number, b: number, c: number, pc: number, evidence: () => string[]): void {
  const how = b & 7, v = (b >>> 16) & 0xffff;
  const fromTramp = (b & REALM_ENTRY_NOT_LISTED) !== 0;
  const cause = fromTramp ? 'not_entry_point' : REALM_ENTRY_HOW[how] ?? 'other';
  const src = a === -1 ? PC_XEN : a;
  const by = HOW_TEXT[how] ?? 'a transfer that cannot be told (the hypervisor moved pc)';
  const from = a === -1 ? `from gfn ${hex(c)}` : `from pc ${hex(a)}`;
  const detail = fromTramp
    ? `control went from the trampoline (${from}, ${by}) to pc ${hex(pc)}, which realm_entries does not list, in ${view(v)}`
    : `control entered the realm at pc ${hex(pc)} ${from}, outside the trampoline, by ${by}, in ${view(v)}: ` +
      'the realm was entered other than through its entry points';
  // The pcs name the bug, not the moment: after an iret the realm resumes wherever the interrupt hit it, and
  // an interrupt's handler runs whatever it interrupted; only the other end stays the same.
  const pcs = fromTramp ? [src, pc] : how === XFER_IRET ? [src] : how === XFER_INTERRUPT ? [pc] : [src, pc];
  findings.add('REALM_ENTRY', cause, pcs, time, pcpu, domain, vcpu, detail, evidence);
}

/** EV_KERNEL_IN_REALM_VIEW: a = the kernel instruction, b = KIRV_* | view << 16, c = the last control transfer (-1). */
export function kernelInRealmViewFinding(findings: Findings, domain: string, pcpu: number, time: number, vcpu: number,
  a: number, b: number, c: number, evidence: () => string[]): void {
  const why = b & 7, v = (b >>> 16) & 0xffff;
  const cause = KIRV_CAUSES[why] ?? 'view_switch';
  const at = c === -1 ? '' : ` at pc ${hex(c & ~7)}`;
  const how = why === KIRV_INTERRUPT ? `an interrupt or exception taken${at} in realm or trampoline code ran its handler in the realm's view`
    : why === KIRV_LEFT_REALM ? `realm or trampoline code went on to kernel code (last transfer${at}) without leaving the realm's view`
      : 'the view changed under kernel code (VMFUNC, switch_p2m, an agent or a p2m change)';
  findings.add('KERNEL_IN_REALM_VIEW', cause, [a], time, pcpu, domain, vcpu,
    `${how}: code at pc ${hex(a)}, outside realm and trampoline, ran in ${view(v)}, where the realm's code is executable ` +
    '(the kernel has the realm\'s mappings)', evidence);
}
