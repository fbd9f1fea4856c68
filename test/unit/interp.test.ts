// Interpreter semantics (../../shared/ISA.md, the header of src/isa/interp.ts), checked end to end:
// each guest program computes values and reports them with `magic 1`; the test compares the exact
// register results, flag images and addresses. Serial engine, one vCPU unless a test needs more.
import { describe, it, expect } from 'vitest';
import { assemble } from '../../src/isa/assembler.js';
import { exitCodeFor } from '../../src/cli/sim.js';
import { EXIT_FAILURE, EXIT_OK } from '../../src/errors.js';
import { runGuest, s32, value, values } from '../helpers/run.js';

// x86 EFLAGS positions (pushf images look like x86's: bit 1 always set, IF is bit 9).
const CF = 1 << 0, FIXED = 1 << 1, ZF = 1 << 6, SF = 1 << 7, IF = 1 << 9, OF = 1 << 11;
const RAM_TOP = 1024 * 1024;
// Flags before each arithmetic case: every arithmetic flag set (popf), so a case that leaves one alone shows it.
const PRESET = CF | ZF | SF | OF;

/** Report `what` (a register, label or immediate) under `key`. Clobbers ebx and ecx only. */
function rep(key: number, what: string | number): string {
  return `    mov ecx, ${what}\n    mov ebx, ${key}\n    magic 1\n`;
}
/** Report the flag image under `key` (pushf; pop). Clobbers ebx and ecx only; leaves flags alone. */
function fl(key: number): string {
  return `    pushf\n    pop ecx\n    mov ebx, ${key}\n    magic 1\n`;
}
const END = '    mov ebx, 0\n    magic 0\n';

function labels(src: string): Map<string, number> {
  return assemble(src, 'prog.s').labels;
}
function label(src: string, name: string): number {
  const a = labels(src).get(name);
  if (a === undefined) throw new Error(`no label ${name}`);
  return a;
}
function hex8(v: number): string {
  return (v >>> 0).toString(16).padStart(8, '0');
}

/** Expect a clean run: completed, shut down by magic 0 with exit code 0, no findings. */
function expectClean(r: Awaited<ReturnType<typeof runGuest>>): void {
  expect(r.findings).toEqual([]);
  expect(r.outcome).toBe('completed');
  expect(r.domains[0]).toMatchObject({ state: 'shutdown', exit_code: 0, crash: null, ended: 'shutdown' });
}

describe('moves', () => {
  it('mov reg/imm/mem in every addressing form, movb zero-extends and stores one byte', async () => {
    const src = `
_start:
    mov eax, 0x12345678
    mov [w0], eax                 ; store [imm]
    mov edx, [w0]                 ; load [imm]
${rep(1, 'edx')}
    mov esi, w0
    mov [esi+4], 0xCAFEBABE       ; store imm, short displacement form
    mov edx, [esi+4]              ; load [reg+imm]
${rep(2, 'edx')}
    mov edi, w2 + 8
    mov edx, [edi-8]              ; load [reg-imm]
${rep(3, 'edx')}
    mov [0x10000], -7             ; store imm, short immediate form (32-bit address)
    mov edx, [0x10000]
${rep(4, 'edx')}
    mov edx, 0x10000
    mov [edx+0x10], 0x7fff        ; short immediate with a base register
    mov eax, [0x10010]
${rep(5, 'eax')}
    movb eax, [bytes]             ; 0xF0: zero-extended, not sign-extended
${rep(6, 'eax')}
    mov eax, -1
    movb eax, [bytes+1]           ; replaces the whole register
${rep(7, 'eax')}
    mov eax, 0x11223344
    mov [w3], eax
    mov eax, 0xDEADBEAB
    movb [w3+1], eax              ; only the low byte, at byte 1 (little endian)
    mov edx, [w3]
${rep(8, 'edx')}
    movb eax, [w3+3]              ; byte access needs no alignment
${rep(9, 'eax')}
    mov eax, 'A'
    mov r15, eax
    mov r8, r15
${rep(10, 'r8')}
    mov eax, 5
    mov ebp, eax
    mov eax, 0
${rep(11, 'ebp')}
${END}
.align 4
w0: .word 0, 0
w2: .word 0x55AA55AA
w3: .word 0
bytes: .byte 0xF0, 0x7F, 0x80, 0x01
`;
    const r = await runGuest(src);
    expectClean(r);
    expect(values(r, 1)).toEqual([0x12345678]);
    expect(value(r, 2)).toBe(s32(0xcafebabe));
    expect(value(r, 3)).toBe(0x55aa55aa);
    expect(value(r, 4)).toBe(-7);
    expect(value(r, 5)).toBe(0x7fff);
    expect(value(r, 6)).toBe(0xf0);
    expect(value(r, 7)).toBe(0x7f);
    expect(value(r, 8)).toBe(0x1122ab44);
    expect(value(r, 9)).toBe(0x11);
    expect(value(r, 10)).toBe(65);
    expect(value(r, 11)).toBe(5);
  });
});

/** One arithmetic case: `op eax, b` with eax = a, expecting result and the four arithmetic flags. */
interface ArithCase { op: string; a: number; b: number; res: number; flags: number; note: string }

