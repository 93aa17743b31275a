import assert from "node:assert/strict";
import diagnostics from "node:diagnostics_channel";
import type { Socket } from "node:net";
import { after, before, test } from "node:test";
import type { Worker } from "node:worker_threads";
import { eventually } from "@opsplane/testing";
import { startSdk } from "../src/index.js";
import { netThread } from "../src/transport/net-thread.js";
import { appOptions, type Center, memoryLog, startCenter } from "./core-harness.js";

let center: Center;

before(async () => {
  center = await startCenter({ redis: true, env: { HEARTBEAT_INTERVAL_MS: "200" } });
});
after(() => center?.close());

test("the SDK's connections to config-center and Redis are opened by its network thread, not by the app's", async () => {
  const redisPort = Number(new URL(process.env.REDIS_URL ?? "redis://127.0.0.1:6379").port || 6379);
  // Every client connection this thread opens, by the port it connects to.
  const ports: number[] = [];
  const opened = (message: unknown) => {
    const { socket } = message as { socket: Socket };
    socket.once("connect", () => ports.push(socket.remotePort!));
  };
  const { options } = appOptions(center.url, { redisUrl: process.env.REDIS_URL, redisPrefix: center.redisPrefix, businessResyncMs: 200 });
  await center.put("business", options.appId, "uat", "loan.rates", { base: 3.5 });
  diagnostics.subscribe("net.client.socket", opened);
  const sdk = await startSdk(options);
  try {
    assert.equal(sdk.state, "joined");
    assert.deepEqual(await sdk.business.load("loan.rates"), { base: 3.5 }, "read through Redis");
    await eventually("the config socket open", () => sdk.connected);
    // A change pushed over the socket, and the resyncs through Redis meanwhile.
    await center.put("business", options.appId, "uat", "loan.rates", { base: 3.9 });
    await eventually("the pushed change applied", () => (sdk.business.get("loan.rates") as { base: number }).base === 3.9);
  } finally {
    diagnostics.unsubscribe("net.client.socket", opened);
    await sdk.close();
  }
  assert.deepEqual(
    ports.filter((p) => p === center.port || p === redisPort),
    [],
    "no connection to config-center or Redis from the app's thread",
  );
});

test("a network thread that dies is replaced: the socket reconnects, Redis reads and pushed changes work again, one line says why", async () => {
  const log = memoryLog();
  const { options } = appOptions(center.url, {
    redisUrl: process.env.REDIS_URL,
    redisPrefix: center.redisPrefix,
    businessResyncMs: 200,
    log,
  });
  await center.put("business", options.appId, "uat", "loan.rates", { base: 3.5 });
  const sdk = await startSdk(options);
  try {
    assert.deepEqual(await sdk.business.load("loan.rates"), { base: 3.5 }, "read through Redis");
    await eventually("the config socket open", () => sdk.connected);
    // The thread as the SDK holds it (private: nothing outside the SDK can reach it), stopped as a crash would.
    const worker = (netThread as unknown as { worker?: Worker }).worker;
    assert.ok(worker, "the network thread is running");
    await worker.terminate();
    await eventually("the loss logged", () => log.matching(/network thread stopped/).length > 0);
    await eventually(
      "the config socket open again, on a new thread",
      () => sdk.connected && (netThread as unknown as { worker?: Worker }).worker !== worker,
    );
    await center.put("business", options.appId, "uat", "loan.rates", { base: 4.1 });
    await eventually("the pushed change applied", () => (sdk.business.get("loan.rates") as { base: number }).base === 4.1);
    assert.deepEqual(await sdk.business.load("loan.rates"), { base: 4.1 }, "read through Redis again");
    assert.equal(sdk.state, "joined");
  } finally {
    await sdk.close();
  }
});
