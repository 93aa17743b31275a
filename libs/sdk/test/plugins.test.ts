import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fromJson } from "@bufbuild/protobuf";
import { SelfTestReportSchema } from "@opsplane/contracts";
import { createLogger } from "../src/logger.js";
import { callLogPlugin, definePlugin, PluginHost, redact, timingPlugin } from "../src/plugins.js";
import { Reporter } from "../src/reports/reporter.js";
import { InterfaceStats } from "../src/stats/interface-stats.js";

function captureLog() {
  const lines: Array<{ level: string; msg: string; plugin?: string; [k: string]: unknown }> = [];
  return { lines, log: createLogger("debug", (l) => lines.push(JSON.parse(l))) };
}

const ok = { statusCode: 200, failed: false, durationMs: 4 };

describe("plugins", () => {
  test("timingPlugin times the app's functions into the self-test report, failures and async ones included", async () => {
    const { log } = captureLog();
    const timing = timingPlugin();
    const host = new PluginHost(log);
    // The app wraps at module load, before the SDK starts: those calls run untimed.
    const score = timing.time("score", (income: number) => {
      if (income < 0) throw new Error("negative income");
      return income * 2;
    });
    const fetchRate = timing.time("fetch-rate", async (term: number) => {
      await new Promise((r) => setTimeout(r, 30));
      if (term > 60) throw new Error("no rate for that term");
      return 0.035;
    });
    assert.equal(score(1), 2);
    await host.load([timing]);

    assert.equal(score(10), 20);
    assert.throws(() => score(-1), /negative income/);
    assert.equal(await fetchRate(12), 0.035);
    await assert.rejects(fetchRate(120), /no rate for that term/);

    const reporter = new Reporter({ app: "loan", env: "sit", instanceId: () => "loan-1", stats: new InterfaceStats(), log, plugins: host });
    reporter.build();
    const report = fromJson(SelfTestReportSchema, reporter.lastJson()!);
    assert.deepEqual(report.plugins, ["timing@1.0.0"]);
    const metrics = Object.fromEntries(report.pluginMetrics.map((m) => [m.name, m]));
    assert.deepEqual([metrics.score!.plugin, metrics.score!.calls, metrics.score!.errors], ["timing", 2n, 1n]);
    assert.deepEqual([metrics["fetch-rate"]!.calls, metrics["fetch-rate"]!.errors], [2n, 1n]);
    assert.ok(metrics["fetch-rate"]!.totalMs >= 55, "async calls are timed until they settle");
    assert.ok(metrics["fetch-rate"]!.maxMs >= 27);

    reporter.build();
    const next = fromJson(SelfTestReportSchema, reporter.lastJson()!);
    assert.deepEqual(next.pluginMetrics, [], "the next report covers its own window");
  });

  test("callLogPlugin logs each call with its arguments redacted", async () => {
    const { lines, log } = captureLog();
    const calls = callLogPlugin({ args: true, redact: ["salary"] });
    const host = new PluginHost(log);
    await host.load([calls]);
    const submit = calls.wrap("submit-application", async (application: Record<string, unknown>) => ({ id: `A-${application.name}` }));
    await submit({
      name: "Li Wei",
      password: "hunter2",
      cardNo: "6222020202020202",
      note: "pay to 6222020202020202 please",
      salary: 12000,
      nested: { authToken: "abc", amount: 5000 },
    });
    const failing = calls.wrap("repay", () => {
      throw new Error("account frozen");
    });
    assert.throws(() => failing(), /account frozen/);

    const line = lines.find((l) => l.msg === "call submit-application")!;
    assert.equal(line.plugin, "call-log");
    assert.equal(line.fn, "submit-application");
    assert.equal(typeof line.ms, "number");
    assert.deepEqual(line.args, [
      {
        name: "Li Wei",
        password: "[redacted]",
        cardNo: "[redacted]",
        note: "pay to ****0202 please",
        salary: "[redacted]",
        nested: { authToken: "[redacted]", amount: 5000 },
      },
    ]);
    const failed = lines.find((l) => l.msg === "call repay failed")!;
    assert.equal(failed.level, "warn");
    assert.equal(failed.error, "account frozen");
    assert.deepEqual(failed.args, []);
  });

  test("a plugin whose setup throws, rejects or hangs is skipped with one log line; the others load and are listed", async () => {
    const { lines, log } = captureLog();
    const host = new PluginHost(log, 200);
    const seen: string[] = [];
    await host.load([
      definePlugin({ name: "audit", version: "2.1.0", setup: (ctx) => ctx.observe({ requestFinished: (code) => seen.push(code) }) }),
      definePlugin({
        name: "broken",
        version: "0.1.0",
        setup: (ctx) => {
          ctx.observe({ requestFinished: () => seen.push("from broken") });
          throw new Error("missing license file");
        },
      }),
      definePlugin({ name: "rejects", version: "1.0.0", setup: async () => Promise.reject(new Error("no network")) }),
      definePlugin({ name: "hangs", version: "1.0.0", setup: () => new Promise(() => {}) }),
      definePlugin({ name: "audit", version: "3.0.0", setup: () => {} }),
      timingPlugin(),
    ]);
    assert.deepEqual(host.loaded(), ["audit@2.1.0", "timing@1.0.0"]);
    assert.equal(host.registration(), "audit@2.1.0,timing@1.0.0");
    const skipped = lines.filter((l) => l.msg.includes("skipped")).map((l) => l.msg);
    assert.deepEqual(skipped, [
      "plugin broken@0.1.0 skipped: missing license file",
      "plugin rejects@1.0.0 skipped: no network",
      "plugin hangs@1.0.0 skipped: setup took longer than 200 ms",
      "plugin audit@3.0.0 skipped: a plugin named audit is already loaded",
    ]);

    host.requestFinished("loan.apply", ok);
    assert.deepEqual(seen, ["loan.apply"], "a skipped plugin's observer sees nothing");
  });

  test("a plugin observer that throws never reaches the request, and is logged once", async () => {
    const { lines, log } = captureLog();
    const host = new PluginHost(log);
    const seen: string[] = [];
    await host.load([
      definePlugin({
        name: "flaky",
        version: "1.0.0",
        setup: (ctx) =>
          ctx.observe({
            requestFinished: () => {
              throw new Error("disk full");
            },
          }),
      }),
      definePlugin({
        name: "counter",
        version: "1.0.0",
        setup: (ctx) =>
          ctx.observe({ requestFinished: (code, outcome, by) => seen.push(`${code}:${outcome.statusCode}:${by ?? "handler"}`) }),
      }),
    ]);
    host.requestFinished("loan.apply", ok);
    host.requestFinished("loan.apply", { statusCode: 429, failed: false, durationMs: 0 }, "rate-limited");
    assert.deepEqual(seen, ["loan.apply:200:handler", "loan.apply:429:rate-limited"]);
    assert.equal(lines.filter((l) => l.msg.includes("flaky: its request observer threw (disk full)")).length, 1);
  });

  test("definePlugin refuses a name or version that cannot be listed as name@version", () => {
    assert.throws(() => definePlugin({ name: "My Plugin", version: "1.0.0", setup() {} }), /plugin name "My Plugin" must match/);
    assert.throws(() => definePlugin({ name: "ok", version: "1,0", setup() {} }), /plugin ok: version "1,0" must match/);
  });

  test("logged arguments are cut short: long strings, long arrays, deep objects", () => {
    const out = redact({
      text: "x".repeat(300),
      list: Array.from({ length: 25 }, (_, i) => i),
      deep: { a: { b: { c: { d: 1 } } } },
      file: Buffer.alloc(10),
    }) as Record<string, unknown>;
    assert.equal(out.text, `${"x".repeat(256)}…(300 chars)`);
    assert.deepEqual(out.list, [...Array.from({ length: 20 }, (_, i) => i), "…(25 items)"]);
    assert.deepEqual(out.deep, { a: { b: { c: "[object]" } } });
    assert.equal(out.file, "[10 bytes]");
  });
});
