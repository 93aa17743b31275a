import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { after, before, test } from "node:test";
import { createTestDatabase, eventually, freePort, type TestDatabase } from "@opsplane/testing";
import { mainOf, services } from "../../../scripts/services.js";

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
});
after(() => db.drop());

for (const s of services) {
  test(`${s.name} starts as its own process, serves readiness and metrics, and exits 0 on SIGTERM`, async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [mainOf(s.name)], {
      env: { PATH: process.env.PATH, DATABASE_URL: db.url, PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "warn" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    try {
      await eventually(`${s.name} ready`, async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok, 30_000, 100);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(metrics, new RegExp(`http_requests_total\\{method="GET",route="/readyz",status_code="200",service="${s.name}"\\}`));
      const exit = once(child, "exit");
      child.kill("SIGTERM");
      const [code] = await exit;
      assert.equal(code, 0, stderr);
    } finally {
      child.kill("SIGKILL");
    }
  });
}
