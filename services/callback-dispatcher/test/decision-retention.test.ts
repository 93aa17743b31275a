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
  });
});
