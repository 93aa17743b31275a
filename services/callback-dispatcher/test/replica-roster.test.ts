import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { operatorKey, startDispatcher } from "./helpers/dispatcher.js";

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

// Issue 16, item 5, continued: out of the load balancer, such a replica could still be reached by an agent
// (configured with its address): it answered 200, and the replicas with Redis never saw those registrations.
describe("a replica without Redis beside another refuses registrations while it is not ready", () => {
  const beat = { REPLICA_HEARTBEAT_MS: "100" };
  let alone: Awaited<ReturnType<typeof startDispatcher>>;
  let second: Awaited<ReturnType<typeof startDispatcher>> | undefined;
  after(async () => {
    await second?.svc.close();
    await alone?.close();
  });

  const register = (d: Awaited<ReturnType<typeof startDispatcher>>, id: string) =>
    fetch(`${d.url}/_dispatcher/v1/registrations`, {
      method: "POST",
      headers: { authorization: `Bearer ${operatorKey}`, "content-type": "application/json" },
      body: JSON.stringify({ env: "sit", registrations: [{ rule: "pay", id }] }),
    });

  test("503 naming the reason /readyz gives, nothing stored; registrations taken again once alone", async () => {
    alone = await startDispatcher(beat, { redis: false });
    for (const [name, production] of [
      ["prod", true],
      ["sit", false],
    ] as const)
      assert.equal(
        (await alone.api("PUT", `/_dispatcher/v1/environments/${name}`, { baseUrl: `http://${name}.invalid`, production })).status,
        200,
      );
    const rule = await alone.api("PUT", "/_dispatcher/v1/rules/pay", {
      interface: { pattern: "/api/pay", id: { kind: "json", expr: "orderNo" } },
      callback: { pattern: "/notify/pay", id: { kind: "json", expr: "orderNo" } },
      ttlSeconds: 600,
    });
    assert.equal(rule.status, 200, JSON.stringify(rule.body));
    second = await startDispatcher(beat, { redis: false, databaseUrl: alone.databaseUrl });
    for (const d of [second, alone]) {
      const reason = await eventually("the memory replica is out of the load balancer", async () => {
        const now = await readiness(d.url);
        return now.code === 503 ? now.checks.replicas : undefined;
      });
      const res = await register(d, "CONFLICT-1");
      const body = (await res.json()) as { error: string; message: string };
      assert.equal(res.status, 503, JSON.stringify(body));
      assert.equal(res.headers.get("retry-after"), "5");
      assert.equal(body.error, "unavailable");
      assert.equal(body.message, `registrations not stored on this replica: ${reason}`);
    }
    const stored = await alone.api("GET", "/_dispatcher/v1/registrations/pay/CONFLICT-1");
    assert.deepEqual([stored.body.env, stored.body.registeredBy], [null, null]);

    await second.svc.close();
    second = undefined;
    await eventually("the replica left alone is ready again", async () => (await readiness(alone.url)).code === 200);
    const res = await register(alone, "CONFLICT-1");
    assert.deepEqual([res.status, await res.json()], [200, { registered: 1, ignoredRules: [] }]);
  });
});
