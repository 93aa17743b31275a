import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type CuttableProxy, eventually, startCuttableProxy, testRedis } from "@opsplane/testing";
import pg from "pg";
import { agentApp, startDispatcher } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

const secret = "platform-secret";
const agentAuth = `Basic ${Buffer.from(`${agentApp.id}:${agentApp.secret}`).toString("base64")}`;

interface DecisionRow {
  status: number;
  error: string | null;
  objectId: string;
  targetEnv: string;
  reason: string;
  detail: string | null;
}

// A third party may call back before the agent's report of interface A reaches the dispatcher: a rule's
// holdMs lets such a callback wait for its registration instead of going to production.
describe("callbacks held while their registration is in flight", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let other: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;

  before(async () => {
    prod = await startSignedStub("prod", secret);
    sit = await startSignedStub("sit", secret);
    d = await startDispatcher();
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true })).status, 200);
    const sitEnv = await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url, idPatterns: { "*": "SIT-[0-9]+" } });
    assert.equal(sitEnv.status, 200, JSON.stringify(sitEnv.body));
    for (const [name, holdMs] of [
      ["held", 3_000],
      ["short", 300],
      ["unheld", undefined],
    ] as const) {
      const rule = {
        interface: { pattern: `/api/${name}`, id: { kind: "json", expr: "orderNo" } },
        callback: { pattern: `/notify/${name}`, id: { kind: "json", expr: "out_trade_no" } },
        ttlSeconds: 600,
        ...(holdMs === undefined ? {} : { holdMs }),
      };
      const res = await d.api("PUT", `/_dispatcher/v1/rules/${name}`, rule);
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    // A second replica on the same database and Redis keys.
    const prefix = d.svc.ctx.config.REDIS_KEY_PREFIX;
    other = await startDispatcher({ REDIS_KEY_PREFIX: prefix }, { databaseUrl: d.databaseUrl });
  });

  after(async () => {
    await other?.close();
    await d?.close();
    await Promise.all([prod?.close(), sit?.close()]);
  });

  async function register(url: string, rule: string, id: string) {
    const res = await fetch(`${url}/_dispatcher/v1/registrations`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: agentAuth },
      body: JSON.stringify({ env: "sit", registrations: [{ rule, id }] }),
    });
    assert.equal(res.status, 200, await res.text());
  }

  function callback(rule: string, id: string) {
    const body = Buffer.from(JSON.stringify({ out_trade_no: id, status: "SUCCESS" }));
    return fetch(`${d.url}/notify/${rule}?id=${id}`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-signature": sign(secret, body) },
      body,
    }).then(async (res) => ({ status: res.status, servedBy: res.headers.get("x-served-by"), text: await res.text() }));
  }

  const decision = (id: string) =>
    eventually(`the decision for ${id}`, async () => {
      const { body } = await d.api("GET", `/_dispatcher/v1/decisions?objectId=${id}`);
      return (body.decisions as DecisionRow[])[0];
    });

  /** Resolves once the callback for `id` is held by the dispatcher (not yet answered, nothing forwarded). */
  const heldNow = (id: string) =>
    eventually(`the callback for ${id} to be held`, async () => {
      const text = await (await fetch(`${d.url}/metrics`)).text();
      return /callback_dispatcher_held_callbacks(\{[^}]*\})? 1\b/.test(text) && !sit.received.some((r) => r.url.includes(id));
    });

  test("a callback that arrives before its registration waits for it and reaches the test environment", async () => {
    const answered = callback("held", "SIT-1");
    await heldNow("SIT-1");
    await register(d.url, "held", "SIT-1");
    const res = await answered;
    assert.equal(res.status, 200);
    assert.equal(res.servedBy, "sit");
    const row = await decision("SIT-1");
    assert.equal(row.reason, "registered");
    assert.match(row.detail ?? "", /^held \d+ ms until its registration came$/);
  });

  test("a registration received by another replica releases the held callback too", async () => {
    const answered = callback("held", "SIT-2");
    await heldNow("SIT-2");
    await register(other.url, "held", "SIT-2");
    const res = await answered;
    assert.equal(res.servedBy, "sit");
    assert.equal((await decision("SIT-2")).reason, "registered");
  });

  // Sent after its caller had gone, the environment got it, and again when the third party retried (a trial).
  test("a callback whose caller resets its connection while it is held is not forwarded when released, and says so", async () => {
    const body = JSON.stringify({ out_trade_no: "SIT-5", status: "SUCCESS" });
    const socket = net.connect(Number(new URL(d.url).port), "127.0.0.1", () =>
      socket.write(
        `POST /notify/held HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Signature: ${sign(secret, body)}\r\n` +
          `Content-Length: ${body.length}\r\n\r\n${body}`,
      ),
    );
    socket.on("error", () => {});
    await heldNow("SIT-5");
    socket.resetAndDestroy();
    await register(d.url, "held", "SIT-5");
    const row = await decision("SIT-5");
    assert.deepEqual(
      [row.status, row.targetEnv, row.error],
      [499, "sit", "the caller closed its connection while its callback was being routed: not forwarded (its platform retries)"],
    );
    assert.ok(![...sit.received, ...prod.received].some((r) => r.body.includes("SIT-5")), "not forwarded");
  });

  test("with no registration the callback goes to production once the rule's holdMs has passed, and says so", async () => {
    const res = await callback("short", "SIT-3");
    assert.equal(res.servedBy, "prod");
    const row = await decision("SIT-3");
    assert.equal(row.reason, "not_registered");
    assert.match(row.detail ?? "", /^held \d+ ms; no registration came$/);
  });

  test("ids no test environment may claim, and rules without holdMs, are not held", async () => {
    // PROD-… is outside sit's pattern: no registration can be on its way, so production gets it at once.
    const prodId = await callback("held", "PROD-1");
    assert.equal(prodId.servedBy, "prod");
    assert.equal((await decision("PROD-1")).detail, "no test environment may claim this id (their idPatterns); not looked up");
    const unheld = await callback("unheld", "SIT-4");
    assert.equal(unheld.servedBy, "prod");
    assert.equal((await decision("SIT-4")).detail, null);
  });

  test("the README's complete rule is accepted as written, and routes its sample callback to sit once registered", async () => {
    const readme = readFileSync(path.join(__dirname, "..", "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## A complete rule"));
    const json = /```json\n([\s\S]*?)```/.exec(section)![1]!;
    const rule = JSON.parse(json) as { callback: { sample: { path: string; body: string } } };
    const saved = await d.api("PUT", "/_dispatcher/v1/rules/wxpay", rule);
    assert.equal(saved.status, 200, JSON.stringify(saved.body));
    await register(d.url, "wxpay", "SIT-1001");
    const body = Buffer.from(rule.callback.sample.body);
    const res = await fetch(`${d.url}${rule.callback.sample.path}`, {
      method: "POST",
      headers: { "content-type": "text/xml", "x-signature": sign(secret, body) },
      body,
    });
    await res.arrayBuffer();
    assert.equal(res.headers.get("x-served-by"), "sit");
  });

  test("holdMs is bounded: a rule asking for more than 3000 ms is refused, naming the field", async () => {
    const res = await d.api("PUT", "/_dispatcher/v1/rules/too-long", {
      interface: { pattern: "/api/x", id: { kind: "json", expr: "orderNo" } },
      callback: { pattern: "/notify/x", id: { kind: "json", expr: "out_trade_no" } },
      ttlSeconds: 600,
      holdMs: 60_000,
    });
    assert.equal(res.status, 400);
    assert.match(JSON.stringify(res.body), /holdMs/);
  });
});

