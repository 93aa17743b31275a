import { objectClass, parameterTypes, returnType, STRING } from "./descriptor.js";
import type { Hierarchy, ScannedClass } from "./hierarchy.js";
import type { Site } from "./interpreter.js";
import { mentionsParam, substitute, type Val } from "./values.js";

/**
 * How code and message are told apart at a base-class constructor. `slots` pins them per base
 * class and constructor descriptor (argument indexes); without a pin, the first String argument
 * shaped like a code (`codeShape`) is the code and another String the message, and objects
 * (enum constants, constant holders) give theirs through fields named in `codeFields`/`messageFields`.
 */
export interface CodeMapping {
  codeShape: RegExp;
  slots: Record<string, Record<string, { code?: number; message?: number }>>;
  codeFields: string[];
  messageFields: string[];
}

export const defaultMapping: CodeMapping = {
  // No whitespace, 2–64 characters, and either a digit or all upper case: "E1001", "ACC-0001", "08001", "TIMEOUT".
  codeShape: /^(?=\S*\d|[A-Z0-9_.:-]+$)[A-Za-z0-9][A-Za-z0-9_.:-]{1,63}$/,
  slots: {},
  codeFields: ["code", "errorCode", "errCode", "errorNo", "state", "sqlState", "status", "value"],
  messageFields: ["message", "msg", "errorMessage", "errMsg", "description", "desc", "text", "reason", "defaultMessage"],
};

export type Known = { kind: "constant"; value: string } | { kind: "dynamic" } | { kind: "absent" };

export interface Location {
  artifact: string;
  class: string;
  method: string;
  line?: number;
}

/** One construction site of an exception, with what could be known of its code and message. */
export interface Finding {
  exceptionClass: string;
  family: string;
  code: Known;
  message: Known;
  location: Location;
}

type Concrete =
  | { t: "str"; v: string }
  | { t: "num"; v: string }
  | { t: "null" }
  | { t: "obj"; cls: string; fields: Map<string, Val> }
  | { t: "unknown" };

const UNKNOWN_C: Concrete = { t: "unknown" };
const ABSENT: Known = { kind: "absent" };
const DYNAMIC: Known = { kind: "dynamic" };
const MAX_DEPTH = 24;

interface BaseCall {
  cls: string;
  desc: string;
  args: Val[];
}

/** Recovers codes and messages at every construction site of the hierarchy's exception classes. */
export class CodeExtractor {
  private readonly staticMemo = new Map<string, Concrete>();

  constructor(
    private readonly h: Hierarchy,
    private readonly mapping: CodeMapping,
  ) {}

  findings(): Finding[] {
    const out: Finding[] = [];
    for (const c of this.h.classes) {
      for (const m of c.methods) {
        if (!m.sites.length) continue;
        const passesThrough =
          (m.name === "<init>" && this.h.isException(c.name)) || ((m.access & 0x0008) !== 0 && this.returnsException(m.desc));
        for (const site of m.sites) {
          for (const r of this.expand(site, c, 0)) {
            const { code, message, dependsOnParams } = this.classify(r.base);
            // Values a constructor or factory receives are reported where it is called.
            if (dependsOnParams && passesThrough) continue;
            out.push({
              exceptionClass: r.exceptionClass,
              family: this.h.familyOf(r.exceptionClass),
              code,
              message,
              location: { artifact: c.location, class: c.name, method: `${m.name}${m.desc}`, line: site.line },
            });
          }
        }
      }
    }
    return out;
  }

  private returnsException(desc: string): boolean {
    const cls = objectClass(returnType(desc));
    return cls !== undefined && this.h.isException(cls);
  }

  /** The base-class constructor calls a site leads to, with arguments in the site's method's terms. */
  private expand(site: Site, enclosing: ScannedClass, depth: number): Array<{ exceptionClass: string; base: BaseCall }> {
    if (depth > MAX_DEPTH) return [];
    if (site.kind !== "static") {
      if (!this.h.isException(site.owner)) return [];
      const exceptionClass = site.kind === "new" ? site.owner : enclosing.name;
      return [{ exceptionClass, base: this.toBase(site.owner, site.desc, site.args, 0) }];
    }
    if (!this.returnsException(site.desc)) return [];
    const target = this.h.findMethod(site.owner, site.name, site.desc);
    if (!target) return [];
    const out: Array<{ exceptionClass: string; base: BaseCall }> = [];
    for (const inner of target.method.sites) {
      if (inner.kind === "init-this") continue;
      for (const r of this.expand(inner, target.owner, depth + 1))
        out.push({ exceptionClass: r.exceptionClass, base: { ...r.base, args: r.base.args.map((a) => substitute(a, site.args)) } });
    }
    return out;
  }

