// Two-pass assembler for the vcpulab guest ISA (../../shared/ISA.md is the text contract, ./opcodes.ts the
// encoding). Syntax lives in ./asm-syntax.ts; this file checks operand shapes, lays out addresses and encodes.
//
// Passes, so that errors come out in source order within each kind:
//   0. parse every line and pick each instruction's opcode form (shape errors, unknown names, duplicates);
//   1. lay out addresses: labels, .org/.align/.space (their values must be known at that line), .equ;
//   2. evaluate operands with every symbol known and write the image.
//
// Decisions beyond ISA.md:
//   - `xadd` and `cmpxchg` are accepted without `lock`: ours are always atomic, so the prefix changes nothing.
//     `lock` before anything but add/or/and/xadd/cmpxchg is an error, and so is add/or/and to memory without
//     `lock` (only the atomic read-modify-write exists).
//   - `xchg r, [m]` is accepted as `xchg [m], r`.
//   - a memory displacement is everything after the register read as `0 <rest>`: `[esi-4+1]` is esi-3. Only
//     `+ - *` may follow the register; wrap anything else in parentheses.
//   - instructions are never padded to alignment silently: an unaligned one is an error naming `.align 8`.
//   - bytes emitted twice (after a backward `.org`) are an error rather than a silent overwrite.
//   - `[m], imm` takes 8 bytes when the displacement or the value fits in 16 signed bits, else the 16-byte
//     wide form (opcodes.ts). Which one depends on values that may be labels further down, so pass 1 starts
//     with every such store short and lays out again with the ones found too wide made wide; an instruction
//     only ever grows, so this ends (at most once per store).
//   - `.include "file.s"` reads the file relative to the including file's directory and assembles its lines
//     in place, as if pasted there; labels and constants are one namespace across files. Errors name the
//     included file and its line, and say which `.include` brought it in. A file that includes itself,
//     directly or not, is an error, and so is nesting deeper than MAX_INCLUDE_DEPTH.

import { readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { ALTP2M_OP_GUEST_SYMBOLS } from '../../shared/altp2m-op.js';
import { assert, bug, UserError } from '../errors.js';
import {
  OPS, MNEMONIC_ALIASES, REG_ZERO, INSN_BYTES, WIDE_INSN_BYTES, WIDE_TAIL_W0, encodeWord0, fitsI16, type Form,
} from './opcodes.js';
import {
  fail, parseLine, evalExpr, fitU32, fmtBig, ordinal,
  type LineCtx, type Operand, type OperandKind, type Stmt, type SymbolEnv, type Expr, type LabelDef,
} from './asm-syntax.js';

/** What a listing should show for a line: an instruction, 32-bit words, bytes, or only a label. */
export type AsmLineKind = 'insn' | 'words' | 'bytes' | 'label';

export interface AsmLine {
  addr: number;
  /** Bytes emitted (for `.align`, the padding). */
  size: number;
  /** 1-based source line, in `file`. */
  line: number;
  /** The file the line is in (the program's own name, or an included file's). */
  file: string;
  /** Index of the line in AsmProgram.source. */
  seq: number;
  /** Raw source text of that line. */
  source: string;
  kind: AsmLineKind;
}

export interface AsmProgram {
  file: string;
  /** Bytes from guest address 0 up to the highest address emitted (gaps zero). */
  image: Uint8Array;
  /** Highest address emitted + 1 (== image.length). */
  end: number;
  /** Label -> address. `.equ` names are in `constants`, not here. */
  labels: Map<string, number>;
  /** `.equ` name -> value as an unsigned 32-bit number, with the caller's predefined names (not the guest ABI's). */
  constants: Map<string, number>;
  /** Address of `_start` if defined. */
  entry: number | undefined;
  /** One per source line that emitted bytes or defined a label, in source order. */
  lines: AsmLine[];
  /** Every line assembled, in order, with included files' lines in place of their `.include`. */
  source: SourceLine[];
  /** Where each included file is on disk (resolved), in the order they were first read. */
  includes: string[];
}

export interface SourceLine {
  file: string;
  /** 1-based, in `file`. */
  line: number;
  text: string;
  /** 0 for the program's own lines, 1 for a file it includes, ... */
  depth: number;
}

export interface AssembleOptions {
  /** Where the program is on disk, to resolve `.include` (default: the `file` name given to assemble). */
  path?: string;
  /** Reads an included file as UTF-8 (default: a regular file of at most MAX_INCLUDE_BYTES); throws an error with a Node errno `code` when it cannot. */
  readFile?: (path: string) => string;
}

/** `.include` nesting allowed (the program itself is depth 0). */
export const MAX_INCLUDE_DEPTH = 16;
/**
 * Lines assembled in all, includes counted each time they are included: a file included twice at each of
 * 16 levels would otherwise expand to billions of lines from a few small files.
 */
export const MAX_ASSEMBLED_LINES = 1 << 18;
/** An included file larger than this is surely not guest assembly (a device, a disk image). */
export const MAX_INCLUDE_BYTES = 16 << 20;

/** The default include reader: a regular file of at most MAX_INCLUDE_BYTES (never a device or a FIFO). */
function readIncluded(path: string): string {
  const st = statSync(path);
  if (st.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
  if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'ENOTREG' });
  if (st.size > MAX_INCLUDE_BYTES) throw Object.assign(new Error('too large'), { code: 'EFBIG' });
  return readFileSync(path, 'utf8');
}

