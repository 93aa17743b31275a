import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually, setDatabaseOutage, startCuttableProxy } from "@opsplane/testing";
import { Recorder } from "../src/recorder.js";
import { asDeveloper, call, openWidget, startRelays } from "./harness.js";

type Recorded = { kind: string; payload: { t: string; entries?: Array<{ text: string }>; events?: unknown[] } };

const line = (text: string, at: number) => ({ t: "console", entries: [{ level: "log", text, at }] });
const texts = (events: Recorded[]) => events.flatMap((e) => (e.payload.entries ?? []).map((x) => x.text));

describe("recording: a frame PostgreSQL cannot store as sent never costs another frame its recording", () => {
  let env: Awaited<ReturnType<typeof startRelays>>;
  let relay: string;

  before(async () => {
    env = await startRelays(1, { redis: false });
    relay = env.relays[0]!.url;
  });
  after(async () => env?.close());

  async function recording(sessionId: string): Promise<Recorded[]> {
    const r = await call(relay, "GET", `/assist/sessions/${sessionId}/recording`, { headers: asDeveloper() });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.events as Recorded[];
  }
  const recordedTexts = (sessionId: string, expected: string[]) =>
    eventually(`${expected.join(", ")} recorded`, async () => {
      const got = texts(await recording(sessionId));
      return expected.every((t) => got.includes(t)) && got;
    });

  test("a NUL or a lone surrogate in one session's frame is recorded escaped, and the other session's frames beside it are recorded", async () => {
    const first = await openWidget(relay, { join: true });
    const second = await openWidget(relay, { join: true });
    second.widget.send(line("second, before", 1));
    first.widget.send(line("card\u0000number", 2));
    first.widget.send(line("half \ud800 pair", 3));
    first.widget.send({ t: "rrweb", events: [{ type: 3, timestamp: 4, data: { "key\u0000": "value\u0000" } }] });
    second.widget.send(line("second, after", 5));

    assert.deepEqual(await recordedTexts(second.sessionId, ["second, before", "second, after"]), ["second, before", "second, after"]);
    const firstEvents = await eventually("the first session's three frames", async () => {
      const events = await recording(first.sessionId);
      return events.length === 3 && events;
    });
    // The NUL is stored as the six characters \u0000; a lone surrogate as U+FFFD.
    assert.deepEqual(texts(firstEvents), ["card\\u0000number", "half \uFFFD pair"]);
    assert.deepEqual(firstEvents[2]!.payload.events, [{ type: 3, timestamp: 4, data: { "key\\u0000": "value\\u0000" } }]);
    first.widget.close();
    second.widget.close();
  });

  test("a number past JSON's range from the page is passed on and recorded re-encoded (null), as the relay validated it", async () => {
    const { sessionId, widget } = await openWidget(relay, { join: true });
    // Valid JSON and protocol; read as Infinity, which JSON writes as null. Before the relay re-encoded what it
    // validated, PostgreSQL refused the frame as written (numeric out of range) and it was dropped.
    widget.send('{"t":"rrweb","events":[{"type":3,"timestamp":2,"data":{"x":1e1000000}}]}');
    widget.send(line("after it", 3));
    await recordedTexts(sessionId, ["after it"]);
    const events = await recording(sessionId);
    assert.deepEqual(events[0]!.payload.events, [{ type: 3, timestamp: 2, data: { x: null } }]);
    widget.close();
  });

  test("a frame PostgreSQL still refuses is dropped alone and counted; the frames around it, from both sessions, are recorded", async () => {
    const first = await openWidget(relay, { join: true });
    const second = await openWidget(relay, { join: true });
    first.widget.close();
    second.widget.close();
    const drops: Array<{ reason: string; count: number }> = [];
    const quiet = () => {};
    const recorder = new Recorder(
      env.relays[0]!.ctx.pool,
      { debug: quiet, info: quiet, warn: quiet, error: quiet },
      (reason, count) => void drops.push({ reason, count }),
      5_000,
      500,
      10,
    );
    try {
      recorder.add(second.sessionId, "console", JSON.stringify(line("beside, before", 1)));
      // Text no relay path writes any more (it re-encodes what it validated), past the range of PostgreSQL's numeric type.
      recorder.add(first.sessionId, "rrweb", '{"t":"rrweb","events":[{"type":3,"timestamp":2,"data":{"x":1e1000000}}]}');
      recorder.add(first.sessionId, "console", JSON.stringify(line("after the refused frame", 3)));
      recorder.add(second.sessionId, "console", JSON.stringify(line("beside, after", 4)));
      await recordedTexts(second.sessionId, ["beside, before", "beside, after"]);
      await recordedTexts(first.sessionId, ["after the refused frame"]);
    } finally {
      await recorder.close();
    }
    assert.deepEqual(
      (await recording(first.sessionId)).map((e) => e.kind),
      ["console"],
    );
    assert.deepEqual(drops, [{ reason: "unstorable", count: 1 }]);
  });

  test("events added while PostgreSQL is down are kept and written once it is back, with one warning", async () => {
    const { sessionId, widget } = await openWidget(relay, { join: true });
    widget.close();
    const lines: Array<{ level: string; msg: string }> = [];
    const log =
      (level: string) =>
      (_fields: object, msg = "") =>
        void lines.push({ level, msg });
    const drops: unknown[] = [];
    const logger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
    const recorder = new Recorder(env.relays[0]!.ctx.pool, logger, (reason, count) => void drops.push({ reason, count }), 5_000, 500, 10);
    try {
      await setDatabaseOutage(env.db.url, true);
      try {
        recorder.add(sessionId, "console", JSON.stringify(line("during the outage", 1)));
        await eventually("three failed writes", () => lines.filter((l) => l.level === "debug" && /retry/.test(l.msg)).length >= 3);
      } finally {
        await setDatabaseOutage(env.db.url, false);
      }
      await recordedTexts(sessionId, ["during the outage"]);
      assert.equal(lines.filter((l) => l.level === "warn").length, 1);
      assert.deepEqual(drops, []);
    } finally {
      await recorder.close();
    }
  });
});

