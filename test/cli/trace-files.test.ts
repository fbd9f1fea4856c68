// Trace files as bad input and as outputs that fail: a directory, a damaged header or batch, a target that
// cannot be written — one line and exit 2; a write that fails mid-run leaves the run and its report intact.
import { describe, expect, it } from 'vitest';
import { closeSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack } from 'msgpackr';
import { expectBadInput, vcpulab } from '../helpers/cli.js';
import { TraceWriter } from '../../src/trace/writer.js';

const HEADER = { format: 'vcpulab-trace', version: 1, scenario: 'x', engine: 'serial', seed: 1, pcpus: 2, domains: ['g'] };
const tmp = (): string => mkdtempSync(join(tmpdir(), 'vcpulab-tracef-'));

describe('trace files that are not what they claim', () => {
  it('a directory, a header with an impossible pCPU count, a batch with a non-record: one line, exit 2', async () => {
    const d = tmp();
    expectBadInput(await vcpulab('trace', d), /is a directory, not a trace file/);
    writeFileSync(join(d, 'big.trace'), pack({ ...HEADER, pcpus: 1e9 }));
    expectBadInput(await vcpulab('trace', join(d, 'big.trace'), '--perfetto', join(d, 'o.json')), /field 'pcpus' must be an integer from 1 to 255, got 1000000000/);
    writeFileSync(join(d, 'rec.trace'), Buffer.concat([pack(HEADER), pack([[1, 0, 1, 0, 0, 1, 2, 3], 'x'])]));
    expectBadInput(await vcpulab('trace', join(d, 'rec.trace'), '--perfetto', join(d, 'o.json')), /not a vcpulab trace \(value 2 is not an event batch\)/);
    // Control: a real trace reads.
    const ok = join(d, 'ok.trace');
    expect((await vcpulab('sim', '--scenario', 'counter', '--engine', 'serial', '--max-instructions', '10000', '--trace', ok)).code).toBe(0);
    expect((await vcpulab('trace', ok, '--perfetto', join(d, 'o.json'))).code).toBe(0);
  });

  it('a --trace target that cannot be written is bad input', async () => {
    expectBadInput(await vcpulab('sim', '--scenario', 'counter', '--engine', 'serial', '--trace', '/dev/full'), /--trace: cannot write '\/dev\/full' \(ENOSPC\)/);
  });

  it('a write that fails mid-run stops the trace, not the run, and says how far it got', () => {
    const f = join(tmp(), 'cut.trace');
    const w = new TraceWriter(f, HEADER as never);
    closeSync((w as unknown as { fd: number }).fd); // the next write fails (EBADF), as a full disk would
    for (let i = 0; i < 20_000; i++) w.onEvent(0, i, 1, 0, 0, i, 0, 0, 0);
    expect(() => w.close()).not.toThrow();
    expect(w.failed).toMatch(/--trace: writing '.*cut\.trace' failed \(EBADF\) after 0 events; the trace is incomplete/);
  });
});
