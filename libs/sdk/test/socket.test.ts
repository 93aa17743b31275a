import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { eventually, startCuttableProxy } from "@opsplane/testing";
import WebSocket, { WebSocketServer } from "ws";
import { startCenters } from "../../../services/config-center/test/harness.js";
import { signTerminalRequest, startSdk } from "../src/index.js";
import { appOptions, type Center, call, startCenter, startFront, terminalKey } from "./core-harness.js";

const fastHeartbeats = { HEARTBEAT_INTERVAL_MS: "200", HEARTBEAT_TIMEOUT_MS: "1000" };

describe("the config socket against a real config-center", () => {
  let center: Center;

  before(async () => {
    center = await startCenter({ redis: false, env: fastHeartbeats });
  });
  after(() => center?.close());

  test("a pushed technical change is applied, its rebuild hooks run one after another, then it is acknowledged", async () => {
    const { options, log } = appOptions(center.url, { localConfig: { "db.url": "postgres://local", limit: 1 } });
    await center.put("technical", options.appId, "uat", "db.url", "postgres://a");
    const sdk = await startSdk(options);
    try {
      const seen: string[] = [];
      sdk.config.onChange<string>("db.url", async (value, previous) => {
        seen.push(`first start ${previous} -> ${value} (get: ${sdk.config.get("db.url")})`);
        // A turn of the event loop: the second hook must still wait for this one to end.
        await new Promise((r) => setImmediate(r));
        seen.push("first end");
      });
      sdk.config.onChange("db.url", () => {
        seen.push("second");
        throw new Error("pool did not reconnect");
      });
      sdk.config.onChange("db.url", () => {
        seen.push("third");
      });
      const { version } = await center.put("technical", options.appId, "uat", "db.url", "postgres://b");
      await eventually("the hooks", () => seen.length === 4);
      assert.deepEqual(seen, ["first start postgres://a -> postgres://b (get: postgres://b)", "first end", "second", "third"]);
      assert.equal(sdk.config.get("db.url"), "postgres://b", "a failing hook does not undo the change");
      assert.equal(log.matching(/rebuild hook for db.url failed: pool did not reconnect/).length, 1);
      await eventually("the acknowledgement", async () => (await center.instances(options.appId))[0]?.ackedVersion >= version);

      // Deleted at config-center: the local value again, and the hooks are told.
      await center.remove("technical", options.appId, "uat", "db.url");
      await eventually("the local value back", () => sdk.config.get("db.url") === "postgres://local");
      await eventually("the hooks again", () => seen.length === 8);
      assert.equal(seen[4], "first start postgres://b -> postgres://local (get: postgres://local)");
    } finally {
      await sdk.close();
    }
  });

  test("a hook that never finishes does not hold later changes back", async () => {
    const { options, log } = appOptions(center.url, { hookTimeoutMs: 300 });
    const sdk = await startSdk(options);
    try {
      sdk.config.onChange("stuck", () => new Promise(() => {}));
      await center.put("technical", options.appId, "uat", "stuck", 1);
      await eventually("the first change", () => sdk.config.get("stuck") === 1);
      await center.put("technical", options.appId, "uat", "after", 2);
      await eventually("the later change", () => sdk.config.get("after") === 2);
      assert.equal(log.matching(/rebuild hook for stuck still running after 300 ms/).length, 1);
    } finally {
      await sdk.close();
    }
  });

  test("a dropped connection reconnects with its version and gets what it missed", async () => {
    const front = await startFront(center.port);
    const { options, log } = appOptions(front.url);
    const sdk = await startSdk(options);
    try {
      front.set("refuse");
      front.dropConnections();
      const { version } = await center.put("technical", options.appId, "uat", "missed", "while away");
      await eventually("the drop noticed", () => log.matching(/config socket/).length > 0);
      front.set("pass");
      await eventually("the missed change caught up", () => sdk.config.get("missed") === "while away");
      assert.equal(sdk.version >= version, true);
      assert.equal(sdk.state, "joined");
      // One line for the outage, however many attempts it took.
      assert.equal(log.matching(/config socket/).filter((l) => l.level === "warn").length, 1, JSON.stringify(log.lines));
    } finally {
      await sdk.close();
      await front.close();
    }
  });

  test("a socket down tells the truth: connected false at once, degraded after the heartbeat timeout, joined when back", async () => {
    const front = await startFront(center.port);
    const { options, log } = appOptions(front.url, { terminalHost: "127.0.0.1" });
    const sdk = await startSdk(options);
    const status = async () => {
      const { terminalPort, instanceId } = {
        terminalPort: (await center.instances(options.appId))[0]!.sdkPort,
        instanceId: sdk.instanceId!,
      };
      const path = "/opsplane/v1/status";
      const headers = signTerminalRequest({
        method: "GET",
        path,
        body: "",
        instanceId,
        keyId: "test",
        privateKey: terminalKey.privateKeyPem,
      });
      return (await (await fetch(`http://127.0.0.1:${terminalPort}${path}`, { headers })).json()) as Record<string, unknown>;
    };
    try {
      await eventually("connected", () => sdk.connected);
      assert.equal(sdk.state, "joined");
      assert.deepEqual([(await status()).state, (await status()).connected], ["joined", true]);

      front.set("refuse");
      front.dropConnections();
      await eventually("the drop seen", () => !sdk.connected);
      await eventually("degraded once down longer than the heartbeat timeout (1 s)", () => sdk.state === "degraded", 10_000);
      const down = await status();
      assert.equal(down.state, "degraded");
      assert.equal(down.connected, false);
      assert.ok((down.disconnectedForMs as number) >= 1_000, JSON.stringify(down));
      assert.equal(log.matching(/config socket down for 1000 ms: degraded/).length, 1);

      front.set("pass");
      await eventually("joined again", () => sdk.connected && sdk.state === "joined", 10_000);
      const up = await status();
      assert.deepEqual([up.state, up.connected, up.disconnectedForMs], ["joined", true, undefined]);
    } finally {
      await sdk.close();
      await front.close();
    }
  });

  test("a connection gone silent (no pongs) is replaced once config-center answers again", async () => {
    const proxy = await startCuttableProxy("127.0.0.1", center.port);
    const { options, log } = appOptions(`http://127.0.0.1:${proxy.port}`);
    const sdk = await startSdk(options);
    try {
      // Silenced once it is up: cut while still connecting (a loaded CI machine), it never went silent, it never came.
      await eventually("connected", () => sdk.connected);
      proxy.blackhole();
      await eventually("the silence noticed", () => log.matching(/nothing from config-center for 1000 ms/).length === 1, 5_000);
      proxy.heal();
      await center.put("technical", options.appId, "uat", "after-silence", true);
      await eventually("changes flowing again", () => sdk.config.get("after-silence") === true, 10_000);
    } finally {
      await sdk.close();
      await proxy.close();
    }
  });

  test("4001 (environments changed): a new token and a new connection", async () => {
    const { options, log } = appOptions(center.url);
    const sdk = await startSdk(options);
    try {
      await eventually("online", async () => (await center.instances(options.appId))[0]?.state === "online");
      const r = await center.admin("PUT", `/config/v1/apps/${options.appId}`, { environments: ["uat", "sit"] });
      assert.equal(r.status, 200);
      await eventually("the close seen", () => log.matching(/closed \(4001/).length === 1);
      await center.put("technical", options.appId, "uat", "after-4001", "yes");
      await eventually("changes flowing on the new connection", () => sdk.config.get("after-4001") === "yes");
      assert.equal(sdk.state, "joined");
    } finally {
      await sdk.close();
    }
  });

  test("4009 (a newer connection of this instance): reconnects once; replaced again within a minute, stops and says so", async () => {
    const { options, log } = appOptions(center.url);
    const sdk = await startSdk(options);
    const token = (await call(center.url, "POST", "/config/v1/token", { body: { appId: options.appId, secret: options.secret } })).body
      .token;
    const open = () =>
      new WebSocket(`${center.url.replace("http", "ws")}/config/v1/instances/${sdk.instanceId}/socket?version=0`, {
        headers: { "x-config-token": token },
      });
    // Another process with this instance id: its first connection is taken back at once (a 4009 can be
    // a replica's out-of-order announcement), the second makes the SDK give way.
    const first = open();
    const firstClosed = new Promise<number>((resolve) => first.once("close", resolve));
    let second: WebSocket | undefined;
    let pinger: NodeJS.Timeout | undefined;
    try {
      assert.equal(await firstClosed, 4009, "the SDK reconnected and replaced the other connection");
      assert.equal(log.matching(/closed for good/).length, 0);
      second = open();
      // The other process heartbeats as an instance does: the center (1 s timeout here) keeps it open.
      pinger = setInterval(() => second?.readyState === WebSocket.OPEN && second.send('{"t":"ping"}'), 200);
      await eventually("the stop seen", () => log.matching(/closed for good \(4009\)/).length === 1);
      assert.equal(sdk.state, "degraded");
      const quiet = Date.now() + 1_000;
      await eventually("a second to pass", () => Date.now() > quiet);
      assert.equal(second.readyState, WebSocket.OPEN, "no reconnection fights the newer connection");
      assert.equal(log.matching(/closed for good/).length, 1);
    } finally {
      clearInterval(pinger);
      first.close();
      second?.close();
      await sdk.close();
    }
  });

  test("4003 (app disabled): stops reconnecting, keeps serving on what it has, says so once", async () => {
    const { options, log } = appOptions(center.url, { localConfig: { kept: "local" } });
    await center.put("technical", options.appId, "uat", "kept", "from center");
    const sdk = await startSdk(options);
    try {
      await eventually("online", async () => (await center.instances(options.appId))[0]?.state === "online");
      await center.admin("PUT", `/config/v1/apps/${options.appId}`, { enabled: false });
      await eventually("the close seen", () => log.matching(/closed for good \(4003\)/).length === 1);
      assert.equal(sdk.state, "degraded");
      assert.equal(sdk.config.get("kept"), "from center", "the configuration in use stays");
      // Enabled again: no connection comes back by itself (the protocol: stop retrying); a restart joins.
      await center.admin("PUT", `/config/v1/apps/${options.appId}`, { enabled: true });
      const quiet = Date.now() + 1_000;
      await eventually("a second to pass", () => Date.now() > quiet);
      assert.equal((await center.instances(options.appId))[0]?.state, "offline");
      assert.equal(log.matching(/4003/).length, 1);
    } finally {
      await sdk.close();
    }
  });
});

describe("1001: config-center shutting down", () => {
  test("reconnects at once (to another replica), not after the backoff", async () => {
    const centers = await startCenters(2, { redis: false, env: fastHeartbeats });
    const [a, b] = centers.centers as [(typeof centers.centers)[0], (typeof centers.centers)[0]];
    const front = await startFront(Number(new URL(a.url).port));
    // A backoff this long would show: only the "at once" path reconnects within the assertion's time.
    const { options, log } = appOptions(front.url, { retryBaseMs: 20_000, retryMaxMs: 20_000 });
    const sdk = await startSdk(options);
    try {
      front.retarget(Number(new URL(b.url).port));
      const closing = a.close();
      await eventually("the going-away close seen", () => log.matching(/closed \(1001/).length === 1);
      await closing;
      const r = await fetch(`${b.url}/config/v1/items/technical/${options.appId}/uat/after-1001`, {
        method: "PUT",
        headers: { "content-type": "application/json", authorization: "Bearer operator-key-0123456789abcdef" },
        body: JSON.stringify({ value: 1 }),
      });
      assert.equal(r.status, 200);
      await eventually("the change through replica B", () => sdk.config.get("after-1001") === 1, 5_000).catch((err: Error) => {
        throw new Error(`${err.message}; the SDK logged ${JSON.stringify(log.lines.map((l) => l.msg))}`);
      });
    } finally {
      await sdk.close();
      await front.close();
      await b.close();
      await centers.db.drop();
    }
  });
});

/**
 * A stand-in config-center speaking the instance protocol, for what the real one never sends: its
 * socket messages are the test's, and its first handshake may be refused with `firstHandshake`.
 */
async function startStandIn(o: { firstHandshake?: number } = {}) {
  const acks: number[] = [];
  let registrations = 0;
  let tokens = 0;
  let handshakes = 0;
  let send: (text: string | Buffer) => void = () => {};
  let lastToken = "";
  const server = http.createServer((req, res) => {
    const json = (status: number, body: unknown) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    req.resume();
    const url = req.url ?? "";
    if (url === "/config/v1/token")
      return json(200, { token: `t${++tokens}`, appId: "x", expiresAt: new Date(Date.now() + 60_000).toISOString() });
    if (url === "/config/v1/instances") {
      const id = `i-${++registrations}`;
      return json(201, {
        instanceId: id,
        heartbeatIntervalMs: 1_000,
        heartbeatTimeoutMs: 5_000,
        socketPath: `/config/v1/instances/${id}/socket`,
      });
    }
    if (url.endsWith("/metadata"))
      return json(200, {
        version: 10,
        technical: [{ kind: "technical", key: "db.password", app: "x", env: "uat", revision: 1, value: "old-password" }],
        business: [],
        governance: [],
      });
    if (url.endsWith("/resources")) return json(200, {});
    json(404, { error: "not_found", message: url });
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on("upgrade", (req, socket, head) => {
    if (++handshakes === 1 && o.firstHandshake) {
      socket.end(`HTTP/1.1 ${o.firstHandshake} Refused\r\ncontent-length: 0\r\n\r\n`);
      return;
    }
    lastToken = String(req.headers["x-config-token"]);
    wss.handleUpgrade(req, socket, head, (ws) => {
      send = (text) => ws.send(text);
      ws.on("message", (data) => {
        const m = JSON.parse(String(data)) as { t: string; version?: number };
        if (m.t === "ack") acks.push(m.version!);
      });
      wss.emit("connection", ws, req);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    acks,
    wss,
    registrations: () => registrations,
    tokens: () => tokens,
    lastToken: () => lastToken,
    send: (text: string | Buffer) => send(text),
    async close() {
      wss.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

describe("a stand-in config-center", () => {
  test("messages that are not the protocol's are logged once each and ignored; valid ones applied and acknowledged; an `error` value keeps the old one", async () => {
    const standIn = await startStandIn();
    const { options, log } = appOptions(standIn.url);
    const sdk = await startSdk(options);
    try {
      await eventually("the socket open", () => standIn.wss.clients.size === 1);
      const garbage = [
        "not json at all",
        "not json at all, again",
        '["an array"]',
        '{"t":"surprise"}',
        '{"t":"changes","changes":[]}',
        '{"t":"changes","version":11,"changes":[{"kind":"technical"}]}',
        Buffer.from([0xff, 0xfe, 0x00]),
      ];
      for (const g of garbage) standIn.send(g);
      standIn.send(
        JSON.stringify({
          t: "changes",
          version: 12,
          changes: [
            { kind: "technical", key: "db.password", app: "x", env: "uat", revision: 2, error: "secret key k9 is not in SECRET_KEYS" },
            { kind: "technical", key: "pool.size", app: "x", env: "uat", revision: 1, value: 9 },
          ],
        }),
      );
      await eventually("the valid message acknowledged", () => standIn.acks.includes(12));
      assert.deepEqual(standIn.acks, [12], "only the valid message is acknowledged");
      assert.equal(sdk.config.get("pool.size"), 9);
      assert.equal(sdk.config.get("db.password"), "old-password", "an unresolvable value keeps the one in use");
      assert.equal(log.matching(/could not resolve technical value db.password/).length, 1);
      const ignored = log.matching(/ignored a message/);
      // One line per kind of garbage: "not JSON" twice is one line.
      assert.equal(ignored.length, 6, JSON.stringify(ignored.map((l) => l.msg)));
      assert.equal(sdk.state, "joined");
    } finally {
      await sdk.close();
      await standIn.close();
    }
  });

  test("a handshake refused with 401 (token expired) gets a new token and connects with it", async () => {
    const standIn = await startStandIn({ firstHandshake: 401 });
    const { options } = appOptions(standIn.url);
    const sdk = await startSdk(options);
    try {
      await eventually("connected", () => standIn.wss.clients.size === 1);
      assert.equal(standIn.tokens(), 2);
      assert.equal(standIn.lastToken(), "t2");
      assert.equal(standIn.registrations(), 1, "the same instance");
    } finally {
      await sdk.close();
      await standIn.close();
    }
  });

  test("a handshake refused with 404 (unknown instance) registers again", async () => {
    const standIn = await startStandIn({ firstHandshake: 404 });
    const { options, log } = appOptions(standIn.url);
    const sdk = await startSdk(options);
    try {
      await eventually("registered again", () => standIn.registrations() === 2);
      await eventually("connected as the new instance", () => standIn.wss.clients.size === 1 && sdk.instanceId === "i-2");
      await eventually("joined again", () => sdk.state === "joined");
      assert.equal(log.matching(/refused \(404\)/).length, 1);
    } finally {
      await sdk.close();
      await standIn.close();
    }
  });
});
