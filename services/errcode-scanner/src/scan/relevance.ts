import { nextPc, u16 } from "./bytecode.js";
import type { MethodModel } from "./classfile.js";
import { ClassFormatError } from "./constant-pool.js";
import { objectClass, returnType } from "./descriptor.js";
import type { Hierarchy, ScannedClass } from "./hierarchy.js";

const ACC_PRIVATE = 0x0002;
const ACC_STATIC = 0x0008;
const ACC_FINAL = 0x0010;
const INVOKEVIRTUAL = 182;
const INVOKEINTERFACE = 185;
const NEW = 187;

/**
 * The methods whose interpretation can matter: those that construct an exception under the bases
 * (`new E(…)`, `super(…)` included) or make a call the extractor follows into a method that does,
 * transitively. Found from each class's constant pool and invoke instructions, without
 * interpreting anything: a class whose pool names none of these methods is never looked into, and
 * the extractor interprets only these (and, when it resolves a value, the methods it comes from).
 * Calls are matched by name, descriptor and the class they name, which must be one the extractor
 * would find the method through: its class or a subclass, or, for a method that can be overridden
 * (followed only on a receiver whose class is known exactly, `new C(…).m()`), any supertype of those.
 */
export function relevantMethods(h: Hierarchy): Map<MethodModel, Relevance> {
  const relevant = new Map<MethodModel, Relevance>();
  // Per class, its pool's method references that lead to an exception (1 at their index).
  const hot = new Map<ScannedClass, Uint8Array>();
  // Method references by name, and where they are: pairs of (index in h.classes, pool index).
  const byName = new Map<string, number[]>();
  const indexes = new Map<ScannedClass, CodeIndex>();
  const indexOf = (c: ScannedClass): CodeIndex => {
    let index = indexes.get(c);
    if (!index) {
      index = indexCode(c);
      indexes.set(c, index);
    }
    return index;
  };
  // Methods found relevant whose own callers are yet to be marked.
  const todo: Array<[ScannedClass, MethodModel]> = [];
  /** Marks a reference leading to `callee` (in `owner`), or to an exception's constructor when there is none. */
  const mark = (c: ScannedClass, index: number, callee?: MethodModel, owner?: ScannedClass) => {
    let marks = hot.get(c);
    if (!marks) {
      marks = new Uint8Array(c.cp.size);
      hot.set(c, marks);
    }
    // Each method calling the reference learns what it leads to, also when another callee marked it first.
    if (marks[index] && !callee) return;
    marks[index] = 1;
    for (const m of indexOf(c).invokers.get(index) ?? []) {
      let why = relevant.get(m);
      if (!why) {
        why = { builds: false, calls: new Map() };
        relevant.set(m, why);
        todo.push([c, m]);
      }
      if (callee && owner) why.calls.set(callee, owner);
      else why.builds = true;
    }
  };
  const lineage = new Lineage(h);
  /** Whether a class's code builds (`new`) one of `classes`. */
  const buildsAny = (c: ScannedClass, classes: Set<string>): boolean => {
    const names = indexOf(c).built;
    for (const n of classes) if (names.has(n)) return true;
    return false;
  };
  h.classes.forEach((c, at) => {
    c.cp.forEachMethodRef((i) => {
      try {
        if (c.cp.refToJava(i)) return;
        const name = c.cp.refName(i);
        if (name === "<init>") {
          if (h.isException(c.cp.refOwner(i))) mark(c, i);
          return;
        }
        const where = byName.get(name);
        if (where) where.push(at, i);
        else byName.set(name, [at, i]);
      } catch (err) {
        // A reference that makes no sense is skipped here; interpreting a method that uses it reports the class.
        if (!(err instanceof ClassFormatError)) throw err;
      }
    });
  });
  // The same, by descriptor too, for each name once a method of that name is relevant (a common name
  // such as `get` has thousands of references; most names are never asked for).
  const byDesc = new Map<string, Map<string, number[]>>();
  const refsTo = (name: string, desc: string): number[] => {
    let descs = byDesc.get(name);
    if (!descs) {
      descs = new Map();
      const where = byName.get(name) ?? [];
      for (let k = 0; k < where.length; k += 2) {
        const d = descOf(h.classes[where[k]], where[k + 1]);
        if (d === undefined) continue;
        const list = descs.get(d);
        if (list) list.push(where[k], where[k + 1]);
        else descs.set(d, [where[k], where[k + 1]]);
      }
      byDesc.set(name, descs);
    }
    return descs.get(desc) ?? [];
  };
  while (todo.length) {
    const [c, m] = todo.pop() as [ScannedClass, MethodModel];
    // Constructors and static initializers are not reached through a method reference.
    if (m.name === "<init>" || m.name === "<clinit>") continue;
    // A helper that takes no parameters and throws (not returns) its exception has nothing of its
    // callers' in it: its sites are reported inside it, and its calls expand to nothing new (H2's
    // `checkClosed()`, called from hundreds of methods that would be interpreted for it alone).
    if (m.desc.startsWith("()") && !returnsException(h, m.desc)) continue;
    // A method no override can replace is reached through its class or a subclass; another one also
    // through any type a receiver of an exact class can be seen as.
    const exact = (m.access & (ACC_STATIC | ACC_PRIVATE | ACC_FINAL)) !== 0 || (c.access & ACC_FINAL) !== 0;
    const through = exact ? lineage.family(c.name) : lineage.seenAs(c.name);
    // An overridable method is followed only on a receiver of an exact class: one the caller builds
    // (`new C(…).m()`), or the caller's own superclass (`super.m()`, naming a class other than itself).
    const family = lineage.family(c.name);
    const where = refsTo(m.name, m.desc);
    for (let k = 0; k < where.length; k += 2) {
      const d = h.classes[where[k]];
      const i = where[k + 1];
      const owner = d.cp.refOwner(i);
      if (through.has(owner) && (exact || buildsAny(d, family) || (family.has(d.name) && owner !== d.name))) mark(d, i, m, c);
    }
  }
  return relevant;
}

