// Governance rules changed live in config-center take effect on the loan demo's next real
// requests, without a restart: a rate limit bites and lets go, a circuit breaker opens on a
// failing database and closes once it is back, a baffle answers instead of the handler (nothing
// is written), and a route rule closes an interface, for everyone or for one caller.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createTestDatabase, eventually, setDatabaseOutage, type TestDatabase } from "@opsplane/testing";
import pg from "pg";
import { demoAppId } from "../src/seed.js";
import { application, type DemoApp, deleteItem, request, serving, setItem, startDemoApp, startPlatform } from "./harness.js";

describe("governance rules pushed by config-center act on the loan demo's requests", () => {
  let platform: Awaited<ReturnType<typeof startPlatform>>;
  let loansDb: TestDatabase;
  let app: DemoApp;
  const rule = (key: string, value: unknown) => setItem(platform.url, "governance", demoAppId, key, value);
  const loansKept = async () => {
    const db = new pg.Client({ connectionString: loansDb.url });
    await db.connect();
    try {
      return (await db.query("SELECT count(*)::int AS n FROM loan_demo.loans")).rows[0].n as number;
    } finally {
      await db.end();
    }
  };
  /** Five applications at once: their statuses, sorted, and the governance header of each refusal. */
  const burst = async () => {
    const replies = await Promise.all(Array.from({ length: 5 }, () => request(app, "POST", "/loans", application)));
    return replies
      .map((r) => `${r.status}${r.headers.get("x-opsplane-governance") ? ` ${r.headers.get("x-opsplane-governance")}` : ""}`)
      .sort();
  };

  before(async () => {
    loansDb = await createTestDatabase();
    platform = await startPlatform({ redis: false, databaseUrl: loansDb.url });
    app = await serving(startDemoApp(platform.url));
  });
  after(async () => {
    await app?.stop();
    await platform?.close();
    await loansDb?.drop();
  });

  test("a rate limit of 1 application a second refuses the burst with 429, and raising it lets the next burst through", async () => {
    assert.deepEqual(await burst(), ["201", "201", "201", "201", "201"]);
    await rule("rate-limit/loan.apply", { tps: 1 });
    // In force once it refuses a call: a burst sent before that could straddle the rule's arrival.
    await eventually("the limit to bite", async () => (await request(app, "POST", "/loans", application)).status === 429);
    const limited = await burst();
    assert.ok(limited.includes("429 rate-limited"), `the burst is limited: ${limited}`);
    assert.ok(limited.filter((s) => s === "201").length <= 2, `at most the bucket's one call (and one refill) passes: ${limited}`);
    const refused = await request(app, "POST", "/loans", application);
    assert.equal(refused.status, 429);
    assert.match(refused.body.message, /interface loan\.apply is over its rate limit: 1 calls a second/);
    assert.ok(Number(refused.headers.get("retry-after")) >= 1);

    await rule("rate-limit/loan.apply", { tps: 10_000 });
    await eventually("the raised limit", async () => (await burst()).every((s) => s === "201"));
  });

  test("a circuit breaker opens after three failed queries (database down) and closes again once a trial succeeds", async () => {
    const loan = (await request(app, "POST", "/loans", application)).body;
    await rule("circuit-breaker/loan.query", { errorCount: 3, windowMs: 60_000, openMs: 1_000 });
    await setDatabaseOutage(loansDb.url, true);
    const failed: string[] = [];
    try {
      // Each query fails with the app's own 503 until the breaker (once its rule is in) has seen three.
      const open = await eventually("the breaker to open", async () => {
        const r = await request(app, "GET", `/loans/${loan.id}`);
        if (r.headers.get("x-opsplane-governance") === "circuit-open") return r;
        failed.push(`${r.status} ${r.body.error}`);
      });
      assert.equal(open.status, 503);
      assert.match(open.body.message, /interface loan\.query is failing: its circuit breaker is open/);
      assert.ok(failed.length >= 3 && failed.every((f) => f === "503 unavailable"), failed.join(", "));
    } finally {
      await setDatabaseOutage(loansDb.url, false);
    }
    const back = await eventually("a trial call to close the breaker", async () => {
      const r = await request(app, "GET", `/loans/${loan.id}`);
      return r.status === 200 && r;
    });
    assert.equal(back.body.id, loan.id);
    await deleteItem(platform.url, "governance", demoAppId, "circuit-breaker/loan.query");
  });

  test("a baffle answers applications from its mock without writing a loan, until it is switched off", async () => {
    const before = await loansKept();
    const mock = { status: 201, headers: { "content-type": "application/json" }, body: { id: "LN-BAFFLE", status: "active" } };
    await rule("baffle/loan.apply", { enabled: true, response: mock });
    const baffled = await eventually("the baffle", async () => {
      const r = await request(app, "POST", "/loans", application);
      return r.headers.get("x-opsplane-governance") === "baffle" && r;
    });
    assert.deepEqual([baffled.status, baffled.body], [201, { id: "LN-BAFFLE", status: "active" }]);
    const keptMeanwhile = await loansKept();

    await rule("baffle/loan.apply", { enabled: false, response: mock });
    const real = await eventually("the handler again", async () => {
      const r = await request(app, "POST", "/loans", application);
      return r.body.id !== "LN-BAFFLE" && r;
    });
    assert.equal(real.status, 201);
    assert.match(real.body.id, /^LN\d{8}[0-9a-f]{10}$/);
    // Only the applications sent before the baffle was in force (while waiting for it) reached the book.
    assert.equal(await loansKept(), keptMeanwhile + 1);
    assert.ok(keptMeanwhile >= before);
  });

  test("a route rule closes queries (503 naming the rule) while applications still work, and a caller condition closes applications to one caller", async () => {
    const loan = (await request(app, "POST", "/loans", application)).body;
    await rule("route/loan.query", { enabled: false });
    const closed = await eventually("the route closed", async () => {
      const r = await request(app, "GET", `/loans/${loan.id}`);
      return r.headers.get("x-opsplane-governance") === "route-closed" && r;
    });
    assert.equal(closed.status, 503);
    assert.match(closed.body.message, /interface loan\.query is closed by its route rule/);
    assert.equal((await request(app, "POST", "/loans", application)).status, 201);

    await rule("route/loan.query", { enabled: true });
    await rule("route/loan.apply", { enabled: true, conditions: [{ by: "caller", values: ["batch-import"], enabled: false }] });
    const refused = await eventually("the caller condition", async () => {
      const r = await request(app, "POST", "/loans", application, { "x-opsplane-caller": "batch-import" });
      return r.headers.get("x-opsplane-governance") === "route-closed" && r;
    });
    assert.equal(refused.status, 503);
    assert.equal((await request(app, "POST", "/loans", application, { "x-opsplane-caller": "mobile-app" })).status, 201);
    assert.equal((await request(app, "GET", `/loans/${loan.id}`)).status, 200);
  });
});
