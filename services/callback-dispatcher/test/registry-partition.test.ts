import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type CuttableProxy, eventually, startCuttableProxy, testRedis } from "@opsplane/testing";
import { startDispatcher } from "./helpers/dispatcher.js";
import { dropPrefix, routeOf, setUpPay } from "./helpers/pay-route.js";
import { startSignedStub } from "./helpers/signed-stub.js";

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

before(async () => {
  proxy = await startCuttableProxy(sharedUrl.hostname, Number(sharedUrl.port || 6379));
  prod = await startSignedStub("prod", "s");
  sit = await startSignedStub("sit", "s");
  const env = { REDIS_KEY_PREFIX: shared.prefix, REGISTRY_WARM_CHECK_MS: String(warmCheckMs) };
  a = await startDispatcher({ ...env, REDIS_URL: shared.url });
  b = await startDispatcher({ ...env, REDIS_URL: `redis://127.0.0.1:${proxy.port}` }, { databaseUrl: a.databaseUrl });
  // Both warm: a miss is trusted on both.
  await setUpPay(a.api, { prod: prod.url, sit: sit.url }, ["W1"]);
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
  await dropPrefix(shared.url, shared.prefix);
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
