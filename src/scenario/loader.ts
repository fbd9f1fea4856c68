// Scenario files (DESIGN.md §5.5, extended): TOML parsed by smol-toml, then checked key by key so every
// mistake is one line naming the file, the line and the key. Built-in scenarios live beside this file
// in builtin/ (a .toml and a .s each).
import { EPT_SYNC_NAMES } from '../../shared/altp2m.js';
import type { AgentSpec } from '../agent/runner.js';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse, TomlError } from 'smol-toml';
import { MAX_PCPUS } from '../../shared/machine.js';
import { IPI_PATH_NAMES } from '../../shared/domain.js';
import { IPI_LOST_BOUND_US_DEFAULT } from '../oracles/ipi.js';
import { RATELIMIT_US_DEFAULT } from '../hv/sched/credit2.js';
import { LAPIC_TIMER_US_DEFAULT } from '../hv/apic-timer.js';
import type { ApicBusOptions } from '../hw/apic-bus.js';
import { LAPIC_DEFAULTS, type LapicOptions } from '../hw/lapic.js';
import { DEFAULT_COSTS, type CostTable } from '../hw/clock.js';
import { located, UserError } from '../errors.js';
import { assemble } from '../isa/assembler.js';
import { OP_CALL, OP_JMP, REG_ZERO } from '../isa/opcodes.js';
import { MAX_HOST_BYTES, PAGE, SPARE_FRAMES, type MachineSpec } from '../machine.js';
import { parseCpuList } from './cpulist.js';

export const BUILTIN_DIR = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './builtin/' : '../../../src/scenario/builtin/', import.meta.url));

export const ALTP2M_MODES = ['disabled', 'mixed', 'external', 'limited'] as const; // ALTP2M_MODE_* order
export const MAX_VCPUS_PER_DOMAIN = 512;

export interface DomainScenario {
  name: string;
  vcpus: number;
  memoryKb: number;
  program: string;
  /** Hard affinity, xl.cfg syntax: one cpu list for every vCPU, or a list with one per vCPU (`cpus = ["0", "1"]`). */
  cpus: string | string[];
  /** Soft affinity, the same forms; '' = none. */
  cpusSoft: string | string[];
  altp2m: (typeof ALTP2M_MODES)[number];
  altp2mCount: number;
  ipiPath: (typeof IPI_PATH_NAMES)[number];
  /** gpa of the published vCPU -> pCPU map, -1 = none. */
  vcpuMap: number;
  /** Extra assembler symbols for this domain's program (`defines = { ROUNDS = 100 }`). */
  defines: Map<string, number>;
  /** ept_sync: how p2m writers invalidate other pCPUs' translations. */
  eptSync: (typeof EPT_SYNC_NAMES)[number];
  /** With no vm_event listener, a violation crashes the domain instead of relaxing the entry. */
  accessRequired: boolean;
  /** Regions (inclusive gfn ranges) the oracles read. */
  trampoline: [number, number] | null;
  realm: [number, number] | null;
  secret: [number, number] | null;
  /** The view that maps the host xAPIC (xapic-passthrough only there), -1 = none. */
  apicView: number;
  /**
   * realm_entries: the realm's entry points, as addresses or labels of the domain's program (resolved when
   * it is assembled, scenarioMachine); null when absent (REALM_ENTRY then allows any realm address reached
   * from the trampoline).
   */
  realmEntries: (number | string)[] | null;
  /** Agent module (path relative to the scenario file, or a built-in agent's name), '' = none. */
  agent: string;
  /** Options handed to the agent. */
  agentArgs: Record<string, unknown>;
  /** The guest's perf NMI: a vPMU counter of retired instructions overflows every N of each vCPU's; 0 = off. */
  guestNmiInsns: number;
}

export interface Scenario {
  /** Built-in name or the file path as given. */
  name: string;
  file: string;
  /** The file as messages name it: as the user wrote it (or NAME.toml for a built-in). */
  shown: string;
  /** Line of each key (`domain[0].program`, `machine.pcpus`, ...), so checks after parsing still name a line. */
  keyLines: Record<string, number>;
  description: string;
  pcpus: number;
  apicMode: 'xapic' | 'x2apic';
  /** Whose CPUs: INIT and the virtualization features differ (apic.md §9). */
  vendor: 'intel' | 'amd';
  /** Xen's NMI watchdog: NMIs per second on each pCPU; 0 = off. */
  nmiWatchdogHz: number;
  /** Xen's `nmi=` option: what its handler does with an NMI of unknown reason. */
  xenNmi: 'dom0' | 'ignore' | 'fatal';
  /** Intel: what Xen does with an INIT VM exit ("ignore" since 2022; "crash" the domain before). */
  initExit: 'ignore' | 'crash';
  /** AMD: an intercepted INIT stays pending past the #VMEXIT and resets the core at STGI, or is consumed (hv/init.ts). */
  amdInit: 'pending' | 'consumed';
  timesliceUs: number;
  scheduler: 'fifo' | 'credit2';
  ratelimitUs: number;
  /** Whether the hypervisor's own ICR_HI/ICR_LO pair is interruptible ("masked" = Xen). */
  hvIpiIrqs: 'masked' | 'unmasked';
  /** Period of each pCPU's LAPIC timer, the scheduler's tick (µs). */
  lapicTimerUs: number;
  /** "balance": vCPUs move between pCPUs of their affinity; "none": they stay where placed. */
  migration: 'balance' | 'none';
  /** Chance (percent) that a descheduled vCPU moves to a random other pCPU of its affinity. */
  migratePercent: number;
  apicBus: ApicBusOptions;
  lapic: LapicOptions;
  /** [oracles] ipi_lost_bound_us. */
  ipiLostBoundUs: number;
  costs: CostTable;
  domains: DomainScenario[];
}

