import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { assemble, MAX_ASSEMBLED_LINES, MAX_INCLUDE_DEPTH, MAX_RELAX_PASSES, type AsmProgram } from '../../src/isa/assembler.js';
import { asmCommand } from '../../src/cli/asm.js';
import { UserError } from '../../src/errors.js';
import {
  OPS, REG_ZERO, decodeOp, decodeA, decodeB, decodeI16,
  OP_NOP, OP_MAGIC, OP_INT, OP_LIDT, OP_IN, OP_OUT, OP_MOV, OP_LD, OP_ST, OP_ST_SD, OP_ST_SI, OP_LDB, OP_STB,
  OP_ADD, OP_SUB, OP_AND, OP_OR, OP_XOR, OP_SHL, OP_SHR, OP_SAR, OP_IMUL, OP_CMP, OP_TEST,
  OP_INC, OP_DEC, OP_NEG, OP_NOT, OP_JMP, OP_JZ, OP_JNZ, OP_JL, OP_JLE, OP_JG, OP_JGE, OP_JB, OP_JBE, OP_JA,
  OP_JAE, OP_CALL, OP_PUSH, OP_POP, OP_XCHG, OP_XADD, OP_CMPXCHG, OP_LADD, OP_LOR, OP_LAND,
  OP_LADD_SD, OP_LADD_SI, OP_LOR_SD, OP_LOR_SI, OP_LAND_SD, OP_LAND_SI,
  OP_ST_W, OP_LADD_W, OP_LOR_W, OP_LAND_W, OP_WIDE_TAIL, encodeWord0,
} from '../../src/isa/opcodes.js';

interface Fields { op: number; a: number; b: number; i16: number; imm: number }

function u32(image: Uint8Array, addr: number): number {
  return (image[addr] | (image[addr + 1] << 8) | (image[addr + 2] << 16) | (image[addr + 3] << 24)) >>> 0;
}

function fieldsAt(p: AsmProgram, addr: number): Fields {
  const w0 = u32(p.image, addr);
  return { op: decodeOp(w0), a: decodeA(w0), b: decodeB(w0), i16: decodeI16(w0), imm: u32(p.image, addr + 4) };
}

/** Fields of the single instruction in `src`. */
function one(src: string): Fields {
  const p = assemble(src, 't.s');
  expect(p.end).toBe(8);
  return fieldsAt(p, 0);
}

function f(op: number, a = 0, b = 0, i16 = 0, imm = 0): Fields {
  return { op, a, b, i16, imm: imm >>> 0 };
}

/** The message of the UserError that assembling `src` throws. */
function err(src: string): string {
  try {
    assemble(src, 'prog.s');
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return (e as UserError).message;
  }
  throw new Error(`assembled without error: ${src}`);
}

const Z = REG_ZERO;

