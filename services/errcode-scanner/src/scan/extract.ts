import type { MethodModel } from "./classfile.js";
import { objectClass, parameterTypes, returnType, STRING } from "./descriptor.js";
import type { Hierarchy, ScannedClass } from "./hierarchy.js";
import { fold, type Guard, type Returned, type Site } from "./interpreter.js";
import type { CodeMapping } from "./mapping.js";
import { type Relevance, relevantMethods } from "./relevance.js";
import { type Cond, leaves, mapCond, mentions, mentionsParam, substitute, type Val } from "./values.js";

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

/** A constructor call: the base class's, or the first one outside the artifact an object's constructor makes. */
interface CtorCall {
  cls: string;
  desc: string;
  args: Val[];
}

type Concrete =
  | { t: "str"; v: string }
  | { t: "num"; v: string }
  | { t: "null" }
  /** An object built in the artifact: the fields its constructor set, and the constructor it handed on to outside the artifact. */
  | { t: "obj"; cls: string; fields: Map<string, Val>; external?: CtorCall }
  /** One of several objects (a helper returning different exceptions on different paths). */
  | { t: "alts"; options: Array<Concrete & { t: "obj" }> }
  | { t: "unknown" };

const UNKNOWN_C: Concrete = { t: "unknown" };
const ABSENT: Known = { kind: "absent" };
const DYNAMIC: Known = { kind: "dynamic" };
const MAX_DEPTH = 24;
/** Values resolved for one construction site at most: a pathological call graph gives up, not the scan. */
const RESOLVE_BUDGET = 20_000;
const ACC_PRIVATE = 0x0002;
const ACC_STATIC = 0x0008;
const ACC_FINAL = 0x0010;
const ACC_ABSTRACT = 0x0400;

/** A base-class constructor call a construction site leads to, and the exception class built. */
interface Expansion {
  exceptionClass: string;
  base: CtorCall;
}

/** Whether a method's own sites are reported at its callers: a factory's that depend on its parameters, a helper's whose code it receives. */
type Passes = "factory" | "helper" | undefined;

/** A site of a relevant method and a base-constructor call it leads to. */
interface Expanded {
  c: ScannedClass;
  m: MethodModel;
  site: Site;
  passes: Passes;
  r: Expansion;
}

/** A String argument slot of a base constructor, for learning which slot carries codes. */
interface SlotStats {
  constants: number;
  shaped: number;
}

/** Recovers codes and messages at every construction site of the hierarchy's exception classes. */
export class CodeExtractor {
  private readonly staticMemo = new Map<string, Concrete>();
  private readonly factoryMemo = new Map<MethodModel, Expansion[]>();
  /** Factories being expanded, with their depth in the expansion. */
  private readonly expanding = new Map<MethodModel, number>();
  /** The shallowest factory a call cycle returned to (none: infinity). */
  private cutAt = Number.POSITIVE_INFINITY;
  private readonly resolved = new WeakMap<Val, Concrete>();
  private readonly callMemo = new Map<MethodModel, Map<string, Concrete>>();
  private readonly objectMemo = new WeakMap<Concrete, { code: Known; message: Known }>();
  private budget = RESOLVE_BUDGET;
  /** Base-constructor String slots that nearly always receive code-shaped constants. */
  private codeSlots = new Set<string>();
  /** Methods some site in the artifact calls (their parameter-dependent sites are reported there). */
  private readonly called = new Set<MethodModel>();
  /** Methods that can lead to an exception under the bases, and why (see relevance.ts); no other one expands to anything. */
  private relevant = new Map<MethodModel, Relevance>();
  /** Per relevant method, whether any of its sites can expand to anything (see {@link worth}). */
  private readonly worthMemo = new Map<MethodModel, boolean>();
  private readonly weighing = new Set<MethodModel>();
  /** Call cycles cut short so far (a factory or a weighing that returned to itself). */
  private cycles = 0;
  /** Per expansion of a helper, whether its code comes from the helper's parameters. */
  private readonly handsOnMemo = new WeakMap<CtorCall, boolean>();
  /** What each site of a relevant method calls (null: nothing the extractor follows). */
  private readonly siteTargets = new WeakMap<Site, { owner: ScannedClass; method: MethodModel } | null>();
  /** Per method descriptor, whether it returns an exception under the bases (asked at every call site). */
  private readonly returnsExceptionMemo = new Map<string, boolean>();