const ARITH: ArithCase[] = [
  { op: 'add', a: 0x7fffffff, b: 1, res: 0x80000000, flags: OF | SF, note: 'signed overflow' },
  { op: 'add', a: 0xffffffff, b: 1, res: 0, flags: CF | ZF, note: 'carry out, zero' },
  { op: 'add', a: 0x80000000, b: 0x80000000, res: 0, flags: CF | OF | ZF, note: 'carry and overflow' },
  { op: 'add', a: 2, b: 3, res: 5, flags: 0, note: 'plain' },
  { op: 'add', a: 0xfffffffe, b: 1, res: 0xffffffff, flags: SF, note: 'negative, no carry' },
  { op: 'sub', a: 0, b: 1, res: 0xffffffff, flags: CF | SF, note: 'borrow' },
  { op: 'sub', a: 0x80000000, b: 1, res: 0x7fffffff, flags: OF, note: 'signed overflow' },
  { op: 'sub', a: 0x7fffffff, b: 0xffffffff, res: 0x80000000, flags: CF | OF | SF, note: 'borrow and overflow' },
  { op: 'sub', a: 9, b: 9, res: 0, flags: ZF, note: 'zero' },
  { op: 'and', a: 0xf0f0f0f0, b: 0x0f0f0f0f, res: 0, flags: ZF, note: 'and to zero' },
  { op: 'and', a: 0xf0000001, b: 0x80000001, res: 0x80000001, flags: SF, note: 'and negative' },
  { op: 'or', a: 0x00ff0000, b: 0x80000000, res: 0x80ff0000, flags: SF, note: 'or' },
  { op: 'xor', a: 0x12345678, b: 0x12345678, res: 0, flags: ZF, note: 'xor self' },
  { op: 'shl', a: 0x80000001, b: 1, res: 2, flags: CF, note: 'CF = bit shifted out' },
  { op: 'shl', a: 0x10000000, b: 4, res: 0, flags: CF | ZF, note: 'last bit out is bit 28' },
  { op: 'shl', a: 0x40000000, b: 1, res: 0x80000000, flags: SF, note: 'into the sign bit' },
  { op: 'shl', a: 1, b: 33, res: 2, flags: 0, note: 'count mod 32' },
  { op: 'shr', a: 3, b: 1, res: 1, flags: CF, note: 'CF = low bit' },
  { op: 'shr', a: 0x80000000, b: 31, res: 1, flags: 0, note: 'logical, bit 30 out' },
  { op: 'shr', a: 0x80000000, b: 32, res: 0x80000000, flags: PRESET, note: 'count 0 (mod 32) leaves flags' },
  { op: 'sar', a: 0x80000000, b: 4, res: 0xf8000000, flags: SF, note: 'arithmetic' },
  { op: 'sar', a: 0xffffffff, b: 1, res: 0xffffffff, flags: CF | SF, note: '-1 stays -1, CF = 1' },
  { op: 'sar', a: 0x40000000, b: 31, res: 0, flags: CF | ZF, note: 'bit 30 out' },
  { op: 'imul', a: 0x10000, b: 0x10000, res: 0, flags: CF | OF | ZF, note: 'overflow to 0' },
  { op: 'imul', a: 0xfffffffd, b: 5, res: 0xfffffff1, flags: SF, note: '-3 * 5' },
  { op: 'imul', a: 0x40000000, b: 2, res: 0x80000000, flags: CF | OF | SF, note: 'signed overflow' },
  { op: 'imul', a: 0xffffffff, b: 0xffffffff, res: 1, flags: 0, note: '-1 * -1' },
];


describe('arithmetic and flags', () => {
  for (const form of ['imm', 'reg'] as const) {
    it(`add sub and or xor shl shr sar imul with ${form === 'imm' ? 'an immediate' : 'a register'} source`, async () => {
      let body = '';
      ARITH.forEach((c, i) => {
        body += `    mov eax, 0x${hex8(c.a)}\n    mov esi, 0x${hex8(c.b)}\n    push ${PRESET}\n    popf\n`;
        body += form === 'imm' ? `    ${c.op} eax, 0x${hex8(c.b)}\n` : `    ${c.op} eax, esi\n`;
        body += fl(2 * i + 1000) + rep(2 * i, 'eax');
      });
      const r = await runGuest(`_start:\n${body}${END}`);
      expectClean(r);
      ARITH.forEach((c, i) => {
        const what = `${c.op} 0x${hex8(c.a)}, 0x${hex8(c.b)} (${c.note})`;
        expect(value(r, 2 * i), what).toBe(s32(c.res));
        // Shifts by 0 (mod 32) keep the preset flags; everything else replaces all four. OF after a shift
        // is not part of the contract (ISA.md: CF OF for add/sub; x86 defines it only for 1-bit shifts).
        const mask = ['shl', 'shr', 'sar'].includes(c.op) ? ~OF : ~0;
        expect(value(r, 2 * i + 1000)! & mask, what + ' flags').toBe((FIXED | c.flags) & mask);
      });
    });
  }

  it('inc/dec keep CF, neg sets CF for non-zero, not clears CF/OF (interp.ts header)', async () => {
    const cases: { op: string; a: number; pre: number; res: number; flags: number }[] = [
      { op: 'inc', a: 0x7fffffff, pre: CF, res: 0x80000000, flags: CF | OF | SF },
      { op: 'inc', a: 0xffffffff, pre: 0, res: 0, flags: ZF },
      { op: 'inc', a: 0xffffffff, pre: CF, res: 0, flags: CF | ZF },
      { op: 'inc', a: 41, pre: OF | ZF | SF, res: 42, flags: 0 },
      { op: 'dec', a: 0x80000000, pre: 0, res: 0x7fffffff, flags: OF },
      { op: 'dec', a: 1, pre: CF, res: 0, flags: CF | ZF },
      { op: 'dec', a: 0, pre: 0, res: 0xffffffff, flags: SF },
      { op: 'neg', a: 0, pre: CF | SF, res: 0, flags: ZF },
      { op: 'neg', a: 5, pre: 0, res: 0xfffffffb, flags: CF | SF },
      { op: 'neg', a: 0xfffffffb, pre: 0, res: 5, flags: CF },
      { op: 'neg', a: 0x80000000, pre: 0, res: 0x80000000, flags: CF | OF | SF },
      { op: 'not', a: 0, pre: CF | OF, res: 0xffffffff, flags: SF },
      { op: 'not', a: 0xffffffff, pre: CF | OF | SF, res: 0, flags: ZF },
    ];
    let body = '';
    cases.forEach((c, i) => {
      body += `    mov eax, 0x${hex8(c.a)}\n    push ${c.pre}\n    popf\n    ${c.op} eax\n`;
      body += fl(i + 100) + rep(i, 'eax');
    });
    const r = await runGuest(`_start:\n${body}${END}`);
    expectClean(r);
    cases.forEach((c, i) => {
      const what = `${c.op} 0x${hex8(c.a)}`;
      expect(value(r, i), what).toBe(s32(c.res));
      expect(value(r, i + 100), what + ' flags').toBe(FIXED | c.flags);
    });
  });

  it('cmp and test set flags like sub and and but do not write the register', async () => {
    const src = `
_start:
    mov eax, 5
    cmp eax, 7
${fl(1)}
${rep(2, 'eax')}
    mov eax, 0x80000000
    cmp eax, 1
${fl(3)}
    mov eax, 0xF0
    test eax, 0x0F
${fl(4)}
${rep(5, 'eax')}
    mov eax, 0x80000001
    mov edx, 0x80000000
    test eax, edx
${fl(6)}
${END}`;
    const r = await runGuest(src);
    expectClean(r);
    expect(value(r, 1)).toBe(FIXED | CF | SF);
    expect(value(r, 2)).toBe(5);
    expect(value(r, 3)).toBe(FIXED | OF);
    expect(value(r, 4)).toBe(FIXED | ZF);
    expect(value(r, 5)).toBe(0xf0);
    expect(value(r, 6)).toBe(FIXED | SF);
  });

  it('jo-like checks: after 0x7fffffff + 1 jl is not taken and jge is; after 0xffffffff + 1 jb and jz are taken', async () => {
    const src = `
_start:
    mov eax, 0x7fffffff
    add eax, 1
    jl bad1
    jge ok1
bad1:
${rep(1, 0)}
    jmp next1
ok1:
${rep(1, 1)}
next1:
    mov eax, 0xffffffff
    add eax, 1
    jae bad2
    jnz bad2
    jb ok2
bad2:
${rep(2, 0)}
    jmp next2
ok2:
${rep(2, 1)}
next2:
${END}`;
    const r = await runGuest(src);
    expectClean(r);
    expect(value(r, 1)).toBe(1);
    expect(value(r, 2)).toBe(1);
  });
});

