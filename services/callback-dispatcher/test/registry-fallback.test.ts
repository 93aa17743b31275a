import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type CuttableProxy, eventually, startCuttableProxy, testRedis } from "@opsplane/testing";
import { Redis } from "ioredis";
import pg from "pg";
import { operatorKey, startDispatcher, viewerKey } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

// Redis is shared with other engineers: this test touches only the keys under its own prefix, and
// cuts its own proxy in front of Redis rather than Redis itself.
const shared = testRedis();
const sharedUrl = new URL(shared.url);
// A request answered later than this counts as hung: a healthy lookup or registration takes milliseconds.
const answerWithinMs = 2_000;
// The record's own deadline here; PostgreSQL's pool query timeout is set out of reach, so only it can end a stalled lookup.
const recordTimeoutMs = 300;

let proxy: CuttableProxy | undefined;
let d: Awaited<ReturnType<typeof startDispatcher>> | undefined;
let prod: Awaited<ReturnType<typeof startSignedStub>> | undefined;
let sit: Awaited<ReturnType<typeof startSignedStub>> | undefined;
let uat: Awaited<ReturnType<typeof startSignedStub>> | undefined;
let direct: Redis | undefined;

/** The third party's callback for `orderNo`. */
function callBack(orderNo: string, requestId?: string): Promise<Response> {
  const body = Buffer.from(JSON.stringify({ orderNo }));
  return fetch(`${d!.url}/notify/pay`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-signature": sign("s", body),
      ...(requestId ? { "x-request-id": requestId } : {}),
    },
    body,
    signal: AbortSignal.timeout(answerWithinMs),
  });
}

/** Where the callback for `orderNo` went, by the environment that answered it. */
async function routeOf(orderNo: string, requestId?: string): Promise<string> {
  const res = await callBack(orderNo, requestId);
  assert.equal(res.status, 200);
  await res.arrayBuffer();
  return res.headers.get("x-served-by") ?? "";
}

async function register(env: string, id: string): Promise<number> {
  const res = await fetch(`${d!.url}/_dispatcher/v1/registrations`, {
    method: "POST",
    headers: { authorization: `Bearer ${operatorKey}`, "content-type": "application/json" },
    body: JSON.stringify({ env, registrations: [{ rule: "pay", id }] }),
    signal: AbortSignal.timeout(answerWithinMs),
  });
  await res.arrayBuffer();
  return res.status;
}

/** What FLUSHDB, a restart without persistence or a failover to an empty replica does, to this test's keys only. */
// All of this test's keys at once, as a restart or FLUSHDB loses them: a key-by-key SCAN could
// leave a warm in progress half-deleted, a state real data loss never produces.
const deleteAllOfPrefix = "local keys = redis.call('KEYS', ARGV[1]) for _, k in ipairs(keys) do redis.call('DEL', k) end return #keys";

async function loseRedisData(): Promise<void> {
  const deleted = (await direct!.eval(deleteAllOfPrefix, 0, `${shared.prefix}*`)) as number;
  assert.ok(deleted > 0, "the registrations were in Redis before");
}

/** Runs `fn` while another session holds the record's table: every query on it waits on the lock (PostgreSQL stalled). */
async function whileRegistrationsLocked(fn: () => Promise<void>): Promise<void> {
  const locker = new pg.Client({ connectionString: d!.databaseUrl });
  await locker.connect();
  try {
    await locker.query("BEGIN");
    await locker.query('LOCK TABLE "callback_dispatcher".registrations IN ACCESS EXCLUSIVE MODE');
    await fn();
  } finally {
    await locker.query("ROLLBACK");
    await locker.end();
  }
}

