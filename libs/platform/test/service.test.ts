import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { closeRedis, type RunningService, sha256Hex, startService } from "@opsplane/platform";
import {
  type CuttableProxy,
  createTestDatabase,
  eventually,
  freePort,
  startCuttableProxy,
  type TestDatabase,
  testRedis,
} from "@opsplane/testing";
import { Redis } from "ioredis";
import pg from "pg";
import { fixtureService } from "./fixture-service.js";

const keys = { viewer: "viewer-key-0123456789", operator: "operator-key-0123456789" };
const env = (db: TestDatabase, extra: Record<string, string> = {}) => ({
  DATABASE_URL: db.url,
  PORT: "0",
  HOST: "127.0.0.1",
  LOG_LEVEL: "silent",
  BODY_LIMIT_BYTES: "4096",
  AUTH_API_KEYS: `v1:viewer:${sha256Hex(keys.viewer)},o1:operator:${sha256Hex(keys.operator)}`,
  ...extra,
});
const bearer = (k: string) => ({ authorization: `Bearer ${k}` });
const json = { "content-type": "application/json" };

describe("a service built on the kit", () => {
  let db: TestDatabase;
  let svc: RunningService;
  const rpcCalls: string[] = [];
  before(async () => {
    db = await createTestDatabase();
    svc = await startService(fixtureService(undefined, rpcCalls), env(db));
  });
  after(async () => {
    await svc.close();
    await db.drop();
  });
  const call = (path: string, init?: RequestInit) => fetch(svc.url + path, init);

  test("unknown routes answer 404 in the error model", async () => {
    const res = await call("/nope");
    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), { error: "not_found", message: "no route GET /nope" });
    // A path parameter past the router's 4096 characters is refused, and a route that does not exist
    // unknown, each naming the path shortened rather than echoing it whole.
    const long = await call(`/things/${"9".repeat(5_000)}`);
    assert.equal(long.status, 400);
    assert.deepEqual(await long.json(), {
      error: "bad_request",
      message: `the URL cannot be read: '/things/${"9".repeat(192)}… (5008 characters)' is exceeding the max param length`,
    });
    const unknown = await call(`/${"n".repeat(5_000)}`);
    assert.equal(unknown.status, 404);
    assert.deepEqual(await unknown.json(), { error: "not_found", message: `no route GET /${"n".repeat(199)}… (5001 characters)` });
  });

  test("invalid JSON is a 400 that says where it breaks; a __proto__ key is refused as such, not as invalid JSON", async () => {
    const post = async (body: string) => {
      const res = await call("/things", { method: "POST", headers: { ...json, ...bearer(keys.operator) }, body });
      return [res.status, (await res.json()) as { error: string; message: string }] as const;
    };
    const [status, broken] = await post("{name:");
    assert.equal(status, 400);
    assert.equal(broken.error, "invalid_json");
    assert.match(broken.message, /^body is not valid JSON: .*position 1/);
    for (const poisoned of [
      '{"name":"a","size":1,"__proto__":{"admin":true}}',
      '{"name":"a","constructor":{"prototype":{"admin":true}}}',
    ]) {
      const [code, body] = await post(poisoned);
      assert.equal(code, 400);
      assert.deepEqual(body, {
        error: "invalid_json",
        message: "body has a __proto__ key or a constructor.prototype, which are refused (they would alter objects' prototypes)",
      });
    }
  });

  test("a JSON body that is not UTF-8 is refused, not stored with replacement characters", async () => {
    const res = await call("/things", {
      method: "POST",
      headers: { ...json, ...bearer(keys.operator) },
      body: Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]),
    });
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), { error: "invalid_json", message: "body is not valid UTF-8" });
  });

  test("an empty JSON body is no body: the route's schema decides whether one was needed", async () => {
    const res = await call("/things", { method: "POST", headers: { ...json, ...bearer(keys.operator) }, body: "" });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: string; message: string };
    assert.equal(body.error, "invalid_request", "the schema, not the JSON parser, refused it");
  });

  test("a schema violation is a 400 naming the field", async () => {
    const res = await call("/things", {
      method: "POST",
      headers: { ...json, ...bearer(keys.operator) },
      body: JSON.stringify({ name: "a", size: "big" }),
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: string; message: string };
    assert.equal(body.error, "invalid_request");
    assert.match(body.message, /size/);
  });

  test("a field the schema does not declare is a 400 naming it, and nothing is stored", async () => {
    const res = await call("/things", {
      method: "POST",
      headers: { ...json, ...bearer(keys.operator) },
      body: JSON.stringify({ name: "typo", size: 1, szie: 2 }),
    });
    assert.equal(res.status, 400, "fastify's default would drop `szie` and create the thing");
    const body = (await res.json()) as { error: string; message: string; details: { field: string } };
    assert.equal(body.details.field, "szie");
    assert.match(body.message, /unknown field "szie"/);
    const list = await svc.ctx.pool.query("SELECT 1 FROM things WHERE name = 'typo'");
    assert.equal(list.rowCount, 0);
  });

  test("an unknown field or query parameter with a very long name is named shortened, not echoed back whole", async () => {
    // The body's name stays inside this service's 4 KiB body limit; the query's is 15,000 characters.
    for (const [length, path, init] of [
      [
        3_000,
        "/things",
        {
          method: "POST",
          headers: { ...json, ...bearer(keys.operator) },
          body: JSON.stringify({ name: "long", size: 1, ["x".repeat(3_000)]: 2 }),
        },
      ],
      [15_000, `/things/1?${"x".repeat(15_000)}=1`, { headers: bearer(keys.operator) }],
    ] as const) {
      const res = await call(path, init);
      assert.equal(res.status, 400);
      const text = await res.text();
      assert.ok(text.length < 1_000, `a ${text.length}-character answer`);
      const body = JSON.parse(text) as { message: string; details: { field: string } };
      const shown = `${"x".repeat(200)}… (${length} characters)`;
      assert.equal(body.message, `unknown field "${shown}": not part of this request (a typo?)`);
      assert.equal(body.details.field, shown);
    }
  });

  test("an oversize body is refused with 413", async () => {
    const res = await call("/things", {
      method: "POST",
      headers: { ...json, ...bearer(keys.operator) },
      body: JSON.stringify({ name: "x".repeat(5000), size: 1 }),
    });
    assert.equal(res.status, 413);
    assert.equal(((await res.json()) as { error: string }).error, "payload_too_large");
  });

  test("missing and insufficient credentials are refused and audited", async () => {
    const anon = await call("/things", { method: "POST", headers: json, body: JSON.stringify({ name: "a", size: 1 }) });
    assert.equal(anon.status, 401);
    const wrong = await call("/things/1", { headers: bearer("not-a-key") });
    assert.equal(wrong.status, 401);
    const viewer = await call("/things", {
      method: "POST",
      headers: { ...json, ...bearer(keys.viewer) },
      body: JSON.stringify({ name: "a", size: 1 }),
    });
    assert.equal(viewer.status, 403);
    assert.match(((await viewer.json()) as { message: string }).message, /needs operator/);
    const rows = await eventually("three denied audit rows", async () => {
      const r = await svc.ctx.pool.query("SELECT actor, outcome FROM audit_log WHERE outcome = 'denied' ORDER BY id");
      return r.rows.length >= 3 ? r.rows : undefined;
    });
    // Refusals are recorded off the request path, so their order is not fixed.
    assert.deepEqual(rows.map((r) => r.actor).sort(), ["anonymous", "anonymous", "key:v1"]);
  });

  test("a change is audited with who, what and after, and announced on the bus", async () => {
    const seen: unknown[] = [];
    const sub = await svc.ctx.bus.subscribe({
      group: "test-audit",
      topics: ["audit.recorded"],
      handler: async (e) => void seen.push(e.data),
    });
    try {
      const res = await call("/things", {
        method: "POST",
        headers: { ...json, ...bearer(keys.operator) },
        body: JSON.stringify({ name: "widget", size: 3 }),
      });
      assert.equal(res.status, 201);
      const thing = (await res.json()) as { id: number };
      const { rows } = await svc.ctx.pool.query("SELECT actor, role, action, target, after FROM audit_log WHERE action = 'thing.create'");
      assert.deepEqual(rows, [
        {
          actor: "key:o1",
          role: "operator",
          action: "thing.create",
          target: `thing/${thing.id}`,
          after: { id: thing.id, name: "widget", size: 3 },
        },
      ]);
      const event = await eventually("audit event", () => seen.find((d) => (d as { action?: string }).action === "thing.create"));
      assert.equal((event as { actor: string }).actor, "key:o1");
      const dup = await call("/things", {
        method: "POST",
        headers: { ...json, ...bearer(keys.operator) },
        body: JSON.stringify({ name: "widget", size: 4 }),
      });
      assert.equal(dup.status, 409);
      const count = await svc.ctx.pool.query("SELECT count(*)::int AS n FROM audit_log WHERE action = 'thing.create'");
      assert.equal(count.rows[0].n, 1, "a failed change leaves no audit row");
    } finally {
      await sub.close();
    }
  });

  test("every response carries a request id, and a given one is kept", async () => {
    const res = await call("/healthz", { headers: { "x-request-id": "req-42" } });
    assert.equal(res.headers.get("x-request-id"), "req-42");
    assert.match((await call("/healthz")).headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
  });

  test("a URL that cannot be decoded (invalid UTF-8) is a 400 in the error model, with its request id", async () => {
    const res = await call("/things/%FF", { headers: { "x-request-id": "bad-url-1" } });
    assert.equal(res.status, 400);
    assert.equal(res.headers.get("x-request-id"), "bad-url-1");
    assert.equal(((await res.json()) as { error: string }).error, "bad_request");
  });

  test("a given request id longer than 128 characters or with other characters than a token's is replaced", async () => {
    const longest = "a".repeat(128);
    assert.equal((await call("/healthz", { headers: { "x-request-id": longest } })).headers.get("x-request-id"), longest);
    for (const given of ["a".repeat(129), "<script>alert(1)</script>", "two words", 'quote"d']) {
      const id = (await call("/healthz", { headers: { "x-request-id": given } })).headers.get("x-request-id");
      assert.match(id ?? "", /^[0-9a-f-]{36}$/, `kept ${JSON.stringify(given)}`);
    }
  });

  test("Connect answers carry the request id too, errors included", async () => {
    const rpc = (path: string, headers: Record<string, string>, body = "{}") =>
      call(path, { method: "POST", headers: { ...json, "x-request-id": "rpc-7", ...headers }, body });
    const ok = await rpc("/ops.v1.ServiceInfoService/GetServiceInfo", {});
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("x-request-id"), "rpc-7");
    const denied = await rpc("/ops.v1.AuditService/ListAuditEntries", bearer(keys.viewer));
    assert.equal(denied.status, 403);
    assert.equal(denied.headers.get("x-request-id"), "rpc-7");
    const garbage = await rpc("/ops.v1.ServiceInfoService/GetServiceInfo", { "content-type": "application/proto" }, "\u00ff\u00fe");
    assert.equal(garbage.status, 400);
    assert.equal(((await garbage.json()) as { code: string }).code, "invalid_argument");
    assert.equal(garbage.headers.get("x-request-id"), "rpc-7");
  });

  test("a Connect JSON request naming a field its message does not have is refused, not ignored", async () => {
    const res = await call("/ops.v1.ServiceInfoService/GetServiceInfo", { method: "POST", headers: json, body: '{"evn":"uat"}' });
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), {
      code: "invalid_argument",
      message: 'cannot decode message ops.v1.GetServiceInfoRequest from JSON: key "evn" is unknown',
    });
  });

  test("a Connect JSON request that is not UTF-8 is refused before its handler, not taken with replacement characters", async () => {
    const issue = (body: BodyInit, headers: Record<string, string> = {}) =>
      call("/ops.v1.ConfigAppService/IssueToken", { method: "POST", headers: { ...json, ...headers }, body });
    rpcCalls.length = 0;
    // ED A0 80: a lone surrogate encoded as if it were UTF-8; a lenient decoder reads U+FFFD.
    const notUtf8 = Buffer.concat([Buffer.from('{"appId":"a","secret":"s'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]);
    for (const bad of [await issue(notUtf8), await issue(gzipSync(notUtf8), { "content-encoding": "gzip" })]) {
      assert.equal(bad.status, 400);
      assert.deepEqual(await bad.json(), { code: "invalid_argument", message: "body is not valid UTF-8" });
    }
    assert.deepEqual(rpcCalls, [], "the handler was not called");

    // U+FFFD sent as UTF-8 (EF BF BD) is a character the caller meant, and non-ASCII text passes as sent.
    for (const secret of ["s\uFFFD", "汇款"]) {
      const ok = await issue(JSON.stringify({ appId: "a", secret }));
      assert.equal(ok.status, 200);
      assert.equal(((await ok.json()) as { token: string }).token, secret);
    }
    // An empty body is Connect's to judge, as before: it is no JSON message.
    const empty = await issue("");
    assert.equal(empty.status, 400);
    assert.deepEqual(await empty.json(), {
      code: "invalid_argument",
      message: "cannot decode message ops.v1.IssueTokenRequest from JSON: Unexpected end of JSON input",
    });
    assert.deepEqual(rpcCalls, ["s\uFFFD", "汇款"]);
  });

  test("a gRPC-Web JSON message that is not UTF-8 is refused before its handler, as a Connect one is", async () => {
    /** One gRPC-Web frame: a flag byte (1: compressed), the message's length, the message. */
    const frame = (message: Buffer, flags = 0) => {
      const head = Buffer.alloc(5);
      head[0] = flags;
      head.writeUInt32BE(message.length, 1);
      return Buffer.concat([head, message]);
    };
    const issue = (body: Buffer, contentType: string, headers: Record<string, string> = {}) =>
      call("/ops.v1.ConfigAppService/IssueToken", {
        method: "POST",
        headers: { "content-type": contentType, ...headers },
        body: new Uint8Array(body),
      });
    rpcCalls.length = 0;
    const notUtf8 = Buffer.concat([Buffer.from('{"appId":"a","secret":"s'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]);
    for (const bad of [
      await issue(frame(notUtf8), "application/grpc-web+json"),
      await issue(frame(gzipSync(notUtf8), 1), "application/grpc-web+json", { "grpc-encoding": "gzip" }),
    ]) {
      assert.equal(bad.status, 400, await bad.clone().text());
      assert.deepEqual(await bad.json(), { code: "invalid_argument", message: "body is not valid UTF-8" });
    }
    assert.deepEqual(rpcCalls, [], "the handler was not called");
    const ok = await issue(frame(Buffer.from(JSON.stringify({ appId: "a", secret: "汇款" }))), "application/grpc-web+json");
    assert.equal(ok.status, 200);
    assert.deepEqual(rpcCalls, ["汇款"]);
  });

  test("a refusal before the RPC runs (an unknown key) is a Connect error with its reason", async () => {
    const res = await call("/ops.v1.AuditService/ListAuditEntries", {
      method: "POST",
      headers: { ...json, ...bearer("not-a-key") },
      body: "{}",
    });
    assert.equal(res.status, 401);
    assert.deepEqual(await res.json(), { code: "unauthenticated", message: "unknown API key" });
  });

  test("a NUL in a text field is a 400 naming the field, before anything is stored", async () => {
    const res = await call("/things", {
      method: "POST",
      headers: { ...json, ...bearer(keys.operator) },
      body: JSON.stringify({ name: "nul\u0000name", size: 1 }),
    });
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), { error: "invalid_request", message: "body/name must not contain NUL (\\u0000)" });
  });

  test("a number PostgreSQL cannot hold is a 400 with its reason, not a 500; one not written as a decimal is a 400 too", async () => {
    const huge = await call("/things/99999999999", { headers: bearer(keys.viewer) });
    assert.equal(huge.status, 400);
    assert.match(((await huge.json()) as { message: string }).message, /^invalid input: .*out of range for type integer/);
    // Written as anything but a decimal, a number is refused rather than read (ajv's coercion took all of these).
    for (const id of ["1e309", "1e2", "0x10", "0b1", "%2016", "16%20"]) {
      const res = await call(`/things/${id}`, { headers: bearer(keys.viewer) });
      const body = (await res.json()) as { error: string; message: string };
      assert.deepEqual([res.status, body.error, body.message], [400, "invalid_request", "params/id must be a decimal number"], id);
    }
  });

  test("/metrics shows RED metrics per route template", async () => {
    await call("/things/1", { headers: bearer(keys.viewer) });
    const text = await (await call("/metrics")).text();
    assert.match(text, /http_requests_total\{method="GET",route="\/things\/:id",status_code="\d{3}",service="fixture-svc"\} \d+/);
    assert.match(text, /http_request_duration_seconds_bucket\{.*route="\/things\/:id"/);
    assert.match(text, /process_cpu_user_seconds_total/);
  });

  test("every RPC answers plain JSON over HTTP POST", async () => {
    const res = await call("/ops.v1.ServiceInfoService/GetServiceInfo", { method: "POST", headers: json, body: "{}" });
    assert.equal(res.status, 200);
    const info = (await res.json()) as { name: string; version: string; bus: string; ready: boolean };
    assert.deepEqual([info.name, info.version, info.bus, info.ready], ["fixture-svc", "0.0.1", "postgres", true]);
  });

  test("readiness and health", async () => {
    assert.equal((await call("/healthz")).status, 200);
    const ready = await call("/readyz");
    assert.equal(ready.status, 200);
    assert.deepEqual(((await ready.json()) as { checks: Record<string, string> }).checks, { postgres: "ok", bus: "ok" });
  });
});

