// The text functions alone: the extraction worker does not load the PostgreSQL client.
import { storableText } from "@opsplane/store/storable";
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
  METHOD_TYPE: 16,
  DYNAMIC: 17,
  INVOKE_DYNAMIC: 18,
  MODULE: 19,
  PACKAGE: 20,
} as const;

/** Bytes after the tag, per tag (UTF8 is variable). */
const ENTRY_BYTES: Record<number, number> = {
  3: 4,
  4: 4,
  5: 8,
  6: 8,
  7: 2,
  8: 2,
  9: 4,
  10: 4,
  11: 4,
  12: 4,
  15: 3,
  16: 2,
  17: 4,
  18: 4,
  19: 2,
  20: 2,
};

export interface MemberRef {
  owner: string;
  name: string;
  desc: string;
}

/** A class file the reader cannot make sense of: what is wrong, in words. */
export class ClassFormatError extends Error {}

/**
 * The constant pool read straight from the class file's bytes: each entry's tag and offset are
 * recorded once, and strings are decoded (and cached) only when asked for.
 */
export class ConstantPool {
  /** What each entry decoded to (a string, a class name or a member reference; one kind per index). */
  private readonly decoded: Array<string | MemberRef | undefined>;

  private constructor(
    private readonly data: Buffer,
    private readonly tags: Uint8Array,
    private readonly offsets: Uint32Array,
  ) {
    this.decoded = new Array(tags.length);
  }

  /** Reads the pool that starts at `offset` (its count); returns it and where the class file goes on. */
  static read(data: Buffer, offset: number): { pool: ConstantPool; end: number } {
    if (offset + 2 > data.length) throw new ClassFormatError("truncated before the constant pool");
    const count = data.readUInt16BE(offset);
    const tags = new Uint8Array(count);
    const offsets = new Uint32Array(count);
    let at = offset + 2;
    for (let i = 1; i < count; i++) {
      if (at >= data.length) throw new ClassFormatError(`truncated in constant pool entry ${i}`);
      const tag = data[at];
      tags[i] = tag;
      offsets[i] = at + 1;
      let size: number;
      if (tag === CP.UTF8) {
        if (at + 3 > data.length) throw new ClassFormatError(`truncated in constant pool entry ${i}`);
        size = 2 + data.readUInt16BE(at + 1);
      } else {
        size = ENTRY_BYTES[tag];
        if (size === undefined) throw new ClassFormatError(`constant pool entry ${i} has unknown tag ${tag}`);
      }
      at += 1 + size;
      if (at > data.length) throw new ClassFormatError(`truncated in constant pool entry ${i}`);
      if (tag === CP.UTF8) {
        const bad = illegalModifiedUtf8(data, offsets[i] + 2, at);
        if (bad !== undefined)
          throw new ClassFormatError(
            `constant pool entry ${i} is not modified UTF-8 (byte 0x${hex(data[bad]!)} at ${bad - offsets[i] - 2})`,
          );
      }
      // Longs and doubles take two entries.
      if (tag === CP.LONG || tag === CP.DOUBLE) i++;
    }
    return { pool: new ConstantPool(data, tags, offsets), end: at };
  }

  /** Entries in the pool (index 0 unused). */
  get size(): number {
    return this.tags.length;
  }

  /** Calls `visit` with the index of every method reference (class and interface methods). */
  forEachMethodRef(visit: (index: number) => void): void {
    for (let i = 1; i < this.tags.length; i++) if (this.tags[i] === CP.METHODREF || this.tags[i] === CP.INTERFACE_METHODREF) visit(i);
  }

  private at(i: number, tag: number, what: string): number {
    if (i <= 0 || i >= this.tags.length || this.tags[i] !== tag) throw new ClassFormatError(`constant pool index ${i} is not a ${what}`);
    return this.offsets[i];
  }

  private u2(offset: number): number {
    return this.data.readUInt16BE(offset);
  }

  utf8(i: number): string {
    let s = this.decoded[i] as string | undefined;
    if (s === undefined) {
      const o = this.at(i, CP.UTF8, "UTF8 string");
      s = decodeModifiedUtf8(this.data, o + 2, o + 2 + this.u2(o));
      this.decoded[i] = s;
    }
    return s;
  }

