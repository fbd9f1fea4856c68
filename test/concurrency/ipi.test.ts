// The IPI paths against their oracles: the correct path delivers every intended IPI once to the right
// vCPU whatever the interleaving; the passthrough designs misdirect, for the reasons the findings name.
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { runGuest, type GuestOpts } from '../helpers/run.js';
import type { RunReport } from '../../src/report.js';

// The built-in ring, by absolute path: it includes its handlers and send path from beside itself.
const RING = `.include ${JSON.stringify(join(import.meta.dirname, '../../src/scenario/builtin/ipi.s'))}\n`;

function ring(path: string, o: { vcpus: number; pcpus: number; rounds: number; mask: 0 | 1; nested: 0 | 1; migratePercent?: number; migration?: string; seed: number; engine?: 'serial' | 'threaded' }): GuestOpts {
  return {
    vcpus: o.vcpus, pcpus: o.pcpus, memoryKb: 256, seed: o.seed, engine: o.engine ?? 'serial',
    maxInstructions: 20_000_000, timesliceUs: 100, watchdogMs: 15_000,
    machineExtra: [
      ...(path === 'x2apic-passthrough' ? ['apic_mode = "x2apic"'] : []),
      ...(path === 'avic' ? ['vendor = "amd"'] : []),
      `migration = "${o.migration ?? 'balance'}"`, `migrate_percent = ${o.migratePercent ?? 0}`,
    ],
    domainExtra: [
      `ipi_path = "${path}"`, ...(path === 'vlapic' ? [] : ['vcpu_map = 0x30000']),
      `defines = { ROUNDS = ${o.rounds}, MASK_ICR = ${o.mask}, NESTED = ${o.nested} }`,
    ],
  };
}

const kinds = (r: RunReport) => r.findings.map((f) => f.kind);
const finding = (r: RunReport, k: string) => r.findings.find((f) => f.kind === k);
const why = (r: RunReport) => `${r.outcome} ${r.reason ?? ''} ${JSON.stringify(r.findings.map((f) => [f.kind, f.first.detail]))}`;

describe.each(['vlapic', 'posted', 'ipiv', 'avic'])('%s: every intended IPI exactly once, to the right vCPU', (path) => {
  it('over 200 serial seeds with migration on', async () => {
    const seen = new Set<number>();
    for (let seed = 1; seed <= 200; seed++) {
      const r = await runGuest(RING, ring(path, { vcpus: 5, pcpus: 4, rounds: 4, mask: 1, nested: 1, migratePercent: 30, seed }));
      expect(r.outcome, why(r)).toBe('completed');
      expect(kinds(r), why(r)).toEqual([]);
      const m = r.metrics as Record<string, number>;
      // Each send was delivered or merged into a pending one (IRR coalescing, counted apart, not lost);
      // a few may still be in flight when vCPU 0 ends the domain.
      expect(m.ipi_delivered + m.ipi_coalesced, why(r)).toBeLessThanOrEqual(m.ipi_sent);
      expect(m.ipi_delivered + m.ipi_coalesced, why(r)).toBeGreaterThanOrEqual(m.ipi_sent - 5);
      expect(r.reports.find((x) => x.key === 2)?.value).toBe(5 * 4);
      seen.add(m.migrations);
    }
    expect(Math.max(...seen)).toBeGreaterThan(0); // migration really happened
  }, 120_000);

  it('a threaded stress (8 pCPUs, 32 vCPUs, migration on) has no findings', async () => {
    const r = await runGuest(RING, ring(path, { vcpus: 32, pcpus: 8, rounds: 4, mask: 1, nested: 1, migratePercent: 30, seed: 1, engine: 'threaded' }));
    expect(r.outcome, why(r)).toBe('completed');
    expect(kinds(r), why(r)).toEqual([]);
    const m = r.metrics as Record<string, number>;
    expect(m.ipi_delivered + m.ipi_coalesced).toBeLessThanOrEqual(m.ipi_sent);
    expect(m.ipi_delivered + m.ipi_coalesced).toBeGreaterThanOrEqual(m.ipi_sent - 32);
    expect(m.ipi_sent).toBeGreaterThanOrEqual(32 * 4);
  }, 120_000);
});

