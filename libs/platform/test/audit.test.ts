import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type RunningService, sha256Hex, startService } from "@opsplane/platform";
import { createTestDatabase, eventually, type TestDatabase } from "@opsplane/testing";
import pg from "pg";
import { fixtureService } from "./fixture-service.js";

const keys = { viewer: "audit-viewer-key-0123456789", operator: "audit-operator-key-0123456789" };
const env = (db: TestDatabase) => ({
  DATABASE_URL: db.url,
  PORT: "0",
  HOST: "127.0.0.1",
  LOG_LEVEL: "silent",
  AUTH_API_KEYS: `v1:viewer:${sha256Hex(keys.viewer)},o1:operator:${sha256Hex(keys.operator)}`,
  // No window ends during a test: what a window records is then exact.
  AUDIT_DENIAL_WINDOW_SECONDS: "86400",
});
const bearer = (k: string) => ({ authorization: `Bearer ${k}` });
const json = { "content-type": "application/json" };

interface Entry {
  id: string;
  at: string;
  actor: string;
  role?: string;
  action: string;
  target: string;
  before?: unknown;
  after?: unknown;
  requestId?: string;
  outcome: string;
}
interface Page {
  entries?: Entry[];
  nextPageToken?: string;
}

describe("the audit trail, read without SQL", () => {
  let db: TestDatabase;
  let svc: RunningService;
  const things: Array<{ id: number; requestId: string }> = [];
  before(async () => {
    db = await createTestDatabase();
    svc = await startService(fixtureService(), env(db));
    for (const name of ["one", "two", "three"]) {
      const res = await fetch(`${svc.url}/things`, {
        method: "POST",
        headers: { ...json, ...bearer(keys.operator) },
        body: JSON.stringify({ name, size: 1 }),
      });
      assert.equal(res.status, 201);
      things.push({ id: ((await res.json()) as { id: number }).id, requestId: res.headers.get("x-request-id")! });
    }
    // A viewer trying to change something: refused and audited.
    const refused = await fetch(`${svc.url}/things`, { method: "POST", headers: { ...json, ...bearer(keys.viewer) }, body: "{}" });
    assert.equal(refused.status, 403);
  });
  after(async () => {
    await svc.close();
    await db.drop();
  });

  const rest = async (query: string, key = keys.operator) => {
    const res = await fetch(`${svc.url}/_audit/v1/entries${query}`, { headers: bearer(key) });
    return { status: res.status, body: (await res.json()) as Page & { error?: string; message?: string } };
  };
  const rpc = async (request: object, key = keys.operator) => {
    const res = await fetch(`${svc.url}/ops.v1.AuditService/ListAuditEntries`, {
      method: "POST",
      headers: { ...json, ...bearer(key) },
      body: JSON.stringify(request),
    });
    return { status: res.status, body: (await res.json()) as Page & { code?: string; message?: string } };
  };

  test("operators get who did what, when, before and after, the same over REST and Connect", async () => {
    const viaRest = await rest("?action=thing.create");
    assert.equal(viaRest.status, 200);
    const entries = viaRest.body.entries ?? [];
    assert.deepEqual(
      entries.map((e) => [e.actor, e.role, e.action, e.target, e.after, e.requestId, e.outcome]),
      [...things]
        .reverse()
        .map((t, i) => [
          "key:o1",
          "operator",
          "thing.create",
          `thing/${t.id}`,
          { id: t.id, name: ["three", "two", "one"][i], size: 1 },
          t.requestId,
          "ok",
        ]),
    );
    for (const e of entries) assert.ok(Number.isFinite(Date.parse(e.at)), `at is a time: ${e.at}`);
    const viaRpc = await rpc({ action: "thing.create" });
    assert.equal(viaRpc.status, 200);
    assert.deepEqual(viaRpc.body, viaRest.body);
  });

  test("refused calls are in it, by route, with the status and reason", async () => {
    const denied = await rest("?outcome=denied&actor=key:v1");
    assert.deepEqual(
      denied.body.entries?.map((e) => [e.action, e.target, e.after]),
      [["access.denied", "POST /things", { status: 403, reason: "role viewer may not call this API; it needs operator", path: "/things" }]],
    );
  });

  test("viewers may not read it", async () => {
    const viaRest = await rest("", keys.viewer);
    assert.equal(viaRest.status, 403);
    assert.match(viaRest.body.message ?? "", /needs operator/);
    const viaRpc = await rpc({}, keys.viewer);
    assert.equal(viaRpc.status, 403);
    assert.equal(viaRpc.body.code, "permission_denied");
  });

  test("filters by target and time, and pages newest first", async () => {
    const one = await rest(`?target=thing/${things[0]!.id}`);
    assert.deepEqual(
      one.body.entries?.map((e) => e.target),
      [`thing/${things[0]!.id}`],
    );
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await rest(`?action=thing.create&limit=2${token ? `&pageToken=${token}` : ""}`);
      assert.equal(page.status, 200);
      seen.push(...(page.body.entries ?? []).map((e) => e.target));
      token = page.body.nextPageToken ?? "";
      pages++;
    } while (token);
    assert.equal(pages, 2);
    assert.deepEqual(
      seen,
      [...things].reverse().map((t) => `thing/${t.id}`),
    );
    const future = new Date(Date.now() + 3_600_000).toISOString();
    assert.deepEqual((await rest(`?from=${future}`)).body.entries ?? [], []);
    assert.deepEqual((await rest("?to=2000-01-01T00:00:00Z")).body.entries ?? [], []);
    assert.equal((await rest(`?to=${future}&action=thing.create`)).body.entries?.length, 3);
  });

  test("a time that is not one, an unknown outcome or a made-up page token is a 400 naming it", async () => {
    for (const [query, field] of [
      ["?from=2024-02-30T00:00:00Z", "from"],
      ["?to=yesterday", "to"],
      ["?outcome=maybe", "outcome"],
      ["?pageToken=abc", "pageToken"],
    ] as const) {
      const res = await rest(query);
      assert.equal(res.status, 400, query);
      assert.match(res.body.message ?? "", new RegExp(`^${field} `), query);
    }
    const viaRpc = await rpc({ from: "2024-99-99T00:00:00Z" });
    assert.equal(viaRpc.status, 400);
    assert.equal(viaRpc.body.code, "invalid_argument");
    assert.match(viaRpc.body.message ?? "", /^from /);
  });

  test("a time range whose from is after its to is a 400 telling to swap them, not an empty page", async () => {
    const swapped = await rest("?from=2027-01-01T00:00:00Z&to=2026-01-01T00:00:00Z");
    assert.equal(swapped.status, 400);
    assert.equal(swapped.body.error, "bad_request");
    assert.equal(swapped.body.message, "from (2027-01-01T00:00:00Z) is after to (2026-01-01T00:00:00Z): swap them");
    // Compared as instants, not as text: the same moment in another zone is no inverted range.
    const zoned = await rest("?from=2026-01-01T01:00:00%2B02:00&to=2026-01-01T00:00:00Z");
    assert.equal(zoned.status, 200, zoned.body.message);
    const viaRpc = await rpc({ from: "2027-01-01t00:00:00z", to: "2026-01-01 00:00:00Z" });
    assert.equal(viaRpc.status, 400);
    assert.equal(viaRpc.body.code, "invalid_argument");
    assert.equal(viaRpc.body.message, "from (2027-01-01t00:00:00z) is after to (2026-01-01 00:00:00Z): swap them");
  });
});

