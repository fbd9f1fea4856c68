// Agents cannot take the run down: every way an agent's code can fail — a loop in setup or in a callback,
// process.exit, a throw, a rejected promise, a response that is not a vm_event response — ends the run on
// both engines with an AGENT_FAILED finding naming the call and the reason, a full report, and no thread
// left behind; a module whose top-level code never settles is bad input. A well-behaved agent beside them
// (the same scenario, a correct response) completes with no AGENT_FAILED.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import type * as SimModule from '../../src/cli/sim.js';
import { BIN, ROOT, expectBadInput, vcpulab } from '../helpers/cli.js';

const { simulate } = (await import(new URL('../../dist/src/cli/sim.js', import.meta.url).href)) as typeof SimModule;

const dir = mkdtempSync(join(tmpdir(), 'vcpulab-agent-faults-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The guest writes a page the agent's view makes read-only: one MEM_ACCESS event, then shuts down.
writeFileSync(join(dir, 'prog.s'), '_start:\n    mov eax, 0x10000\n    mov [eax], 1\n    mov ebx, 0\n    magic 0\n');
const SETUP = 'setup(xc, domid) { xc.setDomainState(domid, true); const v = xc.createView(domid, 5); xc.switchToView(domid, v); }';
/** Step over the write in view 0 (VCPU_PAUSED | ALTERNATE_P2M): the well-behaved answer. */
const GOOD = '{ version: req.version, vcpuId: req.vcpuId, reason: req.reason, flags: (req.flags & 1) | 128, altp2mIdx: 0 }';
const AGENTS: Record<string, string> = {
  good: `export default { ${SETUP}, onEvent(xc, d, req) { return ${GOOD}; } };`,
  hang_setup: 'export default { setup() { for (;;) {} }, onEvent() { return null; } };',
  hang_event: `export default { ${SETUP}, onEvent() { for (;;) {} } };`,
  never_settles: `export default { ${SETUP}, onEvent() { return new Promise(() => {}); } };`,
  exit: 'export default { setup() { process.exit(3); }, onEvent() { return null; } };',
  throw: `export default { ${SETUP}, onEvent() { throw new Error('agent bug'); } };`,
  reject: "export default { async setup() { throw new Error('async setup failed'); }, onEvent() { return null; } };",
  factory_throws: "export default function () { throw new Error('no agent today'); }",
  garbage: `export default { ${SETUP}, onEvent() { return 'garbage'; } };`,
  number: `export default { ${SETUP}, onEvent() { return 42; } };`,
  empty: `export default { ${SETUP}, onEvent() { return {}; } };`,
  nan: `export default { ${SETUP}, onEvent(xc, d, req) { return { ...${GOOD}, flags: NaN }; } };`,
  bad_vcpu: `export default { ${SETUP}, onEvent(xc, d, req) { return { ...${GOOD}, vcpuId: 7 }; } };`,
  tla: 'await new Promise(() => {});\nexport default { setup() {}, onEvent() { return null; } };',
};
const scenario = (name: string): string => {
  writeFileSync(join(dir, `${name}.mjs`), AGENTS[name] + '\n');
  const f = join(dir, `${name}.toml`);
  writeFileSync(f, `[machine]\npcpus = 1\n[[domain]]\nname = "g"\nvcpus = 1\nmemory_kb = 256\nprogram = "prog.s"\naltp2m = "external"\nagent = "${name}.mjs"\n`);
  return f;
};
const cfg = (name: string, engine: 'serial' | 'threaded') => ({
  scenario: scenario(name), engine, seed: 1, strategy: 'random', maxInstructions: 1_000_000, maxMs: 20_000, slack: 30000, burst: 4096,
  watchdogMs: 15_000, agentTimeoutMs: 400,
});

/** OS threads of this process (Linux): worker threads that ended are gone from it. */
const threads = (): number => Number(/Threads:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN);

const FAULTS: [string, string, RegExp][] = [
  ['hang_setup', 'timeout', /failed in setup: no answer within 400 ms/],
  ['hang_event', 'timeout', /failed in onEvent \(request 1\b.*\): no answer within 400 ms/],
  ['never_settles', 'timeout', /failed in onEvent \(request 1/],
  ['exit', 'exited', /failed in setup: the agent called process\.exit\(3\)/],
  ['throw', 'threw', /failed in onEvent \(request 1.*threw Error: agent bug/],
  ['reject', 'threw', /failed in setup: threw Error: async setup failed/],
  ['factory_throws', 'threw', /failed in setup: the module's factory threw Error: no agent today/],
  ['garbage', 'bad_response', /it returned "garbage", not a vm_event response object/],
  ['number', 'bad_response', /it returned 42, not a vm_event response object/],
  ['empty', 'bad_response', /field version is missing/],
  ['nan', 'bad_response', /field flags is NaN, not an integer/],
  ['bad_vcpu', 'bad_response', /field vcpuId = 7 is out of range 0\.\.0/],
];

describe.each(['serial', 'threaded'] as const)('%s engine: a failing agent ends the run with AGENT_FAILED', (engine) => {
  it('a well-behaved agent completes (negative control), and the failures leave no thread behind', async () => {
    const ok = await simulate(cfg('good', engine));
    expect(ok.report.outcome).toBe('completed');
    expect(ok.report.findings).toEqual([]);
    expect(ok.report.agents[0].error).toBeNull();
    expect(ok.report.agents[0].events).toBe(1);
    const before = threads();
    for (const [name, cause, detail] of FAULTS) {
      const { report } = await simulate(cfg(name, engine));
      expect(report.outcome, name).toBe('aborted');
      expect(report.findings.map((f) => f.kind), name).toEqual(['AGENT_FAILED']);
      const f = report.findings[0];
      expect(f.first.cause, name).toBe(cause);
      expect(f.first.signature, name).toBe(`AGENT_FAILED:${cause}:`);
      expect(f.first.detail, name).toMatch(/^the agent of domain g failed in /);
      expect(f.first.detail, name).toMatch(detail);
      expect(report.reason, name).toBe(f.first.detail);
      expect(report.agents[0].error, name).not.toBeNull();
      expect(report.domains[0].state, name).toBe('running'); // the run ended there, with a full report
    }
    expect(threads()).toBeLessThanOrEqual(before);
  }, 60_000);
});

describe('agent modules and the CLI', () => {
  it('a top-level await that never settles, or a syntax error, is bad input (exit 2, one line)', async () => {
    expectBadInput(await vcpulab('sim', '--scenario', scenario('tla'), '--engine', 'serial', '--agent-timeout-ms', '2000'), /tla\.mjs: agent module never finished loading/);
    writeFileSync(join(dir, 'syntax.mjs'), 'export default { setup( {} ;\n');
    writeFileSync(join(dir, 'syntax.toml'), readFileSync(join(dir, 'tla.toml'), 'utf8').replace('tla.mjs', 'syntax.mjs'));
    expectBadInput(await vcpulab('sim', '--scenario', join(dir, 'syntax.toml')), /syntax\.mjs: agent module does not load/);
  }, 30_000);

  it('an agent that exits or loops prints the report and exits 1; Ctrl-C ends a run whose agent loops (exit 130)', async () => {
    const r = await vcpulab('sim', '--scenario', scenario('exit'), '--json', '--agent-timeout-ms', '500');
    expect(r.code).toBe(1);
    expect((JSON.parse(r.stdout) as { findings: { kind: string }[] }).findings.map((f) => f.kind)).toEqual(['AGENT_FAILED']);
    for (const engine of ['serial', 'threaded']) {
      const child = spawn(process.execPath, [BIN, 'sim', '--scenario', scenario('hang_event'), '--engine', engine, '--json', '--agent-timeout-ms', '60000'], { cwd: ROOT });
      let out = '';
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      await new Promise((res) => setTimeout(res, 1500)); // the agent is in its loop by now
      child.kill('SIGINT');
      const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
      expect(code, engine).toBe(130);
      const rep = JSON.parse(out) as { outcome: string; reason: string };
      expect(rep.outcome).toBe('aborted');
      expect(rep.reason).toMatch(/interrupted/);
    }
  }, 30_000);
});