export interface ScenarioOverrides {
  pcpus?: number;
  vcpus?: number;
}

/** Where each key sits in the file, so checks after parsing can still name a line. */
class KeyLines {
  private readonly map = new Map<string, number>();
  constructor(source: string) {
    let table = '';
    const counts = new Map<string, number>();
    source.split(/\r?\n/).forEach((raw, i) => {
      const line = raw.trim();
      const arr = /^\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]/.exec(line);
      const tab = /^\[\s*([A-Za-z0-9_.-]+)\s*\]/.exec(line);
      if (arr !== null) {
        const k = counts.get(arr[1]) ?? 0;
        counts.set(arr[1], k + 1);
        table = `${arr[1]}[${k}]`;
        this.map.set(table, i + 1);
      } else if (tab !== null) {
        table = tab[1];
        this.map.set(table, i + 1);
      } else {
        const kv = /^([A-Za-z0-9_-]+)\s*=/.exec(line);
        if (kv !== null) this.map.set(`${table}.${kv[1]}`, i + 1);
      }
    });
  }
  line(path: string): number | undefined {
    return this.map.get(path) ?? this.map.get(`.${path}`) ?? this.map.get(path.replace(/^\./, '')) ?? this.map.get(path.split('.')[0]);
  }
  /** The same as plain data. */
  record(): Record<string, number> { return Object.fromEntries(this.map); }
}

type Table = Record<string, unknown>;

class Checker {
  constructor(readonly file: string, readonly lines: KeyLines) {}

  fail(path: string, msg: string): never {
    throw new UserError(located(this.file, this.lines.line(path), undefined, msg));
  }

  onlyKeys(t: Table, path: string, allowed: readonly string[]): void {
    for (const k of Object.keys(t)) {
      if (!allowed.includes(k)) {
        const where = path === '' ? 'at top level' : `in [${path.replace(/\[\d+\]$/, '')}]`;
        this.fail(path === '' ? k : `${path}.${k}`, `unknown key '${k}' ${where} (allowed: ${allowed.join(', ')})`);
      }
    }
  }

  int(t: Table, path: string, key: string, lo: number, hi: number, dflt?: number): number {
    const v = t[key];
    if (v === undefined) {
      if (dflt === undefined) this.fail(path, `[${path.replace(/\[\d+\]$/, '')}] is missing the required key '${key}'`);
      return dflt;
    }
    const num = typeof v === 'bigint' ? Number(v) : v;
    if (typeof num !== 'number' || !Number.isInteger(num) || num < lo || num > hi) {
      this.fail(`${path}.${key}`, `'${key}' must be an integer from ${lo} to ${hi}, got ${fmt(v)}`);
    }
    return num;
  }

  str(t: Table, path: string, key: string, dflt?: string): string {
    const v = t[key];
    if (v === undefined) {
      if (dflt === undefined) this.fail(path, `[${path.replace(/\[\d+\]$/, '')}] is missing the required key '${key}'`);
      return dflt;
    }
    if (typeof v !== 'string') this.fail(`${path}.${key}`, `'${key}' must be a string, got ${fmt(v)}`);
    return v;
  }

  oneOf<T extends string>(t: Table, path: string, key: string, options: readonly T[], dflt: T): T {
    const v = this.str(t, path, key, dflt);
    if (!(options as readonly string[]).includes(v)) this.fail(`${path}.${key}`, `'${key}' must be one of ${options.map((o) => `"${o}"`).join(', ')}, got "${v}"`);
    return v as T;
  }

  bool(t: Table, path: string, key: string, dflt: boolean): boolean {
    const v = t[key];
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') this.fail(`${path}.${key}`, `'${key}' must be true or false, got ${fmt(v)}`);
    return v;
  }

