import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { type CuttableProxy, createTestDatabase, eventually, freePort, proxiedUrl, type TestDatabase } from "@opsplane/testing";
import pg from "pg";
import { operatorKey, startDispatcher, viewerKey } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

const secret = "platform-secret";
const base = "/_dispatcher/v1";

interface Delivery {
  id: string;
  env: string;
  target: string;
  state: "pending" | "delivered" | "dead";
  attempts: number;
  deadReason: string | null;
  lastStatus: number | null;
}

interface Attempt {
  attempt: number;
  at: string;
  replica: string;
  status: number | null;
  durationMs: number | null;
  error: string | null;
}

const payRule = {
  interface: { pattern: "/api/pay", id: { kind: "query", expr: "orderNo" } },
  callback: { pattern: "/notify/pay", id: { kind: "query", expr: "order" } },
  ttlSeconds: 600,
};

/** A fast retry policy, so a test environment that stays down is given up on within a second or two. */
const quickRetries = { maxAttempts: 3, initialBackoffMs: 100, maxBackoffMs: 200 };

const alipayAnswer = { status: 200, headers: { "content-type": "text/plain; charset=utf-8" }, body: "success" };
const wechatAnswer = {
  status: 200,
  headers: { "content-type": "application/xml" },
  body: "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>",
};

type Dispatcher = Awaited<ReturnType<typeof startDispatcher>>;

async function setUp(d: Dispatcher, prodUrl: string) {
  assert.equal((await d.api("PUT", `${base}/environments/prod`, { baseUrl: prodUrl, production: true })).status, 200);
  assert.equal((await d.api("PUT", `${base}/rules/pay`, payRule)).status, 200);
}

