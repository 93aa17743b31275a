import assert from "node:assert/strict";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { logLines } from "@opsplane/testing";
import { clientErrorAnswer } from "../src/client-errors.js";
import { createLogger } from "../src/logger.js";

// Node's server as the kit sets it up for this: half-closing clients kept, the parser's refusals answered by the kit.
const { destination, lines } = logLines();
let server: http.Server;
let port: number;
before(async () => {
  server = http.createServer((_req, res) => res.end("ok"));
  (server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  server.on("clientError", clientErrorAnswer(createLogger("t", "info", destination)));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});
after(() => new Promise((resolve) => server.close(resolve)));

/** Writes `raw`, half-closes when `fin`, and resolves with what came back once the server closed the connection. */
const exchange = (raw: string, fin: boolean) =>
  new Promise<string>((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => (fin ? socket.end(raw) : socket.write(raw)));
    socket.setTimeout(10_000, () => socket.destroy());
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", () => {});
    socket.on("close", () => resolve(Buffer.concat(chunks).toString()));
  });

test("a client that closes its side mid-request is not logged as a refusal (a line each was noise anyone could raise); its connection is closed", async () => {
  lines.length = 0;
  assert.equal(await exchange("GET / HTTP/1.1\r\nHost: x\r\nX-Partial: a", true), "");
  assert.deepEqual(
    lines.filter((l) => l.level >= 30).map((l) => l.msg),
    [],
  );
  // A request the parser refuses is still answered and logged, as before.
  const refused = await exchange("GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\u0000b\r\n\r\n", false);
  assert.match(refused, /^HTTP\/1\.1 400 /);
  assert.deepEqual(
    lines.filter((l) => l.level >= 30).map((l) => l.msg),
    ["the request cannot be read as HTTP/1.1: Invalid header value char"],
  );
});
