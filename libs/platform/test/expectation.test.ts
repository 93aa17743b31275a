import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { createTestDatabase, eventually, type TestDatabase } from "@opsplane/testing";
import { services } from "../../../scripts/services.js";
import { startServiceProcess } from "./service-process.js";

/** `raw` written as is on a new connection to `port`: everything answered until the server closes it. */
function sendRaw(port: number, raw: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(raw));
    // A server that keeps the connection open fails the test (no answer) instead of holding it.
    socket.setTimeout(10_000, () => socket.destroy());
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", () => {});
    socket.on("close", () => resolve(Buffer.concat(chunks).toString()));
  });
}

describe("an Expect other than 100-continue", () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(() => db.drop());

  // Every service, the dispatcher included: it serves callbacks on the raw server, before fastify.
  for (const s of services) {
    test(`${s.name}: is answered 417 in the error model with the caller's request id, logged, and its connection closed`, async () => {
      const { port, child, log } = await startServiceProcess(s.name, { DATABASE_URL: db.url, LOG_LEVEL: "info" });
      try {
        // A path no route serves (on the dispatcher, a callback's), then a request pipelined after it: not answered.
        const text = await sendRaw(
          port,
          "POST /somewhere/cb HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nX-Request-Id: expect-1\r\nContent-Length: 0\r\n\r\n" +
            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        const end = text.indexOf("\r\n\r\n");
        const head = text.slice(0, end);
        assert.match(head, /^HTTP\/1\.1 417 /, text);
        assert.match(head, /^x-request-id: expect-1$/im);
        assert.match(head, /^connection: close$/im);
        assert.deepEqual(JSON.parse(text.slice(end + 4)), {
          error: "expectation_failed",
          message: "the Expect header cannot be met: only 100-continue is supported",
        });
        assert.equal([...text.matchAll(/HTTP\/1\.1 \d{3}/g)].length, 1, text);
        const line = await eventually("the refusal in the log", () =>
          log()
            .split("\n")
            .find((l) => l.includes('"reqId":"expect-1"') && l.includes('"status":417')),
        );
        assert.equal((JSON.parse(line) as { error: string }).error, "expectation_failed");
      } finally {
        child.kill("SIGKILL");
      }
    });
  }
});
