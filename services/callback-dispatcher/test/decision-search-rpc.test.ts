import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { CallbackDispatcherService } from "@opsplane/contracts";
import { eventually } from "@opsplane/testing";
import { startDispatcher, viewerKey } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

/** A generated Connect client, as a tool written against proto/ would hold one (JSON or binary on the wire). */
function client(baseUrl: string, key: string | undefined, useBinaryFormat = false) {
  const auth: Interceptor = (next) => async (req) => {
    if (key) req.header.set("authorization", `Bearer ${key}`);
    return next(req);
  };
  return createClient(
    CallbackDispatcherService,
    createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat, interceptors: [auth] }),
  );
}

async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  assert.fail("the call was not refused");
}

describe("Connect SearchDecisions", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;
  const from = new Date(Date.now() - 1000).toISOString();

  before(async () => {
    prod = await startSignedStub("prod", "s");
    sit = await startSignedStub("sit", "s");
    d = await startDispatcher();
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true })).status, 200);
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url })).status, 200);
    const rule = {
      interface: { pattern: "/api/pay", id: { kind: "query", expr: "orderNo" } },
      callback: { pattern: "/notify/pay", id: { kind: "query", expr: "order" } },
      ttlSeconds: 600,
    };
    assert.equal((await d.api("PUT", "/_dispatcher/v1/rules/pay", rule)).status, 200);
    assert.equal(
      (await d.api("POST", "/_dispatcher/v1/registrations", { env: "sit", registrations: [{ rule: "pay", id: "SIT-9" }] })).status,
      200,
    );
    // Five callbacks to production (not registered), one to sit, one no rule matches.
    const send = async (path: string, requestId: string) => {
      const res = await fetch(`${d.url}${path}`, {
        method: "POST",
        headers: { "x-request-id": requestId, "x-signature": sign("s", "") },
        body: "",
      });
      await res.arrayBuffer();
    };
    for (let i = 0; i < 5; i++) await send(`/notify/pay?order=P-${i}`, `rpc-prod-${i}`);
    await send("/notify/pay?order=SIT-9", "rpc-sit-1");
    await send("/elsewhere", "rpc-norule-1");
    await eventually("seven decisions recorded", async () => {
      const { rows } = await d.svc.ctx.pool.query("SELECT count(*)::int AS n FROM decisions");
      return rows[0].n === 7;
    });
  });

  after(async () => {
    await d?.close();
    await Promise.all([prod?.close(), sit?.close()]);
  });

  test("pages through the same decisions as the REST search, with the same tokens, over JSON and binary", async () => {
    for (const binary of [false, true]) {
      const rpc = client(d.url, viewerKey, binary);
      const seen: string[] = [];
      let pageToken = "";
      for (let pages = 0; pages < 10; pages++) {
        const page = await rpc.searchDecisions({ rule: "pay", reason: "not_registered", from, limit: 2, pageToken });
        seen.push(...page.decisions.map((x) => x.requestId));
        const rest = await d.api(
          "GET",
          `/_dispatcher/v1/decisions?rule=pay&reason=not_registered&from=${encodeURIComponent(from)}&limit=2${pageToken ? `&pageToken=${pageToken}` : ""}`,
          undefined,
          viewerKey,
        );
        assert.deepEqual(
          page.decisions.map((x) => x.id),
          (rest.body.decisions as Array<{ id: string }>).map((x) => x.id),
        );
        assert.equal(page.nextPageToken, rest.body.nextPageToken);
        pageToken = page.nextPageToken;
        if (!pageToken) break;
      }
      assert.deepEqual(seen, ["rpc-prod-4", "rpc-prod-3", "rpc-prod-2", "rpc-prod-1", "rpc-prod-0"], binary ? "binary" : "JSON");
    }
  });

  test("each filter narrows the result, and a decision reads as recorded", async () => {
    const rpc = client(d.url, viewerKey);
    const [toSit, ...more] = (await rpc.searchDecisions({ target: "sit" })).decisions;
    assert.equal(more.length, 0);
    assert.equal(toSit?.requestId, "rpc-sit-1");
    assert.equal(toSit?.reason, "registered");
    assert.equal(toSit?.objectId, "SIT-9");
    assert.equal(toSit?.rule, "pay");
    assert.equal(toSit?.status, 200);
    assert.equal(toSit?.method, "POST");
    assert.equal(toSit?.path, "/notify/pay");
    assert.ok(Date.parse(toSit!.at) >= Date.parse(from), toSit?.at);
    assert.equal(toSit?.replayable, true);

    assert.deepEqual(
      (await rpc.searchDecisions({ objectId: "P-3" })).decisions.map((x) => x.requestId),
      ["rpc-prod-3"],
    );
    const noRule = (await rpc.searchDecisions({ reason: "no_rule" })).decisions;
    assert.deepEqual(
      noRule.map((x) => [x.requestId, x.rule, x.objectId, x.targetEnv]),
      [["rpc-norule-1", "", "", "prod"]],
    );
    assert.deepEqual((await rpc.searchDecisions({ requestId: "rpc-prod-1", to: from })).decisions, [], "recorded after `to`");
  });

  test("bad input is invalid_argument naming the field; no credentials is unauthenticated", async () => {
    const rpc = client(d.url, viewerKey);
    const badFrom = await refusal(rpc.searchDecisions({ from: "yesterday" }));
    assert.equal(badFrom.code, Code.InvalidArgument);
    assert.match(badFrom.rawMessage, /from must be an RFC 3339 date-time/);
    const swapped = await refusal(rpc.searchDecisions({ from: "2026-05-02T00:00:00Z", to: "2026-05-01T00:00:00Z" }));
    assert.equal(swapped.code, Code.InvalidArgument);
    assert.match(swapped.rawMessage, /from \(2026-05-02T00:00:00Z\) is after to/);
    const badToken = await refusal(rpc.searchDecisions({ pageToken: "page-2" }));
    assert.equal(badToken.code, Code.InvalidArgument);
    assert.match(badToken.rawMessage, /pageToken must be a nextPageToken/);
    const badLimit = await refusal(rpc.searchDecisions({ limit: 5000 }));
    assert.equal(badLimit.code, Code.InvalidArgument);
    assert.match(badLimit.rawMessage, /limit must be between 1 and 1000/);
    const badReason = await refusal(rpc.searchDecisions({ reason: "not_registerd" }));
    assert.equal(badReason.code, Code.InvalidArgument);
    assert.match(badReason.rawMessage, /^reason must be one of registered, not_registered/);
    const anonymous = await refusal(client(d.url, undefined).searchDecisions({}));
    assert.equal(anonymous.code, Code.Unauthenticated);
  });

  test("a page token PostgreSQL's bigint cannot hold is refused naming it, over REST and Connect alike", async () => {
    const rpc = client(d.url, viewerKey);
    // The id part past 2^63-1, the time part past it, and a time past year 9999 (no decision's).
    for (const pageToken of ["1-9999999999999999999", "9999999999999999999-1", "9000000000000000000-1"]) {
      const rest = await d.api("GET", `/_dispatcher/v1/decisions?pageToken=${pageToken}`, undefined, viewerKey);
      assert.equal(rest.status, 400, `${pageToken}: ${JSON.stringify(rest.body)}`);
      assert.match(String(rest.body.message), /^pageToken must be a nextPageToken this API returned/, pageToken);
      const connect = await refusal(rpc.searchDecisions({ pageToken }));
      assert.equal(connect.code, Code.InvalidArgument);
      assert.match(connect.rawMessage, /^pageToken must be a nextPageToken this API returned/, pageToken);
    }
  });

  test("an impossible time of day is refused naming the field, over REST and Connect alike", async () => {
    const rpc = client(d.url, viewerKey);
    for (const to of [
      "2026-01-01T24:00:00Z",
      "2026-01-01T25:00:00Z",
      "2026-01-01T23:60:00Z",
      "2026-01-01T23:59:60Z", // a leap second: JavaScript's Date cannot hold one
      "0000-01-01T00:00:00Z", // PostgreSQL has no year 0
      "2026-01-01T00:00:00+16:00", // PostgreSQL takes zone offsets up to 15:59
    ]) {
      const rest = await d.api("GET", `/_dispatcher/v1/decisions?to=${encodeURIComponent(to)}`, undefined, viewerKey);
      assert.equal(rest.status, 400, `${to}: ${JSON.stringify(rest.body)}`);
      assert.match(String(rest.body.message), /^to must be an RFC 3339 date-time/, to);
      const connect = await refusal(rpc.searchDecisions({ to }));
      assert.equal(connect.code, Code.InvalidArgument);
      assert.match(connect.rawMessage, /^to must be an RFC 3339 date-time/, to);
    }
  });

  test("an empty objectId is no filter, as every other empty filter, over REST and Connect alike", async () => {
    const all = await d.api("GET", "/_dispatcher/v1/decisions", undefined, viewerKey);
    const empty = await d.api("GET", "/_dispatcher/v1/decisions?objectId=&rule=&target=", undefined, viewerKey);
    assert.equal(empty.status, 200, JSON.stringify(empty.body));
    const ids = (r: { body: Record<string, unknown> }) => (r.body.decisions as Array<{ id: string }>).map((x) => x.id);
    assert.ok(ids(all).length >= 7);
    assert.deepEqual(ids(empty), ids(all));
    assert.deepEqual(
      (await client(d.url, viewerKey).searchDecisions({ objectId: "" })).decisions.map((x) => x.id),
      ids(all),
    );
  });

  test("ids recorded made storable (a NUL as \\u0000, invalid UTF-8 as U+FFFD) are found by the id as sent over REST, as recorded over Connect", async () => {
    for (const [order, requestId] of [
      ["NUL%00ID", "rpc-nul-1"],
      ["BAD%FFUTF8", "rpc-ff-1"],
    ] as const) {
      const res = await fetch(`${d.url}/notify/pay?order=${order}`, {
        method: "POST",
        headers: { "x-request-id": requestId, "x-signature": sign("s", "") },
        body: "",
      });
      await res.arrayBuffer();
    }
    const rpc = client(d.url, viewerKey);
    const found = async (query: string) => {
      const r = await d.api("GET", `/_dispatcher/v1/decisions?objectId=${query}`, undefined, viewerKey);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return (r.body.decisions as Array<{ requestId: string }>).map((x) => x.requestId);
    };
    await eventually("both decisions recorded", async () => (await found("BAD%FFUTF8")).length + (await found("NUL%00ID")).length === 2);
    assert.deepEqual(await found("NUL%00ID"), ["rpc-nul-1"]);
    assert.deepEqual(await found("BAD%FFUTF8"), ["rpc-ff-1"], "the raw byte, percent-encoded as the callback sent it");
    assert.deepEqual(await found("BAD%EF%BF%BDUTF8"), ["rpc-ff-1"], "U+FFFD, as it was recorded");
    assert.deepEqual(
      (await rpc.searchDecisions({ objectId: "NUL\u0000ID" })).decisions.map((x) => x.requestId),
      ["rpc-nul-1"],
    );
    // Over Connect, as recorded (U+FFFD); a Connect JSON body is UTF-8 or refused (the kit's rule for every RPC).
    assert.deepEqual(
      (await rpc.searchDecisions({ objectId: "BAD\uFFFDUTF8" })).decisions.map((x) => x.requestId),
      ["rpc-ff-1"],
    );
    const raw = await fetch(`${d.url}/ops.v1.CallbackDispatcherService/SearchDecisions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${viewerKey}` },
      body: Buffer.concat([Buffer.from('{"objectId":"BAD'), Buffer.from([0xff]), Buffer.from('UTF8"}')]),
    });
    assert.equal(raw.status, 400);
    assert.deepEqual(await raw.json(), { code: "invalid_argument", message: "body is not valid UTF-8" });
  });
});
