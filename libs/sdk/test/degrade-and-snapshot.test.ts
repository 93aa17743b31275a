import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { eventually, freePort } from "@opsplane/testing";
import { startSdk } from "../src/index.js";
import { appOptions, type Center, startCenter, startFront } from "./core-harness.js";

describe("degraded start (step 6) and the local snapshot", () => {
  let center: Center;
  let dir: string;

  before(async () => {
    center = await startCenter({ redis: true });
    dir = await mkdtemp(join(tmpdir(), "sdk-snapshot-"));
  });
  after(async () => {
    await center?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("config-center unreachable: starts on local configuration, then joins in the background and fires the rebuild hooks", async () => {
    const front = await startFront(center.port);
    front.set("refuse");
    const { options, log } = appOptions(front.url, { localConfig: { "pool.size": 2, "db.url": "postgres://local" } });
    await center.put("technical", options.appId, "uat", "pool.size", 8);
    const started = Date.now();
    const sdk = await startSdk(options);
    try {
      assert.equal(sdk.state, "degraded");
      assert.ok(Date.now() - started < 4_000 + 1_500, `start-up took ${Date.now() - started} ms; the bound is startupTimeoutMs`);
      assert.equal(sdk.config.get("pool.size"), 2, "local configuration while degraded");
      assert.equal(sdk.instanceId, undefined);
      assert.equal(log.matching(/started on local configuration, joining in the background/).length, 1);

      const rebuilt: Array<[unknown, unknown]> = [];
      sdk.config.onChange("pool.size", (value, previous) => {
        rebuilt.push([value, previous]);
      });
      // Retries fail the same way: still one line.
      await eventually("a few more attempts", () => log.lines.length >= 1 && Date.now() - started > 5_500, 10_000, 100);
      assert.equal(log.lines.filter((l) => l.level !== "debug" && l.level !== "info").length, 1, JSON.stringify(log.lines));
      await assert.rejects(sdk.business.load("rate-table"), /not registered with config-center/, "no source answers: load says why");

      front.set("pass");
      await eventually("joined in the background", () => sdk.state === "joined");
      assert.equal(sdk.config.get("pool.size"), 8);
      assert.deepEqual(rebuilt, [[8, 2]], "the rebuild hook ran once with the new and the old value");
      assert.equal(sdk.config.get("db.url"), "postgres://local", "keys config-center lacks keep the local value");
      await eventually("online at config-center", async () => (await center.instances(options.appId))[0]?.state === "online");
    } finally {
      await sdk.close();
      await front.close();
    }
  });

  test("config-center stopped mid-run: the app keeps serving on what it has, promptly", async () => {
    const front = await startFront(center.port);
    const { options, log } = appOptions(front.url);
    await center.put("technical", options.appId, "uat", "greeting", "hello");
    const sdk = await startSdk(options);
    const server = http.createServer(sdk.http((_req, res) => res.end(String(sdk.config.get("greeting")))));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hello`;
    try {
      front.set("silent");
      front.dropConnections();
      for (let i = 0; i < 20; i++) {
        const started = Date.now();
        const res = await fetch(url);
        assert.equal(await res.text(), "hello");
        assert.ok(Date.now() - started < 500, "no request waits on config-center");
      }
      await eventually("the outage noticed", () => log.matching(/config socket/).length >= 1, 5_000);
      assert.equal(
        log.lines.filter((l) => l.level === "warn" || l.level === "error").length,
        1,
        JSON.stringify(log.lines.map((l) => l.msg)),
      );
    } finally {
      server.close();
      await sdk.close();
      await front.close();
    }
  });

  test("config-center answering garbage: degraded, one line naming what came back", async () => {
    const front = await startFront(center.port);
    front.set("garbage");
    const { options, log } = appOptions(front.url, { startupTimeoutMs: 1_500 });
    const sdk = await startSdk(options);
    try {
      assert.equal(sdk.state, "degraded");
      await eventually("another attempt failed", () => log.lines.length >= 1);
      const problems = log.lines.filter((l) => l.level === "warn" || l.level === "error");
      assert.equal(problems.length, 1, JSON.stringify(problems));
      front.set("pass");
      await eventually("joined once config-center answers properly", () => sdk.state === "joined");
      assert.equal(
        log.matching(/not a token answer/).length + log.matching(/started on local configuration/).length >= 1,
        true,
        JSON.stringify(log.lines),
      );
    } finally {
      await sdk.close();
      await front.close();
    }
  });

  test("config-center silent (accepts, never answers): start-up is bounded by startupTimeoutMs", async () => {
    const front = await startFront(center.port);
    front.set("silent");
    const { options } = appOptions(front.url, { startupTimeoutMs: 1_500, requestTimeoutMs: 5_000 });
    const started = Date.now();
    const sdk = await startSdk(options);
    try {
      const took = Date.now() - started;
      assert.equal(sdk.state, "degraded");
      assert.ok(took >= 1_400 && took < 3_000, `start-up took ${took} ms`);
    } finally {
      await sdk.close();
      await front.close();
    }
  });

  test("a refused registration degrades at once, without its terminal, and joins when the environment is granted", async () => {
    const terminalPort = await freePort();
    const { options, log } = appOptions(center.url, { env: "prod", terminalPort });
    // Claim the app and give it only uat: its prod instance is refused (403 naming the environment).
    const first = await startSdk({ ...options, env: "uat" });
    await first.close();
    const granted = await center.admin("PUT", `/config/v1/apps/${options.appId}`, { environments: ["uat"] });
    assert.equal(granted.status, 200);
    const started = Date.now();
    const sdk = await startSdk(options);
    try {
      assert.equal(sdk.state, "degraded");
      assert.ok(Date.now() - started < 2_000, "a refusal does not wait for the start-up timeout");
      // Seed step 6: a failed registration stops the terminal service.
      await assert.rejects(fetch(`http://127.0.0.1:${terminalPort}/opsplane/v1/status`));
      await center.admin("PUT", `/config/v1/apps/${options.appId}`, { environments: ["uat", "prod"] });
      await eventually("joined after the grant", () => sdk.state === "joined");
      assert.equal((await fetch(`http://127.0.0.1:${terminalPort}/opsplane/v1/status`)).status, 401, "the terminal listens again");
      assert.ok(log.matching(/prod/).length >= 1, "the refusal is logged naming the environment");
    } finally {
      await sdk.close();
    }
  });

  test("a restart during an outage starts on the snapshot of the last good configuration", async () => {
    const front = await startFront(center.port);
    const { options } = appOptions(front.url, { snapshotDir: dir, localConfig: { "pool.size": 1 } });
    await center.put("technical", options.appId, "uat", "db.password", "s3cr3t-value");
    await center.put("technical", options.appId, "uat", "pool.size", 16);
    await center.put("business", options.appId, "", "bank-codes", { "102100099996": "ICBC" }, { startup: true });
    await center.put("governance", options.appId, "", "rate-limit/loan.apply", { tps: 5 });

    const sdk = await startSdk(options);
    assert.equal(sdk.state, "joined");
    const { version } = await center.put("technical", options.appId, "uat", "pool.size", 32);
    await eventually("the pushed change", () => sdk.config.get("pool.size") === 32);
    await sdk.close();

    const file = join(dir, `${options.appId}.uat.snapshot`);
    const info = await stat(file);
    assert.equal(info.mode & 0o777, 0o600, "only the app's user may read it");
    const bytes = await readFile(file);
    assert.ok(!bytes.includes("s3cr3t-value"), "resolved secrets are sealed, not in clear on disk");
    assert.ok(!bytes.includes("ICBC"));

    // Keep-alive connections from before the outage go too.
    front.set("refuse");
    front.dropConnections();
    const { options: again, log } = appOptions(front.url, {
      appId: options.appId,
      secret: options.secret,
      snapshotDir: dir,
      localConfig: { "pool.size": 1 },
      startupTimeoutMs: 1_000,
    });
    const restarted = await startSdk(again);
    try {
      assert.equal(restarted.state, "degraded");
      assert.equal(restarted.config.get("pool.size"), 32, "the last pushed value, from the snapshot");
      assert.equal(restarted.config.get("db.password"), "s3cr3t-value");
      assert.deepEqual(restarted.business.get("bank-codes"), { "102100099996": "ICBC" });
      assert.equal(restarted.version, version);
      assert.equal(log.matching(/started on the snapshot of version/).length, 1);
    } finally {
      await restarted.close();
      await front.close();
    }
  });

  test("a snapshot that cannot be written is one line, and the app goes on", async () => {
    const notADir = join(dir, "a-file");
    await writeFile(notADir, "");
    const { options, log } = appOptions(center.url, { snapshotDir: notADir });
    const sdk = await startSdk(options);
    try {
      await center.put("technical", options.appId, "uat", "k", 1);
      await eventually("the change", () => sdk.config.get("k") === 1);
      await center.put("technical", options.appId, "uat", "k", 2);
      await eventually("the second change", () => sdk.config.get("k") === 2);
      assert.equal(sdk.state, "joined");
      assert.equal(log.matching(/snapshot .* not written/).length, 1, JSON.stringify(log.lines.map((l) => l.msg)));
    } finally {
      await sdk.close();
    }
  });

  test("a corrupt or foreign snapshot is ignored with one line, and start-up goes on on local configuration", async () => {
    const front = await startFront(center.port);
    front.set("refuse");
    const { options, log } = appOptions(front.url, { snapshotDir: dir, localConfig: { mode: "local" }, startupTimeoutMs: 800 });
    const file = join(dir, `${options.appId}.uat.snapshot`);

    await writeFile(file, Buffer.from("OPSNAP1 this is not a sealed snapshot at all, just bytes"));
    const corrupt = await startSdk(options);
    assert.equal(corrupt.state, "degraded");
    assert.equal(corrupt.config.get("mode"), "local");
    assert.equal(log.matching(/snapshot .* ignored/).length, 1);
    await corrupt.close();

    // Another app's snapshot (sealed with its secret) put in this app's place.
    const other = appOptions(center.url, { snapshotDir: dir });
    const otherSdk = await startSdk(other.options);
    await center.put("technical", other.options.appId, "uat", "mode", "other-app");
    await eventually("the other app's change", () => otherSdk.config.get("mode") === "other-app");
    await otherSdk.close();
    await writeFile(file, await readFile(join(dir, `${other.options.appId}.uat.snapshot`)));
    const { options: o2, log: log2 } = appOptions(front.url, { ...options, log: undefined, snapshotDir: dir });
    const foreign = await startSdk({ ...o2, appId: options.appId, secret: options.secret, log: log2 });
    try {
      assert.equal(foreign.state, "degraded");
      assert.equal(foreign.config.get("mode"), "local", "another app's configuration is never used");
      assert.equal(log2.matching(/snapshot .* ignored: it does not open/).length, 1);
    } finally {
      await foreign.close();
      await front.close();
    }
  });
});
