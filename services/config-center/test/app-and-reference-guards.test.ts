import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { sha256Hex } from "@opsplane/platform";
import { type CuttableProxy, eventually, freePort, startCuttableProxy, testRedis } from "@opsplane/testing";
import { Redis } from "ioredis";
import { call, Instance, startCenters } from "./harness.js";

type Centers = Awaited<ReturnType<typeof startCenters>>;

const register = (base: string, token: string) =>
  call(base, "POST", "/config/v1/instances", { token, body: { env: "prod", hostName: "h", ip: "10.0.0.9", servicePort: 8080 } });

describe("an app re-enabled on one replica works on the others", () => {
  let c: Centers;
  before(async () => {
    c = await startCenters(2, { redis: true });
  });
  after(async () => c?.close());

  test("a replica that saw the app disabled admits it again once it is enabled", async () => {
    const [a, b] = c.urls as [string, string];
    const app = { appId: "toggled", secret: "toggled-secret-1" };
    assert.equal((await call(a, "PUT", "/config/v1/apps/toggled", { role: "admin", body: { secret: app.secret } })).status, 200);
    const first = await call(a, "POST", "/config/v1/token", { body: app });
    assert.equal(first.status, 200);
    const onB = await Instance.start(b, app);

    assert.equal((await call(a, "PUT", "/config/v1/apps/toggled", { role: "admin", body: { enabled: false } })).status, 200);
    // Replica B has heard of the disabling once it closes the app's socket there.
    assert.equal((await onB.whenClosed()).code, 4003);
    const refused = await register(b, first.body.token);
    assert.equal(refused.status, 403);
    assert.match(refused.body.message, /app toggled is disabled/);

    assert.equal((await call(a, "PUT", "/config/v1/apps/toggled", { role: "admin", body: { enabled: true } })).status, 200);
    const second = await call(b, "POST", "/config/v1/token", { body: app });
    assert.equal(second.status, 200);
    const registered = await eventually("registration on replica B", async () => {
      const r = await register(b, second.body.token);
      return r.status === 201 ? r : undefined;
    });
    assert.ok(registered.body.instanceId);
  });
});

describe("a resource change that would break what uses it", () => {
  let c: Centers;
  let base: string;
  before(async () => {
    c = await startCenters(1, { redis: false });
    base = c.urls[0]!;
    const db = { type: "postgresql", config: { host: "db.internal", port: 5432 }, secrets: { password: "s3cret-pw" } };
    assert.equal((await call(base, "PUT", "/config/v1/resources/middleware/loan-db", { role: "admin", body: db })).status, 200);
    const proxy = { type: "other", config: { target: { $ref: "middleware/loan-db#port" } } };
    assert.equal((await call(base, "PUT", "/config/v1/resources/service/db-proxy", { role: "admin", body: proxy })).status, 200);
    const datasource = {
      value: { host: { $ref: "middleware/loan-db#host" }, password: { $ref: "middleware/loan-db#password" } },
      category: "database",
    };
    assert.equal(
      (await call(base, "PUT", "/config/v1/items/technical/loan/prod/datasource", { role: "operator", body: datasource })).status,
      200,
    );
  });
  after(async () => c?.close());

  const resource = async () => (await call(base, "GET", "/config/v1/resources/middleware/loan-db", { role: "viewer" })).body;

  test("removing a secret field an item references is refused naming the item, and nothing changes", async () => {
    const before = await resource();
    const r = await call(base, "PUT", "/config/v1/resources/middleware/loan-db", {
      role: "admin",
      body: { type: "postgresql", config: { host: "db.internal", port: 5432 }, removeSecrets: ["password"] },
    });
    assert.equal(r.status, 409);
    assert.match(r.body.message, /item\/technical\/loan\/prod\/datasource/);
    assert.match(r.body.message, /has no field "password"/);
    const now = await resource();
    assert.equal(now.revision, before.revision);
    assert.deepEqual(Object.keys(now.secrets), ["password"]);
  });

  test("dropping a config key an item or another resource references is refused naming them", async () => {
    const noHost = await call(base, "PUT", "/config/v1/resources/middleware/loan-db", {
      role: "admin",
      body: { type: "postgresql", config: { port: 5432 } },
    });
    assert.equal(noHost.status, 409);
    assert.match(noHost.body.message, /item\/technical\/loan\/prod\/datasource/);
    const noPort = await call(base, "PUT", "/config/v1/resources/middleware/loan-db", {
      role: "admin",
      body: { type: "postgresql", config: { host: "db.internal" } },
    });
    assert.equal(noPort.status, 409);
    assert.match(noPort.body.message, /resource\/service\/db-proxy/);
    assert.equal((await resource()).config.host, "db.internal");
  });

  test("a change that keeps every referenced field goes through, and a referenced resource cannot be deleted", async () => {
    const moved = await call(base, "PUT", "/config/v1/resources/middleware/loan-db", {
      role: "admin",
      body: { type: "postgresql", config: { host: "db2.internal", port: 5433 } },
    });
    assert.equal(moved.status, 200);
    assert.deepEqual(
      moved.body.affected.map((i: { key: string }) => i.key),
      ["datasource"],
    );
    const deleted = await call(base, "DELETE", "/config/v1/resources/middleware/loan-db", { role: "admin" });
    assert.equal(deleted.status, 409);
    assert.match(deleted.body.message, /still referenced by/);
  });
});