async function register(d: Dispatcher, env: string, ...ids: string[]) {
  const res = await d.api("POST", `${base}/registrations`, { env, registrations: ids.map((id) => ({ rule: "pay", id })) });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

/** A signed payment notification for `order`, as a platform sends it; the dispatcher's answer as the platform reads it. */
async function notify(url: string, order: string, opts: { contentType?: string; body?: string; requestId?: string; query?: string } = {}) {
  const body = opts.body ?? `out_trade_no=${order}&trade_status=TRADE_SUCCESS`;
  const res = await fetch(`${url}/notify/pay?order=${order}${opts.query ?? ""}`, {
    method: "POST",
    headers: {
      "content-type": opts.contentType ?? "application/x-www-form-urlencoded",
      "x-signature": sign(secret, body),
      authorization: "Bearer platform-token",
      ...(opts.requestId ? { "x-request-id": opts.requestId } : {}),
    },
    body,
  });
  return {
    status: res.status,
    contentType: res.headers.get("content-type"),
    requestId: res.headers.get("x-request-id"),
    text: await res.text(),
  };
}

async function decisionOf(d: Dispatcher, requestId: string) {
  return eventually(`the decision of ${requestId}`, async () => {
    const { body } = await d.api("GET", `${base}/decisions?requestId=${requestId}`, undefined, viewerKey);
    return (body.decisions as Array<{ id: string; status: number; detail: string | null; targetEnv: string }>)[0];
  });
}

async function deliveryWhen(d: Dispatcher, id: string, what: string, ok: (x: Delivery) => boolean, timeoutMs = 15_000) {
  return eventually(
    `delivery ${id} ${what}`,
    async () => {
      const { status, body } = await d.api("GET", `${base}/deliveries/${id}`, undefined, viewerKey);
      if (status !== 200) return undefined;
      const detail = body as unknown as {
        delivery: Delivery;
        attempts: Attempt[];
        callback: { headers: Array<{ name: string; value: string }> };
      };
      return ok(detail.delivery) ? detail : undefined;
    },
    timeoutMs,
  );
}

const metric = async (url: string, line: RegExp) => {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = text.split("\n").find((l) => line.test(l));
  return m ? Number(m.split(" ").at(-1)) : undefined;
};

/** An address nothing listens on: a test environment that is down. */
const downUrl = async () => `http://127.0.0.1:${await freePort()}`;

describe("asynchronous delivery: configuration", () => {
  let d: Dispatcher;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;

  before(async () => {
    prod = await startSignedStub("prod", secret);
    d = await startDispatcher();
    await setUp(d, prod.url);
  });
  after(async () => {
    await d?.close();
    await prod?.close();
  });

  const put = (name: string, body: object) => d.api("PUT", `${base}/environments/${name}`, body);

  test("a template a third party could not read is refused when saved, 400 naming the field", async () => {
    const cases: Array<[object, string, RegExp]> = [
      [{ answer: { status: 500, body: "fail" } }, "asyncDelivery.answer.status", /must be 2xx.*sends the callback again/],
      [{ answer: { headers: { "content-type": "application/json" }, body: "{success" } }, "asyncDelivery.answer.body", /not valid JSON/],
      [
        {
          answer: alipayAnswer,
          answerByContentType: { "application/xml": { headers: { "content-type": "text/xml" }, body: "<xml><a></xml>" } },
        },
        "asyncDelivery.answerByContentType.application/xml.body",
        /not well-formed XML/,
      ],
      [
        { answer: { headers: { "x-note": "a\r\nSet-Cookie: x=1" }, body: "success" } },
        "asyncDelivery.answer.headers.x-note",
        /not a valid HTTP header/,
      ],
      [{ answer: { headers: { "bad name": "v" }, body: "success" } }, "asyncDelivery.answer.headers.bad name", /not a valid HTTP header/],
      [
        { answer: { headers: { "Content-Length": "7" }, body: "success" } },
        "asyncDelivery.answer.headers.Content-Length",
        /set by the dispatcher/,
      ],
      [
        { answer: { headers: { "content-type": "text/plain; charset=GBK" }, body: "成功" } },
        "asyncDelivery.answer.headers.content-type",
        /charset gbk/,
      ],
      [{ answer: { status: 204, body: "success" } }, "asyncDelivery.answer.body", /carries no body/],
      [
        { answer: { headers: { "content-type": "application/x-www-form-urlencoded" }, body: "code=%zz" } },
        "asyncDelivery.answer.body",
        /not form-encoded/,
      ],
      [{ maxAttempts: 3 }, "asyncDelivery.answer", /answer is required/],
      [{ answer: alipayAnswer, initialBackoffMs: 5000, maxBackoffMs: 1000 }, "asyncDelivery.maxBackoffMs", /below initialBackoffMs/],
      [{ answer: { ...alipayAnswer, bodyText: "x" } }, "asyncDelivery.answer.bodyText", /unknown field/],
    ];
    for (const [asyncDelivery, field, message] of cases) {
      const res = await put("sit", { baseUrl: prod.url, asyncDelivery });
      assert.equal(res.status, 400, `${field}: ${JSON.stringify(res.body)}`);
      assert.equal((res.body.details as { field: string }).field, field);
      assert.match(String(res.body.message), message);
    }
    const { body } = await d.api("GET", `${base}/environments`, undefined, viewerKey);
    assert.equal(
      (body.environments as Array<{ name: string }>).find((e) => e.name === "sit"),
      undefined,
      "nothing was saved",
    );
  });

  test("a saved template shows with its defaults; omitted it stays, {} turns asynchronous delivery off", async () => {
    const saved = await put("sit", {
      baseUrl: prod.url,
      asyncDelivery: { answer: { body: "success" }, answerByContentType: { "application/xml": wechatAnswer } },
    });
    assert.equal(saved.status, 200, JSON.stringify(saved.body));
    assert.deepEqual(saved.body.asyncDelivery, {
      answer: { status: 200, headers: { "content-type": "text/plain; charset=utf-8" }, body: "success" },
      answerByContentType: { "application/xml": wechatAnswer },
      maxAttempts: 12,
      maxAgeSeconds: 86400,
      initialBackoffMs: 1000,
      maxBackoffMs: 600000,
      maxPending: 10000,
      allowOnProduction: false,
    });
    assert.notEqual((await put("sit", { baseUrl: `${prod.url}/moved` })).body.asyncDelivery, null, "kept when omitted");
    const listed = (await d.api("GET", `${base}/environments`, undefined, viewerKey)).body.environments as Array<{
      name: string;
      asyncDelivery: { answer: { body: string } } | null;
    }>;
    assert.equal(listed.find((e) => e.name === "sit")?.asyncDelivery?.answer.body, "success");
    assert.equal((await put("sit", { baseUrl: prod.url, asyncDelivery: {} })).body.asyncDelivery, null);
  });

  test("production is answered from a template only when its configuration says so explicitly", async () => {
    const refused = await put("prod", { baseUrl: prod.url, asyncDelivery: { answer: alipayAnswer } });
    assert.equal(refused.status, 400);
    assert.equal((refused.body.details as { field: string }).field, "asyncDelivery.allowOnProduction");
    assert.match(String(refused.body.message), /hidden from them and they never retry/);

    // Nor by becoming production: a test environment answered from a template cannot take production over without it.
    assert.equal((await put("uat", { baseUrl: prod.url, asyncDelivery: { answer: alipayAnswer } })).status, 200);
    const switched = await put("uat", { baseUrl: prod.url, production: true, replacesProduction: "prod" });
    assert.equal(switched.status, 400);
    assert.equal((switched.body.details as { field: string }).field, "asyncDelivery.allowOnProduction");
    const envs = (await d.api("GET", `${base}/environments`, undefined, viewerKey)).body.environments as Array<{
      name: string;
      production: boolean;
    }>;
    assert.deepEqual(
      envs.filter((e) => e.production).map((e) => e.name),
      ["prod"],
      "production did not move",
    );

    const allowed = await put("prod", { baseUrl: prod.url, asyncDelivery: { answer: alipayAnswer, allowOnProduction: true } });
    assert.equal(allowed.status, 200);
    const res = await notify(d.url, "P-1", { requestId: "async-prod-1" });
    assert.deepEqual([res.status, res.text], [200, "success"]);
    const decision = await decisionOf(d, "async-prod-1");
    await deliveryWhen(d, decision.id, "delivered to production", (x) => x.state === "delivered");
    assert.ok(prod.received.some((r) => r.headers["x-delivery-id"] === decision.id && r.verified));
    assert.equal((await put("prod", { baseUrl: prod.url, asyncDelivery: {} })).status, 200);
  });
});

describe("asynchronous delivery: answering, retrying, dead letters", () => {
  let d: Dispatcher;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;
  let lock: pg.Client | undefined;

  before(async () => {
    prod = await startSignedStub("prod", secret);
    sit = await startSignedStub("sit", secret);
    d = await startDispatcher({ ASYNC_DELIVERY_POLL_MS: "50", UPSTREAM_TIMEOUT_MS: "1000" });
    await setUp(d, prod.url);
  });
  after(async () => {
    await lock?.end();
    await d?.close();
    await Promise.all([prod?.close(), sit?.close()]);
  });

  test("the third party is answered from the template at once, by content type, and the environment gets the exact bytes later", async () => {
    // sit holds every request until released: the third party's answer cannot have come from it.
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const got: Array<{ url: string; headers: http.IncomingHttpHeaders; body: Buffer }> = [];
    /** When each delivery reached sit (before it was held). */
    const arrived = new Map<string, number>();
    const slow = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", async () => {
        arrived.set(String(req.headers["x-delivery-id"]), Date.now());
        await held;
        got.push({ url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(200, { "content-type": "text/plain" }).end("success");
      });
    });
    await new Promise<void>((resolve) => slow.listen(0, "127.0.0.1", resolve));
    try {
      const slowUrl = `http://127.0.0.1:${(slow.address() as AddressInfo).port}`;
      const saved = await d.api("PUT", `${base}/environments/sit`, {
        baseUrl: `${slowUrl}/app`,
        asyncDelivery: { answer: alipayAnswer, answerByContentType: { "text/xml": wechatAnswer } },
      });
      assert.equal(saved.status, 200, JSON.stringify(saved.body));
      await register(d, "sit", "SIT-1", "SIT-2");

      const form = await notify(d.url, "SIT-1", { requestId: "async-form-1" });
      assert.deepEqual(
        [form.status, form.contentType, form.text, form.requestId],
        [200, "text/plain; charset=utf-8", "success", "async-form-1"],
      );
      const xmlBody = "<xml><out_trade_no>SIT-2</out_trade_no></xml>";
      const xml = await notify(d.url, "SIT-2", { contentType: "text/xml; charset=utf-8", body: xmlBody, requestId: "async-xml-1" });
      assert.deepEqual([xml.status, xml.contentType, xml.text], [200, "application/xml", wechatAnswer.body]);
      assert.equal(got.length, 0, "answered before sit answered anything");

      const decision = await decisionOf(d, "async-form-1");
      assert.equal(decision.targetEnv, "sit");
      assert.match(String(decision.detail), /answered from sit's asynchronous template/);
      await eventually("the delivery to reach sit", async () => arrived.has(decision.id));
      release();
      const done = await deliveryWhen(d, decision.id, "delivered", (x) => x.state === "delivered");
      assert.deepEqual(
        done.attempts.map((a) => [a.attempt, a.status, a.error]),
        [[1, 200, null]],
      );
      // When the attempt began (as an interrupted attempt's time is): before sit had it, not when sit answered.
      assert.ok(Date.parse(done.attempts[0]!.at) <= arrived.get(decision.id)!, `${done.attempts[0]!.at} after sit had it`);
      const form1 = got.find((g) => g.headers["x-delivery-id"] === decision.id)!;
      assert.equal(form1.url, "/app/notify/pay?order=SIT-1");
      assert.equal(form1.body.toString(), "out_trade_no=SIT-1&trade_status=TRADE_SUCCESS");
      assert.equal(form1.headers["x-signature"], sign(secret, form1.body), "the platform's signature still verifies");
      assert.equal(form1.headers.authorization, "Bearer platform-token");
      assert.equal(form1.headers["x-request-id"], "async-form-1");
      assert.equal(form1.headers["x-delivery-attempt"], "1");
      // Shown masked, like the decision's kept callback; the decision itself links to the delivery.
      assert.equal(done.callback.headers.find((h) => h.name === "authorization")?.value, "[masked: 21 bytes]");
      const detail = await d.api("GET", `${base}/decisions/${decision.id}`, undefined, viewerKey);
      assert.equal((detail.body.asyncDelivery as { delivery: Delivery }).delivery.state, "delivered");
      await eventually("the XML one delivered too", () => got.length === 2);
    } finally {
      slow.closeAllConnections();
      slow.close();
    }
  });

  test("an environment down longer than the retry window: dead letter with the reason, listed, inspected, re-driven once it is back", async () => {
    assert.equal(
      (
        await d.api("PUT", `${base}/environments/uat`, {
          baseUrl: await downUrl(),
          asyncDelivery: { answer: alipayAnswer, ...quickRetries },
        })
      ).status,
      200,
    );
    await register(d, "uat", "UAT-1");
    const answered = await notify(d.url, "UAT-1", { requestId: "async-down-1", query: "&access_token=QTOKEN" });
    assert.deepEqual([answered.status, answered.text], [200, "success"]);
    const { id } = await decisionOf(d, "async-down-1");
    const dead = await deliveryWhen(d, id, "dead", (x) => x.state === "dead");
    assert.match(
      String(dead.delivery.deadReason),
      /^gave up after 3 attempts \(maxAttempts 3\); last: uat \(http:\/\/127\.0\.0\.1:\d+\) failed \(502\): .*ECONNREFUSED/,
    );
    assert.deepEqual(
      dead.attempts.map((a) => [a.attempt, a.status]),
      [
        [1, 502],
        [2, 502],
        [3, 502],
      ],
    );

    const list = await d.api("GET", `${base}/deliveries?state=dead&env=uat`, undefined, viewerKey);
    assert.deepEqual(
      (list.body.deliveries as Delivery[]).map((x) => [x.id, x.state]),
      [[id, "dead"]],
    );
    assert.equal(await metric(d.url, /^callback_dispatcher_async_dead_letters\{env="uat"[,}]/), 1);
    assert.equal(await metric(d.url, /^callback_dispatcher_async_pending\{env="uat"[,}]/), 0);
    assert.equal(await metric(d.url, /^callback_dispatcher_async_attempts_total\{env="uat",outcome="failed"[,}]/), 2);
    assert.equal(await metric(d.url, /^callback_dispatcher_async_attempts_total\{env="uat",outcome="dead"[,}]/), 1);
    assert.equal(await metric(d.url, /^callback_dispatcher_async_dead_lettered_total\{env="uat",reason="max_attempts"[,}]/), 1);

    // Back up: re-driven by an operator (not a viewer), delivered once, audited.
    const uat = await startSignedStub("uat", secret);
    try {
      assert.equal((await d.api("PUT", `${base}/environments/uat`, { baseUrl: uat.url })).status, 200);
      assert.equal((await d.api("POST", `${base}/deliveries/${id}/redrive`, {}, viewerKey)).status, 403);
      // No body at all, as `curl -X POST …/redrive` sends: to the environment it was owed to.
      const redriven = await d.api("POST", `${base}/deliveries/${id}/redrive`);
      assert.equal(redriven.status, 202, JSON.stringify(redriven.body));
      // Shown as every other view shows it: the credential in its query redacted (the delivery sends it as it came).
      assert.equal((redriven.body.delivery as Delivery).target, "/notify/pay?order=UAT-1&access_token=[redacted]");
      const delivered = await deliveryWhen(d, id, "delivered after the re-drive", (x) => x.state === "delivered");
      assert.deepEqual(delivered.attempts.at(-1) && [delivered.attempts.at(-1)!.attempt, delivered.attempts.at(-1)!.status], [4, 200]);
      assert.equal(uat.received.filter((r) => r.headers["x-delivery-id"] === id).length, 1);
      assert.ok(uat.received[0]!.verified);
      const again = await d.api("POST", `${base}/deliveries/${id}/redrive`, {});
      assert.equal(again.status, 409);
      assert.match(String(again.body.message), /was delivered; to send it again, replay its decision/);
      const audit = await d.svc.ctx.pool.query<{ actor: string; before: { deadReason: string } }>(
        "SELECT actor, before FROM audit_log WHERE action = 'callback.redrive' AND target = $1",
        [`delivery/${id}`],
      );
      assert.equal(audit.rows.length, 1);
      assert.equal(audit.rows[0]!.actor, "key:ops");
      assert.match(audit.rows[0]!.before.deadReason, /gave up after 3 attempts/);
    } finally {
      await uat.close();
    }
  });

  test("past maxAgeSeconds no attempt is made: dead letter naming the age", async () => {
    assert.equal(
      (
        await d.api("PUT", `${base}/environments/uat2`, {
          baseUrl: await downUrl(),
          asyncDelivery: { answer: alipayAnswer, maxAttempts: 100, maxAgeSeconds: 1, initialBackoffMs: 200, maxBackoffMs: 400 },
        })
      ).status,
      200,
    );
    await register(d, "uat2", "UAT2-1");
    assert.equal((await notify(d.url, "UAT2-1", { requestId: "async-age-1" })).text, "success");
    const { id } = await decisionOf(d, "async-age-1");
    const dead = await deliveryWhen(d, id, "dead", (x) => x.state === "dead");
    assert.match(String(dead.delivery.deadReason), /^gave up after \d+ attempts in 1 s \(maxAgeSeconds\); last: uat2 .* failed \(502\)/);
    assert.ok(dead.delivery.attempts < 100);
  });

  test("an environment deleted while its deliveries are pending: dead-lettered naming the deletion, re-driven elsewhere", async () => {
    // A long backoff: after its first failed attempt the delivery waits a minute.
    assert.equal(
      (
        await d.api("PUT", `${base}/environments/sit3`, {
          baseUrl: await downUrl(),
          asyncDelivery: { answer: alipayAnswer, initialBackoffMs: 60_000 },
        })
      ).status,
      200,
    );
    await register(d, "sit3", "SIT3-1");
    assert.equal((await notify(d.url, "SIT3-1", { requestId: "async-deleted-1" })).text, "success");
    const { id } = await decisionOf(d, "async-deleted-1");
    await deliveryWhen(d, id, "waiting for its second attempt", (x) => x.state === "pending" && x.attempts === 1 && x.lastStatus === 502);

    assert.equal((await d.api("DELETE", `${base}/environments/sit3`)).status, 204);
    const dead = await deliveryWhen(d, id, "dead", (x) => x.state === "dead");
    assert.match(String(dead.delivery.deadReason), /environment sit3 no longer exists \(deleted while this delivery was pending\)/);
    assert.equal(dead.delivery.attempts, 1, "no attempt was made after the deletion");

    const nowhere = await d.api("POST", `${base}/deliveries/${id}/redrive`, {});
    assert.equal(nowhere.status, 409);
    assert.match(String(nowhere.body.message), /sit3, where it was owed, no longer exists; name one/);
    assert.equal((await d.api("POST", `${base}/deliveries/${id}/redrive`, { env: "nope" })).status, 404);
    const before = sit.received.length;
    assert.equal((await d.api("PUT", `${base}/environments/sit`, { baseUrl: sit.url, asyncDelivery: {} })).status, 200);
    const moved = await d.api("POST", `${base}/deliveries/${id}/redrive`, { env: "sit" });
    assert.equal(moved.status, 202);
    await deliveryWhen(d, id, "delivered to sit", (x) => x.state === "delivered" && x.env === "sit");
    assert.equal(sit.received.length, before + 1);
    assert.equal(sit.received.at(-1)!.headers["x-request-id"], "async-deleted-1");
  });

  test("a callback that cannot be queued in time is forwarded synchronously: nothing is answered that is not written", async () => {
    assert.equal(
      (await d.api("PUT", `${base}/environments/sit`, { baseUrl: sit.url, asyncDelivery: { answer: alipayAnswer } })).status,
      200,
    );
    await register(d, "sit", "SIT-LOCK");
    // Another session holds the queue's table: the write waits, then PostgreSQL cancels it (UPSTREAM_TIMEOUT_MS).
    lock = new pg.Client({ connectionString: d.databaseUrl });
    await lock.connect();
    await lock.query('BEGIN; LOCK TABLE "callback_dispatcher".async_deliveries IN ACCESS EXCLUSIVE MODE');
    const before = sit.received.length;
    const res = await notify(d.url, "SIT-LOCK", { requestId: "async-locked-1" });
    await lock.query("ROLLBACK");
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.text), { ok: true, env: "sit" }, "sit's own answer, not the template");
    assert.equal(sit.received.length, before + 1);
    const decision = await decisionOf(d, "async-locked-1");
    assert.match(
      String(decision.detail),
      // PostgreSQL's statement timeout and the write's own deadline are the same length; either may tell.
      /not queued for asynchronous delivery \((canceling statement due to statement timeout|transaction did not finish within 1000 ms)\); forwarded synchronously/,
    );
    const detail = await d.api("GET", `${base}/decisions/${decision.id}`, undefined, viewerKey);
    assert.equal(detail.body.asyncDelivery, null, "nothing owed");
    assert.equal(await metric(d.url, /^callback_dispatcher_async_fallbacks_total\{env="sit"[,}]/), 1);
  });
});

