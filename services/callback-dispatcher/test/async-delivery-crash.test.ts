import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, describe, test } from "node:test";
import { sha256Hex } from "@opsplane/platform";
import { createTestDatabase, eventually, freePort } from "@opsplane/testing";
import { operatorKey } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

const secret = "platform-secret";
const base = "/_dispatcher/v1";

/** The dispatcher as a real process of its own on `databaseUrl`, as a pod runs it. */
async function startProcess(databaseUrl: string) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "..", "src", "main.ts")], {
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      HOST: "127.0.0.1",
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn",
      AUTH_API_KEYS: `ops:operator:${sha256Hex(operatorKey)}`,
      RULES_POLL_MS: "100",
      ASYNC_DELIVERY_POLL_MS: "50",
      // A short lease: a delivery whose replica died is claimed again within seconds.
      ASYNC_DELIVERY_LEASE_MS: "2000",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (c) => (output += c));
  child.stderr?.on("data", (c) => (output += c));
  await eventually(
    "the dispatcher ready",
    async () => {
      if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${output}`);
      return (await fetch(`${url}/readyz`)).ok;
    },
    60_000,
    100,
  );
  const api = async (method: string, p: string, body?: unknown) => {
    const res = await fetch(`${url}${p}`, {
      method,
      headers: { authorization: `Bearer ${operatorKey}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
  };
  return { child, url, api, output: () => output };
}

const gone = async (child: ChildProcess, signal: NodeJS.Signals) => {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exit = once(child, "exit");
  child.kill(signal);
  await exit;
};

describe("asynchronous delivery across a crash", () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const fn of cleanup.reverse()) await fn();
  });

  test("the dispatcher killed mid-delivery and started again: the delivery completes once, the interrupted attempt on record", async () => {
    const db = await createTestDatabase();
    cleanup.push(() => db.drop());
    const prod = await startSignedStub("prod", secret);
    cleanup.push(() => prod.close());
    // sit takes the first delivery and never answers it (the dispatcher dies meanwhile); it answers the next ones.
    const received: Array<{ delivery: string; attempt: string; body: string; answered: boolean }> = [];
    const sit = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const r = {
          delivery: String(req.headers["x-delivery-id"]),
          attempt: String(req.headers["x-delivery-attempt"]),
          body: Buffer.concat(chunks).toString(),
          answered: false,
        };
        received.push(r);
        if (received.length === 1) return;
        r.answered = true;
        res.writeHead(200, { "content-type": "text/plain" }).end("success");
      });
    });
    await new Promise<void>((resolve) => sit.listen(0, "127.0.0.1", resolve));
    cleanup.push(async () => {
      sit.closeAllConnections();
      sit.close();
    });

    const first = await startProcess(db.url);
    cleanup.push(() => gone(first.child, "SIGKILL"));
    assert.equal((await first.api("PUT", `${base}/environments/prod`, { baseUrl: prod.url, production: true })).status, 200);
    const saved = await first.api("PUT", `${base}/environments/sit`, {
      baseUrl: `http://127.0.0.1:${(sit.address() as AddressInfo).port}`,
      asyncDelivery: { answer: { body: "success" }, initialBackoffMs: 100 },
    });
    assert.equal(saved.status, 200, JSON.stringify(saved.body));
    const rule = {
      interface: { pattern: "/api/pay", id: { kind: "query", expr: "orderNo" } },
      callback: { pattern: "/notify/pay", id: { kind: "query", expr: "order" } },
      ttlSeconds: 600,
    };
    assert.equal((await first.api("PUT", `${base}/rules/pay`, rule)).status, 200);
    assert.equal(
      (await first.api("POST", `${base}/registrations`, { env: "sit", registrations: [{ rule: "pay", id: "SIT-1" }] })).status,
      200,
    );

    const body = "out_trade_no=SIT-1&trade_status=TRADE_SUCCESS";
    const answer = await fetch(`${first.url}/notify/pay?order=SIT-1`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "x-signature": sign(secret, body), "x-request-id": "crash-1" },
      body,
    });
    assert.deepEqual([answer.status, await answer.text()], [200, "success"], "answered from the template");
    await eventually("sit holding the first attempt", () => received.length === 1);

    // Killed with the attempt in flight: no shutdown hook runs, the lease is left behind.
    const killedAt = Date.now();
    await gone(first.child, "SIGKILL");
    const second = await startProcess(db.url);
    cleanup.push(() => gone(second.child, "SIGTERM"));

    const id = received[0]!.delivery;
    const done = await eventually(
      "the delivery completed by the restarted dispatcher",
      async () => {
        const { body: detail } = await second.api("GET", `${base}/deliveries/${id}`);
        const d = detail as {
          delivery?: { state: string };
          attempts: Array<{ attempt: number; at: string; status: number | null; replica: string; error: string | null }>;
        };
        return d.delivery?.state === "delivered" ? d : undefined;
      },
      30_000,
      100,
    );
    assert.deepEqual(
      received.map((r) => [r.delivery, r.attempt, r.body, r.answered]),
      [
        [id, "1", body, false],
        [id, "2", body, true],
      ],
      "sent again after the crash, answered once",
    );
    const [interrupted, completed] = done.attempts;
    assert.equal(done.attempts.length, 2);
    assert.equal(interrupted!.status, null);
    assert.match(String(interrupted!.error), /^interrupted: the replica stopped or lost its lease mid-attempt/);
    assert.equal(completed!.status, 200);
    assert.notEqual(interrupted!.replica, completed!.replica, "another process finished it");
    // On record when it was made (by the replica killed), not when the restarted one found it a lease later.
    assert.ok(
      Date.parse(interrupted!.at) <= killedAt,
      `interrupted attempt at ${interrupted!.at}, killed at ${new Date(killedAt).toISOString()}`,
    );
    // Delivered is final: nothing claims it again.
    const { body: pending } = await second.api("GET", `${base}/deliveries?state=pending`);
    assert.deepEqual(pending.deliveries, []);
  });
});
