import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";

const run = promisify(execFile);
const hook = path.join(__dirname, "fixtures", "start-up-hook.mjs");
const hostApp = path.join(__dirname, "fixtures", "host-app.cjs");

// An agent loaded with `--import` that itself used the sandbox started again in each sandbox
// worker, which started more workers, without end.
describe("sandbox workers and the host's start-up hooks", () => {
  const hostRuns = async (args: string[], env: NodeJS.ProcessEnv) => {
    const { stdout } = await run(process.execPath, [...args, hostApp], { env: { ...process.env, ...env }, timeout: 30_000 });
    return stdout.trim().split("\n");
  };

  test("a hook given with --import runs on the host's main thread only", async () => {
    assert.deepEqual(await hostRuns(["--import", hook], {}), ["hook ran in thread 0", "result 42"]);
  });

  test("a hook given in NODE_OPTIONS runs on the host's main thread only", async () => {
    assert.deepEqual(await hostRuns([], { NODE_OPTIONS: `--import ${hook}` }), ["hook ran in thread 0", "result 42"]);
  });
});