/** Layout passes that may still widen `[m], imm` stores (layoutRelaxed) before the program is refused. */
export const MAX_RELAX_PASSES = 64;
/** An image larger than this is surely a mistaken `.org`/`.space`, not a guest program. */
export const MAX_IMAGE_BYTES = 256 * 1024 * 1024;
const ENTRY_LABEL = '_start';

/** Lines as the assembler numbers them (the listing uses the same split). */
export function splitSourceLines(source: string): string[] {
  return source.split(/\r?\n/);
}

// ---- opcode forms ----

/** Mnemonic as OPS spells it ('mov', 'lock add') -> form -> opcode. */
const FORMS: ReadonlyMap<string, ReadonlyMap<Form, number>> = buildForms();
/** The *_SI and the wide opcode for each *_SD opcode. */
const SI_OF_SD: ReadonlyMap<number, number> = buildTwins('mem_si');
const WIDE_OF_SD: ReadonlyMap<number, number> = buildTwins('mem_wide');

function buildForms(): Map<string, Map<Form, number>> {
  const m = new Map<string, Map<Form, number>>();
  for (const info of OPS) {
    if (info.form === 'tail') continue; // no text of its own
    const forms = m.get(info.mnemonic) ?? new Map<Form, number>();
    forms.set(info.form, info.op);
    m.set(info.mnemonic, forms);
  }
  return m;
}

function buildTwins(form: Form): Map<number, number> {
  const m = new Map<number, number>();
  for (const forms of FORMS.values()) {
    const sd = forms.get('mem_sd');
    const twin = forms.get(form);
    assert((sd === undefined) === (twin === undefined), `every *_SD opcode has a ${form} twin`);
    if (sd !== undefined && twin !== undefined) m.set(sd, twin);
  }
  return m;
}

/** Operand kinds each form accepts, position by position. mem_si and mem_wide are never matched from text:
 *  mem_sd stands for all three, and the layout and pass 2 pick by value. */
const FORM_SIG: Readonly<Record<Form, readonly (readonly OperandKind[])[]>> = {
  none: [],
  imm: [['imm']],
  src: [['reg', 'imm']],
  reg: [['reg']],
  reg_src: [['reg'], ['reg', 'imm']],
  reg_mem: [['reg'], ['mem']],
  mem_reg: [['mem'], ['reg']],
  mem_sd: [['mem'], ['imm']],
  mem_si: [],
  mem_wide: [],
  tail: [],
  reg_port: [['reg'], ['imm']],
  port_reg: [['imm'], ['reg']],
};

function canonical(mn: string): string {
  return MNEMONIC_ALIASES[mn] ?? mn;
}

export function isMnemonic(mn: string): boolean {
  const m = canonical(mn);
  return mn === 'lock' || FORMS.has(m) || FORMS.has(`lock ${m}`);
}

/** The FORMS key for an instruction statement, enforcing the `lock` rules. */
function resolveKey(stmt: Extract<Stmt, { kind: 'insn' }>, ctx: LineCtx): string {
  const mn = canonical(stmt.mnemonic);
  const locked = `lock ${mn}`;
  if (stmt.lockCol !== undefined) {
    if (!FORMS.has(locked)) fail(ctx, stmt.lockCol, `'lock' cannot be used with '${stmt.mnemonic}'`);
    return locked;
  }
  if (!FORMS.has(mn)) return locked;  // xadd, cmpxchg: always atomic
  if (FORMS.has(locked) && stmt.ops[0]?.kind === 'mem') {
    fail(ctx, stmt.col, `'${stmt.mnemonic}' with a memory destination needs the 'lock' prefix`);
  }
  return mn;
}

const KIND_NAMES: Readonly<Record<OperandKind, string>> = {
  reg: 'a register', imm: 'an immediate', mem: 'a memory operand',
};
const ARITY_NAMES = ['no operands', 'one operand', 'two operands'];

