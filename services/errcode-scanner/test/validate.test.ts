import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ErrorCodeEntry } from "../src/scan/engine.js";
import { resolveConfig } from "../src/scan/rules.js";
import { createScriptRunner } from "../src/scan/script-rules.js";
import { type RegistryEntry, validate } from "../src/scan/validate.js";

const at = { artifact: "app.jar!/com/bank/A.class", class: "com.bank.A", method: "run()V", line: 10 };
function entry(
  code: string,
  message: string | null,
  family = "com.bank.BizException",
  messageKind: ErrorCodeEntry["messageKind"] = message === null ? "absent" : "constant",
): ErrorCodeEntry {
  return { code, message, messageKind, exceptionClass: family, family, locations: [at] };
}
const rulesOf = (file: Parameters<typeof resolveConfig>[0] = {}) => resolveConfig(file).rules;
const broken = async (entries: ErrorCodeEntry[], file = {}, registry: RegistryEntry[] = []) =>
  (await validate(entries, rulesOf(file), registry)).violations.map((v) => [v.code, v.rule]);

describe("validation rules", () => {
  test("code pattern and allowed prefixes of the system", async () => {
    assert.deepEqual(
      await broken([entry("ACC0001", "Account not found"), entry("acc-1", "Lower case")], { codePattern: "^[A-Z]{3}\\d{4}$" }),
      [["acc-1", "code-pattern"]],
    );
    const prefixes = { system: "payments", allowedPrefixes: { payments: ["PAY"], accounts: ["ACC"] } };
    assert.deepEqual(await broken([entry("PAY0001", "Limit exceeded"), entry("ACC0001", "Account not found")], prefixes), [
      ["ACC0001", "code-prefix"],
    ]);
    // Without a system, any system's prefix is allowed.
    assert.deepEqual(
      await broken([entry("ACC0001", "Account not found"), entry("XYZ0001", "Unknown")], { allowedPrefixes: prefixes.allowedPrefixes }),
      [["XYZ0001", "code-prefix"]],
    );
  });

  test("a code pattern that backtracks catastrophically in JavaScript is matched in linear time; one RE2 cannot read is refused naming why", async () => {
    // `^(A+)+$` against 40 A's and a digit: a JavaScript RegExp runs for hours (it froze the service, then each replica taking the scan over).
    const started = performance.now();
    assert.deepEqual(await broken([entry(`${"A".repeat(40)}1`, "Generic failure")], { codePattern: "^(A+)+$" }), [
      [`${"A".repeat(40)}1`, "code-pattern"],
    ]);
    assert.ok(performance.now() - started < 2_000, `took ${Math.round(performance.now() - started)} ms`);
    assert.throws(
      () => rulesOf({ codePattern: "^(?=PAY)\\w+$" }),
      /code pattern is not a valid regular expression \(RE2 syntax: no lookarounds or backreferences\)/,
    );
  });

  test("message required, length bounds and leaks of internals", async () => {
    assert.deepEqual(
      await broken(
        [
          entry("ACC0001", null),
          entry("ACC0002", "x"),
          entry("ACC0003", "Query failed: SELECT id FROM accounts WHERE no = 1"),
          entry("ACC0004", "java.lang.NullPointerException in ledger"),
          entry("ACC0005", "failed at com.bank.Ledger.post(Ledger.java:42)"),
          entry("ACC0006", "Connection to jdbc:postgresql://db/core refused"),
          entry("ACC0007", "Account is frozen"),
          entry("ACC0008", null, "com.bank.BizException", "dynamic"),
        ],
        { message: { minLength: 3, maxLength: 60 } },
      ),
      [
        ["ACC0001", "message-required"],
        ["ACC0002", "message-length"],
        ["ACC0003", "message-leak"],
        ["ACC0004", "message-leak"],
        ["ACC0005", "message-leak"],
        ["ACC0006", "message-leak"],
      ],
    );
  });

  test("one code, one message and one exception family, across the whole registry", async () => {
    assert.deepEqual(await broken([entry("ACC0001", "Account not found"), entry("ACC0001", "No such account")]), [
      ["ACC0001", "code-multiple-messages"],
      ["ACC0001", "code-multiple-messages"],
    ]);
    assert.deepEqual(
      await broken([
        entry("ACC0003", "Account closed", "com.bank.AccountException"),
        entry("ACC0003", "Account closed", "com.bank.PaymentException"),
      ]),
      [
        ["ACC0003", "code-multiple-families"],
        ["ACC0003", "code-multiple-families"],
      ],
    );
    // The registry counts: a new message for a registered code is a conflict and a second message.
    assert.deepEqual(
      await broken([entry("ACC0001", "Account missing")], {}, [
        { code: "ACC0001", message: "Account not found", exceptionFamily: "com.bank.BizException" },
      ]),
      [
        ["ACC0001", "registry-conflict"],
        ["ACC0001", "code-multiple-messages"],
      ],
    );
  });

  test("registered codes are not validated again; codes that pass are returned for the registry", async () => {
    const registry = [{ code: "acc-1", message: "Grandfathered", exceptionFamily: "com.bank.BizException" }];
    const r = await validate(
      [entry("acc-1", "Grandfathered"), entry("ACC0007", "Account is frozen"), entry("bad", "Bad code")],
      rulesOf({ codePattern: "^[A-Z]{3}\\d{4}$" }),
      registry,
    );
    assert.equal(r.alreadyCompliant, 1);
    assert.deepEqual(
      r.violations.map((v) => [v.code, v.rule]),
      [["bad", "code-pattern"]],
    );
    assert.deepEqual(r.newlyCompliant, [{ code: "ACC0007", message: "Account is frozen", exceptionFamily: "com.bank.BizException" }]);
  });

  test("custom rules run as sandboxed scripts", async () => {
    const scripts = [
      { name: "no-please", source: "function validate(e) { return /please/i.test(e.message || '') ? 'messages do not beg' : null; }" },
      { name: "spins", source: "function validate(e) { if (e.code === 'ACC0009') for (;;) {} return []; }", timeLimitMs: 50 },
    ];
    const runner = await createScriptRunner(scripts);
    try {
      const r = await validate(
        [entry("ACC0001", "Please try again"), entry("ACC0002", "Account is frozen"), entry("ACC0009", "Loops forever")],
        rulesOf({ scripts }),
        [],
        runner.run,
      );
      assert.deepEqual(
        r.violations.map((v) => [v.code, v.rule]),
        [
          ["ACC0001", "script:no-please"],
          ["ACC0009", "script:spins"],
        ],
      );
      assert.match(r.violations[1].message, /rule failed: .*time/i);
      assert.deepEqual(
        r.newlyCompliant.map((e) => e.code),
        ["ACC0002"],
      );
    } finally {
      await runner.close();
    }
  });
});