describe("an app known only from AUTH_APP_CREDENTIALS", () => {
  let c: Centers;
  const secret = "kit-known-secret";
  before(async () => {
    c = await startCenters(1, {
      redis: false,
      env: { AUTH_APP_CREDENTIALS: `kit-known:${sha256Hex(secret)},kit-closed:${sha256Hex(secret)}` },
    });
  });
  after(async () => c?.close());

  test("gets its record at its first token, with unknown apps admitted or not", async () => {
    const base = c.urls[0]!;
    const first = await Instance.start(base, { appId: "kit-known", secret });
    first.close();
    const record = await call(base, "GET", "/config/v1/apps/kit-known", { role: "viewer" });
    assert.equal(record.body.createdBy, "credentials");
    assert.equal(record.body.hasSecret, false);

    assert.equal((await call(base, "PUT", "/config/v1/settings", { role: "admin", body: { admitUnknownApps: false } })).status, 200);
    const closed = await Instance.start(base, { appId: "kit-closed", secret });
    closed.close();
    const wrong = await call(base, "POST", "/config/v1/token", { body: { appId: "kit-closed", secret: "not-the-secret" } });
    assert.equal(wrong.status, 401);
    const audit = await call(base, "GET", "/config/v1/audit?target=app/kit-closed", { role: "operator" });
    assert.ok(audit.body.entries.some((e: { action: string }) => e.action === "app.create"));
  });
});

describe("a Redis outage", () => {
  let c: Centers;
  before(async () => {
    c = await startCenters(1, { redis: false, env: { REDIS_URL: `redis://127.0.0.1:${await freePort()}` } });
  });
  after(async () => c?.close());

  test("leaves the replica ready (degraded) and serving instances", async () => {
    const base = c.urls[0]!;
    const ready = await fetch(`${base}/readyz`);
    const body = (await ready.json()) as { status: string; failing: string[]; degraded: string[] };
    assert.equal(ready.status, 200);
    assert.deepEqual(
      { status: body.status, failing: body.failing, degraded: body.degraded },
      {
        status: "degraded",
        failing: [],
        degraded: ["redis"],
      },
    );
    const instance = await Instance.start(base, { appId: "no-cache", secret: "no-cache-secret" });
    instance.close();
  });
});

/** `work`, or a failure naming `what` once `ms` have passed: a bound, so a hang fails the test instead of stalling it. */
function within<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

describe("a Redis that accepts connections but never answers (a partition), from start-up on", () => {
  let c: Centers;
  const silent = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
  });
  const sockets = new Set<net.Socket>();
  before(async () => {
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    c = await startCenters(1, { redis: false, env: { REDIS_URL: `redis://127.0.0.1:${(silent.address() as net.AddressInfo).port}` } });
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    silent.close();
    await within(15_000, "shutdown", c?.close() ?? Promise.resolve());
  });

  test("tokens and business writes are answered, and SIGTERM's close() ends promptly", async () => {
    const base = c.urls[0]!;
    const instance = await within(
      15_000,
      "an instance start",
      Instance.start(base, { appId: "partitioned", secret: "partitioned-secret" }),
    );
    const put = await within(
      15_000,
      "a business write",
      call(base, "PUT", "/config/v1/items/business/_/_/promo", { role: "operator", body: { value: 1 } }),
    );
    assert.equal(put.status, 200, put.body.message);
    await instance.until("business", "promo", (v) => v.value === 1);
    instance.close();
    await within(15_000, "close()", c.centers[0]!.close());
  });

  test("a replica closed right after starting without Redis (connections refused) ends promptly too", async () => {
    const refused = await startCenters(1, { redis: false, env: { REDIS_URL: `redis://127.0.0.1:${await freePort()}` } });
    await within(15_000, "close() right after start-up", refused.close());
  });
});

