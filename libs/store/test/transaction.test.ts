import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createPool, type Pool, TransactionDeadlineError, withTransaction } from "@opsplane/store";
import { type CuttableProxy, createTestDatabase, proxiedUrl, type TestDatabase } from "@opsplane/testing";

describe("a connection lost in the middle of a transaction", () => {
  let db: TestDatabase;
  let proxy: CuttableProxy;
  let pool: Pool;

  before(async () => {
    db = await createTestDatabase();
    let viaProxy: string;
    ({ proxy, url: viaProxy } = await proxiedUrl(db.url, 5432));
    pool = createPool(viaProxy, { schema: "public", applicationName: "transaction-test", max: 2 });
  });
  after(async () => {
    await pool?.end();
    await proxy?.close();
    await db?.drop();
  });

  // pg reports a connection lost between two queries as an 'error' event on the client; with nobody
  // listening, that event ended the process (every replica at once during a database failover).
  test("fails that transaction, not the process, and the pool serves the next one", async () => {
    await assert.rejects(
      withTransaction(pool, async (tx) => {
        await tx.query("SELECT 1");
        proxy.dropConnections();
        // Not events.once: it would listen for 'error' itself.
        await new Promise<void>((ended) => tx.on("end", () => ended()));
        await tx.query("SELECT 2");
      }),
      /Connection terminated|not queryable|ended/i,
    );
    const { rows } = await withTransaction(pool, (tx) => tx.query<{ n: number }>("SELECT 3 AS n"));
    assert.equal(rows[0]!.n, 3);
  });
});

describe("a transaction with a deadline", () => {
  let db: TestDatabase;
  let proxy: CuttableProxy;
  let pool: Pool;

  before(async () => {
    db = await createTestDatabase();
    let viaProxy: string;
    ({ proxy, url: viaProxy } = await proxiedUrl(db.url, 5432));
    pool = createPool(viaProxy, { schema: "public", applicationName: "deadline-test", max: 1 });
    await withTransaction(pool, (tx) => tx.query("CREATE TABLE owed (id int PRIMARY KEY)"));
  });
  after(async () => {
    await pool?.end();
    await proxy?.close();
    await db?.drop();
  });

  // statement_timeout is PostgreSQL's: a network that stops passing bytes never lets it answer.
  test("fails at the deadline on a stalled network, aborts what was not committed, and frees its connection", async () => {
    const owed = (id: number) =>
      withTransaction(
        pool,
        async (tx) => {
          await tx.query("INSERT INTO owed VALUES ($1)", [id]);
          if (id === 1) proxy.blackhole();
          await tx.query("SELECT 1");
        },
        { deadlineMs: 300 },
      );
    await assert.rejects(owed(1), (err: unknown) => err instanceof TransactionDeadlineError && err.deadlineMs === 300);
    proxy.heal();
    // The pool holds one connection: this passes only because the stalled one was given up.
    await owed(2);
    const direct = createPool(db.url, { schema: "public", applicationName: "deadline-check", max: 1 });
    try {
      const { rows } = await direct.query<{ id: number }>("SELECT id FROM owed ORDER BY id");
      assert.deepEqual(
        rows.map((r) => r.id),
        [2],
        "the transaction given up was not committed",
      );
    } finally {
      await direct.end();
    }
  });

  test("a wait for a connection counts: a full pool fails at the deadline, and the connection is not lost", async () => {
    let unblock!: () => void;
    const holding = withTransaction(pool, () => new Promise<void>((resolve) => (unblock = resolve)));
    await assert.rejects(
      withTransaction(pool, (tx) => tx.query("SELECT 1"), { deadlineMs: 200 }),
      (err: unknown) => err instanceof TransactionDeadlineError,
    );
    unblock();
    await holding;
    const { rows } = await withTransaction(pool, (tx) => tx.query<{ n: number }>("SELECT 4 AS n"), { deadlineMs: 5_000 });
    assert.equal(rows[0]!.n, 4);
  });
});
