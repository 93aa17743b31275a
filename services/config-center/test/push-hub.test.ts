import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { ConfigChangedSchema, toEventData, topics } from "@opsplane/contracts";
import { createPool } from "@opsplane/store";
import { eventually } from "@opsplane/testing";
import { Registry } from "prom-client";
import WebSocket, { WebSocketServer } from "ws";
import { ChangeLog } from "../src/change-log.js";
import { createConfigMetrics } from "../src/metrics.js";
import { InstanceSocket, PushHub } from "../src/push.js";
import { ResourceStore } from "../src/resources.js";
import { call, Instance, startCenters } from "./harness.js";

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

  /** A hub of this replica's on a pool of one connection, so a test can hold that connection to order the hub's reads. */
  function hubOnOneConnection() {
    const ctx = env.centers[0]!.ctx;
    const pool = createPool(env.db.url, { schema: "config_center", applicationName: "push-hub-test", max: 1 });
    const hub = new PushHub({
      pool,
      resources: new ResourceStore(pool, new ChangeLog(ctx.bus), ctx.audit, undefined),
      metrics: createConfigMetrics(new Registry()),
      log: ctx.log,
      cycleMs: 3_600_000,
      inlineMaxBytes: 65_536,
      replica: "test-replica",
      onAppChanged: () => {},
    });
    return { pool, hub };
  }

  /** A fresh prod instance of the loan app. */
  const identity = () => ({
    instanceId: crypto.randomUUID(),
    appId: "loan",
    app: "loan",
    appVersion: "",
    env: "prod",
    labels: {},
    podName: "",
    podNamespace: "",
  });

  test("a live push newer than the catch-up, waiting while it was read, is sent right after it", async () => {
    // One connection, handed out first come first served: the cycle reads before the catch-up does.
    const { pool, hub } = hubOnOneConnection();
    try {
      const { serverSide, received } = await socketPair();
      const s = new InstanceSocket(identity(), serverSide);
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
        appState: "",
        connection: 0,
        replica: "",
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

  test("an app change closes the sockets checked before it arrived, not one whose handshake began after (it holds the new access)", async () => {
    const { pool, hub } = hubOnOneConnection();
    try {
      const before = await socketPair();
      const checkedBefore = new InstanceSocket(identity(), before.serverSide, Date.now() - 1_000);
      hub.add(checkedBefore);
      hub.enqueue({
        version: 0,
        kind: "app",
        app: "loan",
        env: "",
        key: "",
        action: "update",
        graySelector: undefined,
        appState: "environments",
        connection: 0,
        replica: "",
      });
      // A handshake that began after the change arrived, connected before the next cycle ran.
      const after = await socketPair();
      const checkedAfter = new InstanceSocket(identity(), after.serverSide, Date.now() + 1);
      hub.add(checkedAfter);
      const closed = new Promise<number>((resolve) => before.serverSide.once("close", resolve));
      await hub.cycle();
      assert.equal(await closed, 4001);
      assert.equal(after.serverSide.readyState, after.serverSide.OPEN, "the socket checked after the change stays open");
    } finally {
      hub.close();
      await pool.end();
    }
  });

  test("push latency is timed on the pushing replica's clock, whatever the committing replica's clock says", async () => {
    const base = env.urls[0]!;
    const i = await Instance.start(base, { appId: "loan", secret: "loan-secret-0123" });
    const set = await call(base, "PUT", "/config/v1/items/technical/loan/_/clock", { role: "operator", body: { value: 1 } });
    await i.until("technical", "clock", (c) => c.value === 1);
    const latency = async () => {
      const metrics = await (await fetch(`${base}/metrics`)).text();
      const read = (part: string) =>
        Number(new RegExp(`config_center_push_latency_seconds_${part}\\{service="config-center"\\} (\\S+)`).exec(metrics)![1]);
      return { sum: read("sum"), count: read("count") };
    };
    const before = await eventually("the acknowledgement timed", async () => {
      const l = await latency();
      return l.count >= 1 ? l : undefined;
    });
    // The same key's change as a replica whose clock is an hour behind would publish it.
    await env.centers[0]!.ctx.bus.publish({
      topic: topics.configChanged.name,
      type: topics.configChanged.type,
      key: "config",
      data: toEventData(
        topics.configChanged,
        create(ConfigChangedSchema, {
          version: BigInt(set.body.version + 1_000),
          kind: "technical",
          app: "loan",
          key: "clock",
          action: "set",
          atMs: BigInt(Date.now() - 3_600_000),
        }),
      ),
    });
    const after = await eventually("the second acknowledgement timed", async () => {
      const l = await latency();
      return l.count > before.count ? l : undefined;
    });
    assert.ok(after.sum - before.sum < 60, `push took ${after.sum - before.sum} s by the metric: another replica's clock was used`);
    i.close();
  });

  test("a newer connection announced by another replica closes the socket (4009); one announced by this replica does not", async () => {
    const base = env.urls[0]!;
    const i = await Instance.start(base, { appId: "loan", secret: "loan-secret-0123" });
    const announce = (replica: string) =>
      env.centers[0]!.ctx.bus.publish({
        topic: topics.configChanged.name,
        type: topics.configChanged.type,
        key: "config",
        data: toEventData(
          topics.configChanged,
          create(ConfigChangedSchema, { kind: "instance", app: "loan", key: i.instanceId, connection: 999n, replica }),
        ),
      });
    // This replica's own sockets are replaced as they are added: a connection abandoned during its
    // handshake, numbered after the socket that replaced it, must not close that socket.
    await announce("replica-0");
    await call(base, "PUT", "/config/v1/items/technical/loan/_/after-own", { role: "operator", body: { value: 1 } });
    await i.until("technical", "after-own", (c) => c.value === 1);
    assert.equal(i.closed, undefined, "the socket stays open");
    await announce("replica-elsewhere");
    const closed = await i.whenClosed();
    assert.equal(closed.code, 4009);
  });
});