  /** A gfn range "LO-HI" or "N" (decimal or 0x hex, inclusive), inside `frames`; null when absent. */
  gfnRange(t: Table, path: string, key: string, frames: number): [number, number] | null {
    if (t[key] === undefined) return null;
    const v = this.str(t, path, key);
    const mm = /^\s*((?:0x)?[0-9a-fA-F]+)\s*(?:-\s*((?:0x)?[0-9a-fA-F]+)\s*)?$/.exec(v);
    const num = (x: string) => (x.startsWith('0x') ? parseInt(x.slice(2), 16) : /^\d+$/.test(x) ? parseInt(x, 10) : NaN);
    const lo = mm === null ? NaN : num(mm[1]);
    const hi = mm === null ? NaN : mm[2] === undefined ? lo : num(mm[2]);
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || hi < lo) {
      this.fail(`${path}.${key}`, `'${key}' must be a gfn range "LO-HI" or a gfn "N" (decimal or 0x hex), got ${fmt(v)}`);
    }
    if (hi >= frames) this.fail(`${path}.${key}`, `'${key}' gfn 0x${hi.toString(16)} is beyond the domain's RAM (${frames} frames)`);
    return [lo, hi];
  }

  /**
   * `cpus` / `cpus_soft` as xl.cfg writes them: a cpu list string ("0-3", "all", "^1"), or a list of such
   * strings with one entry per vCPU (entry i pins vCPU i). The entries are checked against the machine when
   * the domain is built (scenarioMachine); here only their shape and count.
   */
  cpuSpec(t: Table, path: string, key: string, dflt: string, vcpus: number, vcpusFlag: boolean): string | string[] {
    const v = t[key];
    if (v === undefined) return dflt;
    if (typeof v === 'string') return v;
    const shape = `'${key}' must be a cpu list ("0-3", "all", "^1", ...) or a list of them with one per vCPU (["0", "1-2", ...])`;
    if (!Array.isArray(v)) this.fail(`${path}.${key}`, `${shape}, got ${fmt(v)}`);
    const items = v as unknown[];
    items.forEach((x, i) => {
      if (typeof x !== 'string') this.fail(`${path}.${key}`, `${shape}: entry ${i} (vCPU ${i}) is ${fmt(x)}, not a string`);
    });
    if (items.length !== vcpus) {
      this.fail(`${path}.${key}`, `'${key}' lists ${items.length} cpu list${items.length === 1 ? '' : 's'}, one per vCPU, but the domain has ${vcpus} vCPU${vcpus === 1 ? '' : 's'}${vcpusFlag ? ' (--vcpus)' : ''}`);
    }
    return items as string[];
  }

  /** A list of addresses (integers) and labels (strings), or null when absent. */
  entryList(t: Table, path: string, key: string): (number | string)[] | null {
    const v = t[key];
    if (v === undefined) return null;
    const bad = (): never => this.fail(`${path}.${key}`, `'${key}' must be a list of addresses (integers) or labels of the program (strings), got ${fmt(v)}`);
    if (!Array.isArray(v) || v.length === 0) bad();
    return (v as unknown[]).map((x) => {
      const n = typeof x === 'bigint' ? Number(x) : x;
      if (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffffffff) return n;
      if (typeof n === 'string' && /^[A-Za-z_.][A-Za-z0-9_.]*$/.test(n)) return n;
      return bad();
    });
  }

  table(t: Table, key: string, path = ''): Table {
    const v = t[key];
    if (v === undefined) return {};
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(path === '' ? key : `${path}.${key}`, `'${key}' must be a table`);
    return v as Table;
  }
}

function fmt(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : typeof v === 'bigint' ? v.toString() : JSON.stringify(v) ?? String(v);
}

/** Resolve `--scenario` (a built-in name or a path to a .toml file) to a file path. */
export function resolveScenarioFile(nameOrFile: string): string {
  if (nameOrFile.endsWith('.toml') || nameOrFile.includes('/') || nameOrFile.includes('\\')) {
    const f = resolve(nameOrFile);
    if (!existsSync(f)) throw new UserError(`${nameOrFile}: scenario file not found`);
    return f;
  }
  const f = join(BUILTIN_DIR, `${nameOrFile}.toml`);
  if (!existsSync(f)) {
    throw new UserError(`--scenario: no built-in scenario '${nameOrFile}' (built-ins: ${listBuiltins().map((b) => b.name).join(', ')}; or give a path to a .toml file)`);
  }
  return f;
}

export function listBuiltins(): { name: string; description: string }[] {
  return readdirSync(BUILTIN_DIR).filter((f) => f.endsWith('.toml')).sort().map((f) => {
    const src = readFileSync(join(BUILTIN_DIR, f), 'utf8');
    const d = /^\s*description\s*=\s*"([^"]*)"/m.exec(src);
    return { name: basename(f, '.toml'), description: d?.[1] ?? '' };
  });
}

