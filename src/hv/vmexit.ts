// VM-exit handlers. Each "Safe:" comment marks a pc advance and why it is the right length: every
// instruction is 8 bytes, and an exit leaves pc on the instruction that caused it.
import * as C from '../../shared/machine.js';
import { DM_DEAD_HALTED, DM_NVCPUS, DS_CRASHED, DS_HALTED, DS_SHUTDOWN } from '../../shared/domain.js';
import { FL_IF, RS_BLOCKED, RS_RUNNING, VC_INTENT_SEQ, VC_IPI_SEQ, VC_APIC_ID, VC_REPORT_SEQ, VC_RUNSTATE, VCPU_STRIDE_WORDS } from '../../shared/vcpu.js';
import {
  EXIT_CPUID, EXIT_EPT_VIOLATION, EXIT_EXTINT, EXIT_HLT, EXIT_IO, EXIT_MAGIC, EXIT_IRQ_WINDOW, EXIT_NMI_WINDOW, EXIT_PREEMPT, EXIT_RDMSR,
  EXIT_TRIPLE_FAULT, EXIT_VMCALL, EXIT_VMFUNC, EXIT_WRMSR, VEC_GP, VEC_UD, guestDeliver, ioQualIsOut, ioQualPort,
  ioQualReg,
} from '../isa/interp.js';
import { INSN_BYTES, REG_EAX, REG_EBX, REG_ECX, REG_EDX } from '../isa/opcodes.js';
import {
  CRASH_TRIPLE_FAULT, EV_ASSERT, EV_CONSOLE, EV_DOMAIN_END, EV_EXCEPTION, EV_HALT_DEAD,
  EV_INTENT, EV_MARKER, EV_REPORT,
} from '../trace/events.js';
import { domainEnd } from './domain-ops.js';
import { hypercallDispatch, XEN_VERSION } from './hypercall.js';
import { vlapicHasDeliverable, vlapicMsrExit } from './vlapic.js';
import { eptViolation } from './mem-access.js';
import type { PcpuCtx } from './pcpu-ctx.js';
import type { GuestPcpu } from './hvm-op-guest.js';
import { bug } from '../errors.js';

export const CONSOLE_PORT = 0xe9;
export const MSR_TSC = 0x10;

/** `p` carries the guest HVMOP state too: a VMCALL may be an HVMOP_altp2m (hvm-op-guest.ts). */
export function vmexitHandle(p: GuestPcpu, reason: number): void {
  const costs = p.params.costs;
  switch (reason) {
    case EXIT_HLT: p.hvCycles(costs.vmexit); return exitHlt(p);
    case EXIT_VMCALL:
      p.hvCycles(costs.hypercall);
      if (hypercallDispatch(p)) p.core.pc += INSN_BYTES; // Safe: vmcall, and the hypercall did not move pc
      return;
    case EXIT_MAGIC: return exitMagic(p);
    case EXIT_CPUID: p.hvCycles(costs.vmexit); return exitCpuid(p);
    case EXIT_RDMSR: p.hvCycles(costs.vmexit); if (!vlapicMsrExit(p, false)) exitRdmsr(p); return;
    case EXIT_WRMSR: p.hvCycles(costs.vmexit); if (!vlapicMsrExit(p, true)) exitWrmsr(p); return;
    case EXIT_IO: p.hvCycles(costs.io_exit); return exitIo(p);
    case EXIT_EPT_VIOLATION: return eptViolation(p);
    case EXIT_TRIPLE_FAULT: return crash(p, CRASH_TRIPLE_FAULT, p.core.exitQual, p.core.pc, 0);
    case EXIT_EXTINT: p.hvCycles(costs.vmexit); return; // the pending bits are serviced at the next step
    case EXIT_VMFUNC:
      // Leaf 0 with an index the EPTP list does not hold exits; Xen injects #UD (xen-altp2m.md §VMFUNC).
      return inject(p, VEC_UD);
    case EXIT_PREEMPT: return;
    // The guest's IRET ended NMI blocking with a virtual NMI waiting: inject it at this entry.
    case EXIT_NMI_WINDOW: p.hvCycles(costs.vmexit); p.virqCheck = true; return;
    // The guest set IF with a virtual interrupt waiting: inject it at this entry.
    case EXIT_IRQ_WINDOW: p.hvCycles(costs.vmexit); p.virqCheck = true; return;
    default: bug(`unhandled exit reason ${reason}`);
  }
}

/** Inject a fault at the current instruction (pc not advanced), e.g. #GP for an unknown MSR. */
export function inject(p: PcpuCtx, vec: number): void {
  const c = p.core;
  p.emit(EV_EXCEPTION, vec, c.pc, 0);
  p.hvCycles(p.params.costs.exception);
  const r = guestDeliver(c, vec, c.pc);
  if (r !== 0) crash(p, CRASH_TRIPLE_FAULT, vec, c.pc, 0);
}

function crash(p: PcpuCtx, reason: number, a: number, b: number, c: number): void {
  if (domainEnd(p.m, p.curDomain, DS_CRASHED, reason, a, b, c, p.cur)) p.emit(EV_DOMAIN_END, DS_CRASHED, reason, a);
}