describe("a flood of refused calls", () => {
  test("is one row at once per caller and route, and one row counting the rest, however many come", async () => {
    const db = await createTestDatabase();
    const svc = await startService(fixtureService(), env(db));
    const flood = 50;
    try {
      for (let i = 0; i < flood; i++) {
        const anon = await fetch(`${svc.url}/things`, { method: "POST", headers: json, body: "{}" });
        assert.equal(anon.status, 401);
        const viewer = await fetch(`${svc.url}/ops.v1.AuditService/ListAuditEntries`, {
          method: "POST",
          headers: { ...json, ...bearer(keys.viewer) },
          body: "{}",
        });
        assert.equal(viewer.status, 403);
      }
      await eventually("the first refusals recorded", async () => {
        const { rows } = await svc.ctx.pool.query("SELECT count(*)::int AS n FROM audit_log WHERE outcome = 'denied'");
        return rows[0].n === 2;
      });
    } finally {
      await svc.close();
    }
    // Closing ends the window: the suppressed refusals are counted in one more row each.
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query(
        "SELECT actor, target, after FROM fixture_svc.audit_log WHERE outcome = 'denied' ORDER BY actor, target, id",
      );
      assert.deepEqual(
        rows.map((r) => [r.actor, r.target, r.after.suppressed ?? 0]),
        [
          ["anonymous", "POST /things", 0],
          ["anonymous", "POST /things", flood - 1],
          ["key:v1", "/ops.v1.AuditService/ListAuditEntries", 0],
          ["key:v1", "/ops.v1.AuditService/ListAuditEntries", flood - 1],
        ],
      );
    } finally {
      await client.end();
      await db.drop();
    }
  });
});