export function loadScenario(nameOrFile: string, ov: ScenarioOverrides = {}): Scenario {
  const file = resolveScenarioFile(nameOrFile);
  const shown = nameOrFile.endsWith('.toml') || nameOrFile.includes('/') ? nameOrFile : `${nameOrFile}.toml`;
  let source: string;
  try { source = readFileSync(file, 'utf8'); } catch (e) {
    throw new UserError(`${shown}: cannot read scenario file (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let doc: Table;
  try { doc = parse(source) as Table; } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split('\n')[0].replace(/^Invalid TOML document: /, '');
      throw new UserError(located(shown, e.line, e.column, `malformed TOML: ${first}`));
    }
    throw e;
  }
  const ck = new Checker(shown, new KeyLines(source));
  ck.onlyKeys(doc, '', ['description', 'machine', 'domain', 'costs', 'oracles']);
  const description = ck.str(doc, '', 'description', '');
  const mach = ck.table(doc, 'machine');
  ck.onlyKeys(mach, 'machine', ['pcpus', 'apic_mode', 'timeslice_us', 'migration', 'migrate_percent',
    'lapic_lowest_priority', 'lapic_logical_broadcast', 'lapic_illegal_vector', 'scheduler', 'ratelimit_us', 'hv_ipi_irqs',
    'vendor', 'nmi_watchdog_hz', 'xen_nmi', 'init_exit', 'amd_init', 'lapic_timer_us']);
  let pcpus = ck.int(mach, 'machine', 'pcpus', 1, MAX_PCPUS, 4);
  if (ov.pcpus !== undefined) pcpus = ov.pcpus;
  const apicMode = ck.oneOf(mach, 'machine', 'apic_mode', ['xapic', 'x2apic'] as const, 'xapic');
  // xAPIC IDs are 8 bits and 0xFF is the broadcast ID (apic.md): beyond 254 CPUs a machine needs x2APIC.
  if (apicMode === 'xapic' && pcpus > 254) {
    ck.fail('machine.apic_mode', `apic_mode = "xapic" has 8-bit APIC IDs with 0xFF for broadcast: at most 254 pCPUs, got ${pcpus}${ov.pcpus !== undefined ? ' (--pcpus)' : ''}; use apic_mode = "x2apic"`);
  }
  const vendor = ck.oneOf(mach, 'machine', 'vendor', ['intel', 'amd'] as const, 'intel');
  const nmiWatchdogHz = ck.int(mach, 'machine', 'nmi_watchdog_hz', 0, 1_000_000, 0);
  const xenNmi = ck.oneOf(mach, 'machine', 'xen_nmi', ['dom0', 'ignore', 'fatal'] as const, 'dom0');
  const initExit = ck.oneOf(mach, 'machine', 'init_exit', ['ignore', 'crash'] as const, 'ignore');
  if (mach.init_exit !== undefined && vendor !== 'intel') {
    ck.fail('machine.init_exit', `'init_exit' is what Xen does with Intel's INIT VM exit: it needs vendor = "intel"`);
  }
  const amdInit = ck.oneOf(mach, 'machine', 'amd_init', ['pending', 'consumed'] as const, 'pending');
  if (mach.amd_init !== undefined && vendor !== 'amd') {
    ck.fail('machine.amd_init', `'amd_init' is what AMD's INIT intercept leaves behind: it needs vendor = "amd"`);
  }
  const timesliceUs = ck.int(mach, 'machine', 'timeslice_us', 1, 1_000_000, 1000);
  const migration = ck.oneOf(mach, 'machine', 'migration', ['balance', 'none'] as const, 'balance');
  const migratePercent = ck.int(mach, 'machine', 'migrate_percent', 0, 100, 0);
  const hvIpiIrqs = ck.oneOf(mach, 'machine', 'hv_ipi_irqs', ['masked', 'unmasked'] as const, 'masked');
  // The scheduler's tick: each pCPU's LAPIC timer period (the initial count is 32 bits of 3 GHz cycles).
  const lapicTimerUs = ck.int(mach, 'machine', 'lapic_timer_us', 1, 1_000_000, LAPIC_TIMER_US_DEFAULT);
  const scheduler = ck.oneOf(mach, 'machine', 'scheduler', ['fifo', 'credit2'] as const, 'credit2');
  const ratelimitUs = ck.int(mach, 'machine', 'ratelimit_us', 0, 500_000, RATELIMIT_US_DEFAULT);
  if (mach.timeslice_us !== undefined && scheduler !== 'fifo') {
    ck.fail('machine.timeslice_us', `'timeslice_us' applies to scheduler = "fifo"; credit2 (the default) computes each run time from credits (see ratelimit_us)`);
  }
  // Where LAPIC implementations disagree (apic.md [DIV]); Xen's behaviour by default.
  const apicBus: ApicBusOptions = {
    lowestPriority: ck.oneOf(mach, 'machine', 'lapic_lowest_priority', ['xen', 'kvm-hash', 'lowest-ppr', 'qemu-first'] as const, 'xen'),
    logicalBroadcast: ck.oneOf(mach, 'machine', 'lapic_logical_broadcast', ['xen', 'sdm', 'qemu'] as const, 'xen'),
  };
  const lapic: LapicOptions = { ...LAPIC_DEFAULTS, illegalVector: ck.oneOf(mach, 'machine', 'lapic_illegal_vector', ['xen', 'kvm', 'sdm'] as const, 'xen') };
  const oraclesT = ck.table(doc, 'oracles');
  ck.onlyKeys(oraclesT, 'oracles', ['ipi_lost_bound_us']);
  const ipiLostBoundUs = ck.int(oraclesT, 'oracles', 'ipi_lost_bound_us', 1, 10_000_000, IPI_LOST_BOUND_US_DEFAULT);
  const costsT = ck.table(doc, 'costs');
  ck.onlyKeys(costsT, 'costs', Object.keys(DEFAULT_COSTS));
  const costs = { ...DEFAULT_COSTS };
  for (const k of Object.keys(DEFAULT_COSTS) as (keyof CostTable)[]) costs[k] = ck.int(costsT, 'costs', k, 0, 10_000_000, DEFAULT_COSTS[k]);

  const doms = doc.domain;
  if (doms === undefined) ck.fail('', 'the scenario has no [[domain]]');
  if (!Array.isArray(doms)) ck.fail('domain', "'domain' must be an array of tables ([[domain]])");
  if ((doms as unknown[]).length === 0) ck.fail('domain', 'the scenario has no [[domain]] (an empty list names none)');
  const names = new Set<string>();
  const domains = (doms as Table[]).map((d, i) => {
    const path = `domain[${i}]`;
    ck.onlyKeys(d, path, ['name', 'vcpus', 'memory_kb', 'program', 'cpus', 'altp2m', 'altp2m_count', 'ipi_path', 'vcpu_map', 'defines', 'cpus_soft',
      'ept_sync', 'access_required', 'trampoline', 'realm', 'secret', 'agent', 'agent_args', 'apic_view', 'realm_entries', 'guest_nmi_insns']);
    const name = ck.str(d, path, 'name', `domain${i}`);
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) ck.fail(`${path}.name`, `'name' may only hold letters, digits, '_', '.', '-', got ${fmt(name)}`);
    if (names.has(name)) ck.fail(`${path}.name`, `domain name "${name}" is used twice`);
    names.add(name);
    let vcpus = ck.int(d, path, 'vcpus', 1, MAX_VCPUS_PER_DOMAIN, 1);
    if (i === 0 && ov.vcpus !== undefined) vcpus = ov.vcpus;
    const memoryKb = ck.int(d, path, 'memory_kb', 4, MAX_HOST_BYTES / 1024, 1024);
    if (memoryKb % 4 !== 0) ck.fail(`${path}.memory_kb`, `'memory_kb' must be a multiple of 4 (whole 4 KiB pages), got ${memoryKb}`);
    if (vcpus * 4 > memoryKb) ck.fail(`${path}.memory_kb`, `'memory_kb' ${memoryKb} is too small for ${vcpus} vCPU stacks of 4 KiB`);
    const program = ck.str(d, path, 'program');
    const vcpusFlag = i === 0 && ov.vcpus !== undefined;
    const cpus = ck.cpuSpec(d, path, 'cpus', 'all', vcpus, vcpusFlag);
    const cpusSoft = ck.cpuSpec(d, path, 'cpus_soft', '', vcpus, vcpusFlag);
    const altp2m = ck.oneOf(d, path, 'altp2m', ALTP2M_MODES, 'disabled');
    const altp2mCount = ck.int(d, path, 'altp2m_count', 1, 512, 10);
    const ipiPath = ck.oneOf(d, path, 'ipi_path', IPI_PATH_NAMES, 'vlapic');
    // A passthrough design hands the guest the host LAPIC in the mode the machine runs it in: the MSRs of an
    // x2APIC, the MMIO page of an xAPIC (an x2APIC ignores that page, so every IPI would silently vanish).
    if (ipiPath === 'x2apic-passthrough' && apicMode !== 'x2apic') {
      ck.fail(`${path}.ipi_path`, `ipi_path = "x2apic-passthrough" passes the host's x2APIC MSRs through: it needs [machine] apic_mode = "x2apic"`);
    }
    if (ipiPath === 'xapic-passthrough' && apicMode !== 'xapic') {
      ck.fail(`${path}.ipi_path`, `ipi_path = "xapic-passthrough" maps the host's xAPIC page: it needs [machine] apic_mode = "xapic" (an x2APIC has no MMIO page)`);
    }
    // Features one vendor's CPUs have (apic.md §9): altp2m, VMFUNC and #VE need EPT (Xen sets caps.altp2m on
    // VMX only); posted interrupts and IPIv are Intel's; AVIC is AMD's.
    const needs = vendorOf(altp2m, ipiPath);
    if (needs !== null && needs.vendor !== vendor) {
      ck.fail(`${path}.${needs.key}`, `${needs.what} needs [machine] vendor = "${needs.vendor}"${mach.vendor === undefined ? ' (the default vendor is "intel")' : `, got "${vendor}"`}`);
    }
    const vcpuMap = ck.int(d, path, 'vcpu_map', -1, 0x7ffffff8, -1);
    if (vcpuMap >= 0 && (vcpuMap % 8 !== 0 || vcpuMap + vcpus * 8 > memoryKb * 1024)) {
      ck.fail(`${path}.vcpu_map`, `'vcpu_map' must be an 8-aligned gpa with room for ${vcpus} entries of 8 bytes inside RAM, got 0x${vcpuMap.toString(16)}`);
    }
    const defT = ck.table(d, 'defines', path);
    const defines = new Map<string, number>();
    for (const k of Object.keys(defT)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) ck.fail(`${path}.defines`, `defines: '${k}' is not a symbol name`);
      defines.set(k, ck.int(defT, `${path}.defines`, k, -0x80000000, 0xffffffff));
    }
    const eptSync = ck.oneOf(d, path, 'ept_sync', EPT_SYNC_NAMES, 'xen');
    const accessRequired = ck.bool(d, path, 'access_required', false);
    const frames = memoryKb / 4;
    const trampoline = ck.gfnRange(d, path, 'trampoline', frames);
    const realm = ck.gfnRange(d, path, 'realm', frames);
    const secret = ck.gfnRange(d, path, 'secret', frames);
    const apicView = ck.int(d, path, 'apic_view', -1, altp2mCount - 1, -1);
    if (apicView >= 0 && (ipiPath !== 'xapic-passthrough' || altp2m === 'disabled')) {
      ck.fail(`${path}.apic_view`, `'apic_view' maps the host xAPIC into one view: it needs ipi_path = "xapic-passthrough" and altp2m`);
    }
    const agent = ck.str(d, path, 'agent', '');
    if (agent !== '' && altp2m === 'disabled') ck.fail(`${path}.agent`, `'agent' needs altp2m (the agent's views): set 'altp2m' to "mixed", "external" or "limited"`);
    const agentArgs = ck.table(d, 'agent_args', path) as Record<string, unknown>;
    const realmEntries = ck.entryList(d, path, 'realm_entries');
    if (realmEntries !== null && realm === null) ck.fail(`${path}.realm_entries`, `'realm_entries' names entry points of the realm: it needs 'realm'`);
    if (d.agent_args !== undefined && agent === '') ck.fail(`${path}.agent_args`, `'agent_args' without 'agent'`);
    const guestNmiInsns = ck.int(d, path, 'guest_nmi_insns', 0, 0x7fffffff, 0);
    return { guestNmiInsns, name, vcpus, memoryKb, program, cpus, cpusSoft, altp2m, altp2mCount, ipiPath, vcpuMap, defines, eptSync, accessRequired,
      trampoline, realm, secret, apicView, agent, agentArgs, realmEntries };
  });
  const totalFrames = domains.reduce((s, d) => s + d.memoryKb / 4, 0) + SPARE_FRAMES;
  if (totalFrames * PAGE > MAX_HOST_BYTES) ck.fail('domain', `the domains' memory_kb add up to more than the ${MAX_HOST_BYTES >> 20} MiB host`);
  return { name: nameOrFile, file, shown, keyLines: ck.lines.record(), description, pcpus, apicMode, vendor, nmiWatchdogHz, xenNmi, initExit, amdInit, hvIpiIrqs, lapicTimerUs, timesliceUs, scheduler, ratelimitUs, migration, migratePercent, apicBus, lapic, ipiLostBoundUs, costs, domains };
}

