import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { createPool } from "@opsplane/store";
import { eventually } from "@opsplane/testing";
import { Registry } from "prom-client";
import WebSocket, { WebSocketServer } from "ws";
import { ChangeLog } from "../src/change-log.js";
import { createConfigMetrics } from "../src/metrics.js";
import { InstanceSocket, PushHub } from "../src/push.js";
import { ResourceStore } from "../src/resources.js";
import { startCenters } from "./harness.js";

describe("the push hub on one replica", () => {
  let env: Awaited<ReturnType<typeof startCenters>>;
  let server: WebSocketServer;

  before(async () => {
    env = await startCenters(1, { redis: false });
    server = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    await new Promise((resolve) => server.once("listening", resolve));
  });
  after(async () => {
    for (const c of server.clients) c.terminate();
    await new Promise((resolve) => server.close(resolve));
    await env.close();
  });

  /** A real socket pair: the server side for the hub, the client side to read what it sends. */
  async function socketPair(): Promise<{ serverSide: WebSocket; received: Array<Record<string, unknown>> }> {
    const accepted = new Promise<WebSocket>((resolve) => server.once("connection", resolve));
    const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const received: Array<Record<string, unknown>> = [];
    client.on("message", (data) => received.push(JSON.parse(String(data)) as Record<string, unknown>));
    await new Promise((resolve) => client.once("open", resolve));
    return { serverSide: await accepted, received };
  }

  test("a live push newer than the catch-up, waiting while it was read, is sent right after it", async () => {
    const ctx = env.centers[0]!.ctx;
    // One connection, handed out first come first served: the cycle reads before the catch-up does.
    const pool = createPool(env.db.url, { schema: "config_center", applicationName: "push-hub-test", max: 1 });
    const hub = new PushHub({
      pool,
      resources: new ResourceStore(pool, new ChangeLog(ctx.bus), ctx.audit, undefined),
      metrics: createConfigMetrics(new Registry()),
      log: ctx.log,
      cycleMs: 3_600_000,
      inlineMaxBytes: 65_536,
      onAppChanged: () => {},
    });
    try {
      const { serverSide, received } = await socketPair();
      const identity = {
        instanceId: crypto.randomUUID(),
        appId: "loan",
        app: "loan",
        appVersion: "",
        env: "prod",
        labels: {},
        podName: "",
        podNamespace: "",
      };
      const s = new InstanceSocket(identity, serverSide);
      hub.add(s);
      const held = await pool.connect();
      hub.enqueue({
        version: 1_000,
        kind: "technical",
        app: "loan",
        env: "",
        key: "later",
        action: "set",
        graySelector: undefined,
        atMs: Date.now(),
        appState: "",
      });
      const cycled = hub.cycle();
      const caughtUp = hub.catchUp(s, 0);
      held.release();
      await cycled;
      await caughtUp;
      const [first, second] = await eventually("the catch-up and the push after it", () => (received.length >= 2 ? received : undefined));
      assert.equal(first!.catchUp, true);
      assert.equal(second!.version, 1_000);
      assert.equal(s.catchingUp, false);
      hub.remove(s);
    } finally {
      hub.close();
      await pool.end();
    }
  });
});