/** The one form of `key` whose operand kinds match `ops`, or a located error saying what is wrong. */
function selectForm(key: string, ops: readonly Operand[], col: number, ctx: LineCtx): Form {
  const forms = [...(FORMS.get(key)?.keys() ?? [])].filter((f) => f !== 'mem_si' && f !== 'mem_wide');
  const arities = [...new Set(forms.map((f) => FORM_SIG[f].length))];
  if (!arities.includes(ops.length)) {
    const want = arities.map((n) => ARITY_NAMES[n]).join(' or ');
    const n = Math.min(...arities);
    fail(ctx, ops.length > n ? (ops[n]?.col ?? col) : col, `'${key}' takes ${want}`);
  }
  let live = forms.filter((f) => FORM_SIG[f].length === ops.length);
  ops.forEach((op, i) => {
    const allowed = new Set(live.flatMap((f) => FORM_SIG[f][i]));
    if (op.kind === 'imm' && op.expr.k === 'sym' && !allowed.has('imm') && allowed.has('reg')) {
      // A bare word where only a register fits is almost always a misspelt register.
      fail(ctx, op.col, `unknown register '${op.expr.name}'`);
    }
    if (!allowed.has(op.kind)) fail(ctx, op.col, kindMessage(key, ops, i, [...allowed]));
    live = live.filter((f) => FORM_SIG[f][i].includes(op.kind));
  });
  assert(live.length === 1, `operand shapes of '${key}' select one form`);
  return live[0];
}

function kindMessage(key: string, ops: readonly Operand[], i: number, allowed: OperandKind[]): string {
  if (ops[i].kind === 'mem' && ops.some((o, j) => j !== i && o.kind === 'mem')) {
    return key === 'mov' || key === 'movb'
      ? 'cannot store a memory operand to a memory operand'
      : `'${key}' cannot take two memory operands`;
  }
  const which = ops.length === 1 ? 'operand' : `${ordinal(i)} operand`;
  const want = allowed.map((k) => KIND_NAMES[k]).join(' or ');
  return `'${key}' ${which} must be ${want}, not ${KIND_NAMES[ops[i].kind]}`;
}

// ---- pass 0: parse and check shapes ----

interface InsnItem {
  readonly kind: 'insn';
  readonly key: string;
  readonly form: Form;
  readonly op: number;
  readonly ops: readonly Operand[];
  readonly col: number;
}

type Checked = InsnItem | Exclude<Stmt, { kind: 'insn' | 'include' }>;

interface Line0 {
  readonly ctx: LineCtx;
  readonly source: string;
  readonly labels: readonly LabelDef[];
  readonly stmt: Checked | undefined;
  /** Index in the expanded source (AsmProgram.source). */
  readonly seq: number;
}

function checkStmt(stmt: Exclude<Stmt, { kind: 'include' }>, ctx: LineCtx): Checked {
  if (stmt.kind !== 'insn') return stmt;
  const key = resolveKey(stmt, ctx);
  // `xchg r, [m]` swaps the same two things as `xchg [m], r`.
  const ops = key === 'xchg' && stmt.ops.length === 2 && stmt.ops[0].kind === 'reg' && stmt.ops[1].kind === 'mem'
    ? [stmt.ops[1], stmt.ops[0]] : stmt.ops;
  const form = selectForm(key, ops, stmt.col, ctx);
  const op = FORMS.get(key)?.get(form);
  assert(op !== undefined, `form ${form} of '${key}' has an opcode`);
  return { kind: 'insn', key, form, op, ops, col: stmt.col };
}

interface SymDef {
  /** 0: predefined. */
  readonly line: number;
  readonly file: string;
  readonly isLabel: boolean;
}

/** Record the label and .equ names of one line, refusing duplicates. */
function defineNames(line: Line0, names: Map<string, SymDef>): void {
  const defs: [string, number, boolean][] = line.labels.map((l) => [l.name, l.col, true]);
  if (line.stmt?.kind === 'equ') defs.push([line.stmt.name, line.stmt.nameCol, false]);
  for (const [name, col, isLabel] of defs) {
    const prev = names.get(name);
    if (prev !== undefined && prev.line === 0) fail(line.ctx, col, `'${name}' is predefined (the guest ABI, the scenario or --define); pick another name`);
    if (prev !== undefined) {
      const what = prev.isLabel && isLabel ? 'label' : 'symbol';
      const at = prev.file === line.ctx.file ? `line ${prev.line}` : `${prev.file}:${prev.line}`;
      fail(line.ctx, col, `duplicate ${what} '${name}' (first defined at ${at})`);
    }
    names.set(name, { line: line.ctx.line, file: line.ctx.file, isLabel });
  }
}