// Redis and the PostgreSQL record failing while a callback is held: nobody can know whether its
// registration came, so the hold must not end as "no registration came" but as a failed lookup does.
describe("callbacks held while the registry cannot answer", () => {
  const recordTimeoutMs = 300;
  let proxy: CuttableProxy;
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;

  before(async () => {
    const redis = new URL(testRedis().url);
    proxy = await startCuttableProxy(redis.hostname, Number(redis.port || 6379));
    prod = await startSignedStub("prod", secret);
    sit = await startSignedStub("sit", secret);
    d = await startDispatcher({
      REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
      REGISTRY_RECORD_TIMEOUT_MS: String(recordTimeoutMs),
      // Out of reach: only the record's own deadline can end a stalled lookup.
      DATABASE_QUERY_TIMEOUT_MS: "600000",
    });
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true })).status, 200);
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url })).status, 200);
    for (const [name, holdMs] of [
      ["held", 1_000],
      ["unheld", 0],
    ] as const) {
      const rule = {
        interface: { pattern: `/api/${name}`, id: { kind: "json", expr: "orderNo" } },
        callback: { pattern: `/notify/${name}`, id: { kind: "json", expr: "out_trade_no" } },
        ttlSeconds: 600,
        holdMs,
      };
      assert.equal((await d.api("PUT", `/_dispatcher/v1/rules/${name}`, rule)).status, 200);
    }
  });

  after(async () => {
    proxy?.heal();
    await d?.close();
    await proxy?.close();
    await Promise.all([prod?.close(), sit?.close()]);
  });

  function callback(rule: string, id: string, requestId: string) {
    const body = Buffer.from(JSON.stringify({ out_trade_no: id }));
    return fetch(`${d.url}/notify/${rule}`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-signature": sign(secret, body), "x-request-id": requestId },
      body,
    }).then(async (res) => {
      await res.arrayBuffer();
      const retryAfter = res.headers.get("retry-after");
      return `${res.status} ${res.headers.get("x-served-by") ?? "nobody"}${retryAfter === null ? "" : ` retry-after ${retryAfter}`}`;
    });
  }

  const decision = (requestId: string) =>
    eventually(`the decision of ${requestId}`, async () => {
      const { body } = await d.api("GET", `/_dispatcher/v1/decisions?requestId=${requestId}`);
      return (body.decisions as DecisionRow[])[0];
    });

  test("a held callback whose lookups fail is answered 503 as registry_unavailable (sit may claim its id), as an unheld one is", async () => {
    const held = callback("held", "SIT-21", "held-registry-down");
    await eventually("the callback to be held", async () =>
      /callback_dispatcher_held_callbacks(\{[^}]*\})? 1\b/.test(await (await fetch(`${d.url}/metrics`)).text()),
    );
    // Redis cut off, and another session holds the record's table: no lookup can answer now.
    const locker = new pg.Client({ connectionString: d.databaseUrl });
    await locker.connect();
    try {
      await locker.query("BEGIN");
      await locker.query('LOCK TABLE "callback_dispatcher".registrations IN ACCESS EXCLUSIVE MODE');
      proxy.blackhole();
      // Answered as the platform's outages are: 503 with Retry-After, for the third party to come back.
      assert.equal(await callback("unheld", "SIT-22", "unheld-registry-down"), "503 nobody retry-after 5");
      assert.equal(await held, "503 nobody retry-after 5");
    } finally {
      await locker.query("ROLLBACK");
      await locker.end();
      proxy.heal();
    }
    const failed = `registry lookup failed: the PostgreSQL record did not answer within ${recordTimeoutMs} ms (REGISTRY_RECORD_TIMEOUT_MS)`;
    const retried = "; a test environment may claim this id: 503 for the platform to retry, not production";
    const unheld = await decision("unheld-registry-down");
    assert.deepEqual([unheld.reason, unheld.detail], ["registry_unavailable", `${failed}${retried}`]);
    const row = await decision("held-registry-down");
    assert.equal(row.reason, "registry_unavailable");
    assert.equal(row.detail?.replace(/; held \d+ ms;/, ";"), `${failed}${retried}`);
    assert.match(row.detail ?? "", /; held \d+ ms;/);
  });
});
