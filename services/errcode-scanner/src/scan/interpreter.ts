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
  /** Values returned by `areturn`/`ireturn`/..., each with the branches taken to reach it. */
  returns: Returned[];
}

/** A value a method returns, with the branches taken to the return. */
export interface Returned {
  value: Val;
  guard: Guard | null;
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

/**
 * The branches taken to reach a state, newest first (shared by the states that branch from it):
 * `cond` held there if `taken`, else it did not (a switch's case is a taken `key in values`, its
 * default the same condition not taken, with every case's values).
 */
export interface Guard {
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
const CMP: Array<Exclude<Cond["op"], "in">> = ["eq", "ne", "lt", "ge", "gt", "le"];

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
  return new MethodInterpreter(code, ctx).run();
}

/**
 * One method's interpretation. The instruction set is handled by one small method per group of
 * opcodes, not in one function: a scan lasts about a second, and V8 compiles small functions to
 * fast code early, where one large function ran unoptimised for most of the scan while it was
 * being compiled.
 */
class MethodInterpreter {
  private readonly facts: MethodFacts = { sites: [], fieldStores: [], staticStores: [], returns: [] };
  /** Per offset: a jump lands there (TARGET), a loop goes back to it (LOOP_HEAD), a handler starts there (HANDLER). */
  private readonly marks: Uint8Array;
  /** The locals the method ever writes (forgotten at loop heads and handlers). */
  private readonly written: number[] = [];
  /** States recorded by jumps to offsets not reached yet. */
  private readonly pending = new Map<number, State[]>();
  private st: State;
  private reachable = true;
  private thisInitialised: boolean;

  constructor(
    private readonly code: ArrayLike<number>,
    private readonly ctx: MethodContext,
  ) {
    const locals: Val[] = new Array<Val>(Math.max(ctx.maxLocals, 1)).fill(UNKNOWN);
    let slot = 0;
    if (!ctx.isStatic) locals[slot++] = THIS;
    parameterTypes(ctx.desc).forEach((t, i) => {
      locals[slot] = { k: "param", i, w: isWideType(t) || undefined } as Val;
      slot += isWideType(t) ? 2 : 1;
    });
    this.st = { stack: [], locals, guard: null };
    this.thisInitialised = ctx.name !== "<init>";
    const marks = new Uint8Array(code.length + 1);
    const wrote = new Uint8Array(Math.max(ctx.maxLocals, 1) + 2);
    for (let pc = 0; pc < code.length; pc = nextPc(code, pc)) {
      const op = code[pc];
      if ((op >= 153 && op <= 168) || op === 198 || op === 199) markTarget(marks, pc, pc + s16(code, pc + 1));
      else if (op === 200 || op === 201) markTarget(marks, pc, pc + s32(code, pc + 1));
      else if (op === TABLESWITCH || op === LOOKUPSWITCH) forEachBranchTarget(code, pc, (t) => markTarget(marks, pc, t));
      const idx = storeIndex(code, pc);
      if (idx >= 0 && !wrote[idx]) {
        wrote[idx] = 1;
        this.written.push(idx);
      }
    }
    for (const h of ctx.handlers) if (h >= 0 && h < marks.length) marks[h] |= HANDLER;
    this.marks = marks;
  }

  run(): MethodFacts {
    const { code, marks } = this;
    for (let pc = 0, next = 0; pc < code.length; pc = next) {
      next = nextPc(code, pc);
      const mark = marks[pc];
      if (mark) this.arrive(pc, mark);
      else if (!this.reachable) this.resume();
      this.step(code[pc], pc, operandStart(code, pc));
    }
    return this.facts;
  }

  /** At a jump target, loop head or handler: the states that jump there meet the one falling through. */
  private arrive(pc: number, mark: number): void {
    const incoming = mark & TARGET ? this.pending.get(pc) : undefined;
    if (incoming) {
      this.pending.delete(pc);
      let merged = this.reachable ? this.st : incoming[0];
      for (let i = this.reachable ? 0 : 1; i < incoming.length; i++) merged = merge(merged, incoming[i]);
      this.st = merged;
      this.reachable = true;
    }
    if (mark & HANDLER) {
      this.st = { stack: [UNKNOWN], locals: this.st.locals.slice(), guard: null };
      this.forgetWritten();
      this.reachable = true;
    } else if (mark & LOOP_HEAD || !this.reachable) this.resume();
  }

  /** Code reached only by a backward jump, or a loop head: what the method writes is not known there. */
  private resume(): void {
    if (!this.reachable) this.st = { stack: [], locals: this.st.locals.slice(), guard: null };
    this.forgetWritten();
    this.reachable = true;
  }