// ---- conditional jumps ----
const JCC = ['jz', 'jnz', 'je', 'jne', 'jl', 'jle', 'jg', 'jge', 'jb', 'jbe', 'ja', 'jae'] as const;

/** Reference: is `jcc` taken after `cmp a, b`? Signed and unsigned comparisons, nothing about flags. */
function cmpTaken(jcc: (typeof JCC)[number], a: number, b: number): boolean {
  const sa = a | 0, sb = b | 0, ua = a >>> 0, ub = b >>> 0;
  switch (jcc) {
    case 'jz': case 'je': return ua === ub;
    case 'jnz': case 'jne': return ua !== ub;
    case 'jl': return sa < sb;
    case 'jle': return sa <= sb;
    case 'jg': return sa > sb;
    case 'jge': return sa >= sb;
    case 'jb': return ua < ub;
    case 'jbe': return ua <= ub;
    case 'ja': return ua > ub;
    case 'jae': return ua >= ub;
  }
}

/** Reference: is `jcc` taken after `test a, b`? ZF = (a&b)==0, SF = sign, CF = OF = 0. */
function testTaken(jcc: (typeof JCC)[number], a: number, b: number): boolean {
  const r = (a & b) | 0;
  const zf = r === 0, sf = r < 0;
  switch (jcc) {
    case 'jz': case 'je': return zf;
    case 'jnz': case 'jne': return !zf;
    case 'jl': return sf;
    case 'jle': return zf || sf;
    case 'jg': return !zf && !sf;
    case 'jge': return !sf;
    case 'jb': return false;
    case 'jbe': return zf;
    case 'ja': return !zf;
    case 'jae': return true;
  }
}

const PAIRS: [number, number][] = [
  [1, 2], [2, 1], [5, 5], [0xffffffff, 1], [1, 0xffffffff], [0x80000000, 0x7fffffff], [0x7fffffff, 0x80000000],
  [0, 0xffffffff], [0xfffffffb, 0xfffffffd], [0, 0], [0x80000000, 0x80000000], [0xfffffffd, 0xfffffffb],
];

function jccProgram(insn: 'cmp' | 'test', pairs: [number, number][]): string {
  let body = '';
  pairs.forEach(([a, b], p) => {
    JCC.forEach((j, k) => {
      const key = p * 100 + k;
      // Alternate the immediate and register forms of the second operand.
      const second = (p + k) % 2 === 0 ? `0x${hex8(b)}` : 'edx';
      body += `    mov eax, 0x${hex8(a)}\n    mov edx, 0x${hex8(b)}\n    ${insn} eax, ${second}\n    ${j} t_${key}\n`;
      body += `    mov ecx, 0\n    jmp d_${key}\nt_${key}:\n    mov ecx, 1\nd_${key}:\n    mov ebx, ${key}\n    magic 1\n`;
    });
  });
  return `_start:\n${body}${END}`;
}

describe('conditional jumps', () => {
  it('every Jcc after cmp, signed and unsigned cases', async () => {
    const r = await runGuest(jccProgram('cmp', PAIRS));
    expectClean(r);
    PAIRS.forEach(([a, b], p) => JCC.forEach((j, k) => {
      expect(value(r, p * 100 + k), `cmp 0x${hex8(a)}, 0x${hex8(b)}; ${j}`).toBe(cmpTaken(j, a, b) ? 1 : 0);
    }));
  });

  it('every Jcc after test', async () => {
    const pairs: [number, number][] = [[0xf0, 0x0f], [0x80000000, 0x80000000], [3, 1], [0xffffffff, 0x7fffffff], [0, 0]];
    const r = await runGuest(jccProgram('test', pairs));
    expectClean(r);
    pairs.forEach(([a, b], p) => JCC.forEach((j, k) => {
      expect(value(r, p * 100 + k), `test 0x${hex8(a)}, 0x${hex8(b)}; ${j}`).toBe(testTaken(j, a, b) ? 1 : 0);
    }));
  });

  it('jmp and jcc to a register target', async () => {
    const src = `
_start:
    mov esi, there
    jmp esi
${rep(1, 0)}
there:
${rep(1, 1)}
    mov edi, yes
    xor eax, eax
    jz edi
${rep(2, 0)}
yes:
${rep(2, 1)}
${END}`;
    const r = await runGuest(src);
    expectClean(r);
    expect(values(r, 1)).toEqual([1]);
    expect(values(r, 2)).toEqual([1]);
  });
});