describe("dependencies down", () => {
  test("an unreachable Redis makes /readyz 503 naming it while /healthz stays 200", async () => {
    const db = await createTestDatabase();
    const svc = await startService(fixtureService(), env(db, { REDIS_URL: `redis://127.0.0.1:${await freePort()}` }));
    try {
      const res = await fetch(`${svc.url}/readyz`);
      assert.equal(res.status, 503);
      const body = (await res.json()) as { failing: string[] };
      assert.deepEqual(body.failing, ["redis"]);
      assert.equal((await fetch(`${svc.url}/healthz`)).status, 200);
    } finally {
      await svc.close();
      await db.drop();
    }
  });

  /** The fixture service reaching Redis through a proxy the test cuts; `redisCheck` reads /readyz's Redis check. */
  async function withRedisBehindProxy(fn: (proxy: CuttableProxy, redisCheck: () => Promise<string>) => Promise<void>): Promise<void> {
    const db = await createTestDatabase();
    const redisUrl = new URL(testRedis().url);
    const proxy = await startCuttableProxy(redisUrl.hostname, Number(redisUrl.port || 6379));
    const svc = await startService(fixtureService(), env(db, { REDIS_URL: `redis://127.0.0.1:${proxy.port}` }));
    const redisCheck = async () => ((await (await fetch(`${svc.url}/readyz`)).json()) as { checks: Record<string, string> }).checks.redis;
    try {
      await fn(proxy, redisCheck);
    } finally {
      await svc.close();
      await proxy.close();
      await db.drop();
    }
  }

  test("a Redis connection that goes silent without a reset is replaced: /readyz is ready again within seconds", () =>
    withRedisBehindProxy(async (proxy, redisCheck) => {
      assert.equal(await redisCheck(), "ok");
      // A NAT entry gone: the open connection passes nothing and is never reset; a new one would be answered.
      proxy.silenceOpenConnections();
      await eventually("/readyz sees Redis not answering", async () => (await redisCheck()) !== "ok", 5_000);
      await eventually("/readyz sees Redis again over a new connection", async () => (await redisCheck()) === "ok", 10_000);
    }));

  test("a Redis that accepts connections and never answers them, then answers new ones, is used again within seconds", () =>
    withRedisBehindProxy(async (proxy, redisCheck) => {
      assert.equal(await redisCheck(), "ok");
      // A hung proxy: open connections and the new one the watchdog opens are accepted and never answered.
      proxy.blackhole();
      await eventually("/readyz sees Redis not answering", async () => (await redisCheck()) !== "ok", 5_000);
      await eventually("the replacement connection accepted", () => proxy.accepted() >= 2, 10_000);
      // New connections are answered again; the ones already open stay silent. Before, the replacement stayed
      // stuck before its ready check for good, and /readyz degraded until a restart.
      proxy.admitNewConnections();
      await eventually("/readyz sees Redis again over a new connection", async () => (await redisCheck()) === "ok", 15_000);
    }));

  test("PostgreSQL going away makes /readyz 503 naming it; it recovers when the database is back", async () => {
    const db = await createTestDatabase();
    const svc = await startService(fixtureService(), env(db));
    const dbName = new URL(db.url).pathname.slice(1);
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    try {
      await admin.query(`ALTER DATABASE ${dbName} ALLOW_CONNECTIONS false`);
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [dbName]);
      const down = await eventually("readyz 503", async () => {
        const r = await fetch(`${svc.url}/readyz`);
        return r.status === 503 ? ((await r.json()) as { failing: string[] }) : undefined;
      });
      assert.ok(down.failing.includes("postgres"));
      assert.equal((await fetch(`${svc.url}/healthz`)).status, 200);
      await admin.query(`ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`);
      await eventually("readyz 200 again", async () => (await fetch(`${svc.url}/readyz`)).status === 200);
    } finally {
      await admin.query(`ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`);
      await admin.end();
      await svc.close();
      await db.drop();
    }
  });
});

