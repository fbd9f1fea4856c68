import { describe, it, expect } from 'vitest';
import { assemble } from '../../src/isa/assembler.js';
import { disassemble, disassembleImage, disassembleRange } from '../../src/isa/disasm.js';
import {
  OPS, OP_COUNT, REG_ZERO, encodeWord0, decodeOp, fitsI16, type Form,
  OP_MOV, OP_ADD, OP_JMP, OP_CALL, OP_JZ, OP_ST_SD, OP_ST_SI, OP_INT, OP_IN, OP_NOP, OP_POP,
  OP_ST_W, OP_LADD_W, OP_LAND_W, OP_WIDE_TAIL,
} from '../../src/isa/opcodes.js';

function u32(image: Uint8Array, addr: number): number {
  return (image[addr] | (image[addr + 1] << 8) | (image[addr + 2] << 16) | (image[addr + 3] << 24)) >>> 0;
}

/** All 8-byte slots of an image as word pairs. */
function wordPairs(image: Uint8Array): [number, number][] {
  const out: [number, number][] = [];
  for (let a = 0; a + 8 <= image.length; a += 8) out.push([u32(image, a), u32(image, a + 4)]);
  return out;
}

/** Assemble `lines`, one instruction each, and return their word pairs. */
function reassemble(lines: readonly string[]): [number, number][] {
  return wordPairs(assemble(lines.join('\n'), 'rt.s').image);
}

const Z = REG_ZERO;
const w0 = (op: number, a = 0, b = 0, i16 = 0): number => encodeWord0(op, a, b, i16) >>> 0;

describe('disassemble', () => {
  it('prints canonical text', () => {
    expect(disassemble(w0(OP_NOP), 0)).toBe('nop');
    expect(disassemble(w0(OP_MOV, 0, Z), 1)).toBe('mov eax, 1');
    expect(disassemble(w0(OP_MOV, 0, Z), 10)).toBe('mov eax, 0xa');
    expect(disassemble(w0(OP_MOV, 1, 3), 0)).toBe('mov ecx, ebx');
    expect(disassemble(w0(OP_ADD, 4, Z), 0xfffffff8)).toBe('add esp, -8');
    expect(disassemble(w0(OP_ADD, 4, Z), 0x80000000)).toBe('add esp, 0x80000000');
    expect(disassemble(w0(OP_POP, 15), 0)).toBe('pop r15');
    expect(disassemble(w0(OP_ST_SD, 0, 6, -4), 0x1234)).toBe('mov [esi-4], 0x1234');
    expect(disassemble(w0(OP_ST_SI, 0, Z, -1), 0x12345678)).toBe('mov [0x12345678], -1');
    expect(disassemble(w0(OP_INT, 0, 0), 0x80)).toBe('int 0x80');
    expect(disassemble(w0(OP_IN, 2, 0), 0xe9)).toBe('in edx, 0xe9');
  });

  it('prints jump targets in hex, or as labels when given', () => {
    const labels = new Map([[0x40, 'loop']]);
    expect(disassemble(w0(OP_JMP, 0, Z), 8)).toBe('jmp 0x8');
    expect(disassemble(w0(OP_JZ, 0, Z), 0x40, labels)).toBe('jz loop');
    expect(disassemble(w0(OP_CALL, 0, Z), 0x48, labels)).toBe('call 0x48');
    expect(disassemble(w0(OP_CALL, 0, 0), 0, labels)).toBe('call eax');
    expect(disassemble(w0(OP_MOV, 0, Z), 0x40, labels)).toBe('mov eax, 0x40');
  });

  it('prints what the assembler would not write as .word', () => {
    expect(disassemble(0x7f, 0x12)).toBe('.word 0x0000007f, 0x00000012');       // unknown opcode
    expect(disassemble(w0(OP_NOP, 1), 0)).toBe('.word 0x00000080, 0x00000000');   // unused field set
    expect(disassemble(w0(OP_MOV, 0, 17), 0)).toBe('.word 0x00008817, 0x00000000'); // b names no register
    expect(disassemble(w0(OP_MOV, 0, 3), 4)).toMatch(/^\.word /);                  // register + imm32
    expect(disassemble(w0(OP_ST_SI, 0, Z, 5), 0x10)).toMatch(/^\.word /);          // SD would have been chosen
    expect(disassemble(w0(OP_INT), 256)).toMatch(/^\.word /);
  });

  it('disassembleImage walks 8-byte slots', () => {
    const p = assemble('mov eax, 1\nhlt\n.byte 0x01', 't.s');
    expect(disassembleImage(p.image, 0, p.end)).toEqual(['mov eax, 1', 'hlt', 'hlt']);
    expect(disassembleImage(p.image, 8, 16)).toEqual(['hlt']);
  });

  it('a wide instruction is one line of 16 bytes with its tail, else .word; its tail alone is .word', () => {
    const head = w0(OP_ST_W, 0, Z);
    expect(disassemble(head, 0xfee00310, undefined, [OP_WIDE_TAIL, 0xff000000])).toBe('mov [0xfee00310], 0xff000000');
    expect(disassemble(w0(OP_LADD_W, 0, 6), 0x10000, undefined, [OP_WIDE_TAIL, 0x80000000])).toBe('lock add [esi+0x10000], 0x80000000');
    expect(disassemble(w0(OP_LAND_W, 0, 7), 0xffff0000, undefined, [OP_WIDE_TAIL, 0xfffe0000])).toBe('lock and [edi-0x10000], 0xfffe0000');
    expect(disassemble(head, 0xfee00310)).toBe('.word 0x00008047, 0xfee00310');                        // no tail given
    expect(disassemble(head, 0xfee00310, undefined, [OP_WIDE_TAIL | 0x80, 1 << 20])).toMatch(/^\.word /); // tail fields set
    expect(disassemble(head, 0xfee00310, undefined, [OP_WIDE_TAIL, 5])).toMatch(/^\.word /);          // short form fits
    expect(disassemble(head, 0x100, undefined, [OP_WIDE_TAIL, 0x12345678])).toMatch(/^\.word /);      // short form fits
    expect(disassemble(OP_WIDE_TAIL, 0xff000000)).toBe('.word 0x0000004b, 0xff000000');
    const p = assemble('mov [0xfee00310], 0xff000000\nhlt', 't.s');
    expect(disassembleRange(p.image, 0, p.end)).toEqual([[0, 'mov [0xfee00310], 0xff000000'], [16, 'hlt']]);
    expect(disassembleImage(p.image, 8, 16)).toEqual(['.word 0x0000004b, 0xff000000']);
  });
});