/** One file being read: its name in messages, where it is on disk, and the `.include` chain above it. */
interface SourceFile {
  readonly shown: string;
  readonly path: string;
  readonly depth: number;
  /** `file:line` of the `.include` that brought it in (undefined for the program itself). */
  readonly from: string | undefined;
  /** Resolved paths of this file and every file including it, outermost first. */
  readonly chain: readonly string[];
  readonly shownChain: readonly string[];
}

interface Pass0 {
  readonly lines: Line0[];
  readonly includes: string[];
  /** Each included file's text, read once however often it is included. */
  readonly texts: Map<string, string>;
  readonly names: Map<string, SymDef>;
  readonly source: SourceLine[];
  readonly read: (path: string) => string;
}

function pass0(source: string, file: string, predefined: ReadonlyMap<string, number>, opts: AssembleOptions): Pass0 {
  const names = new Map<string, SymDef>();
  for (const k of predefined.keys()) names.set(k, { line: 0, file, isLabel: false });
  const st: Pass0 = { lines: [], includes: [], texts: new Map(), names, source: [], read: opts.readFile ?? readIncluded };
  const path = resolve(opts.path ?? file);
  readLines(st, source, { shown: file, path, depth: 0, from: undefined, chain: [path], shownChain: [file] });
  return st;
}

function readLines(st: Pass0, text: string, f: SourceFile): void {
  const lines = splitSourceLines(text);
  // The newline that ends the last line does not start another one (an included file's would show as a blank).
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  lines.forEach((raw, i) => {
    const ctx: LineCtx = f.from === undefined ? { file: f.shown, line: i + 1 } : { file: f.shown, line: i + 1, from: f.from };
    if (st.source.length >= MAX_ASSEMBLED_LINES) fail(ctx, 1, `more than ${MAX_ASSEMBLED_LINES} lines to assemble in all, counting each .include`);
    const parsed = parseLine(raw, ctx, isMnemonic);
    const inc = parsed.stmt?.kind === 'include' ? parsed.stmt : undefined;
    const stmt = parsed.stmt === undefined || parsed.stmt.kind === 'include' ? undefined : checkStmt(parsed.stmt, ctx);
    const line0: Line0 = { ctx, source: raw, labels: parsed.labels, stmt, seq: st.source.length };
    st.source.push({ file: f.shown, line: i + 1, text: raw, depth: f.depth });
    defineNames(line0, st.names);
    st.lines.push(line0);
    if (inc !== undefined) includeFile(st, inc, f, ctx);
  });
}

/** Assemble the lines of the file an `.include` names, in its place. */
function includeFile(st: Pass0, inc: Extract<Stmt, { kind: 'include' }>, f: SourceFile, ctx: LineCtx): void {
  const path = resolve(dirname(f.path), inc.path);
  const shown = isAbsolute(inc.path) ? inc.path : join(dirname(f.shown), inc.path);
  const cycle = f.chain.indexOf(path);
  if (cycle >= 0) {
    fail(ctx, inc.pathCol, `.include cycle: ${[...f.shownChain.slice(cycle), shown].join(' includes ')}`);
  }
  if (f.depth + 1 > MAX_INCLUDE_DEPTH) fail(ctx, inc.pathCol, `.include nested more than ${MAX_INCLUDE_DEPTH} deep`);
  let text = st.texts.get(path);
  if (text === undefined) try {
    text = st.read(path);
    st.texts.set(path, text);
  } catch (e) {
    const code = e instanceof Error && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code === 'ENOTREG' ? 'not a regular file'
      : code === 'EFBIG' ? `larger than ${MAX_INCLUDE_BYTES >> 20} MiB` : code ?? 'cannot be read';
    return fail(ctx, inc.pathCol, `cannot include '${inc.path}': ${why}`);
  }
  if (!st.includes.includes(path)) st.includes.push(path);
  readLines(st, text, {
    shown, path, depth: f.depth + 1, from: `${ctx.file}:${ctx.line}`,
    chain: [...f.chain, path], shownChain: [...f.shownChain, shown],
  });
}

// ---- pass 1: layout ----

/** Something pass 2 writes at a fixed address. */
type Emit =
  | { readonly kind: 'insn'; readonly addr: number; readonly ctx: LineCtx; readonly insn: InsnItem; readonly seq: number; readonly wide: boolean }
  | { readonly kind: 'word' | 'byte'; readonly addr: number; readonly ctx: LineCtx; readonly args: readonly Operand[] }
  | { readonly kind: 'raw'; readonly addr: number; readonly bytes: readonly number[] };

interface Span {
  readonly start: number;
  readonly end: number;
  readonly ctx: LineCtx;
  readonly col: number;
  /** Order in the expanded source (lines of different files compare by it). */
  readonly seq: number;
}