describe("non-critical checks", () => {
  test("one whose dependency does not answer is reported degraded within a probe's 1 s timeout, and the service stays ready", async () => {
    const db = await createTestDatabase();
    const svc = await startService(
      {
        name: "degraded-svc",
        version: "0.0.1",
        defaultPort: 0,
        setup: () => ({ checks: { cache: () => new Promise<void>(() => {}) }, nonCriticalChecks: ["cache"] }),
      },
      env(db),
    );
    try {
      const started = performance.now();
      const res = await fetch(`${svc.url}/readyz`);
      const tookMs = performance.now() - started;
      const body = (await res.json()) as { status: string; degraded: string[]; checks: Record<string, string> };
      assert.equal(res.status, 200);
      assert.deepEqual([body.status, body.degraded, body.checks.cache], ["degraded", ["cache"], "no answer within 500 ms"]);
      assert.ok(tookMs < 1_000, `answered in ${Math.round(tookMs)} ms`);
    } finally {
      await svc.close();
      await db.drop();
    }
  });
});

describe("request headers", () => {
  let db: TestDatabase;
  let svc: RunningService;
  before(async () => {
    db = await createTestDatabase();
    svc = await startService(
      {
        name: "headers-svc",
        version: "0.0.1",
        defaultPort: 0,
        setup: (ctx) => {
          ctx.app.get("/headers", { config: { access: "public" } }, async (req) => ({
            count: req.raw.rawHeaders.length / 2,
            last: req.headers["x-last"],
          }));
          return {};
        },
      },
      env(db, { REQUEST_TIMEOUT_MS: "1000" }),
    );
  });
  after(async () => {
    await svc.close();
    await db.drop();
  });

  /** A raw GET /headers with `count` headers `p: <value>` before `X-Last`: its status and body. */
  const sendWith = (count: number, value = "1") =>
    sendRaw(`GET /headers HTTP/1.1\r\nHost: x\r\n${`p: ${value}\r\n`.repeat(count)}X-Last: kept\r\nConnection: close\r\n\r\n`);

  /** `head` written as is on a new connection: the status, header section and body answered. */
  function sendRaw(head: string | Buffer): Promise<{ status: number; head: string; body: string }> {
    const { port } = new URL(svc.url);
    return new Promise((resolve) => {
      // Written, not ended: the server closes the connection once it has answered (Connection: close).
      const socket = net.connect(Number(port), "127.0.0.1", () => socket.write(head));
      // A server that never answers fails the test (no status) instead of holding it.
      socket.setTimeout(10_000, () => socket.destroy());
      const chunks: Buffer[] = [];
      socket.on("data", (c: Buffer) => chunks.push(c));
      // A server refusing the request may reset the connection before reading all of it: what it answered counts.
      socket.on("error", () => {});
      socket.on("close", () => {
        const text = Buffer.concat(chunks).toString();
        const end = text.indexOf("\r\n\r\n");
        resolve({ status: Number(text.slice(9, 12)), head: text.slice(0, end), body: text.slice(end + 4) });
      });
    });
  }

  test("more than 2000 headers are all kept, none dropped silently", async () => {
    const res = await sendWith(2_100);
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(JSON.parse(res.body), { count: 2_103, last: "kept" });
  });

  /** The request id an answer carries (its header section as written). */
  const requestIdOf = (head: string) => /^x-request-id: ([0-9a-f-]{36})$/im.exec(head)?.[1];

  test("headers over 16 KiB are answered 431 in the error model, with a request id", async () => {
    const res = await sendWith(2_100, "12345678");
    assert.equal(res.status, 431);
    assert.equal((JSON.parse(res.body) as { error: string }).error, "header_too_large");
    assert.ok(requestIdOf(res.head), res.head);
  });

  test("a request Node's parser refuses is a 400 in the error model naming the reason, with a request id, not Node's bare 400", async () => {
    const refused = [
      Buffer.from("GET /headers HTTP/1.1\r\nHost: x\r\nX-Bad: a\u0000b\r\n\r\n"),
      Buffer.concat([Buffer.from("GET /a"), Buffer.from([0xff]), Buffer.from(" HTTP/1.1\r\nHost: x\r\n\r\n")]),
      Buffer.from("GET /headers HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
    ];
    for (const raw of refused) {
      const res = await sendRaw(raw);
      assert.equal(res.status, 400, JSON.stringify(raw.toString("latin1")));
      const body = JSON.parse(res.body) as { error: string; message: string };
      assert.equal(body.error, "bad_request");
      assert.match(body.message, /^the request cannot be read as HTTP\/1\.1: \S/);
      assert.ok(requestIdOf(res.head), res.head);
    }
  });

  test("an HTTP/1.1 request without Host, or with two, is a 400 in the error model with a request id and its connection closed; HTTP/1.0 needs none", async () => {
    // Pipelined after it, a valid request: not answered (the connection closes), as after the parser's refusals.
    const res = await sendRaw("GET /headers HTTP/1.1\r\n\r\nGET /headers HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(res.status, 400);
    assert.deepEqual(JSON.parse(res.body), { error: "bad_request", message: "an HTTP/1.1 request must carry a Host header" });
    assert.ok(requestIdOf(res.head), res.head);
    assert.match(res.head, /^connection: close$/im);
    const two = await sendRaw("GET /headers HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert.equal(two.status, 400, "two Host headers got 200 before");
    assert.deepEqual(JSON.parse(two.body), { error: "bad_request", message: "request has more than one Host header" });
    assert.equal((await sendRaw("GET /headers HTTP/1.0\r\n\r\n")).status, 200);
  });

  test("a request read before a refused one on the same connection (pipelined) still gets its answer, then the refusal", async () => {
    const { port } = new URL(svc.url);
    // A malformed request, and a CONNECT (answered 405 outside any route), after a valid one.
    for (const [second, status] of [
      ["GARBAGE /x\r\n\r\n", 400],
      ["CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n", 405],
    ] as const) {
      const text = await new Promise<string>((resolve) => {
        const socket = net.connect(Number(port), "127.0.0.1", () =>
          socket.write(`GET /headers HTTP/1.1\r\nHost: x\r\nX-Last: first\r\n\r\n${second}`),
        );
        socket.setTimeout(10_000, () => socket.destroy());
        const chunks: Buffer[] = [];
        socket.on("data", (c: Buffer) => chunks.push(c));
        socket.on("error", () => {});
        socket.on("close", () => resolve(Buffer.concat(chunks).toString()));
      });
      const answers = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
      assert.deepEqual(answers, [200, status], text);
      assert.match(text, /"last":"first"/);
    }
  });

  test("a request whose body trickles in past REQUEST_TIMEOUT_MS is answered 408 and its connection closed", async () => {
    const started = performance.now();
    // Ten bytes announced, one sent, the rest never: the connection would otherwise stay open for ever.
    const res = await sendRaw(
      "POST /headers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-Id: slow-body-1\r\nContent-Length: 10\r\n\r\n{",
    );
    const tookMs = performance.now() - started;
    assert.equal(res.status, 408, res.head);
    assert.equal((JSON.parse(res.body) as { error: string }).error, "request_timeout");
    // The id its route knew it by (a callback's decision carries it), not a new one the caller cannot match.
    assert.match(res.head, /^x-request-id: slow-body-1$/im);
    // 1 s, looked for every second: answered within about two.
    assert.ok(tookMs < 5_000, `answered after ${Math.round(tookMs)} ms`);
  });

  test("a CONNECT (a tunnel: the platform is no proxy) is answered 405 in the error model, not dropped", async () => {
    const res = await sendRaw("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nX-Request-Id: tunnel-1\r\n\r\n");
    assert.equal(res.status, 405);
    assert.match(res.head, /^x-request-id: tunnel-1$/im);
    assert.deepEqual(JSON.parse(res.body), { error: "method_not_allowed", message: "CONNECT is not served here: this is not a proxy" });
  });
});

describe("graceful shutdown", () => {
  test("an in-flight request completes, new ones are refused, and close resolves", async () => {
    const db = await createTestDatabase();
    let release: () => void = () => {};
    let entered = false;
    const gate = new Promise<void>((r) => (release = r));
    const svc = await startService(fixtureService({ gate, entered: () => (entered = true) }), env(db));
    try {
      const inflight = fetch(`${svc.url}/slow`);
      await eventually("slow request in flight", () => entered);
      const closed = svc.close();
      const refused = await fetch(`${svc.url}/healthz`).then(
        (r) => r.status,
        () => "refused",
      );
      assert.ok(refused === 503 || refused === "refused", `new request during shutdown got ${refused}`);
      release();
      const res = await inflight;
      assert.equal(res.status, 200);
      // Its connection closes with it, so close() need not wait out the keep-alive timeout.
      assert.equal(res.headers.get("connection"), "close");
      assert.deepEqual(await res.json(), { done: true });
      await closed;
    } finally {
      release();
      await db.drop();
    }
  });
});

describe("requests served before the router", () => {
  test("a service may answer some requests on the raw server; the rest reach fastify, and RED metrics count both", async () => {
    const db = await createTestDatabase();
    const svc = await startService(
      {
        name: "front-svc",
        version: "0.0.1",
        defaultPort: 0,
        setup: (ctx) => {
          ctx.app.get("/routed", { config: { access: "public" } }, async () => ({ via: "router" }));
          ctx.serveBeforeRouter((req, res) => {
            if (!req.url?.startsWith("/raw/")) return false;
            res.writeHead(200, { "content-type": "text/plain" });
            res.end("raw");
            ctx.recordRequest(req.method ?? "GET", "/raw/*", 200, 0.001);
            return true;
          });
          return {};
        },
      },
      env(db),
    );
    try {
      assert.equal(await (await fetch(`${svc.url}/raw/anything`)).text(), "raw");
      assert.deepEqual(await (await fetch(`${svc.url}/routed`)).json(), { via: "router" });
      assert.equal((await fetch(`${svc.url}/elsewhere`)).status, 404);
      const metrics = await (await fetch(`${svc.url}/metrics`)).text();
      assert.match(metrics, /http_requests_total\{[^}]*method="GET",route="\/raw\/\*",status_code="200"[^}]*\} 1/);
      assert.match(metrics, /http_requests_total\{[^}]*method="GET",route="\/routed",status_code="200"[^}]*\} 1/);
    } finally {
      await svc.close();
      await db.drop();
    }
  });
});