// Every opcode, every operand shape, and the edges of each field.
const EVERY_FORM = `
_start:
  nop
  hlt
  ud2
  cpuid
  rdtsc
  rdmsr
  wrmsr
  cli
  sti
  iret
  ret
  pushf
  popf
  mfence
  lfence
  pause
  vmcall
  vmfunc
  magic 0
  magic 0xffffffff
  int 0
  int 255
  lidt idt
  lidt ecx
  in eax, 0
  in r15, 0xffff
  out 0xe9, ebx
  mov eax, ebx
  mov r9, -1
  mov esp, 0x80000000
  mov eax, [esi]
  mov eax, [esi+0x7fffffff]
  mov eax, [esi-0x80000000]
  mov edx, [0xfee00300]
  mov [edi+4], eax
  mov [0], r12
  mov [esp], 0x12345678
  mov [esp-0x8000], 1
  mov [0x12345678], 0x7fff
  mov [ebp+0x8000], -0x8000
  movb ecx, [esi+1]
  movb [esi-1], ecx
  add eax, ebx
  add eax, 1
  sub ecx, 2
  and edx, 0xff
  or ebx, r8
  xor esi, esi
  shl edi, 3
  shr eax, 31
  sar eax, 1
  imul eax, -3
  cmp eax, 'A'
  test eax, ecx
  inc eax
  dec ecx
  neg edx
  not ebx
  jmp idt
  jz 0
  jnz idt
  jl eax
  jle idt
  jg idt
  jge idt
  jb idt
  jbe idt
  ja idt
  jae idt
  call idt
  call ecx
  push eax
  push -8
  pop r15
  xchg [esi], eax
  lock xadd [esi+4], ecx
  lock cmpxchg [0x1000], edx
  lock add [eax], ebx
  lock or [eax], ebx
  lock and [eax], ebx
  mov [0xfee00310], 0xff000000
  mov [esi+0x12345678], -0x8001
  lock add [0x10000], 0x12345678
  lock or [ebp-0x10000], 0x80000000
  lock and [0x7ffff000], 0xfff0f0f0
  lock add [eax+8], 1
  lock add [0x10000], 1
  lock or [eax], 0x80000000
  lock or [0xfffff], -1
  lock and [eax-2], 0xfffffffe
  lock and [0x20000], 0x10
  .align 8
idt:
  .word 0, 0
`;

