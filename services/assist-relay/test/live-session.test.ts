import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import pg from "pg";
import {
  asDeveloper,
  Client,
  call,
  connectDeveloper,
  openWidget,
  operatorOrigin,
  otherDeveloperKey,
  startRelays,
  widgetSocket,
} from "./harness.js";

describe("assist sessions across two relay replicas sharing PostgreSQL and Redis", () => {
  let env: Awaited<ReturnType<typeof startRelays>>;
  let a: string;
  let b: string;
  let db: pg.Client;

  before(async () => {
    env = await startRelays(2, {
      redis: true,
      env: { ASSIST_MAX_MESSAGE_BYTES: "4096", ASSIST_KEY_MAX_ATTEMPTS: "3", ASSIST_HEARTBEAT_SECONDS: "1" },
    });
    a = env.relays[0]!.url;
    b = env.relays[1]!.url;
    db = new pg.Client({ connectionString: env.db.url });
    await db.connect();
    await db.query("SET search_path = assist_relay");
  });
  after(async () => {
    await db.end();
    await env.close();
  });

  test("a page on an origin not allowed cannot open a session or a widget socket, and the refusal is recorded", async () => {
    const refused = await call(a, "POST", "/assist/sessions", {
      body: { pageUrl: "https://evil.example/" },
      headers: { origin: "https://evil.example" },
    });
    assert.equal(refused.status, 403);
    assert.match(refused.body.message!, /origin https:\/\/evil\.example may not use the assist widget/);
    const { sessionId, widgetToken, widget } = await openWidget(a);
    widget.close();
    await assert.rejects(widgetSocket(a, sessionId, widgetToken, { origin: "https://evil.example" }), /403/);
    const { rows } = await db.query("SELECT actor FROM refusals WHERE reason = 'origin'");
    assert.ok(rows.some((r) => r.actor === "origin:https://evil.example"));
  });

  test("the key admits each developer who has it while valid, no one else; malformed and expired keys are refused with the reason", async () => {
    const { key, sessionId, widget } = await openWidget(a);
    assert.match(key, /^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$/);
    const stored = await db.query("SELECT secret_hash FROM connection_keys WHERE session_id = $1", [sessionId]);
    assert.ok(!stored.rows[0].secret_hash.toString("latin1").includes(key.slice(5, 9)), "only a hash of the key is stored");

    const malformed = await call(b, "POST", "/assist/connect", { body: { key: "hello" }, headers: asDeveloper() });
    assert.equal(malformed.status, 400);
    const unauthenticated = await call(b, "POST", "/assist/connect", { body: { key } });
    assert.equal(unauthenticated.status, 401);

    const developer = await connectDeveloper(b, key.toLowerCase());
    // A developer who never had the key gets no ticket; one who redeems it joins.
    const ticketForOther = await call(b, "POST", `/assist/sessions/${sessionId}/tickets`, { headers: asDeveloper(otherDeveloperKey) });
    assert.equal(ticketForOther.status, 403);
    const second = await call(b, "POST", "/assist/connect", { body: { key }, headers: asDeveloper(otherDeveloperKey) });
    assert.equal(second.status, 200);
    assert.equal(second.body.developer, "key:dev2");

    const expiring = await openWidget(a);
    await db.query("UPDATE connection_keys SET expires_at = now() - interval '1 second' WHERE session_id = $1", [expiring.sessionId]);
    const expired = await call(a, "POST", "/assist/connect", { body: { key: expiring.key }, headers: asDeveloper() });
    assert.equal(expired.status, 403);
    assert.match(expired.body.message!, /expired/);

    const session = await call(a, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() });
    assert.equal(session.body.status, "active");
    assert.equal(session.body.developer, "key:dev");
    const expiredTrail = await call(a, "GET", `/assist/sessions/${expiring.sessionId}`, { headers: asDeveloper() });
    assert.deepEqual(
      (expiredTrail.body.refusals as Array<{ reason: string }>).map((r) => r.reason),
      ["key-expired"],
    );
    developer.close();
    widget.close();
    expiring.widget.close();
  });

  test("wrong guesses burn a session's key after the attempt limit, even for the right key afterwards", async () => {
    const { key, sessionId, widget } = await openWidget(a);
    const wrongSecret = (c: string) => `${key.slice(0, 5)}${c.repeat(4)}-${c.repeat(4)}`;
    const guesses = ["0", "1", "2"].filter((c) => wrongSecret(c) !== key);
    const answers = [];
    for (const g of guesses)
      answers.push(await call(a, "POST", "/assist/connect", { body: { key: wrongSecret(g) }, headers: asDeveloper(otherDeveloperKey) }));
    assert.deepEqual(
      answers.map((r) => r.status),
      [403, 403, 403],
    );
    // A wrong secret and an unknown key get the same answer, even the try that blocks the key; the page is told instead.
    const unknown = await call(a, "POST", "/assist/connect", { body: { key: "ZZZZ-ZZZZ-ZZZZ" }, headers: asDeveloper(otherDeveloperKey) });
    for (const answer of answers) assert.deepEqual(answer, unknown);
    assert.equal(unknown.body.message, "wrong connection key; check it with the operator");
    await widget.next("the page is told its key is blocked", (m) => m.t === "key-blocked");
    const right = await call(a, "POST", "/assist/connect", { body: { key }, headers: asDeveloper() });
    assert.equal(right.status, 403);
    assert.match(right.body.message!, /blocked after too many wrong attempts/);
    const renewed = await call(a, "POST", `/assist/sessions/${sessionId}/key`, {
      headers: { origin: operatorOrigin, "x-assist-token": "wrong" },
    });
    assert.equal(renewed.status, 403);
    widget.close();
  });

  test("a developer on replica B watches the page, console and calls streamed by the widget on replica A, and a late joiner gets a fresh snapshot", async () => {
    const { key, sessionId, widget } = await openWidget(a);
    const developer = await connectDeveloper(b, key);
    await widget.next("developer-joined", (m) => m.t === "developer-joined" && m.developer === "key:dev");
    await widget.next("snapshot request for the new developer", (m) => m.t === "snapshot-request");

    widget.send({ t: "rrweb", events: [{ type: 4, timestamp: 1, data: { href: "x", width: 800, height: 600 } }] });
    widget.send({ t: "console", entries: [{ level: "error", text: "balance query failed", at: 2 }] });
    widget.send({
      t: "network",
      entries: [{ via: "fetch", method: "GET", url: "/api/balance", status: 500, startedAt: 3, durationMs: 12 }],
    });
    await developer.next("rrweb events", (m) => m.t === "rrweb");
    const line = await developer.next("console line", (m) => m.t === "console");
    assert.equal((line.entries as Array<{ text: string }>)[0]!.text, "balance query failed");
    await developer.next("network call", (m) => m.t === "network");

    developer.close();
    await widget.next("developer-left", (m) => m.t === "developer-left");
    const ticket = await call(b, "POST", `/assist/sessions/${sessionId}/tickets`, { headers: asDeveloper() });
    const rejoined = await Client.open(`${b.replace("http", "ws")}/assist/ws/developer?ticket=${ticket.body.ticket}`);
    await eventually("a second snapshot request", () => widget.inbox.filter((m) => m.t === "snapshot-request").length === 2);
    const reused = Client.open(`${b.replace("http", "ws")}/assist/ws/developer?ticket=${ticket.body.ticket}`);
    await assert.rejects(reused, /401/);

    const recording = await call(a, "GET", `/assist/sessions/${sessionId}/recording`, { headers: asDeveloper() });
    assert.deepEqual(
      (recording.body.events as Array<{ kind: string }>).map((e) => e.kind),
      ["rrweb", "console", "network"],
    );
    // Another viewer, without the key, reads neither the live view nor, while the session runs, its recording.
    const unjoined = await call(a, "GET", `/assist/sessions/${sessionId}/recording`, { headers: asDeveloper(otherDeveloperKey) });
    assert.deepEqual(
      [unjoined.status, unjoined.body.message],
      [403, "this session is still running: until it ends, its recording is only for the developers who entered its key"],
    );
    const trail = await call(a, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() });
    assert.equal((trail.body.watches as unknown[]).length, 2);
    rejoined.close();
    widget.send({ t: "end" });
    await eventually(
      "the session ended",
      async () => (await call(a, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() })).body.status === "ended",
    );
    // Ended, it is for review: any viewer replays it.
    const replayed = await call(a, "GET", `/assist/sessions/${sessionId}/recording`, { headers: asDeveloper(otherDeveloperKey) });
    assert.equal(replayed.status, 200);
    assert.equal((replayed.body.events as unknown[]).length, 3);
    widget.close();
  });

  test("control events are refused before consent and after the operator takes control back; they reach the page only while granted", async () => {
    const { key, sessionId, widget } = await openWidget(a);
    const developer = await connectDeveloper(b, key);
    await widget.next("developer-joined", (m) => m.t === "developer-joined");

    developer.send({ t: "control", action: { kind: "click", id: 7 } });
    const refusedBefore = await developer.next("refusal before consent", (m) => m.t === "control-refused");
    assert.match(String(refusedBefore.reason), /not been granted/);

    widget.send({ t: "control-response", granted: true });
    await widget.next("refusal of an unrequested consent", (m) => m.t === "error" && String(m.reason).includes("no developer has asked"));

    developer.send({ t: "control-request" });
    await widget.next("the operator is asked", (m) => m.t === "control-request" && m.developer === "key:dev");
    widget.send({ t: "control-response", granted: true });
    await developer.next("grant", (m) => m.t === "control-state" && m.granted === true);
    developer.send({ t: "control", action: { kind: "click", id: 8 } });
    const forwarded = await widget.next("forwarded click", (m) => m.t === "control");
    assert.deepEqual(forwarded.action, { kind: "click", id: 8 });

    widget.send({ t: "control-revoke" });
    await developer.next("revocation", (m) => m.t === "control-state" && m.granted === false && m.by === "operator");
    developer.send({ t: "control", action: { kind: "click", id: 9 } });
    await eventually("a second refusal", () => developer.inbox.filter((m) => m.t === "control-refused").length === 2);
    assert.equal(widget.inbox.filter((m) => m.t === "control").length, 1, "only the granted click reached the page");

    const trail = await call(a, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() });
    const grants = trail.body.controlGrants as Array<{ developer: string; revokedBy: string }>;
    assert.deepEqual(
      grants.map((g) => [g.developer, g.revokedBy]),
      [["key:dev", "operator"]],
    );
    const reasons = (trail.body.refusals as Array<{ reason: string }>).map((r) => r.reason);
    assert.ok(reasons.includes("control-without-grant"));
    developer.close();
    widget.close();
  });

  test("control taken back and given to another developer: the first one's clicks still in flight from the other replica never reach the page", async () => {
    const { key, widget } = await openWidget(a);
    const first = await connectDeveloper(b, key);
    const second = await connectDeveloper(a, key, otherDeveloperKey);
    await eventually("both announced", () => widget.inbox.filter((m) => m.t === "developer-joined").length >= 2);
    first.send({ t: "control-request" });
    await widget.next("the operator is asked", (m) => m.t === "control-request" && m.developer === "key:dev");
    widget.send({ t: "control-response", granted: true });
    await first.next("grant", (m) => m.t === "control-state" && m.granted === true);
    const clicking = setInterval(() => {
      if (first.ws.readyState === first.ws.OPEN) first.send({ t: "control", action: { kind: "click", id: 111 } });
    }, 1);
    clicking.unref();
    // The relay reads a page's frames in order and answers a malformed one at once: what reaches the page between
    // the answers to two such markers was sent after the relay had read everything the page sent before the first.
    const marker = async () => {
      const errors = widget.inbox.filter((m) => m.t === "error").length;
      widget.send("marker");
      await eventually("the relay's answer to the marker", () => widget.inbox.filter((m) => m.t === "error").length > errors);
      return widget.inbox.length;
    };
    try {
      await widget.next("the first developer's clicks", (m) => m.t === "control");
      // The second developer keeps asking, and the operator grants them the moment the page is asked: replica b
      // learns of the revocation through Redis, a moment after the page's replica, so the first one's clicks keep
      // coming meanwhile.
      const asking = setInterval(() => {
        if (second.ws.readyState === second.ws.OPEN) second.send({ t: "control-request" });
      }, 1);
      asking.unref();
      let granted = false;
      widget.ws.on("message", (data) => {
        if (granted || !String(data).startsWith('{"t":"control-request","developer":"key:dev2"')) return;
        granted = true;
        widget.send({ t: "control-response", granted: true });
      });
      widget.send({ t: "control-revoke" });
      const revoked = await marker();
      await second.next("the second grant", (m) => m.t === "control-state" && m.granted === true && m.developer === "key:dev2");
      clearInterval(asking);
      await first.next("the first developer told", (m) => m.t === "control-state" && m.granted === false);
      const checked = await marker();
      const late = widget.inbox.slice(revoked, checked).filter((m) => m.t === "control");
      assert.deepEqual(late, [], "no control reached the page once it had taken control back");
    } finally {
      clearInterval(clicking);
    }
    first.close();
    second.close();
    widget.close();
  });

  test("a relay killed while control is granted: once the page reconnects elsewhere, the grant is recorded as ended and its developer must ask again", async () => {
    const c = await env.spawn();
    const { key, sessionId, widgetToken, widget } = await openWidget(c.url);
    const developer = await connectDeveloper(b, key);
    await widget.next("developer-joined", (m) => m.t === "developer-joined");
    developer.send({ t: "control-request" });
    await widget.next("the operator is asked", (m) => m.t === "control-request");
    widget.send({ t: "control-response", granted: true });
    await developer.next("grant", (m) => m.t === "control-state" && m.granted === true);

    // No close handler runs: the grant row stays open and replica b still lets the developer send control.
    c.process.kill("SIGKILL");
    await eventually("the page's socket cut", () => widget.closed);
    // The developer keeps clicking, as a console would, while the page reconnects and the grant is ended.
    const clicking = setInterval(() => {
      if (developer.ws.readyState === developer.ws.OPEN) developer.send({ t: "control", action: { kind: "click", id: 1 } });
    }, 10);
    // Left running by a failed assertion, it would hold the test process open.
    clicking.unref();
    // The page reconnects, on another replica, once the dead one's lease on the session has run out.
    const page = await eventually(
      "the page connected again",
      async () => {
        const socket = await widgetSocket(a, sessionId, widgetToken);
        await eventually("refused, or kept", () => socket.closed || socket.inbox.some((m) => m.t === "developer-joined"));
        return socket.closed ? undefined : socket;
      },
      20_000,
      200,
    );
    const ended = await developer.next("control taken back", (m) => m.t === "control-state" && m.granted === false);
    clearInterval(clicking);
    assert.deepEqual(ended, {
      t: "control-state",
      granted: false,
      developer: "key:dev",
      by: "relay",
      reason: "the operator's page reconnected; ask for control again",
    });
    developer.send({ t: "control", action: { kind: "click", id: 1 } });
    await developer.next("control refused by the relay", (m) => m.t === "control-refused" && /not been granted/.test(String(m.reason)));
    const trail = await call(a, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() });
    assert.deepEqual(
      (trail.body.controlGrants as Array<{ developer: string; revokedBy: string | null }>).map((g) => [g.developer, g.revokedBy]),
      [["key:dev", "page-reconnected"]],
    );
    assert.ok(!page.inbox.some((m) => m.t === "control"), "no control reached the reconnected page");
    developer.close();
    page.close();
  });

  test("a session token read from a log cannot open a second widget socket: no fake page reaches the developer, no control grant is recorded", async () => {
    const { key, sessionId, widgetToken, widget } = await openWidget(a);
    const developer = await connectDeveloper(b, key);
    await widget.next("developer-joined", (m) => m.t === "developer-joined");

    // The adversary, on the other replica, with the token: feeds a fake page and grants itself any control asked for.
    const stolen = await widgetSocket(b, sessionId, widgetToken);
    stolen.ws.on("message", (data) => {
      if (String(data).startsWith('{"t":"control-request"')) stolen.send({ t: "control-response", granted: true });
    });
    stolen.send({ t: "console", entries: [{ level: "log", text: "fake page", at: 1 }] });
    await eventually(
      "the second socket refused, or its frame at the developer",
      () => stolen.closed || developer.inbox.some((m) => m.t === "console"),
    );
    assert.ok(!developer.inbox.some((m) => m.t === "console"), "the fake frame reached the developer");
    assert.equal(stolen.closed?.code, 4409);
    assert.match(stolen.closed.reason, /this session is connected from another page/);

    developer.send({ t: "control-request" });
    await widget.next("the real page is asked", (m) => m.t === "control-request");
    widget.send({ t: "control-response", granted: false });
    await developer.next("the operator's refusal", (m) => m.t === "control-refused");
    assert.ok(!developer.inbox.some((m) => m.t === "control-state" && m.granted), "the developer was told control was granted");
    const trail = await call(a, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() });
    assert.deepEqual(trail.body.controlGrants, []);
    assert.ok((trail.body.refusals as Array<{ reason: string }>).some((r) => r.reason === "widget-socket-in-use"));

    // The real page still streams.
    widget.send({ t: "console", entries: [{ level: "log", text: "real page", at: 2 }] });
    const line = await developer.next("the real page's frame", (m) => m.t === "console");
    assert.equal((line.entries as Array<{ text: string }>)[0]!.text, "real page");
    developer.close();
    widget.close();
  });

  test("no credential travels in a URL the relay keeps, and a page whose connection died reconnects once the relay has dropped its silent socket", async () => {
    const opened = await call(a, "POST", "/assist/sessions", {
      body: { pageUrl: `${operatorOrigin}/orders?order=7&sessionid=page-secret` },
      headers: { origin: operatorOrigin },
    });
    const { sessionId, widgetToken } = opened.body as { sessionId: string; widgetToken: string };
    const session = await call(a, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() });
    assert.equal(session.body.pageUrl, `${operatorOrigin}/orders?order=7&sessionid=***`);
    await assert.rejects(
      Client.open(`${a.replace("http", "ws")}/assist/ws/widget?session=${sessionId}&token=${widgetToken}`, operatorOrigin),
      /401/,
    );

    // The page's network drops: its socket stays open on the relay but answers nothing.
    const dead = await widgetSocket(a, sessionId, widgetToken, { autoPong: false });
    const developer = await connectDeveloper(b, (opened.body as { key: string }).key);
    await eventually("the relay drops the silent socket", () => dead.closed);
    // The page reconnects with a fresh ticket (on any replica), as often as it must until the session is free again.
    const retried = await eventually("a reconnection whose frames reach the developer", async () => {
      const socket = await widgetSocket(b, sessionId, widgetToken);
      socket.send({ t: "console", entries: [{ level: "log", text: "after reconnecting", at: 3 }] });
      await eventually("refused, or the frame delivered", () => socket.closed || developer.inbox.some((m) => m.t === "console"));
      return socket.closed ? undefined : socket;
    });
    assert.equal(retried.closed, undefined);
    developer.close();
    retried.close();
  });

  test("oversize, malformed and unknown messages are refused with a reason and recorded, and nothing reaches the other side", async () => {
    const { key, sessionId, widget } = await openWidget(a);
    const developer = await connectDeveloper(b, key);
    await widget.next("developer-joined", (m) => m.t === "developer-joined");
    widget.send({ t: "console", entries: [{ level: "log", text: "x".repeat(5000), at: 1 }] });
    await widget.next("size refusal", (m) => m.t === "error" && String(m.reason).startsWith("message-too-large"));
    widget.send("{not json");
    await widget.next("JSON refusal", (m) => m.t === "error" && String(m.reason) === "malformed: not JSON");
    developer.send({ t: "delete-everything" });
    const unknown = await developer.next("schema refusal", (m) => m.t === "error");
    assert.match(String(unknown.reason), /message "delete-everything" does not fit the protocol/);
    widget.send({ t: "console", entries: [{ level: "log", text: "fine", at: 2 }] });
    await developer.next("the valid line after the refusals", (m) => m.t === "console");
    assert.equal(developer.inbox.filter((m) => m.t === "console").length, 1);
    // Refusals are recorded beside the relaying, not before it: the trail is read until all three are in.
    const reasons = await eventually("three refusals in the session's trail", async () => {
      const trail = await call(a, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() });
      const found = (trail.body.refusals as Array<{ reason: string }>).map((r) => r.reason).sort();
      return found.length >= 3 ? found : undefined;
    });
    assert.deepEqual(reasons, ["malformed", "malformed", "message-too-large"]);
    developer.close();
    widget.close();
  });

  test("the operator ends the session: the developer is told, the session and its events are recorded on the bus", async () => {
    const { key, sessionId, widget } = await openWidget(a);
    const developer = await connectDeveloper(b, key);
    await widget.next("developer-joined", (m) => m.t === "developer-joined");
    widget.send({ t: "end" });
    await developer.next("session ended", (m) => m.t === "session-ended");
    const session = await call(a, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() });
    assert.equal(session.body.status, "ended");
    const ticket = await call(b, "POST", `/assist/sessions/${sessionId}/tickets`, { headers: asDeveloper() });
    assert.equal(ticket.status, 409);
    const seen: Array<{ topic: string; data: unknown }> = [];
    const sub = await env.relays[1]!.ctx.bus.subscribe({
      group: "assist-test-observer",
      topics: ["assist.session.opened", "assist.session.ended"],
      handler: async (e) => void seen.push({ topic: e.topic, data: e.data }),
    });
    const ended = await eventually("the session.ended event", () =>
      seen.find((e) => e.topic === "assist.session.ended" && (e.data as { sessionId: string }).sessionId === sessionId),
    );
    assert.equal((ended.data as { developer: string; endedBy: string }).developer, "key:dev");
    assert.equal((ended.data as { endedBy: string }).endedBy, "operator");
    assert.ok(seen.some((e) => e.topic === "assist.session.opened" && (e.data as { sessionId: string }).sessionId === sessionId));
    await sub.close();
    developer.close();
  });
});