  constructor(
    private readonly h: Hierarchy,
    private readonly mapping: CodeMapping,
  ) {}

  findings(): Finding[] {
    // Only methods that can lead to an exception have sites worth expanding; the rest are never interpreted.
    const relevant = relevantMethods(this.h);
    this.relevant = relevant;
    for (const m of relevant.keys()) if (this.worth(m)) this.noteCalls(m);
    const expanded: Expanded[] = [];
    for (const c of this.h.classes) for (const m of c.methods) if (this.worth(m)) this.expandAll(c, m, expanded);
    this.codeSlots = this.learnCodeSlots(expanded.map((e) => e.r.base));
    const out: Finding[] = [];
    for (const e of expanded) this.report(e, out);
    return out;
  }

  /** Records the methods a method's sites call (their parameter-dependent sites are reported at those calls). */
  private noteCalls(m: MethodModel): void {
    for (const site of m.sites) {
      const target = site.kind === "static" || site.kind === "call" ? this.siteTarget(site) : undefined;
      if (target) this.called.add(target.method);
    }
  }

  /** Every base-constructor call a method's sites lead to. */
  private expandAll(c: ScannedClass, m: MethodModel, into: Expanded[]): void {
    if (!m.sites.length) return;
    const passes: Passes =
      (m.name === "<init>" && this.h.isException(c.name)) || (this.called.has(m) && this.expandable(c, m) && this.returnsException(m.desc))
        ? "factory"
        : this.called.has(m) && this.expandable(c, m)
          ? "helper"
          : undefined;
    for (const site of m.sites) for (const r of this.expand(site, c)) into.push({ c, m, site, passes, r });
  }

  /** The finding of one expanded site, unless it is reported where its method is called. */
  private report({ c, m, site, passes, r }: Expanded, out: Finding[]): void {
    this.budget = RESOLVE_BUDGET;
    const { code, message, dependsOnParams } = this.classify(r.base);
    // Values a constructor or factory receives are reported where it is called; a helper hands on
    // only the sites whose code it receives.
    if (passes === "factory" && dependsOnParams) return;
    if (passes === "helper" && this.handsOn(r.base)) return;
    out.push({
      exceptionClass: r.exceptionClass,
      family: this.h.familyOf(r.exceptionClass),
      code,
      message,
      location: { artifact: c.location, class: c.name, method: `${m.name}${m.desc}`, line: site.line },
    });
  }

  /**
   * Base-constructor String slots where at least 80 % of the constants passed (and five or more)
   * are shaped like codes: there, a constant without whitespace is a code even when its shape is
   * not (Derby's "intrp.U" beside hundreds of "42X01"s), provided no other argument looks like one.
   */
  private learnCodeSlots(calls: CtorCall[]): Set<string> {
    const stats = new Map<string, SlotStats>();
    for (const call of calls) {
      const types = parameterTypes(call.desc);
      call.args.forEach((a, i) => {
        if (types[i] !== STRING || a.k !== "str") return;
        const key = `${call.cls}${call.desc}#${i}`;
        const s = stats.get(key) ?? { constants: 0, shaped: 0 };
        s.constants++;
        if (this.mapping.codeShape.test(a.v)) s.shaped++;
        stats.set(key, s);
      });
    }
    return new Set([...stats].filter(([, s]) => s.shaped >= 5 && s.shaped >= 0.8 * s.constants).map(([k]) => k));
  }

  private returnsException(desc: string): boolean {
    let returns = this.returnsExceptionMemo.get(desc);
    if (returns === undefined) {
      const cls = objectClass(returnType(desc));
      returns = cls !== undefined && this.h.isException(cls);
      this.returnsExceptionMemo.set(desc, returns);
    }
    return returns;
  }

