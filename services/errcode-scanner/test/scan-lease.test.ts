// Two replicas on one database: the second leaves the first one's live scan alone (a rolling update
// used to download every artifact twice) and takes it over once the first dies. Replica A is a real
// process so that it can die; replica B runs in this process.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { type RunningService, sha256Hex, startService } from "@opsplane/platform";
import { createPool } from "@opsplane/store";
import { createTestDatabase, eventually, freePort, startCuttableProxy, type TestDatabase } from "@opsplane/testing";
import { definition } from "../src/service.js";
import { createScanStore } from "../src/store.js";
import { writeZip } from "./support/zip-writer.js";

const operatorKey = "lease-operator-key-0123456789";
const leaseMs = 3000;
const jar = writeZip([{ name: "META-INF/MANIFEST.MF", data: Buffer.from("Manifest-Version: 1.0\r\n\r\n") }]);

let db: TestDatabase;
let repo: http.Server;
let repoUrl: string;
let downloads = 0;
let rollingDownloads = 0;
let replicaA: ChildProcess;
let replicaB: RunningService | undefined;

const env = (port: number) => ({
  DATABASE_URL: db.url,
  PORT: String(port),
  HOST: "127.0.0.1",
  LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
  AUTH_API_KEYS: `ops:operator:${sha256Hex(operatorKey)}`,
  ERRCODE_BASES: "com.bank.core.BizException",
  ERRCODE_ARTIFACT_URL_PREFIXES: `${repoUrl}/releases/`,
  ERRCODE_SCAN_LEASE_MS: String(leaseMs),
});

before(async () => {
  // The artifact repository: the first download never finishes (the scan stays live on replica A),
  // later ones are served whole.
  repo = http.createServer((req, res) => {
    if (req.url === "/releases/app-2.0.jar") {
      // The rolling-update test's artifact: its first download never finishes either.
      res.writeHead(200, { "content-length": jar.length });
      return void (++rollingDownloads === 1 ? res.write(jar.subarray(0, 10)) : res.end(jar));
    }
    if (req.url !== "/releases/app-1.0.jar") return void res.writeHead(404).end();
    downloads++;
    res.writeHead(200, { "content-length": jar.length });
    if (downloads === 1) res.write(jar.subarray(0, 10));
    else res.end(jar);
  });
  await new Promise<void>((resolve) => repo.listen(0, "127.0.0.1", resolve));
  repoUrl = `http://127.0.0.1:${(repo.address() as AddressInfo).port}`;
  db = await createTestDatabase();
});

after(async () => {
  replicaA?.kill("SIGKILL");
  await replicaB?.close();
  repo?.closeAllConnections();
  repo?.close();
  await db?.drop();
});

/** A replica as a real process (so that it can die), ready on `port`. */
async function spawnReplica(port: number, extraEnv: Record<string, string> = {}): Promise<ChildProcess> {
  const replica = spawn(process.execPath, ["services/errcode-scanner/dist/main.js"], {
    env: { PATH: process.env.PATH, ...env(port), ...extraEnv },
    stdio: "ignore",
  });
  await eventually("replica ready", async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.ok, 30_000, 100);
  return replica;
}

