import { InstructionParser } from "java-class-tools";
import type { ConstantPool } from "./constant-pool.js";
import { isWideType, parameterTypes, returnType } from "./descriptor.js";
import { isWide, NULL, sameVal, THIS, UNKNOWN, UNKNOWN_WIDE, type Val } from "./values.js";

export type InvokeOp = "virtual" | "special" | "static" | "interface" | "dynamic";

/** One call a method makes (the seed's _method table: inv_clazz, inv_method). */
export interface Invocation {
  op: InvokeOp;
  owner: string;
  name: string;
  desc: string;
  line?: number;
}

/**
 * A place where an object may be built: `new X(...)` (kind "new"), a constructor's own
 * `super(...)`/`this(...)` call ("init-this") or a static method returning an object ("static"),
 * with the abstract values of its arguments.
 */
export interface Site {
  kind: "new" | "init-this" | "static";
  owner: string;
  name: string;
  desc: string;
  args: Val[];
  line?: number;
}

export interface MethodFacts {
  invocations: Invocation[];
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
  bootstrapTarget(index: number): { owner: string; name: string; desc: string } | undefined;
}

interface State {
  stack: Val[];
  locals: Val[];
}

const s8 = (b: number) => (b << 24) >> 24;
const s16 = (a: number, b: number) => (((a << 8) | b) << 16) >> 16;
const s32 = (o: number[], i: number) => (o[i] << 24) | (o[i + 1] << 16) | (o[i + 2] << 8) | o[i + 3];
const u16 = (a: number, b: number) => (a << 8) | b;

function merge(a: Val[], b: Val[]): Val[] {
  const n = Math.min(a.length, b.length);
  const out = new Array<Val>(n);
  for (let i = 0; i < n; i++) out[i] = sameVal(a[i], b[i]) ? a[i] : isWide(a[i]) ? UNKNOWN_WIDE : UNKNOWN;
  return out;
}

/**
 * Abstract interpretation of one method's bytecode: a single forward pass simulating the
 * operand stack and locals. Where paths meet, values that differ become unknown; at loop
 * heads and exception handlers every local the method ever writes becomes unknown. That is
 * enough to recover constants passed at construction sites without guessing.
 */
