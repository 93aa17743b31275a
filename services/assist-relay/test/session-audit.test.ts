import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { asDeveloper, call, handlerKey, openWidget, startRelays } from "./harness.js";

describe("the audit trail of a session", () => {
  let env: Awaited<ReturnType<typeof startRelays>>;
  let base: string;

  before(async () => {
    env = await startRelays(1, { redis: false });
    base = env.relays[0]!.url;
  });
  after(() => env?.close());

  test("holds every credential the session handed out (keys and tickets), never the credentials themselves", async () => {
    const { sessionId, widgetToken, widget } = await openWidget(base);
    const renewed = await call(base, "POST", `/assist/sessions/${sessionId}/key`, {
      headers: { origin: "http://operator.example", "x-assist-token": widgetToken },
    });
    assert.equal(renewed.status, 200, renewed.body.message);
    const connected = await call(base, "POST", "/assist/connect", { body: { key: renewed.body.key }, headers: asDeveloper() });
    assert.equal(connected.status, 200, connected.body.message);
    const rejoin = await call(base, "POST", `/assist/sessions/${sessionId}/tickets`, { headers: asDeveloper() });
    assert.equal(rejoin.status, 200, rejoin.body.message);
    widget.close();

    const trail = await call(base, "GET", `/_audit/v1/entries?target=${encodeURIComponent(`session/${sessionId}`)}`, {
      headers: { authorization: `Bearer ${handlerKey}` },
    });
    assert.equal(trail.status, 200, trail.body.message);
    const entries = trail.body.entries as Array<{ action: string; actor: string; after: string }>;
    const actions = entries.map((e) => e.action).reverse();
    assert.deepEqual(actions, [
      "session.open",
      "session.widget-ticket",
      "session.key-renew",
      "session.connect",
      "session.ticket",
      "session.ticket",
    ]);
    assert.deepEqual(
      entries.filter((e) => e.action === "session.ticket").map((e) => e.actor),
      ["key:dev", "key:dev"],
    );
    const written = JSON.stringify(entries);
    for (const secret of [widgetToken, String(renewed.body.key), String(connected.body.ticket), String(rejoin.body.ticket)])
      assert.ok(!written.includes(secret), "a credential reached the audit trail");
  });
});
