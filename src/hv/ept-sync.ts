// Cross-pCPU EPT invalidation as Xen does it (../shared/reference/xen-altp2m.md §4, p2m-ept.c and
// vmx_vmenter_helper): a writer marks the changed tables' `invalidate` masks with every pCPU, IPIs the
// domain's dirty_cpumask with a call-function that has no body (its only job is to force a VM exit), and
// waits for each target to take it. Every pCPU runs INVEPT on itself just before its next VM entry:
// single-context when one of its marks is set, all-context when several are.
//
// ept_sync = "no-kick" keeps the marks but sends no IPI (running guests keep stale translations until
// their next exit); "none" does neither (only a context switch flushes).
import {
  AD_DIRTY, AD_EPT_SYNC, AD_HOST_INVALIDATE, CPUMASK_WORDS, EPT_SYNC_NONE, EPT_SYNC_XEN, VW_INVALIDATE,
  altp2mBase, viewBase,
} from '../../shared/altp2m.js';
import { ICR_DM_FIXED } from '../../shared/lapic.js';
import { PC_FLUSH_ACKS, PC_FLUSH_IPIS, PC_INVEPT_ALL, PC_INVEPT_HINT, PC_INVEPT_SINGLE, PC_STATE, PEND_IRQ, PS_STOPPED, PS_WAIT_SIPI } from '../../shared/pcpu.js';
import { lapicAcceptIpi, type LapicOptions } from '../hw/lapic.js';
import type { Machine } from '../machine.js';
import { EV_INVEPT } from '../trace/events.js';
import { HOST_TABLE, altp2mNr, viewValid } from './altp2m.js';
import { hvSendIpiMask } from './ipi-send.js';
import { CALL_FUNCTION_VECTOR, irqRegister } from './irq-vectors.js';
import type { PcpuCtx } from './pcpu-ctx.js';

export function eptSyncMode(m: Machine, d: number): number { return m.ap32[altp2mBase(d) + AD_EPT_SYNC]; }

function maskBase(d: number, t: number): number {
  return t === HOST_TABLE ? altp2mBase(d) + AD_HOST_INVALIDATE : viewBase(d, t) + VW_INVALIDATE;
}

/**
 * ept_sync_domain_prepare for each table in `tables`: invalidate = all pCPUs. Every pCPU gets the hint
 * to look before its next VM entry. Nothing under ept_sync = "none".
 */
export function eptMarkTables(m: Machine, d: number, tables: readonly number[]): void {
  if (tables.length === 0 || eptSyncMode(m, d) === EPT_SYNC_NONE) return;
  for (const t of tables) {
    const b = maskBase(d, t);
    for (let w = 0; w < CPUMASK_WORDS; w++) Atomics.store(m.ap32, b + w, -1);
  }
  for (let q = 0; q < m.npcpus; q++) Atomics.store(m.pc32, m.pcpuBase(q) + PC_INVEPT_HINT, 1);
}

/** Record that pCPU p loads one of domain d's vCPUs (dirty_cpumask is set before the context switch). */
export function dirtyMaskSet(m: Machine, d: number, p: number): void {
  Atomics.or(m.ap32, altp2mBase(d) + AD_DIRTY + (p >> 5), 1 << (p & 31));
}
/** pCPU p loads a vCPU of another domain: it leaves d's mask (Xen clears lazily, only then). */
export function dirtyMaskClear(m: Machine, d: number, p: number): void {
  Atomics.and(m.ap32, altp2mBase(d) + AD_DIRTY + (p >> 5), ~(1 << (p & 31)));
}

/**
 * Send the flush IPI to d's dirty mask except `self` (-1: the agent, outside the machine) and note each
 * target's acknowledgement count in `snap` (-1 for pCPUs not waited on). Returns the number of targets.
 * Only under ept_sync = "xen". `p` sends through its own LAPIC; the agent's IPIs arrive as from outside.
 */
