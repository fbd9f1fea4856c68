// NMI and INIT as the hardware and Xen deliver them (apic.md §4 and §9; hv/nmi.ts, hv/init.ts): virtual
// NMIs blocked until IRET and never held off by cli, physical NMIs through Xen's do_nmi, INIT by vendor, and
// the vendor checks made when a scenario loads. Each positive case has a negative control beside it.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runGuest, value } from '../helpers/run.js';
import { ROOT, expectBadInput, vcpulab } from '../helpers/cli.js';
import type { RunReport } from '../../src/report.js';

const DIST = (p: string): string => new URL(`../../dist/src/${p}`, import.meta.url).href;
const { initDisposition } = (await import(DIST('hv/init.js'))) as typeof import('../../src/hv/init.js');
const { nmiUnknownDisposition } = (await import(DIST('hv/nmi.js'))) as typeof import('../../src/hv/nmi.js');
const E = (await import(DIST('trace/events.js'))) as typeof import('../../src/trace/events.js');
const { simulate } = (await import(DIST('lab.js'))) as typeof import('../../src/lab.js');

const finding = (r: RunReport, kind: string) => r.findings.find((f) => f.kind === kind);
const why = (r: RunReport): string => JSON.stringify(r.findings.map((f) => [f.kind, f.count, f.causes]));

describe('what an INIT does, by vendor (pure)', () => {
  it('Intel holds it in root operation and exits on it in non-root; AMD intercepts it in guest mode and resets in host mode', () => {
    expect(initDisposition('intel', false, 'ignore')).toBe(E.HINIT_HELD);
    expect(initDisposition('intel', true, 'ignore')).toBe(E.HINIT_IGNORED);
    expect(initDisposition('intel', true, 'crash')).toBe(E.HINIT_DOMAIN_CRASH);
    expect(initDisposition('amd', true, 'ignore')).toBe(E.HINIT_CRASH_RESET); // amd_init = "pending", the default
    expect(initDisposition('amd', true, 'ignore', 'consumed')).toBe(E.HINIT_DOMAIN_CRASH);
    expect(initDisposition('amd', false, 'ignore')).toBe(E.HINIT_RESET);
    expect(initDisposition('amd', false, 'ignore', 'consumed')).toBe(E.HINIT_RESET); // host mode: nothing intercepts it
  });
  it('an NMI of unknown reason: only the BSP reports it, never with the watchdog on, then as nmi= says', () => {
    expect(nmiUnknownDisposition(1, false, 'fatal')).toBe(E.NMI_DROPPED_AP);
    expect(nmiUnknownDisposition(0, true, 'fatal')).toBe(E.NMI_DROPPED_WATCHDOG);
    expect(nmiUnknownDisposition(0, false, 'fatal')).toBe(E.NMI_FATAL);
    expect(nmiUnknownDisposition(0, false, 'ignore')).toBe(E.NMI_IGNORED);
    expect(nmiUnknownDisposition(0, false, 'dom0')).toBe(E.NMI_DOM0);
  });
});