describe("asynchronous delivery: a database that stops answering", () => {
  let db: TestDatabase;
  let proxy: CuttableProxy;
  let d: Dispatcher;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;

  before(async () => {
    prod = await startSignedStub("prod", secret);
    sit = await startSignedStub("sit", secret);
    db = await createTestDatabase();
    let viaProxy: string;
    ({ proxy, url: viaProxy } = await proxiedUrl(db.url, 5432));
    // pg's own query timeout out of reach: only the write's deadline can end the wait. Registrations
    // in memory (no Redis): the lookup needs no database, only the write does.
    d = await startDispatcher(
      { UPSTREAM_TIMEOUT_MS: "1000", DATABASE_QUERY_TIMEOUT_MS: "600000" },
      { databaseUrl: viaProxy, redis: false },
    );
    await setUp(d, prod.url);
    const saved = await d.api("PUT", `${base}/environments/sit`, { baseUrl: sit.url, asyncDelivery: { answer: alipayAnswer } });
    assert.equal(saved.status, 200, JSON.stringify(saved.body));
    await register(d, "sit", "SIT-STALL");
  });
  after(async () => {
    proxy?.heal();
    await d?.close();
    await proxy?.close();
    await db?.drop();
    await Promise.all([prod?.close(), sit?.close()]);
  });

  // statement_timeout is PostgreSQL's: a network that stops passing bytes never lets it answer, and
  // third parties give up (then send again) long before pg's own query timeout.
  test("a callback is forwarded synchronously at the write's deadline, not held until the database answers", async () => {
    proxy.blackhole();
    const res = await notify(d.url, "SIT-STALL", { requestId: "async-stalled-1" });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.text), { ok: true, env: "sit" }, "sit's own answer, not the template");
    assert.ok(sit.received.some((x) => x.headers["x-request-id"] === "async-stalled-1"));
    proxy.heal();
    const decision = await decisionOf(d, "async-stalled-1");
    assert.match(
      String(decision.detail),
      /not queued for asynchronous delivery \(transaction did not finish within 1000 ms\); forwarded synchronously/,
    );
  });

  test("/metrics answers within its deadline while the database does not answer, with the last counts", async () => {
    assert.equal((await fetch(`${d.url}/metrics`)).status, 200);
    proxy.blackhole();
    try {
      // Scrapes within a second share one count; until one has to count again (and so meets the stalled database).
      await eventually("a scrape that counted again", async () => {
        const started = performance.now();
        // Before: held for the pool's query timeout, past any scrape timeout (Prometheus's default is 10 s).
        const res = await fetch(`${d.url}/metrics`, { signal: AbortSignal.timeout(8_000) });
        assert.equal(res.status, 200);
        assert.match(await res.text(), /^callback_dispatcher_async_pending\{env="sit"/m, "the last counts");
        const tookMs = performance.now() - started;
        assert.ok(tookMs < 5_000, `answered after ${Math.round(tookMs)} ms`);
        return tookMs >= 900;
      });
    } finally {
      proxy.heal();
    }
  });
});

