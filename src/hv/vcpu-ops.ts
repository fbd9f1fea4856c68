// vcpu_pause / unpause and the virtual INIT-SIPI that uses them (xen-sched-ipi.md §1.8, §2.3).
//
// Xen's vcpu_pause is "pause_count++, then wait until the vCPU is off its pCPU" (vcpu_sleep_sync). A
// hypervisor action here is one step and must not block the pCPU it runs on (the serial engine has only
// one thread), so the waiting half is a continuation instead: the pauser raises the count and kicks the
// vCPU's pCPU; whoever next holds the vCPU off-CPU completes the operation — the pauser itself when the
// vCPU is not running, otherwise the pCPU that deschedules it (PcpuCtx.unload calls vcpuApplyInit). Either
// way the operation runs only on saved state, which is the guarantee sleep-sync gives.
import { DM_RAM_FRAMES } from '../../shared/domain.js';
import {
  FL_FIXED, RS_BLOCKED, RS_RUNNABLE, RS_RUNNING, RS_WAIT_SIPI, VCPU_STRIDE_WORDS, VC_DOMAIN, VC_FLAGS, VC_ID,
  VC_INIT_PENDING, VC_PAUSE_COUNT, VC_PC, VC_PCPU, VC_REGS, VC_RUNSTATE, VINIT_NONE, VINIT_PENDING,
} from '../../shared/vcpu.js';
import { REG_ESP } from '../isa/opcodes.js';
import { lapicInit, lapicTakeSipi } from '../hw/lapic.js';
import type { Machine } from '../machine.js';
import { schedStamp, schedTickleTarget } from './sched/sched.js';
import { hvKick } from './ipi-send.js';
import { assert } from '../errors.js';
import type { PcpuCtx } from './pcpu-ctx.js';

/** pause_count++ (nosync); kick the vCPU's pCPU so a running vCPU leaves it at its next instruction. */
export function vcpuPauseNosync(p: PcpuCtx, v: number): void {
  const m = p.m, b = v * VCPU_STRIDE_WORDS;
  const before = Atomics.add(m.vc32, b + VC_PAUSE_COUNT, 1);
  assert(before >= 0, `vCPU ${v}'s pause count was ${before} before a pause`);
  if (Atomics.load(m.vc32, b + VC_RUNSTATE) === RS_RUNNING) hvKick(p, Atomics.load(m.vc32, b + VC_PCPU));
}

/** pause_count--; when it reaches 0 a runnable vCPU may run again (its pCPU is tickled). */
export function vcpuUnpause(p: PcpuCtx, v: number): void {
  const m = p.m, b = v * VCPU_STRIDE_WORDS;
  const before = Atomics.sub(m.vc32, b + VC_PAUSE_COUNT, 1);
  assert(before >= 1, `vCPU ${v} unpaused while not paused (pause count ${before})`); // pairs with vcpuPauseNosync
  if (before !== 1) return;
  if (Atomics.load(m.vc32, b + VC_RUNSTATE) === RS_RUNNABLE) hvKick(p, schedTickleTarget(m, v, Atomics.load(m.vc32, b + VC_PCPU)));
}

/**
 * INIT reached vCPU v's vLAPIC (Xen: vlapic INIT handling pauses the target, resets it, unpauses):
 * pause it; reset it now if it is off-CPU, else when its pCPU deschedules it.
 */
export function vcpuInit(p: PcpuCtx, v: number): void {
  const m = p.m, b = v * VCPU_STRIDE_WORDS;
  if (Atomics.compareExchange(m.vc32, b + VC_INIT_PENDING, VINIT_NONE, VINIT_PENDING) !== VINIT_NONE) return; // one at a time
  vcpuPauseNosync(p, v);
  if (Atomics.load(m.vc32, b + VC_RUNSTATE) !== RS_RUNNING) vcpuApplyInit(p, v);
}

/**
 * Apply a pending INIT to v, which is off-CPU: registers cleared, wait for SIPI, vLAPIC reset; then
 * unpause. Safe against a racing waker: runstate moves by compareExchange from what it was.
 */
export function vcpuApplyInit(p: PcpuCtx, v: number): void {
  const m = p.m, b = v * VCPU_STRIDE_WORDS;
  for (;;) {
    const rs = Atomics.load(m.vc32, b + VC_RUNSTATE);
    if (rs === RS_RUNNING) return; // it got back on a pCPU before the pause took: that pCPU will apply it
    if (rs !== RS_RUNNABLE && rs !== RS_BLOCKED && rs !== RS_WAIT_SIPI) break; // done, lost, limit: nothing to reset
    if (Atomics.compareExchange(m.vc32, b + VC_RUNSTATE, rs, RS_WAIT_SIPI) === rs) break;
  }
  if (Atomics.compareExchange(m.vc32, b + VC_INIT_PENDING, VINIT_PENDING, VINIT_NONE) !== VINIT_PENDING) return;
  for (let i = 0; i < 16; i++) m.vc32[b + VC_REGS + i] = 0;
  m.vc32[b + VC_FLAGS] = FL_FIXED;
  lapicInit(m.lapic32, m.vlapicBase(v)); // keeps a SIPI that arrived meanwhile
  vcpuStartIfSipi(p, v);
  vcpuUnpause(p, v);
}

/**
 * A SIPI reached vCPU v's vLAPIC (recorded there if it was waiting for one). Start v if it is already
 * reset; if its INIT is still pending, vcpuApplyInit starts it once the reset is done.
 */
export function vcpuSipi(p: PcpuCtx, v: number): void {
  const m = p.m, b = v * VCPU_STRIDE_WORDS;
  if (Atomics.load(m.vc32, b + VC_INIT_PENDING) !== VINIT_NONE) return;
  vcpuStartIfSipi(p, v);
}

/** A reset vCPU with a SIPI recorded starts at vector << 12 (real-mode CS = VV00) with its initial stack. */
function vcpuStartIfSipi(p: PcpuCtx, v: number): void {
  const m = p.m, b = v * VCPU_STRIDE_WORDS;
  if (Atomics.load(m.vc32, b + VC_RUNSTATE) !== RS_WAIT_SIPI) return;
  const vector = lapicTakeSipi(m.lapic32, m.vlapicBase(v));
  if (vector < 0) return;
  m.vc32[b + VC_PC] = vector << 12;
  m.vc32[b + VC_REGS + REG_ESP] = initialEsp(m, v);
  schedStamp(m, v);
  if (Atomics.compareExchange(m.vc32, b + VC_RUNSTATE, RS_WAIT_SIPI, RS_RUNNABLE) !== RS_WAIT_SIPI) return;
  hvKick(p, schedTickleTarget(m, v, Atomics.load(m.vc32, b + VC_PCPU)));
}

/** esp a vCPU starts with: top of guest RAM minus 4 KiB per vCPU index (ISA.md). */
function initialEsp(m: Machine, v: number): number {
  const b = v * VCPU_STRIDE_WORDS;
  const frames = m.dm32[m.domainBase(m.vc32[b + VC_DOMAIN]) + DM_RAM_FRAMES];
  return frames * 4096 - 4096 * m.vc32[b + VC_ID];
}