describe('instruction forms', () => {
  it('zero-operand instructions', () => {
    for (const info of OPS.filter((o) => o.form === 'none')) {
      expect(one(info.mnemonic), info.mnemonic).toEqual(f(info.op));
      expect(one(info.mnemonic.toUpperCase()), info.mnemonic).toEqual(f(info.op));
    }
  });

  it('immediate and port forms', () => {
    expect(one('magic 1')).toEqual(f(OP_MAGIC, 0, 0, 0, 1));
    expect(one('magic 0xffffffff')).toEqual(f(OP_MAGIC, 0, 0, 0, 0xffffffff));
    expect(one('int 0x20')).toEqual(f(OP_INT, 0, 0, 0, 0x20));
    expect(one('int 255')).toEqual(f(OP_INT, 0, 0, 0, 255));
    expect(one('lidt 0x1000')).toEqual(f(OP_LIDT, 0, Z, 0, 0x1000));
    expect(one('lidt ecx')).toEqual(f(OP_LIDT, 0, 1, 0, 0));
    expect(one('in eax, 0xe9')).toEqual(f(OP_IN, 0, 0, 0, 0xe9));
    expect(one('out 0xffff, edx')).toEqual(f(OP_OUT, 2, 0, 0, 0xffff));
  });

  it('mov: register, immediate, load, store', () => {
    expect(one('mov ecx, edx')).toEqual(f(OP_MOV, 1, 2));
    expect(one('mov r15, -1')).toEqual(f(OP_MOV, 15, Z, 0, -1));
    expect(one('mov r8, [esi+8]')).toEqual(f(OP_LD, 8, 6, 0, 8));
    expect(one('mov eax, [esi]')).toEqual(f(OP_LD, 0, 6, 0, 0));
    expect(one('mov eax, [0xfee00300]')).toEqual(f(OP_LD, 0, Z, 0, 0xfee00300));
    expect(one('mov [edi-4], eax')).toEqual(f(OP_ST, 0, 7, 0, -4));
    expect(one('movb eax, [ebx]')).toEqual(f(OP_LDB, 0, 3));
    expect(one('movb [ebx+1], ecx')).toEqual(f(OP_STB, 1, 3, 0, 1));
  });

  it('mov [m], imm picks the short displacement, else the short immediate', () => {
    expect(one('mov [0x100], 0x12345678')).toEqual(f(OP_ST_SD, 0, Z, 0x100, 0x12345678));
    expect(one('mov [esp-8], 7')).toEqual(f(OP_ST_SD, 0, 4, -8, 7));
    expect(one('mov [0x7fff], 1')).toEqual(f(OP_ST_SD, 0, Z, 0x7fff, 1));
    expect(one('mov [0x8000], 1')).toEqual(f(OP_ST_SI, 0, Z, 1, 0x8000));
    expect(one('mov [0x12345678], -2')).toEqual(f(OP_ST_SI, 0, Z, -2, 0x12345678));
    expect(one('mov [ebx+0x10000], 0x7fff')).toEqual(f(OP_ST_SI, 0, 3, 0x7fff, 0x10000));
    // 32-bit wrap: 0xfffffff0 is -16 as a displacement, 0xffffffff is -1 as a value.
    expect(one('mov [0xfffffff0], 0xffffffff')).toEqual(f(OP_ST_SD, 0, Z, -16, -1));
    expect(one('mov [0x12345678], 0xffffffff')).toEqual(f(OP_ST_SI, 0, Z, -1, 0x12345678));
  });

  it('mov/lock add/or/and [m], imm with a 32-bit displacement and a 32-bit value take the 16-byte wide form', () => {
    const wide = (src: string): number[] => {
      const p = assemble(src, 't.s');
      expect(p.end, src).toBe(16);
      return [0, 4, 8, 12].map((o) => u32(p.image, o));
    };
    const head = (op: number, b: number): number => encodeWord0(op, 0, b, 0) >>> 0;
    expect(wide('mov [0xfee00310], 0xff000000')).toEqual([head(OP_ST_W, Z), 0xfee00310, OP_WIDE_TAIL, 0xff000000]);
    expect(wide('.equ APIC, 0xFEE00000\nmov [APIC+0x310], 0xff000000')).toEqual([head(OP_ST_W, Z), 0xfee00310, OP_WIDE_TAIL, 0xff000000]);
    expect(wide('lock add [0x12345678], 0x12345678')).toEqual([head(OP_LADD_W, Z), 0x12345678, OP_WIDE_TAIL, 0x12345678]);
    expect(wide('lock or [esi+0x10000], 0x80000000')).toEqual([head(OP_LOR_W, 6), 0x10000, OP_WIDE_TAIL, 0x80000000]);
    expect(wide('lock and [edi-0x8001], -0x8001')).toEqual([head(OP_LAND_W, 7), 0xffff7fff, OP_WIDE_TAIL, 0xffff7fff]);
    // Either value fitting 16 bits keeps the 8-byte forms (existing programs keep their layout).
    expect(one('mov [0xfee00310], 0x7fff')).toEqual(f(OP_ST_SI, 0, Z, 0x7fff, 0xfee00310));
    expect(one('lock add [0x7ffc], 0x12345678')).toEqual(f(OP_LADD_SD, 0, Z, 0x7ffc, 0x12345678));
  });

  it('a wide store whose values are labels further down is laid out wide, and what follows moves by 8', () => {
    const p = assemble('_start: mov [far], far\nnext: jmp next\n.org 0x10000\nfar: .word 0', 't.s');
    expect(p.labels.get('next')).toBe(16);
    expect(decodeOp(u32(p.image, 0))).toBe(OP_ST_W);
    expect(u32(p.image, 20)).toBe(16); // jmp next: the target moved with the layout
    // A label that ends up small keeps the short form.
    const q = assemble('_start: mov [near], 0x12345678\nnear: .word 0', 't.s');
    expect(q.labels.get('near')).toBe(8);
    expect(decodeOp(u32(q.image, 0))).toBe(OP_ST_SD);
    // A wide store that pushes a later label past 0x7fff makes a store to that label wide too.
    const r = assemble('.org 0x7fe8\n_start: mov [0x10000], 0x12345678\n mov [lbl], 0x12345678\nlbl: .word 0', 't.s');
    expect(r.labels.get('lbl')).toBe(0x8008);             // short, lbl would have been 0x7ff8
    expect(decodeOp(u32(r.image, 0x7ff8))).toBe(OP_ST_W);
  });

  it('ALU with register and immediate sources', () => {
    const alu: [string, number][] = [['add', OP_ADD], ['sub', OP_SUB], ['and', OP_AND], ['or', OP_OR],
      ['xor', OP_XOR], ['shl', OP_SHL], ['shr', OP_SHR], ['sar', OP_SAR], ['imul', OP_IMUL], ['cmp', OP_CMP],
      ['test', OP_TEST]];
    for (const [mn, op] of alu) {
      expect(one(`${mn} eax, ebx`), mn).toEqual(f(op, 0, 3));
      expect(one(`${mn} edi, -5`), mn).toEqual(f(op, 7, Z, 0, -5));
    }
  });

  it('single-register forms', () => {
    const ops: [string, number][] = [['inc', OP_INC], ['dec', OP_DEC], ['neg', OP_NEG], ['not', OP_NOT], ['pop', OP_POP]];
    for (const [mn, op] of ops) expect(one(`${mn} r13`), mn).toEqual(f(op, 13));
    expect(one('push ebp')).toEqual(f(OP_PUSH, 0, 5));
    expect(one('push 0x1234')).toEqual(f(OP_PUSH, 0, Z, 0, 0x1234));
  });

  it('jumps and calls to labels, expressions and registers', () => {
    const jumps: [string, number][] = [['jmp', OP_JMP], ['jz', OP_JZ], ['je', OP_JZ], ['jnz', OP_JNZ],
      ['jne', OP_JNZ], ['jl', OP_JL], ['jle', OP_JLE], ['jg', OP_JG], ['jge', OP_JGE], ['jb', OP_JB],
      ['jbe', OP_JBE], ['ja', OP_JA], ['jae', OP_JAE], ['call', OP_CALL]];
    for (const [mn, op] of jumps) {
      const p = assemble(`${mn} target\n${mn} ecx\n${mn} 0x100+8\ntarget: nop`, 't.s');
      expect(fieldsAt(p, 0), mn).toEqual(f(op, 0, Z, 0, 24));
      expect(fieldsAt(p, 8), mn).toEqual(f(op, 0, 1, 0, 0));
      expect(fieldsAt(p, 16), mn).toEqual(f(op, 0, Z, 0, 0x108));
    }
  });

  it('atomics', () => {
    expect(one('xchg [esi], eax')).toEqual(f(OP_XCHG, 0, 6));
    expect(one('xchg eax, [esi+4]')).toEqual(f(OP_XCHG, 0, 6, 0, 4));
    expect(one('lock xadd [ebx+8], ecx')).toEqual(f(OP_XADD, 1, 3, 0, 8));
    expect(one('xadd [ebx+8], ecx')).toEqual(f(OP_XADD, 1, 3, 0, 8));
    expect(one('lock cmpxchg [0x2000], edx')).toEqual(f(OP_CMPXCHG, 2, Z, 0, 0x2000));
    expect(one('cmpxchg [0x2000], edx')).toEqual(f(OP_CMPXCHG, 2, Z, 0, 0x2000));
    expect(one('lock add [eax], ebx')).toEqual(f(OP_LADD, 3, 0));
    expect(one('lock or [eax+4], ebx')).toEqual(f(OP_LOR, 3, 0, 0, 4));
    expect(one('LOCK AND [eax-4], ebx')).toEqual(f(OP_LAND, 3, 0, 0, -4));
    expect(one('lock add [eax], 1')).toEqual(f(OP_LADD_SD, 0, 0, 0, 1));
    expect(one('lock add [0x12345678], 1')).toEqual(f(OP_LADD_SI, 0, Z, 1, 0x12345678));
    expect(one('lock or [ecx+2], 0x80000000')).toEqual(f(OP_LOR_SD, 0, 1, 2, 0x80000000));
    expect(one('lock or [0x40000], 0x80')).toEqual(f(OP_LOR_SI, 0, Z, 0x80, 0x40000));
    expect(one('lock and [edx], -2')).toEqual(f(OP_LAND_SD, 0, 2, 0, -2));
    expect(one('lock and [0x10000], -2')).toEqual(f(OP_LAND_SI, 0, Z, -2, 0x10000));
  });

  it('mnemonics and registers are case-insensitive', () => {
    expect(one('MOV EAX, Ebx')).toEqual(f(OP_MOV, 0, 3));
    expect(one('Mov R10, [ESP+4]')).toEqual(f(OP_LD, 10, 4, 0, 4));
  });
});

