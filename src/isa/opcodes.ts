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
// When neither the displacement nor the value fits in 16 signed bits the assembler refuses it
// ("use a register"), the one place where the encoding narrows the text syntax.

export const REG_NAMES = [
  'eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
] as const;
export type RegName = (typeof REG_NAMES)[number];
/** Register indices in ISA order. */
export const REG_EAX = 0, REG_ECX = 1, REG_EDX = 2, REG_EBX = 3, REG_ESP = 4, REG_EBP = 5,
  REG_ESI = 6, REG_EDI = 7;
/** Reads as 0; only valid in field b. The register file has 17 slots so R[REG_ZERO] needs no branch. */
export const REG_ZERO = 16;
export const REG_FILE_SLOTS = 17;

export const INSN_BYTES = 8;

// Opcodes. Numbering is part of the binary format: append, never renumber.
export const OP_NOP = 0, OP_HLT = 1, OP_UD2 = 2, OP_CPUID = 3, OP_RDTSC = 4, OP_RDMSR = 5,
  OP_WRMSR = 6, OP_CLI = 7, OP_STI = 8, OP_IRET = 9, OP_RET = 10, OP_PUSHF = 11, OP_POPF = 12,
  OP_MFENCE = 13, OP_LFENCE = 14, OP_PAUSE = 15, OP_VMCALL = 16, OP_VMFUNC = 17,
  OP_MAGIC = 18,     // imm32 = service number
  OP_INT = 19,       // imm32 = vector
  OP_LIDT = 20,      // src
  OP_IN = 21,        // a <- port imm32
  OP_OUT = 22,       // port imm32 <- a
  OP_MOV = 23,       // a <- src
  OP_LD = 24,        // a <- [R[b]+imm32]            (32-bit, 4-aligned)
  OP_ST = 25,        // [R[b]+imm32] <- a
  OP_ST_SD = 26,     // [R[b]+i16] <- imm32
  OP_ST_SI = 27,     // [R[b]+imm32] <- i16
  OP_LDB = 28,       // a <- zero-extended byte [R[b]+imm32]
  OP_STB = 29,       // byte [R[b]+imm32] <- low byte of a
  OP_ADD = 30, OP_SUB = 31, OP_AND = 32, OP_OR = 33, OP_XOR = 34, OP_SHL = 35, OP_SHR = 36,
  OP_SAR = 37, OP_IMUL = 38, OP_CMP = 39, OP_TEST = 40,   // a op= src
  OP_INC = 41, OP_DEC = 42, OP_NEG = 43, OP_NOT = 44,      // a
  OP_JMP = 45, OP_JZ = 46, OP_JNZ = 47, OP_JL = 48, OP_JLE = 49, OP_JG = 50, OP_JGE = 51,
  OP_JB = 52, OP_JBE = 53, OP_JA = 54, OP_JAE = 55,        // target = src
  OP_CALL = 56,      // target = src
  OP_PUSH = 57,      // src
  OP_POP = 58,       // a
  OP_XCHG = 59,      // [m] <-> a
  OP_XADD = 60,      // lock xadd [m], a
  OP_CMPXCHG = 61,   // lock cmpxchg [m], a
  OP_LADD = 62, OP_LOR = 63, OP_LAND = 64,                 // lock op [m], a
  OP_LADD_SD = 65, OP_LADD_SI = 66, OP_LOR_SD = 67, OP_LOR_SI = 68, OP_LAND_SD = 69, OP_LAND_SI = 70;
export const OP_COUNT = 71;

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

/** Conditional jumps by mnemonic, so tests and the interpreter agree on one list. */
export const JCC_OPS = [OP_JZ, OP_JNZ, OP_JL, OP_JLE, OP_JG, OP_JGE, OP_JB, OP_JBE, OP_JA, OP_JAE] as const;
