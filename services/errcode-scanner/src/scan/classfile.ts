import { type JavaClassFile, JavaClassFileReader } from "java-class-tools";
import { ConstantPool, type MemberRef } from "./constant-pool.js";
import { type Invocation, interpret, type MethodFacts, type Site } from "./interpreter.js";
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

export interface MethodModel extends MethodFacts {
  name: string;
  desc: string;
  access: number;
  /** Bytecode length (the seed's instruction-list length). */
  length: number;
}

/** What the scan keeps of one class file: the seed's _clazz row plus per-method facts. */
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
}

export class MalformedClassError extends Error {}

const ACC_STATIC = 0x0008;
const ACC_PUBLIC = 0x0001;
const ACC_INTERFACE = 0x0200;
const ACC_ANNOTATION = 0x2000;
const ACC_ENUM = 0x4000;
const reader = new JavaClassFileReader();

/** Parses one class file with java-class-tools and interprets every method body. */
export function readClass(data: Buffer): ClassModel {
  if (data.length < 10 || data.readUInt32BE(0) !== 0xcafebabe) throw new MalformedClassError("not a class file (bad magic)");
  const major = data.readUInt16BE(6);
  if (major < MIN_MAJOR || major > MAX_MAJOR)
    throw new MalformedClassError(`unsupported class file version ${major} (supported ${MIN_MAJOR}–${MAX_MAJOR}, Java 1.1–21)`);
  let cf: JavaClassFile;
  try {
    cf = reader.read(data);
  } catch (err) {
    throw new MalformedClassError(`malformed class file (${(err as Error).message})`);
  }
  try {
    return model(cf, major);
  } catch (err) {
    throw new MalformedClassError(`malformed class file (${(err as Error).message})`);
  }
}

type Attr = { attribute_name_index: number } & Record<string, unknown>;

function model(cf: JavaClassFile, major: number): ClassModel {
  const cp = new ConstantPool(cf);
  const name = cp.className(cf.this_class);
  const superName = cf.super_class ? cp.className(cf.super_class) : undefined;
  const attrName = (a: Attr) => cp.utf8(a.attribute_name_index);
  const classAttrs = cf.attributes as unknown as Attr[];
  const isRecord = classAttrs.some((a) => attrName(a) === "Record");
  const bootstrap = classAttrs.find((a) => attrName(a) === "BootstrapMethods") as
    | { bootstrap_methods: Array<{ bootstrap_arguments: number[] }> }
    | undefined;
  const bootstrapTarget = (i: number): MemberRef | undefined => {
    for (const arg of bootstrap?.bootstrap_methods[i]?.bootstrap_arguments ?? []) {
      const t = cp.methodHandleTarget(arg);
      if (t) return t;
    }
    return undefined;
  };
  const access = cf.access_flags;
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

  const fields: FieldModel[] = cf.fields.map((f) => {
    const cv = (f.attributes as unknown as Attr[]).find((a) => attrName(a) === "ConstantValue") as
      | (Attr & { constantvalue_index: number })
      | undefined;
    return {
      name: cp.utf8(f.name_index),
      desc: cp.utf8(f.descriptor_index),
      access: f.access_flags,
      constant: cv ? cp.constant(cv.constantvalue_index) : undefined,
    };
  });

  const methods: MethodModel[] = cf.methods.map((m) => {
    const mName = cp.utf8(m.name_index);
    const desc = cp.utf8(m.descriptor_index);
    const code = (m.attributes as unknown as Attr[]).find((a) => attrName(a) === "Code") as
      | (Attr & { code: number[]; max_locals: number; exception_table: Array<{ handler_pc: number }>; attributes: Attr[] })
      | undefined;
    if (!code)
      return {
        name: mName,
        desc,
        access: m.access_flags,
        length: 0,
        invocations: [] as Invocation[],
        sites: [] as Site[],
        fieldStores: [],
        staticStores: [],
        returns: [],
      };
    const lines: Array<{ start_pc: number; line_number: number }> = [];
    for (const a of code.attributes)
      if (attrName(a) === "LineNumberTable") lines.push(...(a as unknown as { line_number_table: typeof lines }).line_number_table);
    lines.sort((a, b) => a.start_pc - b.start_pc);
    const lineOf = (pc: number): number | undefined => {
      // Binary search: the last entry starting at or before pc.
      let lo = 0;
      let hi = lines.length - 1;
      let line: number | undefined;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (lines[mid].start_pc <= pc) {
          line = lines[mid].line_number;
          lo = mid + 1;
        } else hi = mid - 1;
      }
      return line;
    };
    const facts = interpret(code.code, {
      cp,
      className: name,
      name: mName,
      desc,
      isStatic: (m.access_flags & ACC_STATIC) !== 0,
      maxLocals: code.max_locals,
      handlers: code.exception_table.map((h) => h.handler_pc),
      lineOf,
      bootstrapTarget,
    });
    return { name: mName, desc, access: m.access_flags, length: code.code.length, ...facts };
  });

  return {
    name,
    superName,
    interfaces: cf.interfaces.map((i) => cp.className(i)),
    access,
    kind,
    visibility: access & ACC_PUBLIC ? "public" : "package",
    major,
    fields,
    methods,
  };
}
