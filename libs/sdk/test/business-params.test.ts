import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually, freePort } from "@opsplane/testing";
import { Redis } from "ioredis";
import { centerDb } from "../../../services/config-center/test/harness.js";
import { startSdk } from "../src/index.js";
import { appOptions, type Center, call, startCenter, startFront } from "./core-harness.js";

// Every key of a prefix but one (ARGV[2]) at once, as eviction loses them (never FLUSHDB: Redis is shared).
const deleteAllOfPrefixBut =
  "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do if k ~= ARGV[2] then redis.call('DEL', k) n = n + 1 end end return n";

describe("business parameters: local cache, Redis central cache, pushes and resync", () => {
  let center: Center;
  let redis: Redis;
  let prefix: string;

  before(async () => {
    center = await startCenter({ redis: true, env: { PUSH_INLINE_MAX_BYTES: "200" } });
    prefix = center.redisPrefix!;
    redis = new Redis(process.env.REDIS_URL!);
  });
  after(async () => {
    redis?.disconnect();
    await center?.close();
  });

  const withRedis = (extra = {}) =>
    appOptions(center.url, { redisUrl: process.env.REDIS_URL, redisPrefix: prefix, businessResyncMs: 300, ...extra });

  test("load reads the central cache, the most specific of the four scopes winning", async () => {
    const { options } = withRedis();
    await center.put("business", "", "", "channels", ["shared"]);
    await center.put("business", options.appId, "", "channels", ["app"]);
    await center.put("business", options.appId, "uat", "channels", ["app-uat"]);
    await center.put("business", "", "uat", "holidays", ["shared-uat"]);
    // Only in Redis (config-center would answer "missing"): proves where load reads.
    await redis.set(`${prefix}biz:*:*:only-in-redis`, JSON.stringify({ revision: 1, category: "custom", value: "from redis" }));
    const sdk = await startSdk(options);
    try {
      assert.equal(sdk.business.get("channels"), undefined, "not a start-up value: unknown until loaded");
      assert.deepEqual(await sdk.business.load("channels"), ["app-uat"]);
      assert.deepEqual(sdk.business.get("channels"), ["app-uat"], "cached after the load");
      assert.deepEqual(await sdk.business.load("holidays"), ["shared-uat"]);
      assert.equal(await sdk.business.load("only-in-redis"), "from redis");
      assert.equal(await sdk.business.load("no-such-parameter"), undefined);
      // An unknown key the app asked for is watched: once it exists, the push brings it.
      await center.put("business", options.appId, "", "no-such-parameter", "now it exists");
      await eventually("the new parameter", () => sdk.business.get("no-such-parameter") === "now it exists");
    } finally {
      await sdk.close();
    }
  });

  test("pushed changes update the cache and run the listeners; values too large to push are read from Redis", async () => {
    const { options } = withRedis();
    await center.put("business", options.appId, "", "rate-table", { base: 3.1 }, { startup: true });
    const sdk = await startSdk(options);
    try {
      assert.deepEqual(sdk.business.get("rate-table"), { base: 3.1 });
      const calls: Array<[unknown, unknown]> = [];
      sdk.business.onChange("rate-table", (value, previous) => {
        calls.push([value, previous]);
      });
      await center.put("business", options.appId, "", "rate-table", { base: 3.4 });
      await eventually("the pushed value", () => calls.length === 1);
      assert.deepEqual(calls[0], [{ base: 3.4 }, { base: 3.1 }]);
      assert.deepEqual(sdk.business.get("rate-table"), { base: 3.4 });

      const big = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`10210009${String(i).padStart(4, "0")}`, `Bank branch ${i}`]));
      await center.put("business", options.appId, "", "rate-table", big);
      await eventually("the large value, fetched", () => calls.length === 2);
      assert.deepEqual(sdk.business.get("rate-table"), big);

      await center.remove("business", options.appId, "", "rate-table");
      await eventually("the deletion", () => calls.length === 3);
      assert.equal(sdk.business.get("rate-table"), undefined);
    } finally {
      await sdk.close();
    }
  });

  test("a missed push heals at the next resync (the central cache's version moved)", async () => {
    const { options, log } = withRedis();
    await center.put("business", options.appId, "", "bank-codes", { "102": "ICBC" }, { startup: true });
    const sdk = await startSdk(options);
    try {
      const calls: unknown[] = [];
      sdk.business.onChange("bank-codes", (value) => {
        calls.push(value);
      });
      // What a push would have brought, written where config-center writes it, without the push.
      await redis.set(
        `${prefix}biz:${options.appId}:*:bank-codes`,
        JSON.stringify({ revision: 99, category: "custom", value: { "102": "ICBC", "103": "ABC" } }),
      );
      await redis.incr(`${prefix}biz:version`);
      await eventually("the resync", () => calls.length === 1);
      assert.deepEqual(sdk.business.get("bank-codes"), { "102": "ICBC", "103": "ABC" });
      assert.equal(log.lines.filter((l) => l.level === "warn" || l.level === "error").length, 0, JSON.stringify(log.lines));
    } finally {
      await sdk.close();
    }
  });

  test("a gray value for this instance is not replaced by the released value at resync", async () => {
    const { options } = withRedis({ labels: { canary: "yes" } });
    await center.put("business", options.appId, "", "limits", { max: 100 }, { startup: true });
    const sdk = await startSdk(options);
    try {
      const gray = await call(center.url, "POST", `/config/v1/gray/business/${options.appId}/_/limits`, {
        role: "operator",
        body: { value: { max: 500 }, selector: { labels: { canary: "yes" } } },
      });
      assert.equal(gray.status, 200, JSON.stringify(gray.body));
      await eventually("the gray value", () => (sdk.business.get("limits") as { max: number }).max === 500);
      await redis.incr(`${prefix}biz:version`);
      const until = Date.now() + 1_000;
      await eventually("a few resyncs", () => Date.now() > until);
      assert.deepEqual(sdk.business.get("limits"), { max: 500 });
    } finally {
      await sdk.close();
    }
  });

  test("an empty central cache (no version) is not taken as every value deleted", async () => {
    const { options } = withRedis({ redisPrefix: "nothing-written-here:" });
    await center.put("business", options.appId, "", "fees", { late: 30 });
    const sdk = await startSdk(options);
    try {
      assert.deepEqual(await sdk.business.load("fees"), { late: 30 }, "what Redis lacks comes from config-center");
      const until = Date.now() + 1_000;
      await eventually("a few resyncs", () => Date.now() > until);
      assert.deepEqual(sdk.business.get("fees"), { late: 30 });
    } finally {
      await sdk.close();
    }
  });

  test("central cache keys lost (eviction, a flush of the prefix): values stay until config-center says they are gone", async () => {
    // A config-center of its own: its Redis prefix is emptied, which the other tests' must not be.
    const own = await startCenter({ redis: true });
    const { options } = appOptions(own.url, { redisUrl: process.env.REDIS_URL, redisPrefix: own.redisPrefix, businessResyncMs: 300 });
    await own.put("business", options.appId, "", "rate-table", { base: 3.1 }, { startup: true });
    await own.put("business", options.appId, "", "feature", "on");
    await own.put("business", options.appId, "", "retired", "old");
    await own.put("business", "", "", "limits", { max: 100 });
    await own.put("business", options.appId, "", "limits", { max: 500 });
    const sdk = await startSdk(options);
    const db = await centerDb(own.centers.db.url);
    try {
      assert.equal(await sdk.business.load("feature"), "on");
      assert.equal(await sdk.business.load("retired"), "old");
      assert.deepEqual(await sdk.business.load("limits"), { max: 500 });
      const told: unknown[] = [];
      for (const key of ["rate-table", "feature", "limits"])
        sdk.business.onChange(key, (value) => {
          told.push([key, value]);
        });

      // biz:version survives, so no resync runs until it moves (without it they would all ask config-center).
      const deleted = (await redis.eval(deleteAllOfPrefixBut, 0, `${own.redisPrefix}*`, `${own.redisPrefix}biz:version`)) as number;
      assert.ok(deleted > 0, "the values were in Redis before");
      // A deletion whose push this instance missed: only config-center knows it is gone.
      await db.query("DELETE FROM items WHERE kind = 'business' AND key = 'retired'");
      // Any business write moves biz:version; Redis now holds the shared limits and nothing of the app's.
      // The resync that follows is the only way this instance can learn that `retired` is gone.
      await own.put("business", "", "", "limits", { max: 120 });

      await eventually("the resync dropping the deleted value", () => sdk.business.get("retired") === undefined);
      assert.deepEqual(sdk.business.get("rate-table"), { base: 3.1 });
      assert.equal(sdk.business.get("feature"), "on");
      assert.deepEqual(sdk.business.get("limits"), { max: 500 }, "the app's own value, not the shared one left in Redis");
      assert.deepEqual(told, []);
    } finally {
      await db.end();
      await sdk.close();
      await own.close();
    }
  });

  test("without Redis, values come from config-center", async () => {
    const { options } = appOptions(center.url);
    await center.put("business", "", "", "dictionary/gender", { M: "male", F: "female" });
    const sdk = await startSdk(options);
    try {
      assert.deepEqual(await sdk.business.load("dictionary/gender"), { M: "male", F: "female" });
      await center.put("business", "", "", "dictionary/gender", { M: "male", F: "female", X: "unspecified" });
      await eventually("the pushed change", () => (sdk.business.get("dictionary/gender") as Record<string, string>).X === "unspecified");
    } finally {
      await sdk.close();
    }
  });

  test("Redis that accepts connections and never answers: a read goes to config-center at once, not after the command timeout", async () => {
    const silent = await startFront(0);
    silent.set("silent");
    // A minute for every call, so a read queued until Redis is ready (or the timeout) cannot answer in time.
    const { options } = withRedis({ redisUrl: `redis://${new URL(silent.url).host}`, requestTimeoutMs: 60_000 });
    await center.put("business", options.appId, "", "fees", { late: 30 });
    const sdk = await startSdk(options);
    try {
      const answer = await Promise.race([
        sdk.business.load("fees"),
        new Promise((resolve) => setTimeout(() => resolve("still waiting after 15 s"), 15_000).unref()),
      ]);
      assert.deepEqual(answer, { late: 30 });
    } finally {
      await sdk.close();
      await silent.close();
    }
  });

  test("Redis down: reads go to config-center, one line says so", async () => {
    const { options, log } = withRedis({ redisUrl: `redis://127.0.0.1:${await freePort()}` });
    await center.put("business", options.appId, "", "fees", { late: 25 });
    const sdk = await startSdk(options);
    try {
      assert.deepEqual(await sdk.business.load("fees"), { late: 25 });
      await eventually("a resync or two", () => log.matching(/Redis business cache unavailable/).length >= 1);
      const until = Date.now() + 1_000;
      await eventually("more resyncs", () => Date.now() > until);
      assert.equal(log.matching(/Redis business cache unavailable/).length, 1, JSON.stringify(log.lines.map((l) => l.msg)));
    } finally {
      await sdk.close();
    }
  });
});