describe("asynchronous delivery: an environment that never answers", () => {
  const timeoutMs = 2_000;
  let d: Dispatcher;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;
  let hung: Awaited<ReturnType<typeof startSignedStub>>;

  before(async () => {
    prod = await startSignedStub("prod", secret);
    sit = await startSignedStub("sit", secret);
    hung = await startSignedStub("hung", secret, { hang: true });
    // Four slots, so at most two for one environment.
    d = await startDispatcher({ ASYNC_DELIVERY_POLL_MS: "50", ASYNC_DELIVERY_CONCURRENCY: "4", UPSTREAM_TIMEOUT_MS: String(timeoutMs) });
    await setUp(d, prod.url);
    for (const [name, url] of [
      ["hung", hung.url],
      ["sit", sit.url],
    ])
      assert.equal(
        (await d.api("PUT", `${base}/environments/${name}`, { baseUrl: url, asyncDelivery: { answer: alipayAnswer } })).status,
        200,
      );
    await register(d, "hung", ...Array.from({ length: 12 }, (_, i) => `HUNG-${i}`));
    await register(d, "sit", "SIT-A", "SIT-B", "SIT-C");
  });
  after(async () => {
    await d?.close();
    await Promise.all([prod?.close(), sit?.close(), hung?.close()]);
  });

  test("its backlog takes at most its share of the slots: another environment's deliveries go out at once", async () => {
    for (let i = 0; i < 12; i++) assert.equal((await notify(d.url, `HUNG-${i}`)).status, 200);
    const queued = performance.now();
    for (const id of ["SIT-A", "SIT-B", "SIT-C"]) assert.equal((await notify(d.url, id)).status, 200);
    await eventually("sit's three deliveries", () => sit.received.length === 3, 15_000);
    const tookMs = performance.now() - queued;
    // Before, the backlog's twelve took every slot, each held for the upstream timeout: sit waited three of them.
    assert.ok(tookMs < timeoutMs, `sit's deliveries went out ${Math.round(tookMs)} ms after they were queued`);
    const { body } = await d.api("GET", `${base}/deliveries?env=hung&state=pending`, undefined, viewerKey);
    assert.equal((body.deliveries as unknown[]).length, 12, "the hung environment's deliveries are still owed");
  });
});

