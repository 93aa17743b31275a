import type { JavaClassFile } from "java-class-tools";
import type { Val } from "./values.js";
import { UNKNOWN } from "./values.js";

const CP = {
  UTF8: 1,
  INTEGER: 3,
  FLOAT: 4,
  LONG: 5,
  DOUBLE: 6,
  CLASS: 7,
  STRING: 8,
  FIELDREF: 9,
  METHODREF: 10,
  INTERFACE_METHODREF: 11,
  NAME_AND_TYPE: 12,
  METHOD_HANDLE: 15,
} as const;

export interface MemberRef {
  owner: string;
  name: string;
  desc: string;
}

/** Typed, cached view of a parsed class file's constant pool. */
export class ConstantPool {
  private readonly strings = new Map<number, string>();
  private readonly pool: Array<Record<string, number | number[]> | undefined>;

  constructor(cf: JavaClassFile) {
    this.pool = cf.constant_pool as unknown as Array<Record<string, number | number[]> | undefined>;
  }

  private entry(i: number, what: string): Record<string, number | number[]> {
    const e = this.pool[i];
    if (!e) throw new Error(`constant pool index ${i} (${what}) is empty`);
    return e;
  }

  utf8(i: number): string {
    let s = this.strings.get(i);
    if (s === undefined) {
      const e = this.entry(i, "utf8");
      if (e.tag !== CP.UTF8) throw new Error(`constant pool index ${i} is not UTF8`);
      s = decodeModifiedUtf8(e.bytes as number[]);
      this.strings.set(i, s);
    }
    return s;
  }

  /** A CONSTANT_Class as a dotted Java name (`com.acme.Foo`; arrays keep their descriptor). */
  className(i: number): string {
    const e = this.entry(i, "class");
    if (e.tag !== CP.CLASS) throw new Error(`constant pool index ${i} is not a class`);
    return this.utf8(e.name_index as number).replace(/\//g, ".");
  }

  memberRef(i: number): MemberRef {
    const e = this.entry(i, "member");
    if (e.tag !== CP.FIELDREF && e.tag !== CP.METHODREF && e.tag !== CP.INTERFACE_METHODREF)
      throw new Error(`constant pool index ${i} is not a member reference`);
    const nt = this.entry(e.name_and_type_index as number, "name and type");
    return {
      owner: this.className(e.class_index as number),
      name: this.utf8(nt.name_index as number),
      desc: this.utf8(nt.descriptor_index as number),
    };
  }

  nameAndType(i: number): { name: string; desc: string } {
    const nt = this.entry(i, "name and type");
    return { name: this.utf8(nt.name_index as number), desc: this.utf8(nt.descriptor_index as number) };
  }

  /** InvokeDynamic: its name/type and its bootstrap index. */
  invokeDynamic(i: number): { name: string; desc: string; bootstrap: number } {
    const e = this.entry(i, "invokedynamic");
    return { ...this.nameAndType(e.name_and_type_index as number), bootstrap: e.bootstrap_method_attr_index as number };
  }

  /** A method handle's target, when the entry is one (lambda and method-reference bodies). */
  methodHandleTarget(i: number): MemberRef | undefined {
    const e = this.pool[i];
    if (!e || e.tag !== CP.METHOD_HANDLE) return undefined;
    return this.memberRef(e.reference_index as number);
  }

  /** The value `ldc`/`ldc_w`/`ldc2_w` (or a ConstantValue attribute) pushes. */
  constant(i: number): Val {
    const e = this.entry(i, "constant");
    switch (e.tag) {
      case CP.STRING:
        return { k: "str", v: this.utf8(e.string_index as number) };
      case CP.INTEGER:
        return { k: "num", v: String((e.bytes as number) | 0) };
      case CP.FLOAT: {
        const b = Buffer.alloc(4);
        b.writeUInt32BE((e.bytes as number) >>> 0);
        return { k: "num", v: String(b.readFloatBE(0)) };
      }
      case CP.LONG: {
        const bits = (BigInt((e.high_bytes as number) >>> 0) << 32n) | BigInt((e.low_bytes as number) >>> 0);
        return { k: "num", v: String(BigInt.asIntN(64, bits)), w: true };
      }
      case CP.DOUBLE: {
        const b = Buffer.alloc(8);
        b.writeUInt32BE((e.high_bytes as number) >>> 0, 0);
        b.writeUInt32BE((e.low_bytes as number) >>> 0, 4);
        return { k: "num", v: String(b.readDoubleBE(0)), w: true };
      }
      default:
        return UNKNOWN;
    }
  }
}

/** The JVM's "modified UTF-8": NUL as C0 80, supplementary characters as surrogate pairs. */
export function decodeModifiedUtf8(bytes: readonly number[]): string {
  let ascii = true;
  for (let i = 0; i < bytes.length; i++)
    if (bytes[i] >= 0x80) {
      ascii = false;
      break;
    }
  if (ascii) return bytes.length < 4096 ? String.fromCharCode.apply(null, bytes as number[]) : Buffer.from(bytes).toString("latin1");
  let out = "";
  for (let i = 0; i < bytes.length; ) {
    const a = bytes[i++];
    if (a < 0x80) out += String.fromCharCode(a);
    else if ((a & 0xe0) === 0xc0) out += String.fromCharCode(((a & 0x1f) << 6) | (bytes[i++] & 0x3f));
    else {
      const b = bytes[i++];
      const c = bytes[i++];
      out += String.fromCharCode(((a & 0x0f) << 12) | ((b & 0x3f) << 6) | (c & 0x3f));
    }
  }
  return out;
}