before(async () => {
  direct = new Redis(shared.url);
  proxy = await startCuttableProxy(sharedUrl.hostname, Number(sharedUrl.port || 6379));
  prod = await startSignedStub("prod", "s");
  sit = await startSignedStub("sit", "s");
  uat = await startSignedStub("uat", "s");
  d = await startDispatcher({
    REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
    REDIS_KEY_PREFIX: shared.prefix,
    REGISTRY_RECORD_TIMEOUT_MS: String(recordTimeoutMs),
    DATABASE_QUERY_TIMEOUT_MS: "600000",
  });
  await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true });
  // The ids the test environments may claim: any other is production's, registry or not.
  const idPatterns = { "*": "R[0-9]+|MOVED|STALLED" };
  await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url, idPatterns });
  await d.api("PUT", "/_dispatcher/v1/environments/uat", { baseUrl: uat.url, idPatterns });
  await d.api("PUT", "/_dispatcher/v1/rules/pay", {
    interface: { pattern: "/api/pay", id: { kind: "json", expr: "orderNo" } },
    callback: { pattern: "/notify/pay", id: { kind: "json", expr: "orderNo" } },
    ttlSeconds: 600,
  });
  assert.equal(await register("sit", "R1"), 200);
  assert.equal(await register("sit", "MOVED"), 200);
});

// Whatever happened above, nothing is left running: the service closes even with its Redis cut off.
after(async () => {
  await d?.close();
  await proxy?.close();
  await prod?.close();
  await sit?.close();
  await uat?.close();
  if (direct) {
    for await (const keys of direct.scanStream({ match: `${shared.prefix}*`, count: 500 }) as AsyncIterable<string[]>) {
      if (keys.length) await direct.del(...keys);
    }
    direct.disconnect();
  }
});

test("Redis losing its data does not send registered callbacks to production, and Redis is re-warmed from the record", async () => {
  assert.equal(await routeOf("R1"), "sit");
  await loseRedisData();
  assert.equal(await routeOf("R1"), "sit");
  assert.equal(await routeOf("NEVER-REGISTERED"), "prod");
  await eventually("R1 back in Redis", async () => (await direct!.exists(`${shared.prefix}reg:pay:R1`)) === 1);
  assert.equal(await routeOf("R1"), "sit");
  // Lost again once warm: the loss is noticed again, not trusted.
  await loseRedisData();
  assert.equal(await routeOf("R1"), "sit");
});

test("with Redis partitioned away, callbacks are routed from the PostgreSQL record without waiting for Redis", async () => {
  proxy!.blackhole();
  assert.equal(await routeOf("R1"), "sit");
  assert.equal(await routeOf("NEVER-REGISTERED"), "prod");
});

test("with Redis partitioned away, a registration written to PostgreSQL answers 200 and routes", async () => {
  assert.equal(await register("sit", "R2"), 200);
  assert.equal(await routeOf("R2"), "sit");
  // The same id created again in uat during the outage: its callbacks follow it.
  assert.equal(await register("uat", "MOVED"), 200);
  assert.equal(await routeOf("MOVED"), "uat");
});

test("with Redis partitioned away, /readyz stays 200, degraded naming redis, and answers within a probe's 1 s timeout", async () => {
  const started = performance.now();
  const res = await fetch(`${d!.url}/readyz`, { signal: AbortSignal.timeout(5_000) });
  const tookMs = performance.now() - started;
  const body = (await res.json()) as { status: string; failing: string[]; degraded: string[]; checks: Record<string, string> };
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.status, "degraded");
  assert.deepEqual(body.failing, []);
  assert.deepEqual(body.degraded, ["redis"]);
  assert.match(body.checks.redis!, /no answer within/);
  assert.ok(tookMs < 1_000, `answered in ${Math.round(tookMs)} ms`);
});

test("once Redis is back, it catches up with what was registered during the outage", async () => {
  proxy!.heal();
  await eventually("R2 in Redis", async () => (await direct!.exists(`${shared.prefix}reg:pay:R2`)) === 1);
  // Redis still held MOVED → sit from before the outage: the record's newer uat wins.
  await eventually("MOVED in Redis as uat", async () => (await direct!.get(`${shared.prefix}reg:pay:MOVED`))?.endsWith("uat"));
  assert.equal(await routeOf("R2"), "sit");
  assert.equal(await routeOf("MOVED"), "uat");
  assert.equal(await routeOf("R1"), "sit");
});

