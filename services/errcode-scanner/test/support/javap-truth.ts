// Ground truth for real jars, computed from `javap -c -p -s` text alone (no scanner code): the
// constants a library passes, at each call of its error-code API, in the argument that carries
// the code. Arguments are located by tracking the operand-stack depth before each instruction;
// a call whose code argument is the enclosing method's parameter makes that method part of the
// API too (with the constants its own callers pass), so helpers of any depth are followed.
import { execFileSync } from "node:child_process";

type Const = string | number | null;

/** A method of the library's error-code API and how its arguments give the code. */
export interface CodeApi {
  /** Owner in internal form (`org/h2/message/DbException`). */
  owner: string;
  name: string | RegExp;
  desc: RegExp;
  /** Indexes of the arguments the code is made of. */
  args: number[];
  /** The code from those arguments' constants; undefined when they make none. */
  code(values: Const[]): string | undefined;
}

export interface Truth {
  codes: Set<string>;
  /** Where each code is passed (`class.method`), to explain a miss. */
  where: Map<string, string[]>;
}

interface Insn {
  pc: number;
  op: string;
  text: string;
}
interface Method {
  cls: string;
  name: string;
  desc: string;
  isStatic: boolean;
  insns: Insn[];
  handlers: number[];
  targets: Set<number>;
  /** Successor pcs of switches, by the switch's pc. */
  switches: Map<number, number[]>;
}

const slotsOf = (t: string) => (t === "J" || t === "D" ? 2 : t === "V" ? 0 : 1);

function params(desc: string): string[] {
  const out: string[] = [];
  const body = desc.slice(1, desc.indexOf(")"));
  for (let i = 0; i < body.length; ) {
    const start = i;
    while (body[i] === "[") i++;
    i = body[i] === "L" ? body.indexOf(";", i) + 1 : i + 1;
    out.push(body.slice(start, i));
  }
  return out;
}

/** Every method of the jar's classes, as javap prints them. */
export function disassemble(jar: string): Method[] {
  const classes = execFileSync("jar", ["tf", jar], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 })
    .split("\n")
    .filter((n) => n.endsWith(".class") && !n.startsWith("META-INF/") && !n.endsWith("module-info.class"))
    .map((n) => n.slice(0, -6));
  const methods: Method[] = [];
  for (let i = 0; i < classes.length; i += 400) {
    const text = execFileSync("javap", ["-c", "-p", "-s", "-cp", jar, ...classes.slice(i, i + 400)], {
      encoding: "utf8",
      maxBuffer: 1024 * 1024 * 1024,
    });
    parse(text, methods);
  }
  return methods;
}

