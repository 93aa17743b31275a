import { verify } from "./bytecode.js";
import { ClassFormatError, ConstantPool, type MemberRef } from "./constant-pool.js";
import { interpret, type MethodFacts, type Returned, type Site } from "./interpreter.js";
import { type Invocation, invocationsOf } from "./invocations.js";
import type { Val } from "./values.js";

/** Class file major versions accepted: 45 (Java 1.1) to 65 (Java 21). */
export const MIN_MAJOR = 45;
export const MAX_MAJOR = 65;

export type ClassKind = "class" | "interface" | "enum" | "record" | "annotation";

export interface FieldModel {
  name: string;
  desc: string;
  access: number;
  /** Compile-time constant from the ConstantValue attribute. */
  constant?: Val;
}

/** A method's Code attribute: its bytecode, and the rest of the attribute read when the method is interpreted. */
interface MethodCode {
  maxLocals: number;
  bytes: Buffer;
  /** The class file, where the Code attribute's exception table starts in it, and where the attribute ends. */
  classFile: Buffer;
  tableAt: number;
  end: number;
}

/** What a class's methods share for interpretation. */
interface ClassContext {
  cp: ConstantPool;
  className: string;
  bootstrapArgs(i: number): Val[];
  bootstrapTarget(i: number): MemberRef | undefined;
}

const NO_FACTS: MethodFacts = { sites: [], fieldStores: [], staticStores: [], returns: [] };

/**
 * One method. Its bytecode is checked when the class is read but interpreted only when its facts
 * are first asked for: most methods of a real library never construct an exception under the
 * bases, and the extractor never asks about them.
 */
export class MethodModel {
  private facts?: MethodFacts;
  /** Why interpreting the method failed (its facts are then empty): reported as a malformed class. */
  problem?: string;

  constructor(
    readonly name: string,
    readonly desc: string,
    readonly access: number,
    readonly code: MethodCode | undefined,
    private readonly cls: ClassContext,
  ) {}

  /** Bytecode length (the seed's instruction-list length). */
  get length(): number {
    return this.code ? this.code.bytes.length : 0;
  }

  get sites(): Site[] {
    return this.interpreted().sites;
  }

  get fieldStores(): Array<[string, Val]> {
    return this.interpreted().fieldStores;
  }

  get staticStores(): Array<[string, Val]> {
    return this.interpreted().staticStores;
  }

  get returns(): Returned[] {
    return this.interpreted().returns;
  }

  /** Every call the method makes, for the tables (computed at each call, not kept; none when they make no sense). */
  get invocations(): Invocation[] {
    if (!this.code) return [];
    try {
      const { lines } = this.tables(this.code);
      return invocationsOf(this.code.bytes, this.cls.cp, lineFinder(lines), this.cls.bootstrapTarget);
    } catch (err) {
      this.problem = `method ${this.name}${this.desc}: ${(err as Error).message}`;
      return [];
    }
  }

  private interpreted(): MethodFacts {
    if (this.facts) return this.facts;
    const code = this.code;
    this.facts = NO_FACTS;
    if (!code) return this.facts;
    try {
      const { handlers, lines } = this.tables(code);
      this.facts = interpret(code.bytes, {
        cp: this.cls.cp,
        className: this.cls.className,
        name: this.name,
        desc: this.desc,
        isStatic: (this.access & ACC_STATIC) !== 0,
        maxLocals: code.maxLocals,
        handlers,
        lineOf: lineFinder(lines),
        bootstrapArgs: this.cls.bootstrapArgs,
      });
    } catch (err) {
      this.problem = `method ${this.name}${this.desc}: ${(err as Error).message}`;
    }
    return this.facts;
  }

  /** The exception handlers' start offsets and the line-number table as [pc, line, pc, line, …], sorted by pc. */
  private tables(code: MethodCode): { handlers: number[]; lines: number[] } {
    const body = new Cursor(code.classFile, code.tableAt, code.end);
    const handlers: number[] = [];
    for (let h = body.u2(), j = 0; j < h; j++) {
      body.u4(); // start_pc, end_pc
      handlers.push(body.u2());
      body.u2(); // catch_type
    }
    const lines: number[] = [];
    let sorted = true;
    attributes(body, this.cls.cp, (inner, table) => {
      if (inner !== "LineNumberTable") return;
      for (let t = table.u2(), k = 0; k < t; k++) {
        const pc = table.u2();
        if (lines.length && pc < lines[lines.length - 2]) sorted = false;
        lines.push(pc, table.u2());
      }
    });
    return { handlers, lines: sorted ? lines : sortPairs(lines) };
  }
}

/** A flat [pc, line, …] table sorted by pc (javac writes them sorted; other compilers may not). */
function sortPairs(flat: number[]): number[] {
  const pairs: Array<[number, number]> = [];
  for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i], flat[i + 1]]);
  return pairs.sort((a, b) => a[0] - b[0]).flat();
}

