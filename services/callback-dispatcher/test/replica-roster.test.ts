import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { startDispatcher } from "./helpers/dispatcher.js";

type Readiness = { status: string; checks: Record<string, string> };

const readiness = async (url: string) => {
  const res = await fetch(`${url}/readyz`);
  return { code: res.status, ...((await res.json()) as Readiness) };
};

// Issue 16, item 5: a replica without Redis routes only the registrations it received itself.
describe("replicas sharing a database say so when one of them runs without Redis", () => {
  const beat = { REPLICA_HEARTBEAT_MS: "100" };
  const started: Array<Awaited<ReturnType<typeof startDispatcher>>> = [];
  after(async () => {
    for (const d of started.slice(1)) await d.svc.close();
    await started[0]?.close();
  });

  test("alone without Redis: ready; beside another replica: not ready, naming the fix; ready again once alone", async () => {
    const alone = await startDispatcher(beat, { redis: false });
    started.push(alone);
    const first = await readiness(alone.url);
    assert.equal(first.code, 200);
    assert.equal(first.checks.replicas, "ok");

    const second = await startDispatcher(beat, { redis: false, databaseUrl: alone.databaseUrl });
    started.push(second);
    for (const d of [alone, second]) {
      const r = await eventually("the memory replica is out of the load balancer", async () => {
        const now = await readiness(d.url);
        return now.code === 503 ? now : undefined;
      });
      assert.equal(r.status, "unavailable");
      assert.match(r.checks.replicas!, /1 other replica\(s\) use this database/);
      assert.match(r.checks.replicas!, /set REDIS_URL on every replica/);
    }

    // A replica with Redis keeps serving (it routes right for whatever reaches it) but says which one does not.
    const withRedis = await startDispatcher(beat, { databaseUrl: alone.databaseUrl });
    started.push(withRedis);
    const degraded = await readiness(withRedis.url);
    assert.equal(degraded.code, 200);
    assert.equal(degraded.status, "degraded");
    assert.match(degraded.checks.replicas!, /run without REDIS_URL on this database/);

    await withRedis.svc.close();
    await second.svc.close();
    started.splice(1);
    await eventually("the replica left alone is ready again", async () => (await readiness(alone.url)).code === 200);
  });
});
