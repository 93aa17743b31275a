// The loan demo's SDK terminal as monitor-center and control-center use it: a dial test answered
// from the app's own state (the answer proves it ran for this challenge, and a broken database
// shows in it), unsigned and replayed calls refused, a self-test report with the interfaces'
// traffic, and a graceful shutdown command: the process stops accepting, finishes the request in
// flight, goes offline at config-center and exits 0.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { dialAnswer, signTerminalRequest } from "@opsplane/sdk";
import { createTestDatabase, eventually, setDatabaseOutage, type TestDatabase } from "@opsplane/testing";
import pg from "pg";
import { demoAppId } from "../src/seed.js";
import {
  application,
  type DemoApp,
  instanceIdOf,
  instancesOf,
  type Json,
  keys,
  request,
  serving,
  startDemoApp,
  startPlatform,
  terminal,
  terminalKey,
} from "./harness.js";

describe("the loan demo's terminal: dial tests, reports and a graceful shutdown", () => {
  let platform: Awaited<ReturnType<typeof startPlatform>>;
  let loansDb: TestDatabase;
  let app: DemoApp;
  let instanceId: string;

  before(async () => {
    loansDb = await createTestDatabase();
    platform = await startPlatform({ redis: false, databaseUrl: loansDb.url });
    app = await serving(startDemoApp(platform.url, { OPSPLANE_REPORT_INTERVAL_MS: "1000" }));
    instanceId = await instanceIdOf(platform.url, app);
  });
  after(async () => {
    await app?.stop();
    await platform?.close();
    await loansDb?.drop();
  });

  test("a dial test is answered from the loan book itself, for this challenge; a broken database fails it", async () => {
    assert.equal((await request(app, "POST", "/loans", application)).status, 201);
    const challenge = randomBytes(16).toString("hex");
    const dial = await terminal(app, instanceId, "POST", "/opsplane/v1/dial", { challenge });
    assert.equal(dial.status, 200, JSON.stringify(dial.body));
    assert.equal(dial.body.challenge, challenge);
    const [check] = dial.body.checks;
    assert.equal(check.name, "loan-book");
    assert.equal(check.ok, true);
    assert.deepEqual(JSON.parse(check.detail), {
      book: `postgresql ${new URL(loansDb.url).host}${new URL(loansDb.url).pathname}`,
      loans: 1,
      rateTiers: 3,
    });
    assert.equal(
      dial.body.answer,
      dialAnswer(challenge, instanceId, dial.body.checks),
      "the answer is computed from this challenge and the checks",
    );

    await setDatabaseOutage(loansDb.url, true);
    try {
      const failing = await terminal(app, instanceId, "POST", "/opsplane/v1/dial", { challenge: randomBytes(16).toString("hex") });
      assert.equal(failing.body.checks[0].ok, false);
      assert.match(failing.body.checks[0].detail, /loan book unavailable/);
    } finally {
      await setDatabaseOutage(loansDb.url, false);
    }
  });

  test("scripts/terminal-keys.ts finds the instance by its service port, signs a dial test and verifies its answer", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "terminal-keys-"));
    writeFileSync(path.join(dataDir, "viewer-key"), keys.viewer);
    writeFileSync(path.join(dataDir, "terminal-monitor.pem"), terminalKey.privateKeyPem, { mode: 0o600 });
    const script = path.join(__dirname, "..", "..", "..", "scripts", "terminal-keys.ts");
    const env = { ...process.env, OPSPLANE_CONFIG_URL: platform.url, OPSPLANE_DATA_DIR: dataDir };
    const run = (...args: string[]) => promisify(execFile)(process.execPath, ["--import", "tsx", script, ...args], { env });
    try {
      const dial = await run("call", "--key-id", "monitor", "--app", demoAppId, "--port", String(app.port), "dial");
      assert.equal(dial.stderr.trim(), `instance ${instanceId} (terminal port ${app.terminalPort})`);
      assert.match(dial.stdout, /^200 \{.*"name":"loan-book","ok":true/);
      assert.match(dial.stdout, /\nanswer verified: computed by the instance for this challenge\n$/);
      await assert.rejects(run("call", "--key-id", "monitor", "--app", demoAppId, "--port", "1", "status"), (err: { stderr: string }) =>
        err.stderr.includes(`no online ${demoAppId} instance serves on port 1 (online: ${app.port})`),
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("an unsigned dial test and a replayed one are refused, naming why", async () => {
    const unsigned = await fetch(`${app.terminalUrl}/opsplane/v1/dial`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ challenge: randomBytes(16).toString("hex") }),
    });
    assert.equal(unsigned.status, 401);
    assert.match(((await unsigned.json()) as { message: string }).message, /unsigned request/);

    const body = JSON.stringify({ challenge: randomBytes(16).toString("hex") });
    const headers = {
      ...signTerminalRequest({
        keyId: "monitor",
        privateKey: terminalKey.privateKeyPem,
        method: "POST",
        path: "/opsplane/v1/dial",
        instanceId,
        body,
      }),
      "content-type": "application/json",
    };
    const send = () => fetch(`${app.terminalUrl}/opsplane/v1/dial`, { method: "POST", headers, body });
    assert.equal((await send()).status, 200);
    const replay = await send();
    assert.equal(replay.status, 401);
    assert.match(((await replay.json()) as { message: string }).message, /already used: a replayed request/);
  });

  test("the self-test report counts the interfaces' requests in their latency buckets", async () => {
    const loan = (await request(app, "POST", "/loans", application)).body;
    assert.equal((await request(app, "GET", `/loans/${loan.id}`)).status, 200);
    // Reports come every OPSPLANE_REPORT_INTERVAL_MS (1 s here), each covering the time since the last.
    const report = await eventually("a report with the query in it", async () => {
      const r = await terminal(app, instanceId, "GET", "/opsplane/v1/report");
      const query = r.body.interfaces?.find((i: Json) => i.code === "loan.query");
      return Number(query?.requests) >= 1 && r.body;
    });
    assert.equal(report.app, "loan-demo");
    assert.equal(report.instanceId, instanceId);
    assert.deepEqual(report.interfaces.map((i: Json) => i.code).sort(), ["loan.apply", "loan.query", "loan.repay"]);
    const query = report.interfaces.find((i: Json) => i.code === "loan.query");
    assert.equal(Number(query.withinNormal) + Number(query.withinTolerable) + Number(query.beyond), Number(query.requests));
    assert.equal(query.errors, "0");
    assert.ok(report.runtime.heapLimitBytes > 0);
    assert.deepEqual(
      report.pools.map((p: { name: string; kind: string }) => [p.name, p.kind]),
      [["db.main", "connection"]],
    );
  });

  test("a shutdown command: no new connections, the application in flight still finishes, offline at config-center, exit 0", async () => {
    const holder = new pg.Client({ connectionString: loansDb.url });
    await holder.connect();
    await holder.query("BEGIN");
    await holder.query("LOCK TABLE loan_demo.loans IN ACCESS EXCLUSIVE MODE");
    const inFlight = request(app, "POST", "/loans", application);
    let released = false;
    try {
      await eventually("the application to wait for the table", async () => {
        const { rows } = await holder.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = 'loan-demo'",
        );
        return rows[0].n > 0;
      });
      const answer = await terminal(app, instanceId, "POST", "/opsplane/v1/commands", {
        kind: "shutdown",
        graceMs: 20_000,
        requestedBy: "test",
      });
      assert.equal(answer.status, 202, JSON.stringify(answer.body));
      assert.equal(answer.body.kind, "shutdown");
      await eventually("new connections refused", async () => (await fetch(`${app.url}/healthz`).catch(() => undefined)) === undefined);
      assert.equal(app.proc.exitCode, null, "still running: the application is in flight");
      await holder.query("COMMIT");
      released = true;
      const finished = await inFlight;
      assert.equal(finished.status, 201, JSON.stringify(finished.body));
      assert.deepEqual(await app.exited, { code: 0, signal: null });
      assert.ok(!app.lines.some((l) => l.includes("connections are cut")), "it exited once the request finished, not at the grace's end");
    } finally {
      if (!released) await holder.query("ROLLBACK");
      await holder.end();
    }
    const [instance] = await instancesOf(platform.url);
    await eventually("offline at config-center", async () => (await instancesOf(platform.url)).every((i) => i.state === "offline"));
    assert.equal(instance.instanceId, instanceId);
  });
});
