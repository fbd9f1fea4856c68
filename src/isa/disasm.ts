// Disassembler for the vcpulab guest ISA (./opcodes.ts). The output re-assembles to the identical two words:
// that is the contract the tests check. An encoding the assembler would never produce (an unknown opcode, a
// nonzero field the form does not use, b naming no register, a `*_SI` store whose displacement fits the
// 16-bit slot, a register source with a nonzero imm32, ...) is printed as `.word 0x........, 0x........`,
// which re-assembles exactly and says plainly that this is not an instruction the assembler writes.
// A wide instruction (16 bytes) is one line when its tail slot is given and is what the assembler writes
// (the tail's first word exactly OP_WIDE_TAIL, and neither value fitting the short forms); a tail slot on
// its own is always `.word`.

import {
  OPS, OP_COUNT, OP_CALL, OP_INT, REG_NAMES, REG_ZERO, JCC_OPS, OP_JMP, INSN_BYTES, WIDE_INSN_BYTES, WIDE_TAIL_W0,
  decodeOp, decodeA, decodeB, decodeI16, fitsI16, isWideOp,
} from './opcodes.js';

interface Fields {
  readonly op: number;
  readonly a: number;
  readonly b: number;
  readonly i16: number;
  /** Unsigned. */
  readonly imm: number;
}

const BRANCH_OPS: ReadonlySet<number> = new Set<number>([OP_JMP, OP_CALL, ...JCC_OPS]);
const INT_MAX = 0xff;
const PORT_MAX = 0xffff;
/** Immediates in [-SMALL_NEG, -1] print as negative numbers: `add esp, -8` reads better than 0xfffffff8. */
const SMALL_NEG = 0xffff;

function hex(v: number): string {
  return `0x${(v >>> 0).toString(16)}`;
}

function hex8(v: number): string {
  return (v >>> 0).toString(16).padStart(8, '0');
}

/** A non-negative number: decimal up to 9, hex beyond. */
function small(v: number): string {
  return v <= 9 ? String(v) : `0x${v.toString(16)}`;
}

/** An imm32 (unsigned) as a value. */
function fmtImm(u: number): string {
  const s = u | 0;
  return s < 0 && s >= -SMALL_NEG ? `-${small(-s)}` : small(u >>> 0);
}

function fmtMem(b: number, dispU: number): string {
  if (b === REG_ZERO) return `[${hex(dispU)}]`;
  const s = dispU | 0;
  if (s === 0) return `[${REG_NAMES[b]}]`;
  return s < 0 ? `[${REG_NAMES[b]}-${small(-s)}]` : `[${REG_NAMES[b]}+${small(s)}]`;
}

function rawWords(w0: number, w1: number): string {
  return `.word 0x${hex8(w0)}, 0x${hex8(w1)}`;
}

/** `r/imm` operand (value = R[b] + imm32), or undefined if that sum has no text form. */
function fmtSrc(f: Fields, labels: ReadonlyMap<number, string> | undefined): string | undefined {
  if (f.b !== REG_ZERO) return f.imm === 0 ? REG_NAMES[f.b] : undefined;
  if (!BRANCH_OPS.has(f.op)) return fmtImm(f.imm);
  return labels?.get(f.imm) ?? hex(f.imm);
}

