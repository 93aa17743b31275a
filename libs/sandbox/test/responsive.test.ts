import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { createSandbox, type Sandbox, SandboxError, type Script } from "@opsplane/sandbox";

// A real HTTP service that runs operator scripts on one route and answers health checks on another:
// runaway scripts must come back as errors naming their limit while health checks keep being answered.

let sandbox: Sandbox;
let server: Server;
let base: string;
const runaways = new Map<string, Script>();

before(async () => {
  sandbox = await createSandbox();
  runaways.set("loop", await sandbox.compile("function main() { while (true) {} }", { timeLimitMs: 50 }));
  runaways.set("recursion", await sandbox.compile("function main() { return main() + 1 }"));
  runaways.set(
    "allocation",
    await sandbox.compile("function main() { const a = []; while (true) a.push(String(a.length).repeat(1000)) }", {
      memoryLimitBytes: 4 * 1024 * 1024,
      timeLimitMs: 20_000,
    }),
  );
  runaways.set("extract", await sandbox.compile("function main(request) { return request.body.orderNo }"));

  server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname === "/healthz") {
      res.writeHead(200).end("ok");
      return;
    }
    const script = runaways.get(url.pathname.slice("/run/".length));
    if (!script) {
      res.writeHead(404).end();
      return;
    }
    script.call({ method: req.method ?? "GET", path: url.pathname, body: { orderNo: url.searchParams.get("orderNo") } }).then(
      (result) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(result)),
      (error: unknown) => {
        const body =
          error instanceof SandboxError ? { error: error.kind, message: error.message } : { error: "internal", message: String(error) };
        res.writeHead(422, { "content-type": "application/json" }).end(JSON.stringify(body));
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise((resolve) => server.close(resolve));
  await sandbox.close();
});

test("runaway scripts are stopped with errors naming the limit while health checks keep being answered", async () => {
  const expected = { loop: /time limit of 50 ms/, recursion: /stack limit of 128 KiB/, allocation: /memory limit of 4 MiB/ };
  const kinds = { loop: "timeout", recursion: "stack", allocation: "memory" } as const;
  const names = Object.keys(expected) as Array<keyof typeof expected>;

  let pending = 0;
  const runs = Array.from({ length: 9 }, async (_, i) => {
    const name = names[i % names.length]!;
    pending++;
    try {
      const res = await fetch(`${base}/run/${name}`, { method: "POST" });
      assert.equal(res.status, 422);
      const body = (await res.json()) as { error: string; message: string };
      assert.equal(body.error, kinds[name]);
      assert.match(body.message, expected[name]);
    } finally {
      pending--;
    }
  });

  // Health checks run back to back for as long as any runaway call is still in flight.
  let answeredWhileBusy = 0;
  const health = (async () => {
    while (pending > 0) {
      const res = await fetch(`${base}/healthz`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "ok");
      if (pending > 0) answeredWhileBusy++;
    }
  })();

  await Promise.all([...runs, health]);
  assert.ok(answeredWhileBusy > 0, "health checks were answered while runaway scripts were running");

  // The same compiled scripts and the service still work.
  const res = await fetch(`${base}/run/extract?orderNo=A-17`, { method: "POST" });
  assert.deepEqual(await res.json(), { value: "A-17", logs: [] });
  for (const name of names) assert.equal((await fetch(`${base}/run/${name}`, { method: "POST" })).status, 422);
});