describe("the audit trail beside a before-router handler", () => {
  test("a handler that takes every request (a proxy's catch-all) never takes the audit query", async () => {
    const db = await createTestDatabase();
    const svc = await startService(
      {
        name: "catch-all-svc",
        version: "0.0.1",
        defaultPort: 0,
        setup: (ctx) => {
          ctx.serveBeforeRouter((_req, res) => {
            res.writeHead(204).end();
            return true;
          });
          return {};
        },
      },
      env(db),
    );
    try {
      assert.equal((await fetch(`${svc.url}/anything`)).status, 204);
      const audit = await fetch(`${svc.url}/_audit/v1/entries`, { headers: bearer(keys.operator) });
      assert.equal(audit.status, 200);
      assert.ok(Array.isArray(((await audit.json()) as { entries?: unknown[] }).entries ?? []));
    } finally {
      await svc.close();
      await db.drop();
    }
  });
});

describe("closing with Redis gone", () => {
  test("a Redis client with commands waiting for a reconnection is closed without waiting for Redis", async () => {
    const client = new Redis(`redis://127.0.0.1:${await freePort()}`, { maxRetriesPerRequest: null });
    client.on("error", () => {});
    const waiting = client.get("k").catch((err: Error) => err);
    await closeRedis(client);
    assert.ok((await waiting) instanceof Error, "the queued command is failed, not left pending");
    await eventually("client ended", async () => client.status === "end");
  });
});
