import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { asDeveloper, type Client, call, connectDeveloper, openWidget, operatorOrigin, otherDeveloperKey, startRelays } from "./harness.js";

// What a tampered page or a hostile watcher can send the relay: every frame is validated, and only what was
// validated is passed on, re-encoded; no frame stops the relay.
const card = "6222077780189012";

let env: Awaited<ReturnType<typeof startRelays>>;
let base: string;
before(async () => {
  env = await startRelays(1, { redis: false, env: { ASSIST_CLIENT_MAX_FAILURES: "10", ASSIST_ADDRESS_MAX_FAILURES: "1000" } });
  base = env.relays[0]!.url;
});
after(() => env.close());

const healthy = async () => (await fetch(`${base}/healthz`)).status === 200;

test("a frame nested 20,000 levels deep (40 KB) is refused with its reason, and the relay and the session go on", async () => {
  const { widget, key } = await openWidget(base);
  const developer: Client = await connectDeveloper(base, key);
  await widget.next("developer joined", (m) => m.t === "developer-joined");
  let deep = "1";
  for (let i = 0; i < 20_000; i++) deep = `[${deep}]`;
  // Before: the sanitiser's walk ran out of stack, and the relay shut down (every socket closed 1001).
  widget.send(`{"t":"rrweb","events":[{"type":5,"timestamp":1,"data":${deep}}]}`);
  const refused = await widget.next("the refusal", (m) => m.t === "error");
  assert.match(String(refused.reason), /^malformed: message "rrweb" is nested deeper than 500 levels/);
  assert.ok(await healthy());
  widget.send({ t: "console", entries: [{ level: "log", text: "still here", at: 1 }] });
  await developer.next("a later frame", (m) => m.t === "console");
  assert.equal(widget.closed, undefined);
  developer.close();
  widget.close();
});

test("a watcher's frame with a key twice is read as its last value only: it cannot ask for control in another's name or end the page's socket", async () => {
  const { widget, key } = await openWidget(base);
  const first: Client = await connectDeveloper(base, key);
  const second: Client = await connectDeveloper(base, key, otherDeveloperKey);
  await widget.next("both joined", () => widget.inbox.filter((m) => m.t === "developer-joined").length >= 2);
  first.send({ t: "control-request" });
  await widget.next("the first's request", (m) => m.t === "control-request");
  // Before: validated as a panel message (JSON.parse keeps the last "t"), passed on as written, and taken by
  // its prefix for a control request: the operator's Allow then granted control to the second watcher.
  second.send('{"t":"control-request","t":"panel","open":false}');
  second.send('{"t":"session-ended","t":"snapshot-request"}');
  await eventually(
    "both passed on as what they were validated as",
    () => widget.inbox.some((m) => m.t === "panel") && widget.inbox.filter((m) => m.t === "snapshot-request").length >= 2,
  );
  assert.equal(widget.inbox.filter((m) => m.t === "control-request").length, 1, "one request, the first watcher's");
  widget.send({ t: "control-response", granted: true });
  const state = await first.next("control granted", (m) => m.t === "control-state" && m.granted === true);
  assert.match(String(state.developer), /dev$/);
  assert.equal(widget.closed, undefined, "the page's socket is still open");
  // A field the protocol does not declare is refused, not passed on.
  second.send({ t: "panel", open: true, developer: "key:dev" });
  assert.match(String((await second.next("refused", (m) => m.t === "error")).reason), /^malformed/);
  first.close();
  second.close();
  widget.close();
});

test("a tampered page's extra fields and reasons reach no watcher unmasked", async () => {
  const { widget, key } = await openWidget(base);
  const developer: Client = await connectDeveloper(base, key);
  await widget.next("developer joined", (m) => m.t === "developer-joined");
  widget.send({ t: "panel", open: true, note: `card ${card}` });
  assert.match(String((await widget.next("refused", (m) => m.t === "error")).reason), /^malformed/);
  widget.send({ t: "control-refused", reason: `declined ${card}` });
  const refused = await developer.next("the page's refusal", (m) => m.t === "control-refused");
  assert.equal(refused.reason, "declined ************9012");
  assert.ok(!JSON.stringify(developer.inbox).includes(card));
  developer.close();
  widget.close();
});

test("a watcher asking for full snapshots again and again gets one every 2 s, not one each time", async () => {
  const { widget, key } = await openWidget(base);
  const developer: Client = await connectDeveloper(base, key);
  // Joining asks for one.
  await widget.next("the join's snapshot request", (m) => m.t === "snapshot-request");
  for (let i = 0; i < 20; i++) developer.send({ t: "snapshot-request" });
  await developer.next("refusals", () => developer.inbox.filter((m) => m.t === "error").length >= 19);
  assert.ok(
    developer.inbox.filter((m) => m.t === "error").every((m) => /^rate-limited: at most one snapshot request/.test(String(m.reason))),
  );
  assert.ok(widget.inbox.filter((m) => m.t === "snapshot-request").length <= 2, "the join's and at most one more");
  developer.close();
  widget.close();
});

test("40 wrong keys sent at once against an allowance of 10: at most 10 are tried, the rest are 429", async () => {
  await openWidget(base);
  const answers = await Promise.all(
    Array.from({ length: 40 }, () => call(base, "POST", "/assist/connect", { body: { key: "WRONG-KEY-0000" }, headers: asDeveloper() })),
  );
  const statuses = answers.map((a) => a.status);
  // Before: all 40 passed the check before any was counted, and all were tried (403).
  assert.equal(statuses.filter((s) => s === 403).length, 10, JSON.stringify(statuses));
  assert.equal(statuses.filter((s) => s === 429).length, 30);
});

test("a report's page snapshot is masked as the live stream is, and an image must be an image", async () => {
  const snapshot = [
    {
      type: 2,
      timestamp: 1,
      data: {
        node: {
          type: 0,
          id: 1,
          childNodes: [
            { type: 2, id: 2, tagName: "input", attributes: { type: "password", value: "HUNTER2PW" }, childNodes: [] },
            {
              type: 2,
              id: 3,
              tagName: "div",
              attributes: { "data-assist-mask": "" },
              childNodes: [{ type: 3, id: 4, textContent: "BALANCE 99,999.00" }],
            },
          ],
        },
      },
    },
  ];
  const file = (attachment: Record<string, string>) =>
    call(base, "POST", "/assist/reports", {
      headers: { origin: operatorOrigin },
      body: { reporter: "Li", category: "data", description: "the page", attachments: [attachment] },
    });
  const filed = await file({
    kind: "snapshot",
    name: "page.json",
    contentType: "application/json",
    dataBase64: Buffer.from(JSON.stringify(snapshot)).toString("base64"),
  });
  assert.equal(filed.status, 201, JSON.stringify(filed.body));
  const stored = await env.relays[0]!.ctx.pool.query<{ content: string }>(
    "SELECT convert_from(content, 'UTF8') AS content FROM report_attachments WHERE report_id = $1",
    [filed.body.id],
  );
  const kept = String(stored.rows[0]?.content);
  assert.match(kept, /"type":2/, "the snapshot is stored");
  // Before: wrapped in another list, the snapshot was walked by the text rules only.
  for (const secret of ["HUNTER2PW", "99,999"]) assert.ok(!kept.includes(secret), `${secret} masked`);
  const json = await file({
    kind: "image",
    name: "x.png",
    contentType: "application/json",
    dataBase64: Buffer.from(`{"card":"${card}"}`).toString("base64"),
  });
  assert.equal(json.status, 400);
  assert.match(String(json.body.message), /must have an image\/\* content type/);
});
