import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { after, describe, test } from "node:test";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { type SelfTestReport, SelfTestReportSchema } from "@opsplane/contracts";
import { eventually } from "@opsplane/testing";
import { Redis } from "ioredis";
import pg from "pg";
import type { RequestObserver } from "../src/contracts.js";
import { createLogger } from "../src/logger.js";
import { Reporter, staggerDelay } from "../src/reports/reporter.js";
import { InterfaceStats } from "../src/stats/interface-stats.js";
import { ioredisPool, pgPool, undiciPool, workerPool } from "../src/stats/pools.js";

const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

function captureLog() {
  const lines: Array<{ level: string; msg: string }> = [];
  return { lines, log: createLogger("debug", (l) => lines.push(JSON.parse(l))) };
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const close = (server: http.Server) => new Promise<void>((r) => server.close(() => r()));

/** The app: answers /fast at once, /slow/<ms> after that long, /fail with a 500; every request timed into `observer` under its route code. */
function app(observer: RequestObserver): http.Server {
  return http.createServer((req, res) => {
    const start = performance.now();
    const code = req.url!.startsWith("/slow") ? "loan.query" : req.url === "/fail" ? "loan.repay" : "loan.apply";
    res.on("finish", () =>
      observer.requestFinished(code, { statusCode: res.statusCode, failed: res.statusCode >= 500, durationMs: performance.now() - start }),
    );
    if (req.url === "/fail") return res.writeHead(500).end("broken");
    const due = start + (req.url!.startsWith("/slow/") ? Number(req.url!.slice(6)) : 0);
    // A timer may fire up to a millisecond before its delay by performance.now() (it counts from the
    // event loop's cached clock): wait again until the delay has passed by the clock that times the request.
    const answer = () => {
      const left = due - performance.now();
      if (left > 0) setTimeout(answer, left);
      else res.writeHead(200).end("ok");
    };
    answer();
  });
}

/** Stands in for monitor-center: decodes each POSTed report with the generated schema. */
async function startMonitor(status = 204) {
  const reports: SelfTestReport[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      reports.push(fromJson(SelfTestReportSchema, JSON.parse(Buffer.concat(chunks).toString()) as JsonValue));
      res.writeHead(status).end();
    });
  });
  return { url: `${await listen(server)}/reports`, reports, server };
}

