import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { setTimeout } from "node:timers/promises";
import { eventually } from "@opsplane/testing";
import { startDispatcher, viewerKey } from "./helpers/dispatcher.js";
import { startSignedStub } from "./helpers/signed-stub.js";

const base = "/_dispatcher/v1";
type Dispatcher = Awaited<ReturnType<typeof startDispatcher>>;

/** The template a third party is answered from while its callback is queued. */
const answer = { status: 200, headers: { "content-type": "text/plain; charset=utf-8" }, body: "success" };
/** Retried every 100–200 ms for as long as the environment is down, so what it owes stays owed. */
const retryingForever = { answer, maxAttempts: 100, initialBackoffMs: 100, maxBackoffMs: 200 };

// A test environment that is down for hours under heavy traffic must not grow the queue without
// bound: past its environment's maxPending a callback is forwarded synchronously, as before
// asynchronous delivery (the third party sees the environment's failure and retries).
describe("asynchronous delivery: a cap on what an environment owes", () => {
  let a: Dispatcher;
  let b: Dispatcher;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let env: http.Server;
  let envUrl: string;
  let down = true;

  before(async () => {
    env = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => (down ? res.writeHead(503).end("down") : res.writeHead(200).end("env-ok")));
    });
    await new Promise<void>((resolve) => env.listen(0, "127.0.0.1", resolve));
    envUrl = `http://127.0.0.1:${(env.address() as AddressInfo).port}`;
    prod = await startSignedStub("prod", "s");
    a = await startDispatcher({ ASYNC_DELIVERY_POLL_MS: "50" });
    assert.equal((await a.api("PUT", `${base}/environments/prod`, { baseUrl: prod.url, production: true })).status, 200);
    const rule = {
      interface: { pattern: "/api/pay", id: { kind: "query", expr: "orderNo" } },
      callback: { pattern: "/notify/pay", id: { kind: "query", expr: "order" } },
      ttlSeconds: 600,
    };
    assert.equal((await a.api("PUT", `${base}/rules/pay`, rule)).status, 200);
  });
  after(async () => {
    await b?.close();
    await a?.close();
    await prod?.close();
    env?.closeAllConnections();
    env?.close();
  });

  async function configure(name: string, asyncDelivery: object) {
    const res = await a.api("PUT", `${base}/environments/${name}`, { baseUrl: envUrl, asyncDelivery });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const registered = await a.api("POST", `${base}/registrations`, { env: name, registrations: [{ rule: "pay", id: name }] });
    assert.equal(registered.status, 200);
  }

  let sent = 0;
  /** A callback for `envName`'s order, as its third party reads the answer. */
  async function notify(d: Dispatcher, envName: string) {
    const requestId = `cap-${envName}-${++sent}`;
    const res = await fetch(`${d.url}/notify/pay?order=${envName}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "x-request-id": requestId },
      body: `out_trade_no=${envName}`,
    });
    return { status: res.status, text: await res.text(), requestId };
  }

  const pendingOf = async (envName: string) =>
    (
      await a.svc.ctx.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM async_deliveries WHERE env = $1 AND state = 'pending'", [
        envName,
      ])
    ).rows[0]!.n;

  const metric = async (d: Dispatcher, line: RegExp) => {
    const text = await (await fetch(`${d.url}/metrics`)).text();
    const m = text.split("\n").find((l) => line.test(l));
    return m ? Number(m.split(" ").at(-1)) : undefined;
  };

  test("maxPending is 1 to 1,000,000, 10000 unless given; out of range is 400 naming it", async () => {
    for (const maxPending of [0, 1_000_001, 2.5]) {
      const res = await a.api("PUT", `${base}/environments/sit`, { baseUrl: envUrl, asyncDelivery: { answer, maxPending } });
      assert.equal(res.status, 400, `${maxPending}: ${JSON.stringify(res.body)}`);
      assert.match(String(res.body.message), /^body\/asyncDelivery\/maxPending must be/);
    }
    const saved = await a.api("PUT", `${base}/environments/sit`, { baseUrl: envUrl, asyncDelivery: { answer } });
    assert.equal((saved.body.asyncDelivery as { maxPending: number }).maxPending, 10_000);
  });

  test("at the cap a callback is forwarded synchronously, saying why, and counted; queued again once the environment catches up", async () => {
    await configure("sit", { ...retryingForever, maxPending: 3 });
    for (let i = 0; i < 3; i++) assert.deepEqual(await notify(a, "sit").then((x) => [x.status, x.text]), [200, "success"]);

    const over = await notify(a, "sit");
    assert.deepEqual([over.status, over.text], [503, "down"], "the environment's own answer: the third party retries");
    assert.equal(await pendingOf("sit"), 3);
    const decision = await eventually("the decision of the callback over the cap", async () => {
      const { body } = await a.api("GET", `${base}/decisions?requestId=${over.requestId}`, undefined, viewerKey);
      return (body.decisions as Array<{ targetEnv: string; detail: string }>)[0];
    });
    assert.equal(decision.targetEnv, "sit");
    assert.match(
      decision.detail,
      /not queued for asynchronous delivery \(sit owes at least 3 deliveries, its asyncDelivery\.maxPending\); forwarded synchronously/,
    );
    assert.equal(await metric(a, /^callback_dispatcher_async_fallbacks_total\{env="sit",reason="queue_full"[,}]/), 1);

    // Back up: what it owed is delivered, and its callbacks are answered from the template again.
    down = false;
    await eventually("sit owing nothing", async () => (await pendingOf("sit")) === 0);
    // A lull longer than a count's life (a second): the last count, three owed, predates every delivery.
    // The first callback after it was refused on that count (forwarded synchronously: a test
    // environment down by then would have had its third party answered with its failure).
    await setTimeout(1_500);
    const afterLull = await notify(a, "sit");
    assert.deepEqual([afterLull.status, afterLull.text], [200, "success"], "queued: sit owes nothing");
    assert.equal(await metric(a, /^callback_dispatcher_async_fallbacks_total\{env="sit",reason="queue_full"[,}]/), 1);
  });

  // All admitted on the same count, before any of their writes: a trial queued 2,000 of 2,000 with maxPending 500.
  test("a burst of callbacks arriving together does not pass the cap by its size", async () => {
    down = true;
    await configure("burst", { ...retryingForever, maxPending: 5 });
    const answers = await Promise.all(Array.from({ length: 40 }, () => notify(a, "burst").then((x) => x.text)));
    const queued = answers.filter((text) => text === "success").length;
    assert.ok(queued >= 1 && queued <= 5, `${queued} of 40 answered from the template with maxPending 5`);
    assert.equal(answers.filter((text) => text === "down").length, 40 - queued, "the rest got the environment's own answer");
    assert.ok((await pendingOf("burst")) <= 5, `${await pendingOf("burst")} owed`);
    // After a lull longer than a count's life, a second burst: the count it starts must not forget, while it
    // runs, what was written before it (a trial: 100 more queued with maxPending 100).
    await setTimeout(1_500);
    const again = await Promise.all(Array.from({ length: 40 }, () => notify(a, "burst").then((x) => x.text)));
    assert.ok(
      (await pendingOf("burst")) <= 5,
      `${await pendingOf("burst")} owed after a second burst (${again.filter((t) => t === "success").length} queued)`,
    );
  });

  test("with two replicas, each counts what the other queued", async () => {
    down = true;
    await configure("uat", { ...retryingForever, maxPending: 3 });
    b = await startDispatcher({ REDIS_KEY_PREFIX: a.svc.ctx.config.REDIS_KEY_PREFIX }, { databaseUrl: a.databaseUrl });
    for (let i = 0; i < 3; i++) assert.equal((await notify(a, "uat")).text, "success");
    assert.equal((await notify(a, "uat")).text, "down");
    // b had never taken a callback for uat: its first may be queued while b counts for the first
    // time; from then on b refuses too.
    const first = await notify(b, "uat");
    assert.equal((await notify(b, "uat")).text, "down");
    assert.equal(await pendingOf("uat"), first.text === "success" ? 4 : 3);
  });
});
