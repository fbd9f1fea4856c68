// The hypervisor's vector table (Xen's alloc_direct_apic_vector / set_direct_apic_vector): the lowest
// layer of interrupt handling. Each module that handles one of the hypervisor's physical vectors
// registers its handler here when it loads (posted.ts, ept-sync.ts, ipi.ts, apic-timer.ts); the dispatcher (ipi.ts
// physService) looks the vector up and never imports the handlers, so sending an IPI (ipi-send.ts) and
// handling one can both sit below everything that uses them without an import cycle.
import type { PcpuCtx } from './pcpu-ctx.js';
import { assert, bug } from '../errors.js';

// Xen's own vectors (xen/arch/x86/include/asm/irq-vectors.h; xen-sched-ipi.md §3.1)
export const INVALIDATE_TLB_VECTOR = 0xfd;
export const EVENT_CHECK_VECTOR = 0xfc;
export const CALL_FUNCTION_VECTOR = 0xfb;
/** The LAPIC timer's vector (apic-timer.ts): the scheduler's tick. */
export const LOCAL_TIMER_VECTOR = 0xfa;
/** Posted-interrupt notification and wake-up vectors come from the dynamic range 0xF1-0xF8. */
export const POSTED_INTR_VECTOR = 0xf2;
export const PI_WAKEUP_VECTOR = 0xf1;
/** Every vector the hypervisor owns: each must have a handler before a pCPU runs (irqVectorsComplete). */
export const HV_VECTORS: readonly number[] = [INVALIDATE_TLB_VECTOR, EVENT_CHECK_VECTOR, CALL_FUNCTION_VECTOR, LOCAL_TIMER_VECTOR, POSTED_INTR_VECTOR, PI_WAKEUP_VECTOR];

/** A handler runs on the pCPU that took the vector, after it was acknowledged and before the EOI. */
export type IrqHandler = (p: PcpuCtx) => void;
/** What the passthrough designs do with a vector nobody handles: hand it to the running vCPU. */
export type IrqReflect = (p: PcpuCtx, vcpu: number, vector: number, tag: number) => void;

const handlers: (IrqHandler | undefined)[] = new Array<IrqHandler | undefined>(256).fill(undefined);
let reflect: IrqReflect | undefined;
let service: ((p: PcpuCtx) => boolean) | undefined;

/** Register the handler of one of the hypervisor's vectors (once, at module load). */
export function irqRegister(vector: number, h: IrqHandler): void {
  assert(HV_VECTORS.includes(vector), `vector 0x${vector.toString(16)} is not one of the hypervisor's`);
  assert(handlers[vector] === undefined, `vector 0x${vector.toString(16)} registered twice`);
  handlers[vector] = h;
}

/** The handler of `vector`, or undefined when the hypervisor does not handle it. */
export function irqHandler(vector: number): IrqHandler | undefined { return handlers[vector & 0xff]; }

/** Does the hypervisor handle this physical vector? */
export function hvHandlesVector(v: number): boolean { return handlers[v & 0xff] !== undefined; }

export function irqRegisterReflect(r: IrqReflect): void {
  assert(reflect === undefined, 'the reflect handler registered twice');
  reflect = r;
}
export function irqReflect(p: PcpuCtx, vcpu: number, vector: number, tag: number): void {
  if (reflect === undefined) bug('no reflect handler registered (vlapic.ts not loaded)');
  reflect(p, vcpu, vector, tag);
}

/**
 * Interrupt context (Xen's in_irq): the dispatcher counts the handlers it is running. A pCPU runs its
 * handlers to completion on its own thread, so one counter per thread is exact.
 */
let handlerDepth = 0;
/** Run `h` on `p` as an interrupt handler. */
export function irqRunHandler(h: IrqHandler, p: PcpuCtx): void {
  handlerDepth++;
  try { h(p); } finally { handlerDepth--; }
}
/** Is an interrupt handler running on this thread? */
export function irqInHandler(): boolean { return handlerDepth > 0; }

/** The dispatcher registers itself, so a sender that must take a pending interrupt can run it. */
export function irqRegisterService(s: (p: PcpuCtx) => boolean): void {
  assert(service === undefined, 'the interrupt dispatcher registered twice');
  service = s;
}
/** Service this pCPU's LAPIC now (the dispatcher, ipi.ts physService). */
export function irqServiceNow(p: PcpuCtx): boolean {
  if (service === undefined) bug('no interrupt dispatcher registered (ipi.ts not loaded)');
  return service(p);
}

/** Every hypervisor vector has its handler, and the reflect and service hooks are in place. */
export function irqVectorsComplete(): boolean {
  return HV_VECTORS.every((v) => handlers[v] !== undefined) && reflect !== undefined && service !== undefined;
}
