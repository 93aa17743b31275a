import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";

const repoRoot = path.join(__dirname, "..", "..", "..");

// Node runs `--import` again in every worker thread: an app with a worker pool ran one agent per worker.
describe("an app with its own worker pool under the agent", () => {
  const fetches = { first: 0, all: 0, inFlight: 0, mostInFlight: 0 };
  let dispatcher: http.Server;
  let app: ChildProcess;

  before(async () => {
    // Stands in for callback-dispatcher's rules endpoint, slower than the agent's refresh interval;
    // an agent's first fetch is the one without an ETag.
    dispatcher = http.createServer((req, res) => {
      fetches.all++;
      if (!req.headers["if-none-match"]) fetches.first++;
      fetches.mostInFlight = Math.max(fetches.mostInFlight, ++fetches.inFlight);
      setTimeout(() => {
        fetches.inFlight--;
        if (req.headers["if-none-match"] === '"1"') return res.writeHead(304).end();
        res.writeHead(200, { "content-type": "application/json", etag: '"1"' }).end(JSON.stringify({ version: 1, rules: [] }));
      }, 150);
    });
    await new Promise<void>((r) => dispatcher.listen(0, "127.0.0.1", r));
    app = spawn(process.execPath, ["--import", "@opsplane/callback-agent", path.join(__dirname, "fixtures", "worker-pool-app.cjs")], {
      cwd: repoRoot,
      env: {
        ...process.env,
        OPSPLANE_DISPATCHER_URL: `http://127.0.0.1:${(dispatcher.address() as AddressInfo).port}`,
        OPSPLANE_ENV: "sit",
        OPSPLANE_RULES_REFRESH_MS: "50",
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    await new Promise<string>((resolve, reject) => {
      createInterface({ input: app.stdout! }).once("line", resolve);
      app.once("exit", (code) => reject(new Error(`app exited with ${code}`)));
    });
  });

  after(async () => {
    app?.kill("SIGKILL");
    await new Promise((r) => dispatcher?.close(r));
  });

  test("runs one agent, on the main thread, with one rules fetch at a time", async () => {
    // Enough refresh rounds for every agent in the process to have made its first fetch.
    await eventually("five rule fetches", () => fetches.all >= 5);
    assert.equal(fetches.first, 1, `agents that fetched the rules: ${fetches.first}`);
    assert.equal(fetches.mostInFlight, 1, "fetches overlapped");
  });
});
