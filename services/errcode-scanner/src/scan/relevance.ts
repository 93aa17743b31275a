import { nextPc, u16 } from "./bytecode.js";
import type { MethodModel } from "./classfile.js";
import { ClassFormatError } from "./constant-pool.js";
import type { Hierarchy, ScannedClass } from "./hierarchy.js";

const ACC_PRIVATE = 0x0002;
const ACC_STATIC = 0x0008;
const ACC_FINAL = 0x0010;
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
export function relevantMethods(h: Hierarchy): Set<MethodModel> {
  const relevant = new Set<MethodModel>();
  // Per class, its pool's method references that lead to an exception (1 at their index).
  const hot = new Map<ScannedClass, Uint8Array>();
  // Method references by name, and where they are: pairs of (index in h.classes, pool index).
  const byName = new Map<string, number[]>();
  const queued = new Set<ScannedClass>();
  const mark = (c: ScannedClass, index: number) => {
    let marks = hot.get(c);
    if (!marks) {
      marks = new Uint8Array(c.cp.size);
      hot.set(c, marks);
    }
    if (marks[index]) return;
    marks[index] = 1;
    queued.add(c);
  };
  const lineage = new Lineage(h);
  const built = new Map<ScannedClass, Set<string>>();
  /** Whether a class's code builds (`new`) one of `classes`. */
  const buildsAny = (c: ScannedClass, classes: Set<string>): boolean => {
    let names = built.get(c);
    if (!names) {
      names = instantiated(c);
      built.set(c, names);
    }
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
  while (queued.size) {
    const c = queued.values().next().value as ScannedClass;
    queued.delete(c);
    const marks = hot.get(c) as Uint8Array;
    for (const m of c.methods) {
      if (relevant.has(m) || !m.code || !callsMarked(m.code.bytes, marks)) continue;
      relevant.add(m);
      // Constructors and static initializers are not reached through a method reference.
      if (m.name === "<init>" || m.name === "<clinit>") continue;
      // A method no override can replace is reached through its class or a subclass; another one also
      // through any type a receiver of an exact class can be seen as.
      const exact = (m.access & (ACC_STATIC | ACC_PRIVATE | ACC_FINAL)) !== 0 || (c.access & ACC_FINAL) !== 0;
      const through = exact ? lineage.family(c.name) : lineage.seenAs(c.name);
      // An overridable method is followed only on a receiver of an exact class: one the caller builds
      // (`new C(…).m()`), or the caller's own superclass (`super.m()`, naming a class other than itself).
      const family = lineage.family(c.name);
      const where = byName.get(m.name) ?? [];
      for (let k = 0; k < where.length; k += 2) {
        const d = h.classes[where[k]];
        const i = where[k + 1];
        if (!sameDesc(d, i, m.desc)) continue;
        const owner = d.cp.refOwner(i);
        if (through.has(owner) && (exact || buildsAny(d, family) || (family.has(d.name) && owner !== d.name))) mark(d, i);
      }
    }
  }
  return relevant;
}

/** The classes a class's code builds with `new` (entries that make no sense are left out). */
function instantiated(c: ScannedClass): Set<string> {
  const out = new Set<string>();
  for (const m of c.methods) {
    const code = m.code?.bytes;
    if (!code) continue;
    for (let pc = 0; pc < code.length; pc = nextPc(code, pc)) {
      if (code[pc] !== NEW) continue;
      try {
        out.add(c.cp.className(u16(code, pc + 1)));
      } catch (err) {
        if (!(err instanceof ClassFormatError)) throw err;
      }
    }
  }
  return out;
}

/** Whether a method reference has this descriptor (not when its descriptor entry makes no sense). */
function sameDesc(c: ScannedClass, index: number, desc: string): boolean {
  try {
    return c.cp.refDesc(index) === desc;
  } catch (err) {
    if (err instanceof ClassFormatError) return false;
    throw err;
  }
}

/** Whether the code invokes a method reference marked in `marks`. */
function callsMarked(code: Uint8Array, marks: Uint8Array): boolean {
  for (let pc = 0; pc < code.length; pc = nextPc(code, pc)) {
    const op = code[pc];
    if (op >= 182 && op <= 185 && marks[u16(code, pc + 1)]) return true;
  }
  return false;
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
