import assert from "node:assert/strict";
import { test } from "node:test";
import { closeRedis, createLogger } from "@opsplane/platform";
import { eventually, logLines, proxiedUrl, testRedis } from "@opsplane/testing";
import { Redis } from "ioredis";
import { redisRegistry } from "../src/redis-registry.js";
import { startDispatcher } from "./helpers/dispatcher.js";
import { dropPrefix } from "./helpers/pay-route.js";

// An SRE reads this log during the outage: one warning says Redis is being warmed again and why, not one a second.
test("Redis cut off after a missed registration: the failed warms are logged once at warn, the warm that succeeds at info with their count", async () => {
  const { destination, lines } = logLines<{ level: number; msg: string; failedAttempts?: number }>();
  const log = createLogger("t", "debug", destination);
  const warmFailures = () => lines.filter((l) => l.msg.startsWith("registry: warming Redis from the record failed"));
  const shared = testRedis();
  const { proxy, url } = await proxiedUrl(shared.url, 6379);
  // The dispatcher owns the schema (migrations, the environment sit); the registry under test shares its database.
  const d = await startDispatcher({}, { redis: false });
  const client = new Redis(url, { maxRetriesPerRequest: 0 });
  client.on("error", () => {});
  const registry = await redisRegistry({
    pool: d.svc.ctx.pool,
    redis: client,
    prefix: shared.prefix,
    timeoutMs: 50,
    recordTimeoutMs: 2_000,
    warmCheckMs: 50,
    schema: "callback_dispatcher",
    log,
  });
  try {
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: "http://127.0.0.1:9" })).status, 200);
    await eventually("the first warm", () => lines.some((l) => l.msg === "registry: Redis warmed from the PostgreSQL record"));
    proxy.blackhole();
    // Written to the record, missed by Redis: every check now tries to warm Redis again, and fails.
    await registry.register({ env: "sit", registeredBy: "test", items: [{ rule: "pay", id: "P-1", ttlSeconds: 600 }] }, async () => {});
    await eventually("ten failed warms", () => warmFailures().length >= 10, 20_000);
    const warnings = warmFailures().filter((l) => l.level === 40);
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.equal(warnings[0]!.msg, "registry: warming Redis from the record failed; retrying every REGISTRY_WARM_CHECK_MS");

    proxy.heal();
    const warmed = await eventually("the warm after the outage", () =>
      lines.find((l) => l.msg === "registry: Redis warmed from the PostgreSQL record" && l.failedAttempts),
    );
    assert.ok(warmed.failedAttempts! >= 10, `failed attempts counted: ${warmed.failedAttempts}`);
    assert.equal((await registry.lookup("pay", "P-1"))?.env, "sit");
  } finally {
    await registry.close();
    await closeRedis(client);
    await d.close();
    await proxy.close();
    await dropPrefix(shared.url, shared.prefix);
  }
});
