import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { withDeadline } from "@opsplane/store";
import { testRedis } from "@opsplane/testing";

/** Holds the event loop, as a starved CPU or a long collection does. */
function holdEventLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {}
}

describe("a deadline on a call over a socket", () => {
  let silent: net.Server;
  const sockets: net.Socket[] = [];
  // Redis answers PING from its own process: the answer arrives while this one's event loop is held.
  const redis = new URL(testRedis().url);
  const connect = async (port: number, host: string) => {
    const socket = net.connect(port, host);
    sockets.push(socket);
    await new Promise<void>((resolve) => socket.once("connect", resolve));
    return socket;
  };
  /** Sends PING to Redis; resolves once it is written, with the answer to come. */
  const pingRedis = async () => {
    const socket = await connect(Number(redis.port || 6379), redis.hostname);
    socket.write("PING\r\n");
    return { answer: new Promise<string>((resolve) => socket.once("data", (d) => resolve(String(d)))) };
  };
  before(async () => {
    silent = net.createServer((s) => s.resume());
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  });
  after(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });

  // The dispatcher's Redis lookups had ioredis's commandTimeout (a plain timer) as their deadline: after the
  // event loop was held, it fired before the answer already in the socket was read, and callbacks registered
  // by a test environment were routed from the PostgreSQL record, or to production when that timed out too.
  test("an answer that arrived while the event loop was held beats a deadline that came due meanwhile", async () => {
    // A plain timer, as before: it loses.
    const first = await pingRedis();
    const plain = Promise.race([first.answer, new Promise<string>((_, reject) => setTimeout(() => reject(new Error("timed out")), 20))]);
    holdEventLoop(200);
    await assert.rejects(plain, /timed out/);

    const second = await pingRedis();
    const answered = withDeadline(second.answer, 20, () => new Error("timed out"));
    holdEventLoop(200);
    assert.equal(await answered, "+PONG\r\n");
  });

  test("a call nobody answers still fails at its deadline", async () => {
    const socket = await connect((silent.address() as net.AddressInfo).port, "127.0.0.1");
    socket.write("ping");
    const started = performance.now();
    await assert.rejects(
      withDeadline(new Promise((resolve) => socket.once("data", resolve)), 50, () => new Error("no answer within 50 ms")),
      /no answer within 50 ms/,
    );
    const waited = performance.now() - started;
    assert.ok(waited >= 45 && waited < 1_000, `failed after ${Math.round(waited)} ms`);
  });
});