describe('stack', () => {
  it('push/pop/call/ret, the initial esp, call through a register, nested calls', async () => {
    const src = `
_start:
    mov eax, esp
${rep(1, 'eax')}
    push 0x11111111
    push -2
    mov eax, esp
${rep(2, 'eax')}
    mov eax, [esp]
${rep(3, 'eax')}
    mov eax, [esp+4]
${rep(4, 'eax')}
    pop esi
    pop edi
${rep(5, 'esi')}
${rep(6, 'edi')}
    mov eax, esp
${rep(7, 'eax')}
    mov esi, 5
    call double
ret1:
${rep(8, 'eax')}
    mov edx, triple
    call edx
${rep(9, 'eax')}
    call outer
${rep(10, 'eax')}
    mov eax, esp
${rep(11, 'eax')}
    push via_ret
    ret
${rep(12, 0)}
via_ret:
${rep(12, 1)}
    mov eax, 77
    push eax
    pop r9
${rep(13, 'r9')}
${END}
double:
    mov eax, [esp]
${rep(20, 'eax')}
    mov eax, esi
    add eax, esi
    ret
triple:
    mov eax, esi
    imul eax, 3
    ret
outer:
    call double
    add eax, 1
    ret
`;
    const r = await runGuest(src);
    expectClean(r);
    expect(value(r, 1)).toBe(RAM_TOP);
    expect(value(r, 2)).toBe(RAM_TOP - 8);
    expect(value(r, 3)).toBe(-2);
    expect(value(r, 4)).toBe(0x11111111);
    expect(value(r, 5)).toBe(-2);
    expect(value(r, 6)).toBe(0x11111111);
    expect(value(r, 7)).toBe(RAM_TOP);
    expect(value(r, 8)).toBe(10);
    expect(value(r, 9)).toBe(15);
    expect(value(r, 10)).toBe(11);
    expect(value(r, 11)).toBe(RAM_TOP);
    expect(values(r, 12)).toEqual([1]);
    expect(value(r, 13)).toBe(77);
    // The first call to double pushed the address of the instruction after it.
    expect(values(r, 20)[0]).toBe(label(src, 'ret1'));
  });

  it('pushf/popf round trip: bit 1 always set, IF is bit 9, only ZF SF CF OF IF are kept', async () => {
    const src = `
_start:
${fl(0)}
    cli
    xor eax, eax
${fl(1)}
    sti
    mov eax, 1
    add eax, 0
${fl(2)}
    push 0x8C3
    popf
${fl(3)}
    push 0xFFFFFFFF
    popf
${fl(4)}
    push 0
    popf
${fl(5)}
    push 0x203
    popf
${fl(6)}
    push 1
    popf
    jb t7
${rep(7, 0)}
    jmp d7
t7:
${rep(7, 1)}
d7:
    push 0x80
    popf
    jl t8
${rep(8, 0)}
    jmp d8
t8:
${rep(8, 1)}
d8:
    push 0x880
    popf
    jge t9
${rep(9, 0)}
    jmp d9
t9:
${rep(9, 1)}
d9:
    push 0x40
    popf
    jbe t10
${rep(10, 0)}
    jmp d10
t10:
${rep(10, 1)}
d10:
${END}`;
    const r = await runGuest(src);
    expectClean(r);
    expect(value(r, 0)).toBe(FIXED); // a vCPU starts with IF=0 and no arithmetic flag set
    expect(value(r, 1)).toBe(FIXED | ZF);
    expect(value(r, 2)).toBe(FIXED | IF);
    expect(value(r, 3)).toBe(0x8c3);
    expect(value(r, 4)).toBe(FIXED | CF | ZF | SF | IF | OF);
    expect(value(r, 5)).toBe(FIXED);
    expect(value(r, 6)).toBe(FIXED | IF | CF);
    expect(value(r, 7)).toBe(1);
    expect(value(r, 8)).toBe(1);
    expect(value(r, 9)).toBe(1);
    expect(value(r, 10)).toBe(1);
  });
});

describe('atomics', () => {
  it('xchg both operand orders, lock xadd, cmpxchg success and failure', async () => {
    const src = `
_start:
    mov [m0], 10
    mov eax, 3
    xchg [m0], eax
${rep(1, 'eax')}
    mov edx, [m0]
${rep(2, 'edx')}
    mov eax, 4
    xchg eax, [m0]
${rep(3, 'eax')}
    mov edx, [m0]
${rep(4, 'edx')}
    mov [m1], 10
    mov eax, 5
    lock xadd [m1], eax
${fl(7)}
${rep(5, 'eax')}
    mov edx, [m1]
${rep(6, 'edx')}
    mov eax, -15
    xadd [m1], eax
${fl(8)}
${rep(9, 'eax')}
    mov edx, [m1]
${rep(10, 'edx')}
    mov [m2], 7
    mov eax, 7
    mov ecx, 9
    lock cmpxchg [m2], ecx
${fl(11)}
${rep(12, 'eax')}
    mov edx, [m2]
${rep(13, 'edx')}
    mov eax, 3
    mov ecx, 100
    lock cmpxchg [m2], ecx
${fl(14)}
${rep(15, 'eax')}
    mov edx, [m2]
${rep(16, 'edx')}
    mov eax, 9
    mov ecx, 1
    cmpxchg [m2], ecx
    jz t17
${rep(17, 0)}
    jmp d17
t17:
${rep(17, 1)}
d17:
${END}
.align 4
m0: .word 0
m1: .word 0
m2: .word 0
`;
    const r = await runGuest(src);
    expectClean(r);
    expect(value(r, 1)).toBe(10);
    expect(value(r, 2)).toBe(3);
    expect(value(r, 3)).toBe(3);
    expect(value(r, 4)).toBe(4);
    expect(value(r, 5)).toBe(10); // old value
    expect(value(r, 6)).toBe(15);
    expect(value(r, 7)).toBe(FIXED); // 10 + 5 = 15
    expect(value(r, 8)).toBe(FIXED | ZF | CF); // 15 + -15 = 0 with carry out
    expect(value(r, 9)).toBe(15);
    expect(value(r, 10)).toBe(0);
    // cmpxchg success: ZF, memory written, eax unchanged
    expect(value(r, 11)).toBe(FIXED | ZF);
    expect(value(r, 12)).toBe(7);
    expect(value(r, 13)).toBe(9);
    // failure: ZF clear, flags of cmp eax(3), old(9), eax = old, memory unchanged
    expect(value(r, 14)).toBe(FIXED | CF | SF);
    expect(value(r, 15)).toBe(9);
    expect(value(r, 16)).toBe(9);
    expect(value(r, 17)).toBe(1);
  });

  it('lock add/or/and with a register, a 32-bit immediate (short displacement) and a 32-bit address (short immediate)', async () => {
    const src = `
_start:
    mov [m3], 1
    mov eax, 41
    lock add [m3], eax            ; register source
    mov edx, [m3]
${rep(1, 'edx')}
    lock add [m3], 100000         ; short displacement, 32-bit value
    mov edx, [m3]
${rep(2, 'edx')}
    mov [0x10000], 0
    lock add [0x10000], 5         ; 32-bit address, short value
    mov edx, [0x10000]
${rep(3, 'edx')}
    lock add [0x10000], -6        ; short value is sign-extended
${fl(4)}
    mov edx, [0x10000]
${rep(5, 'edx')}
    mov esi, 0x10000
    lock add [esi], 1             ; -1 + 1 = 0 with carry out
${fl(6)}
    mov edx, [0x10000]
${rep(7, 'edx')}
    lock or [m3], 0x0F000000      ; short displacement
    mov edx, [m3]
${rep(8, 'edx')}
    lock or [0x10000], 0x30       ; short immediate
    mov eax, 0x100
    lock or [esi], eax            ; register
    mov edx, [0x10000]
${rep(9, 'edx')}
    lock and [m3], 0xFF
    mov edx, [m3]
${rep(10, 'edx')}
    lock and [0x10000], 0x10
    mov edx, [0x10000]
${rep(11, 'edx')}
    mov eax, 0x20
    lock and [esi], eax
${fl(12)}
    mov edx, [0x10000]
${rep(13, 'edx')}
    mov esi, 0x10000
    mov [0x20000], 40
    lock add [esi+0x10000], 2     ; short immediate with a base register
    mov edx, [0x20000]
${rep(14, 'edx')}
    lock or [m3], 0x80000000
${fl(15)}
${END}
.align 4
m3: .word 0
`;
    const r = await runGuest(src);
    expectClean(r);
    expect(value(r, 1)).toBe(42);
    expect(value(r, 2)).toBe(100042);
    expect(value(r, 3)).toBe(5);
    expect(value(r, 4)).toBe(FIXED | SF);
    expect(value(r, 5)).toBe(-1);
    expect(value(r, 6)).toBe(FIXED | ZF | CF);
    expect(value(r, 7)).toBe(0);
    expect(value(r, 8)).toBe(0x0f000000 | 100042);
    expect(value(r, 9)).toBe(0x130);
    expect(value(r, 10)).toBe(100042 & 0xff);
    expect(value(r, 11)).toBe(0x10);
    expect(value(r, 12)).toBe(FIXED | ZF);
    expect(value(r, 13)).toBe(0);
    expect(value(r, 14)).toBe(42);
    expect(value(r, 15)).toBe(FIXED | SF);
  });
});

