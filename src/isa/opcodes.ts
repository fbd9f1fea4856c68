// Binary encoding of the vcpulab guest ISA (../shared/ISA.md is the text contract; this file is ours).
//
// Every instruction is 8 bytes, 8-aligned: two little-endian 32-bit words.
//
//   word0  bits 0..6    opcode (OP_*)
//          bits 7..10   a   : a register 0..15 (destination, or the register operand of a store/out)
//          bits 11..15  b   : a register 0..16; 16 is REG_ZERO, which always reads 0
//          bits 16..31  i16 : signed 16-bit immediate (second immediate of the [m], imm forms; Jcc unused)
//   word1  imm32        : 32-bit immediate
//
// One rule gives every "r/imm" source and every memory address: value = R[b] + imm32.
//   `add eax, ebx`   -> b = ebx, imm32 = 0          `add eax, 5`     -> b = ZERO, imm32 = 5
//   `mov eax, [esi+8]` -> b = esi, imm32 = 8         `mov eax, [0x100]` -> b = ZERO, imm32 = 0x100
// so the interpreter never branches on an operand kind. A store of an immediate to memory needs two
// immediates; it has two encodings and the assembler takes the one that fits:
//   *_SD ("short displacement"): address = R[b] + i16,   value = imm32
//   *_SI ("short immediate"):    address = R[b] + imm32, value = i16 (sign-extended)
// When neither fits in 16 signed bits (`mov [APIC+0x310], 0xff000000`) the assembler takes the wide form:
//
// Wide forms (ST_W, LADD_W, LOR_W, LAND_W): 16 bytes, two slots, still 8-aligned.
//   slot 0  word0 op, a = 0, b = base register, i16 = 0     word1 disp32   (address = R[b] + disp32)
//   slot 1  word0 OP_WIDE_TAIL, every other field 0         word1 value32
// Slot 0 decodes with the same rule as every other instruction, so `src` is already the address. The tail
// carries an opcode of its own so that nothing reads it as an instruction: executed (a jump into the middle
// of a wide instruction) it is #UD, and the disassembler prints it only as part of its head. Only these
// forms are wide; every other instruction, and every jump target computation, stays 8 bytes.

export const REG_NAMES = [
  'eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
] as const;
export type RegName = (typeof REG_NAMES)[number];
/** Register indices in ISA order. */
export const enum Reg { EAX = 0, ECX = 1, EDX = 2, EBX = 3, ESP = 4, EBP = 5, ESI = 6, EDI = 7 }
export const REG_EAX = Reg.EAX, REG_ECX = Reg.ECX, REG_EDX = Reg.EDX, REG_EBX = Reg.EBX, REG_ESP = Reg.ESP,
  REG_EBP = Reg.EBP, REG_ESI = Reg.ESI, REG_EDI = Reg.EDI;
/** Reads as 0; only valid in field b. The register file has 17 slots so R[REG_ZERO] needs no branch. */
export const REG_ZERO = 16;
export const REG_FILE_SLOTS = 17;

export const INSN_BYTES = 8;