  /** Follows `super(...)`/`this(...)` from a constructor up to the configured base class. */
  private toBase(cls: string, desc: string, args: Val[], depth: number): BaseCall {
    if (this.h.bases.has(cls) || depth > MAX_DEPTH) return { cls, desc, args };
    const ctor = this.h.byName.get(cls)?.methods.find((m) => m.name === "<init>" && m.desc === desc);
    const delegation = ctor?.sites.find((s) => s.kind === "init-this");
    if (!delegation || !this.h.isException(delegation.owner)) return { cls, desc, args };
    return this.toBase(
      delegation.owner,
      delegation.desc,
      delegation.args.map((a) => substitute(a, args)),
      depth + 1,
    );
  }

  private classify(base: BaseCall): { code: Known; message: Known; dependsOnParams: boolean } {
    const types = parameterTypes(base.desc);
    const values = base.args.map((a) => this.resolve(a, 0));
    const paramArgs = base.args.some(mentionsParam);
    const pinned = this.mapping.slots[base.cls]?.[base.desc];
    if (pinned) {
      const code = pinned.code === undefined ? ABSENT : this.knownOf(values[pinned.code], "code");
      const message = pinned.message === undefined ? ABSENT : this.knownOf(values[pinned.message], "message");
      return { code, message, dependsOnParams: paramArgs && (code.kind === "dynamic" || message.kind === "dynamic") };
    }
    let code: Known | undefined;
    let message: Known | undefined;
    let numeric: string | undefined;
    let dynamicStrings = 0;
    let dynamicObjects = 0;
    let nullHolders = 0;
    types.forEach((t, i) => {
      const v = values[i] ?? UNKNOWN_C;
      if (v.t === "obj") {
        const cm = this.codeAndMessage(v);
        if (!code && cm.code.kind === "constant") code = cm.code;
        if (!message && cm.message.kind === "constant") message = cm.message;
        return;
      }
      if (t === STRING) {
        if (v.t === "str") {
          if (!code && this.mapping.codeShape.test(v.v)) code = { kind: "constant", value: v.v };
          else if (!message) message = { kind: "constant", value: v.v };
        } else if (v.t === "unknown") dynamicStrings++;
      } else if (t === "I" || t === "J" || t === "S") {
        if (v.t === "num" && numeric === undefined) numeric = v.v;
      } else if (t.startsWith("L") && !/(Throwable|Exception|Error);$/.test(t) && t !== "Ljava/lang/Object;") {
        if (v.t === "unknown") dynamicObjects++;
        else if (v.t === "null") nullHolders++;
      }
    });
    if (!code && numeric !== undefined) code = { kind: "constant", value: numeric };
    // A code holder (enum, constant object) passed as null: there is no code, the Strings are messages.
    if (!code && nullHolders > 0 && dynamicObjects === 0) code = ABSENT;
    if (!code && (dynamicStrings > 0 || dynamicObjects > 0)) {
      code = DYNAMIC;
      if (dynamicObjects === 0) dynamicStrings--;
    }
    if (!message && (dynamicStrings > 0 || dynamicObjects > 0)) message = DYNAMIC;
    const c = code ?? ABSENT;
    const m = message ?? ABSENT;
    return { code: c, message: m, dependsOnParams: paramArgs && (c.kind === "dynamic" || m.kind === "dynamic") };
  }

  private knownOf(v: Concrete | undefined, slot: "code" | "message"): Known {
    if (!v || v.t === "unknown") return DYNAMIC;
    if (v.t === "null") return ABSENT;
    if (v.t === "obj") return this.codeAndMessage(v)[slot];
    return { kind: "constant", value: v.v };
  }

  /** Code and message an enum constant or constant holder carries in its fields. */
  private codeAndMessage(obj: { cls: string; fields: Map<string, Val> }): { code: Known; message: Known } {
    const names = [...obj.fields.keys()];
    const pick = (wanted: string[], fragment: RegExp) => {
      const lower = wanted.map((w) => w.toLowerCase());
      return names.find((n) => lower.includes(n.toLowerCase())) ?? names.find((n) => fragment.test(n));
    };
    const codeField = pick(this.mapping.codeFields, /code/i);
    const messageField = pick(this.mapping.messageFields, /msg|message|desc/i);
    const known = (field: string | undefined): Known => {
      if (!field) return ABSENT;
      const v = this.resolve(obj.fields.get(field) as Val, 0);
      return v.t === "str" || v.t === "num" ? { kind: "constant", value: v.v } : v.t === "null" ? ABSENT : DYNAMIC;
    };
    if (codeField) return { code: known(codeField), message: known(messageField) };
    // No telling field names: fall back to the shapes of the String fields, in declaration order.
    let code: Known = ABSENT;
    let message: Known = known(messageField);
    for (const n of names) {
      const v = this.resolve(obj.fields.get(n) as Val, 0);
      if (v.t !== "str") continue;
      if (code.kind === "absent" && this.mapping.codeShape.test(v.v)) code = { kind: "constant", value: v.v };
      else if (message.kind === "absent" && n !== messageField) message = { kind: "constant", value: v.v };
    }
    return { code, message };
  }