/** Line of an offset from a flat, sorted [pc, line, pc, line, …] table: the last entry at or before it. */
function lineFinder(lines: number[]): (pc: number) => number | undefined {
  return (pc) => {
    let lo = 0;
    let hi = lines.length / 2 - 1;
    let line: number | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (lines[2 * mid] <= pc) {
        line = lines[2 * mid + 1];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return line;
  };
}

/** What the scan keeps of one class file: the seed's _clazz row plus its methods. */
export interface ClassModel {
  name: string;
  superName?: string;
  interfaces: string[];
  access: number;
  kind: ClassKind;
  visibility: "public" | "package";
  major: number;
  fields: FieldModel[];
  methods: MethodModel[];
  /** The constant pool, for finding which classes refer to what without interpreting them. */
  cp: ConstantPool;
}

export class MalformedClassError extends Error {}

const ACC_STATIC = 0x0008;
const ACC_PUBLIC = 0x0001;
const ACC_INTERFACE = 0x0200;
const ACC_ANNOTATION = 0x2000;
const ACC_ENUM = 0x4000;

/** Reads one class file; every method's bytecode is checked, none is interpreted yet. */
export function readClass(data: Buffer): ClassModel {
  if (data.length < 10 || data.readUInt32BE(0) !== 0xcafebabe) throw new MalformedClassError("not a class file (bad magic)");
  const major = data.readUInt16BE(6);
  if (major < MIN_MAJOR || major > MAX_MAJOR)
    throw new MalformedClassError(`unsupported class file version ${major} (supported ${MIN_MAJOR}–${MAX_MAJOR}, Java 1.1–21)`);
  try {
    return model(data, major);
  } catch (err) {
    throw new MalformedClassError(`malformed class file (${(err as Error).message})`);
  }
}

/** Big-endian reads that refuse to go past the end of the class file. */
class Cursor {
  constructor(
    readonly data: Buffer,
    public at: number,
    /** Where the structure being read ends (an attribute's body, or the class file). */
    readonly end = data.length,
  ) {}

  private need(n: number): void {
    if (this.at + n > this.end) throw new ClassFormatError(`truncated at byte ${this.at}`);
  }

  u2(): number {
    this.need(2);
    const d = this.data;
    const v = (d[this.at] << 8) | d[this.at + 1];
    this.at += 2;
    return v;
  }

  u4(): number {
    this.need(4);
    const v = this.data.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }

  /** The next `n` bytes, without copying. */
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.data.subarray(this.at, this.at + n);
    this.at += n;
    return b;
  }

  /** A cursor on the next `n` bytes (an attribute's body), moving this one past them. */
  part(n: number): Cursor {
    this.need(n);
    const c = new Cursor(this.data, this.at, this.at + n);
    this.at += n;
    return c;
  }
}

/** Calls `visit` with each attribute's name and a cursor on its body, then moves past them all. */
function attributes(c: Cursor, cp: ConstantPool, visit: (name: string, body: Cursor) => void): void {
  const count = c.u2();
  for (let i = 0; i < count; i++) {
    const name = cp.utf8(c.u2());
    visit(name, c.part(c.u4()));
  }
}

function model(data: Buffer, major: number): ClassModel {
  const { pool: cp, end } = ConstantPool.read(data, 8);
  const c = new Cursor(data, end);
  const access = c.u2();
  const name = cp.className(c.u2());
  const superIndex = c.u2();
  const superName = superIndex ? cp.className(superIndex) : undefined;
  const interfaces = Array.from({ length: c.u2() }, () => cp.className(c.u2()));

  const fields: FieldModel[] = [];
  for (let n = c.u2(), i = 0; i < n; i++) {
    const field: FieldModel = { access: c.u2(), name: cp.utf8(c.u2()), desc: cp.utf8(c.u2()) };
    attributes(c, cp, (attr, body) => {
      if (attr === "ConstantValue") field.constant = cp.constant(body.u2());
    });
    fields.push(field);
  }

  let bootstrap: Array<{ handle: number; args: number[] }> = [];
  const context: ClassContext = {
    cp,
    className: name,
    bootstrapArgs: (i) => (bootstrap[i]?.args ?? []).map((a) => cp.constant(a)),
    bootstrapTarget: (i) => {
      for (const arg of bootstrap[i]?.args ?? []) {
        const t = cp.methodHandleTarget(arg);
        if (t) return t;
      }
      return undefined;
    },
  };

  const methods: MethodModel[] = [];
  for (let n = c.u2(), i = 0; i < n; i++) {
    const mAccess = c.u2();
    const mName = cp.utf8(c.u2());
    const mDesc = cp.utf8(c.u2());
    let code: MethodCode | undefined;
    attributes(c, cp, (attr, body) => {
      if (attr !== "Code") return;
      body.u2(); // max_stack
      const maxLocals = body.u2();
      const bytes = body.bytes(body.u4());
      try {
        verify(bytes);
      } catch (err) {
        throw new Error(`method ${mName}${mDesc}: ${(err as Error).message}`);
      }
      code = { maxLocals, bytes, classFile: body.data, tableAt: body.at, end: body.end };
    });
    methods.push(new MethodModel(mName, mDesc, mAccess, code, context));
  }

  let isRecord = false;
  attributes(c, cp, (attr, body) => {
    if (attr === "Record") isRecord = true;
    else if (attr === "BootstrapMethods")
      bootstrap = Array.from({ length: body.u2() }, () => ({
        handle: body.u2(),
        args: Array.from({ length: body.u2() }, () => body.u2()),
      }));
  });
  const kind: ClassKind =
    access & ACC_ANNOTATION
      ? "annotation"
      : access & ACC_INTERFACE
        ? "interface"
        : access & ACC_ENUM
          ? "enum"
          : isRecord
            ? "record"
            : "class";

  return {
    name,
    superName,
    interfaces,
    access,
    kind,
    visibility: access & ACC_PUBLIC ? "public" : "package",
    major,
    fields,
    methods,
    cp,
  };
}
