import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startSdk } from "../src/index.js";
import { appOptions, type Center, call, startCenter } from "./core-harness.js";

describe("distributed locks and sequences through config-center (issue item 8)", () => {
  let center: Center;

  before(async () => {
    center = await startCenter({ redis: false });
  });
  after(() => center?.close());

  test("a lock: one holder at a time, visible at config-center, fencing tokens growing, releasable by an admin", async () => {
    const { options } = appOptions(center.url);
    const a = await startSdk(options);
    const b = await startSdk({ ...appOptions(center.url).options, appId: options.appId, secret: options.secret, hostName: "other-host" });
    try {
      const lease = await a.lock("loan.settlement").acquire({ leaseMs: 10_000 });
      assert.ok(lease, "a free lock is acquired");
      assert.ok(lease.held());

      const locks = await call(center.url, "GET", "/config/v1/locks", { role: "viewer" });
      const shown = locks.body.locks.find((l: { name: string }) => l.name === "loan.settlement");
      assert.equal(shown.state, "held");
      assert.match(shown.holder, new RegExp(`^${options.appId}/test-host:${process.pid}:`), "config-center shows which instance holds it");

      assert.equal(await b.lock("loan.settlement").acquire(), null, "another instance does not get it");
      // Waiting: it gets it once the holder releases.
      const waiting = b.lock("loan.settlement").acquire({ waitMs: 5_000 });
      assert.equal(await lease.release(), true);
      const second = await waiting;
      assert.ok(second);
      assert.ok(second.fencingToken > lease.fencingToken, "each acquisition has a higher fencing token");

      // An admin forces it free: the holder's release says it was no longer its lease.
      const forced = await call(center.url, "POST", "/config/v1/locks/force-release", { role: "admin", body: { name: "loan.settlement" } });
      assert.equal(forced.status, 200);
      assert.equal(await second.release(), false);

      const result = await a.lock("loan.settlement").withLock(async (l) => l.fencingToken);
      assert.ok(result > second.fencingToken);
      const after = await call(center.url, "GET", "/config/v1/locks", { role: "viewer" });
      assert.equal(after.body.locks.find((l: { name: string }) => l.name === "loan.settlement").state, "free", "withLock releases");
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("withLock keeps the lock while its work outlasts the lease, renewing it with the same fencing token", async () => {
    const { options } = appOptions(center.url);
    const a = await startSdk(options);
    const b = await startSdk({ ...appOptions(center.url).options, appId: options.appId, secret: options.secret, hostName: "other-host" });
    try {
      const outcome = await a.lock("long-job").withLock(
        async (lease) => {
          // Work lasting more than three leases, while another instance keeps trying to take the lock.
          // Leases of a second: a renewal (every third of one) may be late by most of a lease on a busy machine.
          const until = Date.now() + 3_200;
          while (Date.now() < until) if (await b.lock("long-job").acquire()) return "taken by another instance";
          const locks = await call(center.url, "GET", "/config/v1/locks", { role: "viewer" });
          const shown = locks.body.locks.find((l: { name: string }) => l.name === "long-job");
          return lease.held() && shown.fencingToken === lease.fencingToken ? "kept" : "lost";
        },
        { leaseMs: 1_000 },
      );
      assert.equal(outcome, "kept");
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("a lease runs out by the holder's clock no later than at config-center", async () => {
    const { options } = appOptions(center.url);
    const sdk = await startSdk(options);
    try {
      const lease = await sdk.lock("short").acquire({ leaseMs: 200 });
      assert.ok(lease);
      const locks = await call(center.url, "GET", "/config/v1/locks", { role: "viewer" });
      const serverExpiry = Date.parse(locks.body.locks.find((l: { name: string }) => l.name === "short").expiresAt);
      assert.ok(lease.expiresAt.getTime() <= serverExpiry + 50, "the local expiry is not later than config-center's");
    } finally {
      await sdk.close();
    }
  });

  test("locks need a token, not a registration: they work while the app is degraded", async () => {
    const { options } = appOptions(center.url);
    const first = await startSdk(options);
    await first.close();
    await call(center.url, "PUT", `/config/v1/apps/${options.appId}`, { role: "admin", body: { environments: ["sit"] } });
    const sdk = await startSdk(options);
    try {
      assert.equal(sdk.state, "degraded", "registration in uat is refused");
      const lease = await sdk.lock("degraded-lock").acquire();
      assert.ok(lease);
      assert.equal(await lease.release(), true);
    } finally {
      await sdk.close();
    }
  });

  test("a sequence: formatted values, one request per block, unique under concurrency", async () => {
    const { options } = appOptions(center.url);
    const put = await call(center.url, "PUT", "/config/v1/sequences/loan-no", {
      role: "admin",
      body: { pattern: "LN{yyyy}{seq:6}", cacheSize: 5, apps: [options.appId] },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const sdk = await startSdk(options);
    try {
      const seq = sdk.sequence("loan-no");
      const first = await seq.next();
      assert.match(first, /^LN\d{4}000001$/);
      const concurrent = await Promise.all(Array.from({ length: 12 }, () => seq.next()));
      const all = [first, ...concurrent];
      assert.equal(new Set(all).size, 13, "no value handed out twice");
      assert.deepEqual(
        all.map((v) => Number(v.slice(-6))).sort((x, y) => x - y),
        Array.from({ length: 13 }, (_, i) => i + 1),
      );
      // 13 values from blocks of 5: three blocks drawn, so config-center's counter stands at 15.
      const listed = await call(center.url, "GET", "/config/v1/sequences", { role: "viewer" });
      assert.equal(listed.body.sequences.find((s: { name: string }) => s.name === "loan-no").current, 15);
    } finally {
      await sdk.close();
    }
  });

  test("a sequence the app is not listed for: next() rejects with config-center's reason", async () => {
    const { options } = appOptions(center.url);
    await call(center.url, "PUT", "/config/v1/sequences/other-apps", {
      role: "admin",
      body: { pattern: "X{seq}", apps: ["someone-else"] },
    });
    const sdk = await startSdk(options);
    try {
      await assert.rejects(sdk.sequence("other-apps").next(), /refused .*\(403\)/);
    } finally {
      await sdk.close();
    }
  });
});
