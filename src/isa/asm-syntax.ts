// Text syntax of the guest assembly, one line at a time (../../shared/ISA.md "Syntax"): tokens, expressions,
// operands, labels and directives. Nothing here knows addresses or symbol values; assembler.ts lays out and
// encodes. Every error is a UserError `file:line:col: message` pointing at the offending token.
//
// Expressions are evaluated exactly (BigInt) and range-checked once at the end, so `0xFFFFFFFF + 1` is an
// error rather than a silent wrap to 0. Operator precedence is C's: `*` > `+ -` > `<< >>` > `&` > `|`.

import { userError } from '../errors.js';
import { REG_NAMES, REG_ZERO } from './opcodes.js';

export interface LineCtx {
  readonly file: string;
  /** 1-based. */
  readonly line: number;
  /** For a line of an included file: `file:line` of the `.include` that brought it in. */
  readonly from?: string;
}

export function fail(ctx: LineCtx, col: number, msg: string): never {
  throw userError(ctx.file, ctx.line, col, ctx.from === undefined ? msg : `${msg} (included from ${ctx.from})`);
}

// ---- tokens ----

export type Punct = ',' | '[' | ']' | '(' | ')' | '+' | '-' | '*' | '&' | '|' | ':' | '<<' | '>>';

export type Tok =
  | { readonly kind: 'ident'; readonly text: string; readonly col: number }
  | { readonly kind: 'num'; readonly value: bigint; readonly text: string; readonly col: number }
  | { readonly kind: 'str'; readonly bytes: readonly number[]; readonly col: number }
  | { readonly kind: 'punct'; readonly text: Punct; readonly col: number };

const SINGLE_PUNCT: ReadonlySet<string> = new Set([',', '[', ']', '(', ')', '+', '-', '*', '&', '|', ':']);
const IDENT_RE = /[A-Za-z_.][A-Za-z0-9_.]*/y;
const NUMBER_RE = /[0-9][0-9A-Za-z_]*/y;
const ESCAPES: Readonly<Record<string, number>> = {
  n: 10, t: 9, r: 13, '0': 0, '\\': 92, "'": 39, '"': 34,
};

/** Register index for a (case-insensitive) register name, or undefined. */
export function regIndex(name: string): number | undefined {
  const i = (REG_NAMES as readonly string[]).indexOf(name.toLowerCase());
  return i < 0 ? undefined : i;
}

/** Split one source line into tokens; stops at a `;` or `#` comment (literals are lexed whole, so a `;`
 *  inside '...' or "..." is not a comment). `endCol` is the column just past the last token, where "end of
 *  line" errors point. */
export function tokenizeLine(text: string, ctx: LineCtx): { toks: Tok[]; endCol: number } {
  const toks: Tok[] = [];
  let i = 0;
  let endCol = 1;
  while (i < text.length) {
    const c = text[i];
    if (c === ' ' || c === '\t' || c === '\r' || c === '\f' || c === '\v') { i++; continue; }
    if (c === ';' || c === '#') break;
    const [tok, next] = lexToken(text, i, ctx);
    toks.push(tok);
    i = next;
    endCol = next + 1;
  }
  return { toks, endCol };
}

function lexToken(text: string, i: number, ctx: LineCtx): [Tok, number] {
  const c = text[i];
  const col = i + 1;
  if (c === "'") return lexChar(text, i, ctx);
  if (c === '"') return lexString(text, i, ctx);
  if (c >= '0' && c <= '9') return lexNumber(text, i, ctx);
  IDENT_RE.lastIndex = i;
  const id = IDENT_RE.exec(text);
  if (id !== null) return [{ kind: 'ident', text: id[0], col }, i + id[0].length];
  const two = text.slice(i, i + 2);
  if (two === '<<' || two === '>>') return [{ kind: 'punct', text: two, col }, i + 2];
  if (SINGLE_PUNCT.has(c)) return [{ kind: 'punct', text: c as Punct, col }, i + 1];
  return fail(ctx, col, `unexpected character '${c}'`);
}

function lexNumber(text: string, i: number, ctx: LineCtx): [Tok, number] {
  NUMBER_RE.lastIndex = i;
  const m = NUMBER_RE.exec(text);
  const s = m === null ? '' : m[0];
  const ok = /^0[xX][0-9A-Fa-f]+$/.test(s) || /^[0-9]+$/.test(s);
  if (!ok) fail(ctx, i + 1, `bad number '${s}'`);
  return [{ kind: 'num', value: BigInt(s), text: s, col: i + 1 }, i + s.length];
}

