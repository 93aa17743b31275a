import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type CompiledFixtures, compileFixtures, jarOf } from "./support/java.js";

const cli = path.join(__dirname, "..", "dist", "cli.js");
let fx: CompiledFixtures;
let jar: string;

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("errcode-scan CLI", () => {
  before(() => {
    fx = compileFixtures();
    jar = path.join(fx.root, "app.jar");
    writeFileSync(jar, jarOf({ dir: fx.java8 }, { dir: fx.java17 }));
  });
  after(() => fx.cleanup());

  test("exit 1 with violations, and the documented JSON shape", () => {
    const r = run(jar, "--base", "com.bank.core.BizException", "--code-pattern", "^[A-Z]{3}\\d{4}$");
    assert.equal(r.status, 1, r.stderr);
    const out = JSON.parse(r.stdout);
    const literal = out.errorCodes.find((e: { code: string }) => e.code === "ACC0004");
    assert.deepEqual(literal, {
      code: "ACC0004",
      message: "Card expired",
      messageKind: "constant",
      exceptionClass: "com.bank.core.BizException",
      family: "com.bank.core.BizException",
      locations: [
        {
          artifact: "app.jar!/com/bank/app/TransferService.class",
          class: "com.bank.app.TransferService",
          method: "lambda$lambda$0()Lcom/bank/core/BizException;",
          line: 53,
        },
      ],
    });
    assert.deepEqual(out.stats.violationsByRule, {
      "code-pattern": 1,
      "code-multiple-messages": 3,
      "code-multiple-families": 5,
      "message-leak": 1,
    });
    assert.deepEqual(Object.keys(out.violations[0]), ["code", "rule", "message", "exceptionClass", "locations"]);
  });

  test("exit 0 when every code passes", () => {
    const r = run(jar, "--base", "com.bank.core.PaymentException", "--format", "table");
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^CODE\s+MESSAGE\s+EXCEPTION\s+SITES\s+VIOLATIONS$/m);
    assert.match(r.stdout, /^PAY0001\s+Daily limit exceeded\s+PaymentException\s+1\s+0$/m);
    assert.match(r.stdout, /no violations/);
  });

  test("exit 2 on bad input, naming the problem", () => {
    const notZip = path.join(fx.root, "notes.jar");
    writeFileSync(notZip, "plain text");
    assert.deepEqual(
      [run(notZip, "--base", "a.B").status, run(notZip, "--base", "a.B").stderr.trim()],
      [
        2,
        "errcode-scan: notes.jar: not a readable zip archive (End of central directory record signature not found. Either not a zip file, or file is truncated.)",
      ],
    );
    assert.match(run(jar).stderr, /at least one --base class is required/);
    assert.equal(run(jar).status, 2);
    assert.equal(run(jar, "--base", "a.B", "--format", "xml").status, 2);
    const rules = path.join(fx.root, "bad-rules.json");
    writeFileSync(rules, JSON.stringify({ codePattern: "([" }));
    const bad = run(jar, "--base", "a.B", "--rules", rules);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /code pattern is not a valid regular expression/);
    writeFileSync(rules, JSON.stringify({ colour: "blue" }));
    assert.match(run(jar, "--base", "a.B", "--rules", rules).stderr, /rules file .*bad-rules\.json: \(root\): Unrecognized key: "colour"/);
  });

  test("SARIF 2.1.0 and JUnit XML outputs", () => {
    const sarifFile = path.join(fx.root, "out.sarif");
    assert.equal(run(jar, "--base", "com.bank.core.BizException", "--format", "sarif", "--out", sarifFile).status, 1);
    const sarif = JSON.parse(readFileSync(sarifFile, "utf8"));
    assert.equal(sarif.version, "2.1.0");
    const leak = sarif.runs[0].results.find((r: { ruleId: string }) => r.ruleId === "message-leak");
    assert.equal(leak.locations[0].physicalLocation.artifactLocation.uri, "com/bank/app/TransferService.java");
    assert.equal(leak.locations[0].physicalLocation.region.startLine, 79);
    assert.equal(sarif.runs[0].tool.driver.rules[leak.ruleIndex].id, "message-leak");

    const junit = run(jar, "--base", "com.bank.core.BizException", "--format", "junit");
    assert.match(junit.stdout, /<testsuites name="errcode-scan" tests="25" failures="6" errors="0">/);
    assert.match(
      junit.stdout,
      /<testcase classname="com.bank.core.BizException" name="DBE0001 SQL error: select \* from accounts where id = \?">\n\s+<failure type="message-leak"/,
    );
  });

  test("a registry file: codes that pass are added, and are not validated again", () => {
    const registry = path.join(fx.root, "registry.json");
    const first = run(jar, "--base", "com.bank.core.PaymentException", "--registry", registry, "--write-registry");
    assert.equal(first.status, 0, first.stderr);
    const saved = JSON.parse(readFileSync(registry, "utf8"));
    assert.deepEqual(
      saved.map((e: { code: string }) => e.code),
      ["ACC0003", "PAY0001", "PAY0003"],
    );
    const second = JSON.parse(run(jar, "--base", "com.bank.core.PaymentException", "--registry", registry).stdout);
    assert.equal(second.stats.alreadyCompliant, 3);
    // A registered code thrown with another message now conflicts.
    writeFileSync(
      registry,
      JSON.stringify([{ code: "PAY0001", message: "Limit reached", exceptionFamily: "com.bank.core.PaymentException" }]),
    );
    const third = JSON.parse(run(jar, "--base", "com.bank.core.PaymentException", "--registry", registry).stdout);
    assert.deepEqual(
      third.violations.map((v: { rule: string }) => v.rule),
      ["registry-conflict", "code-multiple-messages"],
    );
  });
});
