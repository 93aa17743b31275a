import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { asDeveloper, call, connectDeveloper, openWidget, startRelays } from "./harness.js";

describe("idle timeout: a session whose widget goes quiet is ended like an operator ending it", () => {
  let env: Awaited<ReturnType<typeof startRelays>>;
  let a: string;
  let b: string;

  before(async () => {
    env = await startRelays(2, { redis: true, env: { ASSIST_IDLE_TIMEOUT_SECONDS: "2" } });
    a = env.relays[0]!.url;
    b = env.relays[1]!.url;
  });
  after(async () => env?.close());

  test("the widget on replica A stops sending: both sides are told, the session is recorded as ended by idle and announced on the bus", async () => {
    const seen: Array<{ topic: string; data: { sessionId: string; endedBy: string; developer: string } }> = [];
    const sub = await env.relays[1]!.ctx.bus.subscribe({
      group: "assist-idle-observer",
      topics: ["assist.session.ended"],
      handler: async (e) => void seen.push({ topic: e.topic, data: e.data as (typeof seen)[number]["data"] }),
    });
    const { key, sessionId, widget } = await openWidget(a);
    // Traffic keeps the session open while the developer connects (on the other replica).
    const keepAlive = setInterval(() => widget.send({ t: "panel", open: false }), 100);
    const developer = await connectDeveloper(b, key);
    await widget.next("developer-joined", (m) => m.t === "developer-joined");
    clearInterval(keepAlive);

    const toDeveloper = await developer.next("session-ended on the developer's socket", (m) => m.t === "session-ended");
    assert.equal(toDeveloper.by, "idle");
    const toWidget = await widget.next("session-ended on the widget's socket", (m) => m.t === "session-ended");
    assert.equal(toWidget.by, "idle");
    await eventually("the widget socket to be closed by the relay", () => widget.ws.readyState === widget.ws.CLOSED);

    const session = await call(b, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() });
    assert.equal(session.body.status, "ended");
    assert.equal(session.body.endedBy, "idle");
    assert.ok(
      (session.body.watches as Array<{ endedAt: string | null }>).every((w) => w.endedAt !== null),
      "the watch is closed",
    );
    const ended = await eventually("the session.ended event", () => seen.find((e) => e.data.sessionId === sessionId));
    assert.equal(ended.data.endedBy, "idle");
    assert.equal(ended.data.developer, "key:dev");
    // Ended once, though both replicas sweep.
    assert.equal(seen.filter((e) => e.data.sessionId === sessionId).length, 1);
    await sub.close();
    developer.close();
  });
});
