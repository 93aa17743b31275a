import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, statSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { ControlCommandResultSchema, DialTestResponseSchema, SelfTestReportSchema } from "@opsplane/contracts";
import { eventually } from "@opsplane/testing";
import pg from "pg";
import { wrapHttpHandler } from "../src/adapters/node-http.js";
import { RoutesSeen } from "../src/adapters/routes-seen.js";
import { composeEdge } from "../src/edge.js";
import { Governance } from "../src/governance/governance.js";
import { createLogger } from "../src/logger.js";
import { Reporter } from "../src/reports/reporter.js";
import { InterfaceStats } from "../src/stats/interface-stats.js";
import { Authenticator } from "../src/terminal/authenticator.js";
import { DialChecks, dialAnswer } from "../src/terminal/dial.js";
import { parseTerminalKeys } from "../src/terminal/keys.js";
import { newTerminalKey, signTerminalRequest } from "../src/terminal/signing.js";
import { Terminal } from "../src/terminal/terminal.js";
import { ThrottledLog } from "../src/terminal/throttled-log.js";

const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

const control = newTerminalKey("control-center");
const monitor = newTerminalKey("monitor-center");
/** A forger's key under control-center's key id. */
const forged = newTerminalKey("control-center");

type Call = {
  method?: "GET" | "POST";
  body?: unknown;
  instanceId?: string;
  keyId?: string;
  privateKey?: string;
  timestamp?: number;
  nonce?: string;
  headers?: Record<string, string>;
};