describe('exits per IPI', () => {
  it('posted and ipiv take fewer exits per IPI than vlapic, ipiv none at all (same workload and seed)', async () => {
    const epi: Record<string, number> = {};
    for (const path of ['vlapic', 'posted', 'ipiv', 'avic']) {
      const r = await runGuest(RING, ring(path, { vcpus: 6, pcpus: 4, rounds: 20, mask: 1, nested: 0, seed: 5 }));
      expect(kinds(r), why(r)).toEqual([]);
      epi[path] = (r.metrics as Record<string, number>).exits_per_ipi;
    }
    expect(epi.posted).toBeLessThan(epi.vlapic);
    expect(epi.ipiv).toBeLessThan(epi.posted);
    expect(epi.ipiv).toBe(0);
    expect(epi.avic).toBeLessThan(epi.posted);
  }, 60_000);
});

describe('xapic-passthrough: the ICR_HI / ICR_LO window', () => {
  // Pinned seed: 4 vCPUs on 4 pCPUs, no migration, interrupts left on around the ICR writes, handlers that
  // send their own IPI. Found by scanning seeds; kept as a regression test.
  it('a nested send between ICR_HI and ICR_LO misdirects the interrupted IPI (pinned seeds)', async () => {
    // 4 vCPUs on 4 pCPUs, no migration, interrupts left on around the ICR writes, handlers that send their
    // own IPI: the only way to misdirect is the ICR_HI window. Seeds 1..16 are fixed; a few show it (an IPI
    // that arrives during a handler is taken at its iret, through the interrupt window, so it seldom lands
    // between the main loop's two writes).
    const hits: number[] = [];
    for (let seed = 1; seed <= 16; seed++) {
      const r = await runGuest(RING, ring('xapic-passthrough', { vcpus: 4, pcpus: 4, rounds: 20, mask: 0, nested: 1, migration: 'none', seed }));
      expect(finding(r, 'IPI_UNKNOWN_VECTOR'), why(r)).toBeDefined(); // only the hypervisor receives interrupts
      const f = finding(r, 'IPI_MISDIRECTED');
      if (f === undefined) continue;
      expect(f.first.detail, why(r)).toMatch(/ICR_HI/);
      expect(f.evidence.length).toBeGreaterThan(0);
      hits.push(seed);
    }
    expect(hits.length).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it('with interrupts masked around the two writes and no migration, nothing is misdirected (8 seeds)', async () => {
    for (let seed = 1; seed <= 8; seed++) {
      const r = await runGuest(RING, ring('xapic-passthrough', { vcpus: 4, pcpus: 4, rounds: 20, mask: 1, nested: 1, migration: 'none', seed }));
      expect(finding(r, 'IPI_MISDIRECTED'), why(r)).toBeUndefined();
    }
  }, 60_000);
});

describe('x2apic-passthrough: one ICR write, destinations still go stale', () => {
  it('never shows the ICR window, and without migration never misdirects (30 seeds)', async () => {
    for (let seed = 1; seed <= 30; seed++) {
      const r = await runGuest(RING, ring('x2apic-passthrough', { vcpus: 4, pcpus: 4, rounds: 10, mask: 0, nested: 1, migration: 'none', seed }));
      expect(r.outcome, why(r)).toBe('completed');
      expect(kinds(r).filter((k) => k === 'IPI_MISDIRECTED' || k === 'IPI_LOST'), why(r)).toEqual([]);
    }
  }, 120_000);

  it('misdirects after a migration (pinned seed)', async () => {
    const r = await runGuest(RING, ring('x2apic-passthrough', { vcpus: 6, pcpus: 4, rounds: 20, mask: 1, nested: 0, migratePercent: 30, seed: 3 }));
    const f = r.findings.filter((x) => x.kind === 'IPI_MISDIRECTED');
    expect(f.length, why(r)).toBe(1);
    expect(f[0].first.detail, why(r)).toMatch(/stale|not running/);
    expect(f[0].first.detail).not.toMatch(/ICR_HI/);
  }, 60_000);
});

describe('INIT from a guest', () => {
  // vCPU 0 on pCPU 0 sends INIT through the passed-through xAPIC to pCPU 1, which runs nothing (the
  // hypervisor's idle loop: VMX root operation on Intel, host mode on AMD).
  const prog = `
_start:
    mov eax, 1 << 24
    mov [0xFEE00310], eax       ; destination: physical APIC ID 1
    mov eax, 0x4500
    mov [0xFEE00300], eax       ; INIT, assert
    mov ecx, 200
spin:
    pause
    dec ecx
    jnz spin
    mov ebx, 0
    magic 0
`;
  const opts = (vendor: string) => ({ vcpus: 1, pcpus: 2, cpus: '0', memoryKb: 256, machineExtra: [`vendor = "${vendor}"`], domainExtra: ['ipi_path = "xapic-passthrough"'] });
  it('AMD: resets a pCPU running the hypervisor, behind its back: HOST_INIT core_reset and HOST_RESET', async () => {
    const r = await runGuest(prog, opts('amd'));
    expect(finding(r, 'HOST_INIT')?.causes, why(r)).toEqual({ core_reset: 1 });
    const f = finding(r, 'HOST_RESET');
    expect(f, why(r)).toBeDefined();
    expect(f?.first.pcpu).toBe(1);
    expect(f?.first.detail).toMatch(/INIT reached pCPU 1 from guest\/v0/);
  });
  it('Intel: the same INIT is blocked in VMX root operation (held pending): HOST_INIT held_in_root, no reset', async () => {
    const r = await runGuest(prog, opts('intel'));
    expect(finding(r, 'HOST_INIT')?.causes, why(r)).toEqual({ held_in_root: 1 });
    expect(finding(r, 'HOST_RESET'), why(r)).toBeUndefined();
  });

  it('stays virtual on the vlapic path: no HOST_RESET', async () => {
    const prog = `
_start:
    mov eax, 2 << 24
    mov [0xFEE00310], eax
    mov eax, 0x4500
    mov [0xFEE00300], eax
    mov ebx, 0
    magic 0
`;
    const r = await runGuest(prog, { vcpus: 2, pcpus: 2, memoryKb: 256 });
    expect(kinds(r), why(r)).toEqual([]);
  });
});


describe('virtual INIT-SIPI (vlapic): AP bring-up through vcpu_pause', () => {
  const BOOT = `
_start:
    mov eax, 1
    cpuid
    shr ebx, 25
    cmp ebx, 0
    jnz ap_idle
wait_ap:
    mov eax, [ap_alive]
    cmp eax, 0
    jz wait_ap
    mov eax, 2 << 24
    mov [0xFEE00310], eax
    mov eax, 0x4500
    mov [0xFEE00300], eax       ; INIT to vCPU 1 (virtual APIC ID 2)
    mov eax, 0x4602
    mov [0xFEE00300], eax       ; SIPI, vector 2: start at 0x2000
    mov [0xFEE00300], eax       ; the second SIPI of the protocol: ignored
wait_started:
    mov eax, [ap_started]
    cmp eax, 0
    jnz done
    pause
    jmp wait_started
done:
    mov ebx, 1
    mov ecx, [ap_started]
    magic 1
    mov ebx, 0
    magic 0
ap_idle:                        ; vCPU 1 before INIT: busy, interrupts off
    lock add [ap_alive], 1
    jmp ap_idle
.align 8
ap_alive:   .word 0
ap_started: .word 0
.org 0x2000
ap_entry:
    mov eax, 1
    cpuid
    shr ebx, 25
    mov ecx, esp
    mov ebx, 5
    magic 1                     ; key 5 = esp it started with
    mov [ap_started], 1
ap_spin:
    pause
    jmp ap_spin
`;
  it.each(['serial', 'threaded'] as const)('%s: the AP restarts at the SIPI vector with a fresh stack', async (engine) => {
    const r = await runGuest(BOOT, { vcpus: 2, pcpus: 2, memoryKb: 64, engine, watchdogMs: 15_000 });
    expect(r.outcome, why(r)).toBe('completed');
    expect(kinds(r), why(r)).toEqual([]);
    expect(r.reports.find((x) => x.vcpu === 0 && x.key === 1)?.value).toBe(1);
    expect(r.reports.find((x) => x.vcpu === 1 && x.key === 5)?.value).toBe(64 * 1024 - 4096);
  });
});
