// The CLI as a user runs it: the built bin, real processes, exit codes and one-line errors.
import { describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'vcpulab.js');

interface Run { code: number; stdout: string; stderr: string }

function run(cmd: string, args: string[], timeout = 60_000, cwd = ROOT): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, timeout, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}
const vcpulab = (...args: string[]) => run(process.execPath, [BIN, ...args]);

function scenarioDir(toml: string, prog?: string): string {
  const d = mkdtempSync(join(tmpdir(), 'vcpulab-cli-'));
  writeFileSync(join(d, 'sc.toml'), toml);
  if (prog !== undefined) writeFileSync(join(d, 'prog.s'), prog);
  return join(d, 'sc.toml');
}

const GOOD_PROG = '_start:\n    mov ebx, 0\n    magic 0\n';
const domain = (extra = '') => `[[domain]]\nname = "g"\nvcpus = 1\nmemory_kb = 64\nprogram = "prog.s"\n${extra}`;

/** A bad-input error: exit 2, exactly one line on stderr, nothing that looks like a stack trace. */
function expectBadInput(r: Run, pattern: RegExp): void {
  expect(r.code).toBe(2);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stdout).toBe('');
}

describe('bad input: one line, exit 2', () => {
  it('unknown flag', async () => expectBadInput(await vcpulab('sim', '--bogus'), /Unknown option '--bogus'/));
  it('--watchdog-ms below its floor', async () => expectBadInput(await vcpulab('sim', '--watchdog-ms', '10'), /--watchdog-ms must be an integer from 1000 to/));
  it('--inject-worker-fault needs the threaded engine and a pCPU the machine has', async () => {
    expectBadInput(await vcpulab('sim', '--engine', 'serial', '--inject-worker-fault', '0'), /--inject-worker-fault .* needs --engine threaded/);
    expectBadInput(await vcpulab('sim', '--inject-worker-fault', '9'), /--inject-worker-fault 9: the machine has 4 pCPUs \(0\.\.3\)/);
  });
  it('--pcpus 0', async () => expectBadInput(await vcpulab('sim', '--pcpus', '0'), /--pcpus must be an integer from 1 to 255, got '0'/));
  it('--pcpus over 256', async () => expectBadInput(await vcpulab('sim', '--pcpus', '300'), /--pcpus must be an integer from 1 to 255, got '300'/));
  it('--pcpus not a number', async () => expectBadInput(await vcpulab('sim', '--pcpus', 'four'), /--pcpus must be an integer/));
  it('--engine unknown', async () => expectBadInput(await vcpulab('sim', '--engine', 'gpu'), /--engine must be 'threaded' or 'serial', got 'gpu'/));
  it('--strategy without serial', async () => expectBadInput(await vcpulab('sim', '--strategy', 'random'), /--strategy needs --engine serial/));
  it('unknown command', async () => expectBadInput(await vcpulab('frobnicate'), /unknown command 'frobnicate'/));
  it('missing scenario file', async () => expectBadInput(await vcpulab('sim', '--scenario', '/nonexistent/x.toml'), /x\.toml: scenario file not found/));
  it('unknown built-in scenario', async () => expectBadInput(await vcpulab('sim', '--scenario', 'nosuch'), /no built-in scenario 'nosuch'/));
  it('malformed TOML names line and column', async () => {
    const f = scenarioDir('[machine]\npcpus = = 4\n', GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', f), /sc\.toml:2:\d+: malformed TOML/);
  });
  it('unknown key names file, line and key', async () => {
    const f = scenarioDir(`[machine]\npcpus = 2\nturbo = true\n${domain()}`, GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', f), /sc\.toml:3: unknown key 'turbo' in \[machine\]/);
  });
  it('unknown key in a domain', async () => {
    const f = scenarioDir(`[machine]\npcpus = 2\n${domain('colour = "red"\n')}`, GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', f), /sc\.toml:8: unknown key 'colour' in \[domain\]/);
  });
  it('bad value names the key', async () => {
    const f = scenarioDir(`[machine]\npcpus = 0\n${domain()}`, GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', f), /sc\.toml:2: 'pcpus' must be an integer from 1 to 255, got 0/);
  });
  it('a passthrough IPI path must match the machine\'s APIC mode, and xAPIC stops at 254 pCPUs', async () => {
    const x2 = scenarioDir(`[machine]\npcpus = 2\n${domain('ipi_path = "x2apic-passthrough"\n')}`, GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', x2), /sc\.toml:\d+: ipi_path = "x2apic-passthrough" .* needs \[machine\] apic_mode = "x2apic"/);
    const xa = scenarioDir(`[machine]\npcpus = 2\napic_mode = "x2apic"\n${domain('ipi_path = "xapic-passthrough"\n')}`, GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', xa), /sc\.toml:\d+: ipi_path = "xapic-passthrough" .* needs \[machine\] apic_mode = "xapic"/);
    expectBadInput(await vcpulab('sim', '--scenario', 'counter', '--pcpus', '255'), /counter\.toml:\d+: apic_mode = "xapic" has 8-bit APIC IDs .* at most 254 pCPUs, got 255 \(--pcpus\)/);
    // Controls: the matching modes load and run.
    const ok2 = scenarioDir(`[machine]\npcpus = 2\napic_mode = "x2apic"\n${domain('ipi_path = "x2apic-passthrough"\n')}`, GOOD_PROG);
    expect((await vcpulab('sim', '--scenario', ok2, '--engine', 'serial')).code).toBe(0);
    const ok1 = scenarioDir(`[machine]\npcpus = 2\n${domain('ipi_path = "xapic-passthrough"\n')}`, GOOD_PROG);
    expect((await vcpulab('sim', '--scenario', ok1, '--engine', 'serial')).code).toBe(0);
  });
  it('scenario messages name the file as written and the line, also for top-level keys and later checks', async () => {
    const rel = (f: string): string => f.replace(`${tmpdir()}/`, ''); // a relative path, as a user types it
    const top = scenarioDir(`bogus = 1\n[machine]\npcpus = 1\n${domain()}`, GOOD_PROG);
    const r1 = await run(process.execPath, [BIN, 'sim', '--scenario', rel(top)], 60_000, tmpdir());
    expectBadInput(r1, new RegExp(`^${rel(top).replace(/[.]/g, '\\.')}:1: unknown key 'bogus' at top level`));
    const empty = scenarioDir('description = "x"\ndomain = []\n[machine]\npcpus = 1\n');
    expectBadInput(await vcpulab('sim', '--scenario', empty), /sc\.toml:2: the scenario has no \[\[domain\]\]/);
    const dir = scenarioDir(`[machine]\npcpus = 1\n${domain().replace('program = "prog.s"', 'program = "."')}`);
    expectBadInput(await vcpulab('sim', '--scenario', dir), /sc\.toml:7: domain "g": program file '\.' is a directory, not a program file/);
    const cpus = scenarioDir(`[machine]\npcpus = 1\n${domain('cpus = "5"\n')}`, GOOD_PROG);
    const r2 = await run(process.execPath, [BIN, 'sim', '--scenario', rel(cpus)], 60_000, tmpdir());
    expectBadInput(r2, /^vcpulab-cli-\w+\/sc\.toml:8: domain "g": cpus: cpu 5 in '5' does not exist/);
  });
  it('bad cpu list', async () => {
    const f = scenarioDir(`[machine]\npcpus = 2\n${domain('cpus = "0-7"\n')}`, GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', f), /cpu 7 in '0-7' does not exist/);
  });
  it('cpus and cpus_soft as per-vCPU lists (xl.cfg): a bad entry, a wrong count, a bad element or shape', async () => {
    const two = (extra: string): string => domain(extra).replace('vcpus = 1', 'vcpus = 2');
    const sc = (extra: string): string => scenarioDir(`[machine]\npcpus = 2\n${two(extra)}`, GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', sc('cpus = ["0", "5"]\n')),
      /sc\.toml:8: domain "g": cpus: entry 1 \(vCPU 1\): cpu 5 in '5' does not exist \(the machine has 2 pCPUs\)$/);
    expectBadInput(await vcpulab('sim', '--scenario', sc('cpus_soft = ["0", "^0-1"]\n')),
      /sc\.toml:8: domain "g": cpus_soft: entry 1 \(vCPU 1\): cpu list '\^0-1' leaves no pCPU$/);
    expectBadInput(await vcpulab('sim', '--scenario', sc('cpus = ["0"]\n')),
      /sc\.toml:8: 'cpus' lists 1 cpu list, one per vCPU, but the domain has 2 vCPUs$/);
    expectBadInput(await vcpulab('sim', '--scenario', sc('cpus_soft = ["0", "1", "1"]\n')),
      /sc\.toml:8: 'cpus_soft' lists 3 cpu lists, one per vCPU, but the domain has 2 vCPUs$/);
    expectBadInput(await vcpulab('sim', '--scenario', sc('cpus = ["0", 1]\n')),
      /sc\.toml:8: 'cpus' must be a cpu list .* or a list of them with one per vCPU .*: entry 1 \(vCPU 1\) is 1, not a string$/);
    expectBadInput(await vcpulab('sim', '--scenario', sc('cpus = 3\n')),
      /sc\.toml:8: 'cpus' must be a cpu list \("0-3", "all", "\^1", \.\.\.\) or a list of them with one per vCPU .*, got 3$/);
    const good = sc('cpus = ["1", "0"]\ncpus_soft = ["0-1", "1"]\n');
    expectBadInput(await vcpulab('sim', '--scenario', good, '--vcpus', '3'),
      /sc\.toml:8: 'cpus' lists 2 cpu lists, one per vCPU, but the domain has 3 vCPUs \(--vcpus\)$/);
    // Control: the same lists load and run.
    expect((await vcpulab('sim', '--scenario', good, '--engine', 'serial')).code).toBe(0);
  });
  it('assembler error names file, line and column', async () => {
    const f = scenarioDir(`[machine]\npcpus = 1\n${domain()}`, '_start:\n    mov eaz, 1\n');
    expectBadInput(await vcpulab('sim', '--scenario', f), /prog\.s:2:9: unknown register 'eaz'/);
  });
  it('program larger than RAM', async () => {
    const f = scenarioDir(`[machine]\npcpus = 1\n${domain()}`, '_start:\n    hlt\n.org 0x20000\n.word 1\n');
    expectBadInput(await vcpulab('sim', '--scenario', f), /prog\.s:4:1: the image would end at 0x20004, beyond the 64 KiB it may take \(the domain's RAM\)/);
  });
  it('missing program file', async () => {
    const f = scenarioDir(`[machine]\npcpus = 1\n${domain()}`);
    expectBadInput(await vcpulab('sim', '--scenario', f), /program file 'prog\.s' not found/);
  });
  it('unreadable schedule for --replay', async () => expectBadInput(await vcpulab('replay', '/nonexistent.sched'), /cannot read schedule file/));
});

describe('runs', () => {
  it('npm run sim -- --json prints only the DESIGN.md §5.4 report', async () => {
    const r = await run('npm', ['run', 'sim', '--', '--json', '--engine', 'serial', '--seed', '7'], 120_000);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout) as Record<string, unknown>;
    for (const k of ['scenario', 'engine', 'seed', 'pcpus', 'outcome', 'findings', 'reports', 'console', 'domains', 'metrics', 'replay']) expect(rep).toHaveProperty(k);
    expect(rep.scenario).toBe('secure-realm'); // the default
    expect(rep.engine).toBe('serial');
    expect(rep.seed).toBe(7);
    expect(rep.outcome).toBe('completed');
    const reports = rep.reports as { key: number; value: number }[];
    const byKey = new Map(reports.map((x) => [x.key, x.value]));
    expect(byKey.get(3)).toBe(0x5ec7e7 * 6 * 40); // every realm call read the secret
    const kinds = (rep.findings as { kind: string }[]).map((f) => f.kind);
    expect(kinds).toContain('IPI_MISDIRECTED');
    expect(rep.replay).toMatch(/--engine serial --seed 7/);
  }, 120_000);

  it('--threads needs the threaded engine and no more threads than pCPUs', async () => {
    expectBadInput(await vcpulab('sim', '--engine', 'serial', '--threads', '2'), /--threads .* needs --engine threaded/);
    expectBadInput(await vcpulab('sim', '--threads', '5'), /--threads 5: the machine has 4 pCPUs/);
    expectBadInput(await vcpulab('sim', '--threads', '0'), /--threads must be an integer from 1/);
  });

  it('a worker thread hosting several pCPUs that throws ends the run as aborted, naming its pCPUs', async () => {
    const r = await vcpulab('sim', '--json', '--threads', '2', '--inject-worker-fault', '1');
    expect(r.code).toBe(1);
    const rep = JSON.parse(r.stdout) as { outcome: string; reason: string };
    expect(rep.outcome).toBe('aborted');
    expect(rep.reason).toMatch(/worker thread 1 \(pCPUs 1, 3\) failed: injected fault on pCPU 1/);
  });

  it('a worker that throws ends the run as aborted, exit 1, no threads left', async () => {
    const r = await vcpulab('sim', '--json', '--inject-worker-fault', '1');
    expect(r.code).toBe(1);
    const rep = JSON.parse(r.stdout) as { outcome: string; reason: string };
    expect(rep.outcome).toBe('aborted');
    expect(rep.reason).toMatch(/pCPU 1 worker failed: injected fault/);
  });

  it('a guest assert gives exit code 1 and a GUEST_ASSERT finding', async () => {
    const f = scenarioDir(`[machine]\npcpus = 1\n${domain()}`, '_start:\n    mov ebx, 42\n    magic 3\n    mov ebx, 0\n    magic 0\n');
    const r = await vcpulab('sim', '--scenario', f, '--json', '--engine', 'serial');
    expect(r.code).toBe(1);
    const rep = JSON.parse(r.stdout) as { findings: { kind: string; first: { detail: string } }[] };
    expect(rep.findings.map((x) => x.kind)).toEqual(['GUEST_ASSERT']);
    expect(rep.findings[0].first.detail).toMatch(/code 42/);
  });

  it.each([
    ['a thread per pCPU', 2, [] as string[], 2],
    ['pCPUs sharing a thread (--threads 1)', 3, ['--threads', '1'], 1],
  ])('Ctrl-C writes a partial report and exits 130: %s', async (_what, pcpus, extra, threads) => {
    const f = scenarioDir(`[machine]\npcpus = ${pcpus}\n${domain()}`, '_start:\nspin:\n    add eax, 1\n    jmp spin\n');
    const child = spawn(process.execPath, [BIN, 'sim', '--scenario', f, '--json', ...extra, '--max-instructions', '0'], { cwd: ROOT });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    await new Promise((r) => setTimeout(r, 1500));
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(130);
    const rep = JSON.parse(out) as { outcome: string; reason: string; metrics: { instructions: number; threads: number } };
    expect(rep.outcome).toBe('aborted');
    expect(rep.reason).toMatch(/interrupted/);
    expect(rep.metrics.instructions).toBeGreaterThan(0);
    expect(rep.metrics.threads).toBe(threads);
  });

  it('Ctrl-C during start-up: a report and exit 130, or (before Node runs the launcher) death by SIGINT with nothing printed', async () => {
    // A guest that never ends: every run is still going when its Ctrl-C comes.
    const f = scenarioDir(`[machine]\npcpus = 2\n${domain()}`, '_start:\nspin:\n    add eax, 1\n    jmp spin\n');
    const runs = [];
    for (const engine of ['serial', 'threaded']) {
      for (const ms of [50, 100, 300, 1500]) {
        runs.push((async () => {
          const child = spawn(process.execPath, [BIN, 'sim', '--scenario', f, '--engine', engine, '--json', '--max-instructions', '0'], { cwd: ROOT });
          let out = '', err = '';
          child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
          child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
          setTimeout(() => child.kill('SIGINT'), ms);
          const [code, sig] = await new Promise<[number | null, string | null]>((r) => child.on('exit', (c, s) => r([c, s])));
          const what = `${engine} at ${ms} ms`;
          if (code === null) {
            expect(ms, `${what}: by 1.5 s the launcher runs`).toBeLessThan(1500);
            expect(sig, what).toBe('SIGINT');
            expect(out + err, what).toBe('');
          } else {
            expect(code, what).toBe(130);
            const rep = JSON.parse(out) as { outcome: string; reason: string };
            expect(rep.outcome, what).toBe('aborted');
            expect(rep.reason, what).toMatch(/interrupted/);
          }
        })());
      }
    }
    await Promise.all(runs);
  }, 60_000);

  it('serial --schedule-out then replay reproduces the run', async () => {
    const d = mkdtempSync(join(tmpdir(), 'vcpulab-sched-'));
    const sched = join(d, 'run.sched');
    const a = await vcpulab('sim', '--engine', 'serial', '--seed', '3', '--pcpus', '2', '--vcpus', '3', '--json', '--schedule-out', sched);
    expect(a.code).toBe(0);
    const b = await vcpulab('replay', sched, '--json');
    expect(b.code).toBe(0);
    const ra = JSON.parse(a.stdout) as { digest: string; reports: unknown; replay: string };
    const rb = JSON.parse(b.stdout) as { digest: string; reports: unknown };
    expect(rb.digest).toBe(ra.digest);
    expect(rb.reports).toEqual(ra.reports);
    expect(ra.replay).toContain('--replay');
  }, 60_000);

  it('asm prints a listing', async () => {
    const d = mkdtempSync(join(tmpdir(), 'vcpulab-asm-'));
    writeFileSync(join(d, 'p.s'), GOOD_PROG);
    const r = await vcpulab('asm', join(d, 'p.s'));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/00000000\s+[0-9a-f]{8} [0-9a-f]{8}\s+mov ebx, 0/i);
  });

  it('scenarios lists the built-ins', async () => {
    const r = await vcpulab('scenarios');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^counter\s+\S/m);
  });
});

describe('scheduler keys', () => {
  it('timeslice_us with credit2 is refused with the reason', async () => {
    const f = scenarioDir(`[machine]\npcpus = 1\ntimeslice_us = 100\n${domain()}`, GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', f), /sc\.toml:3: 'timeslice_us' applies to scheduler = "fifo"/);
  });
});

describe('memory-view keys', () => {
  it('ept_sync must be one of the three', async () => {
    const f = scenarioDir(`[machine]\npcpus = 1\n${domain('altp2m = "mixed"\nept_sync = "lazy"\n')}`, GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', f), /sc\.toml:9: 'ept_sync' must be one of "xen", "no-kick", "none", got "lazy"/);
  });
  it('a region that is not a gfn range', async () => {
    const f = scenarioDir(`[machine]\npcpus = 1\n${domain('secret = "0x10-0x8"\n')}`, GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', f), /sc\.toml:8: 'secret' must be a gfn range "LO-HI" or a gfn "N"/);
  });
  it('a region beyond RAM', async () => {
    const f = scenarioDir(`[machine]\npcpus = 1\n${domain('realm = "0x40"\n')}`, GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', f), /sc\.toml:8: 'realm' gfn 0x40 is beyond the domain's RAM \(16 frames\)/);
  });
  it('an agent without altp2m', async () => {
    const f = scenarioDir(`[machine]\npcpus = 1\n${domain('agent = "xen-access"\n')}`, GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', f), /sc\.toml:8: 'agent' needs altp2m/);
  });
  it('an agent module that does not exist', async () => {
    const f = scenarioDir(`[machine]\npcpus = 1\n${domain('altp2m = "external"\nagent = "nope.mjs"\n')}`, GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', f), /domain "g": agent module 'nope\.mjs' not found/);
  });
  it('an agent module without setup and onEvent, or that does not load', async () => {
    const f = scenarioDir(`[machine]\npcpus = 1\n${domain('altp2m = "external"\nagent = "a.mjs"\n')}`, GOOD_PROG);
    writeFileSync(join(dirname(f), 'a.mjs'), 'export default { setup() {} };\n');
    expectBadInput(await vcpulab('sim', '--scenario', f), /a\.mjs: an agent module exports \(as default\) an object/);
    writeFileSync(join(dirname(f), 'a.mjs'), 'export default {{{;\n');
    expectBadInput(await vcpulab('sim', '--scenario', f), /a\.mjs: agent module does not load \(Unexpected token/);
  });
  it('altp2m_count out of range', async () => {
    const f = scenarioDir(`[machine]\npcpus = 1\n${domain('altp2m = "mixed"\naltp2m_count = 513\n')}`, GOOD_PROG);
    expectBadInput(await vcpulab('sim', '--scenario', f), /sc\.toml:9: 'altp2m_count' must be an integer from 1 to 512, got 513/);
  });
});