describe("asynchronous delivery: two replicas on one database", () => {
  let a: Dispatcher;
  let b: Dispatcher;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let env: http.Server;

  after(async () => {
    await b?.close();
    await a?.close();
    await prod?.close();
    env?.closeAllConnections();
    env?.close();
  });

  test("never deliver the same item at the same time, and deliver each once", async () => {
    // The environment answers each delivery's first attempt 503 (so it is retried, by either replica) and the second 200,
    // slowly; it notes any delivery that arrives while another attempt of it is still in flight. It answers nothing until
    // both replicas have claimed a delivery: the replica that claims first would otherwise, on a busy machine, reclaim
    // every slot it frees before the other's next poll, and the test would say nothing about two replicas.
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => {
      openGate = resolve;
    });
    const inFlight = new Set<string>();
    const overlaps: string[] = [];
    const attempts = new Map<string, number>();
    const succeeded = new Map<string, number>();
    env = http.createServer((req, res) => {
      const id = String(req.headers["x-delivery-id"]);
      if (inFlight.has(id)) overlaps.push(id);
      inFlight.add(id);
      const n = (attempts.get(id) ?? 0) + 1;
      attempts.set(id, n);
      req.resume();
      req.on("end", async () => {
        await gate;
        setTimeout(() => {
          inFlight.delete(id);
          if (n === 1) return res.writeHead(503).end("busy");
          succeeded.set(id, (succeeded.get(id) ?? 0) + 1);
          res.writeHead(200).end("success");
        }, 40);
      });
    });
    await new Promise<void>((resolve) => env.listen(0, "127.0.0.1", resolve));
    prod = await startSignedStub("prod", secret);
    const shared = {
      ASYNC_DELIVERY_POLL_MS: "30",
      ASYNC_DELIVERY_CONCURRENCY: "3",
      // Room for both replicas' three at once: the default (2 across the replicas) would let the first take every slot.
      ASYNC_DELIVERY_PER_ENVIRONMENT: "6",
      REDIS_KEY_PREFIX: `t:${process.pid}:replicas:`,
    };
    a = await startDispatcher(shared);
    b = await startDispatcher(shared, { databaseUrl: a.databaseUrl });
    await setUp(a, prod.url);
    const saved = await a.api("PUT", `${base}/environments/sit`, {
      baseUrl: `http://127.0.0.1:${(env.address() as AddressInfo).port}`,
      asyncDelivery: { answer: alipayAnswer, initialBackoffMs: 100, maxBackoffMs: 100 },
    });
    assert.equal(saved.status, 200);
    const ids = Array.from({ length: 40 }, (_, i) => `R-${i}`);
    await register(a, "sit", ...ids);
    const ruleSetVersion = async (x: Dispatcher) =>
      (await x.api("POST", "/ops.v1.CallbackDispatcherService/GetRuleSetVersion", {}, viewerKey)).body.version;
    const version = await ruleSetVersion(a);
    await eventually("replica b routes by the same rules and environments", async () => (await ruleSetVersion(b)) === version);
    // Callbacks arrive at both replicas, as a load balancer would spread them.
    const answers = await Promise.all(ids.map((id, i) => notify((i % 2 ? b : a).url, id, { requestId: `replicas-${id}` })));
    assert.deepEqual(
      answers.filter((x) => x.status !== 200 || x.text !== "success"),
      [],
      "every callback answered from the template",
    );

    const pool = a.svc.ctx.pool;
    await eventually(
      "both replicas have a delivery in flight",
      async () =>
        (
          await pool.query(
            "SELECT count(DISTINCT leased_by)::int AS n FROM async_deliveries WHERE state = 'pending' AND leased_by IS NOT NULL",
          )
        ).rows[0].n === 2,
    );
    openGate();
    await eventually(
      "all 40 delivered",
      async () => (await pool.query("SELECT count(*)::int AS n FROM async_deliveries WHERE state = 'delivered'")).rows[0].n === 40,
      30_000,
    );
    assert.deepEqual(overlaps, [], "no delivery was in flight twice at once");
    assert.equal(succeeded.size, 40);
    assert.ok(
      [...succeeded.values()].every((n) => n === 1),
      "each delivered once",
    );
    assert.ok(
      [...attempts.values()].every((n) => n === 2),
      "each attempted exactly twice: the 503, then the 200",
    );
    const { rows } = await pool.query<{ replica: string; n: number }>(
      "SELECT replica, count(*)::int AS n FROM async_delivery_attempts GROUP BY replica ORDER BY replica",
    );
    assert.equal(rows.length, 2, `both replicas delivered: ${JSON.stringify(rows)}`);
    assert.equal(
      rows.reduce((s, r) => s + r.n, 0),
      80,
    );
  });
});