// Opcodes. Numbering is part of the binary format: append, never renumber.
// One `const enum` is the source of the numbers: tsc inlines its members as literals, which lets the
// interpreter's switch compile to a jump table (imported `const` bindings are loads V8 cannot fold).
// The OP_* names below are the same values for code that prefers plain constants.
export const enum Op {
  NOP = 0,
  HLT = 1,
  UD2 = 2,
  CPUID = 3,
  RDTSC = 4,
  RDMSR = 5,
  WRMSR = 6,
  CLI = 7,
  STI = 8,
  IRET = 9,
  RET = 10,
  PUSHF = 11,
  POPF = 12,
  MFENCE = 13,
  LFENCE = 14,
  PAUSE = 15,
  VMCALL = 16,
  VMFUNC = 17,
  /** imm32 = service number */
  MAGIC = 18,
  /** imm32 = vector */
  INT = 19,
  /** src */
  LIDT = 20,
  /** a <- port imm32 */
  IN = 21,
  /** port imm32 <- a */
  OUT = 22,
  /** a <- src */
  MOV = 23,
  /** a <- [R[b]+imm32] (32-bit, 4-aligned) */
  LD = 24,
  /** [R[b]+imm32] <- a */
  ST = 25,
  /** [R[b]+i16] <- imm32 */
  ST_SD = 26,
  /** [R[b]+imm32] <- i16 */
  ST_SI = 27,
  /** a <- zero-extended byte [R[b]+imm32] */
  LDB = 28,
  /** byte [R[b]+imm32] <- low byte of a */
  STB = 29,
  /** a op= src (through TEST) */
  ADD = 30,
  SUB = 31,
  AND = 32,
  OR = 33,
  XOR = 34,
  SHL = 35,
  SHR = 36,
  SAR = 37,
  IMUL = 38,
  CMP = 39,
  TEST = 40,
  /** a (through NOT) */
  INC = 41,
  DEC = 42,
  NEG = 43,
  NOT = 44,
  /** target = src (through JAE) */
  JMP = 45,
  JZ = 46,
  JNZ = 47,
  JL = 48,
  JLE = 49,
  JG = 50,
  JGE = 51,
  JB = 52,
  JBE = 53,
  JA = 54,
  JAE = 55,
  /** target = src */
  CALL = 56,
  /** src */
  PUSH = 57,
  /** a */
  POP = 58,
  /** [m] <-> a */
  XCHG = 59,
  /** lock xadd [m], a */
  XADD = 60,
  /** lock cmpxchg [m], a */
  CMPXCHG = 61,
  /** lock op [m], a (LOR, LAND too) */
  LADD = 62,
  LOR = 63,
  LAND = 64,
  /** lock op [m], imm (the _SD/_SI pairs: see the header) */
  LADD_SD = 65,
  LADD_SI = 66,
  LOR_SD = 67,
  LOR_SI = 68,
  LAND_SD = 69,
  LAND_SI = 70,
  /** [R[b]+imm32] <- the tail's imm32 (wide: 16 bytes, see the header) */
  ST_W = 71,
  /** lock op [R[b]+imm32], the tail's imm32 (wide) */
  LADD_W = 72,
  LOR_W = 73,
  LAND_W = 74,
  /** Second slot of a wide instruction: never executed (#UD), its imm32 is the head's value. */
  WIDE_TAIL = 75,
}
export const OP_NOP = Op.NOP;
export const OP_HLT = Op.HLT;
export const OP_UD2 = Op.UD2;
export const OP_CPUID = Op.CPUID;
export const OP_RDTSC = Op.RDTSC;
export const OP_RDMSR = Op.RDMSR;
export const OP_WRMSR = Op.WRMSR;
export const OP_CLI = Op.CLI;
export const OP_STI = Op.STI;
export const OP_IRET = Op.IRET;
export const OP_RET = Op.RET;
export const OP_PUSHF = Op.PUSHF;
export const OP_POPF = Op.POPF;
export const OP_MFENCE = Op.MFENCE;
export const OP_LFENCE = Op.LFENCE;
export const OP_PAUSE = Op.PAUSE;
export const OP_VMCALL = Op.VMCALL;
export const OP_VMFUNC = Op.VMFUNC;
export const OP_MAGIC = Op.MAGIC;
export const OP_INT = Op.INT;
export const OP_LIDT = Op.LIDT;
export const OP_IN = Op.IN;
export const OP_OUT = Op.OUT;
export const OP_MOV = Op.MOV;
export const OP_LD = Op.LD;
export const OP_ST = Op.ST;
export const OP_ST_SD = Op.ST_SD;
export const OP_ST_SI = Op.ST_SI;
export const OP_LDB = Op.LDB;
export const OP_STB = Op.STB;
export const OP_ADD = Op.ADD;
export const OP_SUB = Op.SUB;
export const OP_AND = Op.AND;
export const OP_OR = Op.OR;
export const OP_XOR = Op.XOR;
export const OP_SHL = Op.SHL;
export const OP_SHR = Op.SHR;
export const OP_SAR = Op.SAR;
export const OP_IMUL = Op.IMUL;
export const OP_CMP = Op.CMP;
export const OP_TEST = Op.TEST;
export const OP_INC = Op.INC;
export const OP_DEC = Op.DEC;
export const OP_NEG = Op.NEG;
export const OP_NOT = Op.NOT;
export const OP_JMP = Op.JMP;
export const OP_JZ = Op.JZ;
export const OP_JNZ = Op.JNZ;
export const OP_JL = Op.JL;
export const OP_JLE = Op.JLE;
export const OP_JG = Op.JG;
export const OP_JGE = Op.JGE;
export const OP_JB = Op.JB;
export const OP_JBE = Op.JBE;
export const OP_JA = Op.JA;
export const OP_JAE = Op.JAE;
export const OP_CALL = Op.CALL;
export const OP_PUSH = Op.PUSH;
export const OP_POP = Op.POP;
export const OP_XCHG = Op.XCHG;
export const OP_XADD = Op.XADD;
export const OP_CMPXCHG = Op.CMPXCHG;
export const OP_LADD = Op.LADD;
export const OP_LOR = Op.LOR;
export const OP_LAND = Op.LAND;
export const OP_LADD_SD = Op.LADD_SD;
export const OP_LADD_SI = Op.LADD_SI;
export const OP_LOR_SD = Op.LOR_SD;
export const OP_LOR_SI = Op.LOR_SI;
export const OP_LAND_SD = Op.LAND_SD;
export const OP_LAND_SI = Op.LAND_SI;
export const OP_ST_W = Op.ST_W;
export const OP_LADD_W = Op.LADD_W;
export const OP_LOR_W = Op.LOR_W;
export const OP_LAND_W = Op.LAND_W;
export const OP_WIDE_TAIL = Op.WIDE_TAIL;
export const OP_COUNT = 76;

