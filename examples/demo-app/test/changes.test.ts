// Parameter changes reach the running loan demo (the change flow, steps 5-9): a new rate table
// prices the next application, read from the Redis central cache; a bank added to the shared
// dictionary is accepted at once; and a database change (the resource db.main references) runs
// the rebuild hook, which moves the loan book, or keeps the old one when the new database
// cannot be used.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createTestDatabase, eventually, type TestDatabase } from "@opsplane/testing";
import { Redis } from "ioredis";
import pg from "pg";
import { bankCodesKey, defaultBankCodes, defaultRateTable, rateTableKey } from "../src/loan-terms.js";
import { demoAppId } from "../src/seed.js";
import { application, call, type DemoApp, request, serving, setItem, startDemoApp, startPlatform } from "./harness.js";

async function loanIds(url: string): Promise<string[]> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    return (await db.query("SELECT id FROM loan_demo.loans ORDER BY created_at")).rows.map((r) => r.id);
  } finally {
    await db.end();
  }
}

describe("parameter changes reach the running loan demo", () => {
  let platform: Awaited<ReturnType<typeof startPlatform>>;
  let firstDb: TestDatabase;
  let secondDb: TestDatabase;
  let app: DemoApp;
  let redis: Redis | undefined;
  let monitor: Redis | undefined;
  /** Commands the Redis server saw, as "COMMAND arg1 arg2…". */
  const redisCommands: string[] = [];

  before(async () => {
    firstDb = await createTestDatabase();
    secondDb = await createTestDatabase();
    // Every business value is pushed as "fetch": the instance must read it from the central cache.
    platform = await startPlatform({ redis: true, databaseUrl: firstDb.url, env: { PUSH_INLINE_MAX_BYTES: "0" } });
    app = await serving(
      startDemoApp(platform.url, { OPSPLANE_REDIS_URL: process.env.REDIS_URL!, OPSPLANE_REDIS_PREFIX: platform.redisPrefix! }),
    );
    redis = new Redis(process.env.REDIS_URL!);
    monitor = await redis.monitor();
    monitor.on("monitor", (_time: string, args: string[]) => redisCommands.push(args.join(" ")));
  });
  after(async () => {
    monitor?.disconnect();
    redis?.disconnect();
    await app?.stop();
    await platform?.close();
    await firstDb?.drop();
    await secondDb?.drop();
  });

  test("a new rate table prices the next application, read from the Redis central cache", async () => {
    assert.equal((await request(app, "POST", "/loans", application)).body.annualRatePct, 4.75);
    await setItem(platform.url, "business", demoAppId, rateTableKey, {
      ...defaultRateTable,
      tiers: [
        { maxTermMonths: 12, annualRatePct: 3.1 },
        { maxTermMonths: 36, annualRatePct: 3.45 },
      ],
    });
    const repriced = await eventually("the new rate", async () => {
      const r = await request(app, "POST", "/loans", application);
      return r.body.annualRatePct === 3.45 && r;
    });
    assert.equal(repriced.status, 201);
    assert.equal(repriced.body.monthlyPayment, 863.61, "20,000 over 24 months at 3.45 % (annuity)");
    assert.ok(
      redisCommands.some(
        (c) => /^(get|mget) /i.test(c) && c.includes(`${platform.redisPrefix}biz:${demoAppId}:`) && c.includes(rateTableKey),
      ),
      `the instance read the rate table from Redis: ${redisCommands.filter((c) => c.includes("biz:")).join(" | ")}`,
    );
    await app.logged(`loan terms rebuilt (${rateTableKey} changed)`);
    // A term the new table no longer covers is refused, naming the table's limit.
    const long = await request(app, "POST", "/loans", { ...application, termMonths: 48 });
    assert.deepEqual([long.status, long.body.message], [400, "termMonths 48 is beyond the rate table (at most 36)"]);
  });

  test("a bank added to the shared bank-code dictionary is accepted by the next application", async () => {
    const newBank = { ...application, bankCode: "301290000007" };
    assert.match((await request(app, "POST", "/loans", newBank)).body.message, /bank code 301290000007 is not in the bank-code dictionary/);
    await setItem(
      platform.url,
      "business",
      "_",
      bankCodesKey,
      [...defaultBankCodes, { code: "301290000007", name: "Bank of Communications" }],
      {
        category: "bank-codes",
      },
    );
    const accepted = await eventually("the new bank", async () => {
      const r = await request(app, "POST", "/loans", newBank);
      return r.status === 201 && r;
    });
    assert.equal(accepted.body.bankName, "Bank of Communications");
  });

  test("moving middleware/loan-db to another database runs db.main's rebuild hook: the next loan is kept there", async () => {
    const before = await loanIds(firstDb.url);
    const target = new URL(secondDb.url);
    const moved = await call(platform.url, "PUT", "/config/v1/resources/middleware/loan-db", {
      role: "admin",
      body: {
        type: "postgresql",
        config: { host: target.hostname, port: Number(target.port), database: target.pathname.slice(1), user: "postgres" },
      },
    });
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    await app.logged(`loan book now in postgresql ${target.hostname}:${target.port}/${target.pathname.slice(1)} (db.main changed)`);
    const loan = (await request(app, "POST", "/loans", application)).body;
    assert.deepEqual(await loanIds(secondDb.url), [loan.id]);
    assert.deepEqual(await loanIds(firstDb.url), before, "the first database got nothing more");

    // A database that cannot be used: the hook fails, said once, and the book stays where it works.
    const broken = await call(platform.url, "PUT", "/config/v1/resources/middleware/loan-db", {
      role: "admin",
      body: {
        type: "postgresql",
        config: { host: target.hostname, port: Number(target.port), database: "no_such_database", user: "postgres" },
      },
    });
    assert.equal(broken.status, 200);
    await app.logged("rebuild hook for db.main failed: loan book: cannot use PostgreSQL");
    const still = (await request(app, "POST", "/loans", application)).body;
    assert.deepEqual(await loanIds(secondDb.url), [loan.id, still.id]);
  });
});