/** One character or escape starting at text[i] (not the closing quote): [byte values, next index]. */
function lexCharBody(text: string, i: number, ctx: LineCtx, what: string): [number[], number] {
  if (i >= text.length) fail(ctx, i + 1, `unterminated ${what}`);
  if (text[i] !== '\\') {
    const cp = text.codePointAt(i) ?? 0;
    const ch = String.fromCodePoint(cp);
    return [[...Buffer.from(ch, 'utf8')], i + ch.length];
  }
  const e = text[i + 1];
  if (e === undefined) fail(ctx, i + 1, `unterminated ${what}`);
  if (e === 'x') {
    const hex = text.slice(i + 2, i + 4);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) fail(ctx, i + 1, `'\\x' needs two hex digits`);
    return [[parseInt(hex, 16)], i + 4];
  }
  const v = ESCAPES[e];
  if (v === undefined) fail(ctx, i + 1, `unknown escape '\\${e}'`);
  return [[v], i + 2];
}

function lexChar(text: string, i: number, ctx: LineCtx): [Tok, number] {
  const what = 'character literal';
  if (text[i + 1] === "'") fail(ctx, i + 1, 'empty character literal');
  const [bytes, next] = lexCharBody(text, i + 1, ctx, what);
  if (next >= text.length) fail(ctx, i + 1, `unterminated ${what}`);
  if (text[next] !== "'") fail(ctx, i + 1, `${what} must hold exactly one character`);
  // A multi-byte UTF-8 character has no single byte value; refuse rather than pick one.
  if (bytes.length !== 1 || (text[i + 1] !== '\\' && bytes[0] > 0x7f)) {
    fail(ctx, i + 1, `${what} must be one ASCII character or an escape`);
  }
  const src = text.slice(i, next + 1);
  return [{ kind: 'num', value: BigInt(bytes[0]), text: src, col: i + 1 }, next + 1];
}

function lexString(text: string, i: number, ctx: LineCtx): [Tok, number] {
  const bytes: number[] = [];
  let j = i + 1;
  for (;;) {
    if (j >= text.length) fail(ctx, i + 1, 'unterminated string');
    if (text[j] === '"') return [{ kind: 'str', bytes, col: i + 1 }, j + 1];
    const [b, next] = lexCharBody(text, j, ctx, 'string');
    bytes.push(...b);
    j = next;
  }
}

export function describeTok(t: Tok | undefined): string {
  if (t === undefined) return 'end of line';
  switch (t.kind) {
    case 'ident': return `'${t.text}'`;
    case 'num': return `'${t.text}'`;
    case 'str': return 'a string';
    case 'punct': return `'${t.text}'`;
  }
}

/** A read position in one line's tokens. */
/** Bounds on one line's expressions: nesting of parentheses and negations, and operators in all. */
export const MAX_EXPR_DEPTH = 64;
export const MAX_EXPR_OPERATORS = 1024;

export class Cursor {
  i = 0;
  /** Open parentheses and negations now, and binary operators so far on this line (see MAX_EXPR_*). */
  depth = 0;
  operators = 0;
  constructor(readonly toks: readonly Tok[], readonly ctx: LineCtx, readonly eolCol: number) {}
  peek(k = 0): Tok | undefined { return this.toks[this.i + k]; }
  atEnd(): boolean { return this.i >= this.toks.length; }
  /** Column of the next token, or just past the end of the line. */
  col(): number { return this.peek()?.col ?? this.eolCol; }
  isPunct(p: Punct, k = 0): boolean {
    const t = this.peek(k);
    return t !== undefined && t.kind === 'punct' && t.text === p;
  }
  take(): Tok {
    const t = this.peek();
    if (t === undefined) return fail(this.ctx, this.eolCol, 'unexpected end of line');
    this.i++;
    return t;
  }
  expect(p: Punct, msg: string): void {
    if (!this.isPunct(p)) fail(this.ctx, this.col(), msg);
    this.i++;
  }
}

// ---- expressions ----

export type BinOp = '|' | '&' | '<<' | '>>' | '+' | '-' | '*';

export type Expr =
  | { readonly k: 'num'; readonly v: bigint; readonly col: number }
  | { readonly k: 'sym'; readonly name: string; readonly col: number }
  | { readonly k: 'neg'; readonly e: Expr; readonly col: number }
  | { readonly k: 'bin'; readonly op: BinOp; readonly l: Expr; readonly r: Expr; readonly col: number };

const PREC: Readonly<Record<BinOp, number>> = { '|': 1, '&': 2, '<<': 3, '>>': 3, '+': 4, '-': 4, '*': 5 };

