import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type CuttableProxy, createTestDatabase, proxiedUrl, testRedis } from "@opsplane/testing";
import { Redis } from "ioredis";
import { startDispatcher } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

// PostgreSQL cut off and Redis answering, but later than REGISTRY_REDIS_TIMEOUT_MS (a busy Redis, a GC
// pause): each lookup gave up on Redis, found the record down too, and sent a registered callback to
// production as registry_unavailable, although Redis's answer was on its way.
const shared = testRedis();
const recordTimeoutMs = 300;

let db: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
let pgProxy: CuttableProxy | undefined;
let redisProxy: CuttableProxy | undefined;
let d: Awaited<ReturnType<typeof startDispatcher>> | undefined;
let prod: Awaited<ReturnType<typeof startSignedStub>> | undefined;
let sit: Awaited<ReturnType<typeof startSignedStub>> | undefined;

async function routeOf(orderNo: string): Promise<string> {
  const body = Buffer.from(JSON.stringify({ orderNo }));
  const res = await fetch(`${d!.url}/notify/pay`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-signature": sign("s", body) },
    body,
    signal: AbortSignal.timeout(5_000),
  });
  assert.equal(res.status, 200);
  await res.arrayBuffer();
  return res.headers.get("x-served-by") ?? "";
}

before(async () => {
  db = await createTestDatabase();
  const pgVia = await proxiedUrl(db.url, 5432);
  pgProxy = pgVia.proxy;
  const redisVia = await proxiedUrl(shared.url, 6379);
  redisProxy = redisVia.proxy;
  prod = await startSignedStub("prod", "s");
  sit = await startSignedStub("sit", "s");
  d = await startDispatcher(
    { REDIS_URL: redisVia.url, REDIS_KEY_PREFIX: shared.prefix, REGISTRY_RECORD_TIMEOUT_MS: String(recordTimeoutMs) },
    { databaseUrl: pgVia.url },
  );
  await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true });
  await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url });
  await d.api("PUT", "/_dispatcher/v1/rules/pay", {
    interface: { pattern: "/api/pay", id: { kind: "json", expr: "orderNo" } },
    callback: { pattern: "/notify/pay", id: { kind: "json", expr: "orderNo" } },
    ttlSeconds: 600,
  });
  assert.equal(
    (await d.api("POST", "/_dispatcher/v1/registrations", { env: "sit", registrations: [{ rule: "pay", id: "L1" }] })).status,
    200,
  );
  assert.equal(await routeOf("L1"), "sit");
});

after(async () => {
  pgProxy?.heal();
  redisProxy?.delayAnswers(0);
  await d?.svc.close();
  await pgProxy?.close();
  await redisProxy?.close();
  await db?.drop();
  await prod?.close();
  await sit?.close();
  const direct = new Redis(shared.url);
  for await (const keys of direct.scanStream({ match: `${shared.prefix}*`, count: 500 }) as AsyncIterable<string[]>)
    if (keys.length) await direct.del(...keys);
  direct.disconnect();
});

test("PostgreSQL cut off and Redis answering late: registered callbacks still reach sit, from Redis's late answer", async () => {
  pgProxy!.blackhole();
  redisProxy!.delayAnswers(150);
  const started = performance.now();
  assert.equal(await routeOf("L1"), "sit");
  assert.equal(await routeOf("NEVER-REGISTERED"), "prod");
  // Bounded all the same: Redis's deadline, the record's, then Redis's late answer.
  assert.ok(performance.now() - started < 2 * (50 + recordTimeoutMs + 150) + 1_000);
});