/** Bytes of a wide instruction (head and tail slots). */
export const WIDE_INSN_BYTES = 16;

/** Operand shapes, used by the assembler and disassembler (the interpreter never looks at them). */
export type Form =
  | 'none'      // hlt
  | 'imm'       // magic 1          -> imm32
  | 'src'       // push eax | push 5 | jmp label | jmp eax
  | 'reg'       // pop eax          -> a
  | 'reg_src'   // mov eax, ebx | add eax, 5
  | 'reg_mem'   // mov eax, [m]
  | 'mem_reg'   // mov [m], eax | xchg [m], eax
  | 'mem_sd'    // mov [m], imm with a 16-bit displacement
  | 'mem_si'    // mov [m], imm with a 16-bit immediate
  | 'mem_wide'  // mov [m], imm with a 32-bit displacement and a 32-bit immediate (16 bytes)
  | 'tail'      // the second slot of a wide instruction (no text of its own)
  | 'reg_port'  // in eax, 0xE9
  | 'port_reg'; // out 0xE9, eax

export interface OpInfo {
  readonly op: number;
  /** Mnemonic as printed by the disassembler (lower case, may contain a `lock ` prefix). */
  readonly mnemonic: string;
  readonly form: Form;
}

const T: OpInfo[] = [];
function def(op: number, mnemonic: string, form: Form): void {
  if (T[op] !== undefined) throw new Error(`vcpulab bug: opcode ${op} defined twice`);
  T[op] = { op, mnemonic, form };
}
def(OP_NOP, 'nop', 'none'); def(OP_HLT, 'hlt', 'none'); def(OP_UD2, 'ud2', 'none');
def(OP_CPUID, 'cpuid', 'none'); def(OP_RDTSC, 'rdtsc', 'none'); def(OP_RDMSR, 'rdmsr', 'none');
def(OP_WRMSR, 'wrmsr', 'none'); def(OP_CLI, 'cli', 'none'); def(OP_STI, 'sti', 'none');
def(OP_IRET, 'iret', 'none'); def(OP_RET, 'ret', 'none'); def(OP_PUSHF, 'pushf', 'none');
def(OP_POPF, 'popf', 'none'); def(OP_MFENCE, 'mfence', 'none'); def(OP_LFENCE, 'lfence', 'none');
def(OP_PAUSE, 'pause', 'none'); def(OP_VMCALL, 'vmcall', 'none'); def(OP_VMFUNC, 'vmfunc', 'none');
def(OP_MAGIC, 'magic', 'imm'); def(OP_INT, 'int', 'imm'); def(OP_LIDT, 'lidt', 'src');
def(OP_IN, 'in', 'reg_port'); def(OP_OUT, 'out', 'port_reg');
def(OP_MOV, 'mov', 'reg_src'); def(OP_LD, 'mov', 'reg_mem'); def(OP_ST, 'mov', 'mem_reg');
def(OP_ST_SD, 'mov', 'mem_sd'); def(OP_ST_SI, 'mov', 'mem_si');
def(OP_LDB, 'movb', 'reg_mem'); def(OP_STB, 'movb', 'mem_reg');
def(OP_ADD, 'add', 'reg_src'); def(OP_SUB, 'sub', 'reg_src'); def(OP_AND, 'and', 'reg_src');
def(OP_OR, 'or', 'reg_src'); def(OP_XOR, 'xor', 'reg_src'); def(OP_SHL, 'shl', 'reg_src');
def(OP_SHR, 'shr', 'reg_src'); def(OP_SAR, 'sar', 'reg_src'); def(OP_IMUL, 'imul', 'reg_src');
def(OP_CMP, 'cmp', 'reg_src'); def(OP_TEST, 'test', 'reg_src');
def(OP_INC, 'inc', 'reg'); def(OP_DEC, 'dec', 'reg'); def(OP_NEG, 'neg', 'reg'); def(OP_NOT, 'not', 'reg');
def(OP_JMP, 'jmp', 'src'); def(OP_JZ, 'jz', 'src'); def(OP_JNZ, 'jnz', 'src'); def(OP_JL, 'jl', 'src');
def(OP_JLE, 'jle', 'src'); def(OP_JG, 'jg', 'src'); def(OP_JGE, 'jge', 'src'); def(OP_JB, 'jb', 'src');
def(OP_JBE, 'jbe', 'src'); def(OP_JA, 'ja', 'src'); def(OP_JAE, 'jae', 'src');
def(OP_CALL, 'call', 'src'); def(OP_PUSH, 'push', 'src'); def(OP_POP, 'pop', 'reg');
def(OP_XCHG, 'xchg', 'mem_reg'); def(OP_XADD, 'lock xadd', 'mem_reg');
def(OP_CMPXCHG, 'lock cmpxchg', 'mem_reg');
def(OP_LADD, 'lock add', 'mem_reg'); def(OP_LOR, 'lock or', 'mem_reg'); def(OP_LAND, 'lock and', 'mem_reg');
def(OP_LADD_SD, 'lock add', 'mem_sd'); def(OP_LADD_SI, 'lock add', 'mem_si');
def(OP_LOR_SD, 'lock or', 'mem_sd'); def(OP_LOR_SI, 'lock or', 'mem_si');
def(OP_LAND_SD, 'lock and', 'mem_sd'); def(OP_LAND_SI, 'lock and', 'mem_si');
def(OP_ST_W, 'mov', 'mem_wide'); def(OP_LADD_W, 'lock add', 'mem_wide');
def(OP_LOR_W, 'lock or', 'mem_wide'); def(OP_LAND_W, 'lock and', 'mem_wide');
def(OP_WIDE_TAIL, '.wide_tail', 'tail');
for (let i = 0; i < OP_COUNT; i++) if (T[i] === undefined) throw new Error(`vcpulab bug: opcode ${i} undefined`);