function binOpAt(cur: Cursor): BinOp | undefined {
  const t = cur.peek();
  if (t === undefined || t.kind !== 'punct') return undefined;
  return t.text in PREC ? (t.text as BinOp) : undefined;
}

export function parseExpr(cur: Cursor): Expr {
  return climb(cur, parseUnary(cur), 1);
}

/** Precedence climbing: extend `left` with binary operators of precedence >= minPrec. Also used to parse a
 *  memory displacement as `0 <rest>` so that `[esi-4+1]` means esi + (0-4+1). */
export function climb(cur: Cursor, left: Expr, minPrec: number): Expr {
  for (;;) {
    const op = binOpAt(cur);
    if (op === undefined || PREC[op] < minPrec) return left;
    cur.take();
    if (++cur.operators > MAX_EXPR_OPERATORS) fail(cur.ctx, cur.col(), `more than ${MAX_EXPR_OPERATORS} operators in one line's expressions`);
    let right = parseUnary(cur);
    for (let nx = binOpAt(cur); nx !== undefined && PREC[nx] > PREC[op]; nx = binOpAt(cur)) {
      right = climb(cur, right, PREC[op] + 1);
    }
    left = { k: 'bin', op, l: left, r: right, col: left.col };
  }
}

function parseUnary(cur: Cursor): Expr {
  const t = cur.peek();
  if (t === undefined) return fail(cur.ctx, cur.eolCol, 'expected a value at end of line');
  if (t.kind === 'punct' && (t.text === '-' || t.text === '(')) {
    if (++cur.depth > MAX_EXPR_DEPTH) fail(cur.ctx, t.col, `expression nested more than ${MAX_EXPR_DEPTH} deep`);
    cur.take();
    let e: Expr;
    if (t.text === '-') e = { k: 'neg', e: parseUnary(cur), col: t.col };
    else {
      e = parseExpr(cur);
      cur.expect(')', `expected ')', found ${describeTok(cur.peek())}`);
    }
    cur.depth--;
    return e;
  }
  if (t.kind === 'num') { cur.take(); return { k: 'num', v: t.value, col: t.col }; }
  if (t.kind === 'ident') {
    if (regIndex(t.text) !== undefined) fail(cur.ctx, t.col, `register '${t.text}' cannot be used in an expression`);
    cur.take();
    return { k: 'sym', name: t.text, col: t.col };
  }
  return fail(cur.ctx, t.col, `expected a value, found ${describeTok(t)}`);
}

/** Symbol values for evaluation; `missing` words the error for a name without a value here. */
export interface SymbolEnv {
  value(name: string): bigint | undefined;
  missing(name: string): string;
}

const MAX_SHIFT = 63n;

/** Exact value of an expression (no 32-bit wrap yet; see fitU32). */
export function evalExpr(e: Expr, env: SymbolEnv, ctx: LineCtx): bigint {
  switch (e.k) {
    case 'num': return e.v;
    case 'sym': {
      const v = env.value(e.name);
      return v ?? fail(ctx, e.col, env.missing(e.name));
    }
    case 'neg': return -evalExpr(e.e, env, ctx);
    case 'bin': return evalBin(e.op, evalExpr(e.l, env, ctx), evalExpr(e.r, env, ctx), e.r.col, ctx);
  }
}

function evalBin(op: BinOp, l: bigint, r: bigint, rCol: number, ctx: LineCtx): bigint {
  switch (op) {
    case '+': return l + r;
    case '-': return l - r;
    case '*': return l * r;
    case '&': return l & r;
    case '|': return l | r;
    case '<<': case '>>':
      // Bound the count: BigInt would happily build a gigabyte-sized number for `1 << 0x7fffffff`.
      if (r < 0n || r > MAX_SHIFT) fail(ctx, rCol, `shift count ${r} is out of range 0..${MAX_SHIFT}`);
      return op === '<<' ? l << r : l >> r;
  }
}

export const U32_MIN = -(2n ** 31n);
export const U32_MAX = 2n ** 32n - 1n;

export function fmtBig(v: bigint): string {
  return v < 0n ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`;
}

/** A 32-bit field value: accepts -2^31..2^32-1 and returns it as an unsigned 32-bit number. */
export function fitU32(v: bigint, what: string, ctx: LineCtx, col: number): number {
  if (v < U32_MIN || v > U32_MAX) fail(ctx, col, `${what} ${fmtBig(v)} does not fit in 32 bits`);
  return Number(BigInt.asUintN(32, v));
}

// ---- operands ----

export type OperandKind = 'reg' | 'imm' | 'mem';

export type Operand =
  | { readonly kind: 'reg'; readonly reg: number; readonly col: number }
  | { readonly kind: 'imm'; readonly expr: Expr; readonly col: number }
  /** base is REG_ZERO for `[imm]`. */
  | { readonly kind: 'mem'; readonly base: number; readonly disp: Expr; readonly col: number };

const ORDINALS = ['first', 'second', 'third', 'fourth', 'fifth', 'sixth', 'seventh', 'eighth', 'ninth', 'tenth'];

export function ordinal(i: number): string {
  return ORDINALS[i] ?? `#${i + 1}`;
}