test("Redis cold or cut off while PostgreSQL stalls: callbacks are answered within the record's deadline, a test environment's id never by production, and route again once it answers", async () => {
  // Another session holds the record's table: every lookup from the record waits on the lock.
  await whileRegistrationsLocked(async () => {
    const answeredInTime = async (orderNo: string, requestId: string) => {
      const started = performance.now();
      const res = await callBack(orderNo, requestId);
      const tookMs = performance.now() - started;
      const body = await res.text();
      assert.ok(tookMs < recordTimeoutMs + 1_000, `answered in ${Math.round(tookMs)} ms`);
      const decision = await eventually(`the decision of ${requestId}`, async () => {
        const { body } = await d!.api("GET", `/_dispatcher/v1/decisions?requestId=${requestId}`, undefined, viewerKey);
        return (body.decisions as Array<{ reason: string; detail: string; targetEnv: string | null }>)[0];
      });
      assert.equal(decision.reason, "registry_unavailable");
      assert.match(
        decision.detail,
        new RegExp(`PostgreSQL record did not answer within ${recordTimeoutMs} ms \\(REGISTRY_RECORD_TIMEOUT_MS\\)`),
      );
      return { status: res.status, servedBy: res.headers.get("x-served-by"), body, targetEnv: decision.targetEnv };
    };
    const claimable = async (requestId: string) => {
      // R1 may be sit's (it is): production must not get it; the platform retries it later.
      const r = await answeredInTime("R1", requestId);
      assert.deepEqual([r.status, r.servedBy, r.targetEnv ?? ""], [503, null, ""]);
      assert.match(r.body, /could not be routed yet; retry later/);
      assert.doesNotMatch(r.body, /PostgreSQL|REGISTRY_RECORD/, "the third party is not told the registry's internals");
    };
    const productions = async (requestId: string) => {
      // An id no test environment may claim is production's whatever the registry says: it is not looked up,
      // so it does not wait on a record that cannot answer (before, it waited out the record's deadline).
      const started = performance.now();
      const res = await callBack("PRD-1", requestId);
      const tookMs = performance.now() - started;
      await res.arrayBuffer();
      assert.deepEqual([res.status, res.headers.get("x-served-by")], [200, "prod"]);
      assert.ok(tookMs < recordTimeoutMs, `answered in ${Math.round(tookMs)} ms, not after the record's ${recordTimeoutMs} ms`);
      const decision = await eventually(`the decision of ${requestId}`, async () => {
        const { body } = await d!.api("GET", `/_dispatcher/v1/decisions?requestId=${requestId}`, undefined, viewerKey);
        return (body.decisions as Array<{ reason: string; detail: string }>)[0];
      });
      assert.deepEqual(
        [decision.reason, decision.detail],
        ["not_registered", "no test environment may claim this id (their idPatterns); not looked up"],
      );
    };
    // Redis cold: its data lost (the warm that starts waits on the lock too).
    await loseRedisData();
    await claimable("stalled-cold-1");
    await productions("stalled-cold-2");
    // Redis not answering at all.
    proxy!.blackhole();
    await claimable("stalled-cut-1");
    await productions("stalled-cut-2");
  });
  assert.equal(await routeOf("R1"), "sit");
  assert.equal(await routeOf("NEVER-REGISTERED"), "prod");
  proxy!.heal();
  await eventually("Redis warm again", async () => (await direct!.exists(`${shared.prefix}registry:warm`)) === 1);
  assert.equal(await routeOf("R1"), "sit");
});

