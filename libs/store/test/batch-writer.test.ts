import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { BatchWriter, createPool, type Pool } from "@opsplane/store";
import { createTestDatabase, eventually, type TestDatabase } from "@opsplane/testing";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

describe("the batch writer under steady load", () => {
  let db: TestDatabase;
  let pool: Pool;

  before(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, { schema: "public", applicationName: "batch-writer-test", max: 4 });
    await pool.query("CREATE TABLE rows_written (n int NOT NULL)");
  });
  after(async () => {
    await pool?.end();
    await db?.drop();
  });

  /** A writer into rows_written that counts its statements. */
  function writer(flushMs: number) {
    const statements: number[] = [];
    const w = new BatchWriter<number>({
      what: "rows",
      write: async (rows) => {
        statements.push(rows.length);
        await pool.query("INSERT INTO rows_written (n) SELECT unnest($1::int[])", [rows]);
      },
      describe: (n) => ({ n }),
      log: quiet,
      flushMs,
      maxBatch: 1000,
      maxQueued: 100_000,
      closeTimeoutMs: 5_000,
      onDrop: () => {},
    });
    return { w, statements };
  }

  // Rows arrive all the time (a dispatcher recording callbacks): looping until the queue was empty wrote
  // whatever came during the last statement at once, statement after statement, a few rows each, so
  // every recorded row paid for most of a round trip and a commit.
  test("writes one statement per flush interval, not one per round trip, and loses no row", async () => {
    await pool.query("TRUNCATE rows_written");
    const { w, statements } = writer(100);
    let next = 0;
    const started = performance.now();
    await new Promise<void>((done) => {
      const feed = setInterval(() => {
        for (let i = 0; i < 5; i++) w.add(next++);
        if (performance.now() - started >= 1_000) {
          clearInterval(feed);
          done();
        }
      }, 1);
    });
    await w.close();
    // Ten intervals in that second, and close() writing the rest: a statement took a few milliseconds
    // here, so writing back to back gave hundreds.
    assert.ok(statements.length <= 15, `${statements.length} statements for ${next} rows: ${statements.join(" ")}`);
    const { rows } = await pool.query<{ n: number; distinct: number }>(
      "SELECT count(*)::int AS n, count(DISTINCT n)::int AS distinct FROM rows_written",
    );
    assert.deepEqual(rows[0], { n: next, distinct: next });
  });

  test("a flush called while another writes also writes the rows added after that one began", async () => {
    await pool.query("TRUNCATE rows_written");
    const locker = await pool.connect();
    try {
      const { w } = writer(60_000);
      // The first flush waits on a lock, so the second is called while it writes.
      await locker.query("BEGIN");
      await locker.query("LOCK TABLE rows_written IN ACCESS EXCLUSIVE MODE");
      w.add(1);
      const first = w.flush();
      await eventually("the first flush to wait on the lock", async () => {
        const { rows } = await pool.query<{ waiting: number }>(
          "SELECT count(*)::int AS waiting FROM pg_locks WHERE relation = 'rows_written'::regclass AND NOT granted",
        );
        return rows[0]!.waiting === 1;
      });
      w.add(2);
      const second = w.flush();
      await locker.query("COMMIT");
      await Promise.all([first, second]);
      const { rows } = await pool.query<{ n: number }>("SELECT n FROM rows_written ORDER BY n");
      assert.deepEqual(
        rows.map((r) => r.n),
        [1, 2],
      );
      await w.close();
    } finally {
      locker.release();
    }
  });
});
