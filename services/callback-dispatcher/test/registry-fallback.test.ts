import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, test } from "node:test";
import { eventually, freePort } from "@opsplane/testing";
import { Redis } from "ioredis";
import { startDispatcher } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

// A Redis of this test's own, so it can be stopped mid-test without touching anyone else's.
async function startPrivateRedis(port: number) {
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore",
  });
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    await exited;
  };
  const url = `redis://127.0.0.1:${port}`;
  try {
    await eventually("private redis", async () => {
      // The port was free when picked but may have been taken since: then this server exits, and we say so.
      if (proc.exitCode !== null) throw new Error(`redis-server on port ${port} exited (${proc.exitCode}); port taken?`);
      const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      r.on("error", () => {});
      try {
        await r.connect();
        return (await r.ping()) === "PONG";
      } finally {
        r.disconnect();
      }
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, stop };
}

let redis: Awaited<ReturnType<typeof startPrivateRedis>> | undefined;
let d: Awaited<ReturnType<typeof startDispatcher>> | undefined;
let prod: Awaited<ReturnType<typeof startSignedStub>> | undefined;
let sit: Awaited<ReturnType<typeof startSignedStub>> | undefined;

before(async () => {
  redis = await startPrivateRedis(await freePort());
  prod = await startSignedStub("prod", "s");
  sit = await startSignedStub("sit", "s");
  d = await startDispatcher({ REDIS_URL: redis.url, REDIS_KEY_PREFIX: "fallback:" });
  await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true });
  await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url });
  await d.api("PUT", "/_dispatcher/v1/rules/pay", {
    interface: { pattern: "/api/pay", id: { kind: "json", expr: "orderNo" } },
    callback: { pattern: "/notify/pay", id: { kind: "json", expr: "orderNo" } },
    ttlSeconds: 600,
  });
  assert.equal(
    (await d.api("POST", "/_dispatcher/v1/registrations", { env: "sit", registrations: [{ rule: "pay", id: "R1" }] })).status,
    200,
  );
});

// Whatever happened above, nothing is left running: the service closes even with its Redis gone.
after(async () => {
  await d?.close();
  await redis?.stop();
  await prod?.close();
  await sit?.close();
});

test("with Redis gone, lookups fall back to the PostgreSQL record and the callback still reaches sit", async () => {
  await redis!.stop();
  const body = Buffer.from('{"orderNo":"R1"}');
  const res = await fetch(`${d!.url}/notify/pay`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-signature": sign("s", body) },
    body,
  });
  assert.equal(res.status, 200);
  assert.ok(sit!.received.some((r) => r.url === "/notify/pay" && r.body.equals(body)));
});

test("with Redis still gone, the service shuts down (its Redis client does not wait for a reconnection)", async () => {
  const svc = d!;
  d = undefined;
  await svc.close();
  const res = await fetch(`${svc.url}/healthz`).catch((err: Error) => err);
  assert.ok(res instanceof Error, "nothing listens any more");
});
