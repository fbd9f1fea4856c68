// Hot-path hygiene (STYLE.md): the guest interpreter, the pCPU loop and the IPI/vLAPIC/posted paths run
// per instruction or per step; they must not post messages or create closures. A checker, not a linter:
// it reads the sources as text.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const HOT = ['src/isa/interp.ts', 'src/hv/pcpu-loop.ts', 'src/hv/vlapic.ts', 'src/hv/posted.ts', 'src/hv/ipi.ts'];

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