  /** What an abstract value is once the whole artifact is known. */
  private resolve(v: Val, depth: number): Concrete {
    if (depth > MAX_DEPTH) return UNKNOWN_C;
    switch (v.k) {
      case "str":
        return { t: "str", v: v.v };
      case "num":
        return { t: "num", v: v.v };
      case "null":
        return { t: "null" };
      case "static":
        return this.resolveStatic(v.owner, v.name, depth);
      case "obj":
        return v.args && v.desc ? { t: "obj", cls: v.cls, fields: this.objectFields(v.cls, v.desc, v.args, 0) } : UNKNOWN_C;
      case "field": {
        const recv = this.resolve(v.recv, depth + 1);
        const f = recv.t === "obj" ? recv.fields.get(v.name) : undefined;
        return f ? this.resolve(f, depth + 1) : UNKNOWN_C;
      }
      case "get": {
        const recv = this.resolve(v.recv, depth + 1);
        if (recv.t !== "obj") return UNKNOWN_C;
        const target = this.h.findMethod(recv.cls, v.name, v.desc);
        if (!target || target.method.returns.length === 0) return UNKNOWN_C;
        const results = target.method.returns.map((r) =>
          r.k === "field" && r.recv.k === "this"
            ? (() => {
                const f = recv.fields.get(r.name);
                return f ? this.resolve(f, depth + 1) : UNKNOWN_C;
              })()
            : this.resolve(r, depth + 1),
        );
        const first = results[0];
        return results.every((r) => sameConcrete(r, first)) ? first : UNKNOWN_C;
      }
      default:
        return UNKNOWN_C;
    }
  }

  private resolveStatic(owner: string, name: string, depth: number): Concrete {
    const key = `${owner}#${name}`;
    const memo = this.staticMemo.get(key);
    if (memo) return memo;
    this.staticMemo.set(key, UNKNOWN_C); // cycles resolve to unknown
    let result: Concrete = UNKNOWN_C;
    let cur: string | undefined = owner;
    for (let i = 0; cur && i < 64; i++) {
      const c = this.h.byName.get(cur);
      if (!c) break;
      const field = c.fields.find((f) => f.name === name);
      if (field) {
        if (field.constant) result = this.resolve(field.constant, depth + 1);
        else {
          const stores = c.methods.find((m) => m.name === "<clinit>")?.staticStores.filter(([n]) => n === name) ?? [];
          // Only a field assigned once in the static initializer has a known value.
          if (stores.length === 1 && (field.access & 0x0018) === 0x0018) result = this.resolve(stores[0][1], depth + 1);
        }
        break;
      }
      cur = c.superName;
    }
    this.staticMemo.set(key, result);
    return result;
  }

  /** Fields a constructor call sets: the delegated constructor's first, then its own `this.f = …`. */
  private objectFields(cls: string, desc: string, args: Val[], depth: number): Map<string, Val> {
    const fields = new Map<string, Val>();
    if (depth > MAX_DEPTH) return fields;
    const ctor = this.h.byName.get(cls)?.methods.find((m) => m.name === "<init>" && m.desc === desc);
    if (!ctor) return fields;
    const delegation = ctor.sites.find((s) => s.kind === "init-this");
    if (delegation && this.h.byName.has(delegation.owner))
      for (const [k, v] of this.objectFields(
        delegation.owner,
        delegation.desc,
        delegation.args.map((a) => substitute(a, args)),
        depth + 1,
      ))
        fields.set(k, v);
    for (const [name, v] of ctor.fieldStores) fields.set(name, substitute(v, args));
    return fields;
  }
}

function sameConcrete(a: Concrete, b: Concrete): boolean {
  if (a.t !== b.t) return false;
  if ((a.t === "str" || a.t === "num") && (b.t === "str" || b.t === "num")) return a.v === b.v;
  return a.t === "null";
}