describe('wide forms: [m], imm with a 32-bit displacement and a 32-bit value', () => {
  it('mov and lock add/or/and store, set flags and advance 16 bytes; a tail across a page is fetched from the next page', async () => {
    const src = `
_start:
    mov [0x10000], 0x12345678     ; wide: neither fits 16 bits
    mov edx, [0x10000]
${rep(1, 'edx')}
    lock add [0x10000], 0x70000000
${fl(2)}
    mov edx, [0x10000]
${rep(3, 'edx')}
    lock or [0x10000], 0x80000001
${fl(4)}
    mov edx, [0x10000]
${rep(5, 'edx')}
    lock and [0x10000], 0x0f0f0000
${fl(6)}
    mov edx, [0x10000]
${rep(7, 'edx')}
    mov esi, 0x100
    mov [esi+0x10000], 0xcafebabe ; a base register and a 32-bit displacement
    mov edx, [0x10100]
${rep(8, 'edx')}
    mov eax, 0
    lock add [0x10100], 0x35014542 ; 0xcafebabe + 0x35014542 = 2^32: ZF and CF
${fl(9)}
    jmp cross
.org 0x1ff8
cross:                            ; head on one page, tail on the next
    mov [0x10200], 0xdeadbeef
    mov edx, [0x10200]
${rep(10, 'edx')}
${END}
`;
    const r = await runGuest(src);
    expectClean(r);
    expect(value(r, 1)).toBe(0x12345678);
    expect(value(r, 2)).toBe(FIXED | SF | OF);              // 0x12345678 + 0x70000000 overflows into the sign
    expect(value(r, 3)).toBe(s32(0x82345678));
    expect(value(r, 4)).toBe(FIXED | SF);
    expect(value(r, 5)).toBe(s32(0x82345679));
    expect(value(r, 6)).toBe(FIXED);
    expect(value(r, 7)).toBe(0x02040000);
    expect(value(r, 8)).toBe(s32(0xcafebabe));
    expect(value(r, 9)).toBe(FIXED | ZF | CF);
    expect(value(r, 10)).toBe(s32(0xdeadbeef));
    const L = labels(src);
    expect((L.get('cross') ?? 0) & 0xfff).toBe(0xff8);
  });

  it('the vLAPIC emulates a wide store to the APIC page: mov [APIC+0x310], 0xff000000', async () => {
    const src = `
.equ APIC, 0xFEE00000
_start:
    mov [APIC+0x310], 0xff000000  ; ICR_HI through the trapped APIC page
    mov edx, [APIC+0x310]
${rep(1, 'edx')}
    mov [APIC+0x80], 0x20         ; TPR, short form for comparison
    mov edx, [APIC+0x80]
${rep(2, 'edx')}
${END}
`;
    const r = await runGuest(src);
    expectClean(r);
    expect(value(r, 1)).toBe(s32(0xff000000));
    expect(value(r, 2)).toBe(0x20);
  });

  it('a jump into the tail of a wide instruction is #UD; a misaligned wide store is #GP at the head', async () => {
    const src = `
_start:
    lidt idt
    mov [idt + 6*4], on_ud
    mov [idt + 13*4], on_gp
wide:
    mov [0x10001], 0x12345678     ; misaligned: #GP
    jmp wide + 8                  ; the tail slot
after:
${END}
on_ud:
    mov eax, [esp]
${rep(6, 'eax')}
    mov [esp], after
    iret
on_gp:
    mov eax, [esp]
${rep(13, 'eax')}
    lock add [esp], 16            ; skip the whole wide instruction
    iret
.align 4
idt: .space 1024
`;
    const r = await runGuest(src);
    expectClean(r);
    const L = labels(src);
    expect(values(r, 13)).toEqual([L.get('wide')]);
    expect(values(r, 6)).toEqual([(L.get('wide') ?? 0) + 8]);
  });
});

