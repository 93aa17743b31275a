import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { eventually, processUsage } from "@opsplane/testing";
import { agentApp, startDispatcher } from "./helpers/dispatcher.js";
import { startSignedStub } from "./helpers/signed-stub.js";

const repoRoot = path.join(__dirname, "..", "..", "..");
const appFile = path.join(__dirname, "fixtures", "test-env-app.js");

/** Starts a Node process that prints {"port":N} when listening; resolves with it and its port. */
async function startApp(args: string[], env: NodeJS.ProcessEnv): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, [...args, appFile], { cwd: repoRoot, env, stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once("line", resolve);
    proc.once("exit", (code) => reject(new Error(`app exited with ${code}`)));
  });
  return { proc, url: `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}` };
}

const pay = (url: string, orderNo: string) =>
  fetch(`${url}/api/pay`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ orderNo }) }).then(
    (res) => res.arrayBuffer(),
  );

// Node hands `--import` to every worker thread; an agent that started again in each of its own
// sandbox workers multiplied threads until the app died (11 → 65 threads in 12 s).
describe("an app under the agent with an interface-side script rule", () => {
  let dispatcher: Awaited<ReturnType<typeof startDispatcher>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;
  let app: { proc: ChildProcess; url: string };
  let peer: { proc: ChildProcess; url: string };

  const registeredBySit = (id: string, timeoutMs?: number) =>
    eventually(
      `${id} to be registered by sit`,
      async () => {
        const { body } = await dispatcher.api("GET", `/_dispatcher/v1/registrations/pay-script/${id}`);
        return body.env === "sit";
      },
      timeoutMs,
    );

  before(async () => {
    sit = await startSignedStub("sit", "secret");
    dispatcher = await startDispatcher();
    assert.equal((await dispatcher.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url })).status, 200);
    const rule = {
      interface: {
        pattern: "/api/pay",
        method: "POST",
        id: { kind: "script", expr: "function extract(msg) { return JSON.parse(msg.body).orderNo; }" },
        sample: { path: "/api/pay", body: '{"orderNo":"ORD-1"}', expectId: "ORD-1" },
      },
      callback: { pattern: "/notify/pay", id: { kind: "json", expr: "orderNo" } },
      ttlSeconds: 600,
    };
    const saved = await dispatcher.api("PUT", "/_dispatcher/v1/rules/pay-script", rule);
    assert.equal(saved.status, 200, JSON.stringify(saved.body));
    app = await startApp(["--import", "@opsplane/callback-agent"], {
      ...process.env,
      OPSPLANE_DISPATCHER_URL: dispatcher.url,
      OPSPLANE_ENV: "sit",
      OPSPLANE_AGENT_TOKEN: `${agentApp.id}:${agentApp.secret}`,
      OPSPLANE_RULES_REFRESH_MS: "100",
      OPSPLANE_FLUSH_INTERVAL_MS: "20",
    });
    // The agent extracts ids once it has fetched the rules and started its sandbox: until an order is registered, try another.
    let warmUp = 0;
    await eventually(
      "the agent to extract ids with the script rule",
      async () => {
        const id = `WARM-${warmUp++}`;
        await pay(app.url, id);
        return registeredBySit(id, 1_000);
      },
      30_000,
    );
    // The same app without the agent, in the same run: what this machine's Node costs at rest.
    peer = await startApp([], process.env);
  });

  after(async () => {
    app?.proc.kill("SIGKILL");
    peer?.proc.kill("SIGKILL");
    await dispatcher?.close();
    await sit?.close();
  });

  test("keeps one sandbox: threads and memory stay bounded while ids are extracted over time", async () => {
    const samples: Array<{ threads: number; rssBytes: number }> = [];
    // Twenty rounds of traffic, each confirmed end to end, while the agent re-reads its rules every 100 ms.
    for (let round = 0; round < 20; round++) {
      const ids = Array.from({ length: 10 }, (_, i) => `ORD-${round}-${i}`);
      for (const id of ids) await pay(app.url, id);
      await registeredBySit(ids.at(-1)!);
      samples.push(await processUsage(app.proc.pid!));
    }
    const rest = await processUsage(peer.proc.pid!);
    const first = samples[0]!;
    const most = { threads: Math.max(...samples.map((s) => s.threads)), rssBytes: Math.max(...samples.map((s) => s.rssBytes)) };
    const seen = `peer at rest ${rest.threads} threads; app ${samples.map((s) => s.threads).join(",")} threads`;
    // The agent adds two sandbox workers and libuv's pool of four; a worker that started another agent adds two more each time.
    assert.ok(most.threads <= rest.threads + 6 + 2, `threads bounded: ${seen}`);
    assert.ok(most.threads <= first.threads, `no thread appears after the first round: ${seen}`);
    assert.ok(most.rssBytes < rest.rssBytes + 200 * 1024 * 1024, `memory bounded: ${most.rssBytes} bytes vs ${rest.rssBytes} at rest`);
  });
});
