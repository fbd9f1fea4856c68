// `vcpulab asm FILE [--disasm] [--scenario S] [--define NAME=VALUE ...]`: assemble a guest program and print
// a listing and a symbol table. `--scenario` predefines what the scenario loader would (VCPUS, IPI_PATH, the
// domain's `defines`, ...) for the domain whose program FILE is (the first domain when none is), and each
// `--define` one more symbol (last wins, over the scenario's too). Bad input (a missing or unreadable FILE,
// an unknown flag, a bad --define, a bad scenario, an assembly error) is one line on stderr and exit code 2,
// never a stack trace (../../shared/STYLE.md §13).

import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { EXIT_BAD_INPUT, EXIT_OK, UserError } from '../errors.js';
import { assemble, type AsmLine, type AsmProgram } from '../isa/assembler.js';
import { regIndex } from '../isa/asm-syntax.js';
import { disassemble } from '../isa/disasm.js';
import { domainProgramPath, domainSymbols, loadScenario } from '../scenario/loader.js';

export interface AsmIo {
  out(text: string): void;
  err(text: string): void;
}

const STDIO: AsmIo = {
  out: (t) => { process.stdout.write(t); },
  err: (t) => { process.stderr.write(t); },
};

const USAGE = 'usage: vcpulab asm FILE [--disasm] [--scenario S] [--define NAME=VALUE ...]';

interface AsmArgs {
  readonly file: string;
  readonly disasm: boolean;
  /** Built-in scenario name or .toml path, or undefined. */
  readonly scenario: string | undefined;
  /** --define NAME=VALUE, in order. */
  readonly defines: ReadonlyMap<string, number>;
}

const NAME_RE = /^[A-Za-z_.][A-Za-z0-9_.]*$/;
const VALUE_RE = /^-?(?:0[xX][0-9A-Fa-f]+|[0-9]+)$/;

/** One `--define` argument: [name, value as an unsigned 32-bit number], or the error line. */
export function parseDefine(arg: string): [string, number] | string {
  const eq = arg.indexOf('=');
  if (eq < 0) return `--define '${arg}': expected NAME=VALUE`;
  const name = arg.slice(0, eq), text = arg.slice(eq + 1);
  if (!NAME_RE.test(name)) return `--define '${arg}': '${name}' is not a symbol name (letters, digits, '_' and '.', not starting with a digit)`;
  if (regIndex(name) !== undefined) return `--define '${arg}': '${name}' is a register name`;
  const neg = text.startsWith('-');
  const v = VALUE_RE.test(text) ? (neg ? -BigInt(text.slice(1)) : BigInt(text)) : undefined;
  if (v === undefined || v < -(2n ** 31n) || v > 2n ** 32n - 1n) {
    return `--define '${arg}': VALUE must be an integer (decimal or 0x hex) from -0x80000000 to 0xffffffff`;
  }
  return [name, Number(BigInt.asUintN(32, v))];
}

/** Parse the arguments after `asm`; a string is the error line. */
export function parseAsmArgs(args: readonly string[]): AsmArgs | 'help' | string {
  let disasm = false;
  let scenario: string | undefined;
  const defines = new Map<string, number>();
  const files: string[] = [];
  let flagsDone = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const value = (): string | undefined => (flag !== a ? a.slice(eq + 1) : args[++i]);
    if (flagsDone || !a.startsWith('-') || a === '-') files.push(a);
    else if (a === '--') flagsDone = true;
    else if (a === '--disasm') disasm = true;
    else if (a === '--help' || a === '-h') return 'help';
    else if (flag === '--scenario') {
      const v = value();
      if (v === undefined || v === '') return `--scenario needs a built-in name or a .toml file (${USAGE})`;
      if (scenario !== undefined) return '--scenario given twice';
      scenario = v;
    } else if (flag === '--define') {
      const v = value();
      if (v === undefined) return `--define needs NAME=VALUE (${USAGE})`;
      const d = parseDefine(v);
      if (typeof d === 'string') return d;
      defines.delete(d[0]);
      defines.set(d[0], d[1]);
    } else return `unknown flag '${a}' (${USAGE})`;
  }
  if (files.length === 0) return `missing FILE argument (${USAGE})`;
  if (files.length > 1) return `expected one FILE, got ${files.length} (${USAGE})`;
  return { file: files[0], disasm, scenario, defines };
}

/** The scenario's predefined symbols for the domain whose program is `file` (else the first domain's). */
function scenarioSymbols(scenario: string, file: string): Map<string, number> {
  const sc = loadScenario(scenario);
  const want = resolve(file);
  const i = Math.max(0, sc.domains.findIndex((_, k) => resolve(domainProgramPath(sc, k)) === want));
  return domainSymbols(sc, i);
}

const ADDR_W = 8;
const CODE_W = 17;  // "WWWWWWWW WWWWWWWW"
const BYTES_PER_ROW = 6;  // "xx xx xx xx xx xx" fills CODE_W
const WORDS_PER_ROW = 2;
/** Rows shown for one data line before the rest is summarised (a `.space 4096` is not 700 rows of zeros). */
const MAX_ROWS = 4;

function hex8(v: number): string {
  return (v >>> 0).toString(16).padStart(8, '0');
}

function u32At(image: Uint8Array, addr: number): number {
  return (image[addr] | (image[addr + 1] << 8) | (image[addr + 2] << 16) | (image[addr + 3] << 24)) >>> 0;
}

