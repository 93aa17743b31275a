// The code shapes real libraries use (issue 15, defects 3–8), each in a few lines of Java compiled
// here: the shape of H2's wrapped SQLException, HSQLDB's negated and chosen codes, an instance
// factory, a field set on two paths, a vendor code beside an unknown SQLSTATE, Derby's lower-case ids.
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type ExtractionResult, extractErrorCodes } from "../src/scan/engine.js";
import { compileJava } from "./support/java.js";

const java8 = {
  // H2: the code goes into a helper building an SQLException (not under the base), which the base wraps.
  "shapes/DbError.java": `package shapes;
public class DbError extends RuntimeException {
    private DbError(java.sql.SQLException e) { super(e.getMessage(), e); }
    public static DbError get(int code, String... params) { return new DbError(sqlError(code, params)); }
    static java.sql.SQLException sqlError(int code, String... params) {
        String state = stateOf(code);
        switch (code / 1000) {
            case 42: return new SyntaxError(translate(state, params), state, code);
            default: return new java.sql.SQLException(translate(state, params), state, code);
        }
    }
    static String stateOf(int code) { return String.valueOf(code); }
    static String translate(String state, String[] params) { return System.getProperty(state); }
}
class SyntaxError extends java.sql.SQLSyntaxErrorException {
    SyntaxError(String message, String state, int code) { super(message, state, code); }
}
`,
  // HSQLDB: a sub-code of 11 or more replaces the code, and the exception holds it negated.
  "shapes/HsqlError.java": `package shapes;
public class HsqlError extends RuntimeException {
    public HsqlError(Throwable t, String message, String state, int code) { super(message, t); }
    public static HsqlError error(int code) { return error(null, code, 0); }
    public static HsqlError error(Throwable t, int code, int subCode) {
        String message = System.getProperty("message." + code + "." + subCode);
        int c = subCode < 11 ? code : subCode;
        return new HsqlError(t, message.substring(6), message.substring(0, 5), -c);
    }
}
`,
  "shapes/AppError.java": `package shapes;
public class AppError extends RuntimeException {
    public AppError(String code, String message) { super(message); }
    public AppError(Info info) { this(info.code, info.message); }
}
`,
  // An instance factory of a final class.
  "shapes/Faults.java": `package shapes;
public final class Faults {
    AppError notFound(String code) { return new AppError(code, "Not found"); }
}
`,
  // A field set on two paths: a run-time value, or a constant fallback.
  "shapes/Info.java": `package shapes;
public class Info {
    final String code;
    final String message;
    Info(String raw) {
        if (raw != null) this.code = raw.trim();
        else this.code = "DEF0001";
        this.message = "Info failure";
    }
}
`,
  // A vendor code beside an SQLSTATE known only at run time.
  "shapes/VendorError.java": `package shapes;
public class VendorError extends RuntimeException {
    public VendorError(String reason, String state, int vendorCode) { super(reason); }
}
`,
  // Derby: message ids in one String slot, a few of them lower case.
  "shapes/StdError.java": `package shapes;
public class StdError extends Exception {
    public StdError(String id) { this(id, null, null); }
    public StdError(String id, Throwable cause, Object[] args) { super(id, cause); }
    public static StdError newException(String id, Object... args) { return new StdError(id, null, args); }
}
class Interrupted extends StdError { Interrupted() { super("intrp.U"); } }
`,
  "shapes/Uses.java": `package shapes;
public class Uses {
    private final Faults faults = new Faults();
    void drop(String table) { throw DbError.get(42102, table); }
    void lock() { throw DbError.get(50200); }
    void negated() { throw HsqlError.error(5501); }
    void chosen() { throw HsqlError.error(null, 5501, 5581); }
    void found() { throw faults.notFound("NFD0001"); }
    void local() { Faults f = new Faults(); throw f.notFound("NFD0002"); }
    void read(String raw) { throw new AppError(new Info(raw)); }
    void vendor(String state) { throw new VendorError("Driver failure", state, -1); }
    void ids() throws StdError {
        if (Math.random() > 0.5) throw StdError.newException("42X01");
        if (Math.random() > 0.5) throw StdError.newException("42X02", "t");
        if (Math.random() > 0.5) throw StdError.newException("XJ001.U");
        if (Math.random() > 0.5) throw StdError.newException("08006.C");
        throw new StdError("40XL1");
    }
}
`,
};

// Java 9+ compiles string concatenation to invokedynamic.
const java17 = {
  "shapes17/Numbered.java": `package shapes17;
public class Numbered {
    static shapes.AppError numbered(int n) { return new shapes.AppError("E" + n + "X", "Numbered failure"); }
    void fail() { throw numbered(7); }
}
`,
};

const BASES = ["shapes.DbError", "shapes.HsqlError", "shapes.AppError", "shapes.VendorError", "shapes.StdError"];

describe("code shapes of real libraries", () => {
  let c8: { dir: string; cleanup(): void };
  let c17: { dir: string; cleanup(): void };
  let r: ExtractionResult;
  const at = (code: string) =>
    r.errorCodes
      .filter((e) => e.code === code)
      .flatMap((e) => e.locations.map((l) => `${l.class.split(".").pop()}.${l.method.split("(")[0]}`));
  const dynamicAt = (method: string) => r.dynamicSites.filter((d) => d.location.method.startsWith(`${method}(`));

  before(async () => {
    c8 = compileJava(java8);
    c17 = compileJava(
      { ...java17, "shapes/AppError.java": java8["shapes/AppError.java"], "shapes/Info.java": java8["shapes/Info.java"] },
      "17",
    );
    const jar = path.join(c8.dir, "..", "shapes.jar");
    const { execFileSync } = await import("node:child_process");
    execFileSync("jar", ["cf", jar, "-C", c8.dir, ".", "-C", c17.dir, "shapes17"]);
    r = await extractErrorCodes(jar, { bases: BASES });
  });
  after(() => {
    c8.cleanup();
    c17.cleanup();
  });

  test("a code passed to a helper that builds an SQLException the base wraps is followed out of it (H2)", () => {
    assert.deepEqual(at("42102"), ["Uses.drop"]);
    assert.deepEqual(at("50200"), ["Uses.lock"]);
  });

  test("codes computed from constants: negated, chosen by a comparison of constants, concatenated", () => {
    assert.deepEqual(at("-5501"), ["Uses.negated"]);
    assert.deepEqual(at("-5581"), ["Uses.chosen"]);
    assert.deepEqual(at("E7X"), ["Numbered.fail"]);
  });

  test("instance factories of a final class are expanded at each call", () => {
    assert.deepEqual(at("NFD0001"), ["Uses.found"]);
    assert.deepEqual(at("NFD0002"), ["Uses.local"]);
  });

  test("a field set on two paths, one of them at run time, is dynamic, not the constant fallback", () => {
    assert.deepEqual(at("DEF0001"), []);
    assert.deepEqual(
      dynamicAt("read").map((d) => [d.reason, d.message]),
      [["code not statically known", "Info failure"]],
    );
  });

  test("an int beside an SQLSTATE known only at run time is a vendor code, not the error code", () => {
    assert.deepEqual(at("-1"), []);
    assert.deepEqual(
      dynamicAt("vendor").map((d) => [d.reason, d.message]),
      [["code not statically known", "Driver failure"]],
    );
  });

  test("lower-case ids in the slot where the base's codes go are codes (Derby's intrp.U)", () => {
    assert.deepEqual(at("intrp.U"), ["Interrupted.<init>"]);
    assert.deepEqual(at("42X01"), ["Uses.ids"]);
  });
});