  private forgetWritten(): void {
    const locals = this.st.locals;
    for (const i of this.written) if (i < locals.length) locals[i] = UNKNOWN;
  }

  private pop(): Val {
    return this.st.stack.pop() ?? UNKNOWN;
  }

  private push(v: Val): void {
    this.st.stack.push(v);
  }

  private load(i: number): void {
    this.st.stack.push(this.st.locals[i] ?? UNKNOWN);
  }

  private store(i: number): void {
    const v = this.pop();
    this.st.locals[i] = v;
    if (isWide(v)) this.st.locals[i + 1] = UNKNOWN;
  }

  /** Values making up the top `n` stack slots (a long or double takes two), bottom first. */
  private popSlots(n: number): Val[] {
    const out: Val[] = [];
    let taken = 0;
    while (taken < n && this.st.stack.length) {
      const v = this.pop();
      out.unshift(v);
      taken += isWide(v) ? 2 : 1;
    }
    return out;
  }

  private pushAll(...groups: Val[][]): void {
    for (const g of groups) for (const v of g) this.st.stack.push(v);
  }

  /** The current state, to be met again at `target`. */
  private record(target: number, guard = this.st.guard): void {
    const st = this.st;
    const copy = { stack: st.stack.slice(), locals: st.locals.slice(), guard };
    const list = this.pending.get(target);
    if (list) list.push(copy);
    else this.pending.set(target, [copy]);
  }

  /** A conditional branch: the jump's state and the fall-through's each remember which way they went. */
  private branch(pc: number, target: number, cond: Cond): void {
    const parent = this.st.guard;
    const depth = depthOf(parent) + 1;
    this.record(target, { pc, cond, taken: true, parent, depth });
    this.st.guard = { pc, cond, taken: false, parent, depth };
  }

  private step(op: number, pc: number, o: number): void {
    if (op <= 20) this.constant(op, o);
    else if (op <= 86) this.localOrArray(op, o);
    else if (op <= 95) this.stackOp(op);
    else if (op <= 152) this.arithmetic(op, o);
    else if (op <= 171 || (op >= 198 && op <= 201)) this.jump(op, pc, o);
    else if (op <= 177) {
      if (op !== 177) this.facts.returns.push({ value: this.pop(), guard: this.st.guard });
      this.reachable = false;
    } else if (op <= 181) this.field(op, o);
    else if (op <= 185) this.invoke(op, pc, o);
    else this.other(op, pc, o);
  }

  /** nop, aconst_null, iconst_m1 … ldc2_w. */
  private constant(op: number, o: number): void {
    const { code, ctx } = this;
    if (op === 0) return;
    if (op === 1) this.push(NULL);
    else if (op >= 2 && op <= 8) this.push({ k: "num", v: String(op - 3) });
    else if (op === 9 || op === 10) this.push({ k: "num", v: String(op - 9), w: true });
    else if (op >= 11 && op <= 13) this.push({ k: "num", v: String(op - 11) });
    else if (op === 14 || op === 15) this.push({ k: "num", v: String(op - 14), w: true });
    else if (op === 16) this.push({ k: "num", v: String(s8(code[o])) });
    else if (op === 17) this.push({ k: "num", v: String(s16(code, o)) });
    else if (op === 18) this.push(ctx.cp.constant(code[o]));
    else {
      const v = ctx.cp.constant(u16(code, o));
      this.push(op === 20 && v.k === "unknown" ? UNKNOWN_WIDE : v);
    }
  }

