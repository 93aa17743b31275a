// config-center out of reach at start-up (seed step 6): the loan demo serves anyway, on its local
// configuration the first time and joins once config-center is up; on its sealed snapshot of
// the last good configuration when it restarts during an outage (Apollo's client cache).
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { createTestDatabase, eventually, freePort } from "@opsplane/testing";
import pg from "pg";
import { defaultRateTable, rateTableKey } from "../src/loan-terms.js";
import { demoAppId } from "../src/seed.js";
import { application, instancesOf, request, serving, setItem, startDemoApp, startPlatform } from "./harness.js";

/** The SDK waits this long for config-center before it degrades (its default startupTimeoutMs is 20 s). */
const degradedStartMs = 90_000;
const centerRates = { ...defaultRateTable, tiers: [{ maxTermMonths: 60, annualRatePct: 3.95 }] };

async function loanIds(url: string): Promise<string[]> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    // A database the app never used has no table: no loans there.
    if ((await db.query("SELECT to_regclass('loan_demo.loans') AS t")).rows[0].t === null) return [];
    return (await db.query("SELECT id FROM loan_demo.loans ORDER BY created_at")).rows.map((r) => r.id);
  } finally {
    await db.end();
  }
}

describe("the loan demo serves while config-center is down", () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test("first start with config-center unreachable: serves on local configuration, without its terminal, and joins once config-center is up", async () => {
    // config-center's port, held by a listener that resets every connection (config-center out of reach) until
    // config-center takes it: left free, another test's freePort could take it meanwhile (EADDRINUSE in CI).
    const port = await freePort();
    const holder = net.createServer((socket) => socket.resetAndDestroy());
    await new Promise<void>((resolve) => holder.listen(port, "127.0.0.1", resolve));
    const localDb = await createTestDatabase();
    cleanup.push(() => localDb.drop());
    const app = await serving(startDemoApp(`http://127.0.0.1:${port}`, { DATABASE_URL: localDb.url }), degradedStartMs);
    cleanup.push(() => app.stop());
    await app.logged("started on local configuration, joining in the background");
    const local = await request(app, "POST", "/loans", application);
    assert.equal(local.status, 201, JSON.stringify(local.body));
    assert.equal(local.body.annualRatePct, 4.75, "the bundled rate table");
    assert.deepEqual(await loanIds(localDb.url), [local.body.id], "kept in the local DATABASE_URL");
    assert.equal(
      await fetch(`${app.terminalUrl}/opsplane/v1/status`).catch(() => "refused"),
      "refused",
      "no terminal while not registered (step 6)",
    );

    const loansDb = await createTestDatabase();
    cleanup.push(() => loansDb.drop());
    await new Promise((resolve) => holder.close(resolve));
    const platform = await startPlatform({ redis: false, databaseUrl: loansDb.url, env: { PORT: String(port) } });
    cleanup.push(() => platform.close());
    await setItem(platform.url, "business", demoAppId, rateTableKey, centerRates);
    // It retries with backoff (at most a minute between attempts).
    await app.logged("joined config-center", 120_000);
    const joined = await eventually("config-center's rate", async () => {
      const r = await request(app, "POST", "/loans", application);
      return r.body.annualRatePct === 3.95 && r;
    });
    assert.deepEqual(await loanIds(loansDb.url), [joined.body.id], "db.main's rebuild hook moved the book to config-center's database");
    await eventually("online at config-center", async () => (await instancesOf(platform.url, "online")).length === 1);
    const terminal = await eventually("the terminal", () => fetch(`${app.terminalUrl}/opsplane/v1/status`).catch(() => undefined));
    assert.equal(terminal.status, 401, "the terminal is up once registered (and wants a signature)");
  });

  test("restart during an outage: starts on the sealed snapshot of the last good configuration, not on local configuration", async () => {
    const snapshotDir = await mkdtemp(path.join(tmpdir(), "loan-demo-snapshot-"));
    cleanup.push(() => rm(snapshotDir, { recursive: true, force: true }));
    const [localDb, loansDb] = [await createTestDatabase(), await createTestDatabase()];
    cleanup.push(
      () => localDb.drop(),
      () => loansDb.drop(),
    );
    const platform = await startPlatform({ redis: false, databaseUrl: loansDb.url });
    await setItem(platform.url, "business", demoAppId, rateTableKey, centerRates);
    const env = { OPSPLANE_SNAPSHOT_DIR: snapshotDir, DATABASE_URL: localDb.url };

    const first = await serving(startDemoApp(platform.url, env));
    assert.equal((await request(first, "POST", "/loans", application)).body.annualRatePct, 3.95);
    assert.deepEqual(await first.stop(), { code: 0, signal: null });
    const [file] = await readdir(snapshotDir);
    assert.equal(file, `${demoAppId}.dev.snapshot`);
    assert.equal((await stat(path.join(snapshotDir, file!))).mode & 0o777, 0o600);
    const sealed = await readFile(path.join(snapshotDir, file!), "latin1");
    for (const secretish of ["3.95", new URL(loansDb.url).pathname.slice(1), "loan.rate-table"])
      assert.ok(!sealed.includes(secretish), `the snapshot is sealed: ${secretish} does not show`);

    await platform.close();
    const second = await serving(startDemoApp(platform.url, env), degradedStartMs);
    cleanup.push(() => second.stop());
    await second.logged("started on the snapshot of version");
    const loan = await request(second, "POST", "/loans", application);
    assert.equal(loan.body.annualRatePct, 3.95, "config-center's rate table, from the snapshot");
    assert.ok((await loanIds(loansDb.url)).includes(loan.body.id), "config-center's database (db.main from the snapshot)");
    assert.deepEqual(await loanIds(localDb.url), [], "not the local DATABASE_URL");
  });
});
