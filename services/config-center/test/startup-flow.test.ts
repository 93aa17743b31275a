import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createPool } from "@opsplane/store";
import { eventually, startCuttableProxy } from "@opsplane/testing";
import type pg from "pg";
import type { ChangeLog } from "../src/change-log.js";
import { InstanceStore } from "../src/instances.js";
import { call, centerDb, Instance, type Json, startCenters } from "./harness.js";

const loan = { appId: "loan", secret: "loan-secret-0123" };

describe("the seed's start-up flow: token, registration, metadata, long connection, reports", () => {
  let env: Awaited<ReturnType<typeof startCenters>>;
  let base: string;
  let db: pg.Client;

  before(async () => {
    env = await startCenters(1, { redis: true, env: { HEARTBEAT_TIMEOUT_MS: "3000", HEARTBEAT_INTERVAL_MS: "500" } });
    base = env.urls[0]!;
    db = await centerDb(env.db.url);
  });
  after(async () => {
    await db.end();
    await env.close();
  });

  test("an unknown app is admitted by default, gets its record at first registration, and its secret is then required", async () => {
    const first = await call(base, "POST", "/config/v1/token", { body: loan });
    assert.equal(first.status, 200);
    assert.match(first.body.token, /^cct_/);
    const app = await call(base, "GET", "/config/v1/apps/loan", { role: "viewer" });
    assert.equal(app.body.createdBy, "registration");
    assert.equal(app.body.enabled, true);
    assert.equal(app.body.health, "unknown");

    const wrong = await call(base, "POST", "/config/v1/token", { body: { appId: "loan", secret: "not-the-secret" } });
    assert.equal(wrong.status, 401);
    assert.match(wrong.body.message, /wrong app id or secret/);
    const malformed = await call(base, "POST", "/config/v1/token", { body: { appId: "Loan App!", secret: "x" } });
    assert.equal(malformed.status, 400);

    // Refusals are audited off the request path (throttled per caller by the platform).
    await eventually("the refusal in the audit trail", async () => {
      const trail = await call(base, "GET", "/config/v1/audit?target=app/loan", { role: "operator" });
      return trail.body.entries.some(
        (e: Json) => e.action === "token.refused" && e.outcome === "denied" && e.after.reason === "bad-credentials",
      );
    });
    assert.equal((await call(base, "GET", "/config/v1/audit", { role: "viewer" })).status, 403, "the trail is for operators");
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /config_center_registration_refusals_total\{reason="bad-credentials",service="config-center"\} 1/);
  });

  test("with the global switch off an unknown app cannot start; a disabled app cannot start and its sockets are closed", async () => {
    const off = await call(base, "PUT", "/config/v1/settings", { role: "admin", body: { admitUnknownApps: false } });
    assert.equal(off.status, 200);
    const unknown = await call(base, "POST", "/config/v1/token", { body: { appId: "stranger", secret: "stranger-secret" } });
    assert.equal(unknown.status, 401);
    assert.match(unknown.body.message, /wrong app id or secret/);
    const operatorTries = await call(base, "PUT", "/config/v1/settings", { role: "operator", body: { admitUnknownApps: true } });
    assert.equal(operatorTries.status, 403);

    // An admin registers the app with its credentials: now it may start.
    const made = await call(base, "PUT", "/config/v1/apps/risk", {
      role: "admin",
      body: { systemDomain: "credit", secret: "risk-secret-0123" },
    });
    assert.equal(made.status, 200);
    const risk = await Instance.start(base, { appId: "risk", secret: "risk-secret-0123" });

    const disabled = await call(base, "PUT", "/config/v1/apps/risk", { role: "admin", body: { enabled: false } });
    assert.equal(disabled.body.enabled, false);
    assert.deepEqual(await risk.whenClosed(), { code: 4003, reason: "app disabled" });
    const again = await call(base, "POST", "/config/v1/token", { body: { appId: "risk", secret: "risk-secret-0123" } });
    assert.equal(again.status, 403);
    assert.match(again.body.message, /app risk is disabled/);
    // Its old token no longer works either.
    const meta = await call(base, "GET", `/config/v1/instances/${risk.instanceId}/metadata`, { token: risk.token });
    assert.equal(meta.status, 403);
    assert.match(meta.body.message, /app risk is disabled/);
    await call(base, "PUT", "/config/v1/settings", { role: "admin", body: { admitUnknownApps: true } });
  });

  test("a malformed registration is refused naming the field, and nothing is recorded", async () => {
    const token = (await call(base, "POST", "/config/v1/token", { body: loan })).body.token;
    const before = (await db.query("SELECT count(*)::int AS n FROM instances")).rows[0].n;
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ env: "prod", hostName: "h", ip: "999.1.1.1", servicePort: 8080 }, /ip "999.1.1.1" is not an IPv4 or IPv6 address/],
      [{ env: "prod", hostName: "h", ip: "10.0.0.1", servicePort: 70000 }, /servicePort must be a port number/],
      [{ env: "PROD!", hostName: "h", ip: "10.0.0.1", servicePort: 80 }, /env "PROD!" is required/],
      [{ env: "prod", hostName: "h", ip: "10.0.0.1", servicePort: 80, podName: "p-1" }, /podName and podNamespace go together/],
      [
        { env: "prod", hostName: "h", ip: "10.0.0.1", servicePort: 80, labels: { "bad key!": "x" } },
        /labels name "bad key!" is not allowed/,
      ],
      [{ env: "prod", hostName: "a host", ip: "10.0.0.1", servicePort: 80 }, /^hostName "a host" is not a host name/],
      // A lone UTF-16 surrogate (JSON's "\ud800") is no character: refused naming where, as a NUL is.
      [
        { env: "prod", hostName: "h\ud800", ip: "10.0.0.1", servicePort: 80 },
        /^body\/hostName must not contain a lone surrogate \(not valid Unicode\)$/,
      ],
      [
        { env: "prod", hostName: "h", ip: "10.0.0.1", servicePort: 80, labels: { zone: "a\udc00" } },
        /^body\/labels\/zone must not contain a lone surrogate \(not valid Unicode\)$/,
      ],
      [
        { env: "prod", hostName: "h", ip: "10.0.0.1", servicePort: 80, startParams: { "-Xmx": "\ud800" } },
        /^body\/startParams\/-Xmx must not contain a lone surrogate \(not valid Unicode\)$/,
      ],
    ];
    for (const [body, reason] of cases) {
      const r = await call(base, "POST", "/config/v1/instances", { token, body });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(r.body.message, reason);
    }
    const noToken = await call(base, "POST", "/config/v1/instances", {
      body: { env: "prod", hostName: "h", ip: "10.0.0.1", servicePort: 80 },
    });
    assert.equal(noToken.status, 401);
    assert.match(noToken.body.message, /x-config-token/);
    assert.equal((await db.query("SELECT count(*)::int AS n FROM instances")).rows[0].n, before);
  });

  test("metadata holds technical parameters with references resolved, start-up business parameters and governance rules, at one version", async () => {
    await call(base, "PUT", "/config/v1/resources/middleware/loan-db", {
      role: "admin",
      body: {
        type: "postgresql",
        config: { host: "db.internal", port: 5432, database: "loan", user: "loan" },
        secrets: { password: "s3cret-pw" },
      },
    });
    const tech = await call(base, "PUT", "/config/v1/items/technical/loan/prod/datasource.main", {
      role: "operator",
      body: {
        value: { db: { $ref: "middleware/loan-db" }, password: { $ref: "middleware/loan-db#password" }, poolMax: 20 },
        category: "database",
      },
    });
    assert.equal(tech.status, 200, tech.body.message);
    assert.deepEqual(tech.body.item.refs, ["middleware/loan-db"]);
    await call(base, "PUT", "/config/v1/items/business/_/_/dict.bank-codes", {
      role: "operator",
      body: { value: [{ code: "102100099996", name: "ICBC" }], category: "bank-codes", startup: true },
    });
    await call(base, "PUT", "/config/v1/items/business/_/_/dict.channels", {
      role: "operator",
      body: { value: { wx: { enabled: true } }, category: "channel" },
    });
    // A shared start-up parameter that the app overrides with a value of its own, read on demand.
    await call(base, "PUT", "/config/v1/items/business/_/_/dict.terms", { role: "operator", body: { value: { days: 30 }, startup: true } });
    await call(base, "PUT", "/config/v1/items/business/loan/_/dict.terms", { role: "operator", body: { value: { days: 90 } } });
    await call(base, "PUT", "/config/v1/items/governance/loan/_/rate-limit/loan.apply", {
      role: "operator",
      body: { value: { tps: 200, concurrency: 50 } },
    });

    const i = await Instance.start(base, loan, { labels: { zone: "a" } });
    const m = i.metadata;
    assert.ok(m.version >= 4);
    const ds = m.technical.find((v: Json) => v.key === "datasource.main");
    assert.deepEqual(ds.value, {
      db: { host: "db.internal", port: 5432, database: "loan", user: "loan", password: "s3cret-pw" },
      password: "s3cret-pw",
      poolMax: 20,
    });
    assert.deepEqual(
      m.business.map((v: Json) => v.key),
      ["dict.bank-codes"],
      "only start-up business parameters are in the metadata, and only where the app has no value of its own",
    );
    assert.deepEqual(
      m.governance.map((v: Json) => [v.key, v.category, v.value]),
      [["rate-limit/loan.apply", "rate-limit", { tps: 200, concurrency: 50 }]],
    );

    // Non-start-up business parameters are read on demand (without Redis they come from here).
    const biz = await call(base, "POST", `/config/v1/instances/${i.instanceId}/business`, {
      token: i.token,
      body: { keys: ["dict.channels", "dict.terms", "nope"] },
    });
    assert.deepEqual(biz.body.values[0].value, { wx: { enabled: true } });
    assert.deepEqual(biz.body.values[1].value, { days: 90 }, "the app's own value wins over the shared one");
    assert.deepEqual(biz.body.missing, ["nope"]);

    // Another app's token cannot read this instance.
    const other = await call(base, "POST", "/config/v1/token", { body: { appId: "other", secret: "other-secret-01" } });
    const stolen = await call(base, "GET", `/config/v1/instances/${i.instanceId}/metadata`, { token: other.body.token });
    assert.equal(stolen.status, 403);
    assert.match(stolen.body.message, /does not belong to app other/);
    i.close();
  });

  test("an instance is online while it heartbeats, offline with the time when its socket closes or its heartbeats stop, with its online time kept", async () => {
    const a = await Instance.start(base, loan, { hostName: "host-a", podName: "loan-7d9f-a", podNamespace: "credit", appVersion: "1.4.0" });
    const b = await Instance.start(base, loan, { hostName: "host-b" });
    const online = await eventually("both online", async () => {
      const r = await call(base, "GET", "/config/v1/apps/loan/instances?state=online", { role: "viewer" });
      const ids = r.body.instances.map((x: Json) => x.instanceId);
      return ids.includes(a.instanceId) && ids.includes(b.instanceId) && r.body.instances;
    });
    const ai = online.find((x: Json) => x.instanceId === a.instanceId);
    assert.equal(ai.podName, "loan-7d9f-a");
    assert.equal(ai.sdkPort, 1818);
    assert.equal((await call(base, "GET", "/config/v1/apps/loan", { role: "viewer" })).body.health, "up");

    a.send({ t: "ping" });
    await a.next("a pong", (m) => m.t === "pong");
    a.close();
    const offA = await eventually("a offline", async () => {
      const r = await call(base, "GET", "/config/v1/apps/loan/instances", { role: "viewer" });
      const x = r.body.instances.find((y: Json) => y.instanceId === a.instanceId);
      return x.state === "offline" && x;
    });
    assert.ok(Date.parse(offA.offlineAt) >= Date.parse(offA.connectedAt));

    // b stops heartbeating without closing: the server hangs up and marks it offline.
    b.stopHeartbeats();
    const closed = await b.whenClosed();
    assert.equal(closed.code, 4000);
    assert.match(closed.reason, /no heartbeat for 3000 ms/);
    const offB = await eventually("b offline", async () => {
      const x = (await call(base, "GET", "/config/v1/apps/loan/instances", { role: "viewer" })).body.instances.find(
        (y: Json) => y.instanceId === b.instanceId,
      );
      return x.state === "offline" && x;
    });
    // Online until its last heartbeat at least (the sweep or the hang-up, whichever came first, dates it).
    assert.ok(offB.lastHeartbeatAt, "b's heartbeats were recorded");
    const heartbeating = Math.floor((Date.parse(offB.lastHeartbeatAt) - Date.parse(offB.connectedAt)) / 1000);
    assert.ok(offB.onlineSeconds >= heartbeating, `online time is kept: ${offB.onlineSeconds} s, heartbeating for ${heartbeating} s`);
    // History: every instance the app ever had, newest first.
    const history = (await call(base, "GET", "/config/v1/apps/loan/instances", { role: "viewer" })).body.instances;
    assert.ok(history.length >= 3);
  });

  test("a heartbeat batch written after its socket closed leaves the instance offline (a flush racing the close)", async () => {
    const a = await Instance.start(base, loan, { hostName: "host-race" });
    const state = async () =>
      (await call(base, "GET", "/config/v1/apps/loan/instances", { role: "viewer" })).body.instances.find(
        (y: Json) => y.instanceId === a.instanceId,
      ).state;
    await eventually("online", async () => (await state()) === "online");
    const { rows } = await db.query("SELECT connection_id FROM instances WHERE id = $1", [a.instanceId]);
    a.close();
    await eventually("offline", async () => (await state()) === "offline");
    // The flush that collected the socket's last heartbeat just before it closed, written after the close.
    // (heartbeats() never touches the change log.)
    const pool = createPool(env.db.url, { schema: "config_center", applicationName: "heartbeat-race-test", max: 1 });
    try {
      await new InstanceStore(pool, undefined as unknown as ChangeLog).heartbeats([
        { id: a.instanceId, connectionId: rows[0].connection_id, ackedVersion: 0 },
      ]);
    } finally {
      await pool.end();
    }
    // Before: online again until the sweep's heartbeat timeout (CI saw an SDK app's SIGTERM leave it online past 10 s).
    assert.equal(await state(), "offline");
  });

  test("instances report interfaces, queues and jobs per app version; the app's OpenAPI document is built from them", async () => {
    const i = await Instance.start(base, loan, { appVersion: "2.0.0" });
    const report = await call(base, "PUT", `/config/v1/instances/${i.instanceId}/resources`, {
      token: i.token,
      body: {
        interfaces: [
          {
            code: "loan.apply",
            handler: "com.bank.loan.ApplyService#apply(ApplyRequest)",
            method: "POST",
            path: "/loans",
            params: { type: "object", required: ["amount"], properties: { amount: { type: "number" } } },
            rules: [{ field: "amount", rule: "max", value: 500000 }],
            description: "Apply for a loan",
          },
        ],
        queues: [{ code: "loan.approved", topic: "loan-approved", handler: "com.bank.loan.Listener#onApproved" }],
        jobs: [{ code: "loan.overdue-scan", cron: "0 2 * * *", handler: "com.bank.loan.OverdueJob#run" }],
      },
    });
    assert.deepEqual(report.body, { appId: "loan", appVersion: "2.0.0", interfaces: 1, queues: 1, jobs: 1 });
    const doc = await call(base, "GET", "/config/v1/apps/loan/openapi.json", { role: "viewer" });
    assert.equal(doc.body.info.version, "2.0.0");
    assert.equal(doc.body.paths["/loans"].post.operationId, "loan.apply");
    assert.deepEqual(doc.body.paths["/loans"].post.requestBody.content["application/json"].schema.required, ["amount"]);
    assert.equal(doc.body["x-jobs"][0].cron, "0 2 * * *");
    // Instances of one version started together report at once: every report is answered, the last one kept.
    const fleet = await Promise.all(Array.from({ length: 6 }, () => Instance.start(base, loan, { appVersion: "2.1.0" })));
    const reports = await Promise.all(
      fleet.map((f, n) =>
        call(base, "PUT", `/config/v1/instances/${f.instanceId}/resources`, {
          token: f.token,
          body: { interfaces: [{ code: "loan.apply", method: "POST", path: "/loans", description: `instance ${n}` }] },
        }),
      ),
    );
    assert.deepEqual(
      reports.map((r) => r.status),
      fleet.map(() => 200),
      JSON.stringify(reports.map((r) => r.body)),
    );
    const kept = (await call(base, "GET", "/config/v1/apps/loan/resources?version=2.1.0", { role: "viewer" })).body;
    assert.equal(kept.appVersion, "2.1.0");
    assert.equal(kept.resources.length, 1, JSON.stringify(kept));
    for (const f of fleet) f.close();
    const dup = await call(base, "PUT", `/config/v1/instances/${i.instanceId}/resources`, {
      token: i.token,
      body: { interfaces: [{ code: "a" }, { code: "a" }] },
    });
    assert.equal(dup.status, 400);
    assert.match(dup.body.message, /interface a is reported twice/);
    // A lone UTF-16 surrogate anywhere in a report is refused naming where, as a NUL is; the report before it stays.
    const loneSurrogates: Array<[Record<string, unknown>, RegExp]> = [
      [{ interfaces: [{ code: "a" }, { code: "b", description: "x\ud800" }] }, /^body\/interfaces\/1\/description must not contain a lone/],
      [
        { interfaces: [{ code: "a", params: { type: "object", properties: { amount: { description: "\udfff" } } } }] },
        /^body\/interfaces\/0\/params\/properties\/amount\/description must not contain a lone/,
      ],
      [{ interfaces: [{ code: "a", rules: [{ field: "\ud800" }] }] }, /^body\/interfaces\/0\/rules\/0\/field must not contain a lone/],
      [{ interfaces: [{ code: "a", response: { "\ud800": {} } }] }, /^body\/interfaces\/0\/response has a key containing a lone/],
      [{ queues: [{ code: "q", topic: "t\udc00" }] }, /^body\/queues\/0\/topic must not contain a lone/],
      [{ jobs: [{ code: "j", cron: "\ud800" }] }, /^body\/jobs\/0\/cron must not contain a lone/],
    ];
    for (const [body, reason] of loneSurrogates) {
      const r = await call(base, "PUT", `/config/v1/instances/${i.instanceId}/resources`, { token: i.token, body });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(r.body.message, reason);
      assert.match(r.body.message, /contain(ing)? a lone surrogate \(not valid Unicode\)$/);
    }
    const stillThere = await call(base, "GET", "/config/v1/apps/loan/openapi.json?version=2.0.0", { role: "viewer" });
    assert.equal(stillThere.body.paths["/loans"].post.operationId, "loan.apply");
    i.close();
    // An app whose instances register no version still gets its document (version "").
    const unversioned = await Instance.start(base, { appId: "plain", secret: "plain-secret-0123" });
    await call(base, "PUT", `/config/v1/instances/${unversioned.instanceId}/resources`, {
      token: unversioned.token,
      body: { interfaces: [{ code: "plain.ping", method: "GET", path: "/ping" }] },
    });
    const plain = await call(base, "GET", "/config/v1/apps/plain/openapi.json", { role: "viewer" });
    assert.equal(plain.status, 200, plain.body.message);
    assert.equal(plain.body.paths["/ping"].get.operationId, "plain.ping");
    unversioned.close();
  });

  test("the REST view is described by an OpenAPI document", async () => {
    const doc = await call(base, "GET", "/config/v1/openapi.json");
    assert.equal(doc.status, 200);
    assert.ok(doc.body.paths["/config/v1/instances"].post);
    assert.ok(doc.body.paths["/config/v1/items/{kind}/{app}/{env}/{*}"].put.requestBody);
  });
});