  /** Whether calls of a method reach exactly it (no override can run instead), so they can be expanded. */
  private expandable(c: ScannedClass, m: MethodModel): boolean {
    if (m.name === "<init>") return this.h.isException(c.name);
    if (m.access & ACC_ABSTRACT) return false;
    return (m.access & (ACC_STATIC | ACC_PRIVATE | ACC_FINAL)) !== 0 || (c.access & ACC_FINAL) !== 0;
  }

  /** The method a call site runs, when the artifact has it and no override can run instead. */
  private target(site: Site): { owner: ScannedClass; method: MethodModel } | undefined {
    if (site.kind === "static") return this.h.findMethod(site.owner, site.name, site.desc);
    if (site.kind !== "call") return undefined;
    // A receiver built right here has its class known exactly.
    const exact = site.recv?.k === "obj" ? site.recv.cls : undefined;
    const found = this.h.findMethod(exact ?? site.owner, site.name, site.desc);
    if (!found || found.method.access & ACC_ABSTRACT) return undefined;
    return exact || site.op === "special" || this.expandable(found.owner, found.method) ? found : undefined;
  }

  /**
   * Whether a relevant method is worth interpreting: it builds an exception itself, or calls a
   * method whose expansion reaches its callers (a factory's, or a helper's that depends on its
   * parameters). Half the methods the relevance pass keeps call only helpers that throw codes of
   * their own (H2's `checkColumnIndex(int)`), and interpreting them found nothing.
   */
  private worth(m: MethodModel): boolean {
    const why = this.relevant.get(m);
    if (!why) return false;
    if (why.builds) return true;
    let worth = this.worthMemo.get(m);
    if (worth !== undefined) return worth;
    // A call cycle back to a method being weighed: count it as worth it, as interpreting it always was.
    if (this.weighing.has(m)) {
      this.cycles++;
      return true;
    }
    const cyclesBefore = this.cycles;
    this.weighing.add(m);
    worth = false;
    for (const [callee, owner] of why.calls)
      if (this.worth(callee) && this.reachesCallers(owner, callee)) {
        worth = true;
        break;
      }
    this.weighing.delete(m);
    // Nothing found through a cycle cut short is only nothing so far: asked again, it is weighed again.
    if (worth || this.cycles === cyclesBefore) this.worthMemo.set(m, worth);
    return worth;
  }

  /** Whether calls of a method expand to anything at the caller (see {@link expand}). */
  private reachesCallers(owner: ScannedClass, m: MethodModel): boolean {
    const results = this.factory(owner, m);
    return results.length > 0 && (this.returnsException(m.desc) || results.some((r) => this.handsOn(r.base)));
  }

  /** {@link target} of a method's own site, which is asked for twice (its calls are noted, then expanded). */
  private siteTarget(site: Site): { owner: ScannedClass; method: MethodModel } | undefined {
    let found = this.siteTargets.get(site);
    if (found === undefined) {
      found = this.target(site) ?? null;
      this.siteTargets.set(site, found);
    }
    return found ?? undefined;
  }

  /** The base-class constructor calls a site leads to, with arguments in the site's method's terms. */
  private expand(site: Site, enclosing: ScannedClass): Expansion[] {
    if (site.kind === "new" || site.kind === "init-this") {
      if (!this.h.isException(site.owner)) return [];
      const exceptionClass = site.kind === "new" ? site.owner : enclosing.name;
      return [{ exceptionClass, base: this.toBase(site.owner, site.desc, site.args, 0) }];
    }
    const target = this.siteTarget(site);
    if (!target) return [];
    const results = this.factory(target.owner, target.method);
    // A factory hands its exception back; any other helper throws it, and only what depends on
    // its arguments is new at the call (its own constant sites are reported inside it).
    const helper = !this.returnsException(site.desc);
    const out: Expansion[] = [];
    for (const r of results) {
      if (helper && !this.handsOn(r.base)) continue;
      out.push({
        exceptionClass: r.exceptionClass,
        base: { ...r.base, args: r.base.args.map((a) => substitute(a, site.args, site.recv)) },
      });
    }
    return out;
  }

