// Start-up (seed steps 1-12) as an operator sees it: the loan demo gets its token, starts its
// terminal, registers with its node identity, goes online, applies config-center's metadata
// above its own defaults, reports its interfaces (config-center builds the OpenAPI from them),
// and only then serves. A refused secret stops it before it serves anything.
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { after, before, describe, test } from "node:test";
import { createTestDatabase, eventually, type TestDatabase } from "@opsplane/testing";
import pg from "pg";
import { version as packageVersion } from "../package.json";
import { defaultRateTable, rateTableKey } from "../src/loan-terms.js";
import { demoAppId } from "../src/seed.js";
import {
  application,
  call,
  type DemoApp,
  instanceIdOf,
  instancesOf,
  request,
  serving,
  setItem,
  startDemoApp,
  startPlatform,
  terminal,
} from "./harness.js";

describe("the loan demo joins the platform before it serves", () => {
  let platform: Awaited<ReturnType<typeof startPlatform>>;
  let loansDb: TestDatabase;
  let app: DemoApp;

  before(async () => {
    loansDb = await createTestDatabase();
    platform = await startPlatform({ redis: false, databaseUrl: loansDb.url });
    // A rate only config-center has: the app can quote it only from its start-up metadata.
    await setItem(platform.url, "business", demoAppId, rateTableKey, {
      ...defaultRateTable,
      tiers: [{ maxTermMonths: 60, annualRatePct: 3.95 }],
    });
  });
  after(async () => {
    await app?.stop();
    await platform?.close();
    await loansDb?.drop();
  });

  test("a secret config-center refuses stops start-up with the reason, and nothing is registered", async () => {
    const refused = await startDemoApp(platform.url, { OPSPLANE_APP_SECRET: "not-the-loan-demo-secret" });
    const { code } = await refused.exited;
    assert.equal(code, 1);
    assert.match(
      refused.lines.join("\n"),
      /loan demo did not start: config-center refused the token request \(401\): wrong app id or secret/,
    );
    assert.equal((await fetch(refused.url).catch(() => undefined))?.status, undefined, "it never listened");
    assert.deepEqual(await instancesOf(platform.url), []);
  });

  test("token, terminal, registration with node identity, socket, metadata and resources come before the first request", async () => {
    app = await serving(startDemoApp(platform.url, { OPSPLANE_LABELS: "zone=a" }));
    // Step 11 is done by the time it serves: config-center already has the OpenAPI, filed under the package's version.
    const openapi = await call(platform.url, "GET", `/config/v1/apps/${demoAppId}/openapi.json`, { role: "viewer" });
    assert.equal(openapi.status, 200, JSON.stringify(openapi.body));
    assert.equal(openapi.body.info.version, packageVersion);
    assert.deepEqual(Object.keys(openapi.body.paths).sort(), ["/loans", "/loans/{id}", "/loans/{id}/repayments"]);
    assert.equal(openapi.body.paths["/loans"].post.operationId, "loan.apply");
    assert.equal(openapi.body.paths["/loans/{id}/repayments"].post["x-handler"], "LoanService.repay(id, amount)");

    const [instance] = await instancesOf(platform.url);
    assert.equal(instance.hostName, hostname());
    assert.equal(instance.servicePort, app.port);
    assert.equal(instance.sdkPort, app.terminalPort);
    assert.deepEqual(instance.labels, { zone: "a" });
    assert.equal(instance.appVersion, packageVersion);
    assert.match(instance.startParams["sdk.version"], /^\d+\.\d+\.\d+/);
    const id = await instanceIdOf(platform.url, app);
    await eventually("the instance online", async () => (await instancesOf(platform.url, "online")).some((i) => i.instanceId === id));

    // The terminal answers for this instance, signed as monitor-center signs.
    const status = await terminal(app, id, "GET", "/opsplane/v1/status");
    assert.equal(status.status, 200, JSON.stringify(status.body));
    assert.equal(status.body.instanceId, id);

    // The metadata is applied above local configuration: config-center's rate, config-center's database.
    const loan = await request(app, "POST", "/loans", application);
    assert.equal(loan.status, 201, JSON.stringify(loan.body));
    assert.equal(loan.body.annualRatePct, 3.95);
    const db = new pg.Client({ connectionString: loansDb.url });
    await db.connect();
    try {
      const { rows } = await db.query("SELECT id FROM loan_demo.loans");
      assert.deepEqual(
        rows.map((r) => r.id),
        [loan.body.id],
        "kept in the database db.main references (middleware/loan-db)",
      );
    } finally {
      await db.end();
    }

    // And it said so in that order: joined, then serving.
    const joined = app.lines.findIndex((l) => l.includes("joined config-center"));
    const serves = app.lines.findIndex((l) => l.includes("loan demo on http://"));
    assert.ok(joined >= 0 && joined < serves, app.lines.join("\n"));
  });

  test("the API refuses bad input with a reason naming it", async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ ...application, amount: "20000" }, /body\/amount must be number/],
      [{ ...application, bankCode: "999999999999" }, /bank code 999999999999 is not in the bank-code dictionary/],
      [{ ...application, termMonths: 72 }, /termMonths 72 is beyond the rate table \(at most 60\)/],
      [{ ...application, amount: 10.001 }, /at most 2 decimals/],
      [{ ...application, extra: 1 }, /must NOT have additional properties/],
    ];
    for (const [body, reason] of cases) {
      const r = await request(app, "POST", "/loans", body);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.match(r.body.message, reason);
    }
    const loan = (await request(app, "POST", "/loans", application)).body;
    assert.equal((await request(app, "POST", `/loans/${loan.id}/repayments`, { amount: loan.outstanding + 1 })).status, 400);
    const repaid = await request(app, "POST", `/loans/${loan.id}/repayments`, { amount: loan.outstanding });
    assert.deepEqual([repaid.status, repaid.body.status, repaid.body.outstanding], [201, "repaid", 0]);
    assert.equal((await request(app, "POST", `/loans/${loan.id}/repayments`, { amount: 1 })).status, 409);
    assert.equal((await request(app, "GET", "/loans/LN-none")).status, 404);
  });
});