/** Submits a scan of `url` to the replica on `port`; answers its id. */
async function submit(port: number, url: string): Promise<string> {
  const submitted = await fetch(`http://127.0.0.1:${port}/ops.v1.ErrcodeScanService/SubmitScan`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${operatorKey}` },
    body: JSON.stringify({ url }),
  });
  assert.equal(submitted.status, 200);
  return ((await submitted.json()) as { scan: { id: string } }).scan.id;
}

test("a replica leaves another's live scan alone and takes it over once that replica dies", async () => {
  const portA = await freePort();
  replicaA = await spawnReplica(portA);
  const scanId = await submit(portA, `${repoUrl}/releases/app-1.0.jar`);
  await eventually("replica A downloading", async () => downloads === 1);

  // Replica B starts (a rolling update) and looks for scans to take over before it is ready.
  replicaB = await startService(definition, env(0));
  const pool = replicaB.ctx.pool;
  const row = async () =>
    (await pool.query<{ status: string; owner: string | null }>("SELECT status, owner FROM scans WHERE id = $1", [scanId])).rows[0]!;

  // Past the moment A's first lease would have lapsed had A not renewed it, A still holds the scan:
  // B left it alone, and no other replica may take it.
  await eventually(
    "replica A's first lease over",
    async () => {
      const r = await pool.query<{ over: boolean }>(
        "SELECT now() > created_at + $2 * interval '1 millisecond' AS over FROM scans WHERE id = $1",
        [scanId, leaseMs],
      );
      return r.rows[0]!.over;
    },
    30_000,
    100,
  );
  assert.equal(downloads, 1, "another replica re-ran replica A's live scan");
  const ownerA = (await row()).owner;
  assert.ok(ownerA);
  assert.deepEqual(await createScanStore(pool, { owner: "replica-c", ms: leaseMs }).claimExpired(10), []);
  assert.equal(downloads, 1);
  assert.equal((await row()).owner, ownerA);

  // A dies mid-download: once its lease expires B takes the scan over, downloads it again and finishes it.
  replicaA.kill("SIGKILL");
  await eventually("scan finished by replica B", async () => ((await row()).status === "succeeded" ? true : undefined), 60_000, 100);
  assert.equal(downloads, 2);
  const metrics = await (await fetch(`${replicaB.url}/metrics`)).text();
  assert.match(metrics, /^errcode_scans_taken_over_total\{service="errcode-scanner"\} 1$/m);
});

test("a replica takes back its own scan whose lease expired while it no longer runs it (its outcome lost in a database outage), never one it still holds", async () => {
  // No replica running beside it: they would take the scan over first.
  await replicaB?.close();
  replicaB = undefined;
  const pool = createPool(db.url, { schema: "errcode_scanner", applicationName: "scan-lease-test", max: 2 });
  const store = createScanStore(pool, { owner: "replica-d", ms: leaseMs });
  const id = "6f1c1b52-3b8e-4f6e-9a7d-3c2f1e0d9b11";
  assert.ok(
    await store.insert({
      id,
      source: "url",
      artifactName: "lost.jar",
      url: `${repoUrl}/releases/lost.jar`,
      bases: ["com.acme.BizException"],
    }),
  );
  // Its run gave up (the outcome could not be recorded) and the lease ran out: the row still says running.
  await pool.query("UPDATE scans SET status = 'running', lease_expires_at = now() - interval '1 second' WHERE id = $1", [id]);
  assert.deepEqual(await store.claimExpired(10, [id]), [], "held here (still running): left alone");
  // Before: `owner IS DISTINCT FROM` this replica, so only another replica or a restart ever took it back.
  const taken = await store.claimExpired(10, []);
  assert.deepEqual(
    taken.map((x) => [x.id, x.previous_owner]),
    [[id, "replica-d"]],
  );
  await pool.query("DELETE FROM scans WHERE id = $1", [id]);
  await pool.end();
});

test("a replica stopped with SIGTERM mid-scan stops it within the shutdown bound and hands it back uncounted; another runs it at once", async () => {
  // A lease far longer than the test: a takeover now is the hand-back's, not the lease running out.
  const longLease = { ERRCODE_SCAN_LEASE_MS: "120000", SHUTDOWN_TIMEOUT_MS: "2000" };
  // Its own temporary folder, to see that it leaves nothing there.
  const tmp = await mkdtemp(path.join(tmpdir(), "scan-lease-"));
  const port = await freePort();
  const replica = await spawnReplica(port, { ...longLease, TMPDIR: tmp });
  const exited = new Promise<number | null>((resolve) => replica.on("exit", resolve));
  try {
    const scanId = await submit(port, `${repoUrl}/releases/app-2.0.jar`);
    await eventually("downloading", async () => rollingDownloads === 1);

    replica.kill("SIGTERM");
    // Before, it waited for the download until close-with-grace gave up: exit 1, the start counted, the lease held.
    assert.equal(await exited, 0, "stopped within SHUTDOWN_TIMEOUT_MS, everything handed back");
    assert.deepEqual(await readdir(tmp), [], "its work folder removed (before, one per start was left behind)");
    const pool = createPool(db.url, { schema: "errcode_scanner", applicationName: "scan-lease-test", max: 1 });
    try {
      const row = async () =>
        (
          await pool.query<{ status: string; owner: string | null; attempts: number }>(
            "SELECT status, owner, attempts FROM scans WHERE id = $1",
            [scanId],
          )
        ).rows[0]!;
      assert.deepEqual(await row(), { status: "queued", owner: null, attempts: 0 });
      replicaB = await startService(definition, { ...env(0), ...longLease });
      await eventually("run by the next replica", async () => ((await row()).status === "succeeded" ? true : undefined), 30_000, 100);
      assert.equal((await row()).attempts, 1, "only the run that finished counts");
      assert.equal(rollingDownloads, 2);
    } finally {
      await pool.end();
    }
  } finally {
    replica.kill("SIGKILL");
    await rm(tmp, { recursive: true, force: true });
  }
});

test("a scan requeued is queued again, its start uncounted and its half-written tables removed, kept or handed back; only by the replica holding it", async () => {
  // No replica running beside it: it would take the scan over first.
  await replicaB?.close();
  replicaB = undefined;
  const pool = createPool(db.url, { schema: "errcode_scanner", applicationName: "scan-lease-test", max: 2 });
  try {
    const store = createScanStore(pool, { owner: "replica-e", ms: leaseMs });
    const id = "0b8f2c1e-5d4a-4c3b-9e2f-1a0b9c8d7e6f";
    assert.ok(await store.insert({ id, source: "url", artifactName: "cut.jar", url: `${repoUrl}/releases/cut.jar`, bases: [] }));
    assert.equal(await store.startAttempt(id), 1);
    assert.ok(await store.markRunning(id));
    await pool.query("INSERT INTO containers (scan_id, id, parent_id, name, type) VALUES ($1, 0, NULL, 'cut.jar', 'jar')", [id]);
    const row = async () =>
      (
        await pool.query<{ status: string; owner: string | null; attempts: number; containers: number }>(
          "SELECT status, owner, attempts, (SELECT count(*)::int FROM containers WHERE scan_id = $1) AS containers FROM scans WHERE id = $1",
          [id],
        )
      ).rows[0]!;
    assert.equal(await createScanStore(pool, { owner: "replica-f", ms: leaseMs }).requeue(id, { release: true }), false);
    assert.deepEqual(
      await row(),
      { status: "running", owner: "replica-e", attempts: 1, containers: 1 },
      "not another replica's to hand back",
    );
    // Kept (its run cut short by an outage): still this replica's, to run again here.
    assert.equal(await store.requeue(id, { release: false }), true);
    assert.deepEqual(await row(), { status: "queued", owner: "replica-e", attempts: 0, containers: 0 });
    assert.equal(await store.startAttempt(id), 1);
    await pool.query("INSERT INTO containers (scan_id, id, parent_id, name, type) VALUES ($1, 0, NULL, 'cut.jar', 'jar')", [id]);
    // Handed back (its replica stopping): anyone's to take.
    assert.equal(await store.requeue(id, { release: true }), true);
    assert.deepEqual(await row(), { status: "queued", owner: null, attempts: 0, containers: 0 });
    await pool.query("DELETE FROM scans WHERE id = $1", [id]);
  } finally {
    await pool.end();
  }
});

test("an upload whose scan a database outage cut short runs again once the database is back, uncounted; it is not failed", async () => {
  // No replica beside it: this one's own scan is the only one running.
  await replicaB?.close();
  replicaB = undefined;
  // In front of the server the test database is on, so that the service alone loses it.
  const server = new URL(db.url);
  const proxy = await startCuttableProxy(server.hostname, Number(server.port || 5432));
  const replica = await startService(definition, {
    ...env(0),
    DATABASE_URL: Object.assign(new URL(db.url), { port: String(proxy.port) }).toString(),
    DATABASE_CONNECT_TIMEOUT_MS: "300",
  });
  try {
    // Every answer late, so the scan's first statements are still unanswered when the connections go.
    proxy.delayAnswers(400);
    const submitted = await fetch(`${replica.url}/ops.v1.ErrcodeScanService/SubmitScan`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${operatorKey}` },
      body: JSON.stringify({ artifactName: "upload-1.0.jar", content: jar.toString("base64") }),
    });
    assert.equal(submitted.status, 200);
    const scanId = ((await submitted.json()) as { scan: { id: string } }).scan.id;
    proxy.blackhole();
    proxy.dropConnections();
    await eventually("the outage seen", async () => (await fetch(`${replica.url}/readyz`)).status === 503, 30_000, 100);
    proxy.delayAnswers(0);
    proxy.heal();

    const pool = createPool(db.url, { schema: "errcode_scanner", applicationName: "scan-lease-test", max: 1 });
    try {
      const row = async () =>
        (
          await pool.query<{ status: string; attempts: number; error: string | null }>(
            "SELECT status, attempts, error FROM scans WHERE id = $1",
            [scanId],
          )
        ).rows[0]!;
      const finished = await eventually(
        "the scan finished",
        async () => {
          const r = await row();
          return r.status === "queued" || r.status === "running" ? undefined : r;
        },
        30_000,
        100,
      );
      // Before: failed, "the replica holding this upload stopped before scanning it; submit it again".
      assert.deepEqual(finished, { status: "succeeded", attempts: 1, error: null });
    } finally {
      await pool.end();
    }
  } finally {
    proxy.heal();
    await replica.close();
    await proxy.close();
  }
});
