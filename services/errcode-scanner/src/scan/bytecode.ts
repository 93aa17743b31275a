// Walking a method's bytecode in place: instruction boundaries, operands and branch targets are
// read straight from the code bytes, so no object is made per instruction.

/** Bytecode that cannot be decoded: the class is reported as malformed with this reason. */
export class BadBytecodeError extends Error {}

// Operand bytes per opcode 0–201 (JVMS §6.5); -1: variable (tableswitch, lookupswitch, wide).
const OPERAND_BYTES: number[] = Array.from({ length: 202 }, (_, op) => {
  if (op === 16 || op === 18 || (op >= 21 && op <= 25) || (op >= 54 && op <= 58) || op === 169 || op === 188) return 1;
  if (op === 17 || op === 19 || op === 20 || op === 132 || (op >= 153 && op <= 168) || (op >= 178 && op <= 184)) return 2;
  if (op === 187 || op === 189 || op === 192 || op === 193 || op === 198 || op === 199) return 2;
  if (op === 197) return 3;
  if (op === 185 || op === 186 || op === 200 || op === 201) return 4;
  if (op === 170 || op === 171 || op === 196) return -1;
  return 0;
});
export const TABLESWITCH = 170;
export const LOOKUPSWITCH = 171;
const WIDE = 196;
const IINC = 132;

export const s16 = (code: ArrayLike<number>, i: number) => (((code[i] << 8) | code[i + 1]) << 16) >> 16;
export const u16 = (code: ArrayLike<number>, i: number) => (code[i] << 8) | code[i + 1];
export const s32 = (code: ArrayLike<number>, i: number) => (code[i] << 24) | (code[i + 1] << 16) | (code[i + 2] << 8) | code[i + 3];

/** Where the operands of the instruction at `pc` start (after a switch's padding). */
export function operandStart(code: ArrayLike<number>, pc: number): number {
  const op = code[pc];
  return op === TABLESWITCH || op === LOOKUPSWITCH ? pc + 1 + ((4 - ((pc + 1) % 4)) % 4) : pc + 1;
}

/**
 * Where the instruction after the one at `pc` starts, every length checked against the code: a
 * switch whose tampered range or pair count claims more targets than the method has bytes is
 * refused, never iterated over.
 */
export function nextPc(code: ArrayLike<number>, pc: number): number {
  const end = code.length;
  const opcode = code[pc];
  let size = OPERAND_BYTES[opcode];
  if (size === undefined) throw new BadBytecodeError(`unknown opcode ${opcode} at pc ${pc}`);
  const start = operandStart(code, pc);
  if (opcode === TABLESWITCH || opcode === LOOKUPSWITCH) {
    if (start + (opcode === TABLESWITCH ? 12 : 8) > end) throw new BadBytecodeError(`truncated switch at pc ${pc}`);
    if (opcode === TABLESWITCH) {
      const low = s32(code, start + 4);
      const high = s32(code, start + 8);
      const targets = high - low + 1;
      if (low > high || start + 12 + targets * 4 > end)
        throw new BadBytecodeError(`tableswitch at pc ${pc} has a range ${low}..${high} that does not fit in the method's code`);
      size = 12 + targets * 4;
    } else {
      const pairs = s32(code, start + 4);
      if (pairs < 0 || start + 8 + pairs * 8 > end)
        throw new BadBytecodeError(`lookupswitch at pc ${pc} claims ${pairs} pairs that do not fit in the method's code`);
      size = 8 + pairs * 8;
    }
  } else if (opcode === WIDE) size = code[start] === IINC ? 5 : 3;
  if (start + size > end) throw new BadBytecodeError(`instruction at pc ${pc} runs past the end of the code`);
  return start + size;
}

/** Checks that a method's code decodes to the end (see {@link nextPc}); throws {@link BadBytecodeError}. */
export function verify(code: ArrayLike<number>): void {
  for (let pc = 0; pc < code.length; pc = nextPc(code, pc));
}

/**
 * Calls `visit` with every branch target of the instruction at `pc` (none for other instructions)
 * and, for a switch's cases, the value that selects it (undefined for the default).
 */
export function forEachBranchTarget(code: ArrayLike<number>, pc: number, visit: (target: number, caseValue?: number) => void): void {
  const op = code[pc];
  if ((op >= 153 && op <= 168) || op === 198 || op === 199) visit(pc + s16(code, pc + 1));
  else if (op === 200 || op === 201) visit(pc + s32(code, pc + 1));
  else if (op === TABLESWITCH || op === LOOKUPSWITCH) {
    const at = operandStart(code, pc);
    visit(pc + s32(code, at));
    if (op === TABLESWITCH) {
      const low = s32(code, at + 4);
      for (let i = 0, n = s32(code, at + 8) - low; i <= n; i++) visit(pc + s32(code, at + 12 + i * 4), low + i);
    } else for (let i = 0, n = s32(code, at + 4); i < n; i++) visit(pc + s32(code, at + 8 + i * 8 + 4), s32(code, at + 8 + i * 8));
  }
}

/** The local variable the instruction at `pc` writes (stores and `iinc`), or -1. */
export function storeIndex(code: ArrayLike<number>, pc: number): number {
  const op = code[pc];
  if ((op >= 54 && op <= 58) || op === IINC) return code[pc + 1];
  if (op >= 59 && op <= 78) return (op - 59) % 4;
  if (op === WIDE && ((code[pc + 1] >= 54 && code[pc + 1] <= 58) || code[pc + 1] === IINC)) return u16(code, pc + 2);
  return -1;
}