/** imm32 of `mov eax, <expr>` (with optional preceding lines). */
function value(expr: string, before = ''): number {
  const p = assemble(`${before}\n.align 8\nv: mov eax, ${expr}`, 't.s');
  return fieldsAt(p, p.labels.get('v') ?? -1).imm;
}

describe('expressions', () => {
  it('numbers', () => {
    expect(value('42')).toBe(42);
    expect(value('0x2A')).toBe(42);
    expect(value('0XfF')).toBe(255);
    expect(value('007')).toBe(7);
    expect(value('0xffffffff')).toBe(0xffffffff);
    expect(value('-0x80000000')).toBe(0x80000000);
    expect(value('-1')).toBe(0xffffffff);
    expect(value('- -5')).toBe(5);
  });

  it('C precedence and associativity', () => {
    expect(value('1 + 2 * 3')).toBe(7);
    expect(value('(1 + 2) * 3')).toBe(9);
    expect(value('1 << 2 + 1')).toBe(8);
    expect(value('6 & 3 << 1')).toBe(6);
    expect(value('0xf0 | 0x0f & 0x3')).toBe(0xf3);
    expect(value('1 | 2 & 3 << 1 + 1 * 2')).toBe(1);
    expect(value('10 - 2 - 3')).toBe(5);
    expect(value('2 * 3 * 4')).toBe(24);
    expect(value('0x80000000 >> 4')).toBe(0x08000000);
    expect(value('-16 >> 2')).toBe(0xfffffffc);
    expect(value('-1 & 0xff')).toBe(0xff);
    expect(value('-(2 + 3)')).toBe(-5 >>> 0);
    expect(value('((((1))))')).toBe(1);
  });

  it('character literals', () => {
    expect(value("'A'")).toBe(65);
    expect(value("'\\n'")).toBe(10);
    expect(value("'\\t'")).toBe(9);
    expect(value("'\\0'")).toBe(0);
    expect(value("'\\\\'")).toBe(92);
    expect(value("'\\''")).toBe(39);
    expect(value("'\"'")).toBe(34);
    expect(value("'\\x7f'")).toBe(0x7f);
    expect(value("';'")).toBe(59);
    expect(value("'#' ; a real comment")).toBe(35);
    expect(value("' '")).toBe(32);
    expect(value("'a' + 1")).toBe(98);
  });

  it('labels and .equ names', () => {
    const src = '.equ BASE, 0x1000\n.equ TOP, BASE + 0x20 * 2\nstart: nop\nend:';
    expect(value('TOP', src)).toBe(0x1040);
    expect(value('end - start', src)).toBe(8);
    expect(value('later', 'jmp later\nlater:')).toBe(8);
  });

  it('a memory displacement is everything after the register', () => {
    expect(one('mov eax, [esi-4+1]')).toEqual(f(OP_LD, 0, 6, 0, -3));
    expect(one('mov eax, [esi+2*3]')).toEqual(f(OP_LD, 0, 6, 0, 6));
    expect(one('mov eax, [esi+(1<<4)]')).toEqual(f(OP_LD, 0, 6, 0, 16));
    expect(one('mov eax, [0x100 | 4]')).toEqual(f(OP_LD, 0, Z, 0, 0x104));
    expect(one('mov eax, [-4]')).toEqual(f(OP_LD, 0, Z, 0, -4));
  });
});

describe('labels', () => {
  it('forward references resolve in the second pass', () => {
    const p = assemble('_start: jmp end\n  nop\nend: hlt', 't.s');
    expect(fieldsAt(p, 0)).toEqual(f(OP_JMP, 0, Z, 0, 16));
    expect(p.labels).toEqual(new Map([['_start', 0], ['end', 16]]));
    expect(p.entry).toBe(0);
  });

  it('are case-sensitive and may share a line with an instruction', () => {
    const p = assemble('loop: nop\nLoop:\n  jmp Loop\n  jmp loop', 't.s');
    expect(p.labels.get('loop')).toBe(0);
    expect(p.labels.get('Loop')).toBe(8);
    expect(fieldsAt(p, 8).imm).toBe(8);
    expect(fieldsAt(p, 16).imm).toBe(0);
    expect(p.entry).toBeUndefined();
  });

  it('several labels on one line, indented labels, dotted names', () => {
    const p = assemble('a: b: nop\n   .L1: nop', 't.s');
    expect(p.labels).toEqual(new Map([['a', 0], ['b', 0], ['.L1', 8]]));
  });

  it('.equ names are constants, not labels', () => {
    const p = assemble('.equ N, -1\n.equ M, N & 0xff\nx: nop', 't.s');
    expect([...p.labels.keys()]).toEqual(['x']);
    expect(p.constants).toEqual(new Map([['N', 0xffffffff], ['M', 0xff]]));
  });

  it('a label before .org names the address before the jump', () => {
    const p = assemble('nop\nhere: .org 0x20\nthere: nop', 't.s');
    expect(p.labels.get('here')).toBe(8);
    expect(p.labels.get('there')).toBe(0x20);
  });
});