interface Layout {
  pc: number;
  end: number;
  /** Bytes the image may take (the domain's RAM when the loader assembles; else MAX_IMAGE_BYTES). */
  readonly max: number;
  readonly labels: Map<string, number>;
  readonly constants: Map<string, bigint>;
  readonly emits: Emit[];
  readonly spans: Span[];
  readonly lines: AsmLine[];
  /** seq of the `[m], imm` stores laid out wide (16 bytes). */
  readonly wide: ReadonlySet<number>;
  /** seq of the line being laid out. */
  seq: number;
}

/** Symbols known so far in pass 1; a name defined further down gets a message saying so. */
function layoutEnv(lay: Layout, names: ReadonlyMap<string, SymDef>, what: string): SymbolEnv {
  return {
    value: (name) => lookup(lay.labels, lay.constants, name),
    missing: (name) => names.has(name)
      ? `'${name}' is defined after this line; ${what} needs a value known here`
      : `undefined label '${name}'`,
  };
}

function lookup(labels: ReadonlyMap<string, number>, constants: ReadonlyMap<string, bigint>, name: string): bigint | undefined {
  const l = labels.get(name);
  return l !== undefined ? BigInt(l) : constants.get(name);
}

/** Address `addr` must lie within the image limit. */
function checkAddr(addr: bigint | number, ctx: LineCtx, col: number): number {
  if (addr < 0) fail(ctx, col, `address ${fmtBig(BigInt(addr))} is negative`);
  if (addr > MAX_IMAGE_BYTES) {
    fail(ctx, col, `address ${fmtBig(BigInt(addr))} is beyond the ${MAX_IMAGE_BYTES >> 20} MiB image limit`);
  }
  return Number(addr);
}

/** Reserve [pc, pc+size) for this line and advance. */
function fmtSize(bytes: number): string {
  return bytes % (1 << 20) === 0 ? `${bytes >> 20} MiB` : bytes % 1024 === 0 ? `${bytes >> 10} KiB` : `${bytes} bytes`;
}

function emitAt(lay: Layout, size: number, ctx: LineCtx, col: number, owned: boolean): number {
  const start = lay.pc;
  const end = checkAddr(start + size, ctx, col);
  if (end > lay.max) fail(ctx, col, `the image would end at 0x${end.toString(16)}, beyond the ${fmtSize(lay.max)} it may take (the domain's RAM)`);
  if (owned && size > 0) lay.spans.push({ start, end, ctx, col, seq: lay.seq });
  lay.pc = end;
  lay.end = Math.max(lay.end, end);
  return start;
}

function oneValue(args: readonly Operand[], name: string, ctx: LineCtx, col: number): Expr {
  if (args.length !== 1) fail(ctx, args[1]?.col ?? col, `'${name}' takes one value`);
  const a = args[0];
  if (a.kind !== 'imm') fail(ctx, a.col, `'${name}' needs a value, not ${KIND_NAMES[a.kind]}`);
  return a.expr;
}

function valueList(args: readonly Operand[], name: string, ctx: LineCtx, col: number): void {
  if (args.length === 0) fail(ctx, col, `'${name}' needs at least one value`);
  for (const a of args) if (a.kind !== 'imm') fail(ctx, a.col, `'${name}' values must be immediates, not ${KIND_NAMES[a.kind]}`);
}

function isPow2(v: bigint): boolean {
  return v > 0n && (v & (v - 1n)) === 0n;
}

/** Lay out one statement; returns what the listing shows and how many bytes it covers. */
function layoutStmt(stmt: Checked, lay: Layout, l: Line0, names: ReadonlyMap<string, SymDef>): AsmLine | undefined {
  const pc = lay.pc, ctx = l.ctx;
  const entry = (size: number, kind: AsmLineKind): AsmLine => ({ addr: pc, size, line: ctx.line, file: ctx.file, seq: l.seq, source: '', kind });
  switch (stmt.kind) {
    case 'insn': {
      if (pc % INSN_BYTES !== 0) fail(ctx, stmt.col, `instruction at 0x${pc.toString(16)} is not 8-byte aligned (use .align 8)`);
      const wide = lay.wide.has(l.seq);
      const size = wide ? WIDE_INSN_BYTES : INSN_BYTES;
      lay.emits.push({ kind: 'insn', addr: emitAt(lay, size, ctx, stmt.col, true), ctx, insn: stmt, seq: l.seq, wide });
      return entry(size, 'insn');
    }
    case 'ascii':
      lay.emits.push({ kind: 'raw', addr: emitAt(lay, stmt.bytes.length, ctx, stmt.col, true), bytes: stmt.bytes });
      return stmt.bytes.length > 0 ? entry(stmt.bytes.length, 'bytes') : undefined;
    case 'equ': {
      const v = evalExpr(stmt.value, layoutEnv(lay, names, '.equ'), ctx);
      fitU32(v, 'value', ctx, stmt.value.col);
      lay.constants.set(stmt.name, v);
      return undefined;
    }
    case 'dir':
      return layoutDirective(stmt, lay, ctx, names, entry);
  }
}

