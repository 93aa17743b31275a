import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type CompiledFixtures, compileFixtures, compileJava, entriesOf, jarOf } from "./support/java.js";
import { writeZip } from "./support/zip-writer.js";

const cli = path.join(__dirname, "..", "dist", "cli.js");
let fx: CompiledFixtures;
let jar: string;

type SarifLocation = {
  logicalLocations: Array<{ fullyQualifiedName: string }>;
  physicalLocation: { artifactLocation: { uri: string } };
};

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

  test("exit 2 with one line when the scan goes past the heap the rules file allows", () => {
    const heavy = path.join(fx.root, "heavy.jar");
    const cls = readFileSync(path.join(fx.java8, "com/bank/app/TransferService.class"));
    writeFileSync(heavy, writeZip(Array.from({ length: 5000 }, (_, i) => ({ name: `copies/C${i}.class`, data: cls }))));
    const rules = path.join(fx.root, "small-heap.json");
    writeFileSync(rules, JSON.stringify({ limits: { maxHeapMb: 32 } }));
    const r = run(heavy, "--base", "com.bank.core.BizException", "--rules", rules);
    assert.deepEqual([r.status, r.stderr], [2, "errcode-scan: the scan ran out of memory (its heap is limited to 32 MiB)\n"]);
  });

  test("exit 3 with one line saying why when no class file could be read; skipped files named up to 20, then counted", () => {
    const broken = path.join(fx.root, "broken.jar");
    writeFileSync(
      broken,
      writeZip(Array.from({ length: 25 }, (_, i) => ({ name: `b/B${i}.class`, data: Buffer.from("not bytecode at all") }))),
    );
    const r = run(broken, "--base", "com.bank.core.BizException");
    assert.equal(r.status, 3, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 22, r.stderr);
    assert.equal(lines[0], "errcode-scan: skipped broken.jar!/b/B0.class: not a class file (bad magic)");
    assert.equal(lines[20], "errcode-scan: skipped 5 more class files (all in the report's problems)");
    assert.equal(lines[21], "errcode-scan: not checked: none of the 25 class files could be read (all malformed or unsupported)");
    const report = JSON.parse(r.stdout);
    assert.equal(report.problems.length, 25);
    assert.deepEqual(report.notChecked, ["none of the 25 class files could be read (all malformed or unsupported)"]);
  });

  test("exit 3 with one line saying why when a base has subclasses but no code was found under it", () => {
    const java = compileJava({
      "q/Base.java": "package q; public class Base extends RuntimeException { public Base(String code) { super(code); } }",
      "q/Sub.java": "package q; public class Sub extends Base { public Sub(String code) { super(code); } }",
      "q/User.java": "package q; public class User { void fail(String code) { throw new Sub(code); } }",
    });
    try {
      const opaque = path.join(fx.root, "opaque.jar");
      writeFileSync(opaque, writeZip(entriesOf(java.dir)));
      const r = run(opaque, "--base", "q.Base");
      assert.equal(r.status, 3, r.stderr);
      assert.equal(
        r.stderr,
        "errcode-scan: not checked: base q.Base has 1 subclass but no error code was found under it (1 site with a code not statically known)\n",
      );
    } finally {
      java.cleanup();
    }
  });

  test("exit 3 when no base is found in the artifact (a misspelt name): before, exit 0 with nothing checked", () => {
    const r = run(jar, "--base", "com.bank.core.BizExcepton");
    assert.deepEqual(
      [r.status, r.stderr],
      [
        3,
        "errcode-scan: not checked: no error code was found under base com.bank.core.BizExcepton, and no class in the artifact extends it: check the base's name\n",
      ],
    );
    const two = run(jar, "--base", "com.bank.core.BizExcepton", "--base", "com.bank.core.Nope");
    assert.equal(two.status, 3);
    assert.match(two.stderr, /under any of the bases com\.bank\.core\.BizExcepton, com\.bank\.core\.Nope, and no class/);
    // One base found is enough to pass (a list shared by several systems names bases one artifact does not use),
    // with a warning naming each other one, in case it is misspelt.
    const one = run(jar, "--base", "com.bank.core.PaymentException", "--base", "com.bank.core.Nope");
    assert.deepEqual(
      [one.status, one.stderr],
      [0, "errcode-scan: warning: nothing in the artifact is or extends base com.bank.core.Nope: check its name\n"],
    );
    assert.deepEqual(JSON.parse(one.stdout).basesNotFound, ["com.bank.core.Nope"]);
    // A base above another base (each class goes to the nearer one) is in the artifact all the same.
    for (const above of ["java.lang.RuntimeException", "java.lang.Exception"]) {
      const both = run(jar, "--base", "com.bank.core.BizException", "--base", above);
      assert.deepEqual(JSON.parse(both.stdout).basesNotFound, [], above);
      assert.doesNotMatch(both.stderr, /warning/, above);
    }
  });

  test("an overlapping-entry zip bomb is refused with one line and exit 2, not a line per entry", () => {
    const bomb = path.join(fx.root, "bomb.jar");
    const kernel = Buffer.alloc(60 * 1024);
    writeFileSync(
      bomb,
      writeZip(Array.from({ length: 20_000 }, (_, i) => ({ name: `k/K${i}.class`, data: kernel, sameDataAs: i ? 0 : undefined }))),
    );
    const r = run(bomb, "--base", "com.bank.core.BizException");
    assert.deepEqual(
      [r.status, r.stderr],
      [
        2,
        "errcode-scan: bomb.jar: zip bomb: entries k/K0.class and k/K1.class overlap (an archive whose entries share their data; not read)\n",
      ],
    );
  });

  test("SARIF also carries what was not checked: sites with a code not statically known (note) and unreadable class files (warning)", () => {
    const mixed = path.join(fx.root, "mixed.jar");
    writeFileSync(
      mixed,
      writeZip([...entriesOf(fx.java8), { name: "com/bank/Garbage.class", data: Buffer.from("definitely not bytecode") }]),
    );
    const json = JSON.parse(run(mixed, "--base", "com.bank.core.BizException").stdout);
    assert.ok(json.dynamicSites.length > 0, "the fixtures have sites whose code is not statically known");
    const sarifFile = path.join(fx.root, "mixed.sarif");
    run(mixed, "--base", "com.bank.core.BizException", "--format", "sarif", "--out", sarifFile);
    const sarifRun = JSON.parse(readFileSync(sarifFile, "utf8")).runs[0];
    const rules = sarifRun.tool.driver.rules as Array<{ id: string; defaultConfiguration: { level: string } }>;
    const results = sarifRun.results as Array<{
      ruleId: string;
      ruleIndex: number;
      level: string;
      message: { text: string };
      locations: SarifLocation[];
    }>;
    const notes = results.filter((r) => r.level === "note");
    assert.equal(notes.length, json.dynamicSites.length);
    const site = json.dynamicSites[0];
    const note = notes[0];
    assert.equal(rules[note.ruleIndex].id, "code-not-static");
    assert.equal(rules[note.ruleIndex].defaultConfiguration.level, "note");
    assert.match(note.message.text, /is built (with a code that is not statically known|without a code argument): not checked/);
    assert.equal(note.locations[0].logicalLocations[0].fullyQualifiedName, `${site.location.class}.${site.location.method.split("(")[0]}`);
    const warnings = results.filter((r) => r.level === "warning");
    assert.deepEqual(
      warnings.map((w) => [rules[w.ruleIndex].id, w.locations[0].physicalLocation.artifactLocation.uri]),
      [["malformed-class", "com/bank/Garbage.class"]],
    );
    assert.match(warnings[0].message.text, /^mixed\.jar!\/com\/bank\/Garbage\.class was not scanned: not a class file \(bad magic\)$/);
    assert.equal(results.filter((r) => r.level === "error").length, json.violations.length);
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
