import assert from "node:assert/strict";
import { test } from "node:test";
import { createGuard, GovernanceRejection } from "../src/adapters/guard.js";
import { governed, rule } from "./governance-fixtures.js";

test("a guarded consumer runs and returns its result while no rule stops it", async () => {
  const { edge, seen } = governed();
  const consume = createGuard(edge)("queue.loan-events", async (msg: { id: number }) => msg.id * 2);
  assert.equal(await consume({ id: 21 }), 42);
  assert.deepEqual(
    seen.finished.map((f) => [f.code, f.outcome.failed]),
    [["queue.loan-events", false]],
  );
});

test("a refused call rejects with the reason and never runs the function", async () => {
  const { edge, governance } = governed();
  let runs = 0;
  const job = createGuard(edge)("job.reconcile", async () => {
    runs++;
  });
  governance.apply([rule("rate-limit", "job.reconcile", { tps: 1 })]);
  await job();
  await assert.rejects(job(), (err: unknown) => {
    assert.ok(err instanceof GovernanceRejection);
    assert.equal(err.reason, "rate-limited");
    assert.equal(err.statusCode, 429);
    assert.equal(err.message, "interface job.reconcile is over its rate limit: 1 calls a second");
    return true;
  });
  assert.equal(runs, 1);
});

test("a baffle's mock value is returned instead of calling the function", async () => {
  const { edge, governance } = governed();
  let runs = 0;
  const score = createGuard(edge)("credit.score", async () => {
    runs++;
    return { score: 1 };
  });
  governance.apply([rule("baffle", "credit.score", { enabled: true, response: { body: { score: 700, mocked: true } } })]);
  assert.deepEqual(await score(), { score: 700, mocked: true });
  assert.equal(runs, 0);
});

test("thrown errors open the breaker around a guarded call", async () => {
  const { edge, governance } = governed();
  let runs = 0;
  const pay = createGuard(edge)("queue.payments", async () => {
    runs++;
    throw new Error("bank timeout");
  });
  governance.apply([rule("circuit-breaker", "queue.payments", { errorCount: 2, openMs: 60_000 })]);
  await assert.rejects(pay(), /bank timeout/);
  await assert.rejects(pay(), /bank timeout/);
  await assert.rejects(pay(), { name: "GovernanceRejection", reason: "circuit-open" });
  assert.equal(runs, 2);
});

test("route conditions read the call's params, or the first argument's fields", async () => {
  const { edge, governance } = governed();
  const guard = createGuard(edge);
  const consume = guard("queue.loan-events", async (msg: { channel: string }) => msg.channel);
  const tagged = guard("queue.tagged", async () => "ran", { params: () => ({ channel: "h5" }), caller: "batch" });
  governance.apply([
    rule("route", "queue.loan-events", { enabled: true, conditions: [{ by: "param", name: "channel", values: ["h5"], enabled: false }] }),
    rule("route", "queue.tagged", { enabled: true, conditions: [{ by: "caller", values: ["batch"], enabled: false }] }),
  ]);
  await assert.rejects(consume({ channel: "h5" }), { reason: "route-closed" });
  assert.equal(await consume({ channel: "app" }), "app");
  await assert.rejects(tagged(), { reason: "route-closed" });
});

test("an invalid code fails when the guard is made", () => {
  const { edge } = governed();
  assert.throws(() => createGuard(edge)("", async () => {}), /sdk\.guard\(\): interface code "" is not valid/);
});
