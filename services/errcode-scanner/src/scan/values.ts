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
/** A branch condition: `a op b` (`b` is 0 or null for the one-operand branches). */
export interface Cond {
  op: "eq" | "ne" | "lt" | "ge" | "gt" | "le";
  a: Val;
  b: Val;
}

export const UNKNOWN: Val = { k: "unknown" };
export const UNKNOWN_WIDE: Val = { k: "unknown", w: true };
export const NULL: Val = { k: "null" };
export const THIS: Val = { k: "this" };

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

/** Replaces parameter references with the caller's arguments (one call level); shared parts stay shared. */
export function substitute(v: Val, args: readonly Val[] | undefined, self?: Val, done = new Map<Val, Val>(), depth = 0): Val {
  if (!args) return v;
  const cached = done.get(v);
  if (cached) return cached;
  if (depth > MAX_SUBSTITUTION_DEPTH) return UNKNOWN;
  const sub = (x: Val) => substitute(x, args, self, done, depth + 1);
  let out: Val;
  switch (v.k) {
    case "param":
      return args[v.i] ?? UNKNOWN;
    case "this":
      return self ?? UNKNOWN;
    case "obj":
      out = v.args ? { k: "obj", cls: v.cls, desc: v.desc, args: v.args.map(sub) } : v;
      break;
    case "field":
    case "get":
      out = { ...v, recv: sub(v.recv) };
      break;
    case "call":
      out = { ...v, recv: v.recv && sub(v.recv), args: v.args.map(sub) };
      break;
    case "op":
      out = { ...v, a: sub(v.a), b: v.b && sub(v.b) };
      break;
    case "select":
      out = { ...v, cond: { op: v.cond.op, a: sub(v.cond.a), b: sub(v.cond.b) }, t: sub(v.t), f: sub(v.f) };
      break;
    case "concat":
      out = { ...v, parts: v.parts.map(sub) };
      break;
    case "join":
      out = { ...v, of: v.of.map(sub) };
      break;
    default:
      return v;
  }
  done.set(v, out);
  return out;
}

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
      return [v.cond.a, v.cond.b, v.t, v.f];
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

/**
 * Whether `v` is built from one of the very value objects `source` is built from: after
 * substitution a caller's argument is one object wherever it went, so `getState(code)` and
 * `-code` share it, while a `-1` written elsewhere does not.
 */
export function mentions(v: Val, source: Val): boolean {
  const leaves = new Set<Val>();
  contains(source, (x) => {
    if (x.k === "param" || !children(x).length) leaves.add(x);
    return false;
  });
  for (const shared of [UNKNOWN, UNKNOWN_WIDE, NULL, THIS]) leaves.delete(shared);
  return leaves.size > 0 && contains(v, (x) => leaves.has(x));
}