/** The vendor a domain's features need (the first that needs one), or null when both have them. */
export function vendorOf(altp2m: string, ipiPath: string): { vendor: 'intel' | 'amd'; key: string; what: string } | null {
  if (altp2m !== 'disabled') return { vendor: 'intel', key: 'altp2m', what: `altp2m = "${altp2m}" (EPT views, VMFUNC, #VE)` };
  if (ipiPath === 'posted' || ipiPath === 'ipiv') return { vendor: 'intel', key: 'ipi_path', what: `ipi_path = "${ipiPath}" (${ipiPath === 'posted' ? 'VMX posted interrupts' : 'Intel IPI virtualization'})` };
  if (ipiPath === 'avic') return { vendor: 'amd', key: 'ipi_path', what: 'ipi_path = "avic" (AMD AVIC)' };
  return null;
}

/** `file:line:` of a domain's key, as the user wrote the file, for checks made after parsing. */
function at(sc: Scenario, dom: number, key: string): string {
  const line = sc.keyLines[`domain[${dom}].${key}`] ?? sc.keyLines[`domain[${dom}]`];
  return line === undefined ? `${sc.shown}:` : `${sc.shown}:${line}:`;
}

/** Built-in agents, by name (src/agent/examples/NAME.ts). */
export const BUILTIN_AGENTS = ['xen-access', 'hvmi'] as const;