function parse(text: string, out: Method[]): void {
  let cls = "";
  let cur: Method | undefined;
  let pendingName: { name: string; isStatic: boolean } | undefined;
  let inTable = false;
  let inSwitch: number | undefined;
  for (const line of text.split("\n")) {
    const c = /^(?:[\w\s]*\s)?(?:class|interface|enum)\s+([\w.$]+)/.exec(line);
    if (c && !line.startsWith(" ")) {
      cls = c[1].replace(/\./g, "/");
      continue;
    }
    const sig = /^ {2}(\S.*?)([\w$<>]+)?\((.*)\)(?: throws [\w.$, ]+)?;$/.exec(line);
    if (sig) {
      const simple = cls.split("/").pop() ?? "";
      const dotted = cls.replace(/\//g, ".");
      const name = /\b([\w$]+)\($/.exec(line.slice(0, line.indexOf("(") + 1))?.[1] ?? "";
      pendingName = { name: name === simple || line.includes(`${dotted}(`) ? "<init>" : name, isStatic: / static /.test(` ${sig[1]}`) };
      continue;
    }
    if (/^ {2}static \{\};$/.test(line)) {
      pendingName = { name: "<clinit>", isStatic: true };
      continue;
    }
    const d = /^ {4}descriptor: (\(.*)$/.exec(line);
    if (d && pendingName) {
      cur = { cls, ...pendingName, desc: d[1], insns: [], handlers: [], targets: new Set(), switches: new Map() };
      out.push(cur);
      pendingName = undefined;
      inTable = false;
      continue;
    }
    if (!cur) continue;
    if (/^ {4}Exception table:/.test(line)) {
      inTable = true;
      continue;
    }
    if (inTable) {
      const h = /^\s+\d+\s+\d+\s+(\d+)\s+\S/.exec(line);
      if (h) cur.handlers.push(Number(h[1]));
      continue;
    }
    if (inSwitch !== undefined) {
      const t = /^\s+(?:-?\d+|default): (\d+)$/.exec(line);
      if (t) {
        cur.switches.get(inSwitch)?.push(Number(t[1]));
        cur.targets.add(Number(t[1]));
      } else if (/^\s+\}$/.test(line)) inSwitch = undefined;
      continue;
    }
    const ins = /^\s+(\d+): (\w+)\s*(.*)$/.exec(line);
    if (!ins) continue;
    const insn = { pc: Number(ins[1]), op: ins[2], text: ins[3] };
    cur.insns.push(insn);
    if (insn.op === "tableswitch" || insn.op === "lookupswitch") {
      inSwitch = insn.pc;
      cur.switches.set(insn.pc, []);
    } else if (/^(if|goto|jsr)/.test(insn.op)) cur.targets.add(Number(/^(\d+)/.exec(insn.text)?.[1]));
  }
}

const member = (text: string) => /\/\/ (?:Method|InterfaceMethod|Field) (?:([\w/$]+)\.)?("?[\w$<>]+"?):(\S+)/.exec(text);

/** Operand-stack slots an instruction pops and pushes. */
function effect(i: Insn): [number, number] {
  const op = i.op;
  if (op.startsWith("invoke")) {
    const m = op === "invokedynamic" ? /:([\w$]+):(\(\S*)$/.exec(i.text) : member(i.text);
    const desc = (op === "invokedynamic" ? m?.[2] : m?.[3]) ?? "()V";
    const argSlots = params(desc).reduce((n, t) => n + slotsOf(t), 0);
    const recv = op === "invokestatic" || op === "invokedynamic" ? 0 : 1;
    return [argSlots + recv, slotsOf(desc.slice(desc.indexOf(")") + 1))];
  }
  if (op === "getstatic" || op === "putstatic" || op === "getfield" || op === "putfield") {
    const w = slotsOf(member(i.text)?.[3] ?? "I");
    return op === "getstatic" ? [0, w] : op === "putstatic" ? [w, 0] : op === "getfield" ? [1, w] : [1 + w, 0];
  }
  if (op === "multianewarray") return [Number(/,\s*(\d+)/.exec(i.text)?.[1] ?? 1), 1];
  const fixed = EFFECTS[op];
  if (fixed) return fixed;
  if (/^[ifa]load(_\d)?$/.test(op)) return [0, 1];
  if (/^[ld]load(_\d)?$/.test(op)) return [0, 2];
  if (/^[ifa]store(_\d)?$/.test(op)) return [1, 0];
  if (/^[ld]store(_\d)?$/.test(op)) return [2, 0];
  if (/^(iconst|fconst)_/.test(op) || op === "aconst_null") return [0, 1];
  if (/^(lconst|dconst)_/.test(op)) return [0, 2];
  if (/^[if](add|sub|mul|div|rem|and|or|xor|shl|shr|ushr)$/.test(op)) return [2, 1];
  if (/^[ld](add|sub|mul|div|rem|and|or|xor)$/.test(op)) return [4, 2];
  if (/^l(shl|shr|ushr)$/.test(op)) return [3, 2];
  if (/^if_[ia]cmp/.test(op)) return [2, 0];
  if (/^if/.test(op)) return [1, 0];
  throw new Error(`javap-truth: no stack effect for ${op}`);
}

const EFFECTS: Record<string, [number, number]> = {
  nop: [0, 0],
  bipush: [0, 1],
  sipush: [0, 1],
  ldc: [0, 1],
  ldc_w: [0, 1],
  ldc2_w: [0, 2],
  iaload: [2, 1],
  faload: [2, 1],
  aaload: [2, 1],
  baload: [2, 1],
  caload: [2, 1],
  saload: [2, 1],
  laload: [2, 2],
  daload: [2, 2],
  iastore: [3, 0],
  fastore: [3, 0],
  aastore: [3, 0],
  bastore: [3, 0],
  castore: [3, 0],
  sastore: [3, 0],
  lastore: [4, 0],
  dastore: [4, 0],
  pop: [1, 0],
  pop2: [2, 0],
  dup: [1, 2],
  dup_x1: [2, 3],
  dup_x2: [3, 4],
  dup2: [2, 4],
  dup2_x1: [3, 5],
  dup2_x2: [4, 6],
  swap: [2, 2],
  ineg: [1, 1],
  fneg: [1, 1],
  lneg: [2, 2],
  dneg: [2, 2],
  iinc: [0, 0],
  i2l: [1, 2],
  i2f: [1, 1],
  i2d: [1, 2],
  l2i: [2, 1],
  l2f: [2, 1],
  l2d: [2, 2],
  f2i: [1, 1],
  f2l: [1, 2],
  f2d: [1, 2],
  d2i: [2, 1],
  d2l: [2, 2],
  d2f: [2, 1],
  i2b: [1, 1],
  i2c: [1, 1],
  i2s: [1, 1],
  lcmp: [4, 1],
  fcmpl: [2, 1],
  fcmpg: [2, 1],
  dcmpl: [4, 1],
  dcmpg: [4, 1],
  goto: [0, 0],
  goto_w: [0, 0],
  jsr: [0, 1],
  jsr_w: [0, 1],
  ret: [0, 0],
  tableswitch: [1, 0],
  lookupswitch: [1, 0],
  ireturn: [1, 0],
  freturn: [1, 0],
  areturn: [1, 0],
  lreturn: [2, 0],
  dreturn: [2, 0],
  return: [0, 0],
  athrow: [1, 0],
  new: [0, 1],
  newarray: [1, 1],
  anewarray: [1, 1],
  arraylength: [1, 1],
  checkcast: [1, 1],
  instanceof: [1, 1],
  monitorenter: [1, 0],
  monitorexit: [1, 0],
};

/** Stack depth before each instruction (undefined where unreachable). */
function depths(m: Method): Array<number | undefined> {
  const index = new Map(m.insns.map((x, i) => [x.pc, i]));
  const depth: Array<number | undefined> = new Array(m.insns.length);
  const work: Array<[number, number]> = [[0, 0], ...m.handlers.map((pc) => [index.get(pc) ?? -1, 1] as [number, number])];
  while (work.length) {
    const [i, dIn] = work.pop() as [number, number];
    if (i < 0 || i >= m.insns.length || depth[i] !== undefined) continue;
    depth[i] = dIn;
    const insn = m.insns[i];
    const [pop, push] = effect(insn);
    const d = dIn - pop + push;
    const op = insn.op;
    const target = () => index.get(Number(/^(\d+)/.exec(insn.text)?.[1])) ?? -1;
    if (op === "goto" || op === "goto_w") work.push([target(), d]);
    else if (op === "tableswitch" || op === "lookupswitch")
      for (const t of m.switches.get(insn.pc) ?? []) work.push([index.get(t) ?? -1, d]);
    else if (/return$/.test(op) || op === "athrow" || op === "ret") continue;
    else {
      if (/^if/.test(op)) work.push([target(), d]);
      work.push([i + 1, d]);
    }
  }
  return depth;
}

type Arg = { kind: "const"; value: Const } | { kind: "param"; index: number } | { kind: "other" };

function constantOf(i: Insn, field: (owner: string, name: string) => Const | undefined): Const | undefined {
  const op = i.op;
  if (op === "aconst_null") return null;
  const ic = /^iconst_(m1|\d)$/.exec(op);
  if (ic) return ic[1] === "m1" ? -1 : Number(ic[1]);
  if (op === "bipush" || op === "sipush") return Number(i.text);
  if (op === "ldc" || op === "ldc_w" || op === "ldc2_w") {
    const s = /\/\/ String (.*)$/.exec(i.text);
    if (s) return s[1];
    const n = /\/\/ (?:int|long|float|double) (-?[\d.]+)[lfd]?$/.exec(i.text);
    return n ? Number(n[1]) : undefined;
  }
  if (op === "getstatic") {
    const f = member(i.text);
    return f ? field(f[1] ?? "", f[2]) : undefined;
  }
  return undefined;
}

/**
 * The codes a jar passes to its error-code API. `field` gives the value of a static field read
 * with getstatic (enum constants holding a code); compile-time constants are already inlined.
 */
export function truthOf(
  methods: Method[],
  api: CodeApi[],
  field: (owner: string, name: string) => Const | undefined = () => undefined,
): Truth {
  const codes = new Set<string>();
  const where = new Map<string, string[]>();
  const calls = new Map<string, Map<string, Array<{ m: Method; i: number }>>>();
  const depthMemo = new Map<Method, Array<number | undefined>>();
  for (const m of methods)
    m.insns.forEach((insn, i) => {
      if (!insn.op.startsWith("invoke") || insn.op === "invokedynamic") return;
      const r = member(insn.text);
      if (!r) return;
      const owner = r[1] ?? m.cls;
      const name = r[2].replace(/"/g, "");
      let byName = calls.get(owner);
      if (!byName) {
        byName = new Map();
        calls.set(owner, byName);
      }
      const list = byName.get(name);
      if (list) list.push({ m, i });
      else byName.set(name, [{ m, i }]);
    });

  const argOf = (m: Method, i: number, k: number): Arg => {
    let depth = depthMemo.get(m);
    if (!depth) {
      depth = depths(m);
      depthMemo.set(m, depth);
    }
    const d = depth[i];
    if (d === undefined) return { kind: "other" };
    const desc = member(m.insns[i].text)?.[3] ?? "()V";
    const ps = params(desc);
    const startOf = (j: number) => d - ps.slice(j).reduce((n, t) => n + slotsOf(t), 0);
    const find = (j: number, before: number) => {
      for (let x = before - 1; x >= 0; x--) if (depth[x] === startOf(j)) return x;
      return -1;
    };
    const first = find(k, i);
    const next = k + 1 < ps.length ? find(k + 1, i) : i;
    // One instruction, and no branch joins right after it: `c ? "A" : "B"` is no single constant.
    if (first < 0 || next !== first + 1 || m.targets.has(m.insns[next].pc)) return { kind: "other" };
    const insn = m.insns[first];
    const value = constantOf(insn, field);
    if (value !== undefined) return { kind: "const", value };
    const load = /^[ilfda]load(?:_(\d))?$/.exec(insn.op);
    if (!load) return { kind: "other" };
    const local = Number(load[1] ?? insn.text);
    let slot = m.isStatic ? 0 : 1;
    const own = params(m.desc);
    for (let p = 0; p < own.length; p++) {
      if (slot === local) return { kind: "param", index: p };
      slot += slotsOf(own[p]);
    }
    return { kind: "other" };
  };

  type Work = { api: CodeApi; id: string; depth: number };
  const seen = new Set<string>();
  const work: Work[] = api.map((a, n) => ({ api: a, id: `api${n}`, depth: 0 }));
  while (work.length) {
    const { api: entry, id: parentId, depth } = work.pop() as Work;
    const byName = calls.get(entry.owner);
    for (const [name, list] of byName ?? []) {
      if (typeof entry.name === "string" ? name !== entry.name : !entry.name.test(name)) continue;
      for (const { m, i } of list) {
        if (!entry.desc.test(member(m.insns[i].text)?.[3] ?? "")) continue;
        const args = entry.args.map((k) => argOf(m, i, k));
        if (args.some((a) => a.kind === "other")) continue;
        if (args.every((a) => a.kind === "const")) {
          const code = entry.code(args.map((a) => (a as { value: Const }).value));
          if (code === undefined) continue;
          codes.add(code);
          where.set(code, [...(where.get(code) ?? []), `${m.cls}.${m.name}`]);
          continue;
        }
        // The code comes in through the enclosing method's parameters: its callers are part of the
        // API too, unless the method hands back something else than an exception.
        const ret = m.desc.slice(m.desc.indexOf(")") + 1);
        if (depth >= 8 || (ret.startsWith("L") && !/(Exception|Error);$/.test(ret))) continue;
        const id = `${parentId}>${m.cls}.${m.name}${m.desc}${JSON.stringify(args)}`;
        const key = `${m.cls}.${m.name}${m.desc}${JSON.stringify(args)}@${parentId.split(">")[0]}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const escaped = m.desc.replace(/[[\]()$/;.]/g, (ch) => `\\${ch}`);
        work.push({
          id,
          depth: depth + 1,
          api: {
            owner: m.cls,
            name: m.name,
            desc: new RegExp(`^${escaped}$`),
            args: args.flatMap((a) => (a.kind === "param" ? [a.index] : [])),
            code: (values) => {
              let next = 0;
              return entry.code(args.map((a) => (a.kind === "const" ? a.value : values[next++])));
            },
          },
        });
      }
    }
  }
  return { codes, where };
}
