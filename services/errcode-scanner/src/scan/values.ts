/**
 * Abstract values the bytecode interpreter tracks on the operand stack and in locals.
 * They stay symbolic (a parameter, a static field, a call, arithmetic) until resolution, when
 * the whole artifact and the caller's arguments are known; `w` marks long/double values (two
 * slots). Substitution keeps each argument's object, so a value built from a parameter can be
 * told apart from one that merely looks the same: see {@link mentions}.
 */
export type Val =
  | { k: "str"; v: string }
  | { k: "num"; v: string; w?: boolean }
  | { k: "null" }
  | { k: "this" }
  | { k: "param"; i: number; w?: boolean }
  | { k: "static"; owner: string; name: string; w?: boolean }
  | { k: "obj"; cls: string; desc?: string; args?: Val[] }
  | { k: "field"; recv: Val; owner: string; name: string; w?: boolean }
  | { k: "get"; recv: Val; owner: string; name: string; desc: string; w?: boolean }
  /** The result of a call with arguments (a zero-argument instance call is a `get`). */
  | { k: "call"; op: CallOp; owner: string; name: string; desc: string; recv?: Val; args: Val[]; w?: boolean }
  /** Integer arithmetic (`neg` has no `b`). */
  | { k: "op"; op: ArithOp; a: Val; b?: Val; w?: boolean }
  /** `cond ? t : f`: a value that differs on the two sides of one branch, where they join. */
  | { k: "select"; cond: Cond; t: Val; f: Val; w?: boolean }
  /** String concatenation (`invokedynamic makeConcatWithConstants`); `types` are the parts' descriptors. */
  | { k: "concat"; parts: Val[]; types: string[] }
  /** Different values met where paths join, not told apart by one branch: unknown, but made from them. */
  | { k: "join"; of: Val[]; w?: boolean }
  | { k: "unknown"; w?: boolean };

export type CallOp = "static" | "special" | "virtual" | "interface";
export type ArithOp = "add" | "sub" | "mul" | "div" | "rem" | "neg" | "and" | "or" | "xor" | "shl" | "shr" | "ushr";
/**
 * A branch condition: `a op b` (`b` is 0 or null for the one-operand branches), or a switch's
 * `a in values` (the case values that lead to one target).
 */
export type Cond = { op: "eq" | "ne" | "lt" | "ge" | "gt" | "le"; a: Val; b: Val } | { op: "in"; a: Val; values: ReadonlySet<number> };

export const UNKNOWN: Val = { k: "unknown" };
export const UNKNOWN_WIDE: Val = { k: "unknown", w: true };
export const NULL: Val = { k: "null" };
export const THIS: Val = { k: "this" };

/** Values every method shares: being built from one of them ties nothing together. */
const SHARED: ReadonlySet<Val> = new Set([UNKNOWN, UNKNOWN_WIDE, NULL, THIS]);

export const isWide = (v: Val): boolean => "w" in v && v.w === true;

export function sameVal(a: Val, b: Val): boolean {
  if (a === b) return true;
  if (a.k !== b.k) return false;
  if ((a.k === "str" || a.k === "num") && (b.k === "str" || b.k === "num")) return a.v === b.v;
  if (a.k === "param" && b.k === "param") return a.i === b.i;
  if (a.k === "static" && b.k === "static") return a.owner === b.owner && a.name === b.name;
  return a.k === "null" || a.k === "this";
}

const MAX_SUBSTITUTION_DEPTH = 64;

/**
 * Replaces parameter references with the caller's arguments (one call level). Parts that mention
 * none stay the very objects they were, and shared parts stay shared: a factory's expansion is
 * substituted at each of its calls, and copying all of it each time was most of the work.
 */
export function substitute(v: Val, args: readonly Val[] | undefined, self?: Val, done?: Map<Val, Val>, depth = 0): Val {
  if (!args) return v;
  const cached = done?.get(v);
  if (cached) return cached;
  if (depth > MAX_SUBSTITUTION_DEPTH) return UNKNOWN;
  if (v.k === "param") return args[v.i] ?? UNKNOWN;
  if (v.k === "this") return self ?? UNKNOWN;
  if (!replaceable(v)) return v;
  // What each part met so far became, so that a part shared stays shared.
  const seen = done ?? new Map<Val, Val>();
  const sub = (x: Val) => substitute(x, args, self, seen, depth + 1);
  let out: Val;
  switch (v.k) {
    case "obj": {
      const a = v.args && mapAll(v.args, sub);
      out = a === v.args ? v : { k: "obj", cls: v.cls, desc: v.desc, args: a };
      break;
    }
    case "field":
    case "get": {
      const recv = sub(v.recv);
      out = recv === v.recv ? v : { ...v, recv };
      break;
    }
    case "call": {
      const recv = v.recv && sub(v.recv);
      const a = mapAll(v.args, sub);
      out = recv === v.recv && a === v.args ? v : { ...v, recv, args: a };
      break;
    }
    case "op": {
      const a = sub(v.a);
      const b = v.b && sub(v.b);
      out = a === v.a && b === v.b ? v : { ...v, a, b };
      break;
    }
    case "select": {
      const cond = mapCond(v.cond, sub);
      const t = sub(v.t);
      const f = sub(v.f);
      out =
        cond.a === v.cond.a && (cond.op === "in" || cond.b === (v.cond as { b: Val }).b) && t === v.t && f === v.f
          ? v
          : { ...v, cond, t, f };
      break;
    }
    case "concat": {
      const parts = mapAll(v.parts, sub);
      out = parts === v.parts ? v : { ...v, parts };
      break;
    }
    case "join": {
      const of = mapAll(v.of, sub);
      out = of === v.of ? v : { ...v, of };
      break;
    }
    default:
      return v;
  }
  seen.set(v, out);
  return out;
}

