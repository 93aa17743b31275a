import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createPool, type Migration, migrate, type Pool, tryAdvisoryXactLock, withTransaction } from "@opsplane/store";
import { createTestDatabase, type TestDatabase } from "@opsplane/testing";

let db: TestDatabase;
const pools: Pool[] = [];
const pool = (schema: string) => {
  const p = createPool(db.url, { schema, applicationName: "store-test" });
  pools.push(p);
  return p;
};
before(async () => {
  db = await createTestDatabase();
});
after(async () => {
  await Promise.all(pools.map((p) => p.end()));
  await db.drop();
});

const v1: Migration[] = [
  { id: "002_add_size", sql: "ALTER TABLE items ADD COLUMN size int NOT NULL DEFAULT 0" },
  { id: "001_items", sql: "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)" },
];

test("migrations apply in id order into the service's own schema, once", async () => {
  const p = pool("svc_a");
  assert.deepEqual(await migrate(p, "svc_a", v1), ["001_items", "002_add_size"]);
  assert.deepEqual(await migrate(p, "svc_a", v1), []);
  await p.query("INSERT INTO items (name, size) VALUES ('x', 2)");
  const { rows } = await p.query("SELECT table_schema FROM information_schema.tables WHERE table_name = 'items'");
  assert.deepEqual(rows, [{ table_schema: "svc_a" }]);
});

test("replicas starting together apply each migration exactly once", async () => {
  const replicas = [pool("svc_b"), pool("svc_b"), pool("svc_b"), pool("svc_b")];
  const results = await Promise.all(replicas.map((p) => migrate(p, "svc_b", v1)));
  assert.deepEqual(results.flat().sort(), ["001_items", "002_add_size"]);
  const { rows } = await replicas[0]!.query("SELECT count(*)::int AS n FROM svc_b.schema_migrations");
  assert.equal(rows[0].n, 2);
});

test("a failing migration is rolled back and named; earlier ones stay applied", async () => {
  const p = pool("svc_c");
  const broken = [...v1, { id: "003_broken", sql: "CREATE TABLE half (id int); SELECT no_such_function()" }];
  await assert.rejects(migrate(p, "svc_c", broken), /migration svc_c\/003_broken failed: function no_such_function\(\) does not exist/);
  const { rows } = await p.query("SELECT to_regclass('svc_c.half') AS half, (SELECT count(*)::int FROM svc_c.schema_migrations) AS n");
  assert.deepEqual(rows, [{ half: null, n: 2 }]);
});

test("an applied migration whose text changed stops start-up", async () => {
  const p = pool("svc_d");
  await migrate(p, "svc_d", v1);
  const edited = [{ ...v1[0]!, sql: "ALTER TABLE items ADD COLUMN size bigint" }, v1[1]!];
  await assert.rejects(migrate(p, "svc_d", edited), /migration svc_d\/002_add_size was changed after it was applied/);
});

test("schema names are checked before they reach SQL", () => {
  assert.throws(() => createPool(db.url, { schema: "x; DROP TABLE y", applicationName: "t" }), /invalid SQL identifier/);
});

test("withTransaction commits on success and rolls back on error", async () => {
  const p = pool("svc_a");
  await withTransaction(p, (tx) => tx.query("INSERT INTO items (name) VALUES ('kept')"));
  await assert.rejects(
    withTransaction(p, async (tx) => {
      await tx.query("INSERT INTO items (name) VALUES ('lost')");
      throw new Error("boom");
    }),
    /boom/,
  );
  const { rows } = await p.query("SELECT name FROM items WHERE name IN ('kept', 'lost')");
  assert.deepEqual(rows, [{ name: "kept" }]);
});

test("an advisory transaction lock lets one replica run a periodic job while the others skip it", async () => {
  const p = pool("svc_a");
  let release: () => void = () => {};
  const held = new Promise<void>((r) => (release = r));
  let firstLocked: (v: boolean) => void = () => {};
  const first = new Promise<boolean>((r) => (firstLocked = r));
  const holder = withTransaction(p, async (tx) => {
    firstLocked(await tryAdvisoryXactLock(tx, "job.sweep"));
    await held;
  });
  assert.equal(await first, true);
  assert.equal(await withTransaction(p, (tx) => tryAdvisoryXactLock(tx, "job.sweep")), false);
  release();
  await holder;
  assert.equal(await withTransaction(p, (tx) => tryAdvisoryXactLock(tx, "job.sweep")), true, "the lock ends with its transaction");
});
