import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type pg from "pg";
import WebSocket from "ws";
import { call, centerDb, Instance, type Json, startCenters } from "./harness.js";

const loan = { appId: "loan", secret: "loan-secret-0123" };

describe("bad input is refused with the reason and leaves nothing half-written (single node, no Redis)", () => {
  let env: Awaited<ReturnType<typeof startCenters>>;
  let base: string;
  let db: pg.Client;
  const changeCount = async () => (await db.query("SELECT count(*)::int AS n FROM changes")).rows[0].n as number;

  before(async () => {
    env = await startCenters(1, { redis: false, env: { SOCKET_MAX_MESSAGES_PER_SECOND: "5", IMPORT_BODY_LIMIT_BYTES: "1048576" } });
    base = env.urls[0]!;
    db = await centerDb(env.db.url);
  });
  after(async () => {
    await db.end();
    await env.close();
  });

  test("values that break their schema, their category's or their rule type's are refused, naming where", async () => {
    const before = await changeCount();
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ["business/_/_/dict.banks", { value: [{ code: "12", name: "x" }], category: "bank-codes" }, /\/0\/code must match pattern/],
      [
        "business/_/_/bins",
        { value: [{ bin: "622202", bank: "ICBC", cardType: "gold" }], category: "card-bin" },
        /\/0\/cardType must be equal to one of the allowed values \(debit, credit, prepaid, semi-credit\)/,
      ],
      ["business/_/_/x", { value: "text", category: "no-such-category" }, /business category "no-such-category" must be one of/],
      [
        "business/_/_/own",
        { value: { limit: -1 }, schema: { type: "object", properties: { limit: { type: "integer", minimum: 0 } } } },
        /\/limit must be >= 0/,
      ],
      ["business/_/_/bad-schema", { value: 1, schema: { type: "no-such-type" } }, /schema is not a valid JSON Schema/],
      ["governance/loan/_/rate-limit/loan.apply", { value: { tps: -5 } }, /\/tps must be > 0/],
      ["governance/loan/_/throttle/loan.apply", { value: {} }, /a governance rule's key is "<type>\/<interface or queue code>"/],
      ["governance/loan/_/baffle/loan.apply", { value: { enabled: true, response: {} }, schema: {} }, /take none of their own/],
      ["governance/_/_/route/loan.apply", { value: { enabled: true } }, /governance rules belong to an app/],
      [
        "technical/loan/prod/db",
        { value: { db: { $ref: "middleware/nowhere" } } },
        /reference to middleware\/nowhere, which does not exist/,
      ],
      ["technical/loan/prod/db", { value: { db: { $ref: "queue/x" } } }, /must be "middleware\/<name>" or "service\/<name>"/],
    ];
    for (const [path, body, reason] of cases) {
      const r = await call(base, "PUT", `/config/v1/items/${path}`, { role: "operator", body });
      assert.equal(r.status, 400, `${path}: ${r.body.message}`);
      assert.match(r.body.message, reason, path);
    }
    const badKind = await call(base, "PUT", "/config/v1/items/secret/_/_/x", { role: "operator", body: { value: 1 } });
    assert.equal(badKind.status, 400);
    assert.equal(await changeCount(), before, "nothing was written");
    assert.equal((await db.query("SELECT count(*)::int AS n FROM items")).rows[0].n, 0);
  });

  test("references to a missing field or through a cycle are refused, and a resource in use cannot be deleted", async () => {
    const mk = (name: string, config: Record<string, unknown>) =>
      call(base, "PUT", `/config/v1/resources/service/${name}`, { role: "admin", body: { type: "http", config } });
    assert.equal((await mk("gateway", { url: "http://gw" })).status, 200);
    assert.equal((await mk("auth", { upstream: { $ref: "service/gateway" } })).status, 200);
    const cycle = await mk("gateway", { url: "http://gw", via: { $ref: "service/auth" } });
    assert.equal(cycle.status, 400);
    assert.match(cycle.body.message, /references form a cycle: service\/gateway -> service\/auth -> service\/gateway/);
    const field = await call(base, "PUT", "/config/v1/items/technical/loan/prod/auth", {
      role: "operator",
      body: { value: { $ref: "service/auth#token" } },
    });
    assert.equal(field.status, 400);
    assert.match(field.body.message, /service\/auth has no field "token"/);
    await call(base, "PUT", "/config/v1/items/technical/loan/prod/auth", {
      role: "operator",
      body: { value: { $ref: "service/auth#upstream" } },
    });
    const inUse = await call(base, "DELETE", "/config/v1/resources/service/gateway", { role: "admin" });
    assert.equal(inUse.status, 409);
    assert.match(inUse.body.message, /still referenced by resource service\/auth/);
    const secretWithoutKind = await call(base, "PUT", "/config/v1/resources/queue/x", { role: "admin", body: { type: "http" } });
    assert.equal(secretWithoutKind.status, 400);
  });

  test("a dictionary imports from CSV in one versioned change; a bad row, a bad format or a 50 MB body are refused", async () => {
    const csv = "\uFEFFcode,name\n102100099996,ICBC\n103100000026,ABC\n\n105100000017,CCB\n";
    const imported = await call(base, "POST", "/config/v1/import/_/_/dict.bank-codes?category=bank-codes", {
      role: "operator",
      raw: csv,
      contentType: "text/csv",
    });
    assert.equal(imported.status, 200, imported.body.message);
    assert.equal(imported.body.entries, 3);
    assert.equal(imported.body.item.value[2].name, "CCB");
    const history = await call(base, "GET", "/config/v1/history/business/_/_/dict.bank-codes", { role: "viewer" });
    assert.deepEqual(
      history.body.changes.map((c: Json) => [c.action, c.comment]),
      [["import", "import of 3 entries"]],
    );

    const before = await changeCount();
    const badRow = await call(base, "POST", "/config/v1/import/_/_/dict.bank-codes", {
      role: "operator",
      raw: "code,name\n1021,ICBC\n",
      contentType: "text/csv",
    });
    assert.equal(badRow.status, 400);
    assert.match(badRow.body.message, /\/0\/code must match pattern/);
    const ragged = await call(base, "POST", "/config/v1/import/_/_/dict.bank-codes", {
      role: "operator",
      raw: "code,name\n1,2,3\n",
      contentType: "text/csv",
    });
    assert.equal(ragged.status, 400);
    assert.match(ragged.body.message, /the CSV does not parse/);
    const notArray = await call(base, "POST", "/config/v1/import/_/_/dict.bank-codes", { role: "operator", body: { code: "x" } });
    assert.equal(notArray.status, 400);
    const huge = await call(base, "POST", "/config/v1/import/_/_/dict.huge", {
      role: "operator",
      raw: `code,name\n${"1,x\n".repeat(13_000_000)}`,
      contentType: "text/csv",
    });
    assert.equal(huge.status, 413);
    assert.equal(await changeCount(), before);
    const viewer = await call(base, "POST", "/config/v1/import/_/_/dict.bank-codes", { role: "viewer", raw: csv, contentType: "text/csv" });
    assert.equal(viewer.status, 403);
  });

  test("a dictionary in GBK (Excel's Chinese export) imports in its charset, never garbled; a header naming a column twice is refused", async () => {
    // "中国" in GBK: the bytes an Excel CSV export carries.
    const gbk = new Blob(["code,name\n102100099996,", new Uint8Array([0xd6, 0xd0, 0xb9, 0xfa]), "\n"]);
    const path = "/config/v1/import/_/_/dict.gbk-banks?category=bank-codes";
    const before = await changeCount();
    const unlabelled = await call(base, "POST", path, { role: "operator", raw: gbk, contentType: "text/csv" });
    assert.equal(unlabelled.status, 400);
    assert.match(unlabelled.body.message, /not valid utf-8.*charset=gbk/);
    const unknown = await call(base, "POST", path, { role: "operator", raw: gbk, contentType: "text/csv; charset=x-klingon" });
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.message, /charset "x-klingon"/);
    const twice = await call(base, "POST", path, { role: "operator", raw: "code,name,code\n1,a,2\n", contentType: "text/csv" });
    assert.equal(twice.status, 400);
    assert.match(twice.body.message, /column "code" twice/);
    assert.equal(await changeCount(), before);
    const labelled = await call(base, "POST", path, { role: "operator", raw: gbk, contentType: "text/csv; charset=GBK" });
    assert.equal(labelled.status, 200, labelled.body.message);
    assert.equal(labelled.body.item.value[0].name, "中国");
  });

  test("a flood of heartbeats is refused and then hung up on; other instances go on receiving changes", async () => {
    const flooder = await Instance.start(base, loan, { hostName: "flooder" });
    const calm = await Instance.start(base, loan, { hostName: "calm" });
    for (let n = 0; n < 200 && !flooder.closed; n++) flooder.send({ t: "ping" });
    const closed = await flooder.whenClosed();
    assert.equal(closed.code, 1008);
    assert.match(closed.reason, /more than 5 messages per second, sustained/);
    assert.ok(flooder.inbox.some((m) => m.t === "error" && /^rate-limited/.test(m.reason)));
    calm.send("not json");
    await calm.next("a refusal", (m) => m.t === "error" && m.reason === "malformed: not JSON");
    calm.send({ t: "ack", version: -1 });
    await calm.next("a refusal", (m) => m.t === "error" && /ack needs a non-negative integer version/.test(m.reason));
    await call(base, "PUT", "/config/v1/items/technical/loan/_/after-flood", { role: "operator", body: { value: true } });
    await calm.until("technical", "after-flood", (c) => c.value === true);
    calm.close();
  });

  test("without Redis, business parameters come from config-center; large ones are fetched rather than pushed", async () => {
    const i = await Instance.start(base, loan);
    const big = Array.from({ length: 4000 }, (_, n) => ({ code: String(n).padStart(6, "0"), name: `entry ${n}` }));
    await call(base, "PUT", "/config/v1/items/business/_/_/dict.big", { role: "operator", body: { value: big, category: "dictionary" } });
    const pushed = await i.until("business", "dict.big", (c) => c.fetch === true);
    assert.equal(pushed.value, undefined);
    const read = await call(base, "POST", `/config/v1/instances/${i.instanceId}/business`, {
      token: i.token,
      body: { keys: ["dict.big"] },
    });
    assert.equal(read.body.values[0].value.length, 4000);
    i.close();
  });

  test("a socket handshake without a valid token, or for another app's instance, is refused", async () => {
    const i = await Instance.start(base, loan);
    await assert.rejects(
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${base.replace("http", "ws")}/config/v1/instances/${i.instanceId}/socket`, {
          headers: { "x-config-token": "cct_forged" },
        });
        ws.once("open", resolve);
        ws.once("unexpected-response", (_q, res) => reject(new Error(String(res.statusCode))));
      }),
      /401/,
    );
    i.close();
  });

  test("on shutdown every socket is closed with going away, so instances reconnect elsewhere at once", async () => {
    const i = await Instance.start(base, loan);
    await env.centers[0]!.close();
    assert.deepEqual(await i.whenClosed(), { code: 1001, reason: "config-center is shutting down; reconnect" });
  });
});
