// Hunts as a user runs them: the built bin on a worker pool, shrunk schedules that replay, a regression
// corpus that notices a fixed bug, and bad input answered with one line and exit 2.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack, unpack } from 'msgpackr';
import { BIN, expectBadInput, ROOT, vcpulab } from '../helpers/cli.js';

const FIXTURE = join(ROOT, 'test', 'fixtures', 'lost-update');
const tmp = (): string => mkdtempSync(join(tmpdir(), 'vcpulab-hunt-'));

interface HuntJson {
  hunt: { runs: number; workers: number; stopped: string | null };
  signatures: { kind: string; cause: string; signature: string; hits: number; first: { run: number; strategy: string; seed: number }; schedule: string | null;
    shrunk: { steps_before: number; steps_after: number; preemptions_before: number; preemptions_after: number } | null }[];
  per_strategy: Record<string, { runs: number; first_hit: Record<string, number> }>;
}

describe('vcpulab hunt', () => {
  it('finds the same signatures, first hits included, with 1 worker and with 2', async () => {
    const args = ['hunt', '--scenario', 'secure-realm', '--runs', '8', '--strategy', 'random,preempt,pct,pos', '--no-shrink', '--json', '--seed', '5'];
    const [a, b] = [await vcpulab(...args, '--workers', '1'), await vcpulab(...args, '--workers', '2')];
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    const ja = JSON.parse(a.stdout) as HuntJson, jb = JSON.parse(b.stdout) as HuntJson;
    expect(ja.hunt.workers).toBe(1);
    expect(jb.hunt.workers).toBe(2);
    const key = (j: HuntJson) => j.signatures.map((s) => `${s.signature} ${s.hits} ${s.first.run}`).sort();
    expect(key(ja)).toEqual(key(jb));
    expect(ja.per_strategy).toEqual(jb.per_strategy);
    expect(ja.signatures.length).toBeGreaterThan(0);
    // Every signature is kind:cause:pcs and its row agrees with it.
    for (const s of ja.signatures) expect(s.signature.startsWith(`${s.kind}:${s.cause}:`)).toBe(true);
  });

  it('--until stops at the first run that shows the finding, the same run whatever the pool size', async () => {
    const args = ['hunt', '--scenario', 'secure-realm', '--until', 'IPI_MISDIRECTED:icr_window', '--runs', '60', '--no-shrink', '--json'];
    const [a, b] = [await vcpulab(...args, '--workers', '1'), await vcpulab(...args, '--workers', '2')];
    const ja = JSON.parse(a.stdout) as HuntJson, jb = JSON.parse(b.stdout) as HuntJson;
    expect(ja.hunt.stopped).toBe('until');
    const hit = ja.signatures.find((s) => s.kind === 'IPI_MISDIRECTED' && s.cause === 'icr_window');
    expect(hit).toBeDefined();
    expect(ja.hunt.runs).toBe((hit?.first.run ?? -2) + 1);
    expect(jb.hunt.runs).toBe(ja.hunt.runs);
  });

  it('shrinks a race to a schedule that replays to the same signature and is never longer', async () => {
    const out = tmp();
    const r = await vcpulab('hunt', '--scenario', 'secure-realm', '--until', 'IPI_MISDIRECTED:icr_window', '--runs', '60', '--workers', '2',
      '--shrink-budget', '24', '--out', out, '--json');
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as HuntJson;
    expect(j.signatures.length).toBeGreaterThan(0);
    // With --until only the matching signatures are shrunk and kept.
    expect(readdirSync(out).sort()).toEqual(j.signatures.filter((s) => s.cause === 'icr_window').map((s) => `${s.signature}.schedule`).sort());
    for (const s of j.signatures.filter((x) => x.schedule !== null)) {
      expect(s.schedule).toBe(join(out, `${s.signature}.schedule`));
      const sh = s.shrunk as NonNullable<typeof s.shrunk>;
      expect(sh.steps_after).toBeLessThanOrEqual(sh.steps_before);
      expect(sh.preemptions_after).toBeLessThanOrEqual(sh.preemptions_before);
    }
    const win = j.signatures.find((s) => s.cause === 'icr_window') as HuntJson['signatures'][number];
    const rep = await vcpulab('replay', win.schedule as string, '--json');
    expect(rep.code, rep.stdout.slice(-400) + rep.stderr).toBe(0);
    const check = (JSON.parse(rep.stdout) as { replay_check: { status: string; signature: string } }).replay_check;
    expect(check.status).toBe('ok');
    expect(check.signature).toBe(win.signature);
    // The corpus as a whole passes regress.
    const reg = await vcpulab('regress', out);
    expect(reg.code, reg.stdout).toBe(0);
  });

  it('on default settings, --until finds the ICR window; every window schedule replays, shrinking never adds preemptions', async () => {
    const out = tmp();
    const r = await vcpulab('hunt', '--scenario', 'secure-realm', '--until', 'IPI_MISDIRECTED:icr_window', '--workers', '2', '--out', out, '--json');
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as HuntJson;
    expect(j.hunt.stopped).toBe('until');
    const win = j.signatures.filter((s) => s.cause === 'icr_window');
    expect(win.length).toBeGreaterThan(0);
    for (const s of win) {
      expect(s.shrunk?.preemptions_after, s.signature).toBeLessThanOrEqual(s.shrunk?.preemptions_before ?? -1);
      expect((await vcpulab('replay', s.schedule as string)).code, s.signature).toBe(0);
    }
  });

  it('the window a guest\'s own nested send opens shrinks to at most 2 preemptions (pct)', async () => {
    const out = tmp();
    const r = await vcpulab('hunt', '--scenario', 'secure-realm', '--strategy', 'pct', '--until', 'IPI_MISDIRECTED:icr_window', '--workers', '2', '--out', out, '--shrink-budget', '60', '--json');
    expect(r.code, r.stderr).toBe(0);
    const win = (JSON.parse(r.stdout) as HuntJson).signatures.filter((s) => s.cause === 'icr_window' && !s.signature.endsWith(',xen'));
    expect(win.length).toBeGreaterThan(0);
    for (const s of win) {
      expect(s.shrunk?.preemptions_after, s.signature).toBeLessThanOrEqual(2);
      expect((await vcpulab('replay', s.schedule as string)).code, s.signature).toBe(0);
    }
  });

  it('regress fails for an entry whose bug was removed from the program, and passes while it is there', async () => {
    const dir = tmp(), out = join(dir, 'corpus');
    cpSync(FIXTURE, dir, { recursive: true });
    const toml = join(dir, 'lost-update.toml');
    const h = await vcpulab('hunt', '--scenario', toml, '--runs', '4', '--workers', '1', '--strategy', 'random', '--out', out, '--shrink-budget', '8', '--json');
    expect(h.code, h.stderr).toBe(0);
    const sigs = (JSON.parse(h.stdout) as HuntJson).signatures.map((s) => s.signature);
    expect(sigs.some((s) => s.startsWith('GUEST_ASSERT:code1:'))).toBe(true);
    const before = await vcpulab('regress', out, '--json');
    expect(before.code, before.stdout).toBe(0); // negative control: nothing changed, everything reproduces
    // Fix the bug: the add becomes one locked instruction.
    const prog = join(dir, 'lost-update.s');
    writeFileSync(prog, readFileSync(prog, 'utf8').replace(/    mov eax, \[counter\][^\n]*\n    add eax, 1\n    mov \[counter\], eax\n/, '    lock add [counter], 1\n'));
    const after = await vcpulab('regress', out, '--json');
    expect(after.code).toBe(1);
    const res = (JSON.parse(after.stdout) as { results: { signature: string; status: string; scenario_changed: boolean }[] }).results;
    const entry = res.find((x) => x.signature.startsWith('GUEST_ASSERT:code1:'));
    expect(entry?.status).toBe('fixed');
    expect(entry?.scenario_changed).toBe(true);
    // A single replay of that schedule refuses the changed scenario: one line, exit 2.
    const file = join(out, readdirSync(out).find((n) => n.startsWith('GUEST_ASSERT')) as string);
    expectBadInput(await vcpulab('replay', file), /changed since this schedule was written/);
  });

  it('Ctrl-C ends the hunt with its partial results and exit 130', async () => {
    const child = spawn(process.execPath, [BIN, 'hunt', '--runs', '100000', '--workers', '2', '--no-shrink', '--json'], { cwd: ROOT });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    await new Promise((r) => setTimeout(r, 3000));
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(code).toBe(130);
    const j = JSON.parse(out) as HuntJson;
    expect(j.hunt.stopped).toBe('interrupted');
    expect(j.hunt.runs).toBeLessThan(100000);
  });

  it('a version 1 schedule (whole runs, no hash) still replays exactly', async () => {
    const d = tmp();
    const v2 = join(d, 'v2.sched'), v1 = join(d, 'v1.sched');
    expect((await vcpulab('sim', '--scenario', 'counter', '--engine', 'serial', '--max-instructions', '3000', '--schedule-out', v2)).code).toBe(0);
    const b = unpack(readFileSync(v2)) as { config: unknown; digest: string; tape: number[] };
    const runs: number[] = [];
    for (let i = 0; i < b.tape.length; i += 3) for (let k = 0; k < b.tape[i + 2]; k++) runs.push(b.tape[i], b.tape[i + 1]);
    writeFileSync(v1, pack({ format: 'vcpulab-schedule', version: 1, config: b.config, digest: b.digest, runs }));
    const r = await vcpulab('replay', v1, '--json');
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { digest: string }).digest).toBe(b.digest);
    // The old format has no checksum: a schedule cut in half is caught by the replay itself (exit 1).
    writeFileSync(v1, pack({ format: 'vcpulab-schedule', version: 1, config: b.config, digest: b.digest, runs: runs.slice(0, (runs.length >> 2) * 2) }));
    expect((await vcpulab('replay', v1)).code).toBe(1);
  });

  it('bad flags, a bad DIR and a bad schedule are one line and exit 2', async () => {
    expectBadInput(await vcpulab('hunt', '--runs', '0'), /--runs must be an integer from 1/);
    expectBadInput(await vcpulab('hunt', '--strategy', 'random,bogus'), /unknown strategy 'bogus'/);
    expectBadInput(await vcpulab('hunt', '--until', 'IPI_NOPE'), /--until must be KIND\[:CAUSE\]/);
    expectBadInput(await vcpulab('hunt', '--workers', 'two'), /--workers must be an integer/);
    expectBadInput(await vcpulab('hunt', '--bogus'), /Unknown option '--bogus'/);
    expectBadInput(await vcpulab('hunt', '--scenario', 'no-such-design', '--no-shrink'), /no built-in scenario 'no-such-design'/);
    const f = join(tmp(), 'file');
    writeFileSync(f, 'x');
    expectBadInput(await vcpulab('hunt', '--runs', '1', '--out', join(f, 'sub')), /--out: cannot create directory/);
    expectBadInput(await vcpulab('regress', '/nonexistent-dir'), /cannot read directory/);
    expectBadInput(await vcpulab('regress', tmp()), /no \.schedule files/);
    const d = tmp();
    writeFileSync(join(d, 'x.schedule'), 'not msgpack at all');
    expectBadInput(await vcpulab('regress', d), /x\.schedule: not a vcpulab schedule file/);
    expectBadInput(await vcpulab('replay', join(d, 'x.schedule')), /not a vcpulab schedule file/);
    expectBadInput(await vcpulab('reproduce', '/nonexistent.json'), /cannot read the report/);
    // A schedule whose content no longer matches its checksum (a flipped field), or whose flags are out of
    // range even with a matching checksum, is refused before anything runs.
    const corpus = join(ROOT, 'test', 'corpus', 'secure-realm');
    const good = join(corpus, readdirSync(corpus).find((n) => n.endsWith('.schedule')) as string);
    const body = unpack(readFileSync(good)) as Record<string, unknown> & { config: Record<string, unknown> };
    const edited = join(d, 'edited.schedule');
    writeFileSync(edited, pack({ ...body, seed: (body.seed as number) + 1 }));
    expectBadInput(await vcpulab('replay', edited), /edited\.schedule: checksum mismatch/);
    writeFileSync(edited, pack({ ...body, config: { ...body.config, engine: 'threaded' } }));
    expectBadInput(await vcpulab('replay', edited), /config\.engine.* must be 'serial'|checksum mismatch/);
  });
});