  /** Whether a helper's site gets its code from the helper's parameters (and so is reported at its callers). */
  private handsOn(base: CtorCall): boolean {
    // A helper's expansion is asked about at each of its calls: it is the same at all of them.
    let hands = this.handsOnMemo.get(base);
    if (hands === undefined) {
      hands = false;
      if (base.args.some(mentionsParam)) {
        this.budget = RESOLVE_BUDGET;
        hands = this.classify(base).code.kind === "dynamic";
      }
      this.handsOnMemo.set(base, hands);
    }
    return hands;
  }

  /**
   * What a factory or helper builds, in terms of its own parameters. Computed once per method:
   * re-expanding at every call made a factory that calls itself twice (Derby's
   * `plainWrapException`) exponential. A call back into a method still being expanded adds
   * nothing its other paths do not already give, so it expands to nothing.
   */
  private factory(owner: ScannedClass, method: MethodModel): Expansion[] {
    // Interpreting a method that builds no exception (a string utility a factory calls) would find nothing.
    if (!this.worth(method)) return [];
    const memo = this.factoryMemo.get(method);
    if (memo) return memo;
    const level = this.expanding.get(method);
    if (level !== undefined) {
      this.cutAt = Math.min(this.cutAt, level);
      this.cycles++;
      return [];
    }
    if (this.expanding.size > MAX_DEPTH) return [];
    const own = this.expanding.size;
    this.expanding.set(method, own);
    const out: Expansion[] = [];
    for (const inner of method.sites) if (inner.kind !== "init-this") for (const r of this.expand(inner, owner)) out.push(r);
    this.expanding.delete(method);
    // A method in a cycle through a caller still being expanded is incomplete until that caller is done.
    if (this.cutAt >= own) {
      this.factoryMemo.set(method, out);
      this.cutAt = Number.POSITIVE_INFINITY;
    }
    return out;
  }

  /**
   * Follows `super(...)`/`this(...)` from a constructor up to the configured base class, and
   * within the base class along `this(...)` to the constructor the others hand on to (unless a
   * pinned mapping names the one reached), so that all sites meet at the same slots.
   */
  private toBase(cls: string, desc: string, args: Val[], depth: number): CtorCall {
    if (depth > MAX_DEPTH || this.mapping.slots[cls]?.[desc]) return { cls, desc, args };
    const owner = this.h.byName.get(cls);
    const ctor = owner && this.h.declared(owner, "<init>", desc);
    const delegation = ctor?.sites.find((s) => s.kind === "init-this");
    const onward = this.h.bases.has(cls) ? delegation?.owner === cls : delegation && this.h.isException(delegation.owner);
    if (!delegation || !onward) return { cls, desc, args };
    return this.toBase(
      delegation.owner,
      delegation.desc,
      delegation.args.map((a) => substitute(a, args)),
      depth + 1,
    );
  }

  private classify(base: CtorCall): { code: Known; message: Known; dependsOnParams: boolean } {
    const paramArgs = base.args.some(mentionsParam);
    const pinned = this.mapping.slots[base.cls]?.[base.desc];
    let code: Known;
    let message: Known;
    if (pinned) {
      const values = base.args.map((a) => this.resolve(a, 0));
      code = pinned.code === undefined ? ABSENT : this.knownOf(values[pinned.code], "code");
      message = pinned.message === undefined ? ABSENT : this.knownOf(values[pinned.message], "message");
    } else ({ code, message } = this.byShape(base, 0));
    return { code, message, dependsOnParams: paramArgs && (code.kind === "dynamic" || message.kind === "dynamic") };
  }

