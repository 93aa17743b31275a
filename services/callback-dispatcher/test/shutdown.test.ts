import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, test } from "node:test";
import { eventually, testRedis } from "@opsplane/testing";
import { Redis } from "ioredis";
import pg from "pg";
import { startDispatcher } from "./helpers/dispatcher.js";
import { setUpPay } from "./helpers/pay-route.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

const shutdownTimeoutMs = 4_000;

// A third party that gave up on a callback while its routing waited (Redis cold, the PostgreSQL record
// locked) left a connection the HTTP server never saw idle again: close() waited for its keep-alive
// timeout (about 70 s), past the shutdown bound, so the process was killed before its close hooks
// wrote the decisions still queued.
test("a caller that left while its callback was being routed does not hold the shutdown", async () => {
  const redis = testRedis();
  const direct = new Redis(redis.url);
  const prod = await startSignedStub("prod", "s");
  const sit = await startSignedStub("sit", "s");
  const d = await startDispatcher({
    REDIS_KEY_PREFIX: redis.prefix,
    REGISTRY_RECORD_TIMEOUT_MS: "10000",
    SHUTDOWN_TIMEOUT_MS: String(shutdownTimeoutMs),
  });
  const locker = new pg.Client({ connectionString: d.databaseUrl });
  after(async () => {
    await locker.end().catch(() => {});
    await d.close();
    await prod.close();
    await sit.close();
    direct.disconnect();
  });
  await setUpPay(d.api, { prod: prod.url, sit: sit.url }, ["R1"]);

  // Redis cold (its data lost, the warm marker with it) and the record locked: the lookup waits.
  await locker.connect();
  await locker.query("BEGIN");
  await locker.query('LOCK TABLE "callback_dispatcher".registrations IN ACCESS EXCLUSIVE MODE');
  const keys = await direct.keys(`${redis.prefix}*`);
  if (keys.length) await direct.del(...keys);
  const body = Buffer.from(JSON.stringify({ orderNo: "R1" }));
  const gaveUp = await fetch(`${d.url}/notify/pay`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-signature": sign("s", body) },
    body,
    signal: AbortSignal.timeout(300),
  }).catch((err: Error) => err);
  assert.equal((gaveUp as Error).name, "TimeoutError");
  await locker.query("ROLLBACK");
  // Routed once the record answered: the callback reached sit, after its caller had left.
  await eventually("the callback to reach sit", () => sit.received.length === 1);

  const started = performance.now();
  await d.svc.close();
  const tookMs = performance.now() - started;
  assert.ok(tookMs < shutdownTimeoutMs, `close() took ${Math.round(tookMs)} ms (shutdown bound ${shutdownTimeoutMs} ms)`);
  const check = new pg.Client({ connectionString: d.databaseUrl });
  await check.connect();
  const { rows } = await check
    .query<{ reason: string; target_env: string }>("SELECT reason, target_env FROM callback_dispatcher.decisions WHERE object_id = 'R1'")
    .finally(() => check.end());
  assert.deepEqual(rows, [{ reason: "registered", target_env: "sit" }]);
});