describe('vcpulab reproduce', () => {
  it('turns a threaded finding into a serial schedule that replays', async () => {
    const d = tmp();
    const sim = await vcpulab('sim', '--scenario', 'secure-realm', '--engine', 'threaded', '--json');
    expect(sim.code, sim.stderr).toBe(0);
    const rep = JSON.parse(sim.stdout) as { findings: { kind: string; first: { signature: string } }[] };
    const n = rep.findings.findIndex((f) => f.kind === 'IPI_MISDIRECTED');
    expect(n).toBeGreaterThanOrEqual(0);
    writeFileSync(join(d, 'report.json'), sim.stdout);
    const r = await vcpulab('reproduce', join(d, 'report.json'), '--finding', String(n + 1), '--runs', '40', '--workers', '2', '--shrink-budget', '8',
      '--out', join(d, 'out'), '--json');
    const j = JSON.parse(r.stdout) as HuntJson & { reproduced: boolean; signature: string };
    expect(j.signature).toBe(rep.findings[n].first.signature);
    if (j.reproduced) {
      expect(r.code).toBe(0);
      const row = j.signatures.find((s) => s.signature === j.signature);
      expect((await vcpulab('replay', row?.schedule as string)).code).toBe(0);
      // Only the finding asked for is shrunk and kept.
      expect(readdirSync(join(d, 'out'))).toEqual([`${j.signature}.schedule`]);
    } else {
      // A threaded interleaving the serial search did not reach within its budget: it says so.
      expect(r.code).toBe(1);
    }
  });
});