test("PostgreSQL stalling: reading a registration on the operator API answers 503 within the record's deadline, and works again once it answers", async () => {
  const read = () =>
    fetch(`${d!.url}/_dispatcher/v1/registrations/pay/R1`, {
      headers: { authorization: `Bearer ${viewerKey}` },
      signal: AbortSignal.timeout(answerWithinMs),
    });
  await whileRegistrationsLocked(async () => {
    // Redis warm (only who registered it and when come from the record), then cold (where it routes too).
    for (const redis of ["warm", "cold"]) {
      if (redis === "cold") await loseRedisData();
      const started = performance.now();
      const res = await read();
      const tookMs = performance.now() - started;
      const body = (await res.json()) as { error: string; message: string };
      assert.equal(res.status, 503, `Redis ${redis}: ${JSON.stringify(body)}`);
      assert.ok(tookMs < recordTimeoutMs + 1_000, `Redis ${redis}: answered in ${Math.round(tookMs)} ms`);
      assert.equal(res.headers.get("retry-after"), "5");
      assert.equal(body.error, "unavailable");
      assert.match(
        body.message,
        new RegExp(`PostgreSQL record did not answer within ${recordTimeoutMs} ms \\(REGISTRY_RECORD_TIMEOUT_MS\\)`),
      );
    }
  });
  const res = await read();
  assert.equal(res.status, 200);
  const body = (await res.json()) as { env: string; registeredBy: string };
  assert.deepEqual([body.env, body.registeredBy], ["sit", "key:ops"]);
});

test("PostgreSQL stalling: a registration answers 503 within the record's deadline, stores nothing, and is stored once it answers", async () => {
  const post = (id: string) =>
    fetch(`${d!.url}/_dispatcher/v1/registrations`, {
      method: "POST",
      headers: { authorization: `Bearer ${operatorKey}`, "content-type": "application/json" },
      body: JSON.stringify({ env: "sit", registrations: [{ rule: "pay", id }] }),
      signal: AbortSignal.timeout(answerWithinMs),
    });
  await whileRegistrationsLocked(async () => {
    const started = performance.now();
    const res = await post("STALLED");
    const tookMs = performance.now() - started;
    const body = (await res.json()) as { error: string; message: string };
    assert.equal(res.status, 503, JSON.stringify(body));
    assert.ok(tookMs < recordTimeoutMs + 1_000, `answered in ${Math.round(tookMs)} ms`);
    assert.equal(res.headers.get("retry-after"), "5");
    assert.equal(body.error, "unavailable");
    assert.equal(
      body.message,
      `registrations not stored: the PostgreSQL record did not answer within ${recordTimeoutMs} ms (REGISTRY_RECORD_TIMEOUT_MS); retry later`,
    );
  });
  // All or nothing: neither the registration nor its audit row was written.
  const { rows } = await d!.svc.ctx.pool.query(
    `SELECT (SELECT count(*) FROM registrations WHERE object_id = 'STALLED')::int AS registered,
            (SELECT count(*) FROM audit_log WHERE action = 'registration.create' AND after::text LIKE '%STALLED%')::int AS audited`,
  );
  assert.deepEqual(rows[0], { registered: 0, audited: 0 });
  assert.equal(await routeOf("STALLED"), "prod");
  const res = await post("STALLED");
  assert.deepEqual([res.status, await res.json()], [200, { registered: 1, ignoredRules: [] }]);
  assert.equal(await routeOf("STALLED"), "sit");
});

test("a Redis connection gone silent without a reset is replaced: with the record then stalled, registered callbacks route from Redis again", async () => {
  await eventually("Redis warm", async () => (await direct!.exists(`${shared.prefix}registry:warm`)) === 1);
  assert.equal(await routeOf("R1"), "sit");
  // A NAT entry gone: the open connections pass nothing and are never reset; new ones would be answered.
  proxy!.silenceOpenConnections();
  await whileRegistrationsLocked(async () => {
    // Until the registry's connection is replaced neither copy answers (the callback is answered 503 as
    // registry_unavailable); a connection that stayed silent would keep it so for the kernel's quarter of an hour.
    await eventually("R1 routed from Redis while the record is stalled", async () => (await routeOf("R1")) === "sit", 15_000, 200);
  });
});

test("with Redis cut off again, the service shuts down (its Redis clients do not wait for a reconnection)", async () => {
  proxy!.blackhole();
  const svc = d!;
  d = undefined;
  await svc.close();
  const res = await fetch(`${svc.url}/healthz`).catch((err: Error) => err);
  assert.ok(res instanceof Error, "nothing listens any more");
});
