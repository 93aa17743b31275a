import assert from "node:assert/strict";
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
