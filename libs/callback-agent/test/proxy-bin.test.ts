import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

const run = promisify(execFile);
const repo = path.resolve(__dirname, "../../..");
const agentLib = path.join(repo, "libs/callback-agent");
const usage = "usage: callback-agent-proxy --listen <port> --upstream <url>";
// npx offline: a bin no install provides fails at once instead of being looked up on the public registry.
const offline = { ...process.env, npm_config_offline: "true" };

/** Runs a command; resolves with its exit code and output whether it succeeded or not. */
const outcome = (file: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }) =>
  run(file, args, options).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

describe("callback-agent-proxy in the workspace, as the README runs it", () => {
  test("the bin is a file git keeps, so `npm ci` in a fresh clone links it before anything is built", async () => {
    const manifest = JSON.parse(await readFile(path.join(agentLib, "package.json"), "utf8"));
    const target: string = manifest.bin["callback-agent-proxy"];
    // Tracked, or new and not ignored (as dist/ is): what a commit takes along.
    const { stdout } = await run("git", ["ls-files", "--cached", "--others", "--exclude-standard", "--", target], { cwd: agentLib });
    assert.equal(stdout, `${target}\n`, `${target} is not a file git keeps, so a fresh clone lacks it when npm ci runs`);
    assert.equal(await realpath(path.join(repo, "node_modules/.bin/callback-agent-proxy")), path.join(agentLib, target));
  });

  test("`npx --no -- callback-agent-proxy --help` from the repository root runs this repository's CLI", async () => {
    const result = await outcome("npx", ["--no", "--", "callback-agent-proxy", "--help"], { cwd: repo, env: offline });
    assert.equal(result.code, 0, result.stderr);
    assert.ok(result.stdout.startsWith(usage), result.stdout);
  });

  test("before the build, the bin says what to run", async () => {
    // The bin on its own, as a fresh clone has it: no dist/ beside it.
    const dir = await mkdtemp(path.join(tmpdir(), "agent-bin-"));
    try {
      await mkdir(path.join(dir, "bin"));
      await copyFile(path.join(agentLib, "bin/callback-agent-proxy.js"), path.join(dir, "bin/callback-agent-proxy.js"));
      const result = await outcome(process.execPath, [path.join(dir, "bin/callback-agent-proxy.js"), "--help"], { cwd: dir });
      assert.equal(result.code, 1);
      assert.equal(result.stderr, "callback-agent-proxy: not built yet; from the repository root run: npx tsc -b libs/callback-agent\n");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("callback-agent-proxy from the packed tarball, installed into an empty app", () => {
  let dir: string;
  let app: string;
  let packed: string[];

  before(async () => {
    assert.ok(existsSync(path.join(agentLib, "dist/proxy-cli.js")), 'the agent is not built: run "npx tsc -b libs/callback-agent"');
    dir = await mkdtemp(path.join(tmpdir(), "callback-agent-pack-"));
    const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", dir], { cwd: agentLib });
    const [tarball] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    packed = tarball!.files.map((f) => f.path);
    app = path.join(dir, "app");
    await mkdir(app);
    await writeFile(path.join(app, "package.json"), JSON.stringify({ name: "app", private: true }));
    // Its dependencies come from the registry under their own names; the cache `npm ci` filled serves them.
    await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts", path.join(dir, tarball!.filename)], {
      cwd: app,
    });
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("the tarball carries the bin and the CLI it loads", () => {
    for (const file of ["bin/callback-agent-proxy.js", "dist/proxy-cli.js"]) assert.ok(packed.includes(file), `${file} is in the tarball`);
  });

  test("./node_modules/.bin/callback-agent-proxy runs, and stops at start-up naming what is missing", async () => {
    const bin = path.join(app, "node_modules/.bin/callback-agent-proxy");
    const help = await outcome(bin, ["--help"], { cwd: app });
    assert.equal(help.code, 0, help.stderr);
    assert.ok(help.stdout.startsWith(usage), help.stdout);
    const { OPSPLANE_DISPATCHER_URL: _url, OPSPLANE_ENV: _env, ...env } = process.env;
    const started = await outcome(bin, ["--listen", "0", "--upstream", "http://127.0.0.1:1"], { cwd: app, env });
    assert.equal(started.code, 1);
    assert.equal(started.stderr, "callback-agent-proxy: OPSPLANE_DISPATCHER_URL and OPSPLANE_ENV must be set; agent not started\n");
  });

  test("`npx --no -- callback-agent-proxy --help` in the app runs the installed CLI", async () => {
    const result = await outcome("npx", ["--no", "--", "callback-agent-proxy", "--help"], { cwd: app, env: offline });
    assert.equal(result.code, 0, result.stderr);
    assert.ok(result.stdout.startsWith(usage), result.stdout);
  });
});
