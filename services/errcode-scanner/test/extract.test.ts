import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type ExtractionResult, extractErrorCodes } from "../src/scan/engine.js";
import { type CompiledFixtures, compileFixtures, compileJava } from "./support/java.js";

const BASE = "com.bank.core.BizException";
let fx: CompiledFixtures;
let result: ExtractionResult;

const simple = (fqn: string) => fqn.split(".").pop();
const rows = (r: ExtractionResult) => r.errorCodes.map((e) => [e.code, e.message, simple(e.exceptionClass)]);
const find = (code: string, message?: string) => {
  const e = result.errorCodes.find((x) => x.code === code && (message === undefined || x.message === message));
  assert.ok(e, `code ${code} was not found`);
  return e;
};
const where = (code: string, message?: string) =>
  find(code, message).locations.map((l) => `${simple(l.class)}.${l.method.split("(")[0]}:${l.line}`);

describe("error codes recovered from bytecode (javac --release 8 and 17, packed by the jar tool)", () => {
  before(async () => {
    fx = compileFixtures();
    const jar = path.join(fx.root, "app.jar");
    execFileSync("jar", ["cf", jar, "-C", fx.java8, ".", "-C", fx.java17, "."]);
    result = await extractErrorCodes(jar, { bases: [BASE] });
  });
  after(() => fx.cleanup());

  test("finds exactly the codes every construction site passes", () => {
    assert.deepEqual(rows(result), [
      ["ACC0001", "Account not found", "AccountNotFoundException"],
      ["ACC0001", "No such account", "AccountNotFoundException"],
      ["ACC0001", "Account not found", "BizException"],
      ["ACC0002", "Account is frozen", "BizException"],
      ["ACC0003", "Account closed", "BizException"],
      ["ACC0003", "Account closed", "PaymentException"],
      ["ACC0004", "Card expired", "BizException"],
      ["ACC0005", null, "BizException"],
      ["ACC0008", "From a local", "BizException"],
      ["ACC0009", "Runtime constant", "BizException"],
      ["CMD0001", "Open rejected", "BizException"],
      ["CMD0002", "Close rejected", "BizException"],
      ["CMD0003", null, "BizException"],
      ["DBE0001", "SQL error: select * from accounts where id = ?", "BizException"],
      ["INN0001", "Inner failure", "BizException"],
      ["NST0001", "Nested failure", "BizException"],
      ["PAY0001", "Daily limit exceeded", "PaymentException"],
      ["PAY0002", "Payee rejected", "BizException"],
      ["PAY0003", "Payment failed", "PaymentException"],
      ["SYS0001", "Upstream timeout", "BizException"],
      ["SYS0002", "Ledger unavailable", "BizException"],
      ["TRF0001", "Source account required", "BizException"],
      ["VAL0001", "Invalid input", "BizException"],
      ["VAL0002", "Invalid state", "BizException"],
      ["acc-1", "Lower-case code", "BizException"],
    ]);
  });

  test("string literals, compile-time constants, locals and static-initializer constants", () => {
    assert.deepEqual(where("ACC0003", "Account closed").slice(0, 1), ["TransferService.literal:13"]);
    assert.deepEqual(where("ACC0001", "Account not found").length, 2);
    assert.deepEqual(where("ACC0008"), ["TransferService.local:59"]);
    assert.deepEqual(where("ACC0009"), ["TransferService.staticInitialized:21"]);
  });

  test("enum constants give code and message from their static initializer, also with a constant body", () => {
    assert.deepEqual(where("PAY0001"), ["TransferService.enumConstant:25"]);
    assert.deepEqual(where("SYS0001"), ["TransferService.enumWithBody:29"]);
  });

  test("static factories: their own site and every caller, with arguments passed through", () => {
    assert.deepEqual(where("ACC0002"), ["TransferService.factory:33", "Errors.accountFrozen:8"]);
    assert.deepEqual(where("PAY0002"), ["TransferService.factoryPassThrough:37"]);
    assert.equal(find("PAY0003").exceptionClass, "com.bank.core.PaymentException");
  });

  test("subclass constructors passing literals to super, and values passed through constructors", () => {
    assert.deepEqual(where("ACC0001", "Account not found").sort(), [
      "AccountNotFoundException.<init>:5",
      "TransferService.subclassLiteral:45",
    ]);
    assert.deepEqual(where("ACC0001", "No such account"), ["TransferService.subclassPassThrough:49"]);
    assert.equal(find("ACC0001", "No such account").family, "com.bank.core.AccountException");
  });

  test("lambdas, inner and nested classes, interface default and static methods, records, sealed types", () => {
    assert.deepEqual(where("ACC0004"), ["TransferService.lambda$lambda$0:53"]);
    assert.deepEqual(where("INN0001"), ["TransferService$Inner.go:96"]);
    assert.deepEqual(where("NST0001"), ["TransferService$Nested.go:102"]);
    assert.deepEqual(where("VAL0001"), ["Validator.check:7"]);
    assert.deepEqual(where("VAL0002"), ["Validator.fail:11"]);
    assert.deepEqual(where("TRF0001"), ["Transfer.<init>:7"]);
    assert.deepEqual(where("CMD0001"), ["Command$Open.run:10"]);
    assert.deepEqual(where("CMD0002"), ["Command$Close.lambda$run$0:16"]);
  });

  test("values unknown statically are reported as dynamic, never guessed", () => {
    assert.equal(find("ACC0005").messageKind, "dynamic"); // "Balance too low: " + amount
    assert.equal(find("CMD0003").messageKind, "dynamic"); // invokedynamic string concatenation
    assert.deepEqual(
      result.dynamicSites.map((d) => [d.location.method, d.message, d.reason]),
      [
        ["dynamicCode(Ljava/lang/String;)V", "Generic failure", "code not statically known"],
        ["ternary(Z)V", "Either", "code not statically known"],
      ],
    );
    assert.ok(!result.errorCodes.some((e) => e.code === "ACC0006" || e.code === "ACC0007"), "a ternary's branches are not guessed");
  });

  test("finds every class under the base, at any depth, and nothing else", () => {
    assert.deepEqual(result.exceptionClasses, [
      "com.bank.core.AccountException",
      "com.bank.core.AccountNotFoundException",
      "com.bank.core.BizException",
      "com.bank.core.PaymentException",
    ]);
    assert.ok(!result.errorCodes.some((e) => e.message === "not a BizException"));
  });

  test("an intermediate class as base narrows the scan to its family", async () => {
    const narrowed = await extractErrorCodes(fx.java8, { bases: ["com.bank.core.AccountException"] });
    assert.deepEqual(rows(narrowed), [
      ["ACC0001", "Account not found", "AccountNotFoundException"],
      ["ACC0001", "No such account", "AccountNotFoundException"],
    ]);
  });

  test("pinned constructor slots override the shape heuristic", async () => {
    // Reading the (code, message) constructor the other way round shows the pin is obeyed.
    const pinned = await extractErrorCodes(fx.java8, {
      bases: [BASE],
      mapping: { slots: { [BASE]: { "(Ljava/lang/String;Ljava/lang/String;)V": { code: 1, message: 0 } } } },
    });
    const literal = pinned.errorCodes.find((e) => e.locations.some((l) => l.method === "literal()V"));
    assert.deepEqual([literal?.code, literal?.message], ["Account closed", "ACC0003"]);
  });
});