describe('directives', () => {
  it('.org moves forward and backward; gaps are zero; end is the highest byte + 1', () => {
    const p = assemble('.org 0x100\nhlt\n.org 0x10\nnop', 't.s');
    expect(p.end).toBe(0x108);
    expect(p.image.length).toBe(0x108);
    expect(fieldsAt(p, 0x100).op).toBe(decodeOp(1));
    expect(p.image.subarray(0, 0x10).every((b) => b === 0)).toBe(true);
    expect(p.image.subarray(0x18, 0x100).every((b) => b === 0)).toBe(true);
  });

  it('.org may reference earlier labels and constants', () => {
    const p = assemble('.equ BASE, 0x40\nstart:\n.org BASE + 8\nx: nop', 't.s');
    expect(p.labels.get('x')).toBe(0x48);
  });

  it('.align pads with zeros to a power of two', () => {
    const p = assemble('.byte 1\n.align 8\na:\n.align 8\n.byte 2\n.align 4\nb:\n.align 1\nc:', 't.s');
    expect(p.labels.get('a')).toBe(8);
    expect(p.labels.get('b')).toBe(12);
    expect(p.labels.get('c')).toBe(12);
    expect([...p.image]).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
  });

  it('.word is 32-bit little-endian', () => {
    const p = assemble('.word 0x11223344, -1, lbl\nlbl:', 't.s');
    expect([...p.image]).toEqual([0x44, 0x33, 0x22, 0x11, 0xff, 0xff, 0xff, 0xff, 12, 0, 0, 0]);
  });

  it('.byte takes -128..255', () => {
    const p = assemble(".byte 0, -1, 255, -128, 'z', 1+1", 't.s');
    expect([...p.image]).toEqual([0, 0xff, 0xff, 0x80, 0x7a, 2]);
  });

  it('.space emits zeros', () => {
    const p = assemble('.byte 9\n.space 5\n.byte 7\n.space 0', 't.s');
    expect([...p.image]).toEqual([9, 0, 0, 0, 0, 0, 7]);
  });

  it('.ascii with escapes; ; and # inside a string are not comments', () => {
    const p = assemble('.ascii "a;b#c\\n\\t\\0\\\\\\"\\x41\'" ; comment', 't.s');
    expect([...p.image]).toEqual([...Buffer.from('a;b#c\n\t\0\\"A\'', 'latin1')]);
    expect(assemble('.ascii ""', 't.s').end).toBe(0);
    expect([...assemble('.ascii "é"', 't.s').image]).toEqual([0xc3, 0xa9]);
  });

  it('directive names are case-insensitive', () => {
    expect([...assemble('.BYTE 1\n.Space 1', 't.s').image]).toEqual([1, 0]);
  });
});

describe('lines', () => {
  it('one entry per line that emitted bytes or defined a label', () => {
    const src = '; header\n.equ X, 1\n_start:\n  mov eax, X\n.byte 1\n.align 4\n.org 0x20\n\nend: .word 5';
    const p = assemble(src, 't.s');
    expect(p.lines).toEqual([
      { addr: 0, size: 0, line: 3, file: 't.s', seq: 2, source: '_start:', kind: 'label' },
      { addr: 0, size: 8, line: 4, file: 't.s', seq: 3, source: '  mov eax, X', kind: 'insn' },
      { addr: 8, size: 1, line: 5, file: 't.s', seq: 4, source: '.byte 1', kind: 'bytes' },
      { addr: 9, size: 3, line: 6, file: 't.s', seq: 5, source: '.align 4', kind: 'bytes' },
      { addr: 0x20, size: 4, line: 9, file: 't.s', seq: 8, source: 'end: .word 5', kind: 'words' },
    ]);
    expect(p.end).toBe(0x24);
  });

  it('CRLF line endings', () => {
    const p = assemble('a: nop\r\nb: hlt\r\n', 't.s');
    expect(p.labels.get('b')).toBe(8);
    expect(p.lines[1].source).toBe('b: hlt');
  });

  it('an empty program', () => {
    const p = assemble('', 't.s');
    expect(p.end).toBe(0);
    expect(p.image.length).toBe(0);
    expect(p.lines).toEqual([]);
  });
});