  /** A CONSTANT_Class as a dotted Java name (`com.acme.Foo`; arrays keep their descriptor). */
  className(i: number): string {
    let s = this.decoded[i] as string | undefined;
    if (s === undefined) {
      s = this.utf8(this.u2(this.at(i, CP.CLASS, "class"))).replace(/\//g, ".");
      this.decoded[i] = s;
    }
    return s;
  }

  /** A field or method reference (decoded once; callers must not change it). */
  memberRef(i: number): MemberRef {
    let ref = this.decoded[i] as MemberRef | undefined;
    if (ref === undefined) {
      const tag = i > 0 && i < this.tags.length ? this.tags[i] : 0;
      if (tag !== CP.FIELDREF && tag !== CP.METHODREF && tag !== CP.INTERFACE_METHODREF)
        throw new ClassFormatError(`constant pool index ${i} is not a member reference`);
      const o = this.offsets[i];
      ref = { owner: this.className(this.u2(o)), ...this.nameAndType(this.u2(o + 2)) };
      this.decoded[i] = ref;
    }
    return ref;
  }

  /** A member reference's name, without decoding its class or descriptor. */
  refName(i: number): string {
    return this.utf8(this.u2(this.at(this.u2(this.offsets[i] + 2), CP.NAME_AND_TYPE, "name and type")));
  }

  /** A member reference's descriptor. */
  refDesc(i: number): string {
    return this.utf8(this.u2(this.at(this.u2(this.offsets[i] + 2), CP.NAME_AND_TYPE, "name and type") + 2));
  }

  /** Whether a method reference names a class in the JDK's `java/` packages (which no artifact can define), read from the bytes. */
  refToJava(i: number): boolean {
    const o = this.at(this.u2(this.at(this.u2(this.offsets[i]), CP.CLASS, "class")), CP.UTF8, "UTF8 string");
    const d = this.data;
    return this.u2(o) > 5 && d[o + 2] === 0x6a && d[o + 3] === 0x61 && d[o + 4] === 0x76 && d[o + 5] === 0x61 && d[o + 6] === 0x2f;
  }

  /** A method reference's class. */
  refOwner(i: number): string {
    return this.className(this.u2(this.offsets[i]));
  }

  nameAndType(i: number): { name: string; desc: string } {
    const o = this.at(i, CP.NAME_AND_TYPE, "name and type");
    return { name: this.utf8(this.u2(o)), desc: this.utf8(this.u2(o + 2)) };
  }

  /** InvokeDynamic: its name/type and its bootstrap index. */
  invokeDynamic(i: number): { name: string; desc: string; bootstrap: number } {
    const o = this.at(i, CP.INVOKE_DYNAMIC, "invokedynamic");
    return { ...this.nameAndType(this.u2(o + 2)), bootstrap: this.u2(o) };
  }

  /** A method handle's target, when the entry is one (lambda and method-reference bodies). */
  methodHandleTarget(i: number): MemberRef | undefined {
    if (i <= 0 || i >= this.tags.length || this.tags[i] !== CP.METHOD_HANDLE) return undefined;
    return this.memberRef(this.u2(this.offsets[i] + 1));
  }

  /** The value `ldc`/`ldc_w`/`ldc2_w` (or a ConstantValue attribute) pushes. */
  constant(i: number): Val {
    if (i <= 0 || i >= this.tags.length) throw new ClassFormatError(`constant pool index ${i} is out of range`);
    const o = this.offsets[i];
    switch (this.tags[i]) {
      case CP.STRING:
        return { k: "str", v: this.utf8(this.u2(o)) };
      case CP.INTEGER:
        return { k: "num", v: String(this.data.readInt32BE(o)) };
      case CP.FLOAT:
        return { k: "num", v: String(this.data.readFloatBE(o)) };
      case CP.LONG:
        return { k: "num", v: String(this.data.readBigInt64BE(o)), w: true };
      case CP.DOUBLE:
        return { k: "num", v: String(this.data.readDoubleBE(o)), w: true };
      default:
        return UNKNOWN;
    }
  }
}

const hex = (b: number) => b.toString(16).padStart(2, "0");
const continues = (b: number | undefined) => b !== undefined && (b & 0xc0) === 0x80;

/**
 * Where bytes `start`..`end` stop being modified UTF-8 (JVMS 4.4.7: no byte 0, none from F0 up,
 * every lead byte followed by its continuation bytes, each character in its shortest form but NUL's
 * `C0 80`), or undefined when they do not. The JVM refuses such a class; read as it came, a raw NUL,
 * a cut sequence or an overlong `C1 81` became text that was never in the class.
 */
function illegalModifiedUtf8(bytes: Buffer, start: number, end: number): number | undefined {
  for (let i = start; i < end; ) {
    const a = bytes[i]!;
    const b = bytes[i + 1];
    if (a !== 0 && a < 0x80) i++;
    else if ((a & 0xe0) === 0xc0 && i + 1 < end && continues(b) && (a >= 0xc2 || (a === 0xc0 && b === 0x80))) i += 2;
    else if ((a & 0xf0) === 0xe0 && i + 2 < end && continues(b) && continues(bytes[i + 2]) && (a !== 0xe0 || b! >= 0xa0)) i += 3;
    else return i;
  }
  return undefined;
}

/**
 * The JVM's "modified UTF-8" (checked when the pool was read): NUL as C0 80, supplementary characters
 * as surrogate pairs. Made storable as the rest of the platform's text is (a NUL as the text \u0000, a
 * lone surrogate as U+FFFD): PostgreSQL takes neither, and one such string failed the whole scan.
 * ASCII cannot hold either, so only other strings pay for it.
 */
function decodeModifiedUtf8(bytes: Buffer, start: number, end: number): string {
  let ascii = true;
  for (let i = start; i < end; i++)
    if (bytes[i] >= 0x80) {
      ascii = false;
      break;
    }
  if (ascii) return bytes.toString("latin1", start, end);
  let out = "";
  for (let i = start; i < end; ) {
    const a = bytes[i++];
    if (a < 0x80) out += String.fromCharCode(a);
    else if ((a & 0xe0) === 0xc0) out += String.fromCharCode(((a & 0x1f) << 6) | (bytes[i++] & 0x3f));
    else {
      const b = bytes[i++];
      const c = bytes[i++];
      out += String.fromCharCode(((a & 0x0f) << 12) | ((b & 0x3f) << 6) | (c & 0x3f));
    }
  }
  return storableText(out);
}
