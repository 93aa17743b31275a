import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { describe, test } from "node:test";
import { eventually } from "@opsplane/testing";

const repoRoot = path.join(__dirname, "..", "..", "..");

/** Starts a small app under the agent with `dispatcherUrl`; resolves with the app's stderr once it is up and the agent has spoken. */
async function agentLineFor(dispatcherUrl: string): Promise<string> {
  const app = spawn(
    process.execPath,
    ["--import", "@opsplane/callback-agent", "-e", "console.log('app up'); setInterval(() => {}, 1000)"],
    {
      cwd: repoRoot,
      env: { ...process.env, OPSPLANE_DISPATCHER_URL: dispatcherUrl, OPSPLANE_ENV: "sit", OPSPLANE_RULES_REFRESH_MS: "50" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  app.stdout!.on("data", (c) => (stdout += c));
  app.stderr!.on("data", (c) => (stderr += c));
  try {
    await eventually("the app up and the agent's line", () => stdout.includes("app up") && stderr.includes("[callback-agent]"));
    return stderr;
  } finally {
    app.kill("SIGKILL");
  }
}

// Whatever is wrong with the URL, the app's logs must not get the password in it.
describe("a dispatcher URL the agent cannot use", () => {
  test("holding credentials: one line that does not repeat them, agent not started, the app runs", async () => {
    assert.equal(
      await agentLineFor("http://agent-sit:URLPASS@127.0.0.1:9"),
      "[callback-agent] OPSPLANE_DISPATCHER_URL must not hold credentials; put them in OPSPLANE_AGENT_TOKEN; agent not started\n",
    );
  });

  test("not a URL: one line that does not repeat it, agent not started, the app runs", async () => {
    assert.equal(
      await agentLineFor("http://agent-sit:URLPASS@[127.0.0.1"),
      "[callback-agent] OPSPLANE_DISPATCHER_URL is not a URL; agent not started\n",
    );
  });
});