describe("a Redis partition mid-run costs one command deadline, not one per token request", () => {
  let c: Centers;
  let proxy: CuttableProxy;
  let redis: Redis;
  const { prefix } = testRedis();
  const app = { appId: "cut-off", secret: "cut-off-secret-1" };
  const wrong = { ...app, secret: "not-the-secret" };
  before(async () => {
    proxy = await startCuttableProxy("127.0.0.1", Number(new URL(process.env.REDIS_URL!).port || 6379));
    redis = new Redis(process.env.REDIS_URL!);
    // The limit is out of reach: this test counts where failures go, not when they are throttled.
    c = await startCenters(1, {
      redis: false,
      env: { REDIS_URL: `redis://127.0.0.1:${proxy.port}`, CONFIG_REDIS_PREFIX: prefix, TOKEN_FAILURE_LIMIT: "100000" },
    });
  });
  after(async () => {
    await c?.close();
    await proxy?.close();
    redis?.disconnect();
  });

  /** The failed token requests counted in Redis for the app, summed over windows (the test may straddle two). */
  const countedInRedis = async () => {
    const keys = await redis.keys(`${prefix}token-failures:*:app:${app.appId}`);
    return keys.length ? (await redis.mget(...keys)).reduce((sum, n) => sum + Number(n ?? 0), 0) : 0;
  };
  const timed = async (body: unknown) => {
    const started = performance.now();
    const r = await call(c.urls[0]!, "POST", "/config/v1/token", { body });
    return { status: r.status, ms: performance.now() - started };
  };

  test("after the first command times out, tokens are answered at once until Redis answers a probe again", async () => {
    const base = c.urls[0]!;
    assert.equal((await call(base, "PUT", `/config/v1/apps/${app.appId}`, { role: "admin", body: { secret: app.secret } })).status, 200);
    assert.equal((await timed(wrong)).status, 401);
    assert.equal(await countedInRedis(), 1, "with Redis answering, failures are counted there");

    proxy.blackhole();
    // The first request meets the silent Redis and waits out the command deadline (2 s)…
    assert.equal((await within(15_000, "the first token in the partition", timed(app))).status, 200);
    // …the later ones do not ask it: the gap between a good token (2 s before) and a refused one (4 s) is gone.
    for (const [body, status] of [
      [app, 200],
      [wrong, 401],
      [app, 200],
      [wrong, 401],
    ] as const) {
      const r = await timed(body);
      assert.equal(r.status, status);
      assert.ok(r.ms < 500, `a token request during the partition took ${Math.round(r.ms)} ms`);
    }
    const started = performance.now();
    (await Instance.start(base, app)).close();
    assert.ok(performance.now() - started < 1_500, `an app start during the partition took ${Math.round(performance.now() - started)} ms`);
    assert.equal(await countedInRedis(), 1, "failures in the partition were counted in memory");

    proxy.heal();
    // Once the probe sees Redis again, failures are counted there again (shared by the replicas).
    await eventually(
      "failures counted in Redis again",
      async () => (await timed(wrong)).status === 401 && (await countedInRedis()) > 1,
      15_000,
      200,
    );
  });
});

describe("patterns in item schemas", () => {
  let c: Centers;
  let base: string;
  before(async () => {
    c = await startCenters(1, { redis: false });
    base = c.urls[0]!;
  });
  after(async () => c?.close());

  const put = (key: string, body: unknown) => call(base, "PUT", `/config/v1/items/business/_/_/${key}`, { role: "operator", body });
  const evil = "^(a+)+$";
  const long = `${"a".repeat(64)}b`;

  test("a catastrophic-backtracking pattern answers at once: the long value simply does not match", async () => {
    const r = await put("redos", { schema: { type: "string", pattern: evil }, value: long, category: "custom" });
    assert.equal(r.status, 400);
    assert.match(r.body.message, /must match pattern/);
    const ok = await put("redos", { schema: { type: "string", pattern: evil }, value: "aaaa", category: "custom" });
    assert.equal(ok.status, 200);
  });

  test("patternProperties go through the same engine", async () => {
    const schema = { type: "object", patternProperties: { [evil]: { type: "integer" } }, additionalProperties: false };
    const r = await put("redos-keys", { schema, value: { [long]: 1 }, category: "custom" });
    assert.equal(r.status, 400);
    assert.match(r.body.message, /must NOT have additional properties/);
  });

  test("a pattern the linear-time engine cannot run is refused naming its place in the schema", async () => {
    const r = await put("lookahead", {
      schema: { type: "object", properties: { code: { type: "string", pattern: "^(?=A)[A-Z]+$" } } },
      value: { code: "ABC" },
      category: "custom",
    });
    assert.equal(r.status, 400);
    assert.match(r.body.message, /schema \/properties\/code\/pattern/);
    assert.equal((await call(base, "GET", "/config/v1/items/business/_/_/lookahead", { role: "viewer" })).status, 404);
  });
});
