/**
 * Measures the registration window: how long after interface A is sent a registration becomes
 * routable, with the agent's defaults, a real app under `node --import @opsplane/callback-agent`,
 * the dispatcher with Redis and PostgreSQL. Then races each callback against its A (both sent at
 * once), with and without a rule `holdMs`, and counts where the callbacks went. (The app answers these
 * paths 404; ids in A's request are reported whatever A answers.)
 *
 *   DATABASE_URL=… REDIS_URL=… node --import tsx services/callback-dispatcher/test/registration-window.measure.ts [rounds]
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { eventually } from "@opsplane/testing";
import { agentApp, startDispatcher } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

const rounds = Number(process.argv[2] ?? 100);
const secret = "s";

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! * 10) / 10;
};

async function main() {
  const prod = await startSignedStub("prod", secret);
  const sit = await startSignedStub("sit", secret);
  const d = await startDispatcher();
  await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true });
  await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url, idPatterns: { "*": "SIT-[0-9]+" } });
  for (const [name, holdMs] of [
    ["nohold", 0],
    ["hold", 3_000],
  ] as const) {
    await d.api("PUT", `/_dispatcher/v1/rules/${name}`, {
      interface: { pattern: `/api/${name}`, id: { kind: "json", expr: "orderNo" } },
      callback: { pattern: `/notify/${name}`, id: { kind: "json", expr: "out_trade_no" } },
      ttlSeconds: 600,
      holdMs,
    });
  }
  const version = (await d.api("GET", "/_dispatcher/v1/rules")).body.version;
  const app = spawn(process.execPath, ["--import", "@opsplane/callback-agent", path.join(__dirname, "fixtures", "test-env-app.js")], {
    cwd: path.join(__dirname, "..", "..", ".."),
    env: {
      ...process.env,
      OPSPLANE_DISPATCHER_URL: d.url,
      OPSPLANE_ENV: "sit",
      OPSPLANE_AGENT_TOKEN: `${agentApp.id}:${agentApp.secret}`,
      OPSPLANE_RULES_REFRESH_MS: "200",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = await new Promise<string>((resolve) => createInterface({ input: app.stdout! }).once("line", resolve));
  const appUrl = `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}`;
  await eventually("the agent to load the rules", async () => {
    const { agents } = (await d.api("GET", "/_dispatcher/v1/agents")).body as { agents: Array<{ rulesVersion: number }> };
    return agents.some((a) => a.rulesVersion === version);
  });

  const callA = (rule: string, id: string) =>
    fetch(`${appUrl}/api/${rule}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ orderNo: id }),
    });
  const callback = async (rule: string, id: string) => {
    const body = Buffer.from(JSON.stringify({ out_trade_no: id }));
    const res = await fetch(`${d.url}/notify/${rule}`, { method: "POST", headers: { "x-signature": sign(secret, body) }, body });
    await res.arrayBuffer();
    return res.headers.get("x-served-by");
  };

  // 1. Registration latency: A sent → registration stored (PostgreSQL clock, same machine).
  const latencies: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const id = `SIT-1${String(i).padStart(6, "0")}`;
    const sent = Date.now();
    await (await callA("nohold", id)).arrayBuffer();
    const at = await eventually(
      `${id} registered`,
      async () => {
        const { rows } = await d.svc.ctx.pool.query<{ ms: string }>(
          "SELECT (extract(epoch FROM registered_at) * 1000)::float8 AS ms FROM registrations WHERE rule = 'nohold' AND object_id = $1",
          [id],
        );
        return rows[0] ? Number(rows[0].ms) : undefined;
      },
      10_000,
      2,
    );
    latencies.push(at - sent);
  }

  // 2. Callback sent at the same instant as A, without and with holdMs.
  const race = async (rule: string, base: number) => {
    const where: Record<string, number> = {};
    for (let i = 0; i < rounds; i++) {
      const id = `SIT-${base + i}`;
      const [, servedBy] = await Promise.all([callA(rule, id).then((r) => r.arrayBuffer()), callback(rule, id)]);
      where[servedBy ?? "none"] = (where[servedBy ?? "none"] ?? 0) + 1;
    }
    return where;
  };
  const noHold = await race("nohold", 2_000_000);
  const withHold = await race("hold", 3_000_000);
  const held = await eventually("the held decisions", async () => {
    const { rows } = await d.svc.ctx.pool.query<{ detail: string }>(
      "SELECT detail FROM decisions WHERE rule = 'hold' AND detail LIKE 'held %'",
    );
    return rows.length >= withHold.sit! ? rows.map((r) => Number(/held (\d+) ms/.exec(r.detail)?.[1])) : undefined;
  });
  process.stdout.write(
    `${JSON.stringify({
      rounds,
      registrationLatencyMs: { p50: pct(latencies, 50), p90: pct(latencies, 90), p99: pct(latencies, 99), max: pct(latencies, 100) },
      callbackWithA: { holdMs0: noHold, holdMs3000: withHold },
      heldMs: held.length ? { p50: pct(held, 50), p99: pct(held, 99), max: pct(held, 100), count: held.length } : undefined,
    })}\n`,
  );
  app.kill("SIGTERM");
  await d.close();
  await prod.close();
  await sit.close();
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