describe("asynchronous delivery: what operators may do", () => {
  let d: Dispatcher;
  before(async () => {
    d = await startDispatcher();
  });
  after(async () => d?.close());

  test("viewers read deliveries; bad filters are 400 naming them", async () => {
    assert.equal((await d.api("GET", `${base}/deliveries?state=dead`, undefined, viewerKey)).status, 200);
    const badState = await d.api("GET", `${base}/deliveries?state=lost`, undefined, viewerKey);
    assert.equal(badState.status, 400);
    assert.equal(badState.body.message, "querystring/state must be equal to one of the allowed values (pending, delivered, dead)");
    assert.deepEqual(badState.body.details, { field: "state", in: "querystring", allowed: ["pending", "delivered", "dead"] });
    const badFrom = await d.api("GET", `${base}/deliveries?from=monday`, undefined, viewerKey);
    assert.equal(badFrom.status, 400);
    assert.match(String(badFrom.body.message), /from must be an RFC 3339 date-time/);
    // Swapped, a range finds nothing: refused rather than answered with an empty page.
    const swapped = await d.api("GET", `${base}/deliveries?from=2026-05-02T00:00:00Z&to=2026-05-01T00:00:00Z`, undefined, viewerKey);
    assert.equal(swapped.status, 400);
    assert.equal(swapped.body.message, "from (2026-05-02T00:00:00Z) is after to (2026-05-01T00:00:00Z): swap them");
    const unknown = await d.api("GET", `${base}/deliveries?status=dead`, undefined, viewerKey);
    assert.equal(unknown.status, 400);
    assert.match(String(unknown.body.message), /unknown field "status"/);
    assert.equal((await d.api("GET", `${base}/deliveries/123`, undefined, viewerKey)).status, 404);
    assert.equal((await d.api("POST", `${base}/deliveries/123/redrive`, {}, operatorKey)).status, 404);
  });

  test("an id or page token PostgreSQL's bigint cannot hold: 404 for the delivery, 400 naming the page token", async () => {
    for (const id of ["9223372036854775808", "99999999999999999999"]) {
      const shown = await d.api("GET", `${base}/deliveries/${id}`, undefined, viewerKey);
      assert.equal(shown.status, 404, `${id}: ${JSON.stringify(shown.body)}`);
      assert.equal(shown.body.message, `no asynchronous delivery ${id}`);
      const redriven = await d.api("POST", `${base}/deliveries/${id}/redrive`, {}, operatorKey);
      assert.equal(redriven.status, 404, `${id}: ${JSON.stringify(redriven.body)}`);
      assert.equal(redriven.body.message, `no asynchronous delivery ${id}`);
    }
    for (const pageToken of ["9223372036854775808", "99999999999999999999"]) {
      const listed = await d.api("GET", `${base}/deliveries?state=dead&pageToken=${pageToken}`, undefined, viewerKey);
      assert.equal(listed.status, 400, `${pageToken}: ${JSON.stringify(listed.body)}`);
      assert.match(String(listed.body.message), /^pageToken must be a nextPageToken this API returned/);
    }
  });

  test("a re-drive posted with no body is {} whatever its Content-Type", async () => {
    for (const contentType of ["text/plain", "application/octet-stream"]) {
      const res = await fetch(`${d.url}${base}/deliveries/123/redrive`, {
        method: "POST",
        headers: { authorization: `Bearer ${operatorKey}`, "content-type": contentType },
      });
      const body = (await res.json()) as { message: string };
      assert.equal(res.status, 404, `${contentType}: past the body, to the delivery that is not there: ${JSON.stringify(body)}`);
      assert.equal(body.message, "no asynchronous delivery 123");
    }
  });

  test("a re-drive posted as a form is 415 naming the content type it takes", async () => {
    const res = await fetch(`${d.url}${base}/deliveries/123/redrive`, {
      method: "POST",
      headers: { authorization: `Bearer ${operatorKey}`, "content-type": "application/x-www-form-urlencoded" },
      body: "env=sit",
    });
    assert.equal(res.status, 415);
    assert.deepEqual(await res.json(), {
      error: "unsupported_media_type",
      message: 'content-type "application/x-www-form-urlencoded" is not accepted: send the body as JSON (content-type: application/json)',
    });
  });
});

