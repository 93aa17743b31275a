// A scan runs in a worker thread held to a heap and a time limit, and a scan whose replica keeps
// dying while running it is not run again without end: an artifact that is too much for the
// scanner fails its own scan with a reason, and the service goes on.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type RunningService, sha256Hex, startService } from "@opsplane/platform";
import { createTestDatabase, eventually, type TestDatabase } from "@opsplane/testing";
import { definition } from "../src/service.js";
import { type CompiledFixtures, compileFixtures, compileJava, jarOf } from "./support/java.js";
import { writeZip } from "./support/zip-writer.js";

const operatorKey = "bounds-operator-key-0123456789";
const BASE = "com.bank.core.BizException";

/**
 * A 7 KB jar whose one method is too much for a 64 MiB scan: a 300-way switch in a method that
 * declares the JVM's most locals (65,535), so that following each case holds a copy of them all.
 * Few classes and methods, so the scan writes almost no table rows before it runs out (thousands
 * of copies of a class did the same only after writing 250,000 rows, a minute on a loaded machine).
 */
function wideSwitchJar(): Buffer {
  const cases = Array.from({ length: 300 }, (_, i) => `case ${i}: return new Failure("GEN${i}", "case ${i}");`).join(" ");
  const java = compileJava({
    "gen/Failure.java":
      "package gen; public class Failure extends RuntimeException { public Failure(String code, String message) { super(message); } }",
    "gen/Generated.java": `package gen; public class Generated { static Failure pick(int i) { switch (i) { ${cases} default: return null; } } }`,
  });
  try {
    const generated = readFileSync(path.join(java.dir, "gen/Generated.class"));
    // pick(int)'s code starts iload_0, tableswitch; its Code attribute's max_locals (1) is 6 bytes before.
    const code = generated.indexOf(Buffer.from([0x1a, 0xaa]));
    assert.ok(code > 0 && generated.readUInt16BE(code - 6) === 1, "pick(int) found in Generated.class");
    generated.writeUInt16BE(0xffff, code - 6);
    return writeZip([
      { name: "gen/Failure.class", data: readFileSync(path.join(java.dir, "gen/Failure.class")) },
      { name: "gen/Generated.class", data: generated },
    ]);
  } finally {
    java.cleanup();
  }
}

describe("scan bounds", () => {
  let fx: CompiledFixtures;
  let db: TestDatabase;
  let svc: RunningService;
  let repo: http.Server;
  let repoUrl: string;
  const requested: string[] = [];
  let heavy: Buffer;
  let jar: Buffer;

  const submit = async (body: unknown) => {
    const res = await fetch(`${svc.url}/ops.v1.ErrcodeScanService/SubmitScan`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${operatorKey}` },
      body: JSON.stringify(body),
    });
    assert.equal(res.status, 200);
    return ((await res.json()) as { scan: { id: string } }).scan.id;
  };
  const row = async (id: string) =>
    (await svc.ctx.pool.query<{ status: string; error: string | null; attempts: number }>("SELECT * FROM scans WHERE id = $1", [id]))
      .rows[0];
  const finished = (id: string) =>
    eventually(
      `scan ${id} finished`,
      async () => {
        const r = await row(id);
        return r && (r.status === "succeeded" || r.status === "failed") ? r : undefined;
      },
      60_000,
      50,
    );

  before(async () => {
    fx = compileFixtures();
    jar = jarOf({ dir: fx.java8 });
    heavy = wideSwitchJar();
    repo = http.createServer((req, res) => {
      requested.push(req.url ?? "");
      if (req.url === "/releases/heavy-1.0.jar") res.end(heavy);
      else if (req.url === "/releases/app-1.0.jar") res.end(jar);
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
      AUTH_API_KEYS: `ops:operator:${sha256Hex(operatorKey)}`,
      ERRCODE_BASES: BASE,
      ERRCODE_ARTIFACT_URL_PREFIXES: `${repoUrl}/releases/`,
      ERRCODE_SCAN_MAX_HEAP_MB: "64",
      ERRCODE_SCAN_LEASE_MS: "2000",
    });
  });

  after(async () => {
    await svc?.close();
    await db?.drop();
    repo?.close();
    fx?.cleanup();
  });

  test("an artifact that exhausts its scan's memory fails that scan once, with the reason, and the service scans on", async () => {
    const id = await submit({ url: `${repoUrl}/releases/heavy-1.0.jar`, settings: { bases: ["gen.Failure"] } });
    const failed = await finished(id);
    assert.equal(failed.status, "failed");
    assert.equal(failed.error, "the scan ran out of memory (its heap is limited to 64 MiB)");
    assert.equal(failed.attempts, 1);
    const tables = await svc.ctx.pool.query("SELECT count(*)::int AS n FROM classes WHERE scan_id = $1", [id]);
    assert.equal(tables.rows[0].n, 0);

    assert.equal((await fetch(`${svc.url}/readyz`)).status, 200);
    const next = await finished(await submit({ artifactName: "app-1.0.jar", content: jar.toString("base64") }));
    assert.equal(next.status, "succeeded", next.error ?? "");
  });

  test("a scan whose replica died running it each time is failed, not run again; one with attempts left is run", async () => {
    const insert = async (attempts: number) => {
      const id = crypto.randomUUID();
      await svc.ctx.pool.query(
        `INSERT INTO scans (id, status, source, artifact_name, artifact_url, bases, owner, lease_expires_at, attempts)
         VALUES ($1, 'running', 'url', 'app-1.0.jar', $2, $3, 'dead-replica', now() - interval '1 minute', $4)`,
        [id, `${repoUrl}/releases/app-1.0.jar`, [BASE], attempts],
      );
      return id;
    };
    const before = requested.filter((u) => u === "/releases/app-1.0.jar").length;
    const exhausted = await insert(3);
    const retried = await insert(1);
    const gaveUp = await finished(exhausted);
    assert.equal(gaveUp.status, "failed");
    assert.equal(
      gaveUp.error,
      "the scan was started 3 times and the replica running it stopped each time before it finished; not run again",
    );
    const again = await finished(retried);
    assert.deepEqual([again.status, again.attempts], ["succeeded", 2]);
    // Only the scan with attempts left downloaded its artifact.
    assert.equal(requested.filter((u) => u === "/releases/app-1.0.jar").length, before + 1);
  });
});
