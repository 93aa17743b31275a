import { forEachBranchTarget, LOOKUPSWITCH, nextPc, operandStart, s16, s32, storeIndex, TABLESWITCH, u16 } from "./bytecode.js";
import type { ConstantPool } from "./constant-pool.js";
import { isWideType, parameterTypes, returnType, STRING } from "./descriptor.js";
import { type ArithOp, type CallOp, type Cond, isWide, NULL, sameVal, THIS, UNKNOWN, UNKNOWN_WIDE, type Val } from "./values.js";

/**
 * A place where an object may be built: `new X(...)` (kind "new"), a constructor's own
 * `super(...)`/`this(...)` call ("init-this"), a static method call ("static") or another call
 * with a receiver ("call": a helper that may build one), with the abstract values of its arguments.
 * Calls are kept only when some argument is known at all.
 */
export interface Site {
  kind: "new" | "init-this" | "static" | "call";
  owner: string;
  name: string;
  desc: string;
  args: Val[];
  /** The receiver of a "call". */
  recv?: Val;
  op?: CallOp;
  line?: number;
}

export interface MethodFacts {
  sites: Site[];
  /** `this.f = v` in a constructor, in order. */
  fieldStores: Array<[string, Val]>;
  /** `Owner.f = v` for the method's own class (read from `<clinit>`). */
  staticStores: Array<[string, Val]>;
  /** Values returned by `areturn`/`ireturn`/... */
  returns: Val[];
}

export interface MethodContext {
  cp: ConstantPool;
  className: string;
  name: string;
  desc: string;
  isStatic: boolean;
  maxLocals: number;
  handlers: number[];
  lineOf(pc: number): number | undefined;
  /** The constant arguments of a bootstrap method (a string concatenation's recipe). */
  bootstrapArgs(index: number): Val[];
}

/** The branches taken to reach a state, newest first (shared by the states that branch from it). */
interface Guard {
  pc: number;
  cond: Cond;
  taken: boolean;
  parent: Guard | null;
  depth: number;
}

interface State {
  stack: Val[];
  locals: Val[];
  guard: Guard | null;
}

const s8 = (b: number) => (b << 24) >> 24;

const depthOf = (g: Guard | null) => (g ? g.depth : 0);

const MAX_SELECT_DEPTH = 4;
const selectDepth = (v: Val): number => (v.k === "select" ? 1 + Math.max(selectDepth(v.t), selectDepth(v.f)) : 0);

/**
 * Joins two states. Where they come from the two sides of one branch, a value that differs
 * becomes `cond ? taken : notTaken` (up to a few levels deep); otherwise it becomes a join:
 * unknown, but still made from what met there (a message looked up by code stays tied to it).
 */
function merge(a: State, b: State): State {
  let x = a.guard;
  let y = b.guard;
  while (depthOf(x) > depthOf(y)) x = (x as Guard).parent;
  while (depthOf(y) > depthOf(x)) y = (y as Guard).parent;
  while (x !== y) {
    x = (x as Guard).parent;
    y = (y as Guard).parent;
  }
  const common = x;
  const ga = a.guard;
  const gb = b.guard;
  const split = ga && gb && ga.parent === common && gb.parent === common && ga.pc === gb.pc && ga.taken !== gb.taken ? ga : undefined;
  const join = (p: Val[], q: Val[]): Val[] => {
    const n = Math.min(p.length, q.length);
    const out = new Array<Val>(n);
    for (let i = 0; i < n; i++) {
      const u = p[i];
      const v = q[i];
      const w = isWide(u) || undefined;
      if (sameVal(u, v)) out[i] = u;
      else if (u.k === "unknown" || v.k === "unknown") out[i] = w ? UNKNOWN_WIDE : UNKNOWN;
      else if (split && selectDepth(u) + selectDepth(v) < MAX_SELECT_DEPTH) {
        const [t, f] = split.taken ? [u, v] : [v, u];
        out[i] = { k: "select", cond: split.cond, t, f, w } as Val;
      } else out[i] = { k: "join", of: [u, v], w } as Val;
    }
    return out;
  };
  return { stack: join(a.stack, b.stack), locals: join(a.locals, b.locals), guard: common };
}

const ARITH: ArithOp[] = ["add", "sub", "mul", "div", "rem"];
const CMP: Cond["op"][] = ["eq", "ne", "lt", "ge", "gt", "le"];