describe('system instructions', () => {
  it('rdtsc is monotonic, also across a VM exit; rdmsr 0x10 reads the TSC', async () => {
    const src = `
_start:
    rdtsc
    mov esi, eax
    mov edi, edx
    nop
    nop
    rdtsc
    mov r8, eax
    mov r9, edx
    mov eax, 0
    cpuid                         ; a VM exit
    rdtsc
    mov r10, eax
    mov ecx, 0x10
    rdmsr
    mov r11, eax
${rep(1, 'esi')}
${rep(2, 'edi')}
${rep(3, 'r8')}
${rep(4, 'r9')}
${rep(6, 'r10')}
${rep(7, 'r11')}
${END}`;
    const r = await runGuest(src);
    expectClean(r);
    const t1 = value(r, 1) ?? NaN, t2 = value(r, 3) ?? NaN, t3 = value(r, 6) ?? NaN, t4 = value(r, 7) ?? NaN;
    expect(value(r, 2)).toBe(0);
    expect(value(r, 4)).toBe(0);
    expect(t1).toBeGreaterThan(0);
    expect(t2).toBeGreaterThan(t1);
    // the cpuid in between is a VM exit costing about a thousand cycles
    expect(t3 - t2).toBeGreaterThan(1000);
    expect(t4).toBeGreaterThan(t3);
  });

  it('cpuid leaf 1 / 0xB give APIC ID 2n, rdmsr 0x1b gives the APIC base (BSP bit on vCPU 0 only), esp per vCPU', async () => {
    const src = `
_start:
    mov r8, esp
    mov eax, 1
    cpuid
    mov r9, ebx
    shr r9, 24
    mov r14, ecx
    mov eax, 0xb
    mov ecx, 0
    cpuid
    mov r10, edx
    mov ecx, 0x1b
    rdmsr
    mov r11, eax
    mov r12, edx
${rep(1, 'r9')}
${rep(2, 'r8')}
${rep(3, 'r10')}
${rep(4, 'r11')}
${rep(5, 'r12')}
${rep(6, 'r14')}
    hlt                           ; IF=0: this vCPU is done for good
`;
    const r = await runGuest(src, { vcpus: 2, pcpus: 2 });
    expect(r.findings).toEqual([]);
    expect(r.outcome).toBe('completed');
    expect(r.domains[0]).toMatchObject({ state: 'shutdown', exit_code: null, crash: null, ended: 'all vCPUs halted with IF=0' });
    for (const v of [0, 1]) {
      expect(value(r, 1, v), `vCPU ${v} APIC ID`).toBe(2 * v);
      expect(value(r, 2, v), `vCPU ${v} esp`).toBe(RAM_TOP - 4096 * v);
      expect(value(r, 3, v), `vCPU ${v} x2APIC ID`).toBe(2 * v);
      expect(value(r, 5, v)).toBe(0);
      // leaf 1 ecx: bit 31 "running on a hypervisor", bit 21 x2APIC
      expect(((value(r, 6, v) ?? 0) & 0x80200000) >>> 0).toBe(0x80200000);
    }
    expect(value(r, 4, 0)).toBe(s32(0xfee00900)); // base | enable (bit 11) | BSP (bit 8)
    expect(value(r, 4, 1)).toBe(s32(0xfee00800));
  });

  it('cpuid leaf 0 vendor, 0x40000000 Xen signature, 0x40000001 Xen version', async () => {
    const src = `
_start:
    mov eax, 0
    cpuid
    mov r8, ebx
    mov r9, edx
    mov r10, ecx
${rep(1, 'r8')}
${rep(2, 'r9')}
${rep(3, 'r10')}
    mov eax, 0x40000000
    cpuid
    mov r8, eax
    mov r9, ebx
    mov r10, ecx
    mov r11, edx
${rep(4, 'r8')}
${rep(5, 'r9')}
${rep(6, 'r10')}
${rep(7, 'r11')}
    mov eax, 0x40000001
    cpuid
${rep(8, 'eax')}
${END}`;
    const r = await runGuest(src);
    expectClean(r);
    const str = (...keys: number[]): string =>
      Buffer.concat(keys.map((k) => { const b = Buffer.alloc(4); b.writeInt32LE(value(r, k) ?? 0); return b; })).toString('latin1');
    expect(str(1, 2, 3)).toBe('GenuineIntel');
    expect(value(r, 4)).toBe(0x40000002);
    expect(str(5, 6, 7)).toBe('XenVMMXenVMM');
    expect(value(r, 8)).toBe(0x40013);
  });

  it('in from port 0xE9 reads 0xE9, other ports read all ones; out 0xE9 writes the low byte to the console', async () => {
    const src = `
_start:
    in eax, 0xE9
${rep(1, 'eax')}
    in edx, 0x60
${rep(2, 'edx')}
    mov eax, 'h'
    out 0xE9, eax
    mov esi, 'i'
    out 0xE9, esi
    mov eax, 10
    out 0xE9, eax
    mov eax, 0x141                ; low byte 'A'
    out 0xE9, eax
    out 0x80, eax                 ; not the console
${END}`;
    const r = await runGuest(src);
    expectClean(r);
    expect(value(r, 1)).toBe(0xe9);
    expect(value(r, 2)).toBe(-1);
    expect(r.console).toEqual({ guest: 'hi\nA' });
  });
});

describe('hypercalls', () => {
  it('unknown number -> -ENOSYS, xen_version, sched_op yield/bad cmd/bad pointer, then sched_op shutdown sets the exit code', async () => {
    const src = `
_start:
    mov eax, 99
    vmcall
${rep(1, 'eax')}
    mov eax, 17
    mov ebx, 0
    vmcall
${rep(2, 'eax')}
    mov eax, 17
    mov ebx, 1
    vmcall
${rep(3, 'eax')}
    mov eax, 29
    mov ebx, 0
    vmcall
${rep(4, 'eax')}
    mov eax, 29
    mov ebx, 7
    vmcall
${rep(5, 'eax')}
    mov eax, 29
    mov ebx, 2
    mov ecx, reason + 2
    vmcall
${rep(6, 'eax')}
    mov eax, 29
    mov ebx, 2
    mov ecx, 0x800000
    vmcall
${rep(7, 'eax')}
    mov eax, 29
    mov ebx, 2
    mov ecx, reason
    vmcall
${rep(99, 'eax')}
    jmp _start
.align 4
reason: .word 5
`;
    const r = await runGuest(src);
    expect(r.findings).toEqual([]);
    expect(r.outcome).toBe('completed');
    expect(value(r, 1)).toBe(-38);
    expect(value(r, 2)).toBe(0x40013);
    expect(value(r, 3)).toBe(-22);
    expect(value(r, 4)).toBe(0);
    expect(value(r, 5)).toBe(-22);
    expect(value(r, 6)).toBe(-14);
    expect(value(r, 7)).toBe(-14);
    expect(value(r, 99)).toBeUndefined(); // the vCPU never runs again after the shutdown
    expect(r.domains[0]).toMatchObject({ state: 'shutdown', exit_code: 5, crash: null });
    expect(exitCodeFor(r)).toBe(EXIT_OK);
  });
});