function layoutDirective(
  stmt: Extract<Stmt, { kind: 'dir' }>, lay: Layout, ctx: LineCtx, names: ReadonlyMap<string, SymDef>,
  entry: (size: number, kind: AsmLineKind) => AsmLine,
): AsmLine | undefined {
  const { name, args, col } = stmt;
  const value = (): bigint => {
    const e = oneValue(args, name, ctx, col);
    return evalExpr(e, layoutEnv(lay, names, name), ctx);
  };
  switch (name) {
    case '.org':
      lay.pc = checkAddr(value(), ctx, args[0].col);
      return undefined;
    case '.align': {
      const n = value();
      if (!isPow2(n) || n > BigInt(MAX_IMAGE_BYTES)) fail(ctx, args[0].col, '.align needs a power of two');
      const pad = (Number(n) - (lay.pc % Number(n))) % Number(n);
      emitAt(lay, pad, ctx, col, false);
      return pad > 0 ? entry(pad, 'bytes') : undefined;
    }
    case '.space': {
      const n = value();
      if (n < 0n) fail(ctx, args[0].col, `.space size ${n} is negative`);
      const size = checkAddr(n, ctx, args[0].col);
      emitAt(lay, size, ctx, col, true);
      return size > 0 ? entry(size, 'bytes') : undefined;
    }
    case '.word': {
      valueList(args, name, ctx, col);
      if (lay.pc % 4 !== 0) fail(ctx, col, `.word at 0x${lay.pc.toString(16)} is not 4-byte aligned (use .align 4)`);
      lay.emits.push({ kind: 'word', addr: emitAt(lay, 4 * args.length, ctx, col, true), ctx, args });
      return entry(4 * args.length, 'words');
    }
    case '.byte':
      valueList(args, name, ctx, col);
      lay.emits.push({ kind: 'byte', addr: emitAt(lay, args.length, ctx, col, true), ctx, args });
      return entry(args.length, 'bytes');
    default:
      return fail(ctx, col, `unknown directive '${name}'`);
  }
}

function pass1(lines: readonly Line0[], names: ReadonlyMap<string, SymDef>, predefined: ReadonlyMap<string, number>, max: number, wide: ReadonlySet<number>): Layout {
  const constants = new Map<string, bigint>([...predefined].map(([k, v]) => [k, BigInt(v)]));
  const lay: Layout = { pc: 0, end: 0, max, labels: new Map(), constants, emits: [], spans: [], lines: [], wide, seq: 0 };
  for (const l of lines) {
    const addr = lay.pc;
    lay.seq = l.seq;
    for (const lab of l.labels) lay.labels.set(lab.name, addr);
    const shown = l.stmt === undefined ? undefined : layoutStmt(l.stmt, lay, l, names);
    if (shown !== undefined) lay.lines.push({ ...shown, source: l.source });
    else if (l.labels.length > 0) lay.lines.push({ addr, size: 0, line: l.ctx.line, file: l.ctx.file, seq: l.seq, source: l.source, kind: 'label' });
  }
  checkOverlaps(lay.spans);
  return lay;
}

/**
 * Lay out until every `[m], imm` store has the size its values need: a short store whose displacement and
 * value both turn out not to fit 16 bits becomes wide, and the layout is made again. Stores only grow.
 */
function layoutRelaxed(lines: readonly Line0[], names: ReadonlyMap<string, SymDef>, predefined: ReadonlyMap<string, number>, max: number): Layout {
  const wide = new Set<number>();
  for (let pass = 1; ; pass++) {
    const lay = pass1(lines, names, predefined, max, wide);
    const env = finalEnv(lay);
    let grew = false;
    for (const e of lay.emits) {
      if (e.kind !== 'insn' || e.wide || e.insn.form !== 'mem_sd') continue;
      if (needsWide(e.insn, env, e.ctx)) {
        // Each pass may widen only the stores that the last one pushed past 16 bits, so a chain of them
        // takes a pass each: bound it (a real program settles in a few), as a one-line error.
        if (pass > MAX_RELAX_PASSES) fail(e.ctx, e.insn.col, `wide-store layout did not settle in ${MAX_RELAX_PASSES} passes: each widened store pushes this one past 16 bits (use a base register for the addresses, or .org them apart)`);
        wide.add(e.seq);
        grew = true;
      }
    }
    if (!grew) return lay;
  }
}