/** Integer arithmetic on two constants, as the JVM does it (32-bit wrap, or 64-bit for longs); undefined when it throws. */
export function fold(op: ArithOp, a: string, b: string | undefined, wide: boolean): string | undefined {
  if (wide) {
    const x = BigInt(a);
    const y = BigInt(b ?? "0");
    const r =
      op === "add"
        ? x + y
        : op === "sub"
          ? x - y
          : op === "mul"
            ? x * y
            : op === "neg"
              ? -x
              : op === "div"
                ? y === 0n
                  ? undefined
                  : x / y
                : op === "rem"
                  ? y === 0n
                    ? undefined
                    : x % y
                  : op === "and"
                    ? x & y
                    : op === "or"
                      ? x | y
                      : op === "xor"
                        ? x ^ y
                        : op === "shl"
                          ? x << (y & 63n)
                          : op === "shr"
                            ? x >> (y & 63n)
                            : BigInt.asUintN(64, x) >> (y & 63n);
    return r === undefined ? undefined : String(BigInt.asIntN(64, r));
  }
  const x = Number(a) | 0;
  const y = Number(b ?? "0") | 0;
  const r =
    op === "add"
      ? x + y
      : op === "sub"
        ? x - y
        : op === "mul"
          ? Math.imul(x, y)
          : op === "neg"
            ? -x
            : op === "div"
              ? y === 0
                ? undefined
                : Math.trunc(x / y)
              : op === "rem"
                ? y === 0
                  ? undefined
                  : x % y
                : op === "and"
                  ? x & y
                  : op === "or"
                    ? x | y
                    : op === "xor"
                      ? x ^ y
                      : op === "shl"
                        ? x << y
                        : op === "shr"
                          ? x >> y
                          : x >>> y;
  return r === undefined ? undefined : String(r | 0);
}

/** `a op b` as a value: folded when both are constants. */
function arith(op: ArithOp, a: Val, b: Val | undefined, wide: boolean): Val {
  if (a.k === "num" && (!b || b.k === "num")) {
    const v = fold(op, a.v, b?.v, wide);
    if (v !== undefined) return { k: "num", v, w: wide || undefined } as Val;
  }
  if (a.k === "unknown" || b?.k === "unknown") return wide ? UNKNOWN_WIDE : UNKNOWN;
  return { k: "op", op, a, b, w: wide || undefined } as Val;
}

/**
 * Abstract interpretation of one method's bytecode: a single forward pass simulating the
 * operand stack and locals. Where paths meet, values that differ become unknown; at loop
 * heads and exception handlers every local the method ever writes becomes unknown. That is
 * enough to recover constants passed at construction sites without guessing.
 */