describe('magic', () => {
  it('magic 0 shuts the domain down with exit code ebx', async () => {
    const r = await runGuest(`_start:\n    mov ebx, -3\n    magic 0\n${rep(1, 1)}`);
    expect(r.outcome).toBe('completed');
    expect(r.domains[0]).toMatchObject({ state: 'shutdown', exit_code: -3, ended: 'shutdown' });
    expect(r.reports).toEqual([]);
    expect(r.findings).toEqual([]);
  });

  it('magic 1 reports signed values in program order; magic 2 and 4 continue', async () => {
    const src = `
_start:
${rep(7, -1)}
    mov ebx, 1
    mov ecx, 6
    magic 2
    mov ebx, 12
    magic 4
${rep(7, 0x7fffffff)}
${rep(3, 0x80000000)}
${END}`;
    const r = await runGuest(src);
    expectClean(r);
    expect(r.reports).toEqual([
      { domain: 'guest', vcpu: 0, key: 7, value: -1 },
      { domain: 'guest', vcpu: 0, key: 7, value: 0x7fffffff },
      { domain: 'guest', vcpu: 0, key: 3, value: -0x80000000 },
    ]);
  });

  it('magic 3 is a GUEST_ASSERT finding (exit code 1) and the guest continues', async () => {
    const src = `
_start:
    mov ebx, 5
assert_at:
    magic 3
${rep(1, 1)}
    mov ebx, 0
    magic 0
`;
    const r = await runGuest(src);
    expect(r.outcome).toBe('completed');
    expect(value(r, 1)).toBe(1);
    expect(r.domains[0]).toMatchObject({ state: 'shutdown', exit_code: 0 });
    expect(r.findings).toHaveLength(1);
    expect(r.findings[0]).toMatchObject({
      kind: 'GUEST_ASSERT', count: 1,
      first: { domain: 'guest', vcpu: 0, pcpu: 0, detail: `magic 3 with code 5 at pc 0x${hex8(label(src, 'assert_at'))}` },
    });
    expect(exitCodeFor(r)).toBe(EXIT_FAILURE);
  });

  it('an unknown magic service is #UD', async () => {
    const src = `
_start:
    mov eax, idt
    lidt eax                      ; register form
    mov [idt + 6*4], ud_handler
bad_magic:
    magic 9
${rep(2, 1)}
${END}
ud_handler:
    mov eax, [esp]
${rep(1, 'eax')}
    lock add [esp], 8
    iret
.align 4
idt: .space 1024
`;
    const r = await runGuest(src);
    expectClean(r);
    expect(values(r, 1)).toEqual([label(src, 'bad_magic')]);
    expect(value(r, 2)).toBe(1);
  });
});

describe('exceptions through the guest IDT', () => {
  const HANDLERS = `
ud_handler:                       ; log (6, pushed pc), skip the faulting instruction
    mov eax, [esp]
${rep(6, 'eax')}
    mov eax, [esp+4]
${rep(106, 'eax')}
    pushf
    pop eax
${rep(206, 'eax')}
    mov eax, esp
${rep(306, 'eax')}
    lock add [esp], 8
    iret
gp_handler:
    mov eax, [esp]
${rep(13, 'eax')}
    lock add [esp], 8
    iret
int_handler:                      ; a trap: the pushed pc is already the next instruction
    mov eax, [esp]
${rep(0x30, 'eax')}
    pushf
    pop eax
${rep(0x130, 'eax')}
    iret
.align 4
idt: .space 1024
data: .word 0, 0
`;
  const SETUP = `
_start:
    lidt idt
    mov [idt + 6*4], ud_handler
    mov [idt + 13*4], gp_handler
    mov [idt + 0x30*4], int_handler
`;

  it('#UD, #GP (misaligned loads/stores/atomics, unknown MSR, bad wrmsr), vmfunc #UD and int n push the right pc', async () => {
    const src = `${SETUP}
    sti
ud_at:
    ud2
    pushf
    pop eax
${rep(1, 'eax')}
    mov esi, data + 2
gp_load:
    mov eax, [esi]
gp_store:
    mov [esi], eax
gp_store_imm:
    mov [data + 1], 5
gp_xadd:
    lock xadd [esi], eax
gp_cmpxchg:
    lock cmpxchg [data + 3], eax
gp_lock_add:
    lock add [esi], 1
    mov ecx, 0x12345
gp_rdmsr:
    rdmsr
    mov ecx, 0x1b
    mov eax, 0
    mov edx, 0
gp_wrmsr:
    wrmsr
    mov ecx, 0x1b
    rdmsr
ok_wrmsr:
    wrmsr                         ; the current value back: accepted
    mov eax, 0
ud_vmfunc:
    vmfunc
int_at:
    int 0x30
after_int:
    movb eax, [data + 3]          ; byte accesses are never misaligned
${rep(2, 'eax')}
    cli
ud_cli:
    ud2
    pushf
    pop eax
${rep(3, 'eax')}
${END}
${HANDLERS}`;
    const r = await runGuest(src);
    expectClean(r);
    const L = labels(src);
    const at = (n: string): number => L.get(n) ?? -1;
    expect(values(r, 6)).toEqual([at('ud_at'), at('ud_vmfunc'), at('ud_cli')]);
    // pushed flags: IF was set for the first two, clear for the last
    expect(values(r, 106).map((f) => f & IF)).toEqual([IF, IF, 0]);
    // inside a handler IF is clear; esp is two words below the interrupted stack
    expect(values(r, 206).map((f) => f & IF)).toEqual([0, 0, 0]);
    expect(values(r, 306)).toEqual([RAM_TOP - 8, RAM_TOP - 8, RAM_TOP - 8]);
    expect(values(r, 13)).toEqual([
      at('gp_load'), at('gp_store'), at('gp_store_imm'), at('gp_xadd'), at('gp_cmpxchg'), at('gp_lock_add'),
      at('gp_rdmsr'), at('gp_wrmsr'),
    ]);
    expect(values(r, 0x30)).toEqual([at('after_int')]);
    expect(values(r, 0x130).map((f) => f & IF)).toEqual([0]);
    // iret restored IF
    expect(value(r, 1)).toBe(FIXED | IF);
    expect(value(r, 3)! & IF).toBe(0);
    expect(value(r, 2)).toBe(0);
  });

  it('iret restores pc and every flag from the stack frame', async () => {
    const src = `
_start:
    push 0xAC3                    ; flags: CF ZF SF IF OF
    push target
    iret
${rep(1, 0)}
target:
${fl(2)}
    mov eax, esp
${rep(3, 'eax')}
    push 0x2
    push target2
    iret
target2:
${fl(4)}
${END}`;
    const r = await runGuest(src);
    expectClean(r);
    expect(value(r, 1)).toBeUndefined();
    expect(value(r, 2)).toBe(FIXED | CF | ZF | SF | IF | OF);
    expect(value(r, 3)).toBe(RAM_TOP);
    expect(value(r, 4)).toBe(FIXED);
  });

  it('a jump to an address that is not 8-aligned is #GP with that address pushed', async () => {
    const src = `
_start:
    lidt idt
    mov [idt + 13*4], gp_handler
    mov eax, target + 4
    jmp eax
${rep(2, 0)}
.align 8
target:
    nop
    nop
gp_handler:
    mov eax, [esp]
${rep(1, 'eax')}
${END}
.align 4
idt: .space 1024
`;
    const r = await runGuest(src);
    expectClean(r);
    expect(values(r, 1)).toEqual([label(src, 'target') + 4]);
  });

  it('ud2 with no IDT is a triple fault: the domain crashes and the report has a DOMAIN_CRASH finding', async () => {
    const src = `_start:\n    nop\nud_at:\n    ud2\n${END}`;
    const r = await runGuest(src);
    const pc = hex8(label(src, 'ud_at'));
    expect(r.outcome).toBe('completed');
    expect(r.domains[0]).toMatchObject({ state: 'crashed', exit_code: null, ended: 'crash' });
    expect(r.domains[0].crash).toContain('triple fault');
    expect(r.domains[0].crash).toBe(`triple fault: vector 6 at pc 0x${pc}`);
    expect(r.findings.map((f) => f.kind)).toEqual(['DOMAIN_CRASH']);
    expect(r.findings[0].first).toMatchObject({ domain: 'guest', vcpu: 0, detail: `triple fault: vector 6 at pc 0x${pc}` });
    expect(r.findings[0].evidence.length).toBeGreaterThan(0);
    expect(exitCodeFor(r)).toBe(EXIT_OK); // a finding is a result, not an error
  });

  it('a 0 handler, a fault while pushing the frame, and an unknown MSR with no IDT are triple faults', async () => {
    const zero = `_start:\n    lidt idt\n    mov [idt + 13*4], 0x100\nud_at:\n    ud2\n${END}.align 4\nidt: .space 1024\n`;
    const r1 = await runGuest(zero);
    expect(r1.domains[0].state).toBe('crashed');
    expect(r1.domains[0].crash).toBe(`triple fault: vector 6 at pc 0x${hex8(label(zero, 'ud_at'))}`);
    expect(r1.findings.map((f) => f.kind)).toEqual(['DOMAIN_CRASH']);

    const badStack = `_start:\n    lidt idt\n    mov [idt + 6*4], h\n    mov esp, 0x900000\nud_at:\n    ud2\n${END}h:\n${END}.align 4\nidt: .space 1024\n`;
    const r2 = await runGuest(badStack);
    expect(r2.domains[0].state).toBe('crashed');
    expect(r2.domains[0].crash).toBe(`triple fault: vector 6 at pc 0x${hex8(label(badStack, 'ud_at'))}`);

    const msr = `_start:\n    mov ecx, 0x12345\nrd_at:\n    rdmsr\n${END}`;
    const r3 = await runGuest(msr);
    expect(r3.domains[0].state).toBe('crashed');
    expect(r3.domains[0].crash).toBe(`triple fault: vector 13 at pc 0x${hex8(label(msr, 'rd_at'))}`);

    const intr = `_start:\n    lidt idt\n    int 0x40\n${END}.align 4\nidt: .space 1024\n`;
    const r4 = await runGuest(intr);
    expect(r4.domains[0].state).toBe('crashed');
    expect(r4.domains[0].crash).toMatch(/^triple fault: vector 64 at pc 0x/);
  });

  it('an access to unmapped guest memory crashes the domain with an EPT violation', async () => {
    const load = `_start:\n    mov eax, [0xFFFFC]\n${rep(1, 'eax')}\nld_at:\n    mov eax, [0x800000]\n${END}`;
    const r1 = await runGuest(load, { memoryKb: 1024 });
    expect(value(r1, 1)).toBe(0); // the last word of RAM is fine
    expect(r1.domains[0]).toMatchObject({ state: 'crashed', exit_code: null });
    expect(r1.domains[0].crash).toBe(`EPT violation: gpa 0x00800000 at pc 0x${hex8(label(load, 'ld_at'))}`);
    expect(r1.findings.map((f) => f.kind)).toEqual(['DOMAIN_CRASH']);
    expect(r1.findings[0].first.detail).toBe(`EPT violation: gpa 0x00800000 access r at pc 0x${hex8(label(load, 'ld_at'))}`);

    const store = `_start:\n    mov eax, 1\nst_at:\n    mov [0x100000], eax\n${END}`;
    const r2 = await runGuest(store, { memoryKb: 1024 });
    expect(r2.domains[0].crash).toContain('EPT violation');
    expect(r2.findings[0].first.detail).toBe(`EPT violation: gpa 0x00100000 access w at pc 0x${hex8(label(store, 'st_at'))}`);

    const exec = `_start:\n    jmp 0x200000\n`;
    const r3 = await runGuest(exec, { memoryKb: 1024 });
    expect(r3.domains[0].state).toBe('crashed');
    expect(r3.findings[0].first.detail).toMatch(/^EPT violation: gpa 0x00200000 access x at pc 0x00200000$/);
  });
});