describe("text beyond ASCII in javac-built jars (--release 8 and 17)", () => {
  const sources = {
    "u/BizException.java": `package u; public class BizException extends RuntimeException {
      public BizException(String code, String message) { super(message); } }`,
    "u/Svc.java": `package u; public class Svc {
      static final String C = "ORD0001";
      void a() { throw new BizException("PAY0001", "支付失败：余额不足 💳"); }
      void b() { throw new BizException(C, "emoji 😀 and lone \\uD83D surrogate"); }
      void c() { throw new BizException("NUL0001", "nul \\u0000 inside"); }
      void d() { throw new BizException("订单-0001", "订单不存在"); }
    }`,
  };
  for (const release of ["8", "17"]) {
    test(`messages keep their characters (release ${release}); a code outside the default shape is named as a site, found once the shape allows it`, async () => {
      const { dir, cleanup } = compileJava(sources, release);
      try {
        const jar = path.join(dir, "..", "app.jar");
        execFileSync("jar", ["cf", jar, "-C", dir, "."]);
        const found = await extractErrorCodes(jar, { bases: ["u.BizException"] });
        // Modified UTF-8 in the class file: supplementary characters as surrogate pairs, NUL as two bytes.
        // What PostgreSQL cannot store is made storable as everywhere else (NUL as the text \u0000, a lone surrogate as U+FFFD).
        assert.deepEqual(
          found.errorCodes.map((e) => [e.code, e.message]),
          [
            ["NUL0001", "nul \\u0000 inside"],
            ["ORD0001", "emoji 😀 and lone \uFFFD surrogate"],
            ["PAY0001", "支付失败：余额不足 💳"],
          ],
        );
        // The default shape is ASCII: "订单-0001" is not taken for a code, and the site says so rather than vanish.
        assert.deepEqual(
          found.dynamicSites.map((d) => [d.message, d.reason]),
          [["订单-0001", "no code argument"]],
        );
        const widened = await extractErrorCodes(jar, { bases: ["u.BizException"], mapping: { codeShape: /^\S*\d\S*$/u } });
        assert.deepEqual(widened.errorCodes.find((e) => e.code === "订单-0001")?.message, "订单不存在");
      } finally {
        cleanup();
      }
    });
  }
});
