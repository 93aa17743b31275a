import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { RegisterInstanceRequestSchema } from "@opsplane/contracts";
import { call, Instance, type Json, keys, secretKeys, startCenters } from "./harness.js";

/** A Connect RPC over JSON, as curl users and the SDK make it; a string body is sent as the JSON text itself. */
async function rpc(base: string, service: string, method: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}/ops.v1.${service}/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, Json> };
}
const as = (role: keyof typeof keys) => ({ authorization: `Bearer ${keys[role]}` });
/** A lone UTF-16 surrogate as a client's JSON spells it: the six characters `\ud800` in the body's text. */
const lone = "\\ud800";

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
    // Connect's decoder refuses a lone surrogate in a string field ("invalid UTF8", naming it); the
    // JSON Schemas a report carries are free JSON, checked by config-center as over REST.
    const surrogateReport = await rpc(
      base,
      "ConfigAppService",
      "ReportResources",
      {
        instanceId: reg.body.instanceId,
        interfaces: [{ code: "loan.apply", params: { properties: { amount: { description: "\udfff" } } } }],
      },
      t,
    );
    assert.equal(surrogateReport.status, 400);
    assert.deepEqual(surrogateReport.body, {
      code: "invalid_argument",
      message: "interfaces/0/params/properties/amount/description must not contain a lone surrogate (not valid Unicode)",
    });
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

  test("a lone surrogate in a Connect request is refused naming where, in free JSON (values, schemas, configs, dictionaries) too", async () => {
    const item = `"ref":{"kind":"technical","app":"loan","env":"uat","key":"lone"}`;
    const cases: Array<[string, string, "operator" | "admin", string]> = [
      ["PutItem", `{${item},"value":{"hosts":["a","${lone}"]}}`, "operator", "value/hosts/1 must not contain"],
      ["PutItem", `{${item},"value":1,"schema":{"title":"${lone}"}}`, "operator", "schema/title must not contain"],
      ["StartGray", `{${item},"value":"${lone}","selector":{"labels":{"zone":"a"}}}`, "operator", "value must not contain"],
      [
        "PutResource",
        `{"kind":"middleware","name":"lone-mq","type":"kafka","config":{"brokers":"${lone}"}}`,
        "admin",
        "config/brokers must not contain",
      ],
      [
        "ImportDictionary",
        `{"ref":{"kind":"business","key":"dict.lone"},"format":"json","content":${JSON.stringify(`[{"code":"a","name":"${lone}"}]`)}}`,
        "operator",
        // The dictionary's content is a string holding JSON: its entries are named as the file shows them.
        "JSON array entry 1 (counting from 1): name must not contain",
      ],
    ];
    for (const [method, raw, role, where] of cases) {
      const r = await rpc(base, "ConfigCenterService", method, raw, as(role));
      assert.equal(r.status, 400, `${method} ${raw}: ${r.body.message}`);
      assert.deepEqual(r.body, { code: "invalid_argument", message: `${where} a lone surrogate (not valid Unicode)` }, raw);
    }
    // A string field is refused by Connect's decoder itself, naming it.
    const description = await rpc(base, "ConfigCenterService", "PutApp", `{"appId":"loan","description":"${lone}"}`, as("admin"));
    assert.equal(description.status, 400);
    assert.match(description.body.message, /PutAppRequest\.description from JSON: expected string: invalid UTF8/);
    const items = await rpc(base, "ConfigCenterService", "ListItems", { keyPrefix: "lone" }, as("viewer"));
    assert.deepEqual(items.body.items ?? [], [], "nothing was written");
    assert.equal((await call(base, "GET", "/config/v1/resources/middleware/lone-mq", { role: "viewer" })).status, 404);
  });

  test("unknown fields in a REST body are refused, not silently dropped", async () => {
    const r = await call(base, "PUT", "/config/v1/items/technical/loan/uat/x", { role: "operator", body: { value: 1, valeu: 2 } });
    assert.equal(r.status, 400);
  });

  test("a DELETE, gray release or gray abandon without a body, or with an empty one whatever its Content-Type, means {}", async () => {
    const item = "/config/v1/items/business/_/_/no-body";
    const put = async () => assert.equal((await call(base, "PUT", item, { role: "operator", body: { value: 1 } })).status, 200);
    const emptyJson = { role: "operator" as const, raw: "", contentType: "application/json" };
    await put();
    const bare = await call(base, "DELETE", item, { role: "operator" });
    assert.equal(bare.status, 200, bare.body.message);
    assert.equal((await call(base, "GET", item, { role: "viewer" })).status, 404);
    await put();
    const empty = await call(base, "DELETE", item, emptyJson);
    assert.equal(empty.status, 200, empty.body.message);
    assert.equal((await call(base, "GET", item, { role: "viewer" })).status, 404);
    // Whatever Content-Type an empty body is labelled with (curl -H 'content-type: text/plain' -X DELETE): 415 before.
    for (const contentType of ["text/plain", "application/x-www-form-urlencoded"]) {
      await put();
      const labelled = await call(base, "DELETE", item, { role: "operator", raw: "", contentType });
      assert.equal(labelled.status, 200, `${contentType}: ${labelled.body.message}`);
    }

    await put();
    const gray = (value: number) =>
      call(base, "POST", "/config/v1/gray/business/_/_/no-body", {
        role: "operator",
        body: { value, selector: { labels: { canary: "1" } } },
      });
    assert.equal((await gray(2)).status, 200);
    const released = await call(base, "POST", "/config/v1/gray-release/business/_/_/no-body", { role: "operator" });
    assert.equal(released.status, 200, released.body.message);
    assert.equal((await call(base, "GET", item, { role: "viewer" })).body.value, 2);
    assert.equal((await gray(3)).status, 200);
    const abandoned = await call(base, "POST", "/config/v1/gray-abandon/business/_/_/no-body", emptyJson);
    assert.equal(abandoned.status, 200, abandoned.body.message);
    assert.equal((await call(base, "GET", item, { role: "viewer" })).body.value, 2);

    const resource = "/config/v1/resources/service/no-body";
    assert.equal((await call(base, "PUT", resource, { role: "admin", body: { type: "http", config: { url: "http://x" } } })).status, 200);
    const deleted = await call(base, "DELETE", resource, { ...emptyJson, role: "admin" });
    assert.equal(deleted.status, 200, deleted.body.message);
    assert.equal((await call(base, "GET", resource, { role: "viewer" })).status, 404);

    const broken = await call(base, "DELETE", item, { ...emptyJson, raw: "{" });
    assert.equal(broken.status, 400);
    assert.equal(broken.body.error, "invalid_json");
  });

  test("a Connect registration with a field the request does not have is refused (JSON and binary), as over REST", async () => {
    const token = await rpc(base, "ConfigAppService", "IssueToken", { appId: "loan", secret: "loan-secret-0123" });
    const t = { "x-config-token": token.body.token };
    const registration = { env: "uat", hostName: "h", ip: "10.1.1.2", servicePort: 8080 };
    const before = await call(base, "GET", "/config/v1/apps/loan/instances", { role: "viewer" });
    const json = await rpc(base, "ConfigAppService", "RegisterInstance", { ...registration, podNamespce: "loan" }, t);
    assert.equal(json.status, 400);
    assert.deepEqual(json.body, {
      code: "invalid_argument",
      message: 'cannot decode message ops.v1.RegisterInstanceRequest from JSON: key "podNamespce" is unknown',
    });
    // Field 99 (varint 1) after a valid message: what a newer client's field looks like to this one.
    const bytes = Buffer.concat([
      Buffer.from(toBinary(RegisterInstanceRequestSchema, create(RegisterInstanceRequestSchema, registration))),
      Buffer.from([0x98, 0x06, 0x01]),
    ]);
    const binary = await fetch(`${base}/ops.v1.ConfigAppService/RegisterInstance`, {
      method: "POST",
      headers: { "content-type": "application/proto", ...t },
      body: bytes,
    });
    assert.equal(binary.status, 400);
    assert.equal(
      binary.headers.get("content-type")?.startsWith("application/json") && ((await binary.json()) as Json).message,
      "RegisterInstanceRequest has no field number 99: unknown fields are refused, not ignored (a typo?)",
    );
    const after = await call(base, "GET", "/config/v1/apps/loan/instances", { role: "viewer" });
    assert.equal(after.body.instances.length, before.body.instances.length, "nothing was registered");
    const fine = await rpc(base, "ConfigAppService", "RegisterInstance", { ...registration, pod_name: "loan-0", pod_namespace: "loan" }, t);
    assert.equal(fine.status, 200, fine.body.message);
  });

  test("Connect PutApp sets and clears an app's environments, and PutSequence its apps; absent keeps them", async () => {
    const put = (body: Record<string, unknown>) => rpc(base, "ConfigCenterService", "PutApp", { appId: "grants", ...body }, as("admin"));
    const granted = await put({ environments: { values: ["uat", "prod"] } });
    assert.equal(granted.status, 200, granted.body.message);
    assert.deepEqual(granted.body.app.environments, { values: ["prod", "uat"] });
    const kept = await put({ description: "loan grants" });
    assert.deepEqual(kept.body.app.environments, { values: ["prod", "uat"] }, "absent keeps the list");
    assert.deepEqual((await call(base, "GET", "/config/v1/apps/grants", { role: "viewer" })).body.environments, ["prod", "uat"]);
    const cleared = await put({ environments: {} });
    assert.deepEqual(cleared.body.app.environments, {}, "an empty list grants none");
    const audit = await call(base, "GET", "/config/v1/audit?target=app/grants", { role: "operator" });
    assert.deepEqual(audit.body.entries[0].after.environments, []);

    const seq = (body: Record<string, unknown>) =>
      rpc(base, "ConfigCenterService", "PutSequence", { name: "grant-no", pattern: "G{seq:4}", ...body }, as("admin"));
    const listed = await seq({ apps: { values: ["loan", "crm"] } });
    assert.equal(listed.status, 200, listed.body.message);
    assert.deepEqual(listed.body.sequence.apps, ["crm", "loan"]);
    assert.deepEqual((await seq({ description: "grants" })).body.sequence.apps, ["crm", "loan"], "absent keeps the list");
    const token = (await call(base, "POST", "/config/v1/token", { body: { appId: "loan", secret: "loan-secret-0123" } })).body.token;
    assert.equal((await call(base, "POST", "/config/v1/sequences/next", { token, body: { name: "grant-no" } })).status, 200);
    assert.equal((await seq({ apps: {} })).body.sequence.apps, undefined, "an empty list allows none");
    assert.equal((await call(base, "POST", "/config/v1/sequences/next", { token, body: { name: "grant-no" } })).status, 403);
  });

  test("a governance rule for an interface or queue the app never reported is kept, with a warning naming it (REST and Connect)", async () => {
    const rest = await call(base, "PUT", "/config/v1/items/governance/wallet/_/rate-limit/wallet.pay", {
      role: "operator",
      body: { value: { tps: 50 } },
    });
    assert.equal(rest.status, 200, rest.body.message);
    assert.deepEqual(rest.body.warnings, [
      'app wallet has never reported an interface or queue "wallet.pay": the rule is kept and applies once an instance reports it',
    ]);
    const i = await Instance.start(base, { appId: "wallet", secret: "wallet-secret-0" });
    await call(base, "PUT", `/config/v1/instances/${i.instanceId}/resources`, {
      token: i.token,
      body: { interfaces: [{ code: "wallet.pay" }], queues: [{ code: "wallet.settled" }] },
    });
    i.close();
    const reported = await call(base, "PUT", "/config/v1/items/governance/wallet/_/rate-limit/wallet.pay", {
      role: "operator",
      body: { value: { tps: 60 } },
    });
    assert.deepEqual(reported.body.warnings, []);
    const queue = await rpc(
      base,
      "ConfigCenterService",
      "PutItem",
      { ref: { kind: "governance", app: "wallet", key: "circuit-breaker/wallet.settled" }, value: { openMs: 1000, errorCount: 5 } },
      as("operator"),
    );
    assert.equal(queue.status, 200, queue.body.message);
    assert.equal(queue.body.warnings, undefined, "a reported queue: no warning");
    const typo = await rpc(
      base,
      "ConfigCenterService",
      "PutItem",
      { ref: { kind: "governance", app: "wallet", key: "route/wallet.pya" }, value: { enabled: false } },
      as("operator"),
    );
    assert.equal(typo.status, 200, typo.body.message);
    assert.match(typo.body.warnings[0], /never reported an interface or queue "wallet\.pya"/);
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
    // Its holder asking again renews the lease: a later expiry, the same acquisition and fencing token.
    const renewed = await call(base, "POST", "/config/v1/locks/acquire", {
      token,
      body: { name: "loan:settle", holder: "i1", leaseMs: 120000 },
    });
    assert.equal(renewed.body.acquired, true);
    assert.equal(renewed.body.lock.fencingToken, first.body.lock.fencingToken);
    assert.ok(Date.parse(renewed.body.lock.expiresAt) > Date.parse(first.body.lock.expiresAt) + 30_000, "the lease was extended");
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

  test("moving a sequence's time zone back and forth never issues a number twice", async () => {
    // Kiritimati (UTC+14) is always a day ahead of Pago Pago (UTC-11): the periods differ whenever this runs.
    const put = (timeZone: string) =>
      call(base, "PUT", "/config/v1/sequences/loan-tz", {
        role: "admin",
        body: { pattern: "LN{yyyyMMdd}{seq:6}", cacheSize: 3, reset: "daily", timeZone, apps: ["loan"] },
      });
    const token = (await call(base, "POST", "/config/v1/token", { body: { appId: "loan", secret: "loan-secret-0123" } })).body.token;
    const draw = async () => (await call(base, "POST", "/config/v1/sequences/next", { token, body: { name: "loan-tz" } })).body.values;
    const issued: string[] = [];
    for (const timeZone of ["Pacific/Kiritimati", "Pacific/Pago_Pago", "Pacific/Kiritimati", "UTC", "Pacific/Kiritimati"]) {
      assert.equal((await put(timeZone)).status, 200);
      issued.push(...(await draw()));
    }
    assert.equal(issued.length, 15);
    assert.equal(new Set(issued).size, 15, `a value issued twice: ${issued.join(" ")}`);
  });

  test("a pattern whose number width cannot hold the sequence's maximum is refused", async () => {
    const put = (body: Json) => call(base, "PUT", "/config/v1/sequences/narrow", { role: "admin", body });
    const zero = await put({ pattern: "N{seq:0}" });
    assert.equal(zero.status, 400);
    assert.match(zero.body.message, /\{seq:0\}/);
    const narrow = await put({ pattern: "N{seq:2}", max: 1000 });
    assert.equal(narrow.status, 400);
    assert.match(narrow.body.message, /\{seq:2\} holds numbers up to 99, but max is 1000/);
    const fitting = await put({ pattern: "N{seq:2}", cacheSize: 10 });
    assert.equal(fitting.status, 200, fitting.body.message);
    assert.equal(fitting.body.max, 99, "the width sets the default maximum");
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

    // A replica not given k2 yet cannot open what k2 sealed: metadata that needs it is refused there, naming the key.
    await call(base, "PUT", "/config/v1/items/technical/loan/uat/ledger", {
      role: "operator",
      body: { value: { password: { $ref: "middleware/ledger#password" } } },
    });
    const i = await Instance.start(base, { appId: "loan", secret: "loan-secret-0123" }, { env: "uat" });
    assert.deepEqual(i.metadata.technical.find((v: Json) => v.key === "ledger").value, { password: "ledger-pw-1" });
    const behind = await env.addReplica({ SECRET_KEYS: secretKeys.split(",")[0]! });
    const refused = await call(behind.url, "GET", `/config/v1/instances/${i.instanceId}/metadata`, { token: i.token });
    assert.equal(refused.status, 503);
    assert.match(refused.body.message, /sealed with key "k2", which is not in SECRET_KEYS/);
    assert.equal(refused.headers.get("retry-after"), "5");
    // An admin's reveal there is the same 503 naming the key, not a 500.
    const reveal = await call(behind.url, "GET", "/config/v1/resources/middleware/ledger?reveal=true", { role: "admin" });
    assert.equal(reveal.status, 503);
    assert.equal(reveal.body.message, 'secret of middleware/ledger#password is sealed with key "k2", which is not in SECRET_KEYS');
    assert.equal(reveal.headers.get("retry-after"), "5");
    i.close();
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
