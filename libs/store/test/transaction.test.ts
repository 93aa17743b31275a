import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { createPool, type Pool, withTransaction } from "@opsplane/store";
import { createTestDatabase, type TestDatabase } from "@opsplane/testing";

/** A TCP proxy in front of PostgreSQL whose open connections can be cut, as a failover or a network blip does. */
async function cuttableProxy(target: URL) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {});
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = new URL(target);
  url.hostname = "127.0.0.1";
  url.port = String((server.address() as net.AddressInfo).port);
  return {
    url: url.toString(),
    cut: () => {
      for (const s of sockets) s.destroy();
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe("a connection lost in the middle of a transaction", () => {
  let db: TestDatabase;
  let proxy: Awaited<ReturnType<typeof cuttableProxy>>;
  let pool: Pool;

  before(async () => {
    db = await createTestDatabase();
    proxy = await cuttableProxy(new URL(db.url));
    pool = createPool(proxy.url, { schema: "public", applicationName: "transaction-test", max: 2 });
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
        proxy.cut();
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