describe("self-test reports", () => {
  const cleanup: Array<() => Promise<unknown> | unknown> = [];
  after(async () => {
    for (const fn of cleanup.reverse()) await fn();
  });

  test("a report POSTed as proto JSON carries the counts and latency buckets of real requests, the runtime and the app's pools", async () => {
    const stats = new InterfaceStats({
      thresholds: { default: { normalMs: 100 }, byCode: { "loan.query": { normalMs: 40, tolerableMs: 150, maxQps: 50 } } },
    });
    stats.track(["loan.declared"]);
    const server = app(stats);
    const base = await listen(server);
    cleanup.push(() => close(server));
    const monitor = await startMonitor();
    cleanup.push(() => close(monitor.server));

    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
    cleanup.push(() => pool.end());
    const redis = new Redis(REDIS_URL);
    cleanup.push(() => redis.quit());
    const agent = new (await import("undici")).Agent({ connections: 3 });
    cleanup.push(() => agent.close());
    const { log } = captureLog();
    const reporter = new Reporter({
      app: "loan",
      env: "sit",
      instanceId: () => "loan-1",
      stats,
      log,
      url: monitor.url,
      intervalMs: 60_000,
    });
    reporter.addPool(pgPool(pool, "loans-db"));
    reporter.addPool(ioredisPool(redis, { max: 100 }));
    reporter.addPool(undiciPool(agent, { name: "bank-api", max: 3 }));
    reporter.addPool(workerPool({ name: "scoring", max: 8, used: () => 3, waiting: () => 1 }));
    reporter.addPool({
      name: "broken",
      kind: "worker",
      read: () => {
        throw new Error("probe exploded");
      },
    });

    for (let i = 0; i < 5; i++) assert.equal((await fetch(`${base}/fast`)).status, 200);
    await Promise.all([fetch(`${base}/slow/0`), fetch(`${base}/slow/80`), fetch(`${base}/slow/300`)]);
    assert.equal((await fetch(`${base}/fail`)).status, 500);
    // Block the event loop: the report shows the delay.
    const blockedUntil = Date.now() + 150;
    while (Date.now() < blockedUntil);
    // While the report is built: one database connection checked out, one Redis command and one
    // call through the undici agent awaiting their answers.
    const client = await pool.connect();
    cleanup.push(() => client.release());
    const blocked = redis.blpop("opsplane-sdk-test:never", 2);
    const call = agent.request({ origin: base, path: "/slow/1000", method: "GET" });
    await eventually("the agent's call under way", () => undiciPool(agent, { max: 3 }).read().used === 1);

    await reporter.stop(true);
    const [report] = await eventually("the report at monitor-center", () => monitor.reports.length > 0 && monitor.reports);
    assert.equal(report!.app, "loan");
    assert.equal(report!.env, "sit");
    assert.equal(report!.instanceId, "loan-1");
    assert.equal(report!.sequence, 1n);
    assert.ok(report!.intervalMs > 0n);
    assert.match(report!.sdkVersion, /^\d+\.\d+\.\d+/);

    const byCode = Object.fromEntries(report!.interfaces.map((i) => [i.code, i]));
    assert.deepEqual(Object.keys(byCode).sort(), ["loan.apply", "loan.declared", "loan.query", "loan.repay"]);
    const apply = byCode["loan.apply"]!;
    assert.equal(apply.requests, 5n);
    assert.equal(apply.errors, 0n);
    assert.equal(apply.withinNormal, 5n);
    assert.equal(apply.normalThresholdMs, 100);
    assert.equal(apply.tolerableThresholdMs, 400, "tolerable defaults to 4× normal");
    assert.ok(apply.qps > 0 && apply.throughputRps === apply.qps);
    const query = byCode["loan.query"]!;
    assert.equal(query.requests, 3n);
    assert.deepEqual(
      [query.withinNormal, query.withinTolerable, query.beyond],
      [1n, 1n, 1n],
      "0 ms normal, 80 ms tolerable, 300 ms beyond",
    );
    assert.equal(query.maxQps, 50);
    assert.ok(query.latencyMaxMs >= 300);
    assert.ok(query.latencySumMs >= 380);
    const repay = byCode["loan.repay"]!;
    assert.equal(repay.requests, 1n);
    assert.equal(repay.errors, 1n);
    assert.equal(repay.errorRate, 1);
    assert.equal(repay.throughputRps, 0);
    assert.equal(byCode["loan.declared"]!.requests, 0n);

    const rt = report!.runtime!;
    assert.ok(rt.cpuUserUs > 0n && rt.cpuShare > 0);
    assert.ok(rt.cpuCores >= 1);
    assert.ok(rt.eventLoopUtilization > 0 && rt.eventLoopUtilization <= 1);
    assert.ok(rt.eventLoopDelayMaxMs >= 100, `event-loop delay max ${rt.eventLoopDelayMaxMs} ms after blocking it 150 ms`);
    assert.ok(rt.heapUsedBytes > 0n && rt.heapLimitBytes > rt.heapUsedBytes);
    assert.ok(rt.rssBytes > 0n);

    const pools = Object.fromEntries(report!.pools.map((p) => [p.name, p]));
    const use = (name: string) => [pools[name]!.kind, pools[name]!.used, pools[name]!.max, pools[name]!.waiting];
    assert.deepEqual(use("loans-db"), ["connection", 1, 4, 0]);
    assert.deepEqual(use("redis"), ["connection", 1, 100, 0]);
    assert.deepEqual(use("bank-api"), ["connection", 1, 3, 0]);
    assert.deepEqual([pools.scoring!.kind, pools.scoring!.used, pools.scoring!.max, pools.scoring!.waiting], ["worker", 3, 8, 1]);
    assert.equal(pools.broken!.error, "probe exploded");
    await blocked;
    await (await call).body.text();
  });

  test("each report covers the window since the previous one and keeps the last for the terminal", async () => {
    const stats = new InterfaceStats();
    const { log } = captureLog();
    const reporter = new Reporter({ app: "loan", env: "sit", instanceId: () => "loan-2", stats, log });
    assert.equal(reporter.last(), undefined);
    stats.requestFinished("loan.apply", { statusCode: 200, failed: false, durationMs: 3 });
    stats.requestFinished("loan.apply", { statusCode: 429, failed: false, durationMs: 0 }, "rate-limited");
    const first = reporter.build();
    const apply = first.interfaces.find((i) => i.code === "loan.apply")!;
    assert.equal(apply.requests, 1n);
    assert.deepEqual(apply.governance, { "rate-limited": 1n });
    const second = reporter.build();
    assert.equal(second.sequence, 2n);
    assert.equal(second.interfaces.find((i) => i.code === "loan.apply")!.requests, 0n);
    const kept = fromJson(SelfTestReportSchema, reporter.lastJson()!);
    assert.equal(kept.sequence, 2n);
  });

  test("an idle instance reports an event-loop delay near 0, not the delay sampler's 20 ms resolution", async () => {
    const { log } = captureLog();
    const reporter = new Reporter({ app: "loan", env: "sit", instanceId: () => "loan-3", stats: new InterfaceStats(), log });
    // Counts the 20 ms delay samples the window under test holds (the reporter's sampler keeps its own).
    const samples = monitorEventLoopDelay({ resolution: 20 });
    try {
      reporter.build();
      samples.enable();
      // The window under test is an idle loop, until it holds a dozen samples.
      await eventually("a dozen event-loop delay samples", () => samples.count >= 12);
      const { runtime } = reporter.build();
      assert.ok(runtime!.eventLoopDelayP50Ms < 5, `idle p50 delay ${runtime!.eventLoopDelayP50Ms} ms`);
      assert.ok(runtime!.eventLoopDelayP99Ms < 15, `idle p99 delay ${runtime!.eventLoopDelayP99Ms} ms`);
    } finally {
      samples.disable();
      await reporter.stop();
    }
  });

  test("reports are staggered by instance id: a fleet started together spreads over the interval", () => {
    const interval = 30_000;
    const delays = Array.from({ length: 200 }, (_, i) => staggerDelay(`loan-${i}`, interval));
    assert.ok(delays.every((d) => d >= 0 && d < interval));
    const tenths = new Set(delays.map((d) => Math.floor(d / (interval / 10))));
    assert.equal(tenths.size, 10, "every tenth of the interval has instances reporting in it");
    assert.equal(staggerDelay("loan-7", interval), delays[7], "an instance keeps its slot");

    const { log } = captureLog();
    const now = Date.now();
    const reporters = ["a", "b", "c"].map(
      (id) =>
        new Reporter({
          app: "loan",
          env: "sit",
          instanceId: () => id,
          stats: new InterfaceStats(),
          log,
          intervalMs: interval,
          now: () => now,
        }),
    );
    for (const r of reporters) r.start();
    assert.deepEqual(
      reporters.map((r) => r.nextReportAt()),
      ["a", "b", "c"].map((id) => now + staggerDelay(id, interval)),
    );
    for (const r of reporters) void r.stop();
  });

  test("reports arrive every interval, first after the stagger delay", async () => {
    const monitor = await startMonitor();
    cleanup.push(() => close(monitor.server));
    const { log } = captureLog();
    const reporter = new Reporter({
      app: "loan",
      env: "sit",
      instanceId: () => "loan-3",
      stats: new InterfaceStats(),
      log,
      url: monitor.url,
      intervalMs: 200,
    });
    const started = Date.now();
    reporter.start();
    cleanup.push(() => reporter.stop());
    await eventually("three reports", () => monitor.reports.length >= 3);
    assert.deepEqual(
      monitor.reports.slice(0, 3).map((r) => r.sequence),
      [1n, 2n, 3n],
    );
    assert.ok(Date.now() - started >= staggerDelay("loan-3", 200) + 400);
  });

  test("a monitor-center that does not answer costs one log line, and no request waits for it", async () => {
    const stats = new InterfaceStats();
    const server = app(stats);
    const base = await listen(server);
    cleanup.push(() => close(server));
    // Accepts connections and never answers.
    const silent = http.createServer(() => {});
    const silentUrl = await listen(silent);
    cleanup.push(() => {
      silent.closeAllConnections();
      return close(silent);
    });
    const { lines, log } = captureLog();
    const reporter = new Reporter({
      app: "loan",
      env: "sit",
      instanceId: () => "loan-4",
      stats,
      log,
      url: silentUrl,
      intervalMs: 100,
      timeoutMs: 300,
    });
    reporter.start();
    cleanup.push(() => reporter.stop());
    const started = performance.now();
    for (let i = 0; i < 5; i++) assert.equal((await fetch(`${base}/fast`)).status, 200);
    assert.ok(performance.now() - started < 1000, "requests do not wait for the report delivery");
    await eventually("the delivery failure logged", () => lines.some((l) => l.msg.includes("no answer within 300 ms")), 10_000);
    // Several more intervals go by; the same problem is not logged again.
    const sequence = () => reporter.last()?.sequence ?? 0n;
    const seen = sequence();
    await eventually("two more reports", () => sequence() >= seen + 2n, 10_000);
    assert.equal(lines.filter((l) => l.msg.includes("not delivered")).length, 1);
    assert.ok(
      lines.some((l) => /self-test report \d+ not sent to .*: the previous one is still being delivered/.test(l.msg)),
      "a report due while the previous one hangs is skipped",
    );
  });

  test("a failing monitor-center is logged once, and its recovery once", async () => {
    let status = 503;
    const reports: number[] = [];
    const monitor = http.createServer((req, res) => {
      req.resume();
      reports.push(status);
      res.writeHead(status).end();
    });
    const url = await listen(monitor);
    cleanup.push(() => close(monitor));
    const { lines, log } = captureLog();
    const reporter = new Reporter({
      app: "loan",
      env: "sit",
      instanceId: () => "loan-5",
      stats: new InterfaceStats(),
      log,
      url,
      intervalMs: 100,
    });
    reporter.start();
    cleanup.push(() => reporter.stop());
    await eventually("three refused reports", () => reports.length >= 3);
    status = 204;
    await eventually("a report accepted", () => reports.includes(204));
    await eventually("the recovery logged", () => lines.some((l) => l.msg.includes("delivered to") && l.msg.includes("again")));
    assert.equal(lines.filter((l) => l.msg.includes("answered HTTP 503")).length, 1);
  });
});
