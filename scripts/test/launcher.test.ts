import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { eventually, freePort } from "@opsplane/testing";
import { services } from "../services.js";

// World-readable, as .data is: as root the database server runs as the postgres user.
const dataDir = mkdtempSync(path.join(tmpdir(), "opsplane-run-"));
chmodSync(dataDir, 0o755);
after(() => rmSync(dataDir, { recursive: true, force: true }));

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });

async function runLauncher(pgPort: number, offset: number) {
  const child = spawn(process.execPath, ["--import", "tsx", "scripts/run.ts"], {
    env: {
      ...process.env,
      OPSPLANE_DATA_DIR: dataDir,
      OPSPLANE_PG_PORT: String(pgPort),
      OPSPLANE_PORT_OFFSET: String(offset),
      LOG_LEVEL: "warn",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  await eventually(
    "the launcher's summary",
    () => {
      if (child.exitCode !== null) throw new Error(`launcher exited with ${child.exitCode}: ${out}`);
      return out.includes("opsplane is up");
    },
    120_000,
    200,
  );
  return { child, output: () => out };
}

test("make run brings the six services up on the embedded database, and Ctrl-C stops every process", async () => {
  const pgPort = await freePort();
  const offset = 20_000 + Math.floor(Math.random() * 10_000);
  const ports = services.map((s) => s.port + offset);
  for (let round = 1; round <= 2; round++) {
    const { child, output } = await runLauncher(pgPort, offset);
    for (const [i, s] of services.entries()) {
      const ready = await fetch(`http://127.0.0.1:${ports[i]}/readyz`);
      assert.equal(ready.status, 200, `${s.name} /readyz`);
      const metrics = await (await fetch(`http://127.0.0.1:${ports[i]}/metrics`)).text();
      assert.match(metrics, /http_requests_total\{method="GET",route="\/readyz"/, `${s.name} RED metrics`);
    }
    assert.match(output(), /admin API key: opk_/);
    const exited = once(child, "exit");
    child.kill("SIGINT");
    const [code] = await exited;
    assert.equal(code, 0, output());
    for (const port of [...ports, pgPort]) assert.equal(await listening(port), false, `port ${port} still open after Ctrl-C`);
    // The second round starts on the data the first one left.
    if (round === 2) assert.doesNotMatch(output(), /migrations applied/);
  }
});