export function parseOperand(cur: Cursor): Operand {
  const t = cur.peek();
  if (t === undefined) return fail(cur.ctx, cur.eolCol, 'expected an operand');
  if (t.kind === 'punct' && t.text === '[') return parseMem(cur);
  if (t.kind === 'str') return fail(cur.ctx, t.col, 'a string is only allowed after .ascii');
  if (t.kind === 'ident') {
    const reg = regIndex(t.text);
    if (reg !== undefined) { cur.take(); return { kind: 'reg', reg, col: t.col }; }
  }
  return { kind: 'imm', expr: parseExpr(cur), col: t.col };
}

const MEM_FORMS = 'use [reg], [reg+imm], [reg-imm] or [imm]';

function parseMem(cur: Cursor): Operand {
  const open = cur.take();
  const t = cur.peek();
  const base = t !== undefined && t.kind === 'ident' ? regIndex(t.text) : undefined;
  let disp: Expr;
  if (base === undefined) {
    disp = parseExpr(cur);
  } else {
    cur.take();
    disp = parseDisp(cur);
  }
  cur.expect(']', `expected ']', found ${describeTok(cur.peek())}`);
  return { kind: 'mem', base: base ?? REG_ZERO, disp, col: open.col };
}

/** After `[reg`: nothing, or `+ expr` / `- expr`, read as `0 + expr` / `0 - expr`. */
function parseDisp(cur: Cursor): Expr {
  const zero: Expr = { k: 'num', v: 0n, col: cur.col() };
  if (cur.isPunct(']')) return zero;
  if (!cur.isPunct('+') && !cur.isPunct('-')) {
    fail(cur.ctx, cur.col(), `expected '+', '-' or ']' after the register, found ${describeTok(cur.peek())}`);
  }
  const second = cur.peek(1);
  if (second !== undefined && second.kind === 'ident' && regIndex(second.text) !== undefined) {
    fail(cur.ctx, second.col, `a memory operand takes one register: ${MEM_FORMS}`);
  }
  return climb(cur, zero, PREC['+']);
}

/** `mov eax, ebx+4` would otherwise read as "expected ','", which hides the real mistake. */
function checkNoRegisterArithmetic(cur: Cursor, last: Operand): void {
  const t = cur.peek();
  if (last.kind === 'reg' && t !== undefined && t.kind === 'punct' && t.text in PREC) {
    fail(cur.ctx, last.col, `register '${REG_NAMES[last.reg]}' cannot be used in an expression`);
  }
}

/** Comma-separated operands up to the end of the line. */
export function parseOperandList(cur: Cursor): Operand[] {
  const ops: Operand[] = [];
  if (cur.atEnd()) return ops;
  for (;;) {
    ops.push(parseOperand(cur));
    if (cur.atEnd()) return ops;
    checkNoRegisterArithmetic(cur, ops[ops.length - 1]);
    if (!cur.isPunct(',')) fail(cur.ctx, cur.col(), `expected ',' after ${ordinal(ops.length - 1)} operand`);
    cur.take();
    if (cur.atEnd()) fail(cur.ctx, cur.eolCol, `expected an operand after ','`);
  }
}

// ---- lines ----

export interface LabelDef {
  readonly name: string;
  readonly col: number;
}

export type Stmt =
  | {
    readonly kind: 'insn';
    /** Lower case, aliases not yet resolved, without `lock`. */
    readonly mnemonic: string;
    readonly col: number;
    /** Column of a `lock` prefix, if written. */
    readonly lockCol: number | undefined;
    readonly ops: readonly Operand[];
  }
  | { readonly kind: 'dir'; readonly name: string; readonly col: number; readonly args: readonly Operand[] }
  | { readonly kind: 'equ'; readonly col: number; readonly name: string; readonly nameCol: number; readonly value: Expr }
  | { readonly kind: 'ascii'; readonly col: number; readonly bytes: readonly number[] }
  /** `.include "file.s"`: `path` as written, relative to the including file. */
  | { readonly kind: 'include'; readonly col: number; readonly path: string; readonly pathCol: number };

export interface ParsedLine {
  readonly labels: readonly LabelDef[];
  readonly stmt: Stmt | undefined;
}

