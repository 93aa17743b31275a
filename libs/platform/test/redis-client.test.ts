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