describe("recording at shutdown", () => {
  test("frames that cannot be written when the relay stops make its shutdown fail, with the count", async () => {
    const env = await startRelays(1, { redis: false });
    const relay = env.relays[0]!;
    const { widget } = await openWidget(relay.url);
    try {
      await setDatabaseOutage(env.db.url, true);
      widget.send(line("never written", 1));
      await eventually("the frame received", async () =>
        /assist_messages_total\{side="widget",type="console"[^}]*\} 1\n/.test(await (await fetch(`${relay.url}/metrics`)).text()),
      );
      widget.close();
      assert.deepEqual(await relay.close(), { failedCloseHooks: 1 });
    } finally {
      await setDatabaseOutage(env.db.url, false);
      await env.db.drop();
    }
  });
  test("with PostgreSQL frozen, a shutdown gives up on the recording within its bound and fails, without waiting on the rest", async () => {
    // In front of the server the test databases are made on (DATABASE_URL: the machine's, or the one `make test` started).
    const server = new URL(process.env.DATABASE_URL ?? "postgres://127.0.0.1:5432");
    const proxy = await startCuttableProxy(server.hostname, Number(server.port || 5432));
    const shutdownTimeoutMs = 4000;
    const env = await startRelays(1, {
      redis: false,
      databaseUrl: (url) => Object.assign(new URL(url), { port: String(proxy.port) }).toString(),
      env: { SHUTDOWN_TIMEOUT_MS: String(shutdownTimeoutMs) },
    });
    const relay = env.relays[0]!;
    const { widget } = await openWidget(relay.url);
    try {
      proxy.blackhole();
      widget.send(line("never written", 1));
      await eventually("the frame received", async () =>
        /assist_messages_total\{side="widget",type="console"[^}]*\} 1\n/.test(await (await fetch(`${relay.url}/metrics`)).text()),
      );
      widget.close();
      const started = Date.now();
      const closed = relay.close();
      // Counted (and logged) by the recording's close; SIGTERM's grace period ends the process at SHUTDOWN_TIMEOUT_MS.
      await eventually(
        "the unwritten frame counted",
        async () =>
          /reason="shutdown"[^}]*\} 1/.test(await relay.ctx.metrics.getSingleMetricAsString("assist_recording_events_dropped_total")),
        30_000,
      );
      const took = Date.now() - started;
      assert.ok(took < shutdownTimeoutMs, `the loss was reported after ${took} ms; the kit ends the process at ${shutdownTimeoutMs} ms`);
      // Healed, so the kit's own pool can end (its queries would otherwise wait for DATABASE_QUERY_TIMEOUT_MS).
      proxy.heal();
      assert.deepEqual(await closed, { failedCloseHooks: 1 });
    } finally {
      proxy.heal();
      await proxy.close();
      await env.db.drop();
    }
  });
});
