// Hot-path hygiene (STYLE.md): the guest interpreter, the pCPU loop and the IPI/vLAPIC/posted paths run
// per instruction or per step; they must not post messages or create closures. A checker, not a linter:
// it reads the sources as text.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const HOT = ['src/isa/interp.ts', 'src/hv/pcpu-loop.ts', 'src/hv/vlapic.ts', 'src/hv/posted.ts', 'src/hv/ipi.ts', 'src/hv/ipi-send.ts'];

function code(file: string): string {
  // Drop comments so prose about arrows or postMessage does not count.
  return readFileSync(join(ROOT, file), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
}

describe('hot paths', () => {
  it.each(HOT)('%s has no closures', (f) => {
    expect(code(f)).not.toMatch(/=>/);
  });

  it('the ring producer (one push per event) has no closures', () => {
    const src = code('src/trace/ring.ts');
    const writer = src.slice(src.indexOf('export class RingWriter'), src.indexOf('export class RingWaitForConsumer'));
    expect(writer.length).toBeGreaterThan(100);
    expect(writer).not.toMatch(/=>/);
  });

  it('nothing under src/ posts messages on the hot path (comlink is for control only)', () => {
    const walk = (d: string): string[] => readdirSync(join(ROOT, d), { withFileTypes: true })
      .flatMap((e) => e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.ts') ? [join(d, e.name)] : []);
    const offenders = walk('src').filter((f) => /\.postMessage\(/.test(code(f)));
    expect(offenders).toEqual([]);
  });

  it('the interpreter switch uses const-enum opcodes (literals after compilation), not imported constants', () => {
    const src = code('src/isa/interp.ts');
    expect(src).not.toMatch(/case OP_[A-Z]/);
    expect(src).toMatch(/case Op\.MOV:/);
  });
});

// Layering (STYLE.md §18): imports only go down, so no module reaches itself through its imports. Checked by
// dependency-cruiser (.dependency-cruiser.cjs) over the compiled build, which `npm test` makes first: the
// TypeScript compiler this project builds with has no JavaScript API for it to parse sources with, and the
// build has exactly the runtime imports (type-only imports are erased: they cannot form a cycle at run time).
function cruise(...paths: string[]): { ok: boolean; out: string } {
  try {
    const out = execFileSync(process.execPath, [join(ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs'), ...paths,
      '--config', join(ROOT, '.dependency-cruiser.cjs'), '--output-type', 'err'], { cwd: ROOT, encoding: 'utf8' });
    return { ok: true, out };
  } catch (e) {
    return { ok: false, out: String((e as { stdout?: unknown }).stdout ?? e) };
  }
}

describe('layering', () => {
  it('no import cycle in src/, shared/ or workers/', () => {
    const r = cruise('dist/src', 'dist/shared', 'dist/workers');
    expect(r.out).toMatch(/no dependency violations found \((\d{2,}) modules/);
    expect(r.ok, r.out).toBe(true);
  });

  it('the check sees a cycle when there is one', () => {
    const d = mkdtempSync(join(tmpdir(), 'vcpulab-cycle-'));
    writeFileSync(join(d, 'a.js'), "import { b } from './b.js';\nexport const a = () => b;\n");
    writeFileSync(join(d, 'b.js'), "import { a } from './a.js';\nexport const b = () => a;\n");
    const r = cruise(d);
    expect(r.ok).toBe(false);
    expect(r.out).toMatch(/no-circular/);
  });
});
