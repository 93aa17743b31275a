import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { Redis } from "ioredis";
import pg from "pg";
import WebSocket from "ws";
import { call, centerDb, Instance, type Json, type Reply, startCenters } from "./harness.js";

const loan = { appId: "loan", secret: "loan-secret-0123" };
const put = (base: string, path: string, body: Record<string, unknown>, role: "operator" | "admin" = "operator") =>
  call(base, "PUT", `/config/v1/items/${path}`, { role, body });

describe("the change flow across two config-center replicas sharing one database and Redis", () => {
  let env: Awaited<ReturnType<typeof startCenters>>;
  let a: string;
  let b: string;
  let db: pg.Client;
  let redis: Redis;

  before(async () => {
    env = await startCenters(2, { redis: true });
    [a, b] = env.urls as [string, string];
    db = await centerDb(env.db.url);
    redis = new Redis(process.env.REDIS_URL!);
  });
  after(async () => {
    redis.disconnect();
    await db.end();
    await env.close();
  });

  test("a change made on one replica reaches the instances of both, with its version, and they acknowledge it", async () => {
    const onA = await Instance.start(a, loan, { hostName: "a" });
    const onB = await Instance.start(b, loan, { hostName: "b" });
    const set = await put(a, "technical/loan/prod/timeouts", { value: { connectMs: 500 } });
    assert.equal(set.status, 200, set.body.message);
    for (const i of [onA, onB]) {
      const got = await i.until("technical", "timeouts", (c) => c.value?.connectMs === 500);
      assert.equal(got.revision, set.body.version);
    }
    assert.equal(onB.version, set.body.version);
    await eventually("acknowledgements recorded", async () => {
      const { rows } = await db.query("SELECT acked_version FROM instances WHERE id = ANY($1)", [[onA.instanceId, onB.instanceId]]);
      return rows.every((r) => r.acked_version === set.body.version);
    });
    const metrics = await (await fetch(`${b}/metrics`)).text();
    assert.match(metrics, /config_center_push_latency_seconds_count\{service="config-center"\} [1-9]/);
    assert.match(metrics, /config_center_connected_instances\{service="config-center"\} 1/);
    onA.close();
    onB.close();
  });

  test("business parameters are refreshed into the Redis central cache; instances outside a change's scope hear nothing", async () => {
    const other = await Instance.start(b, { appId: "risk", secret: "risk-secret-0123" });
    const mine = await Instance.start(b, loan);
    const set = await put(b, "business/loan/_/loan.max-amount", { value: 500000 });
    assert.equal(set.status, 200);
    await mine.until("business", "loan.max-amount", (c) => c.value === 500000);
    const cached = await eventually(
      "the cache",
      async () => (await redis.get(`${env.redisPrefix}biz:loan:*:loan.max-amount`)) ?? undefined,
    );
    assert.deepEqual(JSON.parse(cached), { revision: set.body.version, category: "custom", value: 500000 });
    await call(b, "DELETE", "/config/v1/items/business/loan/_/loan.max-amount", { role: "operator", body: {} });
    await mine.until("business", "loan.max-amount", (c) => c.deleted === true);
    await eventually("the cache entry gone", async () => (await redis.get(`${env.redisPrefix}biz:loan:*:loan.max-amount`)) === null);
    assert.equal(other.latest("business", "loan.max-amount"), undefined, "another app's instance is not told");
    other.close();
    mine.close();
  });

  test("a business value of JSON null is a value: the Redis cache holds it, and a rollback to it restores null", async () => {
    const path = "business/loan/_/loan.promo";
    const cacheKey = `${env.redisPrefix}biz:loan:*:loan.promo`;
    const cachedValue = (revision: number) =>
      eventually(`the cache holding revision ${revision}`, async () => {
        const text = await redis.get(cacheKey);
        return text && JSON.parse(text).revision === revision ? JSON.parse(text) : undefined;
      });
    await put(a, path, { value: { rate: 1 } });
    const nulled = await put(a, path, { value: null });
    assert.equal(nulled.status, 200, nulled.body.message);
    assert.deepEqual(await cachedValue(nulled.body.version), { revision: nulled.body.version, category: "custom", value: null });
    await put(a, path, { value: { rate: 2 } });
    const rolled = await call(b, "POST", `/config/v1/rollback/${path}`, { role: "operator", body: { toVersion: nulled.body.version } });
    assert.equal(rolled.status, 200, rolled.body.message);
    const now = await call(b, "GET", `/config/v1/items/${path}`, { role: "viewer" });
    assert.deepEqual([now.status, now.body.value], [200, null], "the item exists, holding null");
    assert.deepEqual(await cachedValue(rolled.body.version), { revision: rolled.body.version, category: "custom", value: null });
  });

  test("a newer connection of an instance closes the older one (4009), on whichever replica each one is", async () => {
    const i = await Instance.start(a, loan, { hostName: "twice" });
    const received: Json[] = [];
    const newer = new WebSocket(`${b.replace("http", "ws")}/config/v1/instances/${i.instanceId}/socket?version=${i.version}`, {
      headers: { "x-config-token": i.token },
    });
    newer.on("message", (data) => received.push(JSON.parse(String(data))));
    await new Promise((resolve, reject) => {
      newer.once("open", resolve);
      newer.once("error", reject);
    });
    assert.deepEqual(await i.whenClosed(), { code: 4009, reason: "replaced by a newer connection of this instance" });
    await put(a, "technical/loan/prod/after-replace", { value: 1 });
    await eventually("the push on the newer socket", () =>
      received.find((m) => m.t === "changes" && m.changes.some((c: Json) => c.key === "after-replace")),
    );
    assert.equal(newer.readyState, WebSocket.OPEN);
    const { rows } = await db.query("SELECT state, replica FROM instances WHERE id = $1", [i.instanceId]);
    assert.deepEqual(rows[0], { state: "online", replica: "replica-1" }, "the older socket's close left the instance online");
    newer.close();
  });

  test("several changes to one key within one scan cycle are merged into the latest", async () => {
    const i = await Instance.start(a, loan);
    await put(a, "technical/loan/_/feature.flags", { value: { v: 0 } });
    await i.until("technical", "feature.flags", (c) => c.value?.v === 0);
    // An open writing transaction holds back delivery of later events on the postgres bus, so the
    // three changes reach the replicas together, as if made within one cycle.
    const blocker = new pg.Client({ connectionString: env.db.url });
    await blocker.connect();
    await blocker.query("BEGIN");
    await blocker.query("SELECT pg_current_xact_id()");
    const versions: number[] = [];
    for (const v of [1, 2, 3]) versions.push((await put(a, "technical/loan/_/feature.flags", { value: { v } })).body.version);
    const pushesBefore = i.inbox.filter((m) => m.t === "changes").length;
    await blocker.query("COMMIT");
    await blocker.end();
    const got = await i.until("technical", "feature.flags", (c) => c.value?.v === 3);
    assert.equal(got.revision, versions[2]);
    const pushes = i.inbox.filter((m) => m.t === "changes").slice(pushesBefore);
    assert.equal(pushes.length, 1, "one push for the three changes");
    assert.equal(pushes[0]!.version, versions[2]);
    i.close();
  });

  test("an instance that reconnects, to the other replica, gets what it missed at once, by version", async () => {
    const i = await Instance.start(a, loan);
    await put(a, "technical/loan/prod/retry", { value: { times: 1 } });
    await i.until("technical", "retry", (c) => c.value?.times === 1);
    const had = i.version;
    i.close();
    await i.whenClosed();
    await put(b, "technical/loan/prod/retry", { value: { times: 5 } });
    await put(b, "governance/loan/_/circuit-breaker/loan.apply", { value: { errorRatio: 0.5, openMs: 30000, timeoutMs: 800 } });
    await put(b, "technical/risk/prod/not-mine", { value: 1 });
    const catchUp = await i.connect(b);
    assert.ok(catchUp.version > had);
    const byKey = Object.fromEntries((catchUp.changes as Json[]).map((c) => [c.key, c.value]));
    assert.deepEqual(byKey, { retry: { times: 5 }, "circuit-breaker/loan.apply": { errorRatio: 0.5, openMs: 30000, timeoutMs: 800 } });
    i.close();
  });

  test("a change pushed while an instance is catching up reaches it right after the catch-up", async () => {
    const i = await Instance.start(a, loan);
    const witness = await Instance.start(a, loan);
    i.close();
    await i.whenClosed();
    await put(a, "technical/loan/prod/missed", { value: 1 });
    // Hold the reconnection before its catch-up is read: a SHARE lock on apps (which takes no
    // transaction id, so the bus keeps delivering) blocks the update of the app's last activity.
    const holder = new pg.Client({ connectionString: env.db.url });
    await holder.connect();
    await holder.query("BEGIN");
    await holder.query("LOCK TABLE config_center.apps IN SHARE MODE");
    const reconnected = i.connect(a);
    await eventually("the reconnection to wait on the lock", async () => {
      const { rows } = await db.query(
        "SELECT count(*)::int AS n FROM pg_locks WHERE relation = 'config_center.apps'::regclass AND NOT granted",
      );
      return rows[0].n > 0;
    });
    // A change committed meanwhile is pushed live (the witness gets it) and waits for the catch-up on i's socket.
    await put(a, "technical/loan/prod/during-catch-up", { value: 2 });
    await witness.until("technical", "during-catch-up", (c) => c.value === 2);
    await holder.query("COMMIT");
    await holder.end();
    const catchUp = await reconnected;
    // The catch-up read both; the live push that waited is then known to be covered and not sent again.
    assert.deepEqual(catchUp.changes.map((c: Json) => c.key).sort(), ["during-catch-up", "missed"]);
    const pongsBefore = i.inbox.filter((m) => m.t === "pong").length;
    i.send({ t: "ping" });
    await i.next("a pong after the catch-up", () => i.inbox.filter((m) => m.t === "pong").length > pongsBefore);
    const mentions = i.inbox.filter((m) => m.t === "changes" && m.changes.some((c: Json) => c.key === "during-catch-up"));
    assert.equal(mentions.length, 1);
    i.close();
    witness.close();
  });

  test("a write against a stale revision is refused with the current revision, and changes nothing", async () => {
    const first = await put(a, "business/_/_/dict.cert-types", { value: [{ code: "01", name: "ID card" }], category: "dictionary" });
    const rev = first.body.version;
    const second = await put(b, "business/_/_/dict.cert-types", { value: [{ code: "01", name: "Resident ID" }], expectRevision: rev });
    assert.equal(second.status, 200);
    const stale = await put(a, "business/_/_/dict.cert-types", { value: [{ code: "02", name: "Passport" }], expectRevision: rev });
    assert.equal(stale.status, 409);
    assert.match(stale.body.message, new RegExp(`is at revision ${second.body.version}, not ${rev}`));
    assert.equal(stale.body.details.currentRevision, second.body.version);
    const now = await call(a, "GET", "/config/v1/items/business/_/_/dict.cert-types", { role: "viewer" });
    assert.equal(now.body.value[0].name, "Resident ID");
    const create = await put(a, "business/_/_/dict.cert-types", { value: [], category: "dictionary", expectRevision: 0 });
    assert.equal(create.status, 409, "revision 0 means: must not exist yet");
  });

  test("concurrent creates with expectRevision 0, through both replicas: exactly one wins, the others get the 409 a later create gets", async () => {
    const creates: Record<string, { send: (base: string, i: number) => Promise<Reply>; audit: string }> = {
      item: {
        send: (base, i) => put(base, "technical/loan/uat/race.item", { value: i, expectRevision: 0 }),
        audit: "item/technical/loan/uat/race.item",
      },
      import: {
        send: (base, i) =>
          call(base, "POST", "/config/v1/import/loan/uat/dict.race?format=json&category=dictionary&expectRevision=0", {
            role: "operator",
            body: [{ code: `c${i}`, name: "race" }],
          }),
        audit: "item/business/loan/uat/dict.race",
      },
      resource: {
        send: (base, i) =>
          call(base, "PUT", "/config/v1/resources/middleware/race1", {
            role: "admin",
            body: { type: "redis", config: { host: `h${i}` }, expectRevision: 0 },
          }),
        audit: "resource/middleware/race1",
      },
      app: {
        send: (base, i) =>
          call(base, "PUT", "/config/v1/apps/raceapp", { role: "admin", body: { description: `d${i}`, expectRevision: 0 } }),
        audit: "app/raceapp",
      },
      sequence: {
        send: (base, i) =>
          call(base, "PUT", "/config/v1/sequences/race-seq", {
            role: "admin",
            body: { pattern: `R${i}{seq:6}`, apps: ["loan"], expectRevision: 0 },
          }),
        audit: "sequence/race-seq",
      },
      lock: {
        send: (base, i) =>
          call(base, "PUT", "/config/v1/locks/race-lock", {
            role: "admin",
            body: { apps: ["loan"], description: `d${i}`, expectRevision: 0 },
          }),
        audit: "lock/race-lock",
      },
    };
    for (const [what, { send, audit }] of Object.entries(creates)) {
      const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => send(i % 2 ? b : a, i)));
      const won = replies.filter((r) => r.status === 200);
      const lost = replies.filter((r) => r.status !== 200);
      assert.equal(won.length, 1, `${what}: ${won.length} of 20 creates won`);
      const later = await send(a, 20);
      assert.equal(later.status, 409, what);
      assert.match(later.body.message, /is at revision \d+, not 0/, what);
      assert.deepEqual(new Set(lost.map((r) => [r.status, r.body.message].join(" "))), new Set([`409 ${later.body.message}`]), what);
      const trail = await call(a, "GET", `/config/v1/audit?target=${audit}`, { role: "operator" });
      assert.equal(trail.body.entries.length, 1, `${what}: one create audited`);
    }
    const history = await call(a, "GET", "/config/v1/history/technical/loan/uat/race.item", { role: "viewer" });
    assert.equal(history.body.changes.length, 1);
  });

  test("concurrent first tokens of one unknown app with different secrets: one secret is kept, the others are refused", async () => {
    const replies = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        call(i % 2 ? b : a, "POST", "/config/v1/token", { body: { appId: "race-reg", secret: `race-secret-${i}0` } }),
      ),
    );
    const won = replies.findIndex((r) => r.status === 200);
    assert.deepEqual(
      replies.map((r) => r.status === 200),
      replies.map((_, i) => i === won),
    );
    const again = await call(a, "POST", "/config/v1/token", { body: { appId: "race-reg", secret: `race-secret-${won}0` } });
    assert.equal(again.status, 200, "the winner's secret is the one kept");
  });

  test("concurrent unconditional writes of a new item all go through, each audited with the value it replaced", async () => {
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => put(i % 2 ? b : a, "technical/loan/uat/race.free", { value: i })),
    );
    assert.deepEqual(
      replies.map((r) => r.status),
      replies.map(() => 200),
    );
    const trail = await call(a, "GET", "/config/v1/audit?target=item/technical/loan/uat/race.free", { role: "operator" });
    const entries = (trail.body.entries as Json[]).toReversed();
    assert.equal(entries.length, 20);
    assert.equal(entries.filter((e) => e.before === null).length, 1, "one creation");
    entries.slice(1).forEach((e, i) => {
      assert.equal(e.action, "item.set");
      assert.deepEqual(
        [e.before.revision, e.before.value],
        [entries[i].after.revision, entries[i].after.value],
        "each replaced the one before",
      );
    });
  });

  test("history, diff and rollback to Json version; the instance gets the old value back as a new version", async () => {
    const i = await Instance.start(b, loan);
    const v1 = (await put(a, "technical/loan/prod/limits", { value: { daily: 100, single: 10 } })).body.version;
    const v2 = (await put(a, "technical/loan/prod/limits", { value: { daily: 200, single: 10 }, comment: "raise daily" })).body.version;
    await i.until("technical", "limits", (c) => c.value?.daily === 200);
    const diff = await call(a, "GET", `/config/v1/diff/technical/loan/prod/limits?from=${v1}&to=${v2}`, { role: "viewer" });
    assert.deepEqual(diff.body.patch, [{ op: "replace", path: "/daily", value: 200 }]);
    const back = await call(a, "POST", "/config/v1/rollback/technical/loan/prod/limits", {
      role: "operator",
      body: { toVersion: v1, expectRevision: v2 },
    });
    assert.equal(back.status, 200, back.body.message);
    assert.ok(back.body.version > v2);
    const got = await i.until("technical", "limits", (c) => c.value?.daily === 100);
    assert.equal(got.revision, back.body.version);
    const history = await call(a, "GET", "/config/v1/history/technical/loan/prod/limits", { role: "viewer" });
    assert.deepEqual(
      history.body.changes.map((c: Json) => [c.action, c.comment]),
      [
        ["rollback", `rollback to version ${v1}`],
        ["set", "raise daily"],
        ["set", ""],
      ],
    );
    assert.ok(history.body.changes.every((c: Json) => c.actor === "key:operator"));
    i.close();
  });

  test("a rollback to a version not reached yet is refused; a diff from before the item existed says so, not pruning", async () => {
    const path = "technical/loan/prod/reach";
    const v1 = (await put(a, path, { value: { n: 1 } })).body.version;
    const ahead = await call(a, "POST", `/config/v1/rollback/${path}`, { role: "operator", body: { toVersion: 99999 } });
    assert.equal(ahead.status, 404);
    assert.match(ahead.body.message, /^version 99999 does not exist yet: the latest version is \d+$/);
    const history = await call(a, "GET", `/config/v1/history/${path}`, { role: "viewer" });
    assert.equal(history.body.changes.length, 1, "nothing was written");
    const before = await call(a, "GET", `/config/v1/diff/${path}?from=0`, { role: "viewer" });
    assert.equal(before.status, 404);
    assert.equal(before.body.message, `item/technical/loan/prod/reach had no value at version 0: its first change is version ${v1}`);
  });

  test("a gray release by label reaches only the chosen instances; release gives it to all, abandon takes it back", async () => {
    const canary = await Instance.start(a, loan, { labels: { canary: "true" } });
    const pod = await Instance.start(b, loan, { podName: "loan-6f7c9-x2x", podNamespace: "credit" });
    const plain = await Instance.start(b, loan, { labels: { canary: "false" } });
    await put(a, "technical/loan/_/pricing", { value: { rate: 0.1 } });
    for (const i of [canary, pod, plain]) await i.until("technical", "pricing", (c) => c.value?.rate === 0.1);

    const gray = await call(a, "POST", "/config/v1/gray/technical/loan/_/pricing", {
      role: "operator",
      body: { value: { rate: 0.08 }, selector: { labels: { canary: "true" }, pods: ["credit/loan-6f7c9-x2x"] } },
    });
    assert.equal(gray.status, 200, gray.body.message);
    for (const i of [canary, pod]) assert.equal((await i.until("technical", "pricing", (c) => c.value?.rate === 0.08)).gray, true);
    // While the gray release runs, the main value cannot be changed under it.
    const blocked = await put(b, "technical/loan/_/pricing", { value: { rate: 0.2 } });
    assert.equal(blocked.status, 409);
    assert.match(blocked.body.message, /gray release in progress/);
    // New instances see what their labels say.
    const fresh = await Instance.start(b, loan, { labels: { canary: "true" } });
    assert.equal(fresh.metadata.technical.find((v: Json) => v.key === "pricing").value.rate, 0.08);

    const released = await call(b, "POST", "/config/v1/gray-release/technical/loan/_/pricing", {
      role: "operator",
      body: { expectRevision: gray.body.version },
    });
    assert.equal(released.status, 200, released.body.message);
    await plain.until("technical", "pricing", (c) => c.value?.rate === 0.08 && c.gray === false);
    assert.equal(
      plain.inbox.filter((m) => m.t === "changes" && m.changes.some((c: Json) => c.value?.rate === 0.08)).length,
      1,
      "the plain instance only heard the release",
    );

    await call(a, "POST", "/config/v1/gray/technical/loan/_/pricing", {
      role: "operator",
      body: { value: { rate: 0.05 }, selector: { labels: { canary: "true" } } },
    });
    await canary.until("technical", "pricing", (c) => c.value?.rate === 0.05);
    await call(a, "POST", "/config/v1/gray-abandon/technical/loan/_/pricing", { role: "operator", body: {} });
    await canary.until("technical", "pricing", (c) => c.value?.rate === 0.08 && c.gray === false);
    await fresh.until("technical", "pricing", (c) => c.value?.rate === 0.08 && c.gray === false);
    assert.ok(
      !plain.inbox.some((m) => m.t === "changes" && m.changes.some((c: Json) => c.value?.rate === 0.05)),
      "never saw the abandoned value",
    );
    for (const i of [canary, pod, plain, fresh]) i.close();
  });

  test("a resource change reaches every instance whose technical parameters reference it", async () => {
    await call(a, "PUT", "/config/v1/resources/middleware/cache", {
      role: "admin",
      body: { type: "redis", config: { host: "r1", port: 6379 }, secrets: { password: "old-pw" } },
    });
    await put(a, "technical/loan/prod/cache", { value: { redis: { $ref: "middleware/cache" } } });
    const i = await Instance.start(b, loan);
    assert.equal(i.metadata.technical.find((v: Json) => v.key === "cache").value.redis.password, "old-pw");
    const rotated = await call(b, "PUT", "/config/v1/resources/middleware/cache", {
      role: "admin",
      body: { type: "redis", config: { host: "r2", port: 6379 }, secrets: { password: "new-pw" } },
    });
    assert.deepEqual(rotated.body.affected, [{ kind: "technical", app: "loan", env: "prod", key: "cache" }]);
    const got = await i.until("technical", "cache", (c) => c.value?.redis?.password === "new-pw");
    assert.equal(got.value.redis.host, "r2");
    i.close();
  });

  test("secrets are sealed at rest, masked to everyone below admin, revealed to an admin only on request and audited", async () => {
    await call(a, "PUT", "/config/v1/resources/middleware/core-db", {
      role: "admin",
      body: { type: "oracle", config: { url: "jdbc:oracle:thin:@core:1521/CORE" }, secrets: { password: "Very$ecret-42" } },
    });
    for (const role of ["viewer", "operator", "admin"] as const) {
      const r = await call(b, "GET", "/config/v1/resources/middleware/core-db", { role });
      assert.equal(r.body.secrets.password, "******", role);
    }
    const refused = await call(b, "GET", "/config/v1/resources/middleware/core-db?reveal=true", { role: "operator" });
    assert.equal(refused.status, 403);
    const revealed = await call(b, "GET", "/config/v1/resources/middleware/core-db?reveal=true", { role: "admin" });
    assert.equal(revealed.body.secrets.password, "Very$ecret-42");
    assert.deepEqual(revealed.body.keyIds, ["k1"]);
    const operatorWrite = await call(a, "PUT", "/config/v1/resources/middleware/core-db", { role: "operator", body: { type: "oracle" } });
    assert.equal(operatorWrite.status, 403);

    const stored = await db.query("SELECT secrets::text AS s FROM resources WHERE name = 'core-db'");
    assert.ok(!stored.rows[0].s.includes("Very$ecret-42"), "sealed at rest");
    const anywhere = await db.query(
      "SELECT count(*)::int AS n FROM audit_log WHERE before::text LIKE '%Very$ecret%' OR after::text LIKE '%Very$ecret%'",
    );
    assert.equal(anywhere.rows[0].n, 0, "never in the audit trail");
    const audit = await call(a, "GET", "/config/v1/audit?target=resource/middleware/core-db", { role: "operator" });
    assert.deepEqual(
      audit.body.entries.map((e: Json) => [e.action, e.actor]),
      [
        ["secrets.reveal", "key:admin"],
        ["resource.create", "key:admin"],
      ],
    );
    const preview = await call(a, "GET", "/config/v1/preview?app=loan&env=prod", { role: "operator" });
    assert.equal(preview.body.technical.find((v: Json) => v.key === "cache").value.redis.password, "******");
    // An admin's revealed preview is audited naming the secret fields it showed, never their values.
    const shown = await call(a, "GET", "/config/v1/preview?app=loan&env=prod&reveal=true", { role: "admin" });
    assert.equal(shown.body.technical.find((v: Json) => v.key === "cache").value.redis.password, "new-pw");
    const looked = await call(a, "GET", "/config/v1/audit?target=preview/loan/prod", { role: "operator" });
    assert.equal(looked.body.entries[0].action, "secrets.reveal");
    assert.deepEqual(looked.body.entries[0].after, { fields: ["technical/cache/redis/password"] });
  });

  test("every change is audited with who, before and after", async () => {
    await put(a, "business/_/_/dict.audited", { value: [{ code: "a", name: "A" }], category: "dictionary" });
    await put(b, "business/_/_/dict.audited", { value: [{ code: "b", name: "B" }] });
    const audit = await call(a, "GET", "/config/v1/audit?target=item/business/*/*/dict.audited", { role: "operator" });
    const [latest, first] = audit.body.entries;
    assert.equal(latest.action, "item.set");
    assert.equal(latest.actor, "key:operator");
    assert.equal(latest.role, "operator");
    assert.deepEqual(latest.before.value, [{ code: "a", name: "A" }]);
    assert.deepEqual(latest.after.value, [{ code: "b", name: "B" }]);
    assert.equal(first.before, null);
  });
});