export function interpret(code: ArrayLike<number>, ctx: MethodContext): MethodFacts {
  const facts: MethodFacts = { sites: [], fieldStores: [], staticStores: [], returns: [] };
  const params = parameterTypes(ctx.desc);

  const initialLocals: Val[] = new Array<Val>(Math.max(ctx.maxLocals, 1)).fill(UNKNOWN);
  let slot = 0;
  if (!ctx.isStatic) initialLocals[slot++] = THIS;
  params.forEach((t, i) => {
    initialLocals[slot] = { k: "param", i, w: isWideType(t) || undefined } as Val;
    slot += isWideType(t) ? 2 : 1;
  });

  // Per offset: a jump lands there (TARGET), a loop goes back to it (LOOP_HEAD), a handler starts
  // there (HANDLER); and the locals the method ever writes (forgotten at loop heads and handlers).
  const marks = new Uint8Array(code.length + 1);
  const written: number[] = [];
  const wrote = new Uint8Array(Math.max(ctx.maxLocals, 1) + 2);
  for (let pc = 0; pc < code.length; pc = nextPc(code, pc)) {
    const op = code[pc];
    if ((op >= 153 && op <= 168) || op === 198 || op === 199) markTarget(marks, pc, pc + s16(code, pc + 1));
    else if (op === 200 || op === 201) markTarget(marks, pc, pc + s32(code, pc + 1));
    else if (op === TABLESWITCH || op === LOOKUPSWITCH) forEachBranchTarget(code, pc, (t) => markTarget(marks, pc, t));
    const idx = storeIndex(code, pc);
    if (idx >= 0 && !wrote[idx]) {
      wrote[idx] = 1;
      written.push(idx);
    }
  }
  for (const h of ctx.handlers) if (h >= 0 && h < marks.length) marks[h] |= HANDLER;
  const pending = new Map<number, State[]>();
  const record = (target: number, st: State, guard = st.guard) => {
    const list = pending.get(target);
    const copy = { stack: st.stack.slice(), locals: st.locals.slice(), guard };
    if (list) list.push(copy);
    else pending.set(target, [copy]);
  };
  /** A conditional branch: the jump's state and the fall-through's each remember which way they went. */
  const branch = (pc: number, target: number, cond: Cond) => {
    const parent = st.guard;
    const depth = depthOf(parent) + 1;
    record(target, st, { pc, cond, taken: true, parent, depth });
    st.guard = { pc, cond, taken: false, parent, depth };
  };
  const forgetWritten = (locals: Val[]) => {
    for (const i of written) if (i < locals.length) locals[i] = UNKNOWN;
  };

  let st: State = { stack: [], locals: initialLocals, guard: null };
  let reachable = true;
  let thisInitialised = ctx.name !== "<init>";

  // Helpers close over the current state; declared once, not per instruction.
  const pop = (): Val => st.stack.pop() ?? UNKNOWN;
  const popSlots = (n: number): Val[] => {
    const out: Val[] = [];
    let taken = 0;
    while (taken < n && st.stack.length) {
      const v = pop();
      out.unshift(v);
      taken += isWide(v) ? 2 : 1;
    }
    return out;
  };
  const push = (v: Val) => {
    st.stack.push(v);
  };
  const pushAll = (...groups: Val[][]) => {
    for (const g of groups) for (const v of g) st.stack.push(v);
  };
  const load = (i: number) => st.stack.push(st.locals[i] ?? UNKNOWN);
  const store = (i: number) => {
    const v = pop();
    st.locals[i] = v;
    if (isWide(v)) st.locals[i + 1] = UNKNOWN;
  };

  for (let pc = 0, next = 0; pc < code.length; pc = next) {
    next = nextPc(code, pc);
    const mark = marks[pc];
    const incoming = mark & TARGET ? pending.get(pc) : undefined;
    if (incoming) {
      pending.delete(pc);
      let merged = reachable ? st : incoming[0];
      for (const other of reachable ? incoming : incoming.slice(1)) merged = merge(merged, other);
      st = merged;
      reachable = true;
    }
    if (mark & HANDLER) {
      st = { stack: [UNKNOWN], locals: st.locals.slice(), guard: null };
      forgetWritten(st.locals);
      reachable = true;
    } else if (mark & LOOP_HEAD || !reachable) {
      if (!reachable) st = { stack: [], locals: st.locals.slice(), guard: null };
      forgetWritten(st.locals);
      reachable = true;
    }
    const { stack, locals } = st;
    const op = code[pc];
    // Where the operands start.
    const o = operandStart(code, pc);
    if (op === 0) {
      // nop
    } else if (op === 1) push(NULL);
    else if (op >= 2 && op <= 8) push({ k: "num", v: String(op - 3) });
    else if (op === 9 || op === 10) push({ k: "num", v: String(op - 9), w: true });
    else if (op >= 11 && op <= 13) push({ k: "num", v: String(op - 11) });
    else if (op === 14 || op === 15) push({ k: "num", v: String(op - 14), w: true });
    else if (op === 16) push({ k: "num", v: String(s8(code[o])) });
    else if (op === 17) push({ k: "num", v: String(s16(code, o)) });
    else if (op === 18) push(ctx.cp.constant(code[o]));
    else if (op === 19 || op === 20) {
      const v = ctx.cp.constant(u16(code, o));
      push(op === 20 && v.k === "unknown" ? UNKNOWN_WIDE : v);
    } else if (op >= 21 && op <= 25) load(code[o]);
    else if (op >= 26 && op <= 45) load((op - 26) % 4);
    else if (op >= 46 && op <= 53) {
      pop();
      pop();
      push(op === 47 || op === 49 ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op >= 54 && op <= 58) store(code[o]);
    else if (op >= 59 && op <= 78) store((op - 59) % 4);
    else if (op >= 79 && op <= 86) {
      pop();
      pop();
      pop();
    } else if (op === 87) pop();
    else if (op === 88) popSlots(2);
    else if (op === 89) {
      const v = pop();
      push(v);
      push(v);
    } else if (op === 90) {
      const a = popSlots(1);
      const b = popSlots(1);
      pushAll(a, b, a);
    } else if (op === 91) {
      const a = popSlots(1);
      const b = popSlots(2);
      pushAll(a, b, a);
    } else if (op === 92) {
      const a = popSlots(2);
      pushAll(a, a);
    } else if (op === 93) {
      const a = popSlots(2);
      const b = popSlots(1);
      pushAll(a, b, a);
    } else if (op === 94) {
      const a = popSlots(2);
      const b = popSlots(2);
      pushAll(a, b, a);
    } else if (op === 95) {
      const a = pop();
      const b = pop();
      push(a);
      push(b);
    } else if (op >= 96 && op <= 115) {
      // add, sub, mul, div, rem for int, long, float, double
      const b = pop();
      const a = pop();
      const kind = (op - 96) % 4;
      push(kind <= 1 ? arith(ARITH[Math.floor((op - 96) / 4)], a, b, kind === 1) : kind === 3 ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op >= 116 && op <= 119) {
      const a = pop();
      push(op <= 117 ? arith("neg", a, undefined, op === 117) : op === 119 ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op >= 120 && op <= 131) {
      const b = pop();
      const a = pop();
      const name: ArithOp[] = ["shl", "shl", "shr", "shr", "ushr", "ushr", "and", "and", "or", "or", "xor", "xor"];
      push(arith(name[op - 120], a, b, (op - 120) % 2 === 1));
    } else if (op === 132) locals[code[o]] = UNKNOWN;
    else if (op >= 133 && op <= 147) {
      const a = pop();
      const wide = [133, 135, 138, 140, 141, 143].includes(op);
      // Integer conversions keep a constant (i2l, l2i, i2b, i2c, i2s); floating point is not followed.
      let v: string | undefined;
      if (a.k === "num" && /^-?\d+$/.test(a.v)) {
        const n = BigInt(a.v);
        if (op === 133) v = a.v;
        else if (op === 136) v = String(BigInt.asIntN(32, n));
        else if (op === 145) v = String(BigInt.asIntN(8, n));
        else if (op === 146) v = String(BigInt.asUintN(16, n));
        else if (op === 147) v = String(BigInt.asIntN(16, n));
      }
      push(v !== undefined ? ({ k: "num", v, w: wide || undefined } as Val) : wide ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op >= 148 && op <= 152) {
      pop();
      pop();
      push(UNKNOWN);
    } else if ((op >= 153 && op <= 158) || op === 198 || op === 199) {
      const a = pop();
      const cond: Cond = op >= 198 ? { op: op === 198 ? "eq" : "ne", a, b: NULL } : { op: CMP[op - 153], a, b: { k: "num", v: "0" } };
      branch(pc, pc + s16(code, o), cond);
    } else if (op >= 159 && op <= 166) {
      const b = pop();
      const a = pop();
      branch(pc, pc + s16(code, o), { op: op <= 164 ? CMP[op - 159] : op === 165 ? "eq" : "ne", a, b });
    } else if (op === 167 || op === 200) {
      record(pc + (op === 167 ? s16(code, o) : s32(code, o)), st);
      reachable = false;
    } else if (op === 168 || op === 201) {
      push(UNKNOWN);
      record(pc + (op === 168 ? s16(code, o) : s32(code, o)), st);
      pop();
    } else if (op === 169) reachable = false;
    else if (op === 170 || op === 171) {
      pop();
      forEachBranchTarget(code, pc, (t) => record(t, st));
      reachable = false;
    } else if (op >= 172 && op <= 177) {
      if (op !== 177) facts.returns.push(pop());
      reachable = false;
    } else if (op === 178) {
      const f = ctx.cp.memberRef(u16(code, o));
      push({ k: "static", owner: f.owner, name: f.name, w: isWideType(f.desc) || undefined } as Val);
    } else if (op === 179) {
      const f = ctx.cp.memberRef(u16(code, o));
      const v = pop();
      if (ctx.name === "<clinit>" && f.owner === ctx.className) facts.staticStores.push([f.name, v]);
    } else if (op === 180) {
      const f = ctx.cp.memberRef(u16(code, o));
      const recv = pop();
      push(
        recv.k === "unknown"
          ? isWideType(f.desc)
            ? UNKNOWN_WIDE
            : UNKNOWN
          : ({ k: "field", recv, owner: f.owner, name: f.name, w: isWideType(f.desc) || undefined } as Val),
      );
    } else if (op === 181) {
      const f = ctx.cp.memberRef(u16(code, o));
      const v = pop();
      const recv = pop();
      if (recv.k === "this" && ctx.name === "<init>") facts.fieldStores.push([f.name, v]);
    } else if (op >= 182 && op <= 185) {
      const m = ctx.cp.memberRef(u16(code, o));
      const opName: CallOp = op === 182 ? "virtual" : op === 183 ? "special" : op === 184 ? "static" : "interface";
      const args = popArgs(stack, m.desc);
      const recv = op === 184 ? undefined : pop();
      const ret = returnType(m.desc);
      const w = isWideType(ret) || undefined;
      if (m.name === "<init>" && recv) {
        if (recv.k === "obj" && !recv.args) {
          // Mutating the shared object records the constructor on every copy `dup` made.
          recv.desc = m.desc;
          recv.args = args;
          facts.sites.push({ kind: "new", owner: m.owner, name: m.name, desc: m.desc, args, line: ctx.lineOf(pc) });
        } else if (recv.k === "this" && !thisInitialised) {
          thisInitialised = true;
          facts.sites.push({ kind: "init-this", owner: m.owner, name: m.name, desc: m.desc, args, line: ctx.lineOf(pc) });
        }
      } else if (op === 184) {
        if (ret.startsWith("L") || args.some(known))
          facts.sites.push({ kind: "static", owner: m.owner, name: m.name, desc: m.desc, args, line: ctx.lineOf(pc) });
      } else if (recv && recv.k !== "unknown" && args.some(known))
        facts.sites.push({ kind: "call", op: opName, owner: m.owner, name: m.name, desc: m.desc, args, recv, line: ctx.lineOf(pc) });
      if (ret !== "V") {
        if (recv && recv.k !== "unknown" && args.length === 0 && op !== 183)
          push({ k: "get", recv, owner: m.owner, name: m.name, desc: m.desc, w } as Val);
        else if ((recv === undefined || recv.k !== "unknown") && (args.length === 0 || args.some(known)))
          push({ k: "call", op: opName, owner: m.owner, name: m.name, desc: m.desc, recv, args, w } as Val);
        else push(w ? UNKNOWN_WIDE : UNKNOWN);
      }
    } else if (op === 186) {
      const d = ctx.cp.invokeDynamic(u16(code, o));
      const args = popArgs(stack, d.desc);
      const ret = returnType(d.desc);
      if (d.name === "makeConcatWithConstants" && ret === STRING)
        push(concatenation(args, parameterTypes(d.desc), ctx.bootstrapArgs(d.bootstrap)));
      else if (ret !== "V") push(isWideType(ret) ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op === 187) push({ k: "obj", cls: ctx.cp.className(u16(code, o)) });
    else if (op === 188 || op === 189 || op === 190 || op === 193) {
      pop();
      push(UNKNOWN);
    } else if (op === 191) {
      pop();
      reachable = false;
    } else if (op === 192) {
      // checkcast keeps the value
    } else if (op === 194 || op === 195) pop();
    else if (op === 196) {
      const inner = code[o];
      const idx = u16(code, o + 1);
      if (inner === 132) locals[idx] = UNKNOWN;
      else if (inner >= 21 && inner <= 25) load(idx);
      else if (inner >= 54 && inner <= 58) store(idx);
      else if (inner === 169) reachable = false;
    } else if (op === 197) {
      for (let i = 0; i < code[o + 2]; i++) pop();
      push(UNKNOWN);
    } else throw new Error(`unsupported opcode ${op} at pc ${pc}`);
  }
  return facts;
}

const TARGET = 1;
const LOOP_HEAD = 2;
const HANDLER = 4;

function markTarget(marks: Uint8Array, from: number, to: number): void {
  if (to < 0 || to >= marks.length) return;
  marks[to] |= to <= from ? TARGET | LOOP_HEAD : TARGET;
}

/** A value worth following into a call: anything but the unknown. */
const known = (v: Val) => v.k !== "unknown";

/**
 * `invokedynamic makeConcatWithConstants`: the recipe's \u0001 marks take the arguments in order,
 * \u0002 the bootstrap's next constant; the rest is literal text.
 */
function concatenation(args: Val[], types: readonly string[], bootstrapArgs: Val[]): Val {
  const recipe = bootstrapArgs[0];
  if (recipe?.k !== "str") return UNKNOWN;
  const parts: Val[] = [];
  const partTypes: string[] = [];
  let literal = "";
  let next = 0;
  let constant = 1;
  const flush = () => {
    if (literal) {
      parts.push({ k: "str", v: literal });
      partTypes.push(STRING);
    }
    literal = "";
  };
  for (const ch of recipe.v) {
    if (ch === "\u0001") {
      flush();
      parts.push(args[next] ?? UNKNOWN);
      partTypes.push(types[next++] ?? "");
    } else if (ch === "\u0002") {
      const c = bootstrapArgs[constant++];
      if (!c || (c.k !== "str" && c.k !== "num")) return UNKNOWN;
      literal += c.v;
    } else literal += ch;
  }
  flush();
  return { k: "concat", parts, types: partTypes };
}

function popArgs(stack: Val[], desc: string): Val[] {
  const n = parameterTypes(desc).length;
  const args = new Array<Val>(n);
  for (let i = n - 1; i >= 0; i--) args[i] = stack.pop() ?? UNKNOWN;
  return args;
}