  /**
   * The README's rule, in argument order: an object gives the code and message in its fields; the
   * first String constant shaped like a code (or any constant without whitespace in a learned code
   * slot) is the code, the next String the message; an int/long constant is the code only when no
   * String argument could be it: none is left besides the message, or they are all made from that
   * very int (H2's `getState(code)`, HSQLDB's message looked up by code). A `-1` beside an unknown
   * SQLSTATE is a vendor code, not the error code.
   */
  private byShape(call: CtorCall, depth: number): { code: Known; message: Known } {
    const types = parameterTypes(call.desc);
    const values = call.args.map((a) => this.resolve(a, 0));
    let code: Known | undefined;
    let message: Known | undefined;
    let numeric: { value: string; source: Val } | undefined;
    const dynamicStrings: Val[] = [];
    let dynamicObjects = 0;
    let nullHolders = 0;
    types.forEach((t, i) => {
      const v = values[i] ?? UNKNOWN_C;
      if (v.t === "obj" || v.t === "alts") {
        const cm = this.fromObject(v, depth);
        if (!code && cm.code.kind === "constant") code = cm.code;
        if (!message && cm.message.kind === "constant") message = cm.message;
        if (cm.code.kind === "dynamic" && !/(Throwable|Exception|Error);$/.test(t)) dynamicObjects++;
        return;
      }
      if (t === STRING) {
        if (v.t === "str") {
          if (!code && (this.mapping.codeShape.test(v.v) || this.inCodeSlot(call, i, v.v, values, types)))
            code = { kind: "constant", value: v.v };
          else if (!message) message = { kind: "constant", value: v.v };
        } else if (v.t === "unknown") dynamicStrings.push(call.args[i]);
      } else if (t === "I" || t === "J" || t === "S") {
        if (v.t === "num" && numeric === undefined) numeric = { value: v.v, source: call.args[i] };
      } else if (t.startsWith("L") && !/(Throwable|Exception|Error);$/.test(t) && t !== "Ljava/lang/Object;") {
        if (v.t === "unknown") dynamicObjects++;
        else if (v.t === "null") nullHolders++;
      }
    });
    if (!code && numeric !== undefined) {
      const source = numeric.source;
      // Strings made from the int say nothing against it; of the others, one may be the message.
      const others = dynamicStrings.filter((s) => !mentions(s, source));
      if (others.length === 0 || (others.length === 1 && !message)) code = { kind: "constant", value: numeric.value };
      if (code && !message && others.length === 1) message = DYNAMIC;
    }
    // A code holder (enum, constant object) passed as null: there is no code, the Strings are messages.
    if (!code && nullHolders > 0 && dynamicObjects === 0) code = ABSENT;
    let dynamic = dynamicStrings.length;
    if (!code && (dynamic > 0 || dynamicObjects > 0)) {
      code = DYNAMIC;
      if (dynamicObjects === 0) dynamic--;
    }
    if (!message && (dynamic > 0 || dynamicObjects > 0)) message = DYNAMIC;
    return { code: code ?? ABSENT, message: message ?? ABSENT };
  }

  /** Whether a String constant that is not code-shaped sits in a learned code slot, with no code-shaped argument beside it. */
  private inCodeSlot(call: CtorCall, i: number, value: string, values: Concrete[], types: readonly string[]): boolean {
    if (/\s/.test(value) || value.length < 2 || value.length > 64 || !this.codeSlots.has(`${call.cls}${call.desc}#${i}`)) return false;
    return !values.some((v, j) => j !== i && types[j] === STRING && v.t === "str" && this.mapping.codeShape.test(v.v));
  }

  private knownOf(v: Concrete | undefined, slot: "code" | "message"): Known {
    if (!v || v.t === "unknown") return DYNAMIC;
    if (v.t === "null") return ABSENT;
    if (v.t === "obj" || v.t === "alts") return this.fromObject(v, 0)[slot];
    return { kind: "constant", value: v.v };
  }

  /**
   * Code and message of an object, or the ones all its alternatives agree on. An object resolved
   * once (a call's result is shared by every call with the same constants) is read once.
   */
  private fromObject(v: Concrete & { t: "obj" | "alts" }, depth: number): { code: Known; message: Known } {
    const memo = depth === 0 ? this.objectMemo.get(v) : undefined;
    if (memo) return memo;
    let out: { code: Known; message: Known };
    if (v.t === "obj") out = this.codeAndMessage(v, depth);
    else {
      const each = v.options.map((o) => this.codeAndMessage(o, depth));
      const agree = (slot: "code" | "message"): Known => {
        const first = each[0][slot];
        return each.every((x) => sameKnown(x[slot], first)) ? first : DYNAMIC;
      };
      out = { code: agree("code"), message: agree("message") };
    }
    if (depth === 0 && this.budget >= 0) this.objectMemo.set(v, out);
    return out;
  }

