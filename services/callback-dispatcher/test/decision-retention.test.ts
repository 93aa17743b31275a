import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { createDecisionRetention } from "../src/decision-retention.js";
import { startDispatcher } from "./helpers/dispatcher.js";

describe("decision retention", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let sweeping: Awaited<ReturnType<typeof startDispatcher>> | undefined;

  before(async () => {
    // Its own sweeps (one at start) keep everything the tests insert: only the sweeps the tests make delete.
    d = await startDispatcher({ DECISION_RETENTION_DAYS: "3650" }, { redis: false });
  });
  after(async () => {
    await sweeping?.svc.close();
    await d?.close();
  });

  const insert = async (requestId: string, daysAgo: number) =>
    d.svc.ctx.pool.query(
      `INSERT INTO decisions (at, request_id, method, path, reason, status, latency_ms)
       VALUES (now() - make_interval(days => $2), $1, 'POST', '/notify', 'no_rule', 200, 1)`,
      [requestId, daysAgo],
    );
  const present = async (requestId: string) =>
    ((await d.svc.ctx.pool.query("SELECT 1 FROM decisions WHERE request_id = $1", [requestId])).rowCount ?? 0) > 0;

  test("a sweep deletes decisions past the retention period and keeps recent ones, one replica at a time", async () => {
    await insert("old-1", 8);
    await insert("recent-1", 6);
    // Another replica is sweeping: this one skips the round.
    const other = await d.svc.ctx.pool.connect();
    await other.query("BEGIN");
    await other.query("SELECT pg_advisory_xact_lock(hashtextextended('opsplane.callback-dispatcher.decision-retention', 0))");
    const retention = createDecisionRetention({
      pool: d.svc.ctx.pool,
      schema: "callback-dispatcher",
      retentionDays: 7,
      sweepMs: 3_600_000,
      log: d.svc.ctx.log,
    });
    try {
      try {
        assert.equal(await retention.sweep(), 0);
        assert.ok(await present("old-1"), "nothing deleted while another replica holds the lock");
      } finally {
        await other.query("COMMIT");
        other.release();
      }
      assert.equal(await retention.sweep(), 1);
      assert.equal(await present("old-1"), false);
      assert.ok(await present("recent-1"));
    } finally {
      await retention.close();
    }
  });

  test("the service sweeps periodically with DECISION_RETENTION_DAYS and DECISION_SWEEP_MS", async () => {
    await insert("old-2", 30);
    await insert("recent-2", 1);
    sweeping = await startDispatcher(
      { DECISION_RETENTION_DAYS: "14", DECISION_SWEEP_MS: "200" },
      { redis: false, databaseUrl: d.databaseUrl },
    );
    await eventually("old decision swept", async () => !(await present("old-2")));
    assert.ok(await present("recent-2"));
    const { body } = await d.api("GET", "/_dispatcher/v1/decisions?limit=1000");
    const ids = (body.decisions as Array<{ requestId: string }>).map((x) => x.requestId);
    assert.ok(ids.includes("recent-2") && !ids.includes("old-2"));
    // Its 200 ms sweeps would otherwise delete the next test's 41-day-old dead letter before that test redrives it.
    await sweeping.svc.close();
    sweeping = undefined;
  });
  test("a dead letter redriven while the sweep waits for its row is kept: the sweep checks the row again once it has it", async () => {
    const pool = d.svc.ctx.pool;
    await pool.query(
      `INSERT INTO async_deliveries (id, env, state, request_id, method, target, headers, body, received_at, max_attempts, give_up_at,
         initial_backoff_ms, max_backoff_ms, next_attempt_at, dead_reason, finished_at)
       VALUES (987654, 'sit', 'dead', 'redriven-1', 'POST', '/notify', '[]', '\\x7b7d', now() - interval '41 days', 3,
         now() - interval '40 days', 100, 1000, now() - interval '40 days', 'max_attempts', now() - interval '40 days')`,
    );
    // An operator's redrive has made the row pending, and its transaction is still writing its audit row, when the sweep starts.
    // (Locked before the retention exists: it sweeps once as it is made, and that sweep could otherwise take the row first.)
    const redrive = await pool.connect();
    let retention: ReturnType<typeof createDecisionRetention> | undefined;
    try {
      await redrive.query("BEGIN");
      await redrive.query(
        "UPDATE async_deliveries SET state = 'pending', finished_at = NULL, dead_reason = NULL, next_attempt_at = now() WHERE id = 987654",
      );
      retention = createDecisionRetention({
        pool,
        schema: "callback-dispatcher",
        retentionDays: 7,
        sweepMs: 3_600_000,
        log: d.svc.ctx.log,
      });
      const sweep = retention.sweep();
      await eventually("the sweep waiting for the row", async () => {
        const { rows } = await pool.query(
          "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%DELETE FROM async_deliveries%'",
        );
        return rows.length > 0;
      });
      await redrive.query("COMMIT");
      await sweep;
    } finally {
      redrive.release();
      await retention?.close();
    }
    const { rows } = await pool.query("SELECT state FROM async_deliveries WHERE id = 987654");
    assert.deepEqual(rows, [{ state: "pending" }], "the redriven delivery is still there, pending");
    await pool.query("DELETE FROM async_deliveries WHERE id = 987654");
  });
});