describe("a replica that loses PostgreSQL hands its instances over", () => {
  test("cut off from PostgreSQL past the heartbeat timeout, a replica closes its sockets (1013); the instance catches up on another replica", async () => {
    const env = await startCenters(1, { redis: false });
    const proxy = await startCuttableProxy("127.0.0.1", Number(new URL(env.db.url).port || 5432));
    try {
      const viaProxy = new URL(env.db.url);
      viaProxy.port = String(proxy.port);
      const cut = await env.addReplica({
        DATABASE_URL: viaProxy.toString(),
        HEARTBEAT_INTERVAL_MS: "500",
        HEARTBEAT_TIMEOUT_MS: "2000",
      });
      const i = await Instance.start(cut.url, loan);
      proxy.blackhole();
      // Its pings are still answered (in memory); the replica itself must let go.
      const closed = await eventually("the cut-off replica to close the socket", () => i.closed, 15_000);
      assert.equal(closed.code, 1013);
      assert.match(closed.reason, /lost its database/);
      const put = await call(env.urls[0]!, "PUT", "/config/v1/items/technical/loan/prod/handover", {
        role: "operator",
        body: { value: { n: 1 } },
      });
      assert.equal(put.status, 200, put.body.message);
      await i.connect(env.urls[0]!);
      await i.until("technical", "handover", (c) => c.value?.n === 1);
      i.close();
    } finally {
      proxy.heal();
      await env.close();
      await proxy.close();
    }
  });
});
