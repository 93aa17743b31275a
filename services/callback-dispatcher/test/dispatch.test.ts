import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { agentApp, startDispatcher, viewerKey } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

const secret = "platform-secret";
type Decision = Record<string, unknown>;

describe("dispatch: bad input still reaches production, with the reason recorded", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;
  let hanging: Awaited<ReturnType<typeof startSignedStub>>;

  before(async () => {
    prod = await startSignedStub("prod", secret);
    sit = await startSignedStub("sit", secret);
    hanging = await startSignedStub("slow", secret, { hang: true });
    d = await startDispatcher({ CALLBACK_EXTRACT_LIMIT_BYTES: "2048", UPSTREAM_TIMEOUT_MS: "300", SCRIPT_TIME_LIMIT_MS: "20" });
    await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true });
    await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url });
    await d.api("PUT", "/_dispatcher/v1/environments/slow", { baseUrl: hanging.url });
    await d.api("PUT", "/_dispatcher/v1/environments/gone", { baseUrl: "http://127.0.0.1:1" });
    const json = (pattern: string, expr = "id") => ({
      interface: { pattern: "/api/x", id: { kind: "json", expr: "id" } },
      callback: { pattern, id: { kind: "json", expr } },
      ttlSeconds: 60,
    });
    for (const [name, rule] of Object.entries({ "cb-json": json("/cb/json"), "cb-slow": json("/cb/slow"), "cb-gone": json("/cb/gone") }))
      assert.equal((await d.api("PUT", `/_dispatcher/v1/rules/${name}`, rule)).status, 200);
    const script = (source: string) => ({
      interface: { pattern: "/api/x", id: { kind: "json", expr: "id" } },
      callback: {
        pattern: "/cb/script/**",
        id: { kind: "script", expr: source },
        sample: { path: "/cb/script/ok", body: '{"id":"S"}', expectId: "S" },
      },
      ttlSeconds: 60,
    });
    // Valid on save (the sample passes), misbehaving on the bad inputs below.
    const hostile =
      "function extract(m) { const b = JSON.parse(m.body); if (b.mode === 'loop') { for(;;){} } if (b.mode === 'oom') { const a = []; for(;;) a.push('x'.repeat(1e5)); } if (b.mode === 'throw') throw new Error('boom'); return b.id; }";
    assert.equal((await d.api("PUT", "/_dispatcher/v1/rules/cb-script", script(hostile))).status, 200);
    const reg = await d.api("POST", "/_dispatcher/v1/registrations", {
      env: "sit",
      registrations: [
        { rule: "cb-json", id: "J1" },
        { rule: "cb-script", id: "S1" },
      ],
    });
    assert.equal(reg.status, 200, JSON.stringify(reg.body));
    await d.api("POST", "/_dispatcher/v1/registrations", { env: "slow", registrations: [{ rule: "cb-slow", id: "SLOW" }] });
    await d.api("POST", "/_dispatcher/v1/registrations", { env: "gone", registrations: [{ rule: "cb-gone", id: "GONE" }] });
  });

  after(async () => {
    await d?.close();
    await Promise.all([prod?.close(), sit?.close(), hanging?.close()]);
  });

  async function callback(pathname: string, body: string | Buffer, contentType = "application/json") {
    const bytes = Buffer.from(body);
    const res = await fetch(`${d.url}${pathname}`, {
      method: "POST",
      headers: { "content-type": contentType, "x-signature": sign(secret, bytes) },
      body: bytes,
    });
    return { status: res.status, text: await res.text(), requestId: res.headers.get("x-request-id")! };
  }

  async function decision(requestId: string): Promise<Decision> {
    return eventually(`decision ${requestId}`, async () => {
      const { body } = await d.api("GET", "/_dispatcher/v1/decisions?limit=1000");
      return (body.decisions as Decision[]).find((x) => x.requestId === requestId);
    });
  }

  const inProd = (url: string, bytes: Buffer) =>
    assert.ok(
      prod.received.some((r) => r.url === url && r.verified && r.body.equals(bytes)),
      `${url} reached production intact`,
    );

  test("a registered id goes to its test environment", async () => {
    const r = await callback("/cb/json", '{"id":"J1"}');
    assert.equal(r.status, 200);
    assert.ok(sit.received.some((x) => x.url === "/cb/json"));
    assert.equal((await decision(r.requestId)).reason, "registered");
  });

  test("callbacks routed to a test environment or failing are published on the bus; routine production ones are only recorded", async () => {
    const seen: Array<{ objectId: string; targetEnv: string; reason: string }> = [];
    const sub = await d.svc.ctx.bus.subscribe({
      group: "dispatch-test",
      topics: ["callback.dispatched"],
      handler: async (e) => void seen.push(e.data as { objectId: string; targetEnv: string; reason: string }),
    });
    try {
      const routine = await callback("/cb/json?events=1", '{"id":"NOT-OURS"}');
      const routed = await callback("/cb/json?events=2", '{"id":"J1"}');
      assert.equal(routine.status, 200);
      assert.equal(routed.status, 200);
      await decision(routine.requestId);
      await eventually("the routed callback's event", () =>
        seen.some((e) => e.objectId === "J1" && e.targetEnv === "sit" && e.reason === "registered"),
      );
      assert.ok(!seen.some((e) => e.objectId === "NOT-OURS"), "routine production traffic is not published");
    } finally {
      await sub.close();
    }
  });

  test("malformed JSON goes to production as extraction_failed", async () => {
    const body = '{"id": "J1"';
    const r = await callback("/cb/json?malformed=1", body);
    assert.equal(r.status, 200);
    inProd("/cb/json?malformed=1", Buffer.from(body));
    const dec = await decision(r.requestId);
    assert.equal(dec.reason, "extraction_failed");
    assert.match(String(dec.detail), /not JSON/);
  });

  test("a missing id goes to production as extraction_failed", async () => {
    const r = await callback("/cb/json?missing=1", '{"other":1}');
    assert.equal(r.status, 200);
    assert.equal((await decision(r.requestId)).reason, "extraction_failed");
  });

  for (const mode of ["throw", "loop", "oom"]) {
    test(`a script that ${mode === "oom" ? "exceeds its memory" : mode === "loop" ? "loops" : "throws"} sends the callback to production`, async () => {
      const body = JSON.stringify({ id: "S1", mode });
      const r = await callback(`/cb/script/${mode}`, body);
      assert.equal(r.status, 200);
      inProd(`/cb/script/${mode}`, Buffer.from(body));
      const dec = await decision(r.requestId);
      assert.equal(dec.reason, "extraction_failed");
      assert.match(String(dec.detail), /script failed/);
    });
  }

  test("the script extractor still routes a good callback to sit after those failures", async () => {
    const r = await callback("/cb/script/ok", '{"id":"S1"}');
    assert.equal(r.status, 200);
    assert.ok(sit.received.some((x) => x.url === "/cb/script/ok"));
  });

  test("a body over the extraction limit streams to production unread, byte for byte", async () => {
    const big = Buffer.from(JSON.stringify({ id: "J1", pad: "p".repeat(200_000) }));
    const r = await callback("/cb/json?big=1", big);
    assert.equal(r.status, 200);
    inProd("/cb/json?big=1", big);
    assert.equal((await decision(r.requestId)).reason, "body_too_large");
  });

  test("an environment that does not answer in time gives 504, so the platform retries", async () => {
    const r = await callback("/cb/slow", '{"id":"SLOW"}');
    assert.equal(r.status, 504);
    const dec = await decision(r.requestId);
    assert.equal(dec.status, 504);
    assert.equal(dec.targetEnv, "slow");
  });

  test("an environment that is down gives 502 and is recorded", async () => {
    const r = await callback("/cb/gone", '{"id":"GONE"}');
    assert.equal(r.status, 502);
    const dec = await decision(r.requestId);
    assert.equal(dec.status, 502);
    assert.match(String(dec.error), /ECONNREFUSED/);
  });

  test("a registration whose environment was deleted goes to production", async () => {
    await d.api("PUT", "/_dispatcher/v1/environments/temp", { baseUrl: sit.url });
    await d.api("POST", "/_dispatcher/v1/registrations", { env: "temp", registrations: [{ rule: "cb-json", id: "T1" }] });
    assert.equal((await d.api("DELETE", "/_dispatcher/v1/environments/temp")).status, 204);
    const r = await callback("/cb/json?deleted=1", '{"id":"T1"}');
    assert.equal(r.status, 200);
    assert.equal((await decision(r.requestId)).reason, "unknown_environment");
  });

  test("a callback carrying the platform's own Authorization header is forwarded, not refused", async () => {
    const bytes = Buffer.from('{"id":"J1"}');
    const res = await fetch(`${d.url}/cb/json?auth=1`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-signature": sign(secret, bytes),
        authorization: "WECHATPAY2-SHA256-RSA2048 mchid=1",
      },
      body: bytes,
    });
    assert.equal(res.status, 200);
    const got = sit.received.find((x) => x.url === "/cb/json?auth=1")!;
    assert.equal(got.headers.authorization, "WECHATPAY2-SHA256-RSA2048 mchid=1");
  });

  test("a callback sent with Expect: 100-continue (as curl and Java clients send large bodies) reaches its environment", async () => {
    const bytes = Buffer.from(JSON.stringify({ id: "J1", pad: "e".repeat(1500) })); // over 1 KiB, under the 2 KiB extraction limit
    const res = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${d.url}/cb/json?expect=1`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-length": String(bytes.length),
          "x-signature": sign(secret, bytes),
          expect: "100-continue",
        },
      });
      req.on("continue", () => req.end(bytes));
      req.on("response", (r) => {
        r.resume();
        resolve(r.statusCode ?? 0);
      });
      req.on("error", reject);
      req.flushHeaders();
    });
    assert.equal(res, 200);
    const got = sit.received.find((x) => x.url === "/cb/json?expect=1")!;
    assert.ok(got.verified, "the environment verified the body's signature");
    assert.equal(got.headers.expect, undefined);
  });

  test("the dispatcher's own prefix is never forwarded", async () => {
    const r = await callback("/_dispatcher/v1/nothing", "{}");
    assert.equal(r.status, 404);
    assert.ok(!prod.received.some((x) => x.url.startsWith("/_dispatcher")));
  });

  test("absolute-form request targets are refused, never proxied", async () => {
    const { host, port } = new URL(d.url);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), host.split(":")[0], () =>
        socket.end("POST http://example.com/cb/json HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
      );
      let text = "";
      socket.on("data", (c) => {
        text += c;
      });
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
    assert.match(answer, /^HTTP\/1\.1 4\d\d/);
    assert.ok(![...prod.received, ...sit.received].some((r) => r.url.includes("example.com")));
  });

  test("hop-by-hop headers are not forwarded; end-to-end headers are", async () => {
    const bytes = Buffer.from('{"id":"J1"}');
    const res = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        `${d.url}/cb/json?hop=1`,
        {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "x-signature": sign(secret, bytes),
            connection: "keep-alive, x-secret-hop",
            "x-secret-hop": "1",
            "proxy-authorization": "Basic abc",
            "x-platform-nonce": "n-1",
          },
        },
        (r) => {
          r.resume();
          resolve(r.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      req.end(bytes);
    });
    assert.equal(res, 200);
    const got = sit.received.find((x) => x.url === "/cb/json?hop=1")!;
    assert.equal(got.headers["x-platform-nonce"], "n-1");
    assert.equal(got.headers["x-secret-hop"], undefined);
    assert.equal(got.headers["proxy-authorization"], undefined);
  });
});

describe("rules, environments and registrations API", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  const rule = {
    interface: { pattern: "/api/pay", id: { kind: "json", expr: "orderNo" } },
    callback: { pattern: "/notify/v1/**", id: { kind: "form", expr: "out_trade_no" } },
    ttlSeconds: 60,
  };

  before(async () => {
    prod = await startSignedStub("prod", secret);
    d = await startDispatcher({}, { redis: false });
    await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true });
    await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: "http://sit.internal:8080/app" });
  });
  after(async () => {
    await d?.close();
    await prod?.close();
  });

  test("a rule that does not compile or fails its sample is refused with the field named", async () => {
    const badPattern = await d.api("PUT", "/_dispatcher/v1/rules/r1", { ...rule, callback: { ...rule.callback, pattern: "/notify/**x" } });
    assert.equal(badPattern.status, 400);
    assert.match(String(badPattern.body.message), /callback\.pattern/);
    const badScript = await d.api("PUT", "/_dispatcher/v1/rules/r1", {
      ...rule,
      callback: {
        ...rule.callback,
        id: { kind: "script", expr: "function extract(m) { return m.body.split(" },
        sample: { path: "/notify/v1/a", body: "x", expectId: "x" },
      },
    });
    assert.equal(badScript.status, 400);
    assert.match(String(badScript.body.message), /callback\.sample/);
    const noSample = await d.api("PUT", "/_dispatcher/v1/rules/r1", {
      ...rule,
      callback: { ...rule.callback, id: { kind: "script", expr: "function extract(m) { return 'x'; }" } },
    });
    assert.equal(noSample.status, 400);
    assert.match(String(noSample.body.message), /needs a sample/);
    const schema = await d.api("PUT", "/_dispatcher/v1/rules/r1", { ...rule, ttlSeconds: 0 });
    assert.equal(schema.status, 400);
    assert.equal((await d.api("GET", "/_dispatcher/v1/rules/r1")).status, 404, "nothing was saved");
  });

  // FOR UPDATE locked no row while the rule did not exist: concurrent creations drew the same revision
  // and some answered 500 (a trial: 6 of 20).
  test("concurrent PUTs creating the same rule each get a revision of their own; with expectRevision=0 one wins, the rest are 409", async () => {
    const puts = await Promise.all(Array.from({ length: 12 }, () => d.api("PUT", "/_dispatcher/v1/rules/raced", rule)));
    assert.deepEqual(
      puts.map((p) => p.status),
      puts.map(() => 200),
    );
    const { body } = await d.api("GET", "/_dispatcher/v1/rules/raced/revisions");
    assert.deepEqual(
      (body.revisions as Array<{ revision: number }>).map((r) => r.revision).sort((a, b) => a - b),
      Array.from({ length: 12 }, (_, i) => i + 1),
    );
    const first = await Promise.all(
      Array.from({ length: 12 }, () => d.api("PUT", "/_dispatcher/v1/rules/raced-once?expectRevision=0", rule)),
    );
    assert.deepEqual(first.map((p) => p.status).sort(), [200, ...Array.from({ length: 11 }, () => 409)]);
  });

  test("rules are versioned, audited and take effect without restart", async () => {
    const v0 = Number((await d.api("GET", "/_dispatcher/v1/rules")).body.version);
    assert.equal((await d.api("PUT", "/_dispatcher/v1/rules/r1", rule)).status, 200);
    await d.api("POST", "/_dispatcher/v1/registrations", { env: "sit", registrations: [{ rule: "r1", id: "A1" }] });
    const before = await d.api("POST", "/_dispatcher/v1/dry-run", { method: "POST", path: "/notify/v2/pay", body: "out_trade_no=A1" });
    assert.equal(before.body.reason, "no_rule");
    const changed = await d.api("PUT", "/_dispatcher/v1/rules/r1?expectRevision=1", {
      ...rule,
      callback: { ...rule.callback, pattern: "/notify/*/pay" },
    });
    assert.equal(changed.status, 200);
    assert.ok(Number(changed.body.version) > v0);
    const after = await d.api("POST", "/_dispatcher/v1/dry-run", { method: "POST", path: "/notify/v2/pay?x=1", body: "out_trade_no=A1" });
    assert.deepEqual(after.body, {
      rule: "r1",
      objectId: "A1",
      targetEnv: "sit",
      targetUrl: "http://sit.internal:8080/app/notify/v2/pay?x=1",
      reason: "registered",
      detail: "",
    });
    const stale = await d.api("PUT", "/_dispatcher/v1/rules/r1?expectRevision=1", rule);
    assert.equal(stale.status, 409);
    const { body } = await d.api("GET", "/_dispatcher/v1/rules/r1/revisions");
    assert.deepEqual(
      (body.revisions as Array<{ revision: number; actor: string }>).map((r) => [r.revision, r.actor]),
      [
        [2, "key:ops"],
        [1, "key:ops"],
      ],
    );
    const audit = await d.svc.ctx.pool.query("SELECT action, target, actor FROM audit_log WHERE target = 'rule/r1' ORDER BY id");
    assert.equal(audit.rows.length, 2);
    assert.equal(audit.rows[0].actor, "key:ops");
  });

  test("dry run over Connect RPC answers like the REST one", async () => {
    const res = await fetch(`${d.url}/ops.v1.CallbackDispatcherService/DryRun`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${viewerKey}` },
      body: JSON.stringify({ method: "POST", path: "/notify/v9/pay", body: "out_trade_no=A1" }),
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as Record<string, string>;
    assert.equal(body.targetEnv, "sit");
    assert.equal(body.reason, "registered");
    // A method no request line could carry is refused, as the REST dry run's schema refuses it (it answered no_rule).
    const spaced = await fetch(`${d.url}/ops.v1.CallbackDispatcherService/DryRun`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${viewerKey}` },
      body: JSON.stringify({ method: "PO ST", path: "/notify/v9/pay", body: "out_trade_no=A1" }),
    });
    assert.equal(spaced.status, 400);
    assert.deepEqual(await spaced.json(), { code: "invalid_argument", message: 'method must be an HTTP method such as POST, not "PO ST"' });
  });

  test("registration needs credentials, a configured test environment and known rules", async () => {
    const payload = { env: "sit", registrations: [{ rule: "r1", id: "A2" }] };
    const anonymous = await fetch(`${d.url}/_dispatcher/v1/registrations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(payload),
    });
    assert.equal(anonymous.status, 401);
    assert.equal((await d.api("POST", "/_dispatcher/v1/registrations", payload, viewerKey)).status, 403);
    const unknownEnv = await d.api("POST", "/_dispatcher/v1/registrations", { ...payload, env: "nowhere" });
    assert.equal(unknownEnv.status, 400);
    assert.match(String(unknownEnv.body.message), /unknown environment "nowhere"/);
    assert.equal((await d.api("POST", "/_dispatcher/v1/registrations", { ...payload, env: "prod" })).status, 403);
    const asApp = await fetch(`${d.url}/_dispatcher/v1/registrations`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: `Basic ${Buffer.from(`${agentApp.id}:${agentApp.secret}`).toString("base64")}`,
      },
      body: JSON.stringify({ env: "sit", registrations: [...payload.registrations, { rule: "deleted-rule", id: "X" }] }),
    });
    assert.equal(asApp.status, 200);
    assert.deepEqual(await asApp.json(), { registered: 1, ignoredRules: ["deleted-rule"] });
    const appMayNotEditRules = await fetch(`${d.url}/_dispatcher/v1/rules/r1`, {
      method: "DELETE",
      headers: { authorization: `Basic ${Buffer.from(`${agentApp.id}:${agentApp.secret}`).toString("base64")}` },
    });
    assert.equal(appMayNotEditRules.status, 403);
  });

  test("environments are validated: no other schemes, credentials or second production", async () => {
    for (const baseUrl of ["ftp://x", "http://user:pw@x", "http://x/?q=1"])
      assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/bad", { baseUrl })).status, 400, baseUrl);
    const second = await d.api("PUT", "/_dispatcher/v1/environments/prod2", { baseUrl: "http://x", production: true });
    assert.equal(second.status, 409);
  });

  test("without Redis, registrations survive a restart (single node: memory backed by PostgreSQL)", async () => {
    const again = await startDispatcher({}, { redis: false, databaseUrl: d.databaseUrl });
    try {
      const { body } = await again.api("GET", "/_dispatcher/v1/registrations/r1/A1");
      assert.equal(body.env, "sit");
    } finally {
      await again.svc.close();
    }
  });

  test("metrics count callbacks by rule and target", async () => {
    const bytes = Buffer.from("out_trade_no=NEVER");
    const res = await fetch(`${d.url}/notify/v3/pay`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "x-signature": sign(secret, bytes) },
      body: bytes,
    });
    assert.equal(res.status, 200);
    const metrics = await (await fetch(`${d.url}/metrics`)).text();
    assert.match(
      metrics,
      /callback_dispatcher_callbacks_total\{[^}]*rule="r1",target="prod",reason="not_registered",status_class="2xx"[^}]*\} 1/,
    );
    assert.match(metrics, /callback_dispatcher_upstream_duration_seconds_count\{[^}]*target="prod"/);
    // Callbacks are served before the web framework's router, yet keep their per-route RED metrics.
    assert.match(metrics, /http_requests_total\{[^}]*method="POST",route="\/\*",status_code="200"[^}]*\} \d+/);
    assert.match(metrics, /http_request_duration_seconds_count\{[^}]*method="POST",route="\/\*",status_code="200"[^}]*\} \d+/);
  });

  test("callbacks carry a request id end to end: the caller's own, or a new one", async () => {
    const bytes = Buffer.from("out_trade_no=RID");
    const given = await fetch(`${d.url}/notify/v3/pay`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "x-signature": sign(secret, bytes), "x-request-id": "rid-42" },
      body: bytes,
    });
    assert.equal(given.headers.get("x-request-id"), "rid-42");
    const upstream = prod.received.findLast((x) => x.url === "/notify/v3/pay");
    assert.equal(upstream?.headers["x-request-id"], "rid-42");
    const fresh = await fetch(`${d.url}/notify/v3/pay`, { method: "POST", body: bytes, headers: { "x-signature": sign(secret, bytes) } });
    assert.match(String(fresh.headers.get("x-request-id")), /^[0-9a-f-]{36}$/);
  });

  test("a large answer streams back byte for byte, with the upstream's status and headers", async () => {
    const answer = Buffer.alloc(1_000_000, "0123456789abcdef");
    const server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(207, { "content-type": "application/octet-stream", "x-answer": "big", connection: "x-hop", "x-hop": "1" });
        // In pieces, so the dispatcher sees it arrive over time.
        let at = 0;
        const next = () => {
          while (at < answer.length) {
            const piece = answer.subarray(at, at + 100_000);
            at += piece.length;
            if (!res.write(piece)) return res.once("drain", next);
          }
          res.end();
        };
        next();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as net.AddressInfo).port;
      assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/bigsit", { baseUrl: `http://127.0.0.1:${port}` })).status, 200);
      const rule = {
        interface: { pattern: "/api/big", id: { kind: "query", expr: "id" } },
        callback: { pattern: "/cb/big", id: { kind: "query", expr: "id" } },
        ttlSeconds: 60,
      };
      assert.equal((await d.api("PUT", "/_dispatcher/v1/rules/cb-big", rule)).status, 200);
      await d.api("POST", "/_dispatcher/v1/registrations", { env: "bigsit", registrations: [{ rule: "cb-big", id: "B1" }] });
      const res = await eventually("routed to bigsit", async () => {
        const r = await fetch(`${d.url}/cb/big?id=B1`, { method: "POST", body: "x" });
        if (r.headers.get("x-answer") === "big") return r;
        await r.arrayBuffer();
        return undefined;
      });
      assert.equal(res.status, 207);
      assert.equal(res.headers.get("x-hop"), null, "headers named by Connection are not passed back");
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(answer));
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