/** The text of a canonical encoding, or undefined when the assembler would not produce these words. */
function canonicalText(f: Fields, labels: ReadonlyMap<number, string> | undefined, tail: readonly [number, number] | undefined): string | undefined {
  if (f.op >= OP_COUNT || f.b > REG_ZERO) return undefined;
  const info = OPS[f.op];
  const mn = info.mnemonic;
  const unused = (a: boolean, b: boolean, i16: boolean, imm: boolean): boolean =>
    (a && f.a !== 0) || (b && f.b !== 0) || (i16 && f.i16 !== 0) || (imm && f.imm !== 0);
  const ra = REG_NAMES[f.a];
  switch (info.form) {
    case 'none': return unused(true, true, true, true) ? undefined : mn;
    case 'imm':
      if (unused(true, true, true, false) || (f.op === OP_INT && f.imm > INT_MAX)) return undefined;
      return `${mn} ${f.op === OP_INT ? small(f.imm) : fmtImm(f.imm)}`;
    case 'src': return unused(true, false, true, false) ? undefined : join(mn, fmtSrc(f, labels));
    case 'reg': return unused(false, true, true, true) ? undefined : `${mn} ${ra}`;
    case 'reg_src': return unused(false, false, true, false) ? undefined : join(`${mn} ${ra},`, fmtSrc(f, labels));
    case 'reg_mem': return unused(false, false, true, false) ? undefined : `${mn} ${ra}, ${fmtMem(f.b, f.imm)}`;
    case 'mem_reg': return unused(false, false, true, false) ? undefined : `${mn} ${fmtMem(f.b, f.imm)}, ${ra}`;
    case 'mem_sd': return unused(true, false, false, false) ? undefined : `${mn} ${fmtMem(f.b, f.i16 >>> 0)}, ${fmtImm(f.imm)}`;
    case 'mem_si':
      // The assembler prefers the short displacement, so an SI store whose displacement fits is not its output.
      if (unused(true, false, false, false) || fitsI16(f.imm | 0)) return undefined;
      return `${mn} ${fmtMem(f.b, f.imm)}, ${fmtImm(f.i16 >>> 0)}`;
    case 'mem_wide': {
      // The assembler goes wide only when neither the displacement nor the value fits 16 bits.
      if (tail === undefined || (tail[0] >>> 0) !== WIDE_TAIL_W0 || unused(true, false, true, false)) return undefined;
      const value = tail[1] >>> 0;
      if (fitsI16(f.imm | 0) || fitsI16(value | 0)) return undefined;
      return `${mn} ${fmtMem(f.b, f.imm)}, ${fmtImm(value)}`;
    }
    case 'tail': return undefined;
    case 'reg_port':
      return unused(false, true, true, false) || f.imm > PORT_MAX ? undefined : `${mn} ${ra}, ${small(f.imm)}`;
    case 'port_reg':
      return unused(false, true, true, false) || f.imm > PORT_MAX ? undefined : `${mn} ${small(f.imm)}, ${ra}`;
  }
}

function join(prefix: string, operand: string | undefined): string | undefined {
  return operand === undefined ? undefined : `${prefix} ${operand}`;
}

/**
 * One instruction as assembly text. `labels` (address -> name) names absolute jump and call targets. `tail`:
 * the two words after these, which a wide instruction needs (without them its head prints as `.word`).
 */
export function disassemble(w0: number, w1: number, labels?: ReadonlyMap<number, string>, tail?: readonly [number, number]): string {
  const f: Fields = { op: decodeOp(w0), a: decodeA(w0), b: decodeB(w0), i16: decodeI16(w0), imm: w1 >>> 0 };
  return canonicalText(f, labels, tail) ?? rawWords(w0, w1);
}

/** Bytes the text disassemble() gave for these words covers: 16 for a wide instruction it printed, else 8. */
export function disassembledBytes(w0: number, text: string): number {
  return isWideOp(decodeOp(w0)) && !text.startsWith('.word') ? WIDE_INSN_BYTES : INSN_BYTES;
}

function readU32(image: Uint8Array, addr: number): number {
  const byte = (i: number): number => image[addr + i] ?? 0;
  return (byte(0) | (byte(1) << 8) | (byte(2) << 16) | (byte(3) << 24)) >>> 0;
}

/** The instructions that start in [from, to), as [address, text]: 8-byte slots, except that a wide
 *  instruction is one entry of 16 bytes (its tail read even past `to`). Bytes past the image read as zero. */
export function disassembleRange(
  image: Uint8Array, from: number, to: number, labels?: ReadonlyMap<number, string>,
): [number, string][] {
  const out: [number, string][] = [];
  for (let addr = from; addr < to;) {
    const w0 = readU32(image, addr);
    const text = disassemble(w0, readU32(image, addr + 4), labels, [readU32(image, addr + 8), readU32(image, addr + 12)]);
    out.push([addr, text]);
    addr += disassembledBytes(w0, text);
  }
  return out;
}

/** The texts of disassembleRange. */
export function disassembleImage(
  image: Uint8Array, from: number, to: number, labels?: ReadonlyMap<number, string>,
): string[] {
  return disassembleRange(image, from, to, labels).map(([, t]) => t);
}