describe('virtual NMIs: IDT vector 2, not held off by cli, blocked until IRET', () => {
  // vCPU 1 sends NMI IPIs (delivery mode 100) to vCPU 0 through its vLAPIC, while vCPU 0 runs with
  // interrupts off. vCPU 0's NMI handler spins a while: a nested NMI would find `in_nmi` set (a guest assert).
  const PROG = `
.equ APIC, 0xFEE00000
_start:
    mov eax, 1
    cpuid
    shr ebx, 25
    lidt idt
    cmp ebx, 0
    jnz sender
    cli                         ; no maskable interrupt from here on
    mov [ready], 1
wait:
    mov eax, [sent]
    cmp eax, NMIS
    jnz wait
    mov ecx, 3000
linger:
    pause
    dec ecx
    jnz linger
    mov ebx, 1
    mov ecx, [nmis]
    magic 1
    mov ebx, 2
    mov ecx, [fixed]
    magic 1
    mov ebx, 0
    magic 0
sender:
    mov eax, [ready]
    cmp eax, 1
    jnz sender
    mov esi, 0
send:
    mov [APIC + 0x310], 0       ; virtual APIC ID 0: vCPU 0
    mov eax, MODE
    mov [APIC + 0x300], eax     ; 0x400: delivery mode NMI; 0x40: fixed vector 0x40
    lock add [sent], 1
    inc esi
    cmp esi, NMIS
    jz park
    mov eax, MODE
    cmp eax, 0x400
    jnz send
in_service:                     ; the next ones go while the first NMI's handler runs
    mov eax, [in_nmi]
    cmp eax, 1
    jnz in_service
    jmp send
park:
    pause
    jmp park
on_nmi:
    mov eax, [in_nmi]
    cmp eax, 0
    jz nmi_ok
    mov ebx, 99
    magic 3                     ; a nested NMI: blocking did not hold
nmi_ok:
    mov [in_nmi], 1
    lock add [nmis], 1
    mov ecx, 400
nmi_spin:
    pause
    dec ecx
    jnz nmi_spin
    mov [in_nmi], 0
    iret
on_fixed:
    lock add [fixed], 1
    mov [APIC + 0xB0], 0
    iret
.align 8
ready: .word 0
sent: .word 0
nmis: .word 0
fixed: .word 0
in_nmi: .word 0
.align 8
idt:
    .space 4 * 2
    .word on_nmi
    .space 4 * (0x40 - 3)
    .word on_fixed
    .space 4 * (256 - 0x41)
`;
  const run = (mode: number, seed: number) => runGuest(PROG, {
    vcpus: 2, pcpus: 2, memoryKb: 64, seed, machineExtra: ['migration = "none"'],
    domainExtra: [`defines = { NMIS = 3, MODE = ${mode} }`],
  });

  it('two more NMIs sent while the first one\'s handler runs: two taken (one in service, one latched, the third lost), never nested, all under cli', async () => {
    for (const seed of [1, 2, 3]) {
      const r = await run(0x400, seed);
      expect(r.outcome, why(r)).toBe('completed');
      expect(finding(r, 'GUEST_ASSERT'), why(r)).toBeUndefined();
      expect(value(r, 1), why(r)).toBe(2);
    }
  }, 60_000);

  it('negative control: the same sends as fixed vectors are held off by cli (none taken)', async () => {
    const r = await run(0x40, 1);
    expect(r.outcome, why(r)).toBe('completed');
    expect(value(r, 1)).toBe(0);
    expect(value(r, 2)).toBe(0);
  }, 60_000);
});

/** One vCPU on pCPU 0 sends an NMI through the passed-through host xAPIC to physical APIC ID DEST. */
const NMI_SENDER = `
_start:
    mov eax, DEST << 24
    mov [0xFEE00310], eax
    mov eax, SEND
    mov [0xFEE00300], eax
    mov ecx, 300
spin:
    pause
    dec ecx
    jnz spin
    mov ebx, 0
    magic 0
`;
async function hostNmi(dest: number, machine: string[], send = 0x400): Promise<RunReport> {
  return runGuest(NMI_SENDER, {
    vcpus: 1, pcpus: 2, cpus: '0', memoryKb: 64, machineExtra: machine,
    domainExtra: ['ipi_path = "xapic-passthrough"', `defines = { DEST = ${dest}, SEND = ${send} }`],
  });
}

describe('physical NMIs a guest sends through a passed-through APIC: Xen\'s do_nmi', () => {
  it('nmi=fatal at the BSP: HOST_NMI fatal, the host panics and every domain crashes with it', async () => {
    const r = await hostNmi(0, ['xen_nmi = "fatal"']);
    expect(finding(r, 'HOST_NMI')?.causes, why(r)).toEqual({ fatal: 1 });
    expect(finding(r, 'DOMAIN_CRASH')?.causes, why(r)).toEqual({ host_panic: 1 });
    expect(r.domains[0].state).toBe('crashed');
  }, 30_000);
  it('the same NMI at an AP is not looked at; with the watchdog on it is not reported; nmi=ignore drops it', async () => {
    const ap = await hostNmi(1, ['xen_nmi = "fatal"']);
    expect(finding(ap, 'HOST_NMI')?.causes, why(ap)).toEqual({ dropped_ap: 1 });
    expect(ap.domains[0].state).toBe('shutdown');
    const wd = await hostNmi(0, ['xen_nmi = "fatal"', 'nmi_watchdog_hz = 1000']);
    expect(Object.keys(finding(wd, 'HOST_NMI')?.causes ?? {}), why(wd)).toEqual(expect.arrayContaining([expect.stringMatching(/^(dropped_watchdog|absorbed_watchdog)$/)]));
    expect(wd.domains[0].state).toBe('shutdown');
    const ig = await hostNmi(0, ['xen_nmi = "ignore"']);
    expect(finding(ig, 'HOST_NMI')?.causes, why(ig)).toEqual({ ignored: 1 });
  }, 60_000);
  it('negative control: a fixed vector instead of an NMI makes no HOST_NMI and no panic', async () => {
    const r = await hostNmi(0, ['xen_nmi = "fatal"'], 0x40);
    expect(finding(r, 'HOST_NMI'), why(r)).toBeUndefined();
    expect(r.domains[0].state).toBe('shutdown');
  }, 30_000);
  it('the watchdog alone (its own NMIs) makes no finding and changes nothing the guest sees', async () => {
    const r = await hostNmi(0, ['nmi_watchdog_hz = 1000000'], 0x40); // an NMI every 1 µs: a dozen in this short run
    expect(finding(r, 'HOST_NMI'), why(r)).toBeUndefined();
    expect(r.domains[0].state).toBe('shutdown');
    // The watchdog did fire: its NMIs took the running guest out (more exits than the same run without it).
    const off = await hostNmi(0, [], 0x40);
    expect(r.metrics.vm_exits as number).toBeGreaterThan(off.metrics.vm_exits as number);
  }, 30_000);
});