export const DIRECTIVES: ReadonlySet<string> = new Set(['.org', '.align', '.word', '.byte', '.space', '.equ', '.ascii', '.include']);
const LOCK_TARGETS = 'add, or, and, xadd or cmpxchg';

/** Parse one line. `isMnemonic` says whether a lower-case word names an instruction, so that an unknown word
 *  is reported as such before its operands are looked at. */
export function parseLine(text: string, ctx: LineCtx, isMnemonic: (mn: string) => boolean): ParsedLine {
  const { toks, endCol } = tokenizeLine(text, ctx);
  const cur = new Cursor(toks, ctx, endCol);
  const labels = parseLabels(cur);
  if (cur.atEnd()) return { labels, stmt: undefined };
  const head = cur.take();
  if (head.kind !== 'ident') {
    return fail(ctx, head.col, `expected a mnemonic or directive, found ${describeTok(head)}`);
  }
  if (head.text.startsWith('.')) return { labels, stmt: parseDirective(cur, head.text.toLowerCase(), head.col) };
  return { labels, stmt: parseInsn(cur, head.text.toLowerCase(), head.col, isMnemonic) };
}

function parseLabels(cur: Cursor): LabelDef[] {
  const labels: LabelDef[] = [];
  for (let t = cur.peek(); t !== undefined && t.kind === 'ident' && cur.isPunct(':', 1); t = cur.peek()) {
    if (regIndex(t.text) !== undefined) fail(cur.ctx, t.col, `'${t.text}' is a register name, not a label`);
    labels.push({ name: t.text, col: t.col });
    cur.i += 2;
  }
  return labels;
}

function parseInsn(cur: Cursor, word: string, col: number, isMnemonic: (mn: string) => boolean): Stmt {
  let mnemonic = word;
  let mnCol = col;
  let lockCol: number | undefined;
  if (word === 'lock') {
    const t = cur.peek();
    if (t === undefined || t.kind !== 'ident') fail(cur.ctx, cur.col(), `'lock' must be followed by ${LOCK_TARGETS}`);
    cur.take();
    lockCol = col;
    mnemonic = t.text.toLowerCase();
    mnCol = t.col;
  }
  if (!isMnemonic(mnemonic)) fail(cur.ctx, mnCol, `unknown mnemonic '${lockCol === undefined ? word : mnemonic}'`);
  return { kind: 'insn', mnemonic, col: mnCol, lockCol, ops: parseOperandList(cur) };
}

function parseDirective(cur: Cursor, name: string, col: number): Stmt {
  if (!DIRECTIVES.has(name)) fail(cur.ctx, col, `unknown directive '${name}'`);
  if (name === '.equ') return parseEqu(cur, col);
  if (name === '.ascii') return parseAscii(cur, col);
  if (name === '.include') return parseInclude(cur, col);
  return { kind: 'dir', name, col, args: parseOperandList(cur) };
}

function parseEqu(cur: Cursor, col: number): Stmt {
  const t = cur.peek();
  if (t === undefined || t.kind !== 'ident') return fail(cur.ctx, cur.col(), 'expected a name after .equ');
  if (regIndex(t.text) !== undefined) fail(cur.ctx, t.col, `'${t.text}' is a register name, not a constant`);
  cur.take();
  cur.expect(',', `expected ',' after the .equ name, found ${describeTok(cur.peek())}`);
  const value = parseExpr(cur);
  if (!cur.atEnd()) fail(cur.ctx, cur.col(), `unexpected ${describeTok(cur.peek())} after the .equ value`);
  return { kind: 'equ', col, name: t.text, nameCol: t.col, value };
}

function parseInclude(cur: Cursor, col: number): Stmt {
  const t = cur.peek();
  if (t === undefined || t.kind !== 'str') return fail(cur.ctx, cur.col(), '.include needs a "file name"');
  cur.take();
  if (!cur.atEnd()) fail(cur.ctx, cur.col(), `unexpected ${describeTok(cur.peek())} after the file name`);
  const path = Buffer.from(t.bytes).toString('utf8');
  if (path === '') fail(cur.ctx, t.col, '.include needs a file name, not ""');
  return { kind: 'include', col, path, pathCol: t.col };
}

function parseAscii(cur: Cursor, col: number): Stmt {
  const t = cur.peek();
  if (t === undefined || t.kind !== 'str') return fail(cur.ctx, cur.col(), '.ascii needs a "string"');
  cur.take();
  if (!cur.atEnd()) fail(cur.ctx, cur.col(), `unexpected ${describeTok(cur.peek())} after the string`);
  return { kind: 'ascii', col, bytes: t.bytes };
}
