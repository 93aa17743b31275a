import assert from "node:assert/strict";
import net from "node:net";
import os from "node:os";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import Fastify from "fastify";
import { SdkRefusedError, startSdk } from "../src/index.js";
import { appOptions, type Center, call, startCenter } from "./core-harness.js";

describe("start-up against a real config-center (steps 1-12)", () => {
  let center: Center;

  before(async () => {
    center = await startCenter({
      redis: true,
      env: { TOKEN_FAILURE_LIMIT: "2", TOKEN_FAILURE_WINDOW_SECONDS: "2", HEARTBEAT_INTERVAL_MS: "300", HEARTBEAT_TIMEOUT_MS: "1500" },
    });
  });
  after(() => center?.close());

  test("joins: registered and online, metadata above local configuration, resources reported", async () => {
    const { options, log } = appOptions(center.url, {
      labels: { zone: "a" },
      appVersion: "1.4.0",
      localConfig: { "db.pool": 5, "db.url": "postgres://local", "feature.x": true },
      resources: {
        interfaces: [{ code: "loan.apply", method: "POST", path: "/loans", description: "apply for a loan" }],
        jobs: [{ code: "nightly", cron: "0 2 * * *" }],
      },
    });
    // The app's own items exist before it starts (it gets its record on its first token).
    await center.put("technical", options.appId, "uat", "db.url", "postgres://center/loans");
    await center.put("business", "", "", "rates", { base: 3.5 }, { startup: true });
    const sdk = await startSdk(options);
    let terminalPort = 0;
    try {
      assert.equal(sdk.state, "joined");
      assert.ok(sdk.instanceId);
      assert.equal(sdk.config.get("db.url"), "postgres://center/loans", "config-center's value is above local configuration");
      assert.equal(sdk.config.get("db.pool"), 5, "local configuration fills what config-center lacks");
      assert.equal(sdk.config.get("missing", "fallback"), "fallback");
      assert.deepEqual(sdk.business.get("rates"), { base: 3.5 }, "start-up business values are cached");
      assert.ok(sdk.version > 0);

      const [instance] = await eventually("the instance online at config-center", async () => {
        const list = await center.instances(options.appId);
        return list[0]?.state === "online" ? list : undefined;
      });
      assert.equal(instance.instanceId, sdk.instanceId);
      assert.equal(instance.env, "uat");
      assert.equal(instance.hostName, "test-host");
      assert.equal(instance.ip, "10.1.2.3");
      assert.equal(instance.servicePort, 8080);
      assert.deepEqual(instance.labels, { zone: "a" });
      assert.equal(instance.appVersion, "1.4.0");
      assert.match(instance.startParams["sdk.version"], /^\d+\.\d+\.\d+/);
      // Step 3: the terminal listens on the registered port (unsigned requests are refused, so it answers 401).
      assert.ok(instance.sdkPort > 0);
      assert.equal((await fetch(`http://127.0.0.1:${instance.sdkPort}/opsplane/v1/status`)).status, 401);
      terminalPort = instance.sdkPort;

      const reported = async () => {
        const r = await call(center.url, "GET", `/config/v1/apps/${options.appId}/resources`, { role: "viewer" });
        return (r.body.resources ?? []) as Array<{ kind: string; resource: { code: string; path?: string } }>;
      };
      const resources = await eventually("the resources report", async () => ((await reported()).length ? reported() : undefined));
      assert.deepEqual(
        resources.map((r) => [r.kind, r.resource.code, r.resource.path]),
        [
          ["interface", "loan.apply", "/loans"],
          ["job", "nightly", undefined],
        ],
      );

      // Resources declared later are reported again.
      sdk.declare({ queues: [{ code: "loan.events", topic: "loan-events" }] });
      await eventually("the queue reported", async () =>
        (await reported()).some((r) => r.kind === "queue" && r.resource.code === "loan.events"),
      );
      assert.equal(log.matching(/not joined|degraded/).length, 0, "nothing went wrong");
    } finally {
      await sdk.close();
    }
    // Graceful close: the socket closed, config-center marks the instance offline at once; the terminal is gone.
    await eventually("the instance offline after close", async () => (await center.instances(options.appId))[0]?.state === "offline");
    await assert.rejects(fetch(`http://127.0.0.1:${terminalPort}/opsplane/v1/status`));
  });

  test("the routes the adapters saw are reported beside the declared resources", async () => {
    const { options } = appOptions(center.url, { resources: { interfaces: [{ code: "loan.apply", description: "declared" }] } });
    const sdk = await startSdk(options);
    const app = Fastify();
    try {
      await app.register(sdk.fastify());
      app.post("/loans", { config: { opsplane: { code: "loan.apply" } } }, async () => ({ ok: true }));
      app.get("/loans/:id", async () => ({ ok: true }));
      await app.ready();
      const reported = await eventually("the fastify routes reported", async () => {
        const r = await call(center.url, "GET", `/config/v1/apps/${options.appId}/resources`, { role: "viewer" });
        const list = (r.body.resources ?? []) as Array<{ kind: string; resource: { code: string; path?: string; description?: string } }>;
        return list.length === 2 ? list : undefined;
      });
      assert.deepEqual(
        reported.map((r) => [r.resource.code, r.resource.path, r.resource.description]),
        [
          ["get.loans.id", "/loans/:id", undefined],
          ["loan.apply", undefined, "declared"],
        ],
        "a declared resource wins over the route seen with its code",
      );
    } finally {
      await app.close();
      await sdk.close();
    }
  });

  test("keeps the instance online with heartbeats beyond config-center's heartbeat timeout", async () => {
    const { options } = appOptions(center.url);
    const sdk = await startSdk(options);
    try {
      const first = await eventually("online", async () => (await center.instances(options.appId)).find((i) => i.state === "online"));
      // Three heartbeat timeouts (1.5 s each) without a missed beat.
      const until = Date.now() + 4_500;
      await eventually(
        "4.5 s to pass while online",
        async () => {
          const [i] = await center.instances(options.appId);
          assert.equal(i.state, "online", "the instance went offline: heartbeats stopped");
          return Date.now() > until;
        },
        10_000,
        250,
      );
      const [now] = await center.instances(options.appId);
      assert.equal(now.instanceId, first.instanceId);
      assert.ok(now.lastHeartbeatAt > first.lastHeartbeatAt, "heartbeats are recorded");
    } finally {
      await sdk.close();
    }
  });

  test("terminalHost 127.0.0.1 keeps the terminal to the host; by default it listens on every interface", async () => {
    const external = Object.values(os.networkInterfaces())
      .flat()
      .find((a) => a?.family === "IPv4" && !a.internal)?.address;
    const reaches = (host: string, port: number) =>
      new Promise<boolean>((resolve) => {
        const socket = net.connect(port, host, () => resolve(!!socket.end()));
        socket.on("error", () => resolve(false));
      });
    for (const terminalHost of ["127.0.0.1", undefined]) {
      const { options } = appOptions(center.url, { terminalHost });
      const sdk = await startSdk(options);
      try {
        const port = (await center.instances(options.appId))[0].sdkPort as number;
        assert.equal(await reaches("127.0.0.1", port), true);
        if (external) assert.equal(await reaches(external, port), terminalHost === undefined, `${terminalHost} via ${external}`);
      } finally {
        await sdk.close();
      }
    }
  });

  test("a terminal port already taken: one error line, and the app joins without a terminal", async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, r));
    const { options, log } = appOptions(center.url, { terminalPort: (taken.address() as net.AddressInfo).port });
    const sdk = await startSdk(options);
    try {
      assert.equal(sdk.state, "joined");
      assert.equal(log.matching(/terminal service not started \(listen EADDRINUSE/).length, 1);
      assert.equal((await center.instances(options.appId))[0].sdkPort, 0, "no terminal port registered");
    } finally {
      await sdk.close();
      taken.close();
    }
  });

  test("a refused app does not start: startSdk rejects with config-center's reason", async () => {
    const { options } = appOptions(center.url);
    // The first caller claims the id with its secret; another secret is refused.
    const sdk = await startSdk(options);
    await sdk.close();
    const started = Date.now();
    await assert.rejects(startSdk({ ...options, secret: "not-the-secret" }), (err: unknown) => {
      assert.ok(err instanceof SdkRefusedError);
      assert.equal(err.status, 401);
      assert.match(err.message, /wrong app id or secret/);
      return true;
    });
    assert.ok(Date.now() - started < 3_000, "a refusal is answered at once, not after the start-up timeout");
  });

  test("a throttled token request (429) waits for Retry-After, then joins", async () => {
    const { options } = appOptions(center.url);
    const first = await startSdk(options);
    await first.close();
    // Two failed requests reach TOKEN_FAILURE_LIMIT: the right secret is throttled too until the 2 s window ends.
    for (let i = 0; i < 2; i++)
      await call(center.url, "POST", "/config/v1/token", { body: { appId: options.appId, secret: "wrong-secret" } });
    const throttled = await call(center.url, "POST", "/config/v1/token", { body: { appId: options.appId, secret: options.secret } });
    assert.equal(throttled.status, 429, "the test needs the app id throttled");
    const retryAfterMs = Number(throttled.headers.get("retry-after")) * 1000;

    const started = Date.now();
    const sdk = await startSdk({ ...options, retryBaseMs: 10, retryMaxMs: 20 });
    try {
      assert.equal(sdk.state, "joined");
      // With a 10-20 ms backoff it would have asked about a hundred times meanwhile; Retry-After kept it to one wait.
      assert.ok(Date.now() - started >= Math.min(retryAfterMs, 1_000) - 300, `joined after ${Date.now() - started} ms`);
      const metrics = await (await fetch(`${center.url}/metrics`)).text();
      const refusals = Number(/config_center_registration_refusals_total\{[^}]*reason="throttled"[^}]*\} (\d+)/.exec(metrics)?.[1] ?? 0);
      assert.ok(refusals <= 3, `throttled token requests: ${refusals}`);
    } finally {
      await sdk.close();
    }
  });
});