describe('errors', () => {
  const cases: [string, string][] = [
    ['  mov eaz, 1', "prog.s:1:7: unknown register 'eaz'"],
    ['nop\n    pop foo', "prog.s:2:9: unknown register 'foo'"],
    ['movx eax, 1', "prog.s:1:1: unknown mnemonic 'movx'"],
    ['foo bar baz', "prog.s:1:1: unknown mnemonic 'foo'"],
    ['  jmp foo', "prog.s:1:7: undefined label 'foo'"],
    ['mov eax, [table+4]', "prog.s:1:11: undefined label 'table'"],
    ['nop\nnop\nloop: nop\nloop: nop', "prog.s:4:1: duplicate label 'loop' (first defined at line 3)"],
    ['.equ X, 1\nX: nop', "prog.s:2:1: duplicate symbol 'X' (first defined at line 1)"],
    ['mov eax 1', "prog.s:1:9: expected ',' after first operand"],
    ['mov eax, ebx+1', "prog.s:1:10: register 'ebx' cannot be used in an expression"],
    ['mov eax, 1+ebx', "prog.s:1:12: register 'ebx' cannot be used in an expression"],
    ['mov eax,', "prog.s:1:9: expected an operand after ','"],
    ['hlt eax', "prog.s:1:5: 'hlt' takes no operands"],
    ['pop', "prog.s:1:1: 'pop' takes one operand"],
    ['mov eax', "prog.s:1:1: 'mov' takes two operands"],
    ['pop 5', "prog.s:1:5: 'pop' operand must be a register, not an immediate"],
    ['jmp [eax]', "prog.s:1:5: 'jmp' operand must be a register or an immediate, not a memory operand"],
    ['mov 5, eax', "prog.s:1:5: 'mov' first operand must be a register or a memory operand, not an immediate"],
    ['movb eax, ebx', "prog.s:1:11: 'movb' second operand must be a memory operand, not a register"],
    ['movb [eax], 1', "prog.s:1:13: 'movb' second operand must be a register, not an immediate"],
    ['mov eax, 0x100000000', 'prog.s:1:10: immediate 0x100000000 does not fit in 32 bits'],
    ['mov eax, -0x80000001', 'prog.s:1:10: immediate -0x80000001 does not fit in 32 bits'],
    ['mov eax, 0xffffffff + 1', 'prog.s:1:10: immediate 0x100000000 does not fit in 32 bits'],
    ['mov eax, [esi+0x100000000]', 'prog.s:1:14: displacement 0x100000000 does not fit in 32 bits'],
    ['.word 0x100000000', 'prog.s:1:7: value 0x100000000 does not fit in 32 bits'],
    ['.ascii "abc', 'prog.s:1:8: unterminated string'],
    ["mov eax, 'a", 'prog.s:1:10: unterminated character literal'],
    ["mov eax, 'ab'", 'prog.s:1:10: character literal must hold exactly one character'],
    ["mov eax, ''", 'prog.s:1:10: empty character literal'],
    ["mov eax, '\\q'", "prog.s:1:11: unknown escape '\\q'"],
    ['.ascii "\\xZ1"', "prog.s:1:9: '\\x' needs two hex digits"],
    ['.align 3', 'prog.s:1:8: .align needs a power of two'],
    ['.align 0', 'prog.s:1:8: .align needs a power of two'],
    ['mov [eax], [ebx]', 'prog.s:1:12: cannot store a memory operand to a memory operand'],
    ['xchg [eax], [ebx]', "prog.s:1:13: 'xchg' cannot take two memory operands"],
    ['.org 4\nnop', 'prog.s:2:1: instruction at 0x4 is not 8-byte aligned (use .align 8)'],
    ['.byte 1\n.word 5', 'prog.s:2:1: .word at 0x1 is not 4-byte aligned (use .align 4)'],
    ['lock mov [eax], ebx', "prog.s:1:1: 'lock' cannot be used with 'mov'"],
    ['lock', "prog.s:1:5: 'lock' must be followed by add, or, and, xadd or cmpxchg"],
    ['lock add eax, 1', "prog.s:1:10: 'lock add' first operand must be a memory operand, not a register"],
    ['add [eax], 1', "prog.s:1:1: 'add' with a memory destination needs the 'lock' prefix"],
    ['mov eax, [ebx+ecx]', 'prog.s:1:15: a memory operand takes one register: use [reg], [reg+imm], [reg-imm] or [imm]'],
    ['mov eax, [ebx*4]', "prog.s:1:14: expected '+', '-' or ']' after the register, found '*'"],
    ['mov eax, [ebx+1 << 2]', "prog.s:1:17: expected ']', found '<<'"],
    ['mov eax, [ebx', "prog.s:1:14: expected '+', '-' or ']' after the register, found end of line"],
    ['mov eax, [ebx+1', "prog.s:1:16: expected ']', found end of line"],
    ['mov eax, (1 + 2', "prog.s:1:16: expected ')', found end of line"],
    ['int 256', 'prog.s:1:5: interrupt vector 256 is out of range 0..255'],
    ['in eax, 0x10000', 'prog.s:1:9: port 0x10000 is out of range 0..0xffff'],
    ['out -1, eax', 'prog.s:1:5: port -0x1 is out of range 0..0xffff'],
    ['.byte 256', 'prog.s:1:7: byte value 256 does not fit in 8 bits (-128..255)'],
    ['.byte -129', 'prog.s:1:7: byte value -129 does not fit in 8 bits (-128..255)'],
    ['.org later\nlater:', "prog.s:1:6: 'later' is defined after this line; .org needs a value known here"],
    ['.equ A, B\n.equ B, 1', "prog.s:1:9: 'B' is defined after this line; .equ needs a value known here"],
    ['.space nowhere', "prog.s:1:8: undefined label 'nowhere'"],
    ['mov eax, @', "prog.s:1:10: unexpected character '@'"],
    ['mov eax, 12abc', "prog.s:1:10: bad number '12abc'"],
    ['mov eax, 0x', "prog.s:1:10: bad number '0x'"],
    ['.foo 1', "prog.s:1:1: unknown directive '.foo'"],
    ['mov eax, 1 << 64', 'prog.s:1:15: shift count 64 is out of range 0..63'],
    ['.org 0\nnop\n.org 4\n.word 1', 'prog.s:4:1: bytes at 0x4 were already emitted by line 2 (check .org)'],
    ['eax: nop', "prog.s:1:1: 'eax' is a register name, not a label"],
    ['.equ esp, 1', "prog.s:1:6: 'esp' is a register name, not a constant"],
    ['.equ X 1', "prog.s:1:8: expected ',' after the .equ name, found '1'"],
    ['.ascii abc', 'prog.s:1:8: .ascii needs a "string"'],
    ['mov eax, "s"', 'prog.s:1:10: a string is only allowed after .ascii'],
    ['.org', "prog.s:1:1: '.org' takes one value"],
    ['.word', "prog.s:1:1: '.word' needs at least one value"],
    ['.byte eax', "prog.s:1:7: '.byte' values must be immediates, not a register"],
    ['.space -1', 'prog.s:1:8: .space size -1 is negative'],
    ['.org 0x20000000', 'prog.s:1:6: address 0x20000000 is beyond the 256 MiB image limit'],
    [', nop', "prog.s:1:1: expected a mnemonic or directive, found ','"],
    ['mov eax, 1 ; ok\n  mov ebx, - ; bad', 'prog.s:2:13: expected a value at end of line'],
  ];
  for (const [src, msg] of cases) {
    it(msg, () => expect(err(src)).toBe(msg));
  }

  it('only the first error is reported, on one line', () => {
    const m = err('nop\nmovx\nfoo');
    expect(m).toBe("prog.s:2:1: unknown mnemonic 'movx'");
    expect(m.includes('\n')).toBe(false);
  });
});