// Connections still open at half the shutdown bound are closed; the callbacks on them went on being
// forwarded, and the environment's late answer came after the decision log's last flush: their decisions
// were lost, with no line in the log and exit code 0 (a trial: three production callbacks to an environment
// answering in 8 s, SIGTERM after 1 s).
test("callbacks still waiting for their environment at shutdown are stopped and their decisions recorded", async () => {
  const waiting: http.ServerResponse[] = [];
  let aborted = 0;
  const slowProd = http.createServer((req, res) => {
    req.resume();
    req.on("close", () => {
      if (!res.writableEnded) aborted++;
    });
    waiting.push(res); // never answered
  });
  await new Promise<void>((resolve) => slowProd.listen(0, "127.0.0.1", resolve));
  const sit = await startSignedStub("sit", "s");
  const d = await startDispatcher({ SHUTDOWN_TIMEOUT_MS: String(shutdownTimeoutMs), UPSTREAM_TIMEOUT_MS: "30000" });
  after(async () => {
    await d.close();
    slowProd.closeAllConnections();
    await new Promise((resolve) => slowProd.close(resolve));
    await sit.close();
  });
  await setUpPay(d.api, { prod: `http://127.0.0.1:${(slowProd.address() as AddressInfo).port}`, sit: sit.url }, ["T-1"]);

  const callers = ["P-1", "P-2", "P-3"].map((orderNo) => {
    const body = Buffer.from(JSON.stringify({ orderNo }));
    return fetch(`${d.url}/notify/pay`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-signature": sign("s", body), "x-request-id": `late-${orderNo}` },
      body,
    }).catch((err: Error) => err);
  });
  await eventually("production to receive the three callbacks", () => waiting.length === 3);
  const started = performance.now();
  await d.svc.close();
  const tookMs = performance.now() - started;
  assert.ok(tookMs < shutdownTimeoutMs, `close() took ${Math.round(tookMs)} ms (shutdown bound ${shutdownTimeoutMs} ms)`);
  for (const caller of await Promise.all(callers)) assert.ok(caller instanceof Error, "the caller's connection was closed, unanswered");

  const check = new pg.Client({ connectionString: d.databaseUrl });
  await check.connect();
  const { rows } = await check
    .query<{ request_id: string; status: number; target_env: string; error: string }>(
      "SELECT request_id, status, target_env, error FROM callback_dispatcher.decisions ORDER BY request_id",
    )
    .finally(() => check.end());
  assert.deepEqual(
    rows.map((r) => [r.request_id, r.status, r.target_env]),
    [
      ["late-P-1", 502, "prod"],
      ["late-P-2", 502, "prod"],
      ["late-P-3", 502, "prod"],
    ],
  );
  // Production had them: the record says it may (its third party retries, and production may see it twice).
  for (const r of rows)
    assert.match(
      r.error,
      /^prod \(http:\/\/127\.0\.0\.1:\d+\): not answered before the dispatcher shut down; .*; it was already on its way: the environment may have received it$/,
    );
  await eventually("production's three requests to be aborted", () => aborted === 3);
});

// Released by shutdown, a held callback found its connection closed, by the dispatcher itself, and was recorded
// 499 as if its caller had left (a trial).
test("a callback still held at shutdown is not sent, and its decision says the dispatcher shut down", async () => {
  const prod = await startSignedStub("prod", "s");
  const sit = await startSignedStub("sit", "s");
  const d = await startDispatcher({ SHUTDOWN_TIMEOUT_MS: String(shutdownTimeoutMs) });
  after(async () => {
    await d.close();
    await prod.close();
    await sit.close();
  });
  await setUpPay(d.api, { prod: prod.url, sit: sit.url }, ["T-1"]);
  const held = await d.api("PUT", "/_dispatcher/v1/rules/held", {
    interface: { pattern: "/api/held", id: { kind: "json", expr: "orderNo" } },
    callback: { pattern: "/notify/held", id: { kind: "json", expr: "orderNo" } },
    ttlSeconds: 600,
    holdMs: 3_000,
  });
  assert.equal(held.status, 200, JSON.stringify(held.body));
  const body = Buffer.from(JSON.stringify({ orderNo: "H-1" }));
  const caller = fetch(`${d.url}/notify/held`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-signature": sign("s", body), "x-request-id": "held-at-shutdown" },
    body,
  }).catch((err: Error) => err);
  await eventually("the callback to be held", async () =>
    /callback_dispatcher_held_callbacks(\{[^}]*\})? 1\b/.test(await (await fetch(`${d.url}/metrics`)).text()),
  );
  await d.svc.close();
  assert.ok((await caller) instanceof Error, "its connection was closed, unanswered");
  const check = new pg.Client({ connectionString: d.databaseUrl });
  await check.connect();
  const { rows } = await check
    .query<{ status: number; error: string; detail: string }>(
      "SELECT status, error, detail FROM callback_dispatcher.decisions WHERE request_id = 'held-at-shutdown'",
    )
    .finally(() => check.end());
  assert.equal(rows.length, 1);
  assert.equal(rows[0]!.status, 502);
  assert.match(rows[0]!.error, /: not answered before the dispatcher shut down/);
  // Before, it read as if production had answered a caller who left, after a hold that ran its course (a trial).
  assert.doesNotMatch(rows[0]!.error, /may have received it|the caller closed/);
  assert.match(rows[0]!.detail, /^held \d+ ms, cut short by shutdown; no registration came by then$/);
  assert.equal(prod.received.length + sit.received.length, 0, "not sent");
});