/** Bytes written twice (possible after a backward .org) are reported at the later line. */
function checkOverlaps(spans: readonly Span[]): void {
  const sorted = [...spans].sort((x, y) => x.start - y.start || x.seq - y.seq);
  let owner: Span | undefined;
  for (const s of sorted) {
    if (owner !== undefined && s.start < owner.end) {
      const later = s.seq > owner.seq ? s : owner;
      const earlier = later === s ? owner : s;
      const by = earlier.ctx.file === later.ctx.file ? `line ${earlier.ctx.line}` : `${earlier.ctx.file}:${earlier.ctx.line}`;
      fail(later.ctx, later.col, `bytes at 0x${s.start.toString(16)} were already emitted by ${by} (check .org)`);
    }
    if (owner === undefined || s.end > owner.end) owner = s;
  }
}

// ---- pass 2: encode ----

function finalEnv(lay: Layout): SymbolEnv {
  return {
    value: (name) => lookup(lay.labels, lay.constants, name),
    missing: (name) => `undefined label '${name}'`,
  };
}

function immU32(op: Operand, env: SymbolEnv, ctx: LineCtx, what = 'immediate'): number {
  const e = op.kind === 'imm' ? op.expr : op.kind === 'mem' ? op.disp : undefined;
  assert(e !== undefined, 'immU32 needs an immediate or memory operand');
  return fitU32(evalExpr(e, env, ctx), what, ctx, e.col);
}

function inRange(op: Operand, env: SymbolEnv, ctx: LineCtx, what: string, max: number): number {
  assert(op.kind === 'imm', 'range-checked operand is an immediate');
  const v = evalExpr(op.expr, env, ctx);
  if (v < 0n || v > BigInt(max)) {
    const show = (x: bigint): string => (max > 0xff ? fmtBig(x) : x.toString());
    fail(ctx, op.col, `${what} ${show(v)} is out of range 0..${show(BigInt(max))}`);
  }
  return Number(v);
}

function reg(op: Operand | undefined): number {
  assert(op?.kind === 'reg', 'operand is a register');
  return op.reg;
}

function base(op: Operand | undefined): number {
  assert(op?.kind === 'mem', 'operand is a memory operand');
  return op.base;
}

/** `r/imm` source: value = R[b] + imm32 (opcodes.ts). */
function srcFields(op: Operand, env: SymbolEnv, ctx: LineCtx): [number, number] {
  return op.kind === 'reg' ? [op.reg, 0] : [REG_ZERO, immU32(op, env, ctx)];
}

const INT_VECTORS = 255;
const PORT_MAX = 0xffff;

/** The words of one instruction (two; four for a wide store). */
function encodeInsn(insn: InsnItem, env: SymbolEnv, ctx: LineCtx, wide: boolean): number[] {
  const { op, ops } = insn;
  const w = (a: number, b: number, i16: number, imm32: number): [number, number] => [encodeWord0(op, a, b, i16) >>> 0, imm32 >>> 0];
  switch (insn.form) {
    case 'none': return w(0, 0, 0, 0);
    case 'imm':
      return w(0, 0, 0, insn.key === 'int' ? inRange(ops[0], env, ctx, 'interrupt vector', INT_VECTORS) : immU32(ops[0], env, ctx));
    case 'src': { const [b, imm] = srcFields(ops[0], env, ctx); return w(0, b, 0, imm); }
    case 'reg': return w(reg(ops[0]), 0, 0, 0);
    case 'reg_src': { const [b, imm] = srcFields(ops[1], env, ctx); return w(reg(ops[0]), b, 0, imm); }
    case 'reg_mem': return w(reg(ops[0]), base(ops[1]), 0, immU32(ops[1], env, ctx, 'displacement'));
    case 'mem_reg': return w(reg(ops[1]), base(ops[0]), 0, immU32(ops[0], env, ctx, 'displacement'));
    case 'mem_sd': case 'mem_si': case 'mem_wide': return encodeStoreImm(insn, env, ctx, wide);
    case 'tail': return bug('no statement has the tail form');
    case 'reg_port': return w(reg(ops[0]), 0, 0, inRange(ops[1], env, ctx, 'port', PORT_MAX));
    case 'port_reg': return w(reg(ops[1]), 0, 0, inRange(ops[0], env, ctx, 'port', PORT_MAX));
  }
}

/**
 * Does this `[m], imm` need the wide form (neither value fits 16 bits)? A value that cannot be evaluated
 * says no here: pass 2 reports it, in source order with every other error.
 */