/** `vcpulab asm ARGS`, in process: exit code and what it printed. */
async function runAsm(args: string[]): Promise<{ rc: number; out: string; err: string }> {
  let out = '';
  let errText = '';
  const rc = await asmCommand(args, { out: (t) => { out += t; }, err: (t) => { errText += t; } });
  return { rc, out, err: errText };
}
/** `text` as prog.s in a fresh temp dir; returns its path. */
function tmpFile(text: string): string {
  const p = join(mkdtempSync(join(tmpdir(), 'vcpulab-asm-')), 'prog.s');
  writeFileSync(p, text);
  return p;
}

describe('vcpulab asm', () => {
  const run = runAsm;

  it('prints a listing and a symbol table', async () => {
    const file = tmpFile('; hello\n.equ N, 42\n_start:\n  mov eax, N\nmsg: .ascii "hi"\n');
    const r = await run([file]);
    expect(r.rc).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toBe([
      '                             ; hello',
      '                             .equ N, 42',
      '00000000                     _start:',
      '00000000  00008017 0000002a    mov eax, N',
      '00000008  68 69              msg: .ascii "hi"',
      '',
      'symbols:',
      '  00000000  _start',
      '  00000008  msg',
      '',
      'constants:',
      '  0000002a  N',
      '',
    ].join('\n'));
  });

  it('--disasm shows the disassembly instead of the source', async () => {
    const file = tmpFile('top: add esp, -8\n jne top\n.equ APIC, 0xfee00000\n mov [APIC + 0x310], -16777216\n');
    const r = await run(['--disasm', file]);
    expect(r.rc).toBe(0);
    expect(r.out.split('\n').slice(0, 6)).toEqual([
      '00000000  0000821e fffffff8  add esp, -8',
      '00000008  0000802f 00000000  jnz top',
      '                             .equ APIC, 0xfee00000',
      '00000010  00008047 fee00310  mov [0xfee00310], 0xff000000',
      '00000018  0000004b ff000000',
      '',
    ]);
  });

  it('bad input is one line on stderr and exit code 2', async () => {
    const usage = 'usage: vcpulab asm FILE [--disasm] [--scenario S] [--define NAME=VALUE ...]';
    expect(await run([])).toEqual({ rc: 2, out: '', err: `vcpulab asm: missing FILE argument (${usage})\n` });
    expect((await run(['--bogus', 'x.s'])).err).toBe(`vcpulab asm: unknown flag '--bogus' (${usage})\n`);
    const missing = join(tmpdir(), 'vcpulab-no-such-file.s');
    expect(await run([missing])).toEqual({ rc: 2, out: '', err: `vcpulab asm: cannot read '${missing}': no such file\n` });
    const bad = tmpFile('nop\n  mov eaz, 1\n');
    expect(await run([bad])).toEqual({ rc: 2, out: '', err: `${bad}:2:7: unknown register 'eaz'\n` });
  });
});