describe("asynchronous delivery: listing", () => {
  let d: Dispatcher;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  before(async () => {
    prod = await startSignedStub("prod", secret);
    d = await startDispatcher();
    await setUp(d, prod.url);
  });
  after(async () => {
    await d?.close();
    await prod?.close();
  });

  test("deliveries list newest first by number, and pages reach every one once (ids past 9 and 99 too)", async () => {
    const sit = {
      baseUrl: await downUrl(),
      asyncDelivery: { answer: alipayAnswer, maxAttempts: 100, initialBackoffMs: 60_000, maxBackoffMs: 60_000 },
    };
    assert.equal((await d.api("PUT", `${base}/environments/sit`, sit)).status, 200);
    const orders = Array.from({ length: 12 }, (_, i) => `L${i}`);
    await register(d, "sit", ...orders);
    const sent: string[] = [];
    for (const order of orders) {
      const answer = await notify(d.url, order, { requestId: `list-${order}` });
      assert.equal(answer.text, "success");
      sent.push(String((await decisionOf(d, `list-${order}`)).id));
    }
    const listed: string[] = [];
    let pageToken = "";
    do {
      const { status, body } = await d.api(
        "GET",
        `${base}/deliveries?limit=5${pageToken ? `&pageToken=${pageToken}` : ""}`,
        undefined,
        viewerKey,
      );
      assert.equal(status, 200, JSON.stringify(body));
      listed.push(...(body.deliveries as Delivery[]).map((x) => x.id));
      pageToken = String(body.nextPageToken);
    } while (pageToken);
    const newestFirst = [...sent].sort((a, b) => Number(b) - Number(a));
    assert.deepEqual(listed, newestFirst);
  });
});
