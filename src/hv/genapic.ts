// Xen's genapic: how the hypervisor addresses the machine's LAPICs (xen/arch/x86/genapic/, smp.c
// send_IPI_mask; ../shared/reference/xen-sched-ipi.md §3.2). Pure functions over plain values: which driver
// the machine gets, the logical ID each CPU's LDR holds, and the ICR writes one send_IPI_mask makes.
//
// Driver selection, as Xen picks it at boot:
// - xAPIC, at most 8 CPUs: `default`, flat logical mode. Each CPU's DFR is flat and its LDR holds bit `cpu`
//   in bits 31:24 (init_apic_ldr_flat); a send is one ICR_HI + ICR_LO pair with the whole mask as logical
//   destination (send_IPI_mask_flat).
// - xAPIC, more than 8 CPUs: `bigsmp`, physical mode. Xen counts the processors as it parses the MP/ACPI
//   tables and switches to bigsmp past 8 (mpparse.c, generic_bigsmp_probe); init_apic_ldr_phys programs
//   nothing, so LDR stays 0; a send is one ICR_HI + ICR_LO pair per target (send_IPI_mask_phys).
// - x2APIC: `x2apic_mixed` (Xen's default: physical for device interrupts, cluster for IPIs). LDR is the
//   hardware-derived cluster ID; a send is one WRMSR per cluster, the members' LDRs OR-ed
//   (send_IPI_mask_x2apic_cluster).
// Every driver skips the sender and offline CPUs. In front of them, send_IPI_mask uses the all-but-self
// shorthand (one ICR_LO write, no ICR_HI) when the mask plus the sender is every online CPU, unless it runs
// in interrupt context or with interrupts off. Physical APIC ID = pCPU index here, and every pCPU is online
// (Xen never learns of a pCPU a guest reset behind its back).
//
// Simplified: no x2APIC physical mode (`x2apic-mode=physical` or an FADT that forces it), no cluster mode on
// xAPIC (Xen implements none), no CPU hotplug.
import {
  DFR_MODEL_FLAT, ICR_DEST_LOGICAL, ICR_DM_FIXED, ICR_HI_XAPIC_DEST_SHIFT, ICR_SH_ALL_EXCL,
} from '../../shared/lapic.js';
import { x2apicLdrFromId } from '../hw/apic-bus.js';
import { assert } from '../errors.js';

/** Xen's genapic drivers (see the file comment). */
export type GenapicKind = 'flat' | 'phys' | 'x2apic-cluster';

/** Flat logical mode addresses at most 8 CPUs: one LDR bit each in bits 31:24. */
export const GENAPIC_FLAT_MAX_CPUS = 8;

/** The driver Xen runs on a machine of `ncpus` CPUs in this APIC mode. */
export function genapicSelect(ncpus: number, x2apic: boolean): GenapicKind {
  if (x2apic) return 'x2apic-cluster';
  return ncpus > GENAPIC_FLAT_MAX_CPUS ? 'phys' : 'flat';
}

/** The LDR value CPU `cpu` (physical APIC ID = cpu) holds under `kind`: what init_apic_ldr leaves there. */
export function genapicLdr(kind: GenapicKind, cpu: number): number {
  switch (kind) {
    case 'flat':
      assert(cpu >= 0 && cpu < GENAPIC_FLAT_MAX_CPUS, `flat logical mode has no LDR bit for CPU ${cpu}`);
      return (1 << (cpu + ICR_HI_XAPIC_DEST_SHIFT)) >>> 0;
    case 'phys': return 0;
    case 'x2apic-cluster': return x2apicLdrFromId(cpu);
  }
}

/** The DFR value of the flat model (xAPIC only: model 1111 in bits 31:28, bits 27:0 read as ones). */
export function genapicDfr(): number {
  return ((DFR_MODEL_FLAT << 28) | 0x0fffffff) >>> 0;
}

/**
 * One ICR write of a send. `icrLo` is the command; `dest` is the destination as the ICR holds it (xAPIC: the
 * ICR_HI value, already in bits 31:24; x2APIC: the 32-bit destination); `hi` says whether the xAPIC sender
 * writes ICR_HI first (a shorthand has no destination, so Xen writes only ICR_LO; x2APIC has no ICR_HI).
 */
export interface GenapicWrite {
  icrLo: number;
  dest: number;
  hi: boolean;
}

/** Where send_IPI_mask is called from: the shorthand needs interrupts on and no interrupt context. */
export interface GenapicContext {
  /** In an interrupt (or NMI, #MC) handler: Xen calls the driver directly. */
  inIrq: boolean;
  /** Interrupts are enabled on the sender (Xen: local_irq_is_enabled, needed for get_cpu_maps). */
  irqsEnabled: boolean;
}

/**
 * The ICR writes of Xen's send_IPI_mask(`targets`, `vector`) from CPU `self` on a machine of `ncpus` CPUs,
 * appended to `out` (cleared first). `targets` are CPU indices, any order, duplicates and `self` allowed.
 */
export function genapicPlan(kind: GenapicKind, targets: readonly number[], self: number, ncpus: number,
  vector: number, ctx: GenapicContext, out: GenapicWrite[]): void {
  out.length = 0;
  const others = new Set<number>();
  for (const t of targets) if (t !== self && t >= 0 && t < ncpus) others.add(t);
  if (others.size === 0) return;
  const fixed = ICR_DM_FIXED | (vector & 0xff);
  // mask | self == cpu_online_map: every other CPU is a target.
  if (!ctx.inIrq && ctx.irqsEnabled && others.size === ncpus - (self >= 0 && self < ncpus ? 1 : 0)) {
    out.push({ icrLo: ICR_SH_ALL_EXCL | fixed, dest: 0, hi: false });
    return;
  }
  const sorted = [...others].sort((a, b) => a - b);
  switch (kind) {
    case 'flat': {
      let mask = 0;
      for (const t of sorted) mask |= genapicLdr('flat', t);
      out.push({ icrLo: ICR_DEST_LOGICAL | fixed, dest: mask >>> 0, hi: true });
      return;
    }
    case 'phys':
      for (const t of sorted) out.push({ icrLo: fixed, dest: (t << ICR_HI_XAPIC_DEST_SHIFT) >>> 0, hi: true });
      return;
    case 'x2apic-cluster': {
      // One WRMSR per cluster (cluster = APIC ID >> 4), in order of each cluster's first target.
      let i = 0;
      while (i < sorted.length) {
        const cluster = sorted[i] >>> 4;
        let ldr = 0;
        while (i < sorted.length && sorted[i] >>> 4 === cluster) ldr |= genapicLdr('x2apic-cluster', sorted[i++]);
        out.push({ icrLo: ICR_DEST_LOGICAL | fixed, dest: ldr >>> 0, hi: true });
      }
      return;
    }
  }
}