  /**
   * Code and message an enum constant, constant holder or wrapped exception carries: in its
   * fields, or else in the arguments its constructor hands to a JDK exception
   * (`SQLException(reason, SQLState, vendorCode)`), read by the same rule as a base constructor's.
   */
  private codeAndMessage(
    obj: { cls: string; fields: Map<string, Val>; external?: CtorCall },
    depth: number,
  ): { code: Known; message: Known } {
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
    let code: Known = ABSENT;
    let message: Known = known(messageField);
    if (codeField) code = known(codeField);
    // No telling field names: fall back to the shapes of the String fields, in declaration order.
    else
      for (const n of names) {
        const v = this.resolve(obj.fields.get(n) as Val, 0);
        if (v.t !== "str") continue;
        if (code.kind === "absent" && this.mapping.codeShape.test(v.v)) code = { kind: "constant", value: v.v };
        else if (message.kind === "absent" && n !== messageField) message = { kind: "constant", value: v.v };
      }
    if (code.kind !== "constant" && obj.external && depth < 4) {
      const outer = this.byShape(obj.external, depth + 1);
      if (outer.code.kind === "constant" || code.kind === "absent") code = outer.code;
      if (message.kind !== "constant" && outer.message.kind !== "absent") message = outer.message;
    }
    return { code, message };
  }

  /** What an abstract value is once the whole artifact is known. */
  private resolve(v: Val, depth: number): Concrete {
    if (!v) return UNKNOWN_C;
    const memo = this.resolved.get(v);
    if (memo) return memo;
    if (depth > MAX_DEPTH || --this.budget < 0) return UNKNOWN_C;
    const result = this.resolveOnce(v, depth);
    // Values are immutable once interpreted, so what one resolves to holds wherever it is met
    // (unless the depth or the budget cut it short).
    if (depth <= 1 && this.budget >= 0) this.resolved.set(v, result);
    return result;
  }