/**
 * The agents a scenario names, as module URLs: a built-in name, or a .js/.mjs file relative to the
 * scenario file (an agent is loaded with import(); TypeScript agents are compiled first).
 */
export function scenarioAgents(sc: Scenario, spec?: ScenarioSpec): AgentSpec[] {
  const out: AgentSpec[] = [];
  sc.domains.forEach((d, i) => {
    if (d.agent === '') return;
    let file: string;
    if ((BUILTIN_AGENTS as readonly string[]).includes(d.agent)) {
      file = fileURLToPath(new URL(`../agent/examples/${d.agent}.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url));
    } else {
      if (!/\.m?js$/.test(d.agent)) throw new UserError(`${at(sc, i, 'agent')} domain "${d.name}": agent: '${d.agent}' is neither a built-in agent (${BUILTIN_AGENTS.join(', ')}) nor a .js/.mjs module`);
      file = isAbsolute(d.agent) ? d.agent : join(dirname(sc.file), d.agent);
      if (!existsSync(file)) throw new UserError(`${at(sc, i, 'agent')} domain "${d.name}": agent module '${d.agent}' not found`);
    }
    // The realm's entry points go to the agent too (agent_args may name its own: they win).
    const args = spec === undefined ? d.agentArgs : { realm_entries: spec.realmEntryPoints[i], ...d.agentArgs };
    out.push({ dom: i, module: pathToFileURL(file).href, args });
  });
  return out;
}

/** The machine to build, plus what the oracles and agents learn from the assembled programs. */
export interface ScenarioSpec extends MachineSpec {
  /** Per domain: realm_entries resolved to addresses, sorted; empty when the key is absent. */
  realmEntries: number[][];
  /**
   * Per domain: the realm's entry points as an agent should admit them: realm_entries, or, when it is absent,
   * the realm addresses that instructions in the trampoline pages jump or call to directly. Handed to the
   * domain's agent as `agent_args.realm_entries` unless agent_args sets it.
   */
  realmEntryPoints: number[][];
  /** Per domain: the files its program `.include`s (resolved paths), part of the scenario's content. */
  programIncludes: string[][];
}

/** Resolve realm_entries (addresses or labels) against the assembled program. */
function resolveEntries(sc: Scenario, i: number, d: DomainScenario, labels: ReadonlyMap<string, number>): number[] {
  if (d.realmEntries === null || d.realm === null) return [];
  const [lo, hi] = d.realm;
  const out = d.realmEntries.map((e) => {
    const a = typeof e === 'number' ? e : labels.get(e);
    const what = typeof e === 'number' ? `0x${e.toString(16)}` : `'${e}'`;
    if (a === undefined) throw new UserError(`${at(sc, i, 'realm_entries')} domain "${d.name}": realm_entries: ${d.program} has no label ${what}`);
    if ((a & 7) !== 0 || (a >>> 12) < lo || (a >>> 12) > hi) {
      throw new UserError(`${at(sc, i, 'realm_entries')} domain "${d.name}": realm_entries: ${what} (0x${a.toString(16)}) is not an instruction in the realm (gfns 0x${lo.toString(16)}-0x${hi.toString(16)})`);
    }
    return a;
  });
  return [...new Set(out)].sort((x, y) => x - y);
}

/** Realm addresses that instructions in the trampoline pages jump or call to directly (jmp, jcc, call with no register). */
function trampolineTargets(d: DomainScenario, image: Uint8Array): number[] {
  if (d.trampoline === null || d.realm === null) return [];
  const [tlo, thi] = d.trampoline, [rlo, rhi] = d.realm;
  const end = Math.min(image.length, (thi + 1) * PAGE) & ~7;
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const out = new Set<number>();
  for (let a = tlo * PAGE; a + 8 <= end; a += 8) {
    const w0 = view.getUint32(a, true), w1 = view.getUint32(a + 4, true);
    const op = w0 & 0x7f;
    if (op < OP_JMP || op > OP_CALL || ((w0 >>> 11) & 31) < REG_ZERO) continue;
    if ((w1 & 7) === 0 && (w1 >>> 12) >= rlo && (w1 >>> 12) <= rhi) out.add(w1);
  }
  return [...out].sort((x, y) => x - y);
}

/**
 * The symbols domain i's program sees predefined, beyond the guest ABI's names the assembler always
 * knows: the domain's shape (VCPUS, PCPUS, ...) and its `defines`.
 */
export function domainSymbols(sc: Scenario, i: number): Map<string, number> {
  const d = sc.domains[i];
  return new Map<string, number>([
    ['VCPUS', d.vcpus], ['PCPUS', sc.pcpus], ['MEMORY_KB', d.memoryKb], ['DOMAIN_INDEX', i],
    ['VCPU_MAP', Math.max(0, d.vcpuMap)], ['IPI_PATH', IPI_PATH_NAMES.indexOf(d.ipiPath)],
    ['DOMID', i + 1], ['ALTP2M_COUNT', d.altp2mCount], ['ALTP2M', d.altp2m === 'disabled' ? 0 : 1],
    ['TRAMP_GFN', d.trampoline?.[0] ?? 0], ['REALM_GFN', d.realm?.[0] ?? 0], ['SECRET_GFN', d.secret?.[0] ?? 0],
    ...d.defines,
  ]);
}

/** Where domain i's program file is. */
export function domainProgramPath(sc: Scenario, i: number): string {
  const p = sc.domains[i].program;
  return isAbsolute(p) ? p : join(dirname(sc.file), p);
}

/**
 * Resolve `cpus` or `cpus_soft` of domain i against the machine: the pCPUs of the whole domain (for a
 * per-vCPU list, their union) and, for a list, each vCPU's own. A bad entry is one line naming it.
 */
function affinities(sc: Scenario, i: number, key: 'cpus' | 'cpus_soft', spec: string | string[]): { domain: number[]; perVcpu: number[][] | null } {
  const d = sc.domains[i];
  if (typeof spec === 'string') {
    const r = parseCpuList(spec, sc.pcpus);
    if (typeof r === 'string') throw new UserError(`${at(sc, i, key)} domain "${d.name}": ${key}: ${r}`);
    return { domain: r, perVcpu: null };
  }
  const perVcpu = spec.map((entry, v) => {
    const r = parseCpuList(entry, sc.pcpus);
    if (typeof r === 'string') throw new UserError(`${at(sc, i, key)} domain "${d.name}": ${key}: entry ${v} (vCPU ${v}): ${r}`);
    return r;
  });
  const union = [...new Set(perVcpu.flat())].sort((a, b) => a - b);
  return { domain: union, perVcpu };
}

/** Assemble each domain's program and resolve affinities: the machine the engines run. */
export function scenarioMachine(sc: Scenario): ScenarioSpec {
  const realmEntries: number[][] = [], realmEntryPoints: number[][] = [], programIncludes: string[][] = [];
  return {
    pcpus: sc.pcpus,
    apicMode: sc.apicMode,
    realmEntries,
    realmEntryPoints,
    programIncludes,
    domains: sc.domains.map((d, i) => {
      const progPath = domainProgramPath(sc, i);
      let src: string;
      try { src = readFileSync(progPath, 'utf8'); } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const why = code === 'EISDIR' ? 'is a directory, not a program file' : code === 'ENOENT' ? 'not found' : `cannot be read (${code ?? 'error'})`;
        throw new UserError(`${at(sc, i, 'program')} domain "${d.name}": program file '${d.program}' ${why}`);
      }
      const predefined = domainSymbols(sc, i);
      const prog = assemble(src, d.program, predefined, d.memoryKb * 1024, { path: progPath });
      if (prog.entry === undefined) throw new UserError(`${d.program}: no '_start' label (every vCPU starts there)`);
      if (prog.end > d.memoryKb * 1024) {
        throw new UserError(`${d.program}: program ends at 0x${prog.end.toString(16)}, beyond the domain's ${d.memoryKb} KiB of RAM (memory_kb in ${basename(sc.file)})`);
      }
      const hard = affinities(sc, i, 'cpus', d.cpus);
      const softs = d.cpusSoft === '' ? null : affinities(sc, i, 'cpus_soft', d.cpusSoft);
      const aff = hard.domain, soft = softs?.domain ?? [];
      realmEntries.push(resolveEntries(sc, i, d, prog.labels));
      programIncludes.push(prog.includes);
      realmEntryPoints.push(d.realmEntries !== null ? realmEntries[i] : trampolineTargets(d, prog.image));
      return { name: d.name, vcpus: d.vcpus, memoryKb: d.memoryKb, image: prog.image, entry: prog.entry, affinity: aff, softAffinity: soft,
        ...(hard.perVcpu !== null ? { vcpuAffinity: hard.perVcpu } : {}), ...(softs !== null && softs.perVcpu !== null ? { vcpuSoftAffinity: softs.perVcpu } : {}),
        ipiPath: IPI_PATH_NAMES.indexOf(d.ipiPath), vcpuMapGpa: d.vcpuMap,
        altp2mMode: ALTP2M_MODES.indexOf(d.altp2m), altp2mCount: d.altp2mCount, eptSync: EPT_SYNC_NAMES.indexOf(d.eptSync),
        accessRequired: d.accessRequired, trampoline: d.trampoline, realm: d.realm, secret: d.secret, apicView: d.apicView };
    }),
  };
}