describe('vcpulab asm --scenario and --define', () => {
  const run = runAsm;
  const constant = (out: string, name: string): string | undefined => new RegExp(`^  ([0-9a-f]{8})  ${name}$`, 'm').exec(out)?.[1];

  it('a program using VCPUS fails alone and assembles with --define or --scenario', async () => {
    const file = tmpFile('_start:\n    mov eax, VCPUS\n    mov ebx, ROUNDS\n');
    expect(await run([file])).toEqual({ rc: 2, out: '', err: `${file}:2:14: undefined label 'VCPUS'\n` });
    const d = await run([file, '--define', 'VCPUS=3', '--define=ROUNDS=0x10']);
    expect(d.err).toBe('');
    expect(d.rc).toBe(0);
    expect(constant(d.out, 'VCPUS')).toBe('00000003');
    expect(constant(d.out, 'ROUNDS')).toBe('00000010');
    // The scenario's symbols: ipi-xapic has 6 vCPUs on 4 pCPUs, ipi_path xapic-passthrough (1), ROUNDS from its defines.
    const sc = await run(['--scenario', 'ipi-xapic', file]);
    expect(sc.rc).toBe(0);
    expect(constant(sc.out, 'VCPUS')).toBe('00000006');
    expect(constant(sc.out, 'PCPUS')).toBe('00000004');
    expect(constant(sc.out, 'IPI_PATH')).toBe('00000001');
    expect(constant(sc.out, 'ROUNDS')).toBe('00000032');
    // --define wins over the scenario; a negative value is its 32-bit pattern.
    const both = await run(['--scenario=ipi-xapic', '--define', 'VCPUS=-1', file]);
    expect(constant(both.out, 'VCPUS')).toBe('ffffffff');
  });

  it('the built-in programs assemble with their scenario', async () => {
    const dir = join(import.meta.dirname, '..', '..', 'src', 'scenario', 'builtin');
    expect((await run([join(dir, 'realm.s')])).err).toMatch(/^\S+realm\.s:\d+:\d+: undefined label '[A-Z_]+'\n$/);
    const r = await run([join(dir, 'realm.s'), '--scenario', 'secure-realm']);
    expect(r.err).toBe('');
    expect(r.rc).toBe(0);
  });

  it('bad --define and --scenario values are one line and exit code 2', async () => {
    const file = tmpFile('nop\n');
    const bad: [string[], string][] = [
      [['--define', 'X'], "vcpulab asm: --define 'X': expected NAME=VALUE\n"],
      [['--define', 'X=zz'], "vcpulab asm: --define 'X=zz': VALUE must be an integer (decimal or 0x hex) from -0x80000000 to 0xffffffff\n"],
      [['--define', 'X=0x100000000'], "vcpulab asm: --define 'X=0x100000000': VALUE must be an integer (decimal or 0x hex) from -0x80000000 to 0xffffffff\n"],
      [['--define', '9X=1'], "vcpulab asm: --define '9X=1': '9X' is not a symbol name (letters, digits, '_' and '.', not starting with a digit)\n"],
      [['--define', 'eax=1'], "vcpulab asm: --define 'eax=1': 'eax' is a register name\n"],
      [['--define'], 'vcpulab asm: --define needs NAME=VALUE (usage: vcpulab asm FILE [--disasm] [--scenario S] [--define NAME=VALUE ...])\n'],
      [['--scenario'], 'vcpulab asm: --scenario needs a built-in name or a .toml file (usage: vcpulab asm FILE [--disasm] [--scenario S] [--define NAME=VALUE ...])\n'],
    ];
    for (const [args, err] of bad) expect(await run([file, ...args]), args.join(' ')).toEqual({ rc: 2, out: '', err });
    const nosuch = await run([file, '--scenario', 'no-such-scenario']);
    expect(nosuch.rc).toBe(2);
    expect(nosuch.err).toMatch(/^--scenario: no built-in scenario 'no-such-scenario' \(built-ins: .*\)\n$/);
    // A define that collides with a label of the program is the assembler's one-line error.
    const lbl = tmpFile('X: nop\n');
    expect(await run([lbl, '--define', 'X=1'])).toEqual({ rc: 2, out: '', err: `${lbl}:1:1: 'X' is predefined (the guest ABI, the scenario or --define); pick another name\n` });
  });

  it('through the command line: vcpulab asm FILE --define ... (exit codes 0 and 2)', () => {
    const file = tmpFile('_start:\n    mov eax, VCPUS\n');
    const bin = join(import.meta.dirname, '..', '..', 'bin', 'vcpulab.js');
    const ok = spawnSync(process.execPath, [bin, 'asm', file, '--define', 'VCPUS=7'], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/^  00000007  VCPUS$/m);
    const bad = spawnSync(process.execPath, [bin, 'asm', file, '--define', 'VCPUS=seven'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^vcpulab asm: --define 'VCPUS=seven': VALUE must be an integer/);
  });
});

describe('.include', () => {
  function dirWith(files: Record<string, string>): string {
    const d = mkdtempSync(join(tmpdir(), 'vcpulab-inc-'));
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(dirname(join(d, name)), { recursive: true });
      writeFileSync(join(d, name), text);
    }
    return d;
  }
  const asmFile = (d: string, name: string): AsmProgram => assemble(readFileSync(join(d, name), 'utf8'), name, new Map(), undefined, { path: join(d, name) });
  const errOf = (f: () => unknown): string => {
    try { f(); } catch (e) { if (e instanceof UserError) return e.message; throw e; }
    return '';
  };

  it('assembles the included lines in place, relative to the including file, labels shared both ways', () => {
    const d = dirWith({
      'main.s': '_start:\n    call helper\n.include "lib/helpers.s"\nafter: hlt\n',
      'lib/helpers.s': '; helpers\n.include "consts.s"\nhelper:\n    mov eax, K\n    jmp after\n',
      'lib/consts.s': '.equ K, 42\n',
    });
    const p = asmFile(d, 'main.s');
    expect(p.labels.get('helper')).toBe(8);
    expect(p.labels.get('after')).toBe(24);
    expect(p.constants.get('K')).toBe(42);
    // The same bytes as the program written out in one file.
    const flat = assemble('_start:\n    call helper\nhelper:\n    mov eax, 42\n    jmp after\nafter: hlt\n', 'flat.s');
    expect([...p.image]).toEqual([...flat.image]);
    expect(p.source.map((l) => `${l.file}:${l.line}:${l.depth}`)).toEqual([
      'main.s:1:0', 'main.s:2:0', 'main.s:3:0', 'lib/helpers.s:1:1', 'lib/helpers.s:2:1', 'lib/consts.s:1:2',
      'lib/helpers.s:3:1', 'lib/helpers.s:4:1', 'lib/helpers.s:5:1', 'main.s:4:0',
    ]);
  });

  it('an error inside an included file names that file and line, and the .include that brought it in', () => {
    const d = dirWith({ 'main.s': 'nop\n.include "inc/bad.s"\n', 'inc/bad.s': 'nop\n    mov eaz, 1\n' });
    expect(errOf(() => asmFile(d, 'main.s'))).toBe("inc/bad.s:2:9: unknown register 'eaz' (included from main.s:2)");
    const dup = dirWith({ 'main.s': 'x: nop\n.include "b.s"\n', 'b.s': 'x: nop\n' });
    expect(errOf(() => asmFile(dup, 'main.s'))).toBe("b.s:1:1: duplicate label 'x' (first defined at main.s:1) (included from main.s:2)");
  });

  it('a missing file, a cycle and nesting too deep are one-line errors at the .include', () => {
    const d = dirWith({
      'main.s': 'nop\n.include "nope.s"\n',
      'a.s': '.include "b.s"\n', 'b.s': 'nop\n.include "a.s"\n',
      'self.s': '.include "self.s"\n',
      'bad.s': '.include nope.s\n',
    });
    expect(errOf(() => asmFile(d, 'main.s'))).toBe("main.s:2:10: cannot include 'nope.s': no such file");
    expect(errOf(() => asmFile(d, 'a.s'))).toBe('b.s:2:10: .include cycle: a.s includes b.s includes a.s (included from a.s:1)');
    expect(errOf(() => asmFile(d, 'self.s'))).toBe('self.s:1:10: .include cycle: self.s includes self.s');
    expect(errOf(() => asmFile(d, 'bad.s'))).toBe('bad.s:1:10: .include needs a "file name"');
    // Only regular files: a directory or a device is one line, never a read that does not end.
    const odd = dirWith({ 'dir/x.s': 'nop\n', 'main.s': '.include "dir"\n.include "/dev/zero"\n' });
    expect(errOf(() => asmFile(odd, 'main.s'))).toBe("main.s:1:10: cannot include 'dir': is a directory");
    const dev = dirWith({ 'main.s': '.include "/dev/zero"\n' });
    expect(errOf(() => asmFile(dev, 'main.s'))).toBe("main.s:1:10: cannot include '/dev/zero': not a regular file");
    const deep: Record<string, string> = {};
    for (let i = 0; i <= MAX_INCLUDE_DEPTH + 1; i++) deep[`d${i}.s`] = `.include "d${i + 1}.s"\n`;
    deep[`d${MAX_INCLUDE_DEPTH + 2}.s`] = 'nop\n';
    const dd = dirWith(deep);
    expect(errOf(() => asmFile(dd, 'd0.s'))).toBe(`d${MAX_INCLUDE_DEPTH}.s:1:10: .include nested more than ${MAX_INCLUDE_DEPTH} deep (included from d${MAX_INCLUDE_DEPTH - 1}.s:1)`);
    // One level less assembles.
    expect(errOf(() => asmFile(dd, 'd2.s'))).toBe('');
    // Including twice at every level (no cycle) is bounded by the lines assembled in all.
    const fan: Record<string, string> = {};
    for (let i = 0; i < MAX_INCLUDE_DEPTH; i++) fan[`f${i}.s`] = `.include "f${i + 1}.s"\n`.repeat(4);
    fan[`f${MAX_INCLUDE_DEPTH}.s`] = 'nop\n';
    expect(errOf(() => asmFile(dirWith(fan), 'f0.s'))).toMatch(new RegExp(`^f\\d+\\.s:\\d+:1: more than ${MAX_ASSEMBLED_LINES} lines to assemble in all, counting each \\.include \\(included from f\\d+\\.s:\\d+\\)$`));
  });

  it('an included file is part of the scenario content: editing it changes the hash schedules are checked against', async () => {
    const d = dirWith({
      'sc.toml': '[machine]\npcpus = 1\n[[domain]]\nname = "g"\nmemory_kb = 64\nprogram = "prog.s"\n',
      'prog.s': '_start:\n.include "lib/end.s"\n', 'lib/end.s': '    mov ebx, 0\n    magic 0\n',
    });
    const { labPrepare } = await import('../../src/lab.js');
    const a = await labPrepare(join(d, 'sc.toml'));
    expect(a.spec.programIncludes).toEqual([[join(d, 'lib', 'end.s')]]);
    expect((await labPrepare(join(d, 'sc.toml'))).hash).toBe(a.hash);
    writeFileSync(join(d, 'lib', 'end.s'), '    mov ebx, 1\n    magic 0\n');
    expect((await labPrepare(join(d, 'sc.toml'))).hash).not.toBe(a.hash);
  });

  it('vcpulab asm lists an included file\'s lines after its .include', async () => {
    const d = dirWith({ 'main.s': '_start:\n.include "inc.s"\n    hlt\n', 'inc.s': '    nop ; included\n' });
    let out = '';
    const rc = await asmCommand([join(d, 'main.s')], { out: (t) => { out += t; }, err: () => undefined });
    expect(rc).toBe(0);
    expect(out.split('\n').slice(0, 4)).toEqual([
      '00000000                     _start:',
      '                             .include "inc.s"',
      '00000000  00000000 00000000      nop ; included',
      '00000008  00000001 00000000      hlt',
    ]);
  });
});

