// Class files shaped to make the scanner blow up: a static factory that calls itself (Apache
// Derby's StandardException.plainWrapException) and a tampered switch. Each scan runs bounded
// (heap and time), so before the fixes these tests fail on the bound instead of killing the runner.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { extractBounded } from "../src/scan/isolated-extract.js";
import { compileJava, entriesOf } from "./support/java.js";
import { writeZip } from "./support/zip-writer.js";

const BASE = "poison.Failure";
const bounds = { maxHeapMb: 256, timeLimitMs: 60_000 };

const sources = {
  "poison/Failure.java": `package poison;
public class Failure extends RuntimeException {
    private final String code;
    public Failure(String code, String message) { super(message); this.code = code; }
    public static Failure wrap(Throwable t) {
        if (t instanceof Failure) return (Failure) t;
        if (t.getCause() != null) {
            Failure outer = wrap(t.getCause());
            outer.addSuppressed(wrap(t.getCause().getCause()));
            return outer;
        }
        return new Failure("WRP0001", "Wrapped failure");
    }
    public static Failure ping(int n) {
        if (n > 0) return pong(n - 1);
        return new Failure("PNG0001", "Ping");
    }
    public static Failure pong(int n) {
        if (n > 0) {
            Failure f = ping(n - 1);
            f.addSuppressed(ping(n - 2));
            return f;
        }
        return new Failure("PNG0002", "Pong");
    }
}
`,
  "poison/Caller.java": `package poison;
public class Caller {
    void wrapped(Exception e) { throw Failure.wrap(e); }
    void pinged() { throw Failure.ping(3); }
    void ponged() { throw Failure.pong(3); }
    static String name(int i) {
        switch (i) { case 1: return "one"; case 2: return "two"; case 3: return "three"; default: return "many"; }
    }
}
`,
};