describe('hlt', () => {
  it('hlt with IF=0 on every vCPU ends the domain as "shutdown" (all vCPUs halted with IF=0)', async () => {
    const r = await runGuest('_start:\n    cli\n    hlt\n    jmp _start\n', { vcpus: 3, pcpus: 2 });
    expect(r.outcome).toBe('completed');
    expect(r.findings).toEqual([]);
    expect(r.domains[0]).toMatchObject({ state: 'shutdown', exit_code: null, crash: null, ended: 'all vCPUs halted with IF=0' });
  });

  it('one vCPU dead-halted does not end the domain while another still runs', async () => {
    const src = `
_start:
    mov eax, 1
    cpuid
    shr ebx, 25
    cmp ebx, 0
    jz halt_now
    mov esi, 2000
spin:
    dec esi
    jnz spin
    mov ebx, 9
    magic 0
halt_now:
    hlt
`;
    const r = await runGuest(src, { vcpus: 2, pcpus: 1 });
    expect(r.outcome).toBe('completed');
    expect(r.domains[0]).toMatchObject({ state: 'shutdown', exit_code: 9, ended: 'shutdown' });
  });

  it('sti; hlt with nothing to wake the vCPU is a STALL', async () => {
    const r = await runGuest('_start:\n    sti\n    hlt\n    jmp _start\n');
    expect(r.outcome).toBe('completed');
    expect(r.findings.map((f) => f.kind)).toEqual(['STALL']);
    expect(r.findings[0].first.detail).toContain('1 vCPU(s) blocked in hlt');
    expect(r.domains[0]).toMatchObject({ state: 'running', exit_code: null, crash: null });
  });

  it('an infinite loop stops at --max-instructions with outcome "limit"', async () => {
    const r = await runGuest('_start:\n    inc eax\n    jmp _start\n', { maxInstructions: 10000 });
    expect(r.outcome).toBe('limit');
    expect(r.metrics.instructions).toBe(10000);
    expect(r.domains[0].state).toBe('running');
  });
});
