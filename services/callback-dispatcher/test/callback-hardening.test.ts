import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { deflateSync, gzipSync } from "node:zlib";
import { eventually } from "@opsplane/testing";
import { startDispatcher, viewerKey } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";
import { startSwitchingEnvironment } from "./helpers/switching-environment.js";

// Issue 16, item 5: what a third party (or anyone reaching the one production URL) can send.
const secret = "platform-secret";
type Decision = Record<string, unknown>;

/** GBK bytes of 订单 ("order"), as a Chinese platform writes them in a GBK form or XML body. */
const gbkOrder = Buffer.from([0xb6, 0xa9, 0xb5, 0xa5]);
const gbkId = "订单-7";

describe("callbacks as third parties really send them", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;
  let hanging: Awaited<ReturnType<typeof startSignedStub>>;

  before(async () => {
    prod = await startSignedStub("prod", secret);
    sit = await startSignedStub("sit", secret);
    hanging = await startSignedStub("slow", secret, { hang: true });
    d = await startDispatcher({ UPSTREAM_TIMEOUT_MS: "300" });
    await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true });
    // sit's gateway serves its app under /app: nothing may reach past it.
    await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: `${sit.url}/app` });
    await d.api("PUT", "/_dispatcher/v1/environments/slow", { baseUrl: hanging.url });
    await d.api("PUT", "/_dispatcher/v1/environments/gone", { baseUrl: "http://127.0.0.1:1" });
    // A mistake an operator can make: an environment pointing back at the dispatcher.
    await d.api("PUT", "/_dispatcher/v1/environments/self", { baseUrl: d.url });
    const rule = (pattern: string, id: Record<string, unknown>, callback: Record<string, unknown> = {}) => ({
      interface: { pattern: "/api/x", id: { kind: "json", expr: "id" } },
      callback: { pattern, id, ...callback },
      ttlSeconds: 600,
    });
    const rules = {
      "cb-json": rule("/cb/json/**", { kind: "json", expr: "id" }),
      "cb-form": rule("/cb/form", { kind: "form", expr: "out_trade_no" }),
      "cb-xml": rule("/cb/xml", { kind: "xml", expr: "xml.out_trade_no" }),
      "cb-xml-big": rule("/cb/xml-big", { kind: "xml", expr: "xml.out_trade_no" }, { extractLimitBytes: 262_144 }),
      "cb-slow": rule("/cb/slow", { kind: "json", expr: "id" }),
      "cb-gone": rule("/cb/gone", { kind: "json", expr: "id" }),
      "cb-loop": rule("/cb/loop", { kind: "json", expr: "id" }),
    };
    for (const [name, spec] of Object.entries(rules)) {
      const res = await d.api("PUT", `/_dispatcher/v1/rules/${name}`, spec);
      assert.equal(res.status, 200, `${name}: ${JSON.stringify(res.body)}`);
    }
    const registrations = [
      ...["cb-json", "cb-form", "cb-xml", "cb-xml-big"].flatMap((rule) => [
        { rule, id: "R1" },
        { rule, id: gbkId },
      ]),
    ];
    assert.equal((await d.api("POST", "/_dispatcher/v1/registrations", { env: "sit", registrations })).status, 200);
    await d.api("POST", "/_dispatcher/v1/registrations", { env: "slow", registrations: [{ rule: "cb-slow", id: "SLOW" }] });
    await d.api("POST", "/_dispatcher/v1/registrations", { env: "gone", registrations: [{ rule: "cb-gone", id: "GONE" }] });
    await d.api("POST", "/_dispatcher/v1/registrations", { env: "self", registrations: [{ rule: "cb-loop", id: "LOOP" }] });
  });

  after(async () => {
    await d?.close();
    await Promise.all([prod?.close(), sit?.close(), hanging?.close()]);
  });

  /** A raw HTTP request: the path goes out exactly as written (fetch would normalise dot segments). */
  function send(path: string, body: Buffer, headers: Record<string, string | string[]> = {}) {
    const { port } = new URL(d.url);
    return new Promise<{ status: number; text: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
      const req = http.request(
        { host: "127.0.0.1", port, method: "POST", path, headers: { "x-signature": sign(secret, body), ...headers } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString(), headers: res.headers }));
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  }

  async function decision(requestId: string): Promise<Decision> {
    return eventually(`decision ${requestId}`, async () => {
      const { body } = await d.api("GET", "/_dispatcher/v1/decisions?limit=1000");
      return (body.decisions as Decision[]).find((x) => x.requestId === requestId);
    });
  }

  /**
   * `raw` written as is on a new connection to the dispatcher, its sending side then shut down (a FIN) when
   * `fin`: everything answered until the dispatcher ends the connection.
   */
  function exchange(raw: string, fin: boolean): Promise<string> {
    const { port } = new URL(d.url);
    return new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), "127.0.0.1", () => (fin ? socket.end(raw) : socket.write(raw)));
      let text = "";
      socket.on("data", (c) => {
        text += c;
      });
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
  }

  const reached = (stub: typeof sit, url: string, bytes: Buffer) =>
    stub.received.find((r) => r.url === url && r.verified && r.body.equals(bytes));

  test("a gzip or deflate callback for a registered id reaches its environment with the original bytes and headers", async () => {
    const plain = Buffer.from('{"id":"R1","status":"PAID"}');
    for (const [encoding, bytes] of [
      ["gzip", gzipSync(plain)],
      ["deflate", deflateSync(plain)],
    ] as const) {
      const r = await send(`/cb/json/${encoding}`, bytes, { "content-type": "application/json", "content-encoding": encoding });
      assert.equal(r.status, 200, r.text);
      const got = reached(sit, `/app/cb/json/${encoding}`, bytes);
      assert.ok(got, `${encoding}: sit got the compressed bytes as sent, signature intact`);
      assert.equal(got.headers["content-encoding"], encoding);
      assert.equal((await decision(String(r.headers["x-request-id"]))).reason, "registered");
    }
  });

  test("a zip bomb is not inflated past the extraction limit: it goes to production, as sent, with the reason", async () => {
    const bomb = gzipSync(Buffer.from(`{"id":"R1","pad":"${"0".repeat(50_000_000)}"}`));
    assert.ok(bomb.length < 100_000);
    const r = await send("/cb/json/bomb", bomb, { "content-type": "application/json", "content-encoding": "gzip" });
    assert.equal(r.status, 200);
    assert.ok(reached(prod, "/cb/json/bomb", bomb), "production got the bytes as sent");
    const dec = await decision(String(r.headers["x-request-id"]));
    assert.equal(dec.reason, "body_too_large");
    assert.match(String(dec.detail), /decoded/);
  });

  test("repeated Content-Encoding lines are all undone and the first of two Content-Types counts, as the agent reads them", async () => {
    // The dispatcher took the last line of each: a registered id's callback went to production.
    const twice = gzipSync(gzipSync(Buffer.from('{"id":"R1"}')));
    const g = await send("/cb/json/twice", twice, { "content-type": "application/json", "content-encoding": ["gzip", "gzip"] });
    assert.equal(g.status, 200, g.text);
    assert.ok(reached(sit, "/app/cb/json/twice", twice), "sit got it, bytes as sent");
    const form = Buffer.concat([Buffer.from("out_trade_no="), gbkOrder, Buffer.from("-7")]);
    const types = ["application/x-www-form-urlencoded; charset=GBK", "application/x-www-form-urlencoded; charset=utf-8"];
    const f = await send("/cb/form", form, { "content-type": types });
    assert.equal(f.status, 200, f.text);
    assert.equal((await decision(String(f.headers["x-request-id"]))).objectId, gbkId);
  });

  test("a form or XML body in the charset its Content-Type declares (GBK) yields the id as registered", async () => {
    const form = Buffer.concat([
      Buffer.from("trade_status=TRADE_SUCCESS&out_trade_no="),
      Buffer.from([...gbkOrder].map((b) => `%${b.toString(16).toUpperCase()}`).join("")),
      Buffer.from("-7"),
    ]);
    const f = await send("/cb/form", form, { "content-type": "application/x-www-form-urlencoded; charset=GBK" });
    assert.equal(f.status, 200);
    assert.ok(reached(sit, "/app/cb/form", form), "the GBK form reached sit byte for byte");
    const xml = Buffer.concat([Buffer.from("<xml><out_trade_no>"), gbkOrder, Buffer.from("-7</out_trade_no></xml>")]);
    const x = await send("/cb/xml", xml, { "content-type": "text/xml; charset=gb18030" });
    assert.equal(x.status, 200);
    assert.ok(reached(sit, "/app/cb/xml", xml), "the GB18030 XML reached sit byte for byte");
    assert.equal((await decision(String(x.headers["x-request-id"]))).objectId, gbkId);
    // Without a charset parameter, XML goes by its declaration.
    const declared = Buffer.concat([
      Buffer.from('<?xml version="1.0" encoding="GBK"?><xml><out_trade_no>'),
      gbkOrder,
      Buffer.from("-7</out_trade_no></xml>"),
    ]);
    const dx = await send("/cb/xml", declared, { "content-type": "text/xml" });
    assert.equal((await decision(String(dx.headers["x-request-id"]))).objectId, gbkId);
    // So does one sent without any Content-Type (read as UTF-8 before: two GBK ids became one U+FFFD id).
    const untyped = await send("/cb/xml", declared);
    assert.equal((await decision(String(untyped.headers["x-request-id"]))).objectId, gbkId);
    // A charset no decoder knows: production, and the decision says why.
    const unknown = await send("/cb/form", form, { "content-type": "application/x-www-form-urlencoded; charset=x-klingon" });
    assert.ok(reached(prod, "/cb/form", form));
    assert.match(String((await decision(String(unknown.headers["x-request-id"]))).detail), /charset "x-klingon"/);
  });

  test("a body over its rule's extraction limit (64 KiB by default) is not parsed: production, with the reason, counted", async () => {
    const xml = Buffer.from(`<xml><out_trade_no>R1</out_trade_no><pad>${"p".repeat(100_000)}</pad></xml>`);
    const r = await send("/cb/xml", xml, { "content-type": "text/xml" });
    assert.equal(r.status, 200);
    assert.ok(reached(prod, "/cb/xml", xml));
    const dec = await decision(String(r.headers["x-request-id"]));
    assert.equal(dec.reason, "body_too_large");
    assert.match(String(dec.detail), /65536/);
    const metrics = await (await fetch(`${d.url}/metrics`)).text();
    assert.match(metrics, /callback_dispatcher_extraction_failures_total\{[^}]*rule="cb-xml",reason="body_too_large"[^}]*\} 1/);
    // A rule may raise its own limit for a platform that sends more.
    const big = await send("/cb/xml-big", xml, { "content-type": "text/xml" });
    assert.ok(reached(sit, "/app/cb/xml-big", xml), JSON.stringify(await decision(String(big.headers["x-request-id"]))));
  });

  test("encoded dot segments never reach past an environment's path prefix", async () => {
    const before = sit.received.length + prod.received.length;
    for (const path of [
      "/cb/json/%2e%2e/%2e%2e/admin",
      "/cb/json/%2E%2e/%2E./admin",
      "/cb/json/.%2e/.%2e/admin",
      "/cb/json/../../admin",
      "/cb/json/..;/..;/admin",
      "/cb/json/%252e%252e/%252e%252e/admin",
      "/cb/json/..%2f..%2fadmin",
      "/cb/json/..%5c..%5cadmin",
      // Spellings some servers still read as "..": a NUL or a control character dropped, IIS's %u, overlong UTF-8.
      "/cb/json/..%00/..%00/admin",
      "/cb/json/..%00x/..%00x/admin",
      "/cb/json/.%00./.%00./admin",
      "/cb/json/.%09./.%09./admin",
      "/cb/json/%u002e%u002e/%u002e%u002e/admin",
      "/cb/json/%c0%ae%c0%ae/%c0%ae%c0%ae/admin",
      "/cb/json/%e0%80%ae%e0%80%ae/admin",
      "/cb/json/%f0%80%80%ae%f0%80%80%ae/admin",
      // An overlong slash or backslash after "..", upper-case %U, four layers of encoding, an encoded ? or #.
      "/cb/json/..%c0%af..%c0%afadmin",
      "/cb/json/..%c1%9cadmin",
      "/cb/json/%U002E%U002E/admin",
      "/cb/json/%2525252e%2525252e/admin",
      "/cb/json/..%3f/admin",
      "/cb/json/..%23/admin",
      // Dots once Unicode is normalised (NFKC): fullwidth, as UTF-8 or as %u, and U+2025.
      "/cb/json/%ef%bc%8e%ef%bc%8e/admin",
      "/cb/json/%uff0e%uff0e/admin",
      "/cb/json/%e2%80%a5/admin",
    ]) {
      const r = await send(path, Buffer.from('{"id":"R1"}'), { "content-type": "application/json" });
      assert.equal(r.status, 400, path);
      assert.match(r.text, /dot segment/, path);
    }
    // A fragment is never sent over HTTP; a server that cuts the target there, or not, reads another path.
    const fragment = await send("/cb/json/x#/../../admin", Buffer.from('{"id":"R1"}'), { "content-type": "application/json" });
    assert.equal(fragment.status, 400);
    assert.match(fragment.text, /fragment/);
    assert.equal(sit.received.length + prod.received.length, before, "nothing was forwarded");
    // An ordinary dot in a segment is fine.
    const ok = await send("/cb/json/notify.do", Buffer.from('{"id":"R1"}'), { "content-type": "application/json" });
    assert.equal(ok.status, 200);
    assert.ok(reached(sit, "/app/cb/json/notify.do", Buffer.from('{"id":"R1"}')));
  });

  test("502 and 504 answers tell the third party nothing internal; the detail stays in the decision", async () => {
    for (const [path, id, status] of [
      ["/cb/gone", "GONE", 502],
      ["/cb/slow", "SLOW", 504],
    ] as const) {
      const r = await send(path, Buffer.from(JSON.stringify({ id })), { "content-type": "application/json" });
      assert.equal(r.status, status);
      const requestId = String(r.headers["x-request-id"]);
      assert.doesNotMatch(r.text, /127\.0\.0\.1|http:|gone|slow|ECONNREFUSED/i, r.text);
      assert.ok(r.text.includes(requestId), "the answer names the request id to quote");
      const dec = await decision(requestId);
      assert.match(String(dec.error), status === 502 ? /ECONNREFUSED/ : /timeout/i);
    }
  });

  test("an environment answering 101 Switching Protocols: 502, and the decision says so in words", async () => {
    const switching = await startSwitchingEnvironment();
    try {
      assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/switching", { baseUrl: switching.url })).status, 200);
      await d.api("PUT", "/_dispatcher/v1/rules/cb-switching", {
        interface: { pattern: "/api/x", id: { kind: "json", expr: "id" } },
        callback: { pattern: "/cb/switching", id: { kind: "json", expr: "id" } },
        ttlSeconds: 600,
      });
      await d.api("POST", "/_dispatcher/v1/registrations", { env: "switching", registrations: [{ rule: "cb-switching", id: "S1" }] });
      const errors: string[] = [];
      for (let i = 0; i < switching.answers; i++) {
        const r = await eventually("the rule in force", async () => {
          const x = await send("/cb/switching", Buffer.from(JSON.stringify({ id: "S1" })), { "content-type": "application/json" });
          return x.status !== 200 && x;
        });
        assert.equal(r.status, 502, r.text);
        const dec = await decision(String(r.headers["x-request-id"]));
        assert.equal(dec.targetEnv, "switching");
        errors.push(String(dec.error));
      }
      // Before: undici's "The expression evaluated to a falsy value: assert(upgrade)", and its "bad upgrade".
      for (const error of errors)
        assert.match(
          error,
          /^switching \(http:\/\/127\.0\.0\.1:\d+\): answered 101 Switching Protocols, though a callback asks for no protocol switch$/,
        );
    } finally {
      switching.close();
    }
  });

  test("a transfer coding other than chunked (gzip, chunked) is refused 501 and nothing is forwarded", async () => {
    const before = sit.received.length + prod.received.length;
    const body = gzipSync(JSON.stringify({ id: "R1" }));
    // Node's client frames the body in chunks since the header ends in chunked; the gzip coding stays on the bytes.
    const r = await send("/cb/json/te", body, { "content-type": "application/json", "transfer-encoding": "gzip, chunked" });
    // Before: 200, production got the gzip bytes with no header saying they were coded.
    assert.equal(r.status, 501, r.text);
    assert.deepEqual(JSON.parse(r.text), {
      error: "not_implemented",
      message: 'Transfer-Encoding "gzip, chunked" is not supported: only chunked is (a coded body would reach its environment unlabelled)',
    });
    assert.ok(r.headers["x-request-id"]);
    assert.equal(sit.received.length + prod.received.length, before, "nothing forwarded");
    // Plain chunked still passes.
    const chunked = await send("/cb/json/te", Buffer.from(JSON.stringify({ id: "R1" })), {
      "content-type": "application/json",
      "transfer-encoding": "chunked",
    });
    assert.equal(chunked.status, 200);
  });

  test("an X-Request-Id that is too long or holds other characters is replaced by a new one", async () => {
    const body = Buffer.from('{"id":"R1"}');
    for (const given of ["r".repeat(129), "a b", "<script>", "id\u00e9"]) {
      const r = await send("/cb/json/rid", body, { "content-type": "application/json", "x-request-id": given });
      const id = String(r.headers["x-request-id"]);
      assert.match(id, /^[0-9a-f-]{36}$/, given);
      assert.equal(sit.received.findLast((x) => x.url === "/app/cb/json/rid")?.headers["x-request-id"], id);
    }
    const kept = await send("/cb/json/rid", body, { "content-type": "application/json", "x-request-id": "trace-1.2:3" });
    assert.equal(kept.headers["x-request-id"], "trace-1.2:3");
  });

  test("a request with two Host headers, or none (HTTP/1.1), is refused in the error model with a request id; nothing is forwarded", async () => {
    const before = sit.received.length + prod.received.length;
    const hosts = ["Host: dispatcher\r\nHost: evil.example\r\n", ""];
    for (const [i, host] of hosts.entries()) {
      const answer = await exchange(
        `POST /cb/json/hosts HTTP/1.1\r\n${host}Content-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{"id":"R1"}`,
        true,
      );
      assert.match(answer, /^HTTP\/1\.1 400/);
      assert.match(answer, /\r\nx-request-id: \S+\r\n/i, answer);
      // Without Host, Node answered a bare 400 before: no body, no request id.
      assert.match(answer, i === 0 ? /more than one Host header/ : /an HTTP\/1\.1 request must carry a Host header/);
    }
    assert.equal(sit.received.length + prod.received.length, before);
  });

  test("a third party that half-closes its connection after sending the callback still gets the answer", async () => {
    const body = '{"id":"R1"}';
    // Sent, then the sending side shut down (FIN), as some HTTP/1.0 clients and scripts do: the answer is still read.
    const answer = await exchange(
      `POST /cb/json/half-closed HTTP/1.1\r\nHost: dispatcher\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n` +
        `X-Signature: ${sign(secret, body)}\r\nX-Request-Id: half-closed-1\r\n\r\n${body}`,
      true,
    );
    assert.ok(reached(sit, "/app/cb/json/half-closed", Buffer.from(body)), "sit got the callback");
    assert.match(answer, /^HTTP\/1\.1 200/, "the third party got sit's answer, not a closed connection");
    assert.equal((await decision("half-closed-1")).status, 200);
  });

  test("a chunked body's trailers are not forwarded (as the README says); its bytes are, exact, with a Content-Length", async () => {
    const body = '{"id":"R1"}';
    const answer = await exchange(
      "POST /cb/json/trailer HTTP/1.1\r\nHost: dispatcher\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n" +
        `X-Signature: ${sign(secret, body)}\r\nTrailer: X-Sig\r\nConnection: close\r\n\r\n` +
        `${body.length.toString(16)}\r\n${body}\r\n0\r\nX-Sig: abc\r\n\r\n`,
      false,
    );
    assert.match(answer, /^HTTP\/1\.1 200/);
    const got = sit.received.find((r) => r.url === "/app/cb/json/trailer");
    assert.ok(got?.verified, "sit got the exact bytes");
    assert.equal(got.headers["content-length"], String(body.length));
    assert.equal(got.headers["x-sig"], undefined);
  });

  test("Forwarded, X-Real-IP and X-Forwarded-Proto are rewritten as X-Forwarded-For is, not passed on as the caller wrote them", async () => {
    const body = Buffer.from('{"id":"R1"}');
    const r = await send("/cb/json/fwd", body, {
      "content-type": "application/json",
      host: "pay.example.com",
      forwarded: 'for=10.9.9.9;proto=https;host="internal"',
      "x-real-ip": "10.9.9.9",
      "x-forwarded-proto": "https",
      "x-forwarded-for": "10.9.9.9",
    });
    assert.equal(r.status, 200);
    const got = sit.received.findLast((x) => x.url === "/app/cb/json/fwd")!;
    assert.equal(got.headers["x-real-ip"], "127.0.0.1");
    assert.equal(got.headers["x-forwarded-proto"], "http");
    assert.equal(got.headers["x-forwarded-for"], "10.9.9.9, 127.0.0.1");
    assert.equal(got.headers.forwarded, 'for=10.9.9.9;proto=https;host="internal", for=127.0.0.1;host="pay.example.com";proto=http');
  });

  test("a caller's X-Delivery-Id, X-Delivery-Attempt and X-Replay-Of are not passed on: only the dispatcher sets them", async () => {
    // Receivers dedupe on X-Delivery-Id: a forged one (ids are sequential) would make them drop a later real delivery.
    const r = await send("/cb/json/forged-delivery", Buffer.from('{"id":"R1"}'), {
      "content-type": "application/json",
      "x-delivery-id": "600",
      "x-delivery-attempt": "1",
      "x-replay-of": "somebody",
    });
    assert.equal(r.status, 200);
    const got = sit.received.findLast((x) => x.url === "/app/cb/json/forged-delivery")!;
    for (const name of ["x-delivery-id", "x-delivery-attempt", "x-replay-of"]) assert.equal(got.headers[name], undefined, name);
  });

  test("a caller's Via is kept and the dispatcher's own entry appended", async () => {
    const r = await send("/cb/json/via", Buffer.from('{"id":"R1"}'), { "content-type": "application/json", via: "1.1 edge-proxy" });
    assert.equal(r.status, 200);
    assert.equal(
      sit.received.findLast((x) => x.url === "/app/cb/json/via")?.headers.via,
      "1.1 edge-proxy, 1.1 opsplane-callback-dispatcher",
    );
  });

  test("an environment pointing back at the dispatcher: one callback is answered 508 at once, two decisions, no loop", async () => {
    const started = performance.now();
    const r = await send("/cb/loop", Buffer.from('{"id":"LOOP"}'), { "content-type": "application/json", "x-request-id": "loop-1" });
    const tookMs = performance.now() - started;
    assert.equal(r.status, 508, r.text);
    assert.equal(JSON.parse(r.text).error, "loop_detected");
    assert.match(
      JSON.parse(r.text).message,
      /already passed through this dispatcher \(its Via header names opsplane-callback-dispatcher\)/,
    );
    assert.ok(tookMs < 1_000, `answered in ${Math.round(tookMs)} ms`);
    // The callback that came back (refused, never forwarded), and the one that went out (its environment answered 508).
    const decisions = await eventually("both decisions", async () => {
      const { body } = await d.api("GET", "/_dispatcher/v1/decisions?requestId=loop-1", undefined, viewerKey);
      const found = body.decisions as Decision[];
      return found.length >= 2 ? found : undefined;
    });
    assert.deepEqual(decisions.map((x) => [x.reason, x.targetEnv ?? null, x.status]).sort(), [
      ["forwarding_loop", null, 508],
      ["registered", "self", 508],
    ]);
    assert.match(String(decisions.find((x) => x.reason === "forwarding_loop")?.detail), /Via header names opsplane-callback-dispatcher/);
  });

  test("a callback with more than 2000 headers reaches its environment with every one of them, its signature included", async () => {
    const body = '{"id":"R1"}';
    const answer = await exchange(
      `POST /cb/json/many HTTP/1.1\r\nHost: dispatcher\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n` +
        `${"x-pad: 1\r\n".repeat(2_100)}X-Signature: ${sign(secret, body)}\r\nConnection: close\r\n\r\n${body}`,
      false,
    );
    assert.match(answer, /^HTTP\/1\.1 200/);
    const got = reached(sit, "/app/cb/json/many", Buffer.from(body));
    assert.ok(got, "sit got the callback with its signature");
    assert.equal(String(got.headers["x-pad"]).split(", ").length, 2_100);
  });

  test("no callback is routed under /_audit/: the platform's prefix is answered by the dispatcher itself", async () => {
    const before = sit.received.length + prod.received.length;
    const r = await send("/_audit/x", Buffer.from('{"id":"R1"}'), { "content-type": "application/json" });
    assert.equal(r.status, 404, r.text);
    assert.deepEqual(JSON.parse(r.text), { error: "not_found", message: "no route POST /_audit/x" });
    assert.equal(sit.received.length + prod.received.length, before, "nothing was forwarded");
  });

  test("a dry run of a callback the live path refuses reports that refusal, not a route", async () => {
    const path = "/cb/json/%2e%2e/x";
    const live = await send(path, Buffer.from('{"id":"R1"}'), { "content-type": "application/json" });
    assert.equal(live.status, 400);
    const dry = await d.api("POST", "/_dispatcher/v1/dry-run", { method: "POST", path, body: '{"id":"R1"}' }, viewerKey);
    assert.equal(dry.status, 200);
    assert.deepEqual(dry.body, {
      rule: "",
      objectId: "",
      targetEnv: "",
      targetUrl: "",
      reason: "refused",
      detail: `answered 400 (bad_request): ${JSON.parse(live.text).message}`,
    });
    const looped = await d.api(
      "POST",
      "/_dispatcher/v1/dry-run",
      { method: "POST", path: "/cb/json/x", headers: { Via: "1.1 opsplane-callback-dispatcher" }, body: '{"id":"R1"}' },
      viewerKey,
    );
    assert.equal(looped.body.reason, "forwarding_loop");
    assert.match(String(looped.body.detail), /^answered 508 \(loop_detected\): /);
    // A CONNECT is answered 405 by the live path (it said not_registered, production).
    const connect = await d.api("POST", "/_dispatcher/v1/dry-run", { method: "CONNECT", path: "/cb/json/x" }, viewerKey);
    assert.deepEqual(
      [connect.body.reason, connect.body.detail],
      ["refused", "answered 405 (method_not_allowed): CONNECT is not served here: this is not a proxy"],
    );
  });

  test("unknown rule and environment fields are refused, naming the field, not dropped", async () => {
    // `form` for `from`: dropped silently, the rule would read A's request instead of its response.
    const typo = await d.api("PUT", "/_dispatcher/v1/rules/typo", {
      interface: { pattern: "/api/orders", id: { kind: "json", expr: "order.id", form: "response" } },
      callback: { pattern: "/cb/typo", id: { kind: "json", expr: "id" } },
      ttlSeconds: 60,
    });
    assert.equal(typo.status, 400);
    assert.match(String(typo.body.message), /interface\.id\.form/);
    const topLevel = await d.api("PUT", "/_dispatcher/v1/rules/typo", {
      interface: { pattern: "/api/orders", id: { kind: "json", expr: "order.id" } },
      callback: { pattern: "/cb/typo", id: { kind: "json", expr: "id" } },
      ttl: 60,
      ttlSeconds: 60,
    });
    assert.equal(topLevel.status, 400);
    assert.match(String(topLevel.body.message), /\bttl\b/);
    assert.equal((await d.api("GET", "/_dispatcher/v1/rules/typo")).status, 404, "nothing was saved");
    const env = await d.api("PUT", "/_dispatcher/v1/environments/uat", { baseUrl: "http://uat.internal", prodution: true });
    assert.equal(env.status, 400);
    assert.match(String(env.body.message), /prodution/);
    // Connect too (JSON): `bdy` for `body` would dry-run a callback without its body.
    const rpc = await fetch(`${d.url}/ops.v1.CallbackDispatcherService/DryRun`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${viewerKey}` },
      body: JSON.stringify({ method: "POST", path: "/cb/form", bdy: "out_trade_no=R1" }),
    });
    assert.equal(rpc.status, 400);
    assert.match(await rpc.text(), /key \\?"bdy\\?" is unknown/);
    // Query strings too: `objectid` would have listed every decision.
    const query = await d.api("GET", "/_dispatcher/v1/decisions?objectid=R1");
    assert.equal(query.status, 400);
    assert.match(String(query.body.message), /objectid/);
  });
});

describe("a memory-hungry script", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;

  before(async () => {
    prod = await startSignedStub("prod", secret);
    sit = await startSignedStub("sit", secret);
    // The good callback waits for three runaways: on a loaded machine past the default SCRIPT_WAIT_LIMIT_MS
    // (whose shedding script-flood.test.ts tests), and it would be answered 503 instead of waiting its turn.
    d = await startDispatcher({ SCRIPT_TIME_LIMIT_MS: "20", SCRIPT_WAIT_LIMIT_MS: "30000" });
    await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true });
    await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url });
    // Allocates 100 KB strings faster than the script's time limit is checked.
    const hungry =
      "function extract(m) { const b = JSON.parse(m.body); if (b.hungry) { const a = []; for (;;) a.push('x'.repeat(1e5)); } return b.id; }";
    const res = await d.api("PUT", "/_dispatcher/v1/rules/cb-script", {
      interface: { pattern: "/api/x", id: { kind: "json", expr: "id" } },
      callback: {
        pattern: "/cb/script/**",
        id: { kind: "script", expr: hungry },
        sample: { path: "/cb/script/ok", body: '{"id":"S"}', expectId: "S" },
      },
      ttlSeconds: 60,
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const registered = await d.api("POST", "/_dispatcher/v1/registrations", {
      env: "sit",
      registrations: [{ rule: "cb-script", id: "S1" }],
    });
    assert.deepEqual(registered.body, { registered: 1, ignoredRules: [] });
  });

  after(async () => {
    await d?.close();
    await Promise.all([prod?.close(), sit?.close()]);
  });

  test("is stopped at its memory limit, reported as such, and the script callbacks behind it still reach their environment", async () => {
    // How long they wait behind runaways is measured by bench/sandbox-runaways.ts; the sandbox's own
    // test holds each runaway's memory to its limit (the cause of the waits).
    const post = async (path: string, body: string) => {
      const res = await fetch(`${d.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-signature": sign(secret, body) },
        body,
      });
      await res.arrayBuffer();
      return { status: res.status, requestId: res.headers.get("x-request-id")! };
    };
    const hungry = Array.from({ length: 3 }, (_, i) => post(`/cb/script/hungry-${i}`, '{"id":"S1","hungry":true}'));
    const good = post("/cb/script/ok", '{"id":"S1"}');
    const [first] = await Promise.all(hungry);
    const behind = await good;
    assert.equal(behind.status, 200);
    assert.ok(
      sit.received.some((x) => x.url === "/cb/script/ok"),
      "the good callback reached sit",
    );
    const dec = await eventually("the hungry callback's decision", async () => {
      const { body } = await d.api("GET", "/_dispatcher/v1/decisions?rule=cb-script");
      return (body.decisions as Decision[]).find((x) => x.requestId === first!.requestId);
    });
    assert.equal(dec.reason, "extraction_failed");
    assert.match(String(dec.detail), /memory limit/);
  });
});