  private resolveOnce(v: Val, depth: number): Concrete {
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
        return v.args && v.desc ? { t: "obj", cls: v.cls, ...this.objectFields(v.cls, v.desc, v.args, 0) } : UNKNOWN_C;
      case "field": {
        const recv = this.resolve(v.recv, depth + 1);
        const f = recv.t === "obj" ? recv.fields.get(v.name) : undefined;
        return f ? this.resolve(f, depth + 1) : UNKNOWN_C;
      }
      case "get":
      case "call":
        return this.resolveCall(v, depth);
      case "op": {
        const a = this.resolve(v.a, depth + 1);
        const b = v.b ? this.resolve(v.b, depth + 1) : undefined;
        if (a.t !== "num" || (b && b.t !== "num") || !/^-?\d+$/.test(a.v) || (b && !/^-?\d+$/.test((b as { v: string }).v)))
          return UNKNOWN_C;
        const r = fold(v.op, a.v, (b as { v: string } | undefined)?.v, v.w === true);
        return r === undefined ? UNKNOWN_C : { t: "num", v: r };
      }
      case "select": {
        const taken = this.decide(v.cond, depth);
        return taken === undefined ? UNKNOWN_C : this.resolve(taken ? v.t : v.f, depth + 1);
      }
      case "concat": {
        let out = "";
        for (let i = 0; i < v.parts.length; i++) {
          const p = this.resolve(v.parts[i], depth + 1);
          const type = v.types[i];
          if (p.t === "str") out += p.v;
          else if (p.t === "num" && (type === "I" || type === "J" || type === "S" || type === "B")) out += p.v;
          else if (p.t === "num" && type === "C") out += String.fromCharCode(Number(p.v));
          else if (p.t === "null" && type.startsWith("L")) out += "null";
          else return UNKNOWN_C;
        }
        return { t: "str", v: out };
      }
      default:
        return UNKNOWN_C;
    }
  }

  /** Which way a branch goes when its operands are constants (or a null test of a known value). */
  private decide(cond: Cond, depth: number): boolean | undefined {
    const a = this.resolve(cond.a, depth + 1);
    if (cond.op === "in") return a.t === "num" && /^-?\d+$/.test(a.v) ? cond.values.has(Number(a.v)) : undefined;
    const b = this.resolve(cond.b, depth + 1);
    if (b.t === "null") {
      const isNull = a.t === "null" ? true : a.t === "obj" || a.t === "str" || a.t === "alts" ? false : undefined;
      return isNull === undefined ? undefined : cond.op === "eq" ? isNull : !isNull;
    }
    if (a.t !== "num" || b.t !== "num") return undefined;
    const x = Number(a.v);
    const y = Number(b.v);
    if (Number.isNaN(x) || Number.isNaN(y)) return undefined;
    return { eq: x === y, ne: x !== y, lt: x < y, ge: x >= y, gt: x > y, le: x <= y }[cond.op];
  }

  /**
   * A call's result: what the method the call reaches exactly returns, its parameters replaced by
   * the call's arguments. Getters read the receiver's fields; different objects on different
   * paths make alternatives; anything else that differs is unknown.
   */
  private resolveCall(v: Val & { k: "get" | "call" }, depth: number): Concrete {
    const recvVal = v.recv;
    const recv = recvVal ? this.resolve(recvVal, depth + 1) : undefined;
    let target: { owner: ScannedClass; method: MethodModel } | undefined;
    if (v.k === "get" && recv?.t === "obj") target = this.h.findMethod(recv.cls, v.name, v.desc);
    else {
      const op = v.k === "get" ? "virtual" : v.op;
      target = this.target({
        kind: op === "static" ? "static" : "call",
        op,
        owner: v.owner,
        name: v.name,
        desc: v.desc,
        args: [],
        recv: recvVal,
      });
    }
    if (!target || target.method.returns.length === 0) return UNKNOWN_C;
    const args = v.k === "call" ? v.args : [];
    // A call without a receiver gives the same wherever it is made with the same arguments (H2 turns
    // each code into its exception through `DbException.get(code, params…)`, at 1,700 sites).
    const key = recvVal || depth > 1 ? undefined : this.argumentsKey(args, depth);
    const memo = key === undefined ? undefined : this.callMemo.get(target.method)?.get(key);
    if (memo) return memo;
    const result = this.callResult(target.method, args, recvVal, recv, depth);
    if (key !== undefined && this.budget >= 0) {
      let byArgs = this.callMemo.get(target.method);
      if (!byArgs) {
        byArgs = new Map();
        this.callMemo.set(target.method, byArgs);
      }
      byArgs.set(key, result);
    }
    return result;
  }

  /**
   * A key for a call's arguments, when the call gives the same wherever it is made with them: each
   * argument's constant or `?` (not statically known), and which of them share parts (a String
   * built from the code stays tied to it: see `mentions`). Undefined when one is an object.
   */
  private argumentsKey(args: readonly Val[], depth: number): string | undefined {
    let key = "";
    let shared: Map<Val, number> | undefined;
    for (const a of args) {
      if (a.k === "obj") return undefined;
      const c = this.resolve(a, depth + 1);
      if (c.t === "str") key += `s${c.v.length}:${c.v}`;
      else if (c.t === "num") key += `n${c.v};`;
      else if (c.t === "null") key += "0;";
      else if (c.t === "unknown") key += "?";
      else return undefined;
      for (const leaf of leaves(a)) {
        shared ??= new Map();
        let id = shared.get(leaf);
        if (id === undefined) {
          id = shared.size;
          shared.set(leaf, id);
        }
        key += `${id},`;
      }
      key += "|";
    }
    return key;
  }

  private callResult(method: MethodModel, args: Val[], recvVal: Val | undefined, recv: Concrete | undefined, depth: number): Concrete {
    const returned = ({ value: r }: Returned): Concrete => {
      if (r.k === "field" && r.recv.k === "this" && recv?.t === "obj") {
        const f = recv.fields.get(r.name);
        return f ? this.resolve(f, depth + 1) : UNKNOWN_C;
      }
      return this.resolve(substitute(r, args, recvVal), depth + 1);
    };
    const all = method.returns;
    // Which exception a factory builds for a constant argument (H2 picks the class by `code / 1000`,
    // at 1,700 call sites): the objects returned on the branches the call's constants leave open. A
    // String or number is not narrowed so: a SQLSTATE looked up from an int code (H2's getState)
    // would take the code's place (see byShape).
    if (all.length > 1) {
      const decided = new Map<Guard, boolean>();
      const open = all.filter((r) => this.reachable(r.guard, args, recvVal, depth, decided));
      if (open.length && open.length < all.length) {
        const results = open.map(returned);
        if (results.every((r) => r.t === "obj" || r.t === "alts")) return oneOf(results);
      }
    }
    return oneOf(all.map(returned));
  }

  /**
   * Whether every branch on the way to a return can go the way it went, given a call's arguments.
   * Returns share the branches before them: each is decided once per call (`decided`).
   */
  private reachable(guard: Guard | null, args: Val[], recvVal: Val | undefined, depth: number, decided: Map<Guard, boolean>): boolean {
    const open: Guard[] = [];
    let ok = true;
    for (let g = guard; g; g = g.parent) {
      const known = decided.get(g);
      if (known !== undefined) {
        ok = known;
        break;
      }
      open.push(g);
    }
    // From the outermost branch in: a branch after one that cannot go its way cannot be reached either.
    for (let i = open.length - 1; i >= 0; i--) {
      const g = open[i];
      if (ok) {
        const taken = this.decide(
          mapCond(g.cond, (v) => substitute(v, args, recvVal)),
          depth,
        );
        ok = taken === undefined || taken === g.taken;
      }
      decided.set(g, ok);
    }
    return ok;
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

  /**
   * Fields a constructor call sets: the delegated constructor's first, then its own `this.f = …`.
   * A field stored more than once with different values (a run-time value on one path, a
   * constant fallback on another) is unknown, not the last constant. The first constructor call
   * that leaves the artifact (`super(reason, state, code)` to a JDK exception) is kept too.
   */
  private objectFields(cls: string, desc: string, args: Val[], depth: number): { fields: Map<string, Val>; external?: CtorCall } {
    const fields = new Map<string, Val>();
    if (depth > MAX_DEPTH) return { fields };
    const owner = this.h.byName.get(cls);
    const ctor = owner && this.h.declared(owner, "<init>", desc);
    // Outside the artifact: only a JDK exception's constructor arguments say anything about a code.
    if (!ctor) return { fields, external: /(Exception|Error|Throwable)$/.test(cls) ? { cls, desc, args } : undefined };
    const delegation = ctor.sites.find((s) => s.kind === "init-this");
    let external: CtorCall | undefined;
    if (delegation) {
      const inner = this.objectFields(
        delegation.owner,
        delegation.desc,
        delegation.args.map((a) => substitute(a, args)),
        depth + 1,
      );
      for (const [k, v] of inner.fields) fields.set(k, v);
      external = inner.external;
    }
    const stored = new Map<string, Val[]>();
    for (const [name, v] of ctor.fieldStores) stored.set(name, [...(stored.get(name) ?? []), v]);
    for (const [name, values] of stored) {
      const first = values[0];
      const same = values.every(
        (v) => v === first || (v.k === first.k && (v.k === "str" || v.k === "num") && v.v === (first as { v: string }).v),
      );
      fields.set(name, same ? substitute(first, args) : { k: "unknown" });
    }
    return { fields, external };
  }
}

/** What a call returning one of `results` gives: their common constant, the objects it may be, or unknown. */
function oneOf(results: Concrete[]): Concrete {
  const first = results[0];
  if (results.every((r) => sameConcrete(r, first))) return first;
  const objects = results.flatMap((r) => (r.t === "obj" ? [r] : r.t === "alts" ? r.options : []));
  return objects.length === results.length || results.every((r) => r.t === "obj" || r.t === "alts")
    ? { t: "alts", options: objects }
    : UNKNOWN_C;
}

function sameConcrete(a: Concrete, b: Concrete): boolean {
  if (a.t !== b.t) return false;
  if ((a.t === "str" || a.t === "num") && (b.t === "str" || b.t === "num")) return a.v === b.v;
  return a.t === "null";
}

function sameKnown(a: Known, b: Known): boolean {
  return a.kind === b.kind && (a.kind !== "constant" || a.value === (b as { value: string }).value);
}