describe("hostile bytecode", () => {
  let java: { dir: string; cleanup(): void };
  const jarOfEntries = (name: string, entries: Array<{ name: string; data: Buffer }>) => {
    const file = path.join(java.dir, "..", name);
    writeFileSync(file, writeZip(entries));
    return file;
  };

  before(() => {
    java = compileJava(sources);
  });
  after(() => java.cleanup());

  test("a static factory calling itself is expanded once: its code is found at every caller, in bounded time and memory", async () => {
    const jar = jarOfEntries("recursive.jar", entriesOf(java.dir));
    assert.ok(readFileSync(jar).length < 4096, "the crafted artifact is a few KB");
    const r = await extractBounded(jar, { bases: [BASE] }, {}, bounds);
    const callers = (code: string) =>
      new Set(
        r.errorCodes
          .filter((e) => e.code === code)
          .flatMap((e) => e.locations.map((l) => `${l.class.split(".").pop()}.${l.method.split("(")[0]}`)),
      );
    assert.deepEqual(callers("WRP0001"), new Set(["Failure.wrap", "Caller.wrapped"]));
    assert.equal(r.errorCodes.find((e) => e.code === "WRP0001")?.message, "Wrapped failure");
    // Mutually recursive factories: each caller sees the codes of both, whichever is expanded first.
    assert.deepEqual(callers("PNG0001"), new Set(["Failure.ping", "Failure.pong", "Caller.pinged", "Caller.ponged"]));
    assert.deepEqual(callers("PNG0002"), new Set(["Failure.ping", "Failure.pong", "Caller.pinged", "Caller.ponged"]));
  });

  test("a string constant that is not modified UTF-8 (a raw NUL, a byte from F0 up, a cut sequence, an overlong form) makes a malformed class, as the JVM has it", async () => {
    const good = readFileSync(path.join(java.dir, "poison/Caller.class"));
    // The UTF8 entry "many" (length 4): its bytes tampered with, its length kept.
    const many = Buffer.from([0, 4, ...Buffer.from("many")]);
    const at = good.indexOf(many) + 2;
    assert.ok(at > 2 && good.indexOf(many, at) < 0, 'one "many" in Caller.class');
    const tampered = (bytes: number[]) => {
      const b = Buffer.from(good);
      Buffer.from(bytes).copy(b, at);
      return b;
    };
    const jar = jarOfEntries("utf8.jar", [
      ...entriesOf(java.dir),
      { name: "poison/RawNul.class", data: tampered([0x6d, 0x00, 0x6e, 0x79]) },
      { name: "poison/HighByte.class", data: tampered([0x6d, 0xff, 0x6e, 0x79]) },
      { name: "poison/Cut.class", data: tampered([0x6d, 0x61, 0x6e, 0xe4]) },
      // "A" written long: the JVM takes only NUL's C0 80 so.
      { name: "poison/Overlong2.class", data: tampered([0x6d, 0xc1, 0x81, 0x79]) },
      { name: "poison/Overlong3.class", data: tampered([0xe0, 0x81, 0x81, 0x79]) },
      // A real NUL (C0 80) and a character in three bytes are fine.
      { name: "poison/Fine.class", data: tampered([0xc0, 0x80, 0x6e, 0x79]) },
      { name: "poison/Fine3.class", data: tampered([0xe2, 0x82, 0xac, 0x79]) },
    ]);
    const r = await extractBounded(jar, { bases: [BASE] }, {}, bounds);
    assert.deepEqual(r.problems.map((p) => [p.entry, p.message.replace(/entry \d+/, "entry N")]).sort(), [
      ["utf8.jar!/poison/Cut.class", "malformed class file (constant pool entry N is not modified UTF-8 (byte 0xe4 at 3))"],
      ["utf8.jar!/poison/HighByte.class", "malformed class file (constant pool entry N is not modified UTF-8 (byte 0xff at 1))"],
      ["utf8.jar!/poison/Overlong2.class", "malformed class file (constant pool entry N is not modified UTF-8 (byte 0xc1 at 1))"],
      ["utf8.jar!/poison/Overlong3.class", "malformed class file (constant pool entry N is not modified UTF-8 (byte 0xe0 at 0))"],
      ["utf8.jar!/poison/RawNul.class", "malformed class file (constant pool entry N is not modified UTF-8 (byte 0x00 at 1))"],
    ]);
    assert.ok(
      r.errorCodes.some((e) => e.code === "WRP0001"),
      "the other classes are still scanned",
    );
  });

  test("a tampered tableswitch range is reported as a malformed class, by entry and reason, and the scan goes on", async () => {
    const good = readFileSync(path.join(java.dir, "poison/Caller.class"));
    // javac compiles name(int) to a tableswitch over 1..3: find its low/high words and tamper with them.
    const range = Buffer.from([0, 0, 0, 1, 0, 0, 0, 3]);
    const at = good.indexOf(range);
    assert.ok(at > 0 && good.indexOf(range, at + 1) < 0, "one tableswitch 1..3 in Caller.class");
    const huge = Buffer.from(good);
    huge.writeInt32BE(0x7fffffff, at + 4); // 2^31 - 1 targets
    const inverted = Buffer.from(good);
    inverted.writeInt32BE(100, at); // low above high: a negative count
    const jar = jarOfEntries("tampered.jar", [
      ...entriesOf(java.dir),
      { name: "poison/Huge.class", data: huge },
      { name: "poison/Inverted.class", data: inverted },
    ]);
    const r = await extractBounded(jar, { bases: [BASE] }, {}, bounds);
    assert.deepEqual(
      r.problems.map((p) => [p.entry, p.message]),
      [
        [
          "tampered.jar!/poison/Huge.class",
          "malformed class file (method name(I)Ljava/lang/String;: tableswitch at pc 1 has a range 1..2147483647 that does not fit in the method's code)",
        ],
        [
          "tampered.jar!/poison/Inverted.class",
          "malformed class file (method name(I)Ljava/lang/String;: tableswitch at pc 1 has a range 100..3 that does not fit in the method's code)",
        ],
      ],
    );
    assert.ok(
      r.errorCodes.some((e) => e.code === "WRP0001"),
      "the other classes are still scanned",
    );
  });
});