describe("the project's regression corpus", () => {
  it('every built-in race in test/corpus still reproduces (regressDir, the helper a suite calls)', async () => {
    const { regressDir } = (await import(new URL('../../dist/src/hunt/regress.js', import.meta.url).href)) as typeof import('../../src/hunt/regress.js');
    const res = await regressDir(join(ROOT, 'test', 'corpus'));
    expect(res.length).toBeGreaterThan(0);
    for (const r of res) expect(r.status, `${r.file}: ${r.detail}`).toBe('ok');
  });
});

describe("the README's runs-to-first-hit table", () => {
  it('matches real campaigns (seeds 1 and 2 of the ICR-window line, every strategy that finds it)', async () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const line = /^Per campaign seed 1\.\.10, the ICR window: (.+) \(`-`: not found/m.exec(readme);
    expect(line, 'the per-seed line is in the README').not.toBeNull();
    const per = new Map((line?.[1] ?? '').split('; ').map((part) => {
      const [name, ...xs] = part.split(' ');
      return [name, xs] as const;
    }));
    const { runHunt } = (await import(new URL('../../dist/src/hunt/campaign.js', import.meta.url).href)) as typeof import('../../src/hunt/campaign.js');
    for (const strategy of ['preempt', 'pct', 'pos']) {
      for (const seed of [1, 2]) {
        const want = per.get(strategy)?.[seed - 1];
        expect(want, `${strategy} seed ${seed} in the README`).toMatch(/^\d+$/);
        const h = await runHunt({ scenario: 'secure-realm', strategies: [strategy], runs: 80, timeMs: 0, workers: 2, seed, out: null, shrink: false, shrinkBudget: 0,
          until: { kind: 'IPI_MISDIRECTED', cause: 'icr_window' }, maxInstructions: 100_000_000, slack: 30_000, pctDepth: 3, interrupt: { requested: false } });
        expect(h.hunt.stopped).toBe('until');
        expect(String(h.hunt.runs), `${strategy} seed ${seed}`).toBe(want);
      }
    }
  });
});