export function eptSyncSend(m: Machine, d: number, p: PcpuCtx | null, lapic: LapicOptions, snap: Int32Array): number {
  snap.fill(-1);
  if (eptSyncMode(m, d) !== EPT_SYNC_XEN) return 0;
  const self = p === null ? -1 : p.id;
  const targets: number[] = [];
  for (let q = 0; q < m.npcpus; q++) {
    if (q === self) continue;
    if ((Atomics.load(m.ap32, altp2mBase(d) + AD_DIRTY + (q >> 5)) & (1 << (q & 31))) === 0) continue;
    snap[q] = Atomics.load(m.pc32, m.pcpuBase(q) + PC_FLUSH_ACKS);
    targets.push(q);
    if (p === null) {
      lapicAcceptIpi(m.lapic32, m.plapicBase(q), ICR_DM_FIXED | CALL_FUNCTION_VECTOR, lapic);
      m.kick(q, PEND_IRQ);
    }
  }
  if (p !== null && targets.length > 0) {
    // on_selected_cpus: one send_IPI_mask for the whole mask (a shorthand or one logical ICR write where the
    // machine's genapic allows); each target counts as one flush IPI taken.
    hvSendIpiMask(p, targets, CALL_FUNCTION_VECTOR);
    m.pc32[p.base + PC_FLUSH_IPIS] += targets.length;
  }
  return targets.length;
}

/**
 * Has every target in `snap` taken the flush IPI? A pCPU whose loop has ended counts as done; so does one
 * an INIT reset (its LAPIC no longer answers; Xen would wait for ever, which the HOST_RESET finding already reports).
 */
export function eptSyncAcked(m: Machine, snap: Int32Array): boolean {
  for (let q = 0; q < m.npcpus; q++) {
    const s = snap[q];
    if (s < 0) continue;
    const b = m.pcpuBase(q);
    if (Atomics.load(m.pc32, b + PC_FLUSH_ACKS) !== s) { snap[q] = -1; continue; }
    const st = Atomics.load(m.pc32, b + PC_STATE);
    if (st === PS_STOPPED || st === PS_WAIT_SIPI) { snap[q] = -1; continue; }
    return false;
  }
  return true;
}

/** The flush IPI's handler: nothing to do but be acknowledged (the VM exit already happened). */
export function eptFlushIpiTaken(p: PcpuCtx): void {
  Atomics.add(p.m.pc32, p.base + PC_FLUSH_ACKS, 1);
}

/**
 * vmx_vmenter_helper's INVEPT for the domain pCPU p is about to enter: test-and-clear this pCPU's bit in
 * the host's and every valid view's mask; one set → flush that table's TLB, several → flush all.
 */
export function eptEntryFlush(p: PcpuCtx, d: number): void {
  const m = p.m;
  Atomics.store(m.pc32, p.base + PC_INVEPT_HINT, 0);
  const w = p.id >> 5, bit = 1 << (p.id & 31);
  let count = 0, which = HOST_TABLE;
  const nr = altp2mNr(m, d);
  for (let t = HOST_TABLE; t < nr; t++) {
    if (t !== HOST_TABLE && !viewValid(m, d, t)) continue;
    const b = maskBase(d, t) + w;
    if ((Atomics.load(m.ap32, b) & bit) === 0) continue;
    Atomics.and(m.ap32, b, ~bit);
    count++;
    which = t;
  }
  if (count === 0) return;
  p.hvCycles(p.params.costs.invept);
  if (count === 1) {
    p.core.tlbFlushTable(which);
    m.pc32[p.base + PC_INVEPT_SINGLE]++;
  } else {
    p.core.tlbFlushAll();
    m.pc32[p.base + PC_INVEPT_ALL]++;
  }
  if (p.params.traceExits) p.emit(EV_INVEPT, count === 1 ? which : -2, count, 0);
}

// ept_sync_domain's flush IPI: no body, acknowledged by being taken (irq-vectors.ts).
irqRegister(CALL_FUNCTION_VECTOR, eptFlushIpiTaken);