export const OPS: readonly OpInfo[] = T;

/** Aliases accepted by the assembler; the disassembler prints the canonical name. */
export const MNEMONIC_ALIASES: Readonly<Record<string, string>> = { je: 'jz', jne: 'jnz' };

// ---- field packing (pure) ----
export function encodeWord0(op: number, a: number, b: number, i16: number): number {
  return (op & 0x7f) | ((a & 15) << 7) | ((b & 31) << 11) | ((i16 & 0xffff) << 16);
}
export function decodeOp(w0: number): number { return w0 & 0x7f; }
export function decodeA(w0: number): number { return (w0 >>> 7) & 15; }
export function decodeB(w0: number): number { return (w0 >>> 11) & 31; }
export function decodeI16(w0: number): number { return w0 >> 16; }
export function fitsI16(v: number): boolean { return v >= -0x8000 && v <= 0x7fff; }
/** Is `op` the head of a wide (16-byte) instruction? */
export function isWideOp(op: number): boolean { return op >= OP_ST_W && op <= OP_LAND_W; }
/** Bytes of the instruction whose first word is w0 (8, or 16 for a wide head). */
/** The first word of a wide instruction's tail slot. */
export const WIDE_TAIL_W0 = OP_WIDE_TAIL;

/** Conditional jumps by mnemonic, so tests and the interpreter agree on one list. */
export const JCC_OPS = [OP_JZ, OP_JNZ, OP_JL, OP_JLE, OP_JG, OP_JGE, OP_JB, OP_JBE, OP_JA, OP_JAE] as const;
