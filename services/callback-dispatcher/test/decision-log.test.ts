import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { sha256Hex } from "@opsplane/platform";
import { createTestDatabase, eventually, freePort, setDatabaseOutage } from "@opsplane/testing";
import pg from "pg";
import { createDecisionLog, type DecisionRecord } from "../src/decision-log.js";
import { operatorKey, startDispatcher } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

const secret = "platform-secret";
type Decision = Record<string, unknown>;

/** Rules reading `orderId` from a JSON body, a form body and the query. */
const rules = {
  "nul-json": { pattern: "/cb/nul/json", id: { kind: "json", expr: "orderId" } },
  "nul-form": { pattern: "/cb/nul/form", id: { kind: "form", expr: "orderId" } },
  "nul-query": { pattern: "/cb/nul/query", id: { kind: "query", expr: "orderId" } },
};

type Level = "debug" | "info" | "warn" | "error";

/** A logger whose lines the test reads. */
function capturedLogger() {
  const lines: Array<{ level: Level; fields: object; msg: string }> = [];
  const line =
    (level: Level) =>
    (fields: object, msg = "") =>
      void lines.push({ level, fields, msg });
  return {
    log: { debug: line("debug"), info: line("info"), warn: line("warn"), error: line("error") },
    at: (level: Level) => lines.filter((l) => l.level === level),
  };
}

