// What each method calls, for the service's tables (the seed's _method table: inv_clazz,
// inv_method). Read off the invoke instructions alone: nothing is interpreted, and the CLI,
// which has no tables, never asks.
import { nextPc, u16 } from "./bytecode.js";
import type { ConstantPool, MemberRef } from "./constant-pool.js";

export type InvokeOp = "virtual" | "special" | "static" | "interface" | "dynamic";

/** One call a method makes. */
export interface Invocation {
  op: InvokeOp;
  owner: string;
  name: string;
  desc: string;
  line?: number;
}

const OPS: Record<number, InvokeOp> = { 182: "virtual", 183: "special", 184: "static", 185: "interface", 186: "dynamic" };

export function invocationsOf(
  code: Uint8Array,
  cp: ConstantPool,
  lineOf: (pc: number) => number | undefined,
  bootstrapTarget: (index: number) => MemberRef | undefined,
): Invocation[] {
  const out: Invocation[] = [];
  for (let pc = 0; pc < code.length; pc = nextPc(code, pc)) {
    const op = OPS[code[pc]];
    if (!op) continue;
    const line = lineOf(pc);
    if (op !== "dynamic") {
      const m = cp.memberRef(u16(code, pc + 1));
      out.push({ op, owner: m.owner, name: m.name, desc: m.desc, line });
    } else {
      const d = cp.invokeDynamic(u16(code, pc + 1));
      // A lambda or method reference is recorded as a call of its body.
      const target = bootstrapTarget(d.bootstrap);
      out.push({ op, owner: target?.owner ?? "", name: target?.name ?? d.name, desc: target?.desc ?? d.desc, line });
    }
  }
  return out;
}
