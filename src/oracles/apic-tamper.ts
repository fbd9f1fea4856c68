// HOST_APIC_TAMPER (DESIGN.md §6): a guest given the host's LAPIC (xapic-passthrough, x2apic-passthrough)
// wrote one of the registers the hypervisor relies on to take its own interrupts: TPR, SVR, an LVT entry or
// EOI. The guest believes the APIC is its own (a kernel raising TPR for its interrupt priority, an
// interrupt handler's EOI); the machine has one LAPIC per pCPU, and the hypervisor's interrupts go through
// it. What follows is the hardware's: a TPR at or above a vector's class holds that vector off (apic.md §4
// "Priority": Xen's vectors are all in class 0xF), software disable drops fixed interrupts and masks every
// LVT entry, a masked LVT Timer stops the scheduler's tick, an EOI retires whatever Xen had in service.
//
// Two causes of occurrence: the write itself (tpr, svr, lvt, eoi: one per write, with register, value and
// the guest pc), and held_off: the hypervisor waits on a pCPU whose LAPIC keeps the awaited vector off, a
// wait that does not end while the register stays so (an EPT flush's acknowledgement, a pause's kick).
// Both events are the machine's own; this module only turns them into findings.
import {
  LAPIC_EOI, LAPIC_LVT_CMCI, LAPIC_LVT_ERROR, LAPIC_LVT_LINT0, LAPIC_LVT_LINT1, LAPIC_LVT_PMC, LAPIC_LVT_THERMAL,
  LAPIC_LVT_TIMER, LAPIC_SVR, LAPIC_TPR,
} from '../../shared/lapic.js';
import { EV_HOST_APIC_TAMPER, EV_HV_HELD_OFF } from '../trace/events.js';
import { PC_XEN, type Findings } from './findings.js';

const REG_NAMES: Readonly<Record<number, string>> = {
  [LAPIC_TPR]: 'TPR', [LAPIC_EOI]: 'EOI', [LAPIC_SVR]: 'SVR', [LAPIC_LVT_CMCI]: 'LVT CMCI', [LAPIC_LVT_TIMER]: 'LVT Timer',
  [LAPIC_LVT_THERMAL]: 'LVT Thermal', [LAPIC_LVT_PMC]: 'LVT PerfMon', [LAPIC_LVT_LINT0]: 'LVT LINT0', [LAPIC_LVT_LINT1]: 'LVT LINT1',
  [LAPIC_LVT_ERROR]: 'LVT Error',
};

/** Is a guest write to this xAPIC register offset one HOST_APIC_TAMPER reports? */
export function apicTamperRegister(offset: number): boolean {
  return REG_NAMES[offset] !== undefined;
}

/** The register's name (`TPR`, `LVT Timer`, ...) for an xAPIC offset. */
export function apicRegName(offset: number): string {
  return REG_NAMES[offset] ?? `register 0x${(offset >>> 0).toString(16)}`;
}

/** The cause token of a write to `offset`. */
function writeCause(offset: number): string {
  switch (offset) {
    case LAPIC_TPR: return 'tpr';
    case LAPIC_SVR: return 'svr';
    case LAPIC_EOI: return 'eoi';
    default: return 'lvt';
  }
}

/** What a write does to the hypervisor's interrupts on that pCPU. */
function writeEffect(offset: number, value: number): string {
  switch (offset) {
    case LAPIC_TPR: return (value & 0xf0) === 0 ? 'it lowers the priority the hypervisor set (0)'
      : `every vector of class 0x${((value >>> 4) & 0xf).toString(16)} and below is held off, the hypervisor's own ` +
        `(0xf0-0xff) ${(value & 0xf0) === 0xf0 ? 'included' : 'not yet'}`;
    case LAPIC_SVR: return (value & 0x100) === 0 ? 'the LAPIC is software-disabled: fixed interrupts are dropped and every LVT entry masked'
      : 'the hypervisor\'s spurious vector and enable bit are the guest\'s to change';
    case LAPIC_EOI: return 'it retires the highest interrupt in service, whosever it is';
    case LAPIC_LVT_TIMER: return (value & 0x10000) !== 0 ? 'the timer that drives the scheduler is masked'
      : 'the timer that drives the scheduler is reprogrammed';
    default: return 'a local interrupt source the hypervisor owns is reprogrammed';
  }
}

const VECTOR_NAMES: Readonly<Record<number, string>> = {
  0xfd: 'invalidate', 0xfc: 'event check (the kick that takes a vCPU off its pCPU)', 0xfb: 'call function (an EPT flush)',
  0xfa: 'local timer',
};

function hex(v: number): string { return '0x' + (v >>> 0).toString(16); }

/** EV_HOST_APIC_TAMPER or EV_HV_HELD_OFF into a HOST_APIC_TAMPER occurrence. */
export function apicTamperFinding(findings: Findings, domains: string[], pcpu: number, time: number, kind: number,
  dom: number, vcpu: number, a: number, b: number, c: number, pc: number, evidence: () => string[]): void {
  const domain = dom >= 0 ? domains[dom] ?? '' : '';
  if (kind === EV_HOST_APIC_TAMPER) {
    findings.add('HOST_APIC_TAMPER', writeCause(a), [pc], time, pcpu, domain, vcpu,
      `the guest wrote ${hex(b)} to the host LAPIC's ${apicRegName(a)} (${c === 1 ? 'WRMSR' : 'the xAPIC page'}) of pCPU ${pcpu} ` +
      `at pc ${hex(pc)}: ${writeEffect(a, b)}`, evidence);
    return;
  }
  if (kind !== EV_HV_HELD_OFF) return;
  const v = b & 0xff;
  const why = c < 0 ? 'its LAPIC is software-disabled (SVR bit 8 clear), so the vector was dropped'
    : `its TPR is ${hex(c)}, which holds class 0x${(v >>> 4).toString(16)} off, so the vector waits in IRR`;
  findings.add('HOST_APIC_TAMPER', 'held_off', [PC_XEN], time, pcpu, domain, vcpu,
    `the hypervisor on pCPU ${pcpu} waits for pCPU ${a} to take vector ${hex(v)} (${VECTOR_NAMES[v] ?? 'its own'}) and ` +
    `${why}: the wait ends only if the guest on pCPU ${a} gives the LAPIC back`, evidence);
}
