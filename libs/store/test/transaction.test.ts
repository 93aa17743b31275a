import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createPool, type Pool, withTransaction } from "@opsplane/store";
import { type CuttableProxy, createTestDatabase, startCuttableProxy, type TestDatabase } from "@opsplane/testing";

describe("a connection lost in the middle of a transaction", () => {
  let db: TestDatabase;
  let proxy: CuttableProxy;
  let pool: Pool;

  before(async () => {
    db = await createTestDatabase();
    const target = new URL(db.url);
    proxy = await startCuttableProxy(target.hostname, Number(target.port || 5432));
    const viaProxy = new URL(db.url);
    viaProxy.hostname = "127.0.0.1";
    viaProxy.port = String(proxy.port);
    pool = createPool(viaProxy.toString(), { schema: "public", applicationName: "transaction-test", max: 2 });
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