/** A signed request to the terminal, as control-center or monitor-center sends it. */
async function call(base: string, target: string, options: Call = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const method = options.method ?? "POST";
  const text = options.body === undefined ? "" : typeof options.body === "string" ? options.body : JSON.stringify(options.body);
  const signed = signTerminalRequest({
    method,
    path: target,
    body: text,
    instanceId: options.instanceId ?? "loan-1",
    keyId: options.keyId ?? "control-center",
    privateKey: options.privateKey ?? control.privateKeyPem,
    timestamp: options.timestamp,
    nonce: options.nonce,
  });
  const res = await fetch(`${base}${target}`, {
    method,
    headers: { "content-type": "application/json", ...signed, ...options.headers },
    body: method === "GET" ? undefined : text,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

function captureLog() {
  const lines: Array<{ level: string; msg: string }> = [];
  return { lines, log: createLogger("debug", (l) => lines.push(JSON.parse(l))) };
}

describe("terminal", () => {
  const { lines, log } = captureLog();
  let instanceId: string | undefined = "loan-1";
  const stats = new InterfaceStats();
  const reporter = new Reporter({ app: "loan", env: "sit", instanceId: () => instanceId, stats, log });
  const db = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  const dialChecks = new DialChecks();
  // The app's own checks: its database echoes the challenge; a dependency that hangs.
  dialChecks.add(
    "db",
    async (challenge) => (await db.query<{ echo: string }>("select $1::text as echo", [challenge.slice(0, 8)])).rows[0]!.echo,
  );
  dialChecks.add("partner-api", () => new Promise(() => {}), { timeoutMs: 100 });
  const governance = new Governance({ log });
  const overrides = () => Object.fromEntries(governance.describe().interfaces.map((i) => [i.code, i.override]));
  let terminal: Terminal;
  let base: string;
  const shutdowns: unknown[] = [];

  before(async () => {
    terminal = new Terminal({
      port: 0,
      host: "127.0.0.1",
      instanceId: () => instanceId,
      log,
      keys: `${control.publicKeyEntry}, ${monitor.publicKeyEntry}`,
      governance,
      reporter,
      dialChecks,
      onShutdown: (cmd) => shutdowns.push(cmd),
      maxBodyBytes: 4096,
    });
    base = `http://127.0.0.1:${await terminal.start()}`;
  });
  after(async () => {
    await terminal.stop();
    await db.end();
  });

  test("a dial test's answer is computed from the challenge and the app's own checks, and verifies", async () => {
    const challenge = "3f9a1c0e5b7d4a2c9e8f1b3d5a7c9e0f";
    const { status, body } = await call(base, "/opsplane/v1/dial", {
      body: { challenge },
      keyId: "monitor-center",
      privateKey: monitor.privateKeyPem,
    });
    assert.equal(status, 200);
    const answer = fromJson(DialTestResponseSchema, body as JsonValue);
    assert.equal(answer.challenge, challenge);
    assert.equal(answer.instanceId, "loan-1");
    assert.deepEqual(
      answer.checks.map((c) => [c.name, c.ok, c.detail]),
      [
        ["db", true, challenge.slice(0, 8)],
        ["partner-api", false, "timed out after 100 ms"],
      ],
    );
    assert.ok(answer.elapsedMs >= 100);
    assert.equal(answer.answer, dialAnswer(challenge, "loan-1", answer.checks), "monitor-center recomputes the answer from the response");
    assert.match(answer.answer, /^[0-9a-f]{64}$/);

    const again = await call(base, "/opsplane/v1/dial", {
      body: { challenge: "another-random-challenge-0001" },
      keyId: "monitor-center",
      privateKey: monitor.privateKeyPem,
    });
    const second = fromJson(DialTestResponseSchema, again.body as JsonValue);
    assert.notEqual(second.answer, answer.answer, "another challenge, another answer");
    assert.equal(second.checks[0]!.detail, "another-", "the check ran again, with the new challenge");
    assert.equal(second.answer, dialAnswer("another-random-challenge-0001", "loan-1", second.checks));
  });

  test("requests not signed right are refused with 401 naming the reason, and logged at most once per reason", async () => {
    const body = { kind: "instance-offline" };
    const cases: Array<[string, Call, RegExp]> = [
      ["bad signature", { body, privateKey: forged.privateKeyPem }, /signature does not verify with key control-center/],
      [
        "expired timestamp",
        { body, timestamp: Date.now() - 120_000 },
        /timestamp \d+ is 120 s from this instance's clock \(allowed ±60 s\)/,
      ],
      ["future timestamp", { body, timestamp: Date.now() + 90_000 }, /is -90 s from/],
      ["another instance", { body, instanceId: "loan-2" }, /signed for instance "loan-2", this is "loan-1"/],
      ["unknown key", { body, keyId: "someone" }, /unknown key id "someone"/],
      ["unsigned", { body, headers: { "x-opsplane-signature": "" } }, /header x-opsplane-signature is missing/],
      ["short nonce", { body, nonce: "abc" }, /x-opsplane-nonce must be 16 to 128 characters/],
    ];
    for (const [what, options, reason] of cases) {
      const { status, body: answer } = await call(base, "/opsplane/v1/commands", options);
      assert.equal(status, 401, what);
      assert.equal(answer.error, "unauthorized", what);
      assert.match(String(answer.message), reason, what);
    }
    assert.equal(governance.describe().instanceOffline, false, "no refused command was applied");
    // A body changed after signing does not verify either.
    const signed = signTerminalRequest({
      method: "POST",
      path: "/opsplane/v1/commands",
      body: JSON.stringify(body),
      instanceId: "loan-1",
      keyId: "control-center",
      privateKey: control.privateKeyPem,
    });
    const tampered = await fetch(`${base}/opsplane/v1/commands`, {
      method: "POST",
      headers: signed,
      body: JSON.stringify({ kind: "shutdown" }),
    });
    assert.equal(tampered.status, 401);
    assert.deepEqual(shutdowns, []);

    const before = lines.filter((l) => l.msg.includes("refused: signature does not verify")).length;
    for (let i = 0; i < 5; i++)
      assert.equal((await call(base, "/opsplane/v1/status", { method: "GET", privateKey: forged.privateKeyPem })).status, 401);
    assert.equal(
      lines.filter((l) => l.msg.includes("refused: signature does not verify")).length,
      before,
      "a flood of refusals adds no lines within 10 s",
    );
    assert.ok(
      lines.some((l) => l.level === "warn" && /terminal: POST \/opsplane\/v1\/commands from 127\.0\.0\.1 refused: timestamp/.test(l.msg)),
    );
  });

  test("a replayed command is refused", async () => {
    const body = JSON.stringify({ kind: "instance-online" });
    const signed = signTerminalRequest({
      method: "POST",
      path: "/opsplane/v1/commands",
      body,
      instanceId: "loan-1",
      keyId: "control-center",
      privateKey: control.privateKeyPem,
    });
    const send = () => fetch(`${base}/opsplane/v1/commands`, { method: "POST", headers: signed, body });
    const first = await send();
    assert.equal(first.status, 200);
    const replay = await send();
    assert.equal(replay.status, 401);
    assert.match(((await replay.json()) as { message: string }).message, /nonce .* was already used: a replayed request/);
  });

  test("before the instance is registered the terminal answers 503", async () => {
    instanceId = undefined;
    try {
      const { status, body } = await call(base, "/opsplane/v1/status", { method: "GET" });
      assert.equal(status, 503);
      assert.match(String(body.message), /not registered yet/);
    } finally {
      instanceId = "loan-1";
    }
  });

  test("bad input is a 4xx naming the reason, and nothing is applied", async () => {
    const applied = JSON.stringify(governance.describe());
    const bad: Array<[Call, number, RegExp]> = [
      [{ body: "{not json" }, 400, /body is not valid JSON/],
      [{ body: { kind: "throttle", code: "loan.apply", tps: 5, color: "red" } }, 400, /body is not a ControlCommand: .*color/],
      [{ body: { kind: "reboot" } }, 400, /kind "reboot" is not one of throttle, break, interface-offline/],
      [{ body: { kind: "throttle", tps: 5 } }, 400, /throttle needs the interface code in "code"/],
      [{ body: { kind: "throttle", code: "loan.apply" } }, 400, /throttle needs tps, concurrency or both/],
      [{ body: { kind: "throttle", code: "loan.apply", tps: -1 } }, 400, /tps must be above 0/],
      [{ body: { kind: "shutdown", durationMs: 10 } }, 400, /durationMs does not apply to shutdown/],
      [{ body: { kind: "break", code: "x".repeat(5000) } }, 413, /request body exceeds 4096 bytes/],
    ];
    for (const [options, status, reason] of bad) {
      const answer = await call(base, "/opsplane/v1/commands", options);
      assert.equal(answer.status, status, String(reason));
      assert.match(String(answer.body.message), reason);
    }
    const dial = await call(base, "/opsplane/v1/dial", { body: { challenge: "short" } });
    assert.equal(dial.status, 400);
    assert.match(String(dial.body.message), /challenge must be 16 to 256 characters/);
    assert.equal((await call(base, "/opsplane/v1/commands", { method: "GET" })).status, 405);
    assert.equal((await call(base, "/opsplane/v1/nothing", { method: "GET" })).status, 404);
    assert.equal(JSON.stringify(governance.describe()), applied, "nothing reached governance");
  });

  test("commands are applied through governance and answered with what was applied", async () => {
    const throttle = await call(base, "/opsplane/v1/commands", {
      body: { kind: "throttle", code: "loan.apply", tps: 5, requestedBy: "alice" },
    });
    assert.equal(throttle.status, 200);
    const result = fromJson(ControlCommandResultSchema, throttle.body as JsonValue);
    assert.equal(result.applied, "loan.apply: limited to 5 requests/s");
    assert.deepEqual(result.overrides, { "loan.apply": "limited to 5 requests/s" });
    assert.equal(result.instanceId, "loan-1");
    assert.ok(
      lines.some(
        (l) =>
          l.msg ===
          "terminal: command throttle loan.apply signed by control-center (requested by alice): loan.apply: limited to 5 requests/s",
      ),
    );

    const offline = await call(base, "/opsplane/v1/commands", { body: { kind: "interface-offline", code: "loan.repay" } });
    assert.deepEqual(fromJson(ControlCommandResultSchema, offline.body as JsonValue).overrides, {
      "loan.apply": "limited to 5 requests/s",
      "loan.repay": "offline",
    });
    assert.deepEqual(overrides(), { "loan.apply": { tps: 5 }, "loan.repay": { offline: true } });
    const down = await call(base, "/opsplane/v1/commands", { body: { kind: "instance-offline" } });
    assert.equal(fromJson(ControlCommandResultSchema, down.body as JsonValue).instanceOffline, true);
    assert.equal(governance.describe().instanceOffline, true);
    const cleared = await call(base, "/opsplane/v1/commands", { body: { kind: "clear" } });
    const clearedResult = fromJson(ControlCommandResultSchema, cleared.body as JsonValue);
    assert.equal(clearedResult.applied, "every override cleared and instance online: config-center's rules alone apply");
    assert.deepEqual(clearedResult.overrides, {});
    assert.equal(clearedResult.instanceOffline, false);
    assert.deepEqual(overrides(), {});
    assert.equal(governance.describe().instanceOffline, false);
  });

  test("an override given a duration lapses by itself", async () => {
    const res = await call(base, "/opsplane/v1/commands", { body: { kind: "break", code: "loan.query", durationMs: 200 } });
    assert.equal(res.body.applied, "loan.query: circuit forced open, answered 503, for 200 ms");
    assert.deepEqual(overrides()["loan.query"], { breakOpen: true });
    await eventually("the break lapsed", () => !("loan.query" in overrides()));
    const status = await call(base, "/opsplane/v1/status", { method: "GET" });
    assert.deepEqual(status.body.overrides, {});
  });

  test("the last self-test report and the status are served to signed callers", async () => {
    const none = await call(base, "/opsplane/v1/report", { method: "GET", keyId: "monitor-center", privateKey: monitor.privateKeyPem });
    assert.equal(none.status, 404);
    assert.match(String(none.body.message), /no self-test report yet/);
    stats.requestFinished("loan.apply", { statusCode: 200, failed: false, durationMs: 12 });
    reporter.build();
    const { status, body } = await call(base, "/opsplane/v1/report", {
      method: "GET",
      keyId: "monitor-center",
      privateKey: monitor.privateKeyPem,
    });
    assert.equal(status, 200);
    const report = fromJson(SelfTestReportSchema, body as JsonValue);
    assert.equal(report.instanceId, "loan-1");
    assert.equal(report.interfaces.find((i) => i.code === "loan.apply")?.requests, 1n);

    const view = await call(base, "/opsplane/v1/status", { method: "GET" });
    assert.equal(view.status, 200);
    assert.equal(view.body.instanceId, "loan-1");
    assert.deepEqual(view.body.dialChecks, ["db", "partner-api"]);
    assert.deepEqual(view.body.governance, JSON.parse(JSON.stringify(governance.describe())));
  });

  test("a throttle command makes the gate bite on the app's real requests; clear lifts it", async () => {
    const app = http.createServer(
      wrapHttpHandler({ edge: composeEdge(governance, [stats]), routes: new RoutesSeen(), log }, (_req, res) => res.end("approved"), {
        code: () => "loan.apply",
      }),
    );
    await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(app.address() as AddressInfo).port}/apply`;
    const burst = async (n: number) => {
      const answers: Array<[number, string | null]> = [];
      for (let i = 0; i < n; i++) {
        const res = await fetch(url);
        await res.arrayBuffer();
        answers.push([res.status, res.headers.get("x-opsplane-governance")]);
      }
      return answers;
    };
    try {
      reporter.build(); // a fresh window for the counts below
      assert.ok((await burst(20)).every(([status]) => status === 200));

      const throttle = await call(base, "/opsplane/v1/commands", { body: { kind: "throttle", code: "loan.apply", tps: 1 } });
      assert.equal(throttle.status, 200);
      const limited = await burst(20);
      const refused = limited.filter(([status]) => status === 429);
      assert.ok(refused.length >= 15, `only ${refused.length} of 20 requests over 1 request/s were refused`);
      assert.ok(refused.every(([, reason]) => reason === "rate-limited"));
      const report = reporter.build().interfaces.find((i) => i.code === "loan.apply")!;
      assert.equal(report.governance["rate-limited"], BigInt(refused.length), "the report counts what the gate answered");
      assert.equal(report.requests, BigInt(40 - refused.length));

      await call(base, "/opsplane/v1/commands", { body: { kind: "break", code: "loan.apply" } });
      assert.deepEqual(await burst(1), [[503, "circuit-open"]]);
      await call(base, "/opsplane/v1/commands", { body: { kind: "clear", code: "loan.apply" } });
      await call(base, "/opsplane/v1/commands", { body: { kind: "interface-offline", code: "loan.apply" } });
      assert.deepEqual(await burst(1), [[503, "interface-offline"]]);
      await call(base, "/opsplane/v1/commands", { body: { kind: "interface-online", code: "loan.apply" } });
      await call(base, "/opsplane/v1/commands", { body: { kind: "instance-offline" } });
      assert.deepEqual(await burst(1), [[503, "instance-offline"]]);
      await call(base, "/opsplane/v1/commands", { body: { kind: "clear" } });
      assert.ok(
        (await burst(20)).every(([status]) => status === 200),
        "cleared: every request served again",
      );
    } finally {
      await new Promise<void>((r) => app.close(() => r()));
    }
  });

  test("scripts/terminal-keys.ts makes a key pair the terminal trusts and sends a signed command with it", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "terminal-keys-"));
    const script = path.join(__dirname, "..", "..", "..", "scripts", "terminal-keys.ts");
    const run = (...args: string[]) => promisify(execFile)(process.execPath, ["--import", "tsx", script, ...args]);
    const { stdout: entry } = await run("new", "ops-cli", "--out", path.join(dir, "ops-cli.pem"));
    assert.match(entry, /^ops-cli:[A-Za-z0-9+/]+=*\n$/);
    assert.equal(statSync(path.join(dir, "ops-cli.pem")).mode & 0o777, 0o600);
    const own = new Terminal({
      port: 0,
      host: "127.0.0.1",
      instanceId: () => "loan-9",
      log,
      keys: entry.trim(),
      governance: new Governance({ log }),
      reporter,
      dialChecks,
      onShutdown: () => {},
    });
    const url = `http://127.0.0.1:${await own.start()}/opsplane/v1/commands`;
    try {
      const { stdout } = await run(
        "call",
        "--key",
        path.join(dir, "ops-cli.pem"),
        "--key-id",
        "ops-cli",
        "--instance",
        "loan-9",
        url,
        "--body",
        '{"kind":"instance-offline"}',
      );
      assert.match(stdout, /^200 .*"applied":"instance offline: every request answered 503"/);
      await assert.rejects(
        run("call", "--key", path.join(dir, "ops-cli.pem"), "--key-id", "ops-cli", "--instance", "loan-1", url, "--body", "{}"),
        (err: { stdout: string }) => /^401 .*signed for instance \\"loan-1\\"/.test(err.stdout),
      );
    } finally {
      await own.stop();
    }
  });

  test("a shutdown command is answered first, then the app stops accepting, finishes in-flight requests and exits 0 as soon as they end", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "fixtures", "terminal-app.ts")], {
      env: { ...process.env, TERMINAL_KEYS: control.publicKeyEntry, INSTANCE_ID: "demo-7" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    const exited = once(child, "exit");
    try {
      const [line] = (await once(child.stdout, "data")) as [Buffer];
      const { appPort, terminalPort } = JSON.parse(line.toString()) as { appPort: number; terminalPort: number };
      const app = `http://127.0.0.1:${appPort}`;
      // fetch keeps its connection alive: the app's keep-alive timeout is 60 s, the grace 30 s.
      const inFlight = fetch(`${app}/?ms=800`);
      await eventually("the slow request under way", async () => (await fetch(`${app}/?ms=0`)).ok);

      const answer = await call(`http://127.0.0.1:${terminalPort}`, "/opsplane/v1/commands", {
        body: { kind: "shutdown", graceMs: 30_000, requestedBy: "bob" },
        instanceId: "demo-7",
      });
      assert.equal(answer.status, 202);
      assert.equal(answer.body.applied, "shutting down: stops accepting, in-flight requests get 30000 ms");

      const finished = await inFlight;
      assert.equal(finished.status, 200, "the request in flight was finished");
      assert.equal(await finished.text(), "done after 800 ms");
      const finishedAt = performance.now();
      const [code, signal] = (await exited) as [number | null, string | null];
      const exitMs = performance.now() - finishedAt;
      assert.ok(exitMs < 3000, `exited ${Math.round(exitMs)} ms after the last response, not at its keep-alive timeout or the grace's end`);
      assert.doesNotMatch(stderr, /connections are cut/);
      assert.equal(code, 0, stderr);
      assert.equal(signal, null);
      await assert.rejects(fetch(`${app}/?ms=0`), "the app no longer accepts connections");
      assert.match(stderr, /command shutdown signed by control-center \(requested by bob\)/);
      assert.match(stderr, /sdk closed/);
    } finally {
      child.kill();
    }
  });
});

describe("terminal authentication parts", () => {
  test("the nonce cache is bounded: when full of live nonces signed requests get 429, and expired ones make room", () => {
    const { log } = captureLog();
    let now = 1_000_000;
    const auth = new Authenticator({
      keys: parseTerminalKeys(control.publicKeyEntry, log),
      instanceId: () => "loan-1",
      nonceCapacity: 2,
      now: () => now,
    });
    const check = () => {
      const headers = signTerminalRequest({
        method: "GET",
        path: "/opsplane/v1/status",
        body: "",
        instanceId: "loan-1",
        keyId: "control-center",
        privateKey: control.privateKeyPem,
        timestamp: now,
      });
      return auth.check("GET", "/opsplane/v1/status", headers, Buffer.alloc(0));
    };
    assert.equal(check().ok, true);
    assert.equal(check().ok, true);
    const full = check();
    assert.deepEqual(full.ok ? undefined : [full.status, full.reason], [
      429,
      "more than 2 signed requests in the replay window; retry later",
    ]);
    now += 61_000;
    assert.equal(check().ok, true, "nonces whose timestamps left the window are forgotten");
  });

  test("OPSPLANE_TERMINAL_KEYS entries that do not parse are left out with a line; the others work", () => {
    const { lines, log } = captureLog();
    const keys = parseTerminalKeys(`broken, nokey:AAAA, ${control.publicKeyEntry} ,`, log);
    assert.deepEqual([...keys.keys()], ["control-center"]);
    assert.equal(lines.length, 2);
    assert.match(lines[0]!.msg, /left out: entry "broken" is not keyId:base64\(spki der\)/);
    assert.match(lines[1]!.msg, /left out: key nokey is not a public key/);
  });

  test("refusals are logged once per reason per 10 s, then with the number left out", () => {
    const { lines, log } = captureLog();
    let now = 0;
    const throttled = new ThrottledLog(log, 10_000, () => now);
    for (let i = 0; i < 5; i++) throttled.warn("signature", "refused: signature does not verify");
    throttled.warn("replay", "refused: replayed");
    now = 10_000;
    throttled.warn("signature", "refused: signature does not verify");
    assert.deepEqual(
      lines.map((l) => l.msg),
      ["refused: signature does not verify", "refused: replayed", "refused: signature does not verify (and 4 more like it not logged)"],
    );
  });
});
