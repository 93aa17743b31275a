import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { createDecisionLog } from "../src/decision-log.js";
import { createDecisionRetention } from "../src/decision-retention.js";
import { agentApp, operatorKey, startDispatcher, viewerKey } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";
import { startSwitchingEnvironment } from "./helpers/switching-environment.js";

const secret = "platform-secret";
const agentAuth = `Basic ${Buffer.from(`${agentApp.id}:${agentApp.secret}`).toString("base64")}`;

interface Decision {
  id: string;
  requestId: string;
  objectId: string | null;
  targetEnv: string | null;
  reason: string;
  replayable: boolean;
}

interface Replay {
  id: string;
  env: string;
  targetEnv?: string;
  status: number;
  error: string | null;
}

// A test environment down longer than the third party's retry schedule loses its callback for good,
// unless the dispatcher keeps it: each callback is kept with its decision and can be sent again.
describe("kept callbacks: search, show, replay", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;
  let uat: Awaited<ReturnType<typeof startSignedStub>>;

  before(async () => {
    prod = await startSignedStub("prod", secret);
    sit = await startSignedStub("sit", secret);
    uat = await startSignedStub("uat", secret);
    d = await startDispatcher({ CALLBACK_STORE_MAX_BYTES: "4096" });
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true })).status, 200);
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: `${sit.url}/app` })).status, 200);
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/uat", { baseUrl: uat.url })).status, 200);
    const rule = {
      interface: { pattern: "/api/pay", id: { kind: "query", expr: "orderNo" } },
      callback: { pattern: "/notify/pay", id: { kind: "query", expr: "order" } },
      ttlSeconds: 600,
    };
    assert.equal((await d.api("PUT", "/_dispatcher/v1/rules/pay", rule)).status, 200);
    const reg = await fetch(`${d.url}/_dispatcher/v1/registrations`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: agentAuth },
      body: JSON.stringify({ env: "sit", registrations: [{ rule: "pay", id: "SIT-1" }] }),
    });
    assert.equal(reg.status, 200);
  });

  after(async () => {
    await d?.close();
    await Promise.all([prod?.close(), sit?.close(), uat?.close()]);
  });

  /** A signed callback with a body that is not UTF-8 (GBK text), a foreign Authorization and a cookie. */
  async function callback(order: string, body: Buffer, requestId: string) {
    const res = await fetch(`${d.url}/notify/pay?order=${order}&charset=GBK`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded; charset=GBK",
        "x-signature": sign(secret, body),
        authorization: "Bearer platform-token-abc",
        cookie: "session=s3cr3t",
        "x-request-id": requestId,
      },
      body: new Uint8Array(body),
    });
    await res.arrayBuffer();
    return res.status;
  }

  const gbk = Buffer.from([0x6f, 0x72, 0x64, 0x65, 0x72, 0x3d, 0xd6, 0xa7, 0xb8, 0xb6, 0xb3, 0xc9, 0xb9, 0xa6]); // "order=支付成功" in GBK

  const find = (query: string) =>
    eventually(`decisions for ${query}`, async () => {
      const { body } = await d.api("GET", `/_dispatcher/v1/decisions?${query}`, undefined, viewerKey);
      const list = body.decisions as Decision[];
      return list.length ? list : undefined;
    });

  const replay = (id: string, body: object = {}, key?: string) => d.api("POST", `/_dispatcher/v1/decisions/${id}/replay`, body, key);

  test("a callback is kept byte for byte and shown with its secrets masked", async () => {
    assert.equal(await callback("SIT-1", gbk, "req-keep-1"), 200);
    const [decision] = await find("requestId=req-keep-1");
    assert.equal(decision!.targetEnv, "sit");
    assert.equal(decision!.replayable, true);
    const { status, body } = await d.api("GET", `/_dispatcher/v1/decisions/${decision!.id}`, undefined, viewerKey);
    assert.equal(status, 200);
    const kept = body.callback as {
      target: string;
      headers: Array<{ name: string; value: string }>;
      body: string;
      bodyText: string | null;
    };
    assert.equal(kept.target, "/notify/pay?order=SIT-1&charset=GBK");
    assert.deepEqual(Buffer.from(kept.body, "base64"), gbk, "the exact bytes, not a re-encoding");
    assert.equal(kept.bodyText, null, "GBK is not shown as if it were UTF-8");
    const header = (n: string) => kept.headers.find((h) => h.name.toLowerCase() === n)?.value;
    assert.equal(header("authorization"), "[masked: 25 bytes]");
    assert.equal(header("cookie"), "[masked: 14 bytes]");
    assert.match(header("x-signature") ?? "", /^\[masked: 64 bytes\]$/);
    assert.equal(header("content-type"), "application/x-www-form-urlencoded; charset=GBK");
    assert.doesNotMatch(JSON.stringify(body), /platform-token-abc|s3cr3t/);
  });

  test("credentials in the query and in headers such as X-Auth, Private-Key, X-Passwd, X-Sig and X-Shopify-Hmac-Sha256 are shown masked; a replay sends them as they came", async () => {
    const body = Buffer.from("order=SIT-5");
    const res = await fetch(`${d.url}/notify/pay?order=SIT-5&access_token=QTOKEN&sign=QSIGN&mch_key=QMCH&appkey=QAPP&paySign=QPAY`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "x-signature": sign(secret, body),
        "x-auth": "XAUTHVALUE",
        "private-key": "PRIVATEKEYVALUE",
        "x-passwd": "PASSWDVALUE",
        "x-mch-key": "MCHKEYVALUE",
        "x-passphrase": "PHRASEVALUE",
        "x-session": "SESSIONVALUE",
        // Bytes beyond ASCII (é, ÿ in Latin-1): 11 on the wire.
        "x-sig": "XSIGVALUE\u00e9\u00ff",
        "paypal-transmission-sig": "PAYPALSIGVALUE",
        "x-key": "XKEYVALUE",
        "x-shopify-hmac-sha256": "HMACVALUE",
        "idempotency-key": "order-5-once",
        "x-request-id": "req-creds-1",
      },
      body,
    });
    assert.equal(res.status, 200);
    const [decision] = await find("requestId=req-creds-1");
    const shown = await d.api("GET", `/_dispatcher/v1/decisions/${decision!.id}`, undefined, viewerKey);
    const kept = shown.body.callback as { target: string; headers: Array<{ name: string; value: string }> };
    // Before, a viewer read every one of them.
    assert.doesNotMatch(
      JSON.stringify(shown.body),
      /QTOKEN|QSIGN|QMCH|QAPP|QPAY|XAUTHVALUE|PRIVATEKEYVALUE|PASSWDVALUE|MCHKEYVALUE|PHRASEVALUE|SESSIONVALUE|XSIGVALUE|PAYPALSIGVALUE|XKEYVALUE|HMACVALUE/,
    );
    assert.equal(kept.headers.find((h) => h.name === "idempotency-key")?.value, "order-5-once", "no secret: shown");
    assert.equal(
      kept.target,
      "/notify/pay?order=SIT-5&access_token=[redacted]&sign=[redacted]&mch_key=[redacted]&appkey=[redacted]&paySign=[redacted]",
    );
    assert.equal(kept.headers.find((h) => h.name === "private-key")?.value, "[masked: 15 bytes]");
    // Counted as sent, not as the UTF-8 of their Latin-1 reading (13).
    assert.equal(kept.headers.find((h) => h.name === "x-sig")?.value, "[masked: 11 bytes]");
    const replayed = await replay(decision!.id, { env: "sit" });
    assert.equal(replayed.status, 200, JSON.stringify(replayed.body));
    const got = sit.received.at(-1)!;
    assert.equal(got.url, "/app/notify/pay?order=SIT-5&access_token=QTOKEN&sign=QSIGN&mch_key=QMCH&appkey=QAPP&paySign=QPAY");
    assert.deepEqual(
      [got.headers["x-auth"], got.headers["private-key"], got.headers["x-passwd"]],
      ["XAUTHVALUE", "PRIVATEKEYVALUE", "PASSWDVALUE"],
    );
  });

  test("a replay re-sends it byte for byte to the environment it was routed to, audited", async () => {
    const [decision] = await find("requestId=req-keep-1");
    const before = sit.received.length;
    const res = await replay(decision!.id);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const r = res.body.replay as Replay;
    assert.equal(r.env, "sit");
    assert.equal(r.status, 200);
    assert.equal(sit.received.length, before + 1);
    const got = sit.received.at(-1)!;
    assert.equal(got.url, "/app/notify/pay?order=SIT-1&charset=GBK");
    assert.deepEqual(got.body, gbk);
    assert.ok(got.verified, "the platform's signature still verifies");
    assert.equal(got.headers.authorization, "Bearer platform-token-abc");
    assert.equal(got.headers["x-replay-of"], "req-keep-1");
    const audit = await d.svc.ctx.pool.query<{ actor: string; after: { env: string } }>(
      "SELECT actor, after FROM audit_log WHERE action = 'callback.replay' AND target = $1",
      [`decision/${decision!.id}`],
    );
    assert.deepEqual(
      audit.rows.map((x) => [x.actor, x.after.env]),
      [["key:ops", "sit"]],
    );
    const detail = await d.api("GET", `/_dispatcher/v1/decisions/${decision!.id}`, undefined, viewerKey);
    assert.deepEqual(
      (detail.body.replays as Replay[]).map((x) => [x.targetEnv, x.status]),
      [["sit", 200]],
    );
  });

  // "05" named decision 5 but was answered and audited as typed, so an audit search for decision/5 missed it.
  test("a decision id written with leading zeros replays that decision, answered and audited by its id", async () => {
    const [decision] = await find("requestId=req-keep-1");
    const audited = async (target: string) =>
      (await d.svc.ctx.pool.query("SELECT 1 FROM audit_log WHERE action = 'callback.replay' AND target = $1", [target])).rowCount;
    const before = await audited(`decision/${decision!.id}`);
    const res = await replay(`00${decision!.id}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal((res.body.replay as { decisionId: string }).decisionId, decision!.id);
    assert.equal(await audited(`decision/${decision!.id}`), before! + 1);
    assert.equal(await audited(`decision/00${decision!.id}`), 0);
  });

  test("a decision's replays are shown in the order they were made, past replay 9 and 99 too", async () => {
    assert.equal(await callback("SIT-1", gbk, "req-replay-order"), 200);
    const [decision] = await find("requestId=req-replay-order");
    const made: string[] = [];
    // Replay until the replay ids gain a digit: that is where ordering them as text went wrong ("10" before "9").
    while (made.length < 2 || made.at(-1)!.length === made[0]!.length) {
      const res = await replay(decision!.id);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      made.push((res.body.replay as Replay).id);
    }
    const detail = await d.api("GET", `/_dispatcher/v1/decisions/${decision!.id}`, undefined, viewerKey);
    assert.deepEqual(
      (detail.body.replays as Replay[]).map((x) => x.id),
      made,
    );
  });

  test("a callback lost while its environment was down is delivered by a replay once it is back", async () => {
    await sit.close();
    assert.equal(await callback("SIT-1", Buffer.from("order=SIT-1&n=2"), "req-down-1"), 502);
    const [decision] = await find("requestId=req-down-1");
    assert.equal(decision!.reason, "registered");
    const down = await replay(decision!.id);
    assert.equal((down.body.replay as Replay).status, 502);
    sit = await startSignedStub("sit", secret);
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: `${sit.url}/app` })).status, 200);
    const up = await replay(decision!.id);
    assert.equal((up.body.replay as Replay).status, 200);
    assert.deepEqual(sit.received.at(-1)?.body, Buffer.from("order=SIT-1&n=2"));
  });

  test("a replay goes to a named test environment; to production only when production is named", async () => {
    const [toSit] = await find("requestId=req-keep-1");
    const named = await replay(toSit!.id, { env: "uat" });
    assert.equal((named.body.replay as Replay).env, "uat");
    assert.deepEqual(uat.received.at(-1)?.body, gbk);

    assert.equal(await callback("PROD-7", Buffer.from("order=PROD-7"), "req-prod-1"), 200);
    const [toProd] = await find("requestId=req-prod-1");
    assert.equal(toProd!.targetEnv, "prod");
    const prodBefore = prod.received.length;
    const refused = await replay(toProd!.id);
    assert.equal(refused.status, 409);
    assert.match(String(refused.body.message), /routed to production \(prod\).*Name it \("env": "prod"\)/);
    assert.equal(prod.received.length, prodBefore, "nothing sent to production");
    const explicit = await replay(toProd!.id, { env: "prod" });
    assert.equal((explicit.body.replay as Replay).status, 200);
    assert.equal(prod.received.length, prodBefore + 1);
  });

  test("a replay to an environment answering 101 Switching Protocols is 502, saying so in words", async () => {
    const switching = await startSwitchingEnvironment();
    try {
      assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/switching", { baseUrl: switching.url })).status, 200);
      assert.equal(await callback("SIT-1", Buffer.from("order=SIT-1&n=3"), "req-switch-1"), 200);
      const [kept] = await find("requestId=req-switch-1");
      for (let i = 0; i < switching.answers; i++) {
        const r = await replay(kept!.id, { env: "switching" });
        assert.equal((r.body.replay as Replay).status, 502);
        assert.equal((r.body.replay as Replay).error, "answered 101 Switching Protocols, though a callback asks for no protocol switch");
      }
    } finally {
      switching.close();
    }
  });

  test("Connect ReplayCallback replays too, for operators only", async () => {
    const [decision] = await find("requestId=req-keep-1");
    const rpc = (key: string) =>
      fetch(`${d.url}/ops.v1.CallbackDispatcherService/ReplayCallback`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body: JSON.stringify({ decisionId: decision!.id, env: "uat" }),
      });
    const before = uat.received.length;
    const denied = await rpc(viewerKey);
    assert.equal(denied.status, 403);
    assert.equal(((await denied.json()) as { code: string }).code, "permission_denied");
    assert.equal(uat.received.length, before);
    const res = await rpc(operatorKey);
    assert.equal(res.status, 200);
    const out = (await res.json()) as { replayId: string; env: string; status: number };
    assert.equal(out.env, "uat");
    assert.equal(out.status, 200);
    assert.ok(out.replayId);
    assert.deepEqual(uat.received.at(-1)?.body, gbk);
  });

  test("a replay posted with no body is {} whatever its Content-Type; a body that is there must be JSON (415 otherwise)", async () => {
    const [decision] = await find("requestId=req-keep-1");
    const post = (headers: Record<string, string>, body?: string) =>
      fetch(`${d.url}/_dispatcher/v1/decisions/${decision!.id}/replay`, {
        method: "POST",
        headers: { authorization: `Bearer ${operatorKey}`, ...headers },
        body,
      });
    for (const contentType of ["text/plain", "application/octet-stream"]) {
      const before = sit.received.length;
      const res = await post({ "content-type": contentType });
      const body = (await res.json()) as { replay: Replay };
      assert.equal(res.status, 200, `${contentType}: ${JSON.stringify(body)}`);
      assert.equal(body.replay.env, "sit", "to where it was routed, as with {}");
      assert.equal(sit.received.length, before + 1);
    }
    const sent = [sit.received.length, uat.received.length];
    const text = await post({ "content-type": "text/plain" }, "env=uat");
    assert.equal(text.status, 415);
    assert.match(
      ((await text.json()) as { message: string }).message,
      /^content-type "text\/plain" is not accepted: send the body as JSON/,
    );
    assert.deepEqual([sit.received.length, uat.received.length], sent, "nothing sent");
  });

  test("a replay posted as a form or as text is 415 naming the content type it takes, and nothing is sent", async () => {
    assert.equal(await callback("SIT-1", gbk, "req-form-1"), 200);
    const [decision] = await find("requestId=req-form-1");
    const sent = [sit.received.length, uat.received.length];
    // text/plain was read as a string and answered 400 "body must be object".
    for (const [contentType, body] of [
      ["application/x-www-form-urlencoded", "env=uat"],
      ["text/plain", '{"env":"uat"}'],
    ]) {
      const res = await fetch(`${d.url}/_dispatcher/v1/decisions/${decision!.id}/replay`, {
        method: "POST",
        headers: { authorization: `Bearer ${operatorKey}`, "content-type": contentType! },
        body,
      });
      assert.equal(res.status, 415, contentType);
      assert.deepEqual(await res.json(), {
        error: "unsupported_media_type",
        message: `content-type "${contentType}" is not accepted: send the body as JSON (content-type: application/json)`,
      });
    }
    assert.deepEqual([sit.received.length, uat.received.length], sent, "nothing sent");
  });

  // Production needs its name: the request cannot be done as it is (failed_precondition), nothing is a duplicate (already_exists).
  test("Connect ReplayCallback of a callback routed to production without env is failed_precondition, and nothing is sent", async () => {
    assert.equal(await callback("PROD-8", Buffer.from("order=PROD-8"), "req-prod-rpc"), 200);
    const [toProd] = await find("requestId=req-prod-rpc");
    const prodBefore = prod.received.length;
    const res = await fetch(`${d.url}/ops.v1.CallbackDispatcherService/ReplayCallback`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${operatorKey}` },
      body: JSON.stringify({ decisionId: toProd!.id }),
    });
    const body = (await res.json()) as { code: string; message: string };
    assert.equal(body.code, "failed_precondition", JSON.stringify(body));
    assert.match(body.message, /routed to production \(prod\).*Name it \("env": "prod"\)/);
    assert.equal(prod.received.length, prodBefore, "nothing sent to production");
  });

  test("a decision id PostgreSQL's bigint cannot hold is a decision that does not exist: 404, over REST and Connect", async () => {
    // 101 digits: past fastify's default path-parameter length, which answered 400 quoting the URL.
    for (const id of ["9223372036854775808", "99999999999999999999", "9".repeat(101)]) {
      const shown = await d.api("GET", `/_dispatcher/v1/decisions/${id}`, undefined, viewerKey);
      assert.equal(shown.status, 404, `${id}: ${JSON.stringify(shown.body)}`);
      assert.equal(shown.body.message, `no decision ${id}`);
      const replayed = await replay(id);
      assert.equal(replayed.status, 404, `${id}: ${JSON.stringify(replayed.body)}`);
      assert.equal(replayed.body.message, `no decision ${id}`);
      const rpc = await fetch(`${d.url}/ops.v1.CallbackDispatcherService/ReplayCallback`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${operatorKey}` },
        body: JSON.stringify({ decisionId: id }),
      });
      assert.equal(rpc.status, 404);
      assert.deepEqual(await rpc.json(), { code: "not_found", message: `no decision ${id}` });
    }
    const largest = await d.api("GET", "/_dispatcher/v1/decisions/9223372036854775807", undefined, viewerKey);
    assert.equal(largest.status, 404, "the largest bigint is looked up as any other id");
  });

  test("only operators replay: a viewer gets 403 and nothing is sent", async () => {
    const [decision] = await find("requestId=req-keep-1");
    const before = sit.received.length;
    const res = await replay(decision!.id, {}, viewerKey);
    assert.equal(res.status, 403);
    assert.equal(sit.received.length, before);
  });

  test("a body over CALLBACK_STORE_MAX_BYTES is recorded but not kept: its replay is refused, naming why", async () => {
    const big = Buffer.from(`order=SIT-1&pad=${"x".repeat(5000)}`);
    assert.equal(await callback("SIT-1", big, "req-big-1"), 200);
    const [decision] = await find("requestId=req-big-1");
    assert.equal(decision!.replayable, false);
    const res = await replay(decision!.id);
    assert.equal(res.status, 409);
    assert.match(String(res.body.message), /larger than CALLBACK_STORE_MAX_BYTES/);
  });

  test("decisions are searched by reason, rule, id, request id and time range, a page at a time", async () => {
    const from = new Date().toISOString();
    for (let i = 0; i < 5; i++) assert.equal(await callback(`PG-${i}`, Buffer.from(`order=PG-${i}`), `req-page-${i}`), 200);
    await find("requestId=req-page-4");
    const seen: string[] = [];
    let token = "";
    for (let pages = 0; pages < 5; pages++) {
      const { body } = await d.api(
        "GET",
        `/_dispatcher/v1/decisions?reason=not_registered&rule=pay&from=${encodeURIComponent(from)}&limit=2${token ? `&pageToken=${token}` : ""}`,
        undefined,
        viewerKey,
      );
      seen.push(...(body.decisions as Decision[]).map((x) => x.requestId));
      token = String(body.nextPageToken);
      if (!token) break;
    }
    assert.deepEqual(seen, ["req-page-4", "req-page-3", "req-page-2", "req-page-1", "req-page-0"]);
    assert.deepEqual(
      (await find("objectId=PG-2")).map((x) => x.requestId),
      ["req-page-2"],
    );
    const none = await d.api("GET", `/_dispatcher/v1/decisions?to=${encodeURIComponent(from)}&requestId=req-page-1`, undefined, viewerKey);
    assert.deepEqual(none.body.decisions, []);
    const bad = await d.api("GET", "/_dispatcher/v1/decisions?from=yesterday", undefined, viewerKey);
    assert.equal(bad.status, 400);
    assert.match(String(bad.body.message), /from must be an RFC 3339 date-time/);
    // Swapped (the same instant in another zone is not): refused rather than answered with an empty page.
    const range = (from: string, to: string) =>
      d.api("GET", `/_dispatcher/v1/decisions?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`, undefined, viewerKey);
    const swapped = await range("2026-05-01T08:00:01+08:00", "2026-05-01T00:00:00Z");
    assert.equal(swapped.status, 400);
    assert.match(String(swapped.body.message), /^from \(2026-05-01T08:00:01\+08:00\) is after to \(2026-05-01T00:00:00Z\)/);
    assert.equal((await range("2026-05-01T07:59:59+08:00", "2026-05-01T00:00:00Z")).status, 200);
  });

  test("a search PostgreSQL could not take is a 400 naming the field, or finds nothing: never a 500", async () => {
    // Date.parse rolls February 30th over to March 2nd; PostgreSQL refuses it.
    const feb30 = await d.api("GET", `/_dispatcher/v1/decisions?to=${encodeURIComponent("2026-02-30T00:00:00Z")}`, undefined, viewerKey);
    assert.equal(feb30.status, 400);
    assert.match(String(feb30.body.message), /to must be an RFC 3339 date-time.*2026-02-30/);
    const leapDay = await d.api("GET", `/_dispatcher/v1/decisions?to=${encodeURIComponent("2028-02-29T00:00:00Z")}`, undefined, viewerKey);
    assert.equal(leapDay.status, 200);
    for (const field of ["rule", "target", "requestId"]) {
      const nul = await d.api("GET", `/_dispatcher/v1/decisions?${field}=pay%00x`, undefined, viewerKey);
      assert.equal(nul.status, 200, `${field} with a NUL: ${JSON.stringify(nul.body)}`);
      assert.deepEqual(nul.body.decisions, []);
    }
    // A reason is one of a known few: a misspelt one found nothing, which read as "none happened".
    for (const reason of ["not_registerd", "pay%00x"]) {
      const misspelt = await d.api("GET", `/_dispatcher/v1/decisions?reason=${reason}`, undefined, viewerKey);
      assert.equal(misspelt.status, 400, reason);
      assert.match(String(misspelt.body.message), /^reason must be one of registered, not_registered, .*forwarding_loop$/);
      // As the kit answers any value outside a field's list, so a client reads it the same way.
      assert.equal(misspelt.body.error, "invalid_request");
      assert.equal((misspelt.body.details as { field: string; allowed: string[] }).field, "reason");
      assert.ok((misspelt.body.details as { allowed: string[] }).allowed.includes("forwarding_loop"));
    }
  });

  test("a decision PostgreSQL refuses is logged without its callback's headers and body (they may hold credentials)", async () => {
    const lines: Array<{ level: string; fields: object }> = [];
    const at = (level: string) => (fields: object) => void lines.push({ level, fields });
    const decisionLog = createDecisionLog({
      pool: d.svc.ctx.pool,
      bus: d.svc.ctx.bus,
      log: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") },
      flushMs: 10_000,
      maxQueue: 1000,
      closeTimeoutMs: 5_000,
      events: "none",
      onDrop: () => {},
      storeMaxBytes: 4096,
    });
    try {
      decisionLog.add({
        at: Date.now(),
        requestId: "req-unstorable-1",
        method: "POST",
        path: "/notify/pay",
        rule: undefined,
        objectId: undefined,
        targetEnv: "prod",
        reason: "no_rule",
        detail: undefined,
        status: 2 ** 40, // out of range for the integer column: refused alone
        latencyMs: 1,
        error: undefined,
        payload: { target: "/notify/pay", headers: ["Authorization", "Bearer leaked-token"], body: Buffer.from("card=4111") },
      });
      await decisionLog.flush();
      const logged = JSON.stringify(lines.filter((l) => l.level === "error"));
      assert.match(logged, /req-unstorable-1/);
      assert.doesNotMatch(logged, /leaked-token|Y2FyZD00MTEx/);
    } finally {
      await decisionLog.close();
    }
  });

  test("callbacks written in one flush each keep their own bytes, beside ones kept without a body or with an empty one", async () => {
    const decisionLog = createDecisionLog({
      pool: d.svc.ctx.pool,
      bus: d.svc.ctx.bus,
      log: d.svc.ctx.log,
      flushMs: 10_000,
      maxQueue: 1000,
      closeTimeoutMs: 5_000,
      events: "all",
      onDrop: () => {},
      storeMaxBytes: 16,
    });
    const sent: Array<[string, Buffer | undefined]> = [
      ["req-flush-a", Buffer.from([0x00, 0xff, 0x41, 0x0a])],
      ["req-flush-large", Buffer.alloc(17, 0x78)], // over storeMaxBytes: kept without its body
      ["req-flush-empty", Buffer.alloc(0)],
      ["req-flush-unread", undefined], // not read whole: kept without body or size
      ["req-flush-b", Buffer.from("out_trade_no=B2", "latin1")],
    ];
    try {
      for (const [requestId, body] of sent)
        decisionLog.add({
          at: Date.now(),
          requestId,
          method: "POST",
          path: "/notify/pay",
          rule: undefined,
          objectId: undefined,
          targetEnv: "prod",
          reason: "no_rule",
          detail: undefined,
          status: 200,
          latencyMs: 1,
          error: undefined,
          payload: { target: `/notify/pay?r=${requestId}`, headers: ["X-Req", requestId], body },
        });
      await decisionLog.flush();
    } finally {
      await decisionLog.close();
    }
    const shown = async (requestId: string) => {
      const [decision] = await find(`requestId=${requestId}`);
      const { body } = await d.api("GET", `/_dispatcher/v1/decisions/${decision!.id}`, undefined, viewerKey);
      return body.callback as { target: string; headers: unknown[]; body: string | null; bodySize: number | null };
    };
    for (const [requestId, body] of sent) {
      const callback = await shown(requestId);
      assert.equal(callback.target, `/notify/pay?r=${requestId}`);
      assert.deepEqual(callback.headers, [{ name: "X-Req", value: requestId }]);
      assert.equal(callback.bodySize, body?.length ?? null, requestId);
      const kept = body && body.length <= 16 ? body.toString("base64") : null;
      assert.equal(callback.body, kept, `${requestId}: its own bytes, exactly`);
    }
  });

  test("kept callbacks go after CALLBACK_RETENTION_DAYS while their decisions stay; their replay is refused", async () => {
    const [decision] = await find("requestId=req-page-0");
    await d.svc.ctx.pool.query("UPDATE callback_payloads SET at = now() - interval '3 days' WHERE decision_id = $1", [decision!.id]);
    const retention = createDecisionRetention({
      pool: d.svc.ctx.pool,
      schema: "callback-dispatcher",
      retentionDays: 14,
      callbackRetentionDays: 2,
      sweepMs: 3_600_000,
      log: d.svc.ctx.log,
    });
    try {
      await eventually("the payload swept", async () =>
        (await d.svc.ctx.pool.query("SELECT 1 FROM callback_payloads WHERE decision_id = $1", [decision!.id])).rowCount === 0
          ? true
          : undefined,
      );
    } finally {
      await retention.close();
    }
    const [still] = await find("requestId=req-page-0");
    assert.equal(still!.replayable, false);
    const res = await replay(decision!.id);
    assert.equal(res.status, 409);
    assert.match(String(res.body.message), /no longer kept \(CALLBACK_RETENTION_DAYS\)/);
  });
});