/** A scenario of realm.s (built-in) without views, for a vendor; INIT = 1 sends INIT-SIPI-SIPI. */
function realmScenario(vendor: string, init: number, machine: string[] = []): { toml: string; dispose: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'vcpulab-init-'));
  const toml = join(dir, 'init.toml');
  writeFileSync(toml, [
    '[machine]', `vendor = "${vendor}"`, 'pcpus = 4', 'scheduler = "fifo"', 'timeslice_us = 100', 'migrate_percent = 30', ...machine, '',
    '[[domain]]', 'name = "guest"', 'vcpus = 6', 'memory_kb = 256', `program = "${join(ROOT, 'src/scenario/builtin/realm.s')}"`,
    'ipi_path = "xapic-passthrough"', 'vcpu_map = 0x30000', 'trampoline = "8"', 'realm = "9-10"', 'secret = "12"',
    `defines = { ROUNDS = 20, MASK_ICR = 1, NESTED = 1, SETUP = 0, ROGUE = 0, INIT = ${init}, NMI_IPI = 0, DEST_MODE = 0 }`, '',
  ].join('\n'));
  return { toml, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

async function runScenario(toml: string, seed: number): Promise<RunReport> {
  return (await simulate({ scenario: toml, engine: 'serial', seed, strategy: 'random', maxInstructions: 100_000_000, maxMs: 0, slack: 30000, burst: 4096, watchdogMs: 2000 })).report;
}

describe('INIT from a guest, as each vendor delivers it', () => {
  it('Intel (secure-realm-init): a HOST_INIT finding, Xen ignores or holds the INIT, no pCPU resets', async () => {
    for (const seed of [1, 2, 3]) {
      const r = await runScenario('secure-realm-init', seed);
      const causes = Object.keys(finding(r, 'HOST_INIT')?.causes ?? {});
      expect(causes.length, why(r)).toBeGreaterThan(0);
      for (const c of causes) expect(['vmexit_ignored', 'held_in_root']).toContain(c);
      expect(finding(r, 'HOST_RESET'), why(r)).toBeUndefined();
      expect(r.domains[0].state, why(r)).toBe('shutdown');
    }
  }, 120_000);
  it('Intel with init_exit = "crash" (Xen before 2022): an INIT exit crashes the running domain', async () => {
    const sc = realmScenario('intel', 1, ['init_exit = "crash"']);
    try {
      let crashed = 0;
      for (const seed of [1, 2, 3, 4]) {
        const r = await runScenario(sc.toml, seed);
        const c = finding(r, 'HOST_INIT')?.causes ?? {};
        expect(Object.keys(c).length, why(r)).toBeGreaterThan(0);
        if (c.domain_crash !== undefined || finding(r, 'DOMAIN_CRASH')?.causes.init_exit !== undefined) crashed++;
        expect(finding(r, 'HOST_RESET'), why(r)).toBeUndefined();
      }
      expect(crashed).toBeGreaterThan(0);
    } finally { sc.dispose(); }
  }, 120_000);
  it('AMD (amd_init = "pending", the default): the INIT resets the core either way, after crashing the domain running there; HOST_RESET every time', async () => {
    const sc = realmScenario('amd', 1);
    try {
      let crashed = 0;
      for (const seed of [1, 2, 3]) {
        const r = await runScenario(sc.toml, seed);
        const c = finding(r, 'HOST_INIT')?.causes ?? {};
        expect(Object.keys(c).length, why(r)).toBeGreaterThan(0);
        for (const k of Object.keys(c)) expect(['core_reset', 'domain_crash_core_reset']).toContain(k);
        expect(finding(r, 'HOST_RESET'), why(r)).toBeDefined();
        if (c.domain_crash_core_reset !== undefined) {
          crashed++;
          expect(finding(r, 'DOMAIN_CRASH')?.causes.init_exit, why(r)).toBeGreaterThan(0);
        }
      }
      expect(crashed, 'a vCPU ran on the target pCPU on some seed').toBeGreaterThan(0);
    } finally { sc.dispose(); }
  }, 120_000);
  it('AMD with amd_init = "consumed": the intercept only crashes the domain; HOST_RESET only where a core running Xen took it', async () => {
    const sc = realmScenario('amd', 1, ['amd_init = "consumed"']);
    try {
      for (const seed of [1, 2, 3]) {
        const r = await runScenario(sc.toml, seed);
        const c = finding(r, 'HOST_INIT')?.causes ?? {};
        expect(Object.keys(c).length, why(r)).toBeGreaterThan(0);
        for (const k of Object.keys(c)) expect(['core_reset', 'domain_crash']).toContain(k);
        expect(finding(r, 'HOST_RESET') !== undefined, why(r)).toBe(c.core_reset !== undefined);
      }
    } finally { sc.dispose(); }
  }, 120_000);
  it('negative control: the same workload without INIT has no HOST_INIT and no HOST_RESET on either vendor', async () => {
    for (const vendor of ['intel', 'amd']) {
      const sc = realmScenario(vendor, 0);
      try {
        const r = await runScenario(sc.toml, 1);
        expect(finding(r, 'HOST_INIT'), why(r)).toBeUndefined();
        expect(finding(r, 'HOST_RESET'), why(r)).toBeUndefined();
      } finally { sc.dispose(); }
    }
  }, 60_000);
});

describe('secure-realm-nmi: the kernel\'s NMI handler sends between the realm\'s ICR_HI and ICR_LO', () => {
  it('IPI_MISDIRECTED with cause nmi on at least 3 of serial seeds 1-5 (random strategy), signature at the ICR_LO and the handler\'s ICR_HI', async () => {
    let hits = 0;
    for (const seed of [1, 2, 3, 4, 5]) {
      const r = await runScenario('secure-realm-nmi', seed);
      const f = finding(r, 'IPI_MISDIRECTED');
      if ((f?.causes.nmi ?? 0) > 0) {
        hits++;
        expect(Object.keys(f?.signatures ?? {}).some((s) => /^IPI_MISDIRECTED:nmi:0x[0-9a-f]+,0x[0-9a-f]+$/.test(s)), why(r)).toBe(true);
      }
    }
    expect(hits).toBeGreaterThanOrEqual(3);
  }, 180_000);
  it('negative control: secure-realm (no NMIs) on the same seeds never has the nmi cause', async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const r = await runScenario('secure-realm', seed);
      expect(finding(r, 'IPI_MISDIRECTED')?.causes.nmi, why(r)).toBeUndefined();
    }
  }, 120_000);
});

