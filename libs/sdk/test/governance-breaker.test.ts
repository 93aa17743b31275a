import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";
import { eventually } from "@opsplane/testing";
import Fastify, { type FastifyInstance } from "fastify";
import { fastifyPlugin } from "../src/adapters/fastify.js";
import { Governance } from "../src/governance/governance.js";
import { type Answer, baseUrl, call, governed, latch, reachesHandler, recordingLog, removal, rule } from "./governance-fixtures.js";

/** How far governance's clock runs ahead of real time: a "slow" call moves it on instead of sleeping. */
let clockAheadMs = 0;
const { governance, ctx } = governed({ now: () => performance.now() + clockAheadMs });
let app: FastifyInstance;
let url: string;
/** How the handler behaves for the next calls. */
let mode: "ok" | "fail" | "slow" | "hold" = "ok";
let held = latch();
let handled = 0;

before(async () => {
  app = Fastify();
  await app.register(fastifyPlugin(ctx));
  app.get("/quote", { config: { opsplane: { code: "loan.quote" } } }, async () => {
    handled++;
    if (mode === "fail") throw new Error("rate service down");
    // 150 ms pass on the clock the edge times calls on, as if the upstream had been that slow.
    if (mode === "slow") clockAheadMs += 150;
    if (mode === "hold") await held.promise;
    return { rate: 0.05 };
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  url = `${baseUrl(app.server.address())}/quote`;
});

after(() => app.close());

beforeEach(() => {
  governance.apply([removal("circuit-breaker", "loan.quote"), removal("rate-limit", "loan.quote")]);
  mode = "ok";
  handled = 0;
});

async function statuses(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await call(url)).status);
  return out;
}

test("a breaker opens after errorCount failures, refuses without calling the handler, then closes after a good trial", async () => {
  // timeoutMs bounds the trial: a slow machine holding it past openMs must not fail it.
  governance.apply([rule("circuit-breaker", "loan.quote", { errorCount: 3, windowMs: 10_000, openMs: 300, timeoutMs: 10_000 })]);
  mode = "fail";
  assert.deepEqual(await statuses(3), [500, 500, 500]);

  const refused = await call(url);
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get("x-opsplane-governance"), "circuit-open");
  assert.equal(refused.headers.get("retry-after"), "1");
  assert.deepEqual(refused.body, { error: "circuit-open", message: "interface loan.quote is failing: its circuit breaker is open" });
  assert.equal(handled, 3, "the open breaker kept the call from the handler");
  assert.equal(governance.describe().interfaces.find((i) => i.code === "loan.quote")?.breaker?.state, "open");

  // Half-open after openMs: one trial call; others are refused while it runs.
  mode = "hold";
  held = latch();
  let trial: { pending: Promise<Answer> } | undefined;
  await eventually("the trial call let through after openMs", async () => {
    trial = await reachesHandler(
      () => call(url),
      () => handled,
    );
    return trial !== undefined;
  });
  assert.equal((await call(url)).status, 503, "a second call is refused while the trial runs");
  assert.equal(governance.describe().interfaces.find((i) => i.code === "loan.quote")?.breaker?.state, "half-open");
  held.open();
  assert.equal((await trial!.pending).status, 200);
  mode = "ok";
  assert.deepEqual(await statuses(5), [200, 200, 200, 200, 200], "the good trial closed the breaker");
});

test("a failed trial opens the breaker again for openMs", async () => {
  governance.apply([rule("circuit-breaker", "loan.quote", { errorCount: 1, openMs: 300 })]);
  mode = "fail";
  assert.deepEqual(await statuses(2), [500, 503]);
  await eventually("the failing trial let through", async () => (await call(url)).status === 500);
  assert.equal((await call(url)).status, 503, "open again straight after the failed trial");
  mode = "ok";
  await eventually("the next trial closes it", async () => (await call(url)).status === 200);
  assert.deepEqual(await statuses(3), [200, 200, 200]);
});

test("calls slower than timeoutMs count as failures and open the breaker", async () => {
  governance.apply([rule("circuit-breaker", "loan.quote", { timeoutMs: 50, errorCount: 2, openMs: 300 })]);
  mode = "slow";
  assert.deepEqual(await statuses(2), [200, 200], "slow calls still answer");
  assert.equal((await call(url)).status, 503);
  mode = "ok";
  await eventually("a fast trial closes it", async () => (await call(url)).status === 200);
});

test("errorRatio waits for minRequests calls in the window", async () => {
  governance.apply([rule("circuit-breaker", "loan.quote", { errorRatio: 0.5, minRequests: 4, windowMs: 10_000, openMs: 300 })]);
  assert.deepEqual(await statuses(1), [200]);
  mode = "fail";
  assert.deepEqual(await statuses(2), [500, 500], "2 failures of 3 calls: under minRequests");
  assert.deepEqual(await statuses(1), [500], "the 4th call runs; 3 of 4 failed");
  assert.deepEqual(await statuses(1), [503]);
  assert.equal(handled, 4);
});

test("an open breaker stays open through unrelated rule changes and a change of its own thresholds", async () => {
  governance.apply([rule("circuit-breaker", "loan.quote", { errorCount: 1, openMs: 60_000 })]);
  mode = "fail";
  assert.deepEqual(await statuses(2), [500, 503]);
  governance.apply([
    rule("rate-limit", "loan.quote", { tps: 1000 }),
    rule("route", "other.code", { enabled: false }),
    rule("circuit-breaker", "loan.quote", { errorCount: 5, openMs: 60_000 }),
  ]);
  mode = "ok";
  assert.deepEqual(await statuses(2), [503, 503]);
  governance.apply([rule("circuit-breaker", "loan.quote", { errorCount: 5, openMs: 60_000, enabled: false })]);
  assert.deepEqual(await statuses(1), [200], "a disabled breaker lets calls through");
});

test("the status reports an open breaker whose openMs has passed as half-open, not open with retryInMs 0", () => {
  let now = 1_000;
  const g = new Governance({ log: recordingLog(), now: () => now });
  g.apply([rule("circuit-breaker", "loan.quote", { errorCount: 1, openMs: 30_000 })]);
  const d = g.enter({ code: "loan.quote", method: "GET", path: "/quote", headers: {} });
  assert.equal(d.action, "proceed");
  if (d.action === "proceed") d.finish({ statusCode: 500, failed: true, durationMs: 1 });
  const breaker = () => g.describe().interfaces.find((i) => i.code === "loan.quote")?.breaker;
  now += 5_000;
  assert.deepEqual(breaker(), { state: "open", calls: 1, failures: 1, retryInMs: 25_000 });
  now += 30_000;
  assert.deepEqual(breaker(), { state: "half-open", calls: 0, failures: 0 }, "the next call is the trial");
});
