import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type RunningService, type ServiceDefinition, sha256Hex, startService } from "@opsplane/platform";
import { type CuttableProxy, type EmbeddedPg, eventually, freePort, startCuttableProxy, startEmbeddedPostgres } from "@opsplane/testing";
import { fixtureService } from "./fixture-service.js";

// A private PostgreSQL (never the machine's shared one, which other tests use) is stopped, or cut
// off by a proxy, under running services.

const operatorKey = "outage-operator-key-0123456789";
const json = { "content-type": "application/json", authorization: `Bearer ${operatorKey}` };
const env = (databaseUrl: string, extra: Record<string, string> = {}) => ({
  DATABASE_URL: databaseUrl,
  PORT: "0",
  HOST: "127.0.0.1",
  LOG_LEVEL: "silent",
  AUTH_API_KEYS: `o1:operator:${sha256Hex(operatorKey)}`,
  ...extra,
});
/** A hang fails the test with this, instead of holding it until the runner's timeout. */
const bounded = () => AbortSignal.timeout(30_000);
const listAudit = (url: string) =>
  fetch(`${url}/ops.v1.AuditService/ListAuditEntries`, { method: "POST", headers: json, body: "{}", signal: bounded() });

/** The fixture as a service that keeps serving from memory: the database is reported, not required. */
function fromMemoryService(): ServiceDefinition {
  const base = fixtureService();
  return {
    ...base,
    name: "memory-svc",
    setup: async (ctx) => ({ ...(await base.setup(ctx)), nonCriticalChecks: ["postgres", "bus"] }),
  };
}

describe("PostgreSQL stopped under running services", () => {
  // World-readable, as .data is: as root the database server runs as the postgres user.
  const dataDir = mkdtempSync(path.join(tmpdir(), "opsplane-outage-"));
  chmodSync(dataDir, 0o755);
  let pgPort: number;
  let pg: EmbeddedPg;
  let svc: RunningService;
  let fromMemory: RunningService;
  before(async () => {
    pgPort = await freePort();
    pg = await startEmbeddedPostgres(path.join(dataDir, "pg"), pgPort);
    svc = await startService(fixtureService(), env(pg.url));
    fromMemory = await startService(fromMemoryService(), env(pg.url));
  });
  after(async () => {
    await svc?.close();
    await fromMemory?.close();
    await pg?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("requests get 503 with Retry-After over REST and Connect, /readyz names postgres without its address, and all recover", async () => {
    const created = await fetch(`${svc.url}/things`, { method: "POST", headers: json, body: JSON.stringify({ name: "before", size: 1 }) });
    assert.equal(created.status, 201);
    const { id } = (await created.json()) as { id: number };

    await pg.stop();

    const read = await fetch(`${svc.url}/things/${id}`, { headers: json, signal: bounded() });
    assert.equal(read.status, 503);
    assert.equal(read.headers.get("retry-after"), "5");
    assert.equal(((await read.json()) as { error: string }).error, "unavailable");
    const write = await fetch(`${svc.url}/things`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ name: "during", size: 1 }),
      signal: bounded(),
    });
    assert.equal(write.status, 503);
    assert.equal(write.headers.get("retry-after"), "5");

    const rpc = await listAudit(svc.url);
    assert.equal(rpc.status, 503);
    assert.equal(rpc.headers.get("retry-after"), "5");
    assert.equal(((await rpc.json()) as { code: string }).code, "unavailable");

    const ready = await fetch(`${svc.url}/readyz`, { signal: bounded() });
    assert.equal(ready.status, 503);
    const text = await ready.text();
    const body = JSON.parse(text) as { failing: string[]; checks: Record<string, string> };
    assert.ok(body.failing.includes("postgres"), text);
    assert.notEqual(body.checks.postgres, "ok");
    for (const address of [String(pgPort), "127.0.0.1", "localhost", "://"])
      assert.ok(!text.includes(address), `readyz shows ${address}: ${text}`);

    const memoryReady = await fetch(`${fromMemory.url}/readyz`, { signal: bounded() });
    assert.equal(memoryReady.status, 200);
    const memoryBody = (await memoryReady.json()) as { status: string; degraded: string[] };
    assert.equal(memoryBody.status, "degraded");
    assert.ok(memoryBody.degraded.includes("postgres"));

    pg = await startEmbeddedPostgres(path.join(dataDir, "pg"), pgPort);
    await eventually("reads again", async () => (await fetch(`${svc.url}/things/${id}`, { headers: json })).status === 200, 30_000);
    await eventually("ready again", async () => (await fetch(`${svc.url}/readyz`)).status === 200, 30_000);
    const memoryAfter = (await (await fetch(`${fromMemory.url}/readyz`)).json()) as { status: string };
    assert.equal(memoryAfter.status, "ready");
  });
});

describe("PostgreSQL that stops answering", () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), "opsplane-silent-"));
  chmodSync(dataDir, 0o755);
  let pg: EmbeddedPg;
  let proxy: CuttableProxy;
  let svc: RunningService;
  before(async () => {
    const pgPort = await freePort();
    pg = await startEmbeddedPostgres(path.join(dataDir, "pg"), pgPort);
    proxy = await startCuttableProxy("127.0.0.1", pgPort);
    const url = new URL(pg.url);
    url.port = String(proxy.port);
    svc = await startService(
      fixtureService(),
      env(url.toString(), { DATABASE_CONNECT_TIMEOUT_MS: "500", DATABASE_QUERY_TIMEOUT_MS: "1000" }),
    );
  });
  after(async () => {
    await svc?.close();
    await proxy?.close();
    await pg?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("is a 503 once DATABASE_CONNECT_TIMEOUT_MS has passed, not a request that hangs", async () => {
    assert.equal((await fetch(`${svc.url}/things/1`, { headers: json })).status, 404);
    proxy.blackhole();
    proxy.dropConnections();
    const res = await fetch(`${svc.url}/things/1`, { headers: json, signal: bounded() });
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), "5");
    proxy.heal();
    await eventually("answers again", async () => (await fetch(`${svc.url}/things/1`, { headers: json })).status === 404, 30_000);
  });

  // A partition, or a server frozen: the pool's open connections stay open and fall silent.
  test("is a 503 once DATABASE_QUERY_TIMEOUT_MS has passed on a connection already open, not a request that hangs", async () => {
    assert.equal((await fetch(`${svc.url}/things/1`, { headers: json })).status, 404);
    proxy.blackhole();
    const res = await fetch(`${svc.url}/things/1`, { headers: json, signal: bounded() });
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), "5");
    proxy.heal();
    await eventually("answers again", async () => (await fetch(`${svc.url}/things/1`, { headers: json })).status === 404, 30_000);
  });
});