describe("history pruning, with two replicas sharing the work", () => {
  let env: Awaited<ReturnType<typeof startCenters>>;
  let a: string;
  let db: pg.Client;

  before(async () => {
    env = await startCenters(2, {
      redis: false,
      env: { HISTORY_RETENTION_DAYS: "1", HISTORY_KEEP_MIN: "2", HISTORY_PRUNE_INTERVAL_SECONDS: "1" },
    });
    a = env.urls[0]!;
    db = await centerDb(env.db.url);
  });
  after(async () => {
    await db.end();
    await env.close();
  });

  test("changes older than HISTORY_RETENTION_DAYS go, except each item's newest HISTORY_KEEP_MIN; rollback reaches what is kept", async () => {
    const versions: number[] = [];
    for (const v of [1, 2, 3, 4, 5]) versions.push((await put(a, "technical/loan/_/pruned", { value: { v } })).body.version);
    for (const v of [1, 2, 3]) await put(a, "technical/loan/_/recent", { value: { v } });
    await db.query("UPDATE changes SET at = now() - interval '10 days' WHERE key = 'pruned'");
    const count = async (key: string) => (await db.query("SELECT count(*)::int AS n FROM changes WHERE key = $1", [key])).rows[0].n;
    await eventually("the old changes pruned", async () => (await count("pruned")) === 2);
    assert.equal(await count("recent"), 3, "recent changes stay, however many");
    const history = await call(a, "GET", "/config/v1/history/technical/loan/_/pruned", { role: "viewer" });
    assert.deepEqual(
      history.body.changes.map((c: Json) => c.version),
      [versions[4], versions[3]],
    );
    const back = await call(a, "POST", "/config/v1/rollback/technical/loan/_/pruned", {
      role: "operator",
      body: { toVersion: versions[3] },
    });
    assert.equal(back.status, 200, back.body.message);
    assert.deepEqual(back.body.item.value, { v: 4 });
    const gone = await call(a, "POST", "/config/v1/rollback/technical/loan/_/pruned", {
      role: "operator",
      body: { toVersion: versions[0] },
    });
    assert.equal(gone.status, 404);
    assert.match(
      gone.body.message,
      /has no version at or before \d+: its oldest change kept is version \d+ \(changes older than HISTORY_RETENTION_DAYS beyond its newest HISTORY_KEEP_MIN are pruned\)/,
    );
    // One replica at a time: the three rows were pruned, and counted, once.
    let pruned = 0;
    for (const url of env.urls) {
      const metrics = await (await fetch(`${url}/metrics`)).text();
      pruned += Number(/config_center_history_pruned_total\{service="config-center"\} (\d+)/.exec(metrics)?.[1] ?? 0);
    }
    assert.equal(pruned, 3);
  });
});