function exitHlt(p: PcpuCtx): void {
  const m = p.m, c = p.core;
  c.pc += INSN_BYTES; // Safe: hlt; a woken vCPU resumes after it
  const ifl = (c.flags & FL_IF) !== 0;
  // Xen hvm_hlt: an interrupt already pending means hlt returns at once.
  if (ifl && vlapicHasDeliverable(p, p.cur)) return;
  const rs = p.cur * VCPU_STRIDE_WORDS + VC_RUNSTATE;
  Atomics.store(m.vc32, rs, RS_BLOCKED);
  // vcpu_block's second look (xen-sched-ipi.md §1.6): an IPI that set IRR after the check above but
  // before RS_BLOCKED was visible found the vCPU not blocked and did not wake it; catch it here.
  if (ifl && vlapicHasDeliverable(p, p.cur)) {
    Atomics.compareExchange(m.vc32, rs, RS_BLOCKED, RS_RUNNING);
    return;
  }
  if (!ifl) {
    // Nothing maskable can wake it. When every vCPU is in this state the domain can never run again.
    p.emit(EV_HALT_DEAD, 0, c.pc, 0);
    const db = m.domainBase(p.curDomain);
    if (Atomics.add(m.dm32, db + DM_DEAD_HALTED, 1) + 1 === m.dm32[db + DM_NVCPUS]) {
      if (domainEnd(m, p.curDomain, DS_HALTED, 0, 0, 0, 0, p.cur)) p.emit(EV_DOMAIN_END, DS_HALTED, 0, 0);
    }
  }
}

function exitMagic(p: PcpuCtx): void {
  const m = p.m, c = p.core, R = c.R;
  const vb = p.cur * VCPU_STRIDE_WORDS;
  switch (c.exitQual) {
    case 0:
      c.pc += INSN_BYTES; // Safe: magic
      if (domainEnd(m, p.curDomain, DS_SHUTDOWN, R[REG_EBX], 0, 0, 0, p.cur)) p.emit(EV_DOMAIN_END, DS_SHUTDOWN, R[REG_EBX], 0);
      return;
    case 1: p.emit(EV_REPORT, R[REG_EBX], R[REG_ECX], m.vc32[vb + VC_REPORT_SEQ]++); break;
    case 2:
      // b = vector | intent seq << 8, c = the IPI seq the next send will carry (oracles/ipi.ts).
      p.emit(EV_INTENT, R[REG_EBX], (R[REG_ECX] & 0xff) | (m.vc32[vb + VC_INTENT_SEQ]++ << 8), m.vc32[vb + VC_IPI_SEQ]);
      break;
    case 3:
      Atomics.add(m.ctl, C.CTL_GUEST_ASSERTS, 1);
      p.emit(EV_ASSERT, R[REG_EBX], c.pc, 0);
      break;
    case 4: p.emit(EV_MARKER, R[REG_EBX], c.pc, 0); break;
    default: return inject(p, VEC_UD);
  }
  c.pc += INSN_BYTES; // Safe: magic
}

/** "GenuineIntel" and Xen's "XenVMMXenVMM" as the register words cpuid returns. */
const VENDOR = [0x756e6547, 0x49656e69, 0x6c65746e]; // ebx edx ecx
const XEN_SIG = [0x566e6558, 0x65584d4d, 0x4d4d566e]; // ebx ecx edx

function exitCpuid(p: PcpuCtx): void {
  const R = p.core.R, m = p.m;
  const leaf = R[REG_EAX] >>> 0;
  const apicId = m.vc32[p.cur * VCPU_STRIDE_WORDS + VC_APIC_ID];
  let a = 0, b = 0, c = 0, d = 0;
  switch (leaf) {
    case 0: a = 0xb; b = VENDOR[0]; d = VENDOR[1]; c = VENDOR[2]; break;
    // family 6; ebx[31:24] initial APIC ID; ecx: bit 21 x2APIC, bit 31 hypervisor; edx bit 9 APIC
    case 1: a = 0x000806f8; b = (apicId << 24) | (1 << 16); c = (1 << 21) | (1 << 31); d = 1 << 9; break;
    case 0xb: a = 0; b = 1; c = R[REG_ECX] & 0xff; d = apicId; break;
    case 0x40000000: a = 0x40000002; b = XEN_SIG[0]; c = XEN_SIG[1]; d = XEN_SIG[2]; break;
    case 0x40000001: a = XEN_VERSION; break;
    default: break;
  }
  R[REG_EAX] = a; R[REG_EBX] = b; R[REG_ECX] = c; R[REG_EDX] = d;
  p.core.pc += INSN_BYTES; // Safe: cpuid
}

function exitRdmsr(p: PcpuCtx): void {
  const R = p.core.R;
  const msr = R[REG_ECX] >>> 0;
  if (msr === MSR_TSC) {
    const t = p.core.clock;
    R[REG_EAX] = t % 4294967296 | 0;
    R[REG_EDX] = Math.floor(t / 4294967296) | 0;
  } else return inject(p, VEC_GP);
  p.core.pc += INSN_BYTES; // Safe: rdmsr
}

/** No writable MSR is left after the vLAPIC's (IA32_APIC_BASE, x2APIC range, vlapic.ts): #GP. */
function exitWrmsr(p: PcpuCtx): void {
  inject(p, VEC_GP);
}

function exitIo(p: PcpuCtx): void {
  const c = p.core, q = c.exitQual;
  const port = ioQualPort(q), reg = ioQualReg(q);
  if (ioQualIsOut(q)) {
    if (port === CONSOLE_PORT) p.emit(EV_CONSOLE, c.R[reg] & 0xff, 0, 0);
  } else {
    // Bochs/QEMU's port 0xE9 hack reads back 0xE9 so a guest can detect the console; nothing else decodes.
    c.R[reg] = port === CONSOLE_PORT ? CONSOLE_PORT : -1;
  }
  c.pc += INSN_BYTES; // Safe: in/out
}