describe('round trip', () => {
  it('the every-form program covers every opcode', () => {
    const ops = new Set(wordPairs(assemble(EVERY_FORM, 'all.s').image).map(([a]) => decodeOp(a)));
    for (let op = 0; op < OP_COUNT; op++) expect(ops.has(op), OPS[op].mnemonic).toBe(true);
  });

  it('assemble -> disassemble -> assemble gives identical bytes', () => {
    const p = assemble(EVERY_FORM, 'all.s');
    const idt = p.labels.get('idt') ?? -1;
    const text = disassembleImage(p.image, 0, idt);
    for (const t of text) expect(t).not.toMatch(/^\.word/);
    expect(text.filter((t) => /^(mov|lock (add|or|and)) \[/.test(t) && /0xff000000|0x12345678|0x80000000|0xfff0f0f0|-0x8001/.test(t)).length).toBeGreaterThanOrEqual(5);
    expect([...assemble(text.join('\n'), 'rt.s').image]).toEqual([...p.image.slice(0, idt)]);
  });

  it('with labels: jump targets print as names and re-assemble', () => {
    const p = assemble(EVERY_FORM, 'all.s');
    const names = new Map([...p.labels].map(([n, a]) => [a, n]));
    const lines = disassembleRange(p.image, 0, p.end, names);
    expect(lines.map(([, t]) => t)).toContain('jmp idt');
    const again = assemble(lines.map(([a, t]) => `${names.has(a) ? `${names.get(a)}: ` : ''}${t}`).join('\n'), 'rt.s');
    expect([...again.image]).toEqual([...p.image]);
  });
});

/** Deterministic PRNG (mulberry32) so a failure reproduces. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0);
  };
}

interface Gen { u32(): number; below(n: number): number }

function gen(seed: number): Gen {
  const next = rng(seed);
  const below = (n: number): number => next() % n;
  // Mix edge values, small numbers, small negatives and arbitrary words.
  const u32 = (): number => {
    switch (below(4)) {
      case 0: return [0, 1, 9, 10, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffff8000, 0xffffffff][below(12)];
      case 1: return below(0x100);
      case 2: return (-1 - below(0x10000)) >>> 0;
      default: return next();
    }
  };
  return { u32, below };
}

/** A random encoding the assembler can produce for `op`: fields the form does not use are zero. Two words,
 *  or four for a wide instruction (head and tail). */
function randomValid(g: Gen, op: number): number[] {
  const form: Form = OPS[op].form;
  const reg = g.below(16);
  const b = g.below(17);          // 16 = REG_ZERO
  const i16 = (g.u32() << 16) >> 16;
  const src = (): [number, number] => (b === REG_ZERO ? [b, g.u32()] : [b, 0]);
  switch (form) {
    case 'none': return [w0(op), 0];
    case 'imm': return [w0(op), op === OP_INT ? g.below(256) : g.u32()];
    case 'src': { const [sb, imm] = src(); return [w0(op, 0, sb), imm]; }
    case 'reg': return [w0(op, reg), 0];
    case 'reg_src': { const [sb, imm] = src(); return [w0(op, reg, sb), imm]; }
    case 'reg_mem': case 'mem_reg': return [w0(op, reg, b), g.u32()];
    case 'mem_sd': return [w0(op, 0, b, i16), g.u32()];
    case 'mem_si': {
      let disp = g.u32();
      while (fitsI16(disp | 0)) disp = g.u32();  // else the assembler picks the SD twin
      return [w0(op, 0, b, i16), disp];
    }
    case 'reg_port': case 'port_reg': return [w0(op, reg), g.below(0x10000)];
    case 'mem_wide': {
      const big = (): number => { let v = g.u32(); while (fitsI16(v | 0)) v = g.u32(); return v; };
      return [w0(op, 0, b), big(), OP_WIDE_TAIL, big()];
    }
    case 'tail': return randomValid(g, OP_NOP); // not an instruction of its own
  }
}

describe('randomized round trip', () => {
  it('2000 valid encodings disassemble to instructions and re-assemble identically', () => {
    const g = gen(0x5eed);
    const insns = Array.from({ length: 2000 }, () => randomValid(g, g.below(OP_COUNT)));
    const text = insns.map((w) => disassemble(w[0], w[1], undefined, w.length > 2 ? [w[2], w[3]] : undefined));
    text.forEach((t, i) => expect(t, `${insns[i]}`).not.toMatch(/^\.word/));
    expect(insns.some((w) => w.length === 4)).toBe(true);
    expect(reassemble(text).flat()).toEqual(insns.flat());
  });

  it('2000 arbitrary word pairs re-assemble identically (as instructions or .word)', () => {
    const g = gen(0xbadc0de);
    // Half with a real opcode in the low bits, so most of these reach the per-form checks.
    const word0 = (i: number): number => (i % 2 === 0 ? g.u32() : ((g.u32() & ~0x7f) | g.below(OP_COUNT)) >>> 0);
    const pairs = Array.from({ length: 2000 }, (_, i): [number, number] => [word0(i), g.u32()]);
    expect(reassemble(pairs.map(([a, b]) => disassemble(a, b)))).toEqual(pairs);
  });
});
