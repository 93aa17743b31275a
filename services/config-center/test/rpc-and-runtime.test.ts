import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { call, Instance, type Json, keys, startCenters } from "./harness.js";

/** A Connect RPC over JSON, as curl users and the SDK make it. */
async function rpc(base: string, service: string, method: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}/ops.v1.${service}/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, Json> };
}
const as = (role: keyof typeof keys) => ({ authorization: `Bearer ${keys[role]}` });

describe("Connect RPCs, locks and sequences", () => {
  let env: Awaited<ReturnType<typeof startCenters>>;
  let base: string;

  before(async () => {
    env = await startCenters(1, { redis: true });
    base = env.urls[0]!;
  });
  after(async () => env.close());

  test("an app starts over Connect: token, registration, metadata", async () => {
    const token = await rpc(base, "ConfigAppService", "IssueToken", { appId: "loan", secret: "loan-secret-0123" });
    assert.equal(token.status, 200);
    const t = { "x-config-token": token.body.token };
    const reg = await rpc(
      base,
      "ConfigAppService",
      "RegisterInstance",
      { env: "uat", hostName: "h", ip: "10.1.1.1", servicePort: 8080, labels: { zone: "b" } },
      t,
    );
    assert.equal(reg.status, 200, reg.body.message);
    assert.equal(reg.body.socketPath, `/config/v1/instances/${reg.body.instanceId}/socket`);
    const put = await rpc(
      base,
      "ConfigCenterService",
      "PutItem",
      {
        ref: { kind: "governance", app: "loan", key: "route/loan.apply" },
        value: { enabled: false, conditions: [{ by: "caller", values: ["crm"], enabled: true }] },
      },
      as("operator"),
    );
    assert.equal(put.status, 200, put.body.message);
    const meta = await rpc(base, "ConfigAppService", "GetMetadata", { instanceId: reg.body.instanceId }, t);
    assert.equal(meta.status, 200, meta.body.message);
    assert.equal(meta.body.metadata.version, put.body.change.version);
    assert.deepEqual(meta.body.metadata.governance[0].value, {
      enabled: false,
      conditions: [{ by: "caller", values: ["crm"], enabled: true }],
    });
    const bad = await rpc(base, "ConfigAppService", "IssueToken", { appId: "loan", secret: "wrong-secret-000" });
    assert.equal(bad.status, 401);
    assert.equal(bad.body.code, "unauthenticated");
  });

  test("roles are enforced on RPCs; a stale write and bad input map to Connect codes with the reason", async () => {
    const ref = { kind: "technical", app: "loan", env: "uat", key: "mq" };
    const denied = await rpc(base, "ConfigCenterService", "PutItem", { ref, value: 1 }, as("viewer"));
    assert.equal(denied.status, 403);
    assert.equal(denied.body.code, "permission_denied");
    const first = await rpc(base, "ConfigCenterService", "PutItem", { ref, value: { brokers: "k1:9092" } }, as("operator"));
    const stale = await rpc(
      base,
      "ConfigCenterService",
      "PutItem",
      { ref, value: 2, expectRevision: Number(first.body.change.version) - 1 },
      as("operator"),
    );
    assert.equal(stale.status, 409);
    assert.match(stale.body.message, /is at revision \d+, not \d+/);
    const noValue = await rpc(base, "ConfigCenterService", "PutItem", { ref }, as("operator"));
    assert.equal(noValue.status, 400);
    assert.match(noValue.body.message, /value is required/);
    const history = await rpc(base, "ConfigCenterService", "ItemHistory", { ref }, as("viewer"));
    assert.equal(history.body.changes.length, 1);
    const resource = await rpc(
      base,
      "ConfigCenterService",
      "PutResource",
      { kind: "middleware", name: "mq", type: "kafka", config: { brokers: "k1:9092" }, secrets: { saslPassword: "kafka-pw-1" } },
      as("admin"),
    );
    assert.equal(resource.status, 200, resource.body.message);
    assert.equal(resource.body.change.resource.secrets.saslPassword, "******");
    const revealByOperator = await rpc(
      base,
      "ConfigCenterService",
      "GetResource",
      { kind: "middleware", name: "mq", reveal: true },
      as("operator"),
    );
    assert.equal(revealByOperator.status, 403);
  });

  test("unknown fields in a REST body are refused, not silently dropped", async () => {
    const r = await call(base, "PUT", "/config/v1/items/technical/loan/uat/x", { role: "operator", body: { value: 1, valeu: 2 } });
    assert.equal(r.status, 400);
  });

  test("a distributed lock is held by one holder at a time, released by its fencing token, and force-released by an admin", async () => {
    const token = (await call(base, "POST", "/config/v1/token", { body: { appId: "loan", secret: "loan-secret-0123" } })).body.token;
    const first = await call(base, "POST", "/config/v1/locks/acquire", {
      token,
      body: { name: "loan:settle", holder: "i1", leaseMs: 60000 },
    });
    assert.equal(first.body.acquired, true);
    const second = await call(base, "POST", "/config/v1/locks/acquire", {
      token,
      body: { name: "loan:settle", holder: "i2", leaseMs: 60000 },
    });
    assert.equal(second.body.acquired, false);
    assert.equal(second.body.lock.holder, "loan/i1");
    const wrong = await call(base, "POST", "/config/v1/locks/release", { token, body: { name: "loan:settle", fencingToken: 999 } });
    assert.equal(wrong.body.released, false);
    const listed = await call(base, "GET", "/config/v1/locks", { role: "viewer" });
    assert.equal(listed.body.locks[0].state, "held");
    const forced = await call(base, "POST", "/config/v1/locks/force-release", { role: "admin", body: { name: "loan:settle" } });
    assert.equal(forced.body.state, "free");
    const third = await call(base, "POST", "/config/v1/locks/acquire", {
      token,
      body: { name: "loan:settle", holder: "i2", leaseMs: 60000 },
    });
    assert.equal(third.body.acquired, true);
    assert.equal(third.body.lock.fencingToken, first.body.lock.fencingToken + 1);
    const audit = await call(base, "GET", "/config/v1/audit?target=lock/", { role: "operator" });
    assert.equal(audit.body.entries[0].action, "lock.force-release");
  });

  test("a sequence hands out formatted blocks, and stops at its maximum unless it cycles", async () => {
    const made = await call(base, "PUT", "/config/v1/sequences/loan-no", {
      role: "admin",
      body: { pattern: "LN{yyyyMMdd}{seq:6}", cacheSize: 3, reset: "daily", max: 5, timeZone: "Asia/Shanghai", apps: ["loan"] },
    });
    assert.equal(made.status, 200, made.body.message);
    const token = (await call(base, "POST", "/config/v1/token", { body: { appId: "loan", secret: "loan-secret-0123" } })).body.token;
    const block = await call(base, "POST", "/config/v1/sequences/next", { token, body: { name: "loan-no" } });
    const today = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai" }).format(new Date()).replaceAll("-", "");
    assert.deepEqual(block.body.values, [`LN${today}000001`, `LN${today}000002`, `LN${today}000003`]);
    const short = await call(base, "POST", "/config/v1/sequences/next", { token, body: { name: "loan-no" } });
    assert.deepEqual([short.body.first, short.body.last], [4, 5]);
    const exhausted = await call(base, "POST", "/config/v1/sequences/next", { token, body: { name: "loan-no" } });
    assert.equal(exhausted.status, 409);
    assert.match(exhausted.body.message, /exhausted/);
    await call(base, "PUT", "/config/v1/sequences/loan-no", {
      role: "admin",
      body: { pattern: "LN{seq:6}", cacheSize: 3, max: 5, cycle: true },
    });
    const cycled = await call(base, "POST", "/config/v1/sequences/next", { token, body: { name: "loan-no" } });
    assert.equal(cycled.body.first, 1);
    const badPattern = await call(base, "PUT", "/config/v1/sequences/x", { role: "admin", body: { pattern: "X{month}{seq}" } });
    assert.equal(badPattern.status, 400);
  });

  test("secrets sealed with an old key still open, and rotation re-seals them with the active key", async () => {
    await call(base, "PUT", "/config/v1/resources/middleware/ledger", {
      role: "admin",
      body: { type: "mysql", secrets: { password: "ledger-pw-1" } },
    });
    assert.deepEqual((await call(base, "GET", "/config/v1/resources/middleware/ledger", { role: "viewer" })).body.keyIds, ["k1"]);
    // A replica whose active key is k2 (the old one, k1, still configured) opens and re-seals.
    const rotating = await env.addReplica({ SECRET_ACTIVE_KEY_ID: "k2" });
    const rotated = await call(rotating.url, "POST", "/config/v1/secrets/rotate", { role: "admin" });
    assert.equal(rotated.status, 200, rotated.body.message);
    assert.equal(rotated.body.keyId, "k2");
    assert.ok(rotated.body.rotated >= 1);
    const after = await call(base, "GET", "/config/v1/resources/middleware/ledger?reveal=true", { role: "admin" });
    assert.deepEqual(after.body.keyIds, ["k2"]);
    assert.equal(after.body.secrets.password, "ledger-pw-1");
    const operator = await call(base, "POST", "/config/v1/secrets/rotate", { role: "operator" });
    assert.equal(operator.status, 403);
  });

  test("new app credentials end the old tokens and close the app's sockets", async () => {
    await call(base, "PUT", "/config/v1/apps/wallet", { role: "admin", body: { secret: "wallet-secret-1" } });
    const i = await Instance.start(base, { appId: "wallet", secret: "wallet-secret-1" });
    await call(base, "PUT", "/config/v1/apps/wallet", { role: "admin", body: { secret: "wallet-secret-2" } });
    assert.deepEqual(await i.whenClosed(), { code: 4001, reason: "app credentials changed: get a new token" });
    const old = await call(base, "GET", `/config/v1/instances/${i.instanceId}/metadata`, { token: i.token });
    assert.equal(old.status, 401);
    const oldSecret = await call(base, "POST", "/config/v1/token", { body: { appId: "wallet", secret: "wallet-secret-1" } });
    assert.equal(oldSecret.status, 401);
    const audit = await call(base, "GET", "/config/v1/audit?target=app/wallet", { role: "operator" });
    assert.equal(JSON.stringify(audit.body).includes("wallet-secret"), false, "credentials never in the audit trail");
  });
});
