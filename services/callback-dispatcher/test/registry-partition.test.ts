import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type CuttableProxy, eventually, startCuttableProxy, testRedis } from "@opsplane/testing";
import { Redis } from "ioredis";
import { startDispatcher } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

// Two replicas on one database and one Redis, the second reaching Redis through a proxy this test cuts:
// a partition of that replica alone. What it registers meanwhile is in the record but not in Redis, and
// the first replica, which still sees the warm marker, trusted Redis's miss and sent those callbacks to
// production for as long as the partition lasted.
const shared = testRedis();
const sharedUrl = new URL(shared.url);
const warmCheckMs = 200;

let proxy: CuttableProxy | undefined;
let a: Awaited<ReturnType<typeof startDispatcher>> | undefined;
let b: Awaited<ReturnType<typeof startDispatcher>> | undefined;
let prod: Awaited<ReturnType<typeof startSignedStub>> | undefined;
let sit: Awaited<ReturnType<typeof startSignedStub>> | undefined;

async function routeOf(url: string, orderNo: string): Promise<string> {
  const body = Buffer.from(JSON.stringify({ orderNo }));
  const res = await fetch(`${url}/notify/pay`, {
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
  proxy = await startCuttableProxy(sharedUrl.hostname, Number(sharedUrl.port || 6379));
  prod = await startSignedStub("prod", "s");
  sit = await startSignedStub("sit", "s");
  const env = { REDIS_KEY_PREFIX: shared.prefix, REGISTRY_WARM_CHECK_MS: String(warmCheckMs) };
  a = await startDispatcher({ ...env, REDIS_URL: shared.url });
  b = await startDispatcher({ ...env, REDIS_URL: `redis://127.0.0.1:${proxy.port}` }, { databaseUrl: a.databaseUrl });
  await a.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true });
  await a.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url });
  await a.api("PUT", "/_dispatcher/v1/rules/pay", {
    interface: { pattern: "/api/pay", id: { kind: "json", expr: "orderNo" } },
    callback: { pattern: "/notify/pay", id: { kind: "json", expr: "orderNo" } },
    ttlSeconds: 600,
  });
  // Both warm: a miss is trusted on both.
  assert.equal(
    (await a.api("POST", "/_dispatcher/v1/registrations", { env: "sit", registrations: [{ rule: "pay", id: "W1" }] })).status,
    200,
  );
  await eventually(
    "W1 routed to sit by both replicas",
    async () => (await routeOf(a!.url, "W1")) === "sit" && (await routeOf(b!.url, "W1")) === "sit",
  );
});

after(async () => {
  await b?.svc.close();
  await a?.close();
  await proxy?.close();
  await prod?.close();
  await sit?.close();
  const direct = new Redis(shared.url);
  for await (const keys of direct.scanStream({ match: `${shared.prefix}*`, count: 500 }) as AsyncIterable<string[]>)
    if (keys.length) await direct.del(...keys);
  direct.disconnect();
});

test("a registration on a replica cut off from Redis reaches the other replicas' routing within the warm check", async () => {
  proxy!.blackhole();
  const registered = await b!.api("POST", "/_dispatcher/v1/registrations", { env: "sit", registrations: [{ rule: "pay", id: "P1" }] });
  assert.equal(registered.status, 200, JSON.stringify(registered.body));
  assert.equal(await routeOf(b!.url, "P1"), "sit", "the replica that took it routes it from the record");
  const started = performance.now();
  await eventually("P1 routed to sit by the replica that still reaches Redis", async () => (await routeOf(a!.url, "P1")) === "sit", 10_000);
  const tookMs = performance.now() - started;
  assert.ok(tookMs < 5 * warmCheckMs + 2_000, `seen by the other replica after ${Math.round(tookMs)} ms`);
  // Redis holds it again (the other replica warmed it), and production ids still go to production.
  assert.equal(await routeOf(a!.url, "NEVER-REGISTERED"), "prod");
  proxy!.heal();
  assert.equal(await routeOf(b!.url, "P1"), "sit");
});
