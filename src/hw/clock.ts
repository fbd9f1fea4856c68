// Simulated time. Every guest instruction and hypervisor action costs cycles of a 3 GHz reference
// clock; latencies are reported in simulated ns, never wall time. Defaults are the synthesis in
// ../shared/reference/anchors.md §A.4 (hardware numbers from §A.1); scenarios may override any key.
import {
  OP_COUNT, OP_CMPXCHG, OP_LADD, OP_LADD_SD, OP_LADD_SI, OP_LADD_W, OP_LAND, OP_LAND_SD, OP_LAND_SI, OP_LAND_W, OP_LFENCE, OP_LOR, OP_LOR_W,
  OP_LOR_SD, OP_LOR_SI, OP_MFENCE, OP_PAUSE, OP_XADD, OP_XCHG, OP_IMUL, OP_RDTSC, OP_VMFUNC,
} from '../isa/opcodes.js';

export const CYCLES_PER_NS = 3;

export interface CostTable {
  /** An ordinary instruction (ALU, move, jump, L1-hit memory access). */
  insn: number;
  /** A locked read-modify-write (xchg, lock xadd/cmpxchg/add/or/and): cache-line ownership. */
  locked: number;
  /** mfence. */
  mfence: number;
  /** pause (spin-loop hint; ~140 cycles on Skylake and later). */
  pause: number;
  /** imul. */
  imul: number;
  /** rdtsc. */
  rdtsc: number;
  /** VMFUNC EPTP switch without exit (§A.1: 60-170, ~150 default). */
  vmfunc: number;
  /** VM exit + entry round trip with a trivial handler (§A.1: ~1,050-1,100 on current Intel). */
  vmexit: number;
  /** Hypercall round trip (§A.1 VMCALL: ~1,550). */
  hypercall: number;
  /** Exception or interrupt delivery through the guest IDT (a few hundred cycles). */
  exception: number;
  /** Scheduler decision plus vCPU context switch in the hypervisor. */
  context_switch: number;
  /** EPT violation exit and handler (§A.1: 1,000-1,600 Intel). */
  ept_violation: number;
  /** Port I/O exit handled in the hypervisor. */
  io_exit: number;
  /** An IPI the CPU completes itself (IPIv post + notify, AVIC backing-page write + doorbell). */
  ipi_hw_send: number;
  /** INVEPT before VM entry, single- or all-context (anchors.md: no number found; a parameter). */
  invept: number;
  /** One poll of a hypervisor wait loop (flush acknowledgements, vCPUs leaving their pCPUs). */
  spin_poll: number;
}

export const DEFAULT_COSTS: Readonly<CostTable> = {
  insn: 1,
  locked: 20,
  mfence: 33,
  pause: 140,
  imul: 3,
  rdtsc: 25,
  vmfunc: 150,
  vmexit: 1100,
  hypercall: 1550,
  exception: 300,
  context_switch: 2000,
  ept_violation: 1300,
  io_exit: 1100,
  ipi_hw_send: 200,
  invept: 800,
  spin_poll: 40,
};

/** Per-opcode cycle cost used by the interpreter (exits add their own cost in the hypervisor). */
export function opcodeCosts(c: CostTable): Int32Array {
  const t = new Int32Array(OP_COUNT).fill(c.insn);
  for (const op of [OP_XCHG, OP_XADD, OP_CMPXCHG, OP_LADD, OP_LOR, OP_LAND, OP_LADD_SD, OP_LADD_SI,
    OP_LOR_SD, OP_LOR_SI, OP_LAND_SD, OP_LAND_SI, OP_LADD_W, OP_LOR_W, OP_LAND_W]) t[op] = c.locked;
  t[OP_MFENCE] = c.mfence;
  t[OP_LFENCE] = c.insn;
  t[OP_PAUSE] = c.pause;
  t[OP_IMUL] = c.imul;
  t[OP_RDTSC] = c.rdtsc;
  t[OP_VMFUNC] = c.vmfunc;
  return t;
}

export function cyclesToNs(cycles: number): number {
  return cycles / CYCLES_PER_NS;
}

export function nsToCycles(ns: number): number {
  return Math.round(ns * CYCLES_PER_NS);
}