describe('vendor and mode consistency, checked when the scenario loads', () => {
  const bad = async (machine: string, domain: string, pattern: RegExp): Promise<void> => {
    const dir = mkdtempSync(join(tmpdir(), 'vcpulab-vendor-'));
    try {
      writeFileSync(join(dir, 'p.s'), '_start:\n    hlt\n');
      writeFileSync(join(dir, 's.toml'), `[machine]\n${machine}\n\n[[domain]]\nprogram = "p.s"\n${domain}\n`);
      expectBadInput(await vcpulab('sim', '--scenario', join(dir, 's.toml'), '--no-progress'), pattern);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  };
  it('altp2m, posted and ipiv need intel; avic needs amd; init_exit is Intel\'s', async () => {
    await bad('vendor = "amd"', 'altp2m = "mixed"', /s\.toml:\d+: .*altp2m = "mixed".* needs \[machine\] vendor = "intel"/);
    await bad('vendor = "amd"', 'ipi_path = "posted"', /needs \[machine\] vendor = "intel"/);
    await bad('vendor = "amd"', 'ipi_path = "ipiv"', /needs \[machine\] vendor = "intel"/);
    await bad('', 'ipi_path = "avic"', /ipi_path = "avic".* needs \[machine\] vendor = "amd" \(the default vendor is "intel"\)/);
    await bad('vendor = "amd"\ninit_exit = "crash"', '', /init_exit.*needs vendor = "intel"/);
    await bad('amd_init = "consumed"', '', /amd_init.*needs vendor = "amd"/);
    await bad('vendor = "amd"\namd_init = "maybe"', '', /amd_init/);
    await bad('vendor = "arm"', '', /vendor/);
  }, 60_000);
  it('negative control: the built-in avic design (AMD, no views) and secure-realm (Intel) load and run', async () => {
    for (const name of ['avic', 'secure-realm']) {
      const r = await vcpulab('sim', '--scenario', name, '--engine', 'serial', '--max-instructions', '20000', '--no-progress');
      expect(r.code, r.stderr).toBe(0);
    }
  }, 60_000);
});
