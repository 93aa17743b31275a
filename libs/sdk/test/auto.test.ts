import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { appOptions, type Center, startCenter, terminalKey } from "./core-harness.js";

const repoRoot = path.join(__dirname, "..", "..", "..");
const fixture = path.join(__dirname, "fixtures", "auto-app.cjs");

/** Runs a fixture app under `--import @opsplane/sdk/auto` (the built package) with `env`. */
function runApp(env: Record<string, string>, app = fixture) {
  const child = spawn(process.execPath, ["--import", "@opsplane/sdk/auto", app], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out: string[] = [];
  const err: string[] = [];
  createInterface({ input: child.stdout! }).on("line", (l) => out.push(l));
  createInterface({ input: child.stderr! }).on("line", (l) => err.push(l));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, out, err, exited };
}

describe("auto mode: node --import @opsplane/sdk/auto app.js", () => {
  let center: Center;
  const running: ChildProcess[] = [];

  before(async () => {
    center = await startCenter({ redis: false });
  });
  after(async () => {
    for (const c of running) c.kill("SIGKILL");
    await center?.close();
  });

  const envOf = (o: ReturnType<typeof appOptions>["options"]) => ({
    OPSPLANE_CONFIG_URL: center.url,
    OPSPLANE_APP_ID: o.appId,
    OPSPLANE_APP_SECRET: o.secret,
    OPSPLANE_ENV: "uat",
    OPSPLANE_SERVICE_PORT: "8080",
    OPSPLANE_TERMINAL_PORT: "0",
    OPSPLANE_TERMINAL_KEYS: terminalKey.publicKeyEntry,
    OPSPLANE_LOG_LEVEL: "warn",
  });

  test("starts the app after joining, with env-like technical values in process.env, once per process, governing its server", async () => {
    const { options } = appOptions(center.url);
    await center.put("technical", options.appId, "uat", "DB_URL", "postgres://from-config-center/loans");
    await center.put("technical", options.appId, "uat", "db.pool", 7);
    await center.put("governance", options.appId, "", "route/get.closed", { enabled: false });
    const app = runApp(envOf(options));
    running.push(app.child);
    const ready = await eventually("the app's ready line", () => app.out.find((l) => l.startsWith("ready ")), 20_000);
    const [, port, dbUrl, pool, state] = ready.split(" ");
    assert.equal(state, "joined", "getSdk() hands the app the SDK auto mode started");
    assert.equal(dbUrl, "postgres://from-config-center/loans", "the app read config-center's value from its environment");
    assert.equal(pool, "-", "keys that are not environment-variable names stay out of process.env");

    const open = await fetch(`http://127.0.0.1:${port}/open`);
    assert.equal(open.status, 200);
    const closed = await fetch(`http://127.0.0.1:${port}/closed`);
    assert.equal(closed.status, 503, "the route rule closes the interface at the edge");
    assert.equal(closed.headers.get("x-opsplane-governance"), "route-closed");

    const instances = await center.instances(options.appId);
    assert.equal(instances.length, 1, "one SDK per process: the worker thread started none");
    assert.equal(instances[0].state, "online");
    assert.deepEqual(app.err, [], "nothing on stderr");
  });

  test("configuration never sets what Node, the loader or the app's child processes read: skipped, one warning each", async () => {
    const { options } = appOptions(center.url);
    const reserved: Record<string, string> = {
      NODE_OPTIONS: `--require ${path.join(__dirname, "fixtures", "operator-code.cjs")}`,
      NODE_TLS_REJECT_UNAUTHORIZED: "0",
      HTTPS_PROXY: "http://proxy.invalid:3128",
      LD_PRELOAD: "/nonexistent/preload.so",
      PATH: "/nonexistent/bin",
      OPSPLANE_CONFIG_URL: "http://config.invalid",
      CURL_CA_BUNDLE: "/tmp/operator-ca.pem",
      HOME: "/tmp/operator-home",
    };
    for (const [k, v] of Object.entries(reserved)) await center.put("technical", options.appId, "uat", k, v);
    await center.put("technical", options.appId, "uat", "http_proxy", "http://proxy.invalid:3128");
    await center.put("technical", options.appId, "uat", "DB_URL", "postgres://from-config-center/loans");
    const app = runApp(envOf(options), path.join(__dirname, "fixtures", "auto-env-app.cjs"));
    running.push(app.child);
    const line = await eventually("the app's env line", () => app.out.find((l) => l.startsWith("env ")), 20_000);
    const { env, child } = JSON.parse(line.slice("env ".length)) as { env: Record<string, string | null>; child: string };
    assert.equal(child, "child ran", "the child process ran none of the operator's code");
    assert.deepEqual(env, {
      DB_URL: "postgres://from-config-center/loans",
      NODE_OPTIONS: null,
      NODE_TLS_REJECT_UNAUTHORIZED: null,
      HTTPS_PROXY: null,
      http_proxy: null,
      LD_PRELOAD: null,
      PATH: process.env.PATH,
      OPSPLANE_CONFIG_URL: center.url,
      CURL_CA_BUNDLE: null,
      HOME: null,
    });
    // Written before the app's code ran, but stderr is another pipe: its lines may come later.
    const warned = () => app.err.map((l) => JSON.parse(l) as { level: string; key?: string }).filter((l) => l.level === "warn");
    await eventually("a warning per skipped key", () => warned().length >= Object.keys(reserved).length);
    assert.deepEqual(
      warned()
        .map((w) => w.key)
        .sort(),
      Object.keys(reserved).sort(),
      app.err.join("\n"),
    );
  });

  test("SIGTERM to an app that does not handle it: the SDK closes (instance offline at once) and the process exits 0", async () => {
    const { options } = appOptions(center.url);
    const app = runApp(envOf(options));
    running.push(app.child);
    await eventually("the app's ready line", () => app.out.find((l) => l.startsWith("ready ")), 20_000);
    await eventually("online at config-center", async () => (await center.instances(options.appId))[0]?.state === "online");
    app.child.kill("SIGTERM");
    assert.equal(await app.exited, 0, "a graceful exit, not Node's default death by signal");
    // Offline from the socket's close, well before config-center's heartbeat timeout (30 s) would say so.
    await eventually("offline at config-center", async () => (await center.instances(options.appId))[0]?.state === "offline", 10_000);
  });

  test("governs a fastify app's routes through fastify's diagnostics channel", async () => {
    const { options } = appOptions(center.url);
    await center.put("governance", options.appId, "", "route/get.closed", { enabled: false });
    const app = runApp(envOf(options), path.join(__dirname, "fixtures", "auto-fastify-app.cjs"));
    running.push(app.child);
    const ready = await eventually("the app's ready line", () => app.out.find((l) => l.startsWith("ready ")), 20_000);
    const port = ready.split(" ")[1];
    assert.equal((await fetch(`http://127.0.0.1:${port}/open`)).status, 200);
    const closed = await fetch(`http://127.0.0.1:${port}/closed`);
    assert.equal(closed.status, 503);
    assert.equal(closed.headers.get("x-opsplane-governance"), "route-closed");
  });

  test("a missing variable: one line naming it, exit code 1", async () => {
    const { options } = appOptions(center.url);
    const { OPSPLANE_ENV: _, ...env } = envOf(options);
    const app = runApp(env);
    running.push(app.child);
    assert.equal(await app.exited, 1);
    assert.deepEqual(app.out, []);
    assert.deepEqual(app.err, ["[opsplane-sdk] the app is not started: missing environment variable: OPSPLANE_ENV"]);
  });

  test("a malformed OPSPLANE_TERMINAL_KEYS: one line naming the entry, exit code 1", async () => {
    const { options } = appOptions(center.url);
    const app = runApp({ ...envOf(options), OPSPLANE_TERMINAL_KEYS: `${terminalKey.publicKeyEntry},monitor-center` });
    running.push(app.child);
    assert.equal(await app.exited, 1);
    assert.deepEqual(app.out, [], "the app's own code never ran");
    assert.deepEqual(app.err, [
      '[opsplane-sdk] the app is not started: OPSPLANE_TERMINAL_KEYS: entry "monitor-center" is not keyId:base64(spki der)',
    ]);
  });

  test("a refused app does not start: one line on stderr, exit code 1", async () => {
    const { options } = appOptions(center.url);
    const claim = runApp(envOf(options));
    running.push(claim.child);
    await eventually("the first app ready", () => claim.out.find((l) => l.startsWith("ready ")), 20_000);
    claim.child.kill("SIGTERM");

    const refused = runApp({ ...envOf(options), OPSPLANE_APP_SECRET: "another-secret" });
    running.push(refused.child);
    assert.equal(await refused.exited, 1);
    assert.deepEqual(refused.out, [], "the app's own code never ran");
    assert.equal(refused.err.length, 1, refused.err.join("\n"));
    assert.match(
      refused.err[0]!,
      /^\[opsplane-sdk\] the app is not started: config-center refused the token request \(401\): wrong app id or secret$/,
    );
  });
});