function needsWide(insn: InsnItem, env: SymbolEnv, ctx: LineCtx): boolean {
  const [mem, val] = insn.ops;
  try {
    return !fitsI16(immU32(mem, env, ctx, 'displacement') | 0) && !fitsI16(immU32(val, env, ctx) | 0);
  } catch (e) {
    if (e instanceof UserError) return false;
    throw e;
  }
}

/**
 * `[m], imm` needs two immediates: the 16-bit slot for whichever fits, the displacement first; in the wide
 * form (laid out as such by layoutRelaxed) both are 32-bit, the value in the tail slot.
 */
function encodeStoreImm(insn: InsnItem, env: SymbolEnv, ctx: LineCtx, wide: boolean): number[] {
  const [mem, val] = insn.ops;
  const b = base(mem);
  const disp = immU32(mem, env, ctx, 'displacement') | 0;
  const value = immU32(val, env, ctx) | 0;
  if (wide) {
    const w = WIDE_OF_SD.get(insn.op);
    assert(w !== undefined, 'store-immediate opcode has a wide twin');
    return [encodeWord0(w, 0, b, 0) >>> 0, disp >>> 0, WIDE_TAIL_W0, value >>> 0];
  }
  if (fitsI16(disp)) return [encodeWord0(insn.op, 0, b, disp) >>> 0, value >>> 0];
  const si = SI_OF_SD.get(insn.op);
  assert(si !== undefined, 'store-immediate opcode has a short-immediate twin');
  assert(fitsI16(value), 'a short store-immediate has a 16-bit displacement or value (layoutRelaxed)');
  return [encodeWord0(si, 0, b, value) >>> 0, disp >>> 0];
}

function writeU32(image: Uint8Array, addr: number, v: number): void {
  image[addr] = v & 0xff;
  image[addr + 1] = (v >>> 8) & 0xff;
  image[addr + 2] = (v >>> 16) & 0xff;
  image[addr + 3] = (v >>> 24) & 0xff;
}

function writeEmit(e: Emit, image: Uint8Array, env: SymbolEnv): void {
  switch (e.kind) {
    case 'insn': {
      encodeInsn(e.insn, env, e.ctx, e.wide).forEach((v, i) => writeU32(image, e.addr + 4 * i, v));
      return;
    }
    case 'word':
      e.args.forEach((a, i) => writeU32(image, e.addr + 4 * i, immU32(a, env, e.ctx, 'value')));
      return;
    case 'byte':
      e.args.forEach((a, i) => { image[e.addr + i] = byteValue(a, env, e.ctx); });
      return;
    case 'raw':
      image.set(e.bytes, e.addr);
      return;
  }
}

function byteValue(op: Operand, env: SymbolEnv, ctx: LineCtx): number {
  assert(op.kind === 'imm', '.byte values are immediates');
  const v = evalExpr(op.expr, env, ctx);
  if (v < -128n || v > 255n) fail(ctx, op.col, `byte value ${v} does not fit in 8 bits (-128..255)`);
  return Number(v) & 0xff;
}

function toU32Map(m: ReadonlyMap<string, bigint>): Map<string, number> {
  return new Map([...m].map(([k, v]) => [k, Number(BigInt.asUintN(32, v))]));
}

/**
 * Assemble `source`; `file` names it in error messages. Every program sees the guest ABI's names
 * predefined (shared/altp2m-op.ts: the HVMOP_altp2m struct's field offsets and numbers); `predefined` are
 * more `.equ`-like constants the caller supplies (the scenario loader passes VCPUS, PCPUS, MEMORY_KB, ...). `maxBytes` bounds the image (the loader passes the domain's RAM), checked as the layout
 * grows, so a mistaken `.space` or `.org` is one error line before anything is allocated. Throws the first
 * UserError found.
 */
export function assemble(
  source: string, file: string, predefined: ReadonlyMap<string, number> = new Map(), maxBytes = MAX_IMAGE_BYTES,
  opts: AssembleOptions = {},
): AsmProgram {
  const all = new Map([...ALTP2M_OP_GUEST_SYMBOLS, ...predefined]);
  const { lines, names, source: expanded, includes } = pass0(source, file, all, opts);
  const lay = layoutRelaxed(lines, names, all, Math.min(maxBytes, MAX_IMAGE_BYTES));
  const image = new Uint8Array(lay.end);
  const env = finalEnv(lay);
  for (const e of lay.emits) writeEmit(e, image, env);
  return {
    file,
    image,
    end: lay.end,
    labels: lay.labels,
    constants: toU32Map(new Map([...lay.constants].filter(([k]) => predefined.has(k) || !ALTP2M_OP_GUEST_SYMBOLS.has(k)))),
    entry: lay.labels.get(ENTRY_LABEL),
    lines: lay.lines,
    source: expanded,
    includes,
  };
}
