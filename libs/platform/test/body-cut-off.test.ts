import assert from "node:assert/strict";
import net from "node:net";
import { after, before, test } from "node:test";
import { createTestDatabase, eventually, type TestDatabase } from "@opsplane/testing";
import { startServiceProcess } from "./service-process.js";

// A body that stops arriving, on a real service's route: timed out by the server (408), or cut off by a
// client that resets its connection (499). Neither is a dependency outage: both read as one before (a 503
// warning anyone could raise) and neither was counted.
let db: TestDatabase;
let service: Awaited<ReturnType<typeof startServiceProcess>>;
before(async () => {
  db = await createTestDatabase();
  service = await startServiceProcess("config-center", { DATABASE_URL: db.url, LOG_LEVEL: "info", REQUEST_TIMEOUT_MS: "1000" });
});
after(async () => {
  service?.child.kill("SIGKILL");
  await db?.drop();
});

const route = "/ops.v1.ServiceInfoService/GetServiceInfo";
/** Thirty bytes announced, one sent; without a request id of the caller's. */
const partial = `POST ${route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{`;

/** Writes `partial`; resolves with everything answered once the connection closes (reset by us after `resetAfterMs`). */
function send(resetAfterMs?: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(service.port, "127.0.0.1", () => socket.write(partial));
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", () => {});
    socket.on("close", () => resolve(Buffer.concat(chunks).toString()));
    if (resetAfterMs !== undefined) setTimeout(() => socket.resetAndDestroy(), resetAfterMs);
  });
}

interface LogLine {
  level: number;
  msg: string;
  reqId?: string;
  status?: number;
  req?: { url: string; remotePort: number };
}
const lines = () =>
  service
    .log()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as LogLine);

const counted = async (status: number) => {
  const text = await (await fetch(`http://127.0.0.1:${service.port}/metrics`)).text();
  const line = text
    .split("\n")
    .find((l) => l.startsWith("http_requests_total{") && l.includes(`route="${route}"`) && l.includes(`status_code="${status}"`));
  return line ? Number(line.split(" ").at(-1)) : 0;
};

test("a body that trickles past REQUEST_TIMEOUT_MS: 408 with the id its route logged it by, counted, and no warning", async () => {
  const answer = await send();
  assert.match(answer, /^HTTP\/1\.1 408 /);
  const id = /^x-request-id: (.+)$/im.exec(answer)?.[1]?.trim();
  const incoming = lines().filter((l) => l.msg === "incoming request" && l.req?.url === route);
  // Before, a new id the caller could match to nothing the service logged.
  assert.deepEqual(
    incoming.map((l) => l.reqId),
    [id],
  );
  await eventually("the 408 counted", async () => (await counted(408)) === 1);
  assert.deepEqual(
    lines().filter((l) => l.level >= 40),
    [],
  );
});

test("a client that resets its connection mid-body: logged at info and counted as 499, not a 503 'dependency did not answer' warning", async () => {
  await send(300);
  await eventually("the 499 counted", async () => (await counted(499)) === 1);
  const said = lines().filter((l) => l.status === 499);
  assert.deepEqual(
    said.map((l) => [l.level, l.msg]),
    [[30, "the client closed its connection before its request's body arrived in full"]],
  );
  assert.deepEqual(
    lines().filter((l) => l.level >= 40),
    [],
  );
  assert.equal(await counted(503), 0);
});
