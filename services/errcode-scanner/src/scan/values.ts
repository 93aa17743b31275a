/**
 * Abstract values the bytecode interpreter tracks on the operand stack and in locals.
 * They stay symbolic (a parameter, a static field, a getter call) until resolution, when the
 * whole artifact is known; `w` marks long/double values (two slots).
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
  | { k: "unknown"; w?: boolean };

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

/** Replaces parameter references with the caller's arguments (one call level). */
export function substitute(v: Val, args: readonly Val[] | undefined, self?: Val): Val {
  if (!args) return v;
  switch (v.k) {
    case "param":
      return args[v.i] ?? UNKNOWN;
    case "this":
      return self ?? UNKNOWN;
    case "obj":
      return v.args ? { k: "obj", cls: v.cls, desc: v.desc, args: v.args.map((a) => substitute(a, args, self)) } : v;
    case "field":
      return { ...v, recv: substitute(v.recv, args, self) };
    case "get":
      return { ...v, recv: substitute(v.recv, args, self) };
    default:
      return v;
  }
}

/** Whether a value still depends on the enclosing method's parameters. */
export function mentionsParam(v: Val): boolean {
  switch (v.k) {
    case "param":
      return true;
    case "obj":
      return v.args?.some(mentionsParam) ?? false;
    case "field":
    case "get":
      return mentionsParam(v.recv);
    default:
      return false;
  }
}