describe("decisions PostgreSQL cannot store as sent are recorded escaped, and never stop the others being recorded", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;

  before(async () => {
    prod = await startSignedStub("prod", secret);
    d = await startDispatcher();
    await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true });
    for (const [name, callback] of Object.entries(rules)) {
      const rule = { interface: { pattern: "/api/x", id: { kind: "json", expr: "id" } }, callback, ttlSeconds: 60 };
      assert.equal((await d.api("PUT", `/_dispatcher/v1/rules/${name}`, rule)).status, 200);
    }
  });
  after(async () => {
    await d?.close();
    await prod?.close();
  });

  async function callback(pathAndQuery: string, body: string, contentType = "application/json") {
    const res = await fetch(`${d.url}${pathAndQuery}`, {
      method: "POST",
      headers: { "content-type": contentType, "x-signature": sign(secret, body) },
      body,
    });
    await res.arrayBuffer();
    return { status: res.status, requestId: res.headers.get("x-request-id")! };
  }

  async function decisions(query = ""): Promise<Decision[]> {
    const r = await d.api("GET", `/_dispatcher/v1/decisions?limit=1000${query}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.decisions as Decision[];
  }
  const decision = (requestId: string) =>
    eventually(`decision ${requestId}`, async () => (await decisions()).find((x) => x.requestId === requestId));

  test("an id with a NUL, sent as JSON \\u0000, form %00 or query %00, is recorded with the NUL written \\u0000, and the callbacks after it are recorded too", async () => {
    const nul = [
      await callback("/cb/nul/json", '{"orderId":"X\\u0000Y"}'),
      await callback("/cb/nul/form", "orderId=X%00Y", "application/x-www-form-urlencoded"),
      await callback("/cb/nul/query?orderId=X%00Y", ""),
    ];
    const normal = await callback("/cb/nul/json", '{"orderId":"AFTER-NUL"}');
    for (const r of [...nul, normal]) assert.equal(r.status, 200, "production answered the callback");

    assert.equal((await decision(normal.requestId)).objectId, "AFTER-NUL");
    for (const [i, r] of nul.entries()) {
      const recorded = await decision(r.requestId);
      assert.equal(recorded.objectId, "X\\u0000Y", `callback ${i}: the NUL is stored as the six characters \\u0000`);
      assert.equal(recorded.reason, "not_registered");
    }
  });

  test("a lone UTF-16 surrogate in the id is recorded as U+FFFD", async () => {
    const r = await callback("/cb/nul/json", '{"orderId":"X\\ud800Y"}');
    assert.equal(r.status, 200);
    assert.equal((await decision(r.requestId)).objectId, "X\uFFFDY");
  });

  test("decisions are found by the id as the callback sent it, NUL included", async () => {
    const r = await callback("/cb/nul/json", '{"orderId":"FIND\\u0000ME"}');
    await decision(r.requestId);
    const found = await decisions(`&objectId=${encodeURIComponent("FIND\u0000ME")}`);
    assert.deepEqual(
      found.map((x) => x.requestId),
      [r.requestId],
    );
  });

  const record = (requestId: string, status = 200): DecisionRecord => ({
    at: Date.now(),
    requestId,
    method: "POST",
    path: "/cb/direct",
    rule: undefined,
    objectId: requestId,
    targetEnv: "prod",
    reason: "no_rule",
    detail: undefined,
    status,
    latencyMs: 1,
    error: undefined,
  });

  test("a row PostgreSQL refuses for a reason not escaped beforehand is dropped, counted and logged alone; the rest of its batch is recorded", async () => {
    const { log, at } = capturedLogger();
    const drops: Array<{ reason: string; count: number }> = [];
    const decisionLog = createDecisionLog({
      pool: d.svc.ctx.pool,
      bus: d.svc.ctx.bus,
      log,
      flushMs: 10_000,
      maxQueue: 1000,
      closeTimeoutMs: 5_000,
      events: "none",
      onDrop: (reason, count) => void drops.push({ reason, count }),
    });
    try {
      decisionLog.add(record("isolated-before"));
      decisionLog.add(record("isolated-unstorable", 2 ** 40)); // out of range for the integer column
      decisionLog.add(record("isolated-after"));
      await decisionLog.flush();
      const ids = (await decisions()).map((x) => x.requestId);
      assert.ok(ids.includes("isolated-before") && ids.includes("isolated-after"), "the rows beside the bad one are recorded");
      assert.ok(!ids.includes("isolated-unstorable"));
      assert.deepEqual(drops, [{ reason: "unstorable", count: 1 }]);
      const [line, ...more] = at("error");
      assert.equal(more.length, 0);
      assert.match(JSON.stringify(line), /isolated-unstorable/);
      assert.match(JSON.stringify(line), /22003/);
    } finally {
      await decisionLog.close();
    }
  });

  test("text beyond ASCII, in the decision and in its kept callback's headers, is recorded as it was, beside its exact bytes and latency", async () => {
    const decisionLog = createDecisionLog({
      pool: d.svc.ctx.pool,
      bus: d.svc.ctx.bus,
      log: capturedLogger().log,
      flushMs: 10_000,
      maxQueue: 1000,
      closeTimeoutMs: 5_000,
      events: "none",
      onDrop: () => {},
      storeMaxBytes: 1024,
    });
    const body = Buffer.from([0xb6, 0xa9, 0xb5, 0xa5, 0x00, 0xff]); // GBK 订单, a NUL and a byte no text encoding reads
    const headers = ["X-Note", 'caf\u00e9 "quoted" \\ back', "X-Emoji", "\u{1F4B3}", "content-length", "6"];
    try {
      decisionLog.add({
        ...record("beyond-ascii"),
        objectId: "\u8ba2\u5355-7 \u{1F4B3}",
        detail: 'line one\nline two "quoted"',
        latencyMs: 12.3456789,
        payload: { target: "/cb/direct?q=\u00e9", headers, body },
      });
      await decisionLog.flush();
      const { rows } = await d.svc.ctx.pool.query(
        `SELECT d.object_id, d.detail, d.latency_ms, p.target, p.headers, p.body, p.body_size
         FROM decisions d JOIN callback_payloads p ON p.decision_id = d.id WHERE d.request_id = 'beyond-ascii'`,
      );
      assert.equal(rows.length, 1);
      const [row] = rows;
      assert.equal(row.object_id, "\u8ba2\u5355-7 \u{1F4B3}");
      assert.equal(row.detail, 'line one\nline two "quoted"');
      assert.equal(row.latency_ms, 12.346, "to the microsecond");
      assert.equal(row.target, "/cb/direct?q=\u00e9");
      assert.deepEqual(row.headers, headers);
      assert.deepEqual(row.body, body);
      assert.equal(row.body_size, body.length);
    } finally {
      await decisionLog.close();
    }
  });

  test("while PostgreSQL refuses connections nothing is dropped and one warning is logged, however many retries; everything is written once it is back", async () => {
    const { log, at } = capturedLogger();
    const drops: unknown[] = [];
    const decisionLog = createDecisionLog({
      pool: d.svc.ctx.pool,
      bus: d.svc.ctx.bus,
      log,
      flushMs: 10,
      maxQueue: 1000,
      closeTimeoutMs: 5_000,
      events: "all",
      onDrop: (reason, count) => void drops.push({ reason, count }),
    });
    try {
      await setDatabaseOutage(d.databaseUrl, true);
      try {
        decisionLog.add(record("outage-1"));
        decisionLog.add(record("outage-2"));
        await eventually("three failed writes", () => at("debug").filter((l) => /retry/.test(l.msg)).length >= 3);
        decisionLog.add(record("outage-3"));
        assert.equal(at("warn").length, 1, JSON.stringify(at("warn")));
      } finally {
        await setDatabaseOutage(d.databaseUrl, false);
      }
      await eventually("the queued decisions written", async () => {
        const ids = (await decisions()).map((x) => x.requestId);
        return ["outage-1", "outage-2", "outage-3"].every((id) => ids.includes(id));
      });
      await eventually("writing again, said once", () => at("info").some((l) => /again/.test(l.msg)));
      assert.equal(at("warn").length, 1);
      assert.deepEqual(drops, []);
    } finally {
      await decisionLog.close();
    }
  });
});

/** The dispatcher as a real process on `databaseUrl`, with prod configured; its output collected for the test to read. */
async function startDispatcherProcess(databaseUrl: string, prodUrl: string, extraEnv: Record<string, string> = {}) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "..", "src", "main.ts")], {
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      AUTH_API_KEYS: `ops:operator:${sha256Hex(operatorKey)}`,
      DECISION_FLUSH_MS: "20",
      ...extraEnv,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const proc = { child, base, output: "" };
  child.stdout.on("data", (c) => (proc.output += c));
  child.stderr.on("data", (c) => (proc.output += c));
  await eventually("the dispatcher ready", async () => (await fetch(`${base}/readyz`)).ok, 30_000, 100);
  const put = await fetch(`${base}/_dispatcher/v1/environments/prod`, {
    method: "PUT",
    headers: { authorization: `Bearer ${operatorKey}`, "content-type": "application/json" },
    body: JSON.stringify({ baseUrl: prodUrl, production: true }),
  });
  assert.equal(put.status, 200);
  return proc;
}

/** Sends one callback no rule matches; it goes to production. */
async function callback(base: string): Promise<void> {
  const res = await fetch(`${base}/cb/any`, { method: "POST", headers: { "x-signature": sign(secret, "{}") }, body: "{}" });
  assert.equal(res.status, 200, "production still answers whatever PostgreSQL does");
  await res.arrayBuffer();
}

/** Stops the process with SIGTERM; resolves with its exit code. */
async function terminate(child: ReturnType<typeof spawn>): Promise<number | null> {
  const exit = once(child, "exit");
  child.kill("SIGTERM");
  const [code] = await exit;
  return code as number | null;
}

describe("callbacks refused before routing", () => {
  test("a callback refused before any rule is looked at (a dot segment, two Host lines) is logged with its request id and reason", () =>
    withDispatcherProcess(async (proc, prod) => {
      const port = Number(new URL(proc.base).port);
      // Raw requests: fetch would normalise the dot segments and refuses a second Host.
      for (const [requestId, head] of [
        ["refused-dots", "POST /cb/%2e%2e/admin?access_token=s3cret HTTP/1.1\r\nHost: x\r\n"],
        ["refused-hosts", "POST /cb/any HTTP/1.1\r\nHost: x\r\nHost: y\r\n"],
      ] as const) {
        const answer = await rawExchange(port, `${head}X-Request-Id: ${requestId}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`);
        assert.match(answer, /^HTTP\/1\.1 400/);
        await eventually(`${requestId} logged`, async () => proc.output.includes(`"requestId":"${requestId}"`));
      }
      const lines = proc.output.split("\n").filter((l) => l.includes('"requestId":"refused-'));
      assert.match(lines.find((l) => l.includes("refused-dots"))!, /callback refused before routing: request path has a dot segment/);
      assert.match(lines.find((l) => l.includes("refused-hosts"))!, /callback refused before routing: .*Host/);
      assert.ok(!proc.output.includes("s3cret"), "the query is not logged");
      assert.equal(prod.received.length, 0, "nothing forwarded");
    }));
});

/** Runs `fn` with the dispatcher as a real process on a fresh database, production a signed stub; all stopped and dropped after. */
async function withDispatcherProcess(
  fn: (
    proc: Awaited<ReturnType<typeof startDispatcherProcess>>,
    prod: Awaited<ReturnType<typeof startSignedStub>>,
    databaseUrl: string,
  ) => Promise<void>,
): Promise<void> {
  const db = await createTestDatabase();
  const prod = await startSignedStub("prod", secret);
  let child: ReturnType<typeof spawn> | undefined;
  try {
    const proc = await startDispatcherProcess(db.url, prod.url);
    child = proc.child;
    await fn(proc, prod, db.url);
  } finally {
    child?.kill("SIGKILL");
    await prod.close();
    await db.drop();
  }
}

/** Writes `request` on a fresh connection and resolves with everything the server sent until it closed. */
function rawExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.end(request));
    let answer = "";
    socket.on("data", (c) => (answer += c));
    socket.on("end", () => resolve(answer));
    socket.on("error", reject);
  });
}

describe("shutdown", () => {
  test("decisions that cannot be written when the process stops are reported, and it exits 1", () =>
    withDispatcherProcess(async (proc, _prod, databaseUrl) => {
      await setDatabaseOutage(databaseUrl, true);
      try {
        await callback(proc.base);
        assert.equal(await terminate(proc.child), 1, proc.output);
        assert.match(proc.output, /decisions lost at shutdown: 1 could not be written/);
        // Said once: before, again as "close hook failed" with a stack trace (a trial).
        assert.doesNotMatch(proc.output, /close hook failed/);
      } finally {
        await setDatabaseOutage(databaseUrl, false);
      }
    }));

  test("a hung PostgreSQL at shutdown: the decisions not confirmed written are counted in the log before the process is killed, and it exits 1", async () => {
    const db = await createTestDatabase();
    const prod = await startSignedStub("prod", secret);
    const locker = new pg.Client({ connectionString: db.url });
    let child: ReturnType<typeof spawn> | undefined;
    try {
      // A small shutdown bound keeps the test short; the writer gets half of it.
      const proc = await startDispatcherProcess(db.url, prod.url, { SHUTDOWN_TIMEOUT_MS: "2000" });
      child = proc.child;
      await locker.connect();
      await locker.query("BEGIN");
      await locker.query("LOCK TABLE callback_dispatcher.decisions IN ACCESS EXCLUSIVE MODE");
      for (let i = 0; i < 5; i++) await callback(proc.base);
      await eventually("the dispatcher's write waiting on the lock", async () => {
        const { rows } = await locker.query(
          "SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'callback_dispatcher.decisions'::regclass",
        );
        return rows.length > 0;
      });
      assert.equal(await terminate(child), 1, proc.output);
      assert.match(proc.output, /decisions lost at shutdown: 5 not confirmed written/);
      assert.doesNotMatch(proc.output, /close hook failed/);
    } finally {
      child?.kill("SIGKILL");
      await locker.end();
      await prod.close();
      await db.drop();
    }
  });
});