/** Why a method can matter: it builds an exception under the bases itself, or calls these methods (with their classes) that can. */
export interface Relevance {
  builds: boolean;
  calls: Map<MethodModel, ScannedClass>;
}

/** Whether a method descriptor returns an exception under the bases (a factory, whose every call is a site). */
function returnsException(h: Hierarchy, desc: string): boolean {
  const cls = objectClass(returnType(desc));
  return cls !== undefined && h.isException(cls);
}

/** What a class's code does that the search follows: which methods invoke each pool entry, and which classes it builds. */
interface CodeIndex {
  /** Methods invoking the method reference at each pool index. */
  invokers: Map<number, MethodModel[]>;
  /** Classes built with `new` (entries that make no sense are left out). */
  built: Set<string>;
}

/** Reads a class's code once: a reference marked later finds its callers here, not by reading the code again. */
function indexCode(c: ScannedClass): CodeIndex {
  const invokers = new Map<number, MethodModel[]>();
  const built = new Set<string>();
  for (const m of c.methods) {
    const code = m.code?.bytes;
    if (!code) continue;
    for (let pc = 0; pc < code.length; pc = nextPc(code, pc)) {
      const op = code[pc];
      if (op >= INVOKEVIRTUAL && op <= INVOKEINTERFACE) {
        const index = u16(code, pc + 1);
        const list = invokers.get(index);
        if (!list) invokers.set(index, [m]);
        else if (list[list.length - 1] !== m) list.push(m);
      } else if (op === NEW)
        try {
          built.add(c.cp.className(u16(code, pc + 1)));
        } catch (err) {
          if (!(err instanceof ClassFormatError)) throw err;
        }
    }
  }
  return { invokers, built };
}

/** A method reference's descriptor (undefined when its descriptor entry makes no sense). */
function descOf(c: ScannedClass, index: number): string | undefined {
  try {
    return c.cp.refDesc(index);
  } catch (err) {
    if (err instanceof ClassFormatError) return undefined;
    throw err;
  }
}

/** Which types a class's methods can be called through on a receiver of an exact class. */
class Lineage {
  private readonly children = new Map<string, string[]>();
  private readonly families = new Map<string, Set<string>>();
  private readonly supertypes = new Map<string, Set<string>>();

  constructor(private readonly h: Hierarchy) {
    for (const c of h.classes) {
      if (!c.superName) continue;
      const list = this.children.get(c.superName);
      if (list) list.push(c.name);
      else this.children.set(c.superName, [c.name]);
    }
  }

  /** The class and its subclasses (a set: a tampered artifact may make the superclass chain a cycle). */
  family(name: string): Set<string> {
    let family = this.families.get(name);
    if (family) return family;
    family = new Set([name]);
    for (const f of family) for (const sub of this.children.get(f) ?? []) family.add(sub);
    this.families.set(name, family);
    return family;
  }

  /** Every supertype (classes and interfaces, itself included) of the class and of each of its subclasses. */
  seenAs(name: string): Set<string> {
    let types = this.supertypes.get(name);
    if (types) return types;
    types = new Set<string>();
    const todo = [...this.family(name)];
    while (todo.length) {
      const t = todo.pop() as string;
      if (types.has(t)) continue;
      types.add(t);
      const c = this.h.byName.get(t);
      if (c?.superName) todo.push(c.superName);
      if (c) todo.push(...c.interfaces);
    }
    this.supertypes.set(name, types);
    return types;
  }
}