export function interpret(code: number[], ctx: MethodContext): MethodFacts {
  const facts: MethodFacts = { invocations: [], sites: [], fieldStores: [], staticStores: [], returns: [] };
  const insns = InstructionParser.fromBytecode(code) as unknown as Array<{ opcode: number; operands: number[]; bytecodeOffset: number }>;
  const params = parameterTypes(ctx.desc);

  const initialLocals: Val[] = new Array<Val>(Math.max(ctx.maxLocals, 1)).fill(UNKNOWN);
  let slot = 0;
  if (!ctx.isStatic) initialLocals[slot++] = THIS;
  params.forEach((t, i) => {
    initialLocals[slot] = { k: "param", i, w: isWideType(t) || undefined } as Val;
    slot += isWideType(t) ? 2 : 1;
  });

  // Branch targets, backward targets and the locals ever written (for loop heads/handlers).
  const backward = new Set<number>();
  const written = new Set<number>();
  for (const ins of insns) {
    for (const t of branchTargets(ins)) if (t <= ins.bytecodeOffset) backward.add(t);
    const idx = storeIndex(ins);
    if (idx !== undefined) written.add(idx);
  }
  const handlers = new Set(ctx.handlers);
  const pending = new Map<number, State[]>();
  const record = (target: number, st: State) => {
    const list = pending.get(target);
    const copy = { stack: st.stack.slice(), locals: st.locals.slice() };
    if (list) list.push(copy);
    else pending.set(target, [copy]);
  };
  const forgetWritten = (locals: Val[]) => {
    for (const i of written) if (i < locals.length) locals[i] = UNKNOWN;
  };

  let st: State = { stack: [], locals: initialLocals };
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
  const push = (...vs: Val[]) => st.stack.push(...vs);
  const load = (i: number) => st.stack.push(st.locals[i] ?? UNKNOWN);
  const store = (i: number) => {
    const v = pop();
    st.locals[i] = v;
    if (isWide(v)) st.locals[i + 1] = UNKNOWN;
  };

  for (const ins of insns) {
    const pc = ins.bytecodeOffset;
    const incoming = pending.get(pc);
    if (incoming) {
      pending.delete(pc);
      let merged = reachable ? st : incoming[0];
      for (const other of reachable ? incoming : incoming.slice(1))
        merged = { stack: merge(merged.stack, other.stack), locals: merge(merged.locals, other.locals) };
      st = merged;
      reachable = true;
    }
    if (handlers.has(pc)) {
      st = { stack: [UNKNOWN], locals: st.locals.slice() };
      forgetWritten(st.locals);
      reachable = true;
    } else if (backward.has(pc) || !reachable) {
      if (!reachable) st = { stack: [], locals: st.locals.slice() };
      forgetWritten(st.locals);
      reachable = true;
    }
    const { stack, locals } = st;
    const o = ins.operands;
    const op = ins.opcode;
    if (op === 0) {
      // nop
    } else if (op === 1) push(NULL);
    else if (op >= 2 && op <= 8) push({ k: "num", v: String(op - 3) });
    else if (op === 9 || op === 10) push({ k: "num", v: String(op - 9), w: true });
    else if (op >= 11 && op <= 13) push({ k: "num", v: String(op - 11) });
    else if (op === 14 || op === 15) push({ k: "num", v: String(op - 14), w: true });
    else if (op === 16) push({ k: "num", v: String(s8(o[0])) });
    else if (op === 17) push({ k: "num", v: String(s16(o[0], o[1])) });
    else if (op === 18) push(ctx.cp.constant(o[0]));
    else if (op === 19 || op === 20) {
      const v = ctx.cp.constant(u16(o[0], o[1]));
      push(op === 20 && v.k === "unknown" ? UNKNOWN_WIDE : v);
    } else if (op >= 21 && op <= 25) load(o[0]);
    else if (op >= 26 && op <= 45) load((op - 26) % 4);
    else if (op >= 46 && op <= 53) {
      pop();
      pop();
      push(op === 47 || op === 49 ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op >= 54 && op <= 58) store(o[0]);
    else if (op >= 59 && op <= 78) store((op - 59) % 4);
    else if (op >= 79 && op <= 86) {
      pop();
      pop();
      pop();
    } else if (op === 87) pop();
    else if (op === 88) popSlots(2);
    else if (op === 89) {
      const v = pop();
      push(v, v);
    } else if (op === 90) {
      const a = popSlots(1);
      const b = popSlots(1);
      push(...a, ...b, ...a);
    } else if (op === 91) {
      const a = popSlots(1);
      const b = popSlots(2);
      push(...a, ...b, ...a);
    } else if (op === 92) {
      const a = popSlots(2);
      push(...a, ...a);
    } else if (op === 93) {
      const a = popSlots(2);
      const b = popSlots(1);
      push(...a, ...b, ...a);
    } else if (op === 94) {
      const a = popSlots(2);
      const b = popSlots(2);
      push(...a, ...b, ...a);
    } else if (op === 95) {
      const a = pop();
      const b = pop();
      push(a, b);
    } else if (op >= 96 && op <= 115) {
      pop();
      pop();
      push((op - 96) % 2 === 1 ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op >= 116 && op <= 119) {
      pop();
      push((op - 116) % 2 === 1 ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op >= 120 && op <= 131) {
      pop();
      pop();
      push((op - 120) % 2 === 1 ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op === 132) locals[o[0]] = UNKNOWN;
    else if (op >= 133 && op <= 147) {
      pop();
      push([133, 135, 138, 140, 141, 143].includes(op) ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op >= 148 && op <= 152) {
      pop();
      pop();
      push(UNKNOWN);
    } else if ((op >= 153 && op <= 158) || op === 198 || op === 199) {
      pop();
      record(pc + s16(o[0], o[1]), st);
    } else if (op >= 159 && op <= 166) {
      pop();
      pop();
      record(pc + s16(o[0], o[1]), st);
    } else if (op === 167 || op === 200) {
      record(pc + (op === 167 ? s16(o[0], o[1]) : s32(o, 0)), st);
      reachable = false;
    } else if (op === 168 || op === 201) {
      push(UNKNOWN);
      record(pc + (op === 168 ? s16(o[0], o[1]) : s32(o, 0)), st);
      pop();
    } else if (op === 169) reachable = false;
    else if (op === 170 || op === 171) {
      pop();
      for (const t of branchTargets(ins)) record(t, st);
      reachable = false;
    } else if (op >= 172 && op <= 177) {
      if (op !== 177) facts.returns.push(pop());
      reachable = false;
    } else if (op === 178) {
      const f = ctx.cp.memberRef(u16(o[0], o[1]));
      push({ k: "static", owner: f.owner, name: f.name, w: isWideType(f.desc) || undefined } as Val);
    } else if (op === 179) {
      const f = ctx.cp.memberRef(u16(o[0], o[1]));
      const v = pop();
      if (ctx.name === "<clinit>" && f.owner === ctx.className) facts.staticStores.push([f.name, v]);
    } else if (op === 180) {
      const f = ctx.cp.memberRef(u16(o[0], o[1]));
      const recv = pop();
      push(
        recv.k === "unknown"
          ? isWideType(f.desc)
            ? UNKNOWN_WIDE
            : UNKNOWN
          : ({ k: "field", recv, owner: f.owner, name: f.name, w: isWideType(f.desc) || undefined } as Val),
      );
    } else if (op === 181) {
      const f = ctx.cp.memberRef(u16(o[0], o[1]));
      const v = pop();
      const recv = pop();
      if (recv.k === "this" && ctx.name === "<init>") facts.fieldStores.push([f.name, v]);
    } else if (op >= 182 && op <= 185) {
      const m = ctx.cp.memberRef(u16(o[0], o[1]));
      const opName: InvokeOp = op === 182 ? "virtual" : op === 183 ? "special" : op === 184 ? "static" : "interface";
      const line = ctx.lineOf(pc);
      facts.invocations.push({ op: opName, owner: m.owner, name: m.name, desc: m.desc, line });
      const args = popArgs(stack, m.desc);
      const recv = op === 184 ? undefined : pop();
      const ret = returnType(m.desc);
      if (m.name === "<init>" && recv) {
        if (recv.k === "obj" && !recv.args) {
          // Mutating the shared object records the constructor on every copy `dup` made.
          recv.desc = m.desc;
          recv.args = args;
          facts.sites.push({ kind: "new", owner: m.owner, name: m.name, desc: m.desc, args, line });
        } else if (recv.k === "this" && !thisInitialised) {
          thisInitialised = true;
          facts.sites.push({ kind: "init-this", owner: m.owner, name: m.name, desc: m.desc, args, line });
        }
      } else if (op === 184 && ret.startsWith("L"))
        facts.sites.push({ kind: "static", owner: m.owner, name: m.name, desc: m.desc, args, line });
      if (ret !== "V") {
        if (recv && recv.k !== "unknown" && args.length === 0 && op !== 183)
          push({ k: "get", recv, owner: m.owner, name: m.name, desc: m.desc, w: isWideType(ret) || undefined } as Val);
        else push(isWideType(ret) ? UNKNOWN_WIDE : UNKNOWN);
      }
    } else if (op === 186) {
      const d = ctx.cp.invokeDynamic(u16(o[0], o[1]));
      const target = ctx.bootstrapTarget(d.bootstrap);
      facts.invocations.push({
        op: "dynamic",
        owner: target?.owner ?? "",
        name: target?.name ?? d.name,
        desc: target?.desc ?? d.desc,
        line: ctx.lineOf(pc),
      });
      popArgs(stack, d.desc);
      const ret = returnType(d.desc);
      if (ret !== "V") push(isWideType(ret) ? UNKNOWN_WIDE : UNKNOWN);
    } else if (op === 187) push({ k: "obj", cls: ctx.cp.className(u16(o[0], o[1])) });
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
      const inner = o[0];
      const idx = u16(o[1], o[2]);
      if (inner === 132) locals[idx] = UNKNOWN;
      else if (inner >= 21 && inner <= 25) load(idx);
      else if (inner >= 54 && inner <= 58) store(idx);
      else if (inner === 169) reachable = false;
    } else if (op === 197) {
      for (let i = 0; i < o[2]; i++) pop();
      push(UNKNOWN);
    } else throw new Error(`unsupported opcode ${op} at pc ${pc}`);
  }
  return facts;
}

function popArgs(stack: Val[], desc: string): Val[] {
  const n = parameterTypes(desc).length;
  const args = new Array<Val>(n);
  for (let i = n - 1; i >= 0; i--) args[i] = stack.pop() ?? UNKNOWN;
  return args;
}

function branchTargets(ins: { opcode: number; operands: number[]; bytecodeOffset: number }): number[] {
  const op = ins.opcode;
  const o = ins.operands;
  const pc = ins.bytecodeOffset;
  if ((op >= 153 && op <= 168) || op === 198 || op === 199) return [pc + s16(o[0], o[1])];
  if (op === 200 || op === 201) return [pc + s32(o, 0)];
  if (op === 170) {
    const low = s32(o, 4);
    const high = s32(o, 8);
    const out = [pc + s32(o, 0)];
    for (let i = 0; i <= high - low; i++) out.push(pc + s32(o, 12 + i * 4));
    return out;
  }
  if (op === 171) {
    const n = s32(o, 4);
    const out = [pc + s32(o, 0)];
    for (let i = 0; i < n; i++) out.push(pc + s32(o, 8 + i * 8 + 4));
    return out;
  }
  return [];
}

function storeIndex(ins: { opcode: number; operands: number[] }): number | undefined {
  const op = ins.opcode;
  if (op >= 54 && op <= 58) return ins.operands[0];
  if (op >= 59 && op <= 78) return (op - 59) % 4;
  if (op === 132) return ins.operands[0];
  if (op === 196 && ((ins.operands[0] >= 54 && ins.operands[0] <= 58) || ins.operands[0] === 132))
    return u16(ins.operands[1], ins.operands[2]);
  return undefined;
}