describe('limits: a hostile line or directive is one error, never a crash or a huge allocation', () => {
  const err = (src: string, max?: number): string => {
    try { assemble(src, 't.s', new Map(), max); } catch (e) { if (e instanceof UserError) return e.message; throw e; }
    return '';
  };
  it('expressions nested more than 64 deep', () => {
    expect(err(`_start:\n    mov eax, ${'('.repeat(4000)}1${')'.repeat(4000)}\n`)).toMatch(/^t\.s:2:\d+: expression nested more than 64 deep$/);
    expect(err(`_start:\n    mov eax, ${'-'.repeat(100)}1\n`)).toMatch(/nested more than 64 deep/);
    expect(err(`_start:\n    mov eax, ${'('.repeat(64)}1${')'.repeat(64)}\n`)).toBe(''); // the limit itself assembles
  });
  it('more than 1024 operators on a line', () => {
    expect(err(`_start:\n    mov eax, ${Array(7000).fill('1').join('+')}\n`)).toMatch(/^t\.s:2:\d+: more than 1024 operators/);
    expect(err(`_start:\n    mov eax, ${Array(1000).fill('1').join('+')}\n`)).toBe('');
  });
  it('an image beyond the bound (the domain\'s RAM) is refused before it is allocated', () => {
    expect(err('_start:\n    nop\n.space 0x0FFFFFF8\n', 64 * 1024)).toMatch(/^t\.s:3:1: the image would end at 0x10000000, beyond the 64 KiB it may take/);
    expect(err('_start:\n    nop\n.org 0x20000\n    nop\n', 64 * 1024)).toMatch(/beyond the 64 KiB it may take/);
    expect(err('_start:\n    nop\n.space 0x8000\n', 64 * 1024)).toBe('');
  });
  it('a chain of stores each widened by the one before: refused past MAX_RELAX_PASSES layout passes, settled below', () => {
    // n stores `mov [ebx + END - 8i], 0x12345` (a value past 16 bits, so the displacement decides) laid out so that END - 8 just passes 0x7fff: widening store i (8 bytes
    // more) moves END and pushes store i + 1 past 16 bits, one pass each.
    const chain = (n: number): string => `_start:\n.org 0x${(0x8008 - 8 * n).toString(16)}\n` +
      Array.from({ length: n }, (_, i) => `    mov [ebx + END - ${8 * (i + 1)}], 0x12345\n`).join('') + 'END:\n';
    expect(err(chain(MAX_RELAX_PASSES + 20))).toMatch(/^t\.s:\d+:\d+: wide-store layout did not settle in 64 passes/);
    expect(err(chain(MAX_RELAX_PASSES - 8))).toBe('');
  });
});