  /** Loads and stores of locals and array elements (21–86). */
  private localOrArray(op: number, o: number): void {
    if (op <= 25) this.load(this.code[o]);
    else if (op <= 45) this.load((op - 26) % 4);
    else if (op <= 53) {
      this.pop();
      this.pop();
      this.push(op === 47 || op === 49 ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op <= 58) this.store(this.code[o]);
    else if (op <= 78) this.store((op - 59) % 4);
    else {
      this.pop();
      this.pop();
      this.pop();
    }
  }

  /** pop … swap (87–95). */
  private stackOp(op: number): void {
    if (op === 87) this.pop();
    else if (op === 88) this.popSlots(2);
    else if (op === 89) {
      const v = this.pop();
      this.push(v);
      this.push(v);
    } else if (op === 90) {
      const a = this.popSlots(1);
      const b = this.popSlots(1);
      this.pushAll(a, b, a);
    } else if (op === 91) {
      const a = this.popSlots(1);
      const b = this.popSlots(2);
      this.pushAll(a, b, a);
    } else if (op === 92) {
      const a = this.popSlots(2);
      this.pushAll(a, a);
    } else if (op === 93) {
      const a = this.popSlots(2);
      const b = this.popSlots(1);
      this.pushAll(a, b, a);
    } else if (op === 94) {
      const a = this.popSlots(2);
      const b = this.popSlots(2);
      this.pushAll(a, b, a);
    } else {
      const a = this.pop();
      const b = this.pop();
      this.push(a);
      this.push(b);
    }
  }

  /** Arithmetic, iinc, conversions and comparisons (96–152). */
  private arithmetic(op: number, o: number): void {
    if (op <= 115) {
      // add, sub, mul, div, rem for int, long, float, double
      const b = this.pop();
      const a = this.pop();
      const kind = (op - 96) % 4;
      this.push(kind <= 1 ? arith(ARITH[Math.floor((op - 96) / 4)], a, b, kind === 1) : kind === 3 ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op <= 119) {
      const a = this.pop();
      this.push(op <= 117 ? arith("neg", a, undefined, op === 117) : op === 119 ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op <= 131) {
      const b = this.pop();
      const a = this.pop();
      this.push(arith(SHIFT_AND_BITS[op - 120], a, b, (op - 120) % 2 === 1));
    } else if (op === 132) this.st.locals[this.code[o]] = UNKNOWN;
    else if (op <= 147) this.push(convert(op, this.pop()));
    else {
      this.pop();
      this.pop();
      this.push(UNKNOWN);
    }
  }

  /** Branches, goto, jsr/ret and switches. */
  private jump(op: number, pc: number, o: number): void {
    const code = this.code;
    if ((op >= 153 && op <= 158) || op === 198 || op === 199) {
      const a = this.pop();
      const cond: Cond = op >= 198 ? { op: op === 198 ? "eq" : "ne", a, b: NULL } : { op: CMP[op - 153], a, b: { k: "num", v: "0" } };
      this.branch(pc, pc + s16(code, o), cond);
    } else if (op >= 159 && op <= 166) {
      const b = this.pop();
      const a = this.pop();
      this.branch(pc, pc + s16(code, o), { op: op <= 164 ? CMP[op - 159] : op === 165 ? "eq" : "ne", a, b });
    } else if (op === 167 || op === 200) {
      this.record(pc + (op === 167 ? s16(code, o) : s32(code, o)));
      this.reachable = false;
    } else if (op === 168 || op === 201) {
      this.push(UNKNOWN);
      this.record(pc + (op === 168 ? s16(code, o) : s32(code, o)));
      this.pop();
    } else if (op === 169) this.reachable = false;
    else {
      const key = this.pop();
      if (key.k === "unknown") forEachBranchTarget(code, pc, (t) => this.record(t));
      else this.switchCases(pc, key);
      this.reachable = false;
    }
  }

  /**
   * A switch on a value that may turn out constant: each target remembers the case values that
   * lead to it, and the default that none did, so that a caller passing a constant reaches only its
   * case (H2 picks the exception class by `code / 1000`, at 1,700 call sites).
   */
  private switchCases(pc: number, key: Val): void {
    const byTarget = new Map<number, Set<number>>();
    const every = new Set<number>();
    let fallback = pc;
    forEachBranchTarget(this.code, pc, (t, value) => {
      if (value === undefined) {
        fallback = t;
        return;
      }
      every.add(value);
      const values = byTarget.get(t);
      if (values) values.add(value);
      else byTarget.set(t, new Set([value]));
    });
    const parent = this.st.guard;
    const depth = depthOf(parent) + 1;
    for (const [t, values] of byTarget) this.record(t, { pc, cond: { op: "in", a: key, values }, taken: true, parent, depth });
    this.record(fallback, { pc, cond: { op: "in", a: key, values: every }, taken: false, parent, depth });
  }

  /** getstatic, putstatic, getfield, putfield. */
  private field(op: number, o: number): void {
    const { ctx, facts } = this;
    const f = ctx.cp.memberRef(u16(this.code, o));
    if (op === 178) this.push({ k: "static", owner: f.owner, name: f.name, w: isWideType(f.desc) || undefined } as Val);
    else if (op === 179) {
      const v = this.pop();
      if (ctx.name === "<clinit>" && f.owner === ctx.className) facts.staticStores.push([f.name, v]);
    } else if (op === 180) {
      const recv = this.pop();
      this.push(
        recv.k === "unknown"
          ? isWideType(f.desc)
            ? UNKNOWN_WIDE
            : UNKNOWN
          : ({ k: "field", recv, owner: f.owner, name: f.name, w: isWideType(f.desc) || undefined } as Val),
      );
    } else {
      const v = this.pop();
      const recv = this.pop();
      if (recv.k === "this" && ctx.name === "<init>") facts.fieldStores.push([f.name, v]);
    }
  }

  /** invokevirtual, invokespecial, invokestatic, invokeinterface: a site, and the call's result. */
  private invoke(op: number, pc: number, o: number): void {
    const { ctx, facts } = this;
    const m = ctx.cp.memberRef(u16(this.code, o));
    const opName: CallOp = op === 182 ? "virtual" : op === 183 ? "special" : op === 184 ? "static" : "interface";
    const args = popArgs(this.st.stack, m.desc);
    const recv = op === 184 ? undefined : this.pop();
    const ret = returnType(m.desc);
    const w = isWideType(ret) || undefined;
    if (m.name === "<init>" && recv) {
      if (recv.k === "obj" && !recv.args) {
        // Mutating the shared object records the constructor on every copy `dup` made.
        recv.desc = m.desc;
        recv.args = args;
        facts.sites.push({ kind: "new", owner: m.owner, name: m.name, desc: m.desc, args, line: ctx.lineOf(pc) });
      } else if (recv.k === "this" && !this.thisInitialised) {
        this.thisInitialised = true;
        facts.sites.push({ kind: "init-this", owner: m.owner, name: m.name, desc: m.desc, args, line: ctx.lineOf(pc) });
      }
    } else if (op === 184) {
      if (ret.startsWith("L") || args.some(known))
        facts.sites.push({ kind: "static", owner: m.owner, name: m.name, desc: m.desc, args, line: ctx.lineOf(pc) });
    } else if (recv && recv.k !== "unknown" && args.some(known))
      facts.sites.push({ kind: "call", op: opName, owner: m.owner, name: m.name, desc: m.desc, args, recv, line: ctx.lineOf(pc) });
    if (ret !== "V") {
      if (recv && recv.k !== "unknown" && args.length === 0 && op !== 183)
        this.push({ k: "get", recv, owner: m.owner, name: m.name, desc: m.desc, w } as Val);
      else if ((recv === undefined || recv.k !== "unknown") && (args.length === 0 || args.some(known)))
        this.push({ k: "call", op: opName, owner: m.owner, name: m.name, desc: m.desc, recv, args, w } as Val);
      else this.push(w ? UNKNOWN_WIDE : UNKNOWN);
    }
  }

  /** invokedynamic and the rest (186–201 but for the jumps). */
  private other(op: number, pc: number, o: number): void {
    const { code, ctx } = this;
    if (op === 186) {
      const d = ctx.cp.invokeDynamic(u16(code, o));
      const args = popArgs(this.st.stack, d.desc);
      const ret = returnType(d.desc);
      if (d.name === "makeConcatWithConstants" && ret === STRING)
        this.push(concatenation(args, parameterTypes(d.desc), ctx.bootstrapArgs(d.bootstrap)));
      else if (ret !== "V") this.push(isWideType(ret) ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op === 187) this.push({ k: "obj", cls: ctx.cp.className(u16(code, o)) });
    else if (op === 188 || op === 189 || op === 190 || op === 193) {
      this.pop();
      this.push(UNKNOWN);
    } else if (op === 191) {
      this.pop();
      this.reachable = false;
    } else if (op === 192) {
      // checkcast keeps the value
    } else if (op === 194 || op === 195) this.pop();
    else if (op === 196) {
      const inner = code[o];
      const idx = u16(code, o + 1);
      if (inner === 132) this.st.locals[idx] = UNKNOWN;
      else if (inner >= 21 && inner <= 25) this.load(idx);
      else if (inner >= 54 && inner <= 58) this.store(idx);
      else if (inner === 169) this.reachable = false;
    } else if (op === 197) {
      for (let i = 0; i < code[o + 2]; i++) this.pop();
      this.push(UNKNOWN);
    } else throw new Error(`unsupported opcode ${op} at pc ${pc}`);
  }
}

const SHIFT_AND_BITS: ArithOp[] = ["shl", "shl", "shr", "shr", "ushr", "ushr", "and", "and", "or", "or", "xor", "xor"];
const WIDE_RESULT = new Set([133, 135, 138, 140, 141, 143]);

/** A conversion (i2l … i2s): integer conversions keep a constant; floating point is not followed. */
function convert(op: number, a: Val): Val {
  const wide = WIDE_RESULT.has(op);
  let v: string | undefined;
  if (a.k === "num" && /^-?\d+$/.test(a.v)) {
    const n = BigInt(a.v);
    if (op === 133) v = a.v;
    else if (op === 136) v = String(BigInt.asIntN(32, n));
    else if (op === 145) v = String(BigInt.asIntN(8, n));
    else if (op === 146) v = String(BigInt.asUintN(16, n));
    else if (op === 147) v = String(BigInt.asIntN(16, n));
  }
  return v !== undefined ? ({ k: "num", v, w: wide || undefined } as Val) : wide ? UNKNOWN_WIDE : UNKNOWN;
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
