import type { ClassModel, MethodModel } from "./classfile.js";

/** A class as scanned, with where it came from. */
export interface ScannedClass extends ClassModel {
  /** Full entry location (`app.jar!/BOOT-INF/lib/x.jar!/com/acme/Foo.class`). */
  location: string;
  containerId: number;
  release?: number;
}

/**
 * The class graph of one artifact across all its containers: which classes descend from the
 * configured base classes, and which family (direct subclass of a base) each belongs to.
 */
export class Hierarchy {
  readonly byName = new Map<string, ScannedClass>();
  private readonly exceptionMemo = new Map<string, string | null>();
  /** Per class, its methods by name (made when first asked: a lookup per call site adds up). */
  private readonly methodIndex = new Map<ScannedClass, Map<string, MethodModel[]>>();

  constructor(
    readonly classes: readonly ScannedClass[],
    readonly bases: ReadonlySet<string>,
  ) {
    // The first variant wins for the hierarchy (multi-release and duplicated classes share a name).
    for (const c of classes) if (!this.byName.has(c.name)) this.byName.set(c.name, c);
  }

  /** The base class a class descends from (itself when it is a base), or undefined. */
  baseOf(name: string): string | undefined {
    const memo = this.exceptionMemo.get(name);
    if (memo !== undefined) return memo ?? undefined;
    const seen = new Set<string>();
    let cur: string | undefined = name;
    let found: string | null = null;
    while (cur && !seen.has(cur)) {
      if (this.bases.has(cur)) {
        found = cur;
        break;
      }
      seen.add(cur);
      cur = this.byName.get(cur)?.superName;
    }
    for (const s of seen) this.exceptionMemo.set(s, found);
    this.exceptionMemo.set(name, found);
    return found ?? undefined;
  }

  isException(name: string): boolean {
    return this.baseOf(name) !== undefined;
  }

  /** The direct subclass of the base on the way from `name` (the base itself for the base). */
  familyOf(name: string): string {
    let cur = name;
    for (let i = 0; i < 256; i++) {
      if (this.bases.has(cur)) return cur;
      const sup = this.byName.get(cur)?.superName;
      if (!sup || this.bases.has(sup)) return cur;
      cur = sup;
    }
    return cur;
  }

  /** Every class under the bases, bases included when they are in the artifact. */
  exceptionClasses(): string[] {
    return [...this.byName.keys()].filter((n) => this.isException(n)).sort();
  }

  /** A method by name and descriptor, looked up the superclass chain. */
  findMethod(cls: string, name: string, desc: string): { owner: ScannedClass; method: MethodModel } | undefined {
    let cur: string | undefined = cls;
    for (let i = 0; cur && i < 256; i++) {
      const c = this.byName.get(cur);
      if (!c) return undefined;
      const m = this.declared(c, name, desc);
      if (m) return { owner: c, method: m };
      cur = c.superName;
    }
    return undefined;
  }

  /** A method the class itself declares (the first, should a tampered class declare it twice). */
  declared(c: ScannedClass, name: string, desc: string): MethodModel | undefined {
    let index = this.methodIndex.get(c);
    if (!index) {
      index = new Map();
      for (const m of c.methods) {
        const overloads = index.get(m.name);
        if (overloads) overloads.push(m);
        else index.set(m.name, [m]);
      }
      this.methodIndex.set(c, index);
    }
    const overloads = index.get(name);
    if (overloads) for (const m of overloads) if (m.desc === desc) return m;
    return undefined;
  }
}