/** Rows of hex shown for one line at most; the rest is summed up in one row. */
const MAX_ROWS_PER_LINE = 8;

/** The hex column of one line, as rows of [address, code]. */
function codeRows(prog: AsmProgram, l: AsmLine): [number, string][] {
  const unit = l.kind === 'bytes' ? 1 : 4;
  const perRow = l.kind === 'bytes' ? BYTES_PER_ROW : WORDS_PER_ROW;
  const rows: [number, string][] = [];
  for (let off = 0; off < l.size; off += unit * perRow) {
    if (rows.length === MAX_ROWS_PER_LINE) {
      // A large `.space` or table: the listing shows its start, not megabytes of hex.
      rows.push([l.addr + off, `... ${l.size - off} more bytes`]);
      break;
    }
    const cells: string[] = [];
    for (let k = off; k < Math.min(l.size, off + unit * perRow); k += unit) {
      const a = l.addr + k;
      cells.push(unit === 1 ? prog.image[a].toString(16).padStart(2, '0') : hex8(u32At(prog.image, a)));
    }
    rows.push([l.addr + off, cells.join(' ')]);
  }
  return rows;
}

function row(addr: number | undefined, code: string, text: string): string {
  const a = addr === undefined ? ' '.repeat(ADDR_W) : hex8(addr);
  return `${a}  ${code.padEnd(CODE_W)}  ${text}`.trimEnd();
}

function lineText(prog: AsmProgram, l: AsmLine, disasm: boolean, names: ReadonlyMap<number, string>): string {
  if (!disasm || l.kind !== 'insn') return l.source;
  const tail: [number, number] | undefined = l.size > 8 ? [u32At(prog.image, l.addr + 8), u32At(prog.image, l.addr + 12)] : undefined;
  return disassemble(u32At(prog.image, l.addr), u32At(prog.image, l.addr + 4), names, tail);
}

function listLine(prog: AsmProgram, l: AsmLine, disasm: boolean, names: ReadonlyMap<number, string>): string[] {
  const text = lineText(prog, l, disasm, names);
  if (l.size === 0) return [row(l.addr, '', text)];
  const rows = codeRows(prog, l);
  const out = rows.slice(0, MAX_ROWS).map(([a, code], i) => row(a, code, i === 0 ? text : ''));
  if (rows.length > MAX_ROWS) {
    const shown = rows[MAX_ROWS][0] - l.addr;
    out.push(row(undefined, `... ${l.size - shown} more bytes`, ''));
  }
  return out;
}

function symbolTable(title: string, entries: Iterable<[string, number]>): string[] {
  const sorted = [...entries].sort(([n1, v1], [n2, v2]) => v1 - v2 || (n1 < n2 ? -1 : n1 > n2 ? 1 : 0));
  if (sorted.length === 0) return [];
  return ['', `${title}:`, ...sorted.map(([n, v]) => `  ${hex8(v)}  ${n}`)];
}

/** First label for each address, so `jmp` targets disassemble to names. */
function namesByAddr(labels: ReadonlyMap<string, number>): Map<number, string> {
  const m = new Map<number, string>();
  for (const [n, a] of labels) if (!m.has(a)) m.set(a, n);
  return m;
}

/** The whole listing: every source line (an included file's lines after its `.include`), then the symbol tables. */
export function formatListing(prog: AsmProgram, disasm: boolean): string[] {
  const bySeq = new Map(prog.lines.map((l) => [l.seq, l]));
  const names = namesByAddr(prog.labels);
  const out = prog.source.flatMap((s, i) => {
    const l = bySeq.get(i);
    return l === undefined ? [row(undefined, '', s.text)] : listLine(prog, l, disasm, names);
  });
  // A trailing newline in the file is not a line of its own in the listing.
  while (out.length > 0 && out[out.length - 1] === '') out.pop();
  return [...out, ...symbolTable('symbols', prog.labels), ...symbolTable('constants', prog.constants)];
}

function errnoText(e: unknown): string {
  if (e instanceof Error && 'code' in e && typeof e.code === 'string') {
    return e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'is a directory' : e.code;
  }
  return e instanceof Error ? e.message : String(e);
}

export async function asmCommand(args: string[], io: AsmIo = STDIO): Promise<number> {
  const parsed = parseAsmArgs(args);
  if (parsed === 'help') { io.out(`${USAGE}\n`); return EXIT_OK; }
  if (typeof parsed === 'string') { io.err(`vcpulab asm: ${parsed}\n`); return EXIT_BAD_INPUT; }
  let source: string;
  try {
    source = await readFile(parsed.file, 'utf8');
  } catch (e) {
    io.err(`vcpulab asm: cannot read '${parsed.file}': ${errnoText(e)}\n`);
    return EXIT_BAD_INPUT;
  }
  try {
    const predefined = parsed.scenario === undefined ? new Map<string, number>() : scenarioSymbols(parsed.scenario, parsed.file);
    for (const [k, v] of parsed.defines) predefined.set(k, v);
    const prog = assemble(source, parsed.file, predefined);
    io.out(`${formatListing(prog, parsed.disasm).join('\n')}\n`);
    return EXIT_OK;
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    io.err(`${e.message}\n`);
    return EXIT_BAD_INPUT;
  }
}
