import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import type { BusEvent } from "@opsplane/bus";
import { ArtifactPublishedSchema, toEventData, topics } from "@opsplane/contracts";
import { type RunningService, sha256Hex, startService } from "@opsplane/platform";
import { createTestDatabase, eventually, type TestDatabase } from "@opsplane/testing";
import { definition } from "../src/service.js";
import { type CompiledFixtures, compileFixtures, compileJava, entriesOf, jarOf } from "./support/java.js";
import { writeZip } from "./support/zip-writer.js";

const operatorKey = "errcode-operator-key-0123456789";
const viewerKey = "errcode-viewer-key-0123456789";
const BASE = "com.bank.core.BizException";

type Json = Record<string, unknown> & { scan?: Record<string, unknown> };

describe("errcode-scanner service", () => {
  let fx: CompiledFixtures;
  let db: TestDatabase;
  let svc: RunningService;
  let repo: http.Server;
  let repoUrl: string;
  let jar: Buffer;
  const completed: BusEvent[] = [];

  const rpc = async (method: string, body: unknown, key = operatorKey) => {
    const res = await fetch(`${svc.url}/ops.v1.ErrcodeScanService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Json };
  };
  const finished = (id: string) =>
    eventually(
      `scan ${id} finished`,
      async () => {
        const r = await rpc("GetScan", { id }, viewerKey);
        const status = r.body.scan?.status;
        return status === "succeeded" || status === "failed" ? r.body : undefined;
      },
      60_000,
      50,
    );
  const tableCount = async (table: string, scanId: string) => {
    const r = await svc.ctx.pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE scan_id = $1`, [scanId]);
    return r.rows[0].n as number;
  };

  before(async () => {
    fx = compileFixtures();
    jar = jarOf({ dir: fx.java8 }, { dir: fx.java17 });
    // A stand-in artifact repository on loopback: the allow-listed prefix is /releases/.
    repo = http.createServer((req, res) => {
      if (req.url === "/releases/app-1.0.jar" || req.url === "/elsewhere/app-1.0.jar") res.end(jar);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => repo.listen(0, "127.0.0.1", resolve));
    repoUrl = `http://127.0.0.1:${(repo.address() as AddressInfo).port}`;
    db = await createTestDatabase();
    svc = await startService(definition, {
      DATABASE_URL: db.url,
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
      AUTH_API_KEYS: `ops:operator:${sha256Hex(operatorKey)},watcher:viewer:${sha256Hex(viewerKey)}`,
      ERRCODE_BASES: BASE,
      ERRCODE_ARTIFACT_URL_PREFIXES: `${repoUrl}/releases/`,
      BODY_LIMIT_BYTES: String(4 * 1024 * 1024),
    });
    const sub = await svc.ctx.bus.subscribe({
      group: "errcode-test",
      topics: [topics.errcodeScanCompleted.name],
      handler: async (e) => void completed.push(e),
    });
    svc.ctx.onClose(() => sub.close());
  });

  after(async () => {
    await svc?.close();
    await db?.drop();
    repo?.close();
    fx?.cleanup();
  });

  test("an uploaded jar is scanned: codes, violations, tables, registry and the completion event", async () => {
    const submitted = await rpc("SubmitScan", {
      artifactName: "app-1.0.jar",
      content: jar.toString("base64"),
      settings: { codePattern: "^[A-Z]{3}\\d{4}$" },
    });
    assert.equal(submitted.status, 200, JSON.stringify(submitted.body));
    const id = submitted.body.scan?.id as string;
    assert.equal(submitted.body.scan?.sha256, createHash("sha256").update(jar).digest("hex"));

    const done = await finished(id);
    const scan = done.scan as Record<string, unknown>;
    assert.equal(scan.status, "succeeded", String(scan.error));
    assert.deepEqual([scan.classes, scan.exceptionClasses, scan.errorCodes, scan.violations], [16, 4, 25, 10]);
    assert.deepEqual(scan.violationsByRule, {
      "code-pattern": 1,
      "code-multiple-messages": 3,
      "code-multiple-families": 5,
      "message-leak": 1,
    });

    // "Where is code Y thrown"
    const where = await rpc("ListErrorCodes", { scanId: id, code: "PAY0001" }, viewerKey);
    assert.deepEqual(where.body.errorCodes, [
      {
        code: "PAY0001",
        message: "Daily limit exceeded",
        messageKind: "constant",
        exceptionClass: "com.bank.core.PaymentException",
        family: "com.bank.core.PaymentException",
        locations: [
          {
            artifact: "app-1.0.jar!/com/bank/app/TransferService.class",
            className: "com.bank.app.TransferService",
            method: "enumConstant()V",
            line: 25,
          },
        ],
      },
    ]);

    // "Who constructs exception X", from the seed's tables.
    const who = await rpc("FindConstructors", { scanId: id, className: "com.bank.core.PaymentException" }, viewerKey);
    assert.deepEqual(
      (who.body.constructors as Array<Record<string, unknown>>).map((c) => `${c.className}.${c.method}:${c.line}`),
      [
        "com.bank.app.TransferService.enumConstant()V:25",
        "com.bank.app.TransferService.otherFamily()V:87",
        "com.bank.core.Errors.payment(Ljava/lang/String;)Lcom/bank/core/PaymentException;:16",
      ],
    );
    assert.equal(await tableCount("classes", id), 16);
    assert.ok((await tableCount("invocations", id)) > 50);

    // Codes that passed are in the registry; a failing code is not.
    const registry = await rpc("QueryRegistry", { code: "VAL*" }, viewerKey);
    assert.deepEqual(
      (registry.body.entries as Array<Record<string, unknown>>).map((e) => [e.code, e.message, e.firstScanId]),
      [
        ["VAL0001", "Invalid input", id],
        ["VAL0002", "Invalid state", id],
      ],
    );
    assert.deepEqual((await rpc("QueryRegistry", { code: "DBE0001" }, viewerKey)).body.entries ?? [], []);

    const event = await eventually("scan completed event", () => completed.find((e) => (e.data as Record<string, unknown>).scanId === id));
    assert.deepEqual(event.data, {
      scanId: id,
      artifactName: "app-1.0.jar",
      sha256: scan.sha256,
      status: "succeeded",
      errorCodes: 25,
      violations: 10,
      violationsByRule: scan.violationsByRule,
      finishedAt: (event.data as Record<string, unknown>).finishedAt,
    });

    // A second scan of the same artifact skips what the registry already holds.
    const again = await rpc("SubmitScan", { artifactName: "app-1.0.jar", content: jar.toString("base64") });
    const second = (await finished(again.body.scan?.id as string)).scan as Record<string, unknown>;
    // 25 entries less 7 with violations and 2 with dynamic messages were registered by the first scan.
    assert.equal(second.alreadyCompliant, 16);

    const metrics = await (await fetch(`${svc.url}/metrics`)).text();
    assert.match(metrics, /^errcode_scans_total\{status="succeeded"[^}]*\} 2$/m);
    assert.match(metrics, /^errcode_classes_scanned_total(\{[^}]*\})? 32$/m);
    assert.match(metrics, /^errcode_violations_total\{rule="message-leak"[^}]*\} 2$/m);
  });

  test("artifact.published events: the sha256 is verified before scanning, and the URL must be allow-listed", async () => {
    const sha = createHash("sha256").update(jar).digest("hex");
    const publish = async (url: string, sha256: string, fields: { artifactName?: string; bases?: string[] } = {}) => {
      const id = crypto.randomUUID();
      await svc.ctx.bus.publish({
        id,
        topic: topics.artifactPublished.name,
        type: topics.artifactPublished.type,
        data: toEventData(
          topics.artifactPublished,
          create(ArtifactPublishedSchema, { url, sha256, artifactName: "app-1.0.jar", system: "accounts", ...fields }),
        ),
      });
      return eventually(
        `scan for event ${id}`,
        async () => {
          const r = await svc.ctx.pool.query("SELECT id, status, error FROM scans WHERE event_id = $1", [id]);
          const row = r.rows[0] as { id: string; status: string; error: string | null } | undefined;
          return row && (row.status === "succeeded" || row.status === "failed") ? row : undefined;
        },
        60_000,
        50,
      );
    };
    const good = await publish(`${repoUrl}/releases/app-1.0.jar`, sha);
    assert.equal(good.status, "succeeded", good.error ?? "");
    assert.equal(await tableCount("error_codes", good.id), 25);

    const tampered = await publish(`${repoUrl}/releases/app-1.0.jar`, "0".repeat(64));
    assert.deepEqual([tampered.status, tampered.error], ["failed", `sha256 mismatch: expected ${"0".repeat(64)}, got ${sha}`]);
    assert.equal(await tableCount("classes", tampered.id), 0);

    const outside = await publish(`${repoUrl}/elsewhere/app-1.0.jar`, sha);
    assert.deepEqual(
      [outside.status, outside.error],
      ["failed", `${repoUrl}/elsewhere/app-1.0.jar is not under an allowed artifact repository`],
    );

    // Checked as a request is. Before, the NUL failed every delivery of the event and no scan said why.
    const badName = await publish(`${repoUrl}/releases/app-1.0.jar`, sha, { artifactName: "app\u0000-1.0.jar" });
    assert.deepEqual([badName.status, badName.error], ["failed", "artifact_name must be a file name ending in .jar, .war, .ear or .zip"]);
    const badBase = await publish(`${repoUrl}/releases/app-1.0.jar`, sha, { bases: ["com.acme.Biz\u0000Exception"] });
    assert.deepEqual(
      [badBase.status, badBase.error],
      ["failed", 'bases: "com.acme.Biz\\u0000Exception" is not a fully-qualified class name'],
    );
    const after = await publish(`${repoUrl}/releases/app-1.0.jar`, sha);
    assert.equal(after.status, "succeeded", "the events behind them are scanned");
  });

  test("a hostile artifact fails with the entry named and leaves no table rows", async () => {
    const bomb = writeZip([...entriesOf(fx.java8), { name: "com/bank/Bomb.class", data: Buffer.alloc(4 * 1024 * 1024) }]);
    const r = await rpc("SubmitScan", { artifactName: "bomb.jar", content: bomb.toString("base64") });
    const id = r.body.scan?.id as string;
    const scan = (await finished(id)).scan as Record<string, unknown>;
    assert.equal(scan.status, "failed");
    assert.match(String(scan.error), /^bomb\.jar!\/com\/bank\/Bomb\.class: compression ratio \d+ exceeds 200/);
    for (const table of ["containers", "classes", "methods", "invocations", "error_codes"])
      assert.equal(await tableCount(table, id), 0, table);
  });

  test("what a scan could not check is kept with it: the reason a base went unchecked, a base not in the artifact, and each site with an unknown code", async () => {
    // A base whose only construction site takes its code from the environment: nothing under it is checked.
    const java = compileJava({
      "dyn/Failure.java":
        "package dyn; public class Failure extends RuntimeException { public Failure(String code, String message) { super(message); } }",
      "dyn/Refused.java": 'package dyn; public class Refused extends Failure { public Refused(String code) { super(code, "refused"); } }',
      "dyn/Gate.java": 'package dyn; public class Gate { void check() { throw new Refused(System.getenv("CODE")); } }',
    });
    try {
      const r = await rpc("SubmitScan", {
        artifactName: "gate-1.0.jar",
        content: jarOf({ dir: java.dir }).toString("base64"),
        // The second base is misspelt: the CLI warns about it, and so does the scan (before, the service said nothing).
        settings: { bases: ["dyn.Failure", "dyn.Failur"] },
      });
      const done = await finished(r.body.scan?.id as string);
      const scan = done.scan as Record<string, unknown>;
      assert.equal(scan.status, "succeeded", String(scan.error));
      assert.deepEqual(scan.notChecked, [
        "base dyn.Failure has 1 subclass but no error code was found under it (1 site with a code not statically known)",
      ]);
      assert.deepEqual(scan.basesNotFound, ["dyn.Failur"]);
      assert.deepEqual(done.dynamicSites, [
        {
          exceptionClass: "dyn.Refused",
          reason: "code not statically known",
          message: "refused",
          location: { artifact: "gate-1.0.jar!/dyn/Gate.class", className: "dyn.Gate", method: "check()V", line: 1 },
        },
      ]);
      // The listing shows it too, and a scan that checked everything has nothing there.
      const listed = (await rpc("ListScans", {}, viewerKey)).body.scans as Array<Record<string, unknown>>;
      assert.deepEqual(listed.find((s) => s.id === scan.id)?.notChecked, scan.notChecked);
      assert.deepEqual(listed.find((s) => s.id === scan.id)?.basesNotFound, ["dyn.Failur"]);
      assert.ok(
        listed.filter((s) => s.artifactName === "app-1.0.jar").every((s) => s.notChecked === undefined && s.basesNotFound === undefined),
      );
    } finally {
      java.cleanup();
    }
  });

  test("a NUL in a class's strings or in an entry's name is kept as the text \\u0000: the scan succeeds, each site listed where it was found", async () => {
    const java = compileJava({
      "nul/Failure.java":
        "package nul; public class Failure extends RuntimeException { private final String code; public Failure(String code, String message) { super(message); this.code = code; } }",
      "nul/Gate.java":
        'package nul; public class Gate { void a() { throw new Failure("NUL0001", "bad\\0message"); } void b() { throw new Failure("NUL\\0002", "Code with a NUL"); } }',
    });
    try {
      // Before: "internal error: unsupported Unicode escape sequence", nothing kept.
      const entries = entriesOf(java.dir).map((e) => (e.name === "nul/Gate.class" ? { ...e, name: "nul/Ga\0te.class" } : e));
      const r = await rpc("SubmitScan", {
        artifactName: "nul-1.0.jar",
        content: writeZip(entries).toString("base64"),
        settings: { bases: ["nul.Failure"] },
      });
      const done = await finished(r.body.scan?.id as string);
      const scan = done.scan as Record<string, unknown>;
      assert.equal(scan.status, "succeeded", String(scan.error));
      const codes = done.errorCodes as Array<{ code: string; message: string; locations: Array<{ artifact: string }> }>;
      assert.deepEqual(
        codes.map((c) => [c.code, c.message, c.locations[0]!.artifact]),
        [["NUL0001", "bad\\u0000message", "nul-1.0.jar!/nul/Ga\\u0000te.class"]],
      );
      // Not shaped like a code, so not taken for one: listed as a site whose code is not known, with the text it had.
      assert.deepEqual(
        (done.dynamicSites as Array<{ reason: string; message: string; location: { method: string } }>).map((x) => [
          x.reason,
          x.message,
          x.location.method,
        ]),
        [["no code argument", "NUL\\u00002", "b()V"]],
      );
    } finally {
      java.cleanup();
    }
  });

  test("bad requests are refused with a reason; viewers cannot submit", async () => {
    const outside = await rpc("SubmitScan", { url: "https://example.org/app.jar" });
    assert.equal(outside.status, 400);
    assert.match(String(outside.body.message), /url must be under an allowed artifact repository/);
    assert.match(String((await rpc("SubmitScan", { artifactName: "a.jar" })).body.message), /give either content or url/);
    assert.match(
      String((await rpc("SubmitScan", { artifactName: "../a.jar", content: "AA==" })).body.message),
      /artifact_name must be a file name/,
    );
    assert.match(
      String((await rpc("SubmitScan", { artifactName: "a.jar", content: "AA==", sha256: "abc" })).body.message),
      /sha256 must be 64 hexadecimal/,
    );
    assert.match(
      String((await rpc("SubmitScan", { artifactName: "a.jar", content: "AA==", settings: { bases: ["not a class"] } })).body.message),
      /not a fully-qualified class name/,
    );
    assert.equal((await rpc("SubmitScan", { artifactName: "a.jar", content: "AA==" }, viewerKey)).status, 403);
    assert.equal((await rpc("GetScan", { id: crypto.randomUUID() }, viewerKey)).status, 404);
  });
});