/** `list.map(f)`, or `list` itself when `f` changes none of it. */
function mapAll(list: Val[], f: (v: Val) => Val): Val[] {
  for (let i = 0; i < list.length; i++) {
    const x = f(list[i]);
    if (x === list[i]) continue;
    const out = list.slice(0, i);
    out.push(x);
    for (let j = i + 1; j < list.length; j++) out.push(f(list[j]));
    return out;
  }
  return list;
}

/** A condition on the values `f` makes of its operands. */
export const mapCond = (c: Cond, f: (v: Val) => Val): Cond =>
  c.op === "in" ? { op: "in", a: f(c.a), values: c.values } : { op: c.op, a: f(c.a), b: f(c.b) };

/** Whether a value is built from others (see {@link children}). */
const hasParts = (v: Val): boolean =>
  v.k === "obj"
    ? v.args !== undefined
    : v.k !== "param" && v.k !== "this" && v.k !== "str" && v.k !== "num" && v.k !== "null" && v.k !== "static" && v.k !== "unknown";

/** The values a value is built from, one level down. */
function children(v: Val): Val[] {
  switch (v.k) {
    case "obj":
      return v.args ?? [];
    case "field":
    case "get":
      return [v.recv];
    case "call":
      return v.recv ? [v.recv, ...v.args] : v.args;
    case "op":
      return v.b ? [v.a, v.b] : [v.a];
    case "select":
      return v.cond.op === "in" ? [v.cond.a, v.t, v.f] : [v.cond.a, v.cond.b, v.t, v.f];
    case "concat":
      return v.parts;
    case "join":
      return v.of;
    default:
      return [];
  }
}

/** Whether `v` contains a value satisfying `test` (each shared part is looked at once). */
export function contains(v: Val, test: (x: Val) => boolean): boolean {
  if (!hasParts(v)) return test(v);
  const seen = new Set<Val>();
  const stack = [v];
  while (stack.length) {
    const x = stack.pop() as Val;
    if (seen.has(x)) continue;
    seen.add(x);
    if (test(x)) return true;
    for (const c of children(x)) stack.push(c);
  }
  return false;
}

/** Whether a value still depends on the enclosing method's parameters. */
export const mentionsParam = (v: Val): boolean => contains(v, (x) => x.k === "param");

/** Per value substituted, whether a parameter or `this` is in it (what substitution replaces). */
const substitutable = new WeakMap<Val, boolean>();

/**
 * Whether substitution can change a value, remembered per value: what is substituted comes from
 * the methods' facts (a factory's expansion, a callee's returns), again at each call.
 */
function replaceable(v: Val, depth = 0): boolean {
  if (v.k === "param" || v.k === "this") return true;
  if (!hasParts(v)) return false;
  let known = substitutable.get(v);
  if (known === undefined) {
    // Too deeply built to tell here: substitution looks at every part.
    if (depth > MAX_SUBSTITUTION_DEPTH) return true;
    known = children(v).some((c) => replaceable(c, depth + 1));
    substitutable.set(v, known);
  }
  return known;
}

/**
 * Whether `v` is built from one of the very value objects `source` is built from: after
 * substitution a caller's argument is one object wherever it went, so `getState(code)` and
 * `-code` share it, while a `-1` written elsewhere does not.
 */
export function mentions(v: Val, source: Val): boolean {
  const from = leaves(source);
  return from.size > 0 && contains(v, (x) => from.has(x));
}

/** The value objects `v` is built from (parameters and values made of nothing else), but the shared ones. */
export function leaves(v: Val): Set<Val> {
  if (!hasParts(v)) return SHARED.has(v) ? new Set() : new Set([v]);
  const out = new Set<Val>();
  contains(v, (x) => {
    if (x.k === "param" || !children(x).length) out.add(x);
    return false;
  });
  for (const shared of SHARED) out.delete(shared);
  return out;
}
