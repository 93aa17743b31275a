import assert from "node:assert/strict";
import { test } from "node:test";
import { closeRedis, connectRedis, createLogger } from "@opsplane/platform";
import { eventually, freePort, logLines, startCuttableProxy, testRedis } from "@opsplane/testing";

test("a Redis outage is logged once at warn however many reconnections fail, the reconnection at info, and the next outage again", async () => {
  const { destination, lines } = logLines<{ level: number; msg: string; errors?: number }>();
  const log = createLogger("t", "debug", destination);
  const warnings = () => lines.filter((l) => l.level === 40);
  const shared = new URL(testRedis().url);
  // Nothing listens there yet: Redis is down when the service starts.
  const port = await freePort();
  const redis = connectRedis(`redis://127.0.0.1:${port}`, log);
  let failures = 0;
  redis.on("error", () => failures++);
  try {
    await eventually("several reconnections to fail", () => failures >= 4);
    assert.equal(warnings().length, 1, JSON.stringify(warnings()));
    assert.match(warnings()[0]!.msg, /^redis error; reconnecting until it answers$/);

    // Redis comes up where the client has been knocking.
    const proxy = await startCuttableProxy(shared.hostname, Number(shared.port || 6379), port);
    try {
      const connected = await eventually("the reconnection to be logged", () => lines.find((l) => l.msg === "redis: connected again"));
      assert.equal(connected.level, 30);
      assert.ok(connected.errors! >= 4, `errors counted: ${connected.errors}`);
      assert.equal(await redis.ping(), "PONG");
      failures = 0;
    } finally {
      await proxy.close();
    }
    // A second outage is a new incident: told at warn again, once.
    await eventually("reconnections to fail again", () => failures >= 4);
    assert.equal(warnings().length, 2, JSON.stringify(warnings()));
  } finally {
    await closeRedis(redis);
  }
});

test("a Redis that accepts connections and never answers is told once at warn, however many connections are replaced, and its return at info", async () => {
  const { destination, lines } = logLines<{ level: number; msg: string; replaced?: number }>();
  const log = createLogger("t", "debug", destination);
  const shared = new URL(testRedis().url);
  const proxy = await startCuttableProxy(shared.hostname, Number(shared.port || 6379));
  const redis = connectRedis(`redis://127.0.0.1:${proxy.port}`, log);
  try {
    assert.equal(await redis.ping(), "PONG");
    // A hung proxy: the open connection, and every new one, accepted and never answered.
    proxy.blackhole();
    await eventually(
      "three connections replaced",
      () => lines.filter((l) => l.msg.startsWith("redis: a new connection")).length >= 2,
      20_000,
    );
    // Before: a warning for each (one every three seconds), and no word of the return.
    assert.deepEqual(
      lines.filter((l) => l.level >= 40).map((l) => l.msg),
      ["redis: the connection stopped answering without being closed; reconnecting"],
    );
    proxy.admitNewConnections();
    const back = await eventually(
      "the return to be logged",
      () => lines.find((l) => l.msg === "redis: connected again" && l.replaced),
      15_000,
    );
    assert.equal(back.level, 30);
    assert.ok(back.replaced! >= 3, `replaced counted: ${back.replaced}`);
    assert.equal(await redis.ping(), "PONG");
  } finally {
    await closeRedis(redis);
    await proxy.close();
  }
});
