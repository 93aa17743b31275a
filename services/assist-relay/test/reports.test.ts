import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import pg from "pg";
import { asDeveloper, call, handlerKey, openWidget, operatorOrigin, startRelays } from "./harness.js";

const asHandler = { authorization: `Bearer ${handlerKey}` };

describe("problem reports and retention on a single relay without Redis", () => {
  let env: Awaited<ReturnType<typeof startRelays>>;
  let base: string;

  before(async () => {
    env = await startRelays(1, { redis: false, env: { ASSIST_SWEEP_INTERVAL_SECONDS: "1", ASSIST_RECORDING_RETENTION_HOURS: "1" } });
    base = env.relays[0]!.url;
  });
  after(() => env.close());

  const file = (body: Record<string, unknown>, headers: Record<string, string> = { origin: operatorOrigin }) =>
    call(base, "POST", "/assist/reports", { body, headers });

  test("a reporter files a report with a snapshot and an image from the widget, linked to the assist session", async () => {
    const { sessionId, widgetToken, widget } = await openWidget(base);
    const snapshotJson = JSON.stringify({ type: 0, childNodes: [] });
    const snapshot = Buffer.from(snapshotJson).toString("base64");
    const image = Buffer.from([0x89, 0x50, 0x4e, 0x47]).toString("base64");
    const created = await file({
      reporter: "Li Na",
      contact: "ext 4021",
      customerRef: "C-1009",
      category: "data",
      description: "Balance shows 0 after transfer",
      attachments: [
        { kind: "snapshot", name: "page.json", contentType: "application/json", dataBase64: snapshot },
        { kind: "image", name: "screen.png", contentType: "image/png", dataBase64: image },
      ],
      session: { id: sessionId, token: widgetToken },
    });
    assert.equal(created.status, 201);
    const id = created.body.id as string;
    const report = await call(base, "GET", `/assist/reports/${id}`, { headers: asDeveloper() });
    assert.equal(report.body.status, "open");
    assert.equal(report.body.sessionId, sessionId);
    const attachments = report.body.attachments as Array<{ id: number; name: string; size: number }>;
    assert.deepEqual(
      attachments.map((a) => [a.name, a.size]),
      [
        ["page.json", snapshotJson.length],
        ["screen.png", 4],
      ],
    );
    const download = await fetch(`${base}/assist/reports/${id}/attachments/${attachments[1]!.id}`, { headers: asDeveloper() });
    assert.equal(download.headers.get("content-type"), "image/png");
    assert.deepEqual([...new Uint8Array(await download.arrayBuffer())], [0x89, 0x50, 0x4e, 0x47]);
    const session = await call(base, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() });
    assert.equal(session.body.reportId, id);
    widget.close();
  });

  test("bad reports are refused naming the problem: unknown category, missing description, foreign origin, wrong session token", async () => {
    const base_ = { reporter: "Li", category: "data", description: "x" };
    const badCategory = await file({ ...base_, category: "urgent" });
    assert.equal(badCategory.status, 400);
    assert.match(badCategory.body.message!, /category/);
    const noDescription = await file({ reporter: "Li", category: "data" });
    assert.equal(noDescription.status, 400);
    assert.match(noDescription.body.message!, /description/);
    const foreign = await file(base_, { origin: "https://evil.example" });
    assert.equal(foreign.status, 403);
    const badToken = await file({ ...base_, session: { id: "00000000-0000-4000-8000-000000000000", token: "nope" } });
    assert.equal(badToken.status, 403);
    const list = await call(base, "GET", "/assist/reports", { headers: asDeveloper() });
    assert.equal((list.body.reports as unknown[]).length, 1, "no refused report was stored");
  });

  test("handlers move a report through its statuses with comments; the reporter sees only the comments meant for them", async () => {
    const created = await file({ reporter: "Wang", category: "program", description: "Submit button does nothing" });
    const id = created.body.id as string;
    const token = created.body.reporterToken as string;
    const viewerTries = await call(base, "POST", `/assist/reports/${id}/status`, {
      body: { status: "in_progress" },
      headers: asDeveloper(),
    });
    assert.equal(viewerTries.status, 403);
    assert.equal(
      (
        await call(base, "POST", `/assist/reports/${id}/status`, {
          body: { status: "in_progress", comment: "Looking at it" },
          headers: asHandler,
        })
      ).status,
      200,
    );
    await call(base, "POST", `/assist/reports/${id}/comments`, {
      body: { comment: "internal: NPE in OrderService", visibleToReporter: false },
      headers: asHandler,
    });
    await call(base, "POST", `/assist/reports/${id}/status`, {
      body: { status: "resolved", comment: "Fixed in 2.3.1" },
      headers: asHandler,
    });
    const closed = await call(base, "POST", `/assist/reports/${id}/status`, { body: { status: "closed" }, headers: asHandler });
    assert.equal(closed.body.status, "closed");
    const reopen = await call(base, "POST", `/assist/reports/${id}/status`, { body: { status: "in_progress" }, headers: asHandler });
    assert.equal(reopen.status, 409);
    assert.match(reopen.body.message!, /closed cannot become in_progress/);

    const followed = await call(base, "GET", `/assist/reports/${id}/follow`, { headers: { "x-reporter-token": token } });
    const comments = (followed.body.history as Array<{ comment: string }>).map((h) => h.comment);
    assert.deepEqual(comments, ["reported", "Looking at it", "Fixed in 2.3.1", ""]);
    const wrongToken = await call(base, "GET", `/assist/reports/${id}/follow`, { headers: { "x-reporter-token": "guess" } });
    assert.equal(wrongToken.status, 403);
    const full = await call(base, "GET", `/assist/reports/${id}`, { headers: asDeveloper() });
    assert.ok((full.body.history as Array<{ comment: string }>).some((h) => h.comment.startsWith("internal:")));
  });

  test("statistics per category and day count volume, handled ratio and response times, over REST and Connect", async () => {
    const stats = await call(base, "GET", "/assist/reports/stats", { headers: asDeveloper() });
    const rows = stats.body.stats as Array<{
      category: string;
      volume: number;
      handledRatio: number;
      meanFirstResponseSeconds: number;
      meanResolveSeconds: number;
    }>;
    const today = new Date().toISOString().slice(0, 10);
    const data = rows.find((r) => r.category === "data")!;
    const program = rows.find((r) => r.category === "program")!;
    assert.equal(data.volume, 1);
    assert.equal(data.handledRatio, 0);
    assert.equal(program.volume, 1);
    assert.equal(program.handledRatio, 1);
    assert.ok(program.meanFirstResponseSeconds > 0 && program.meanResolveSeconds >= program.meanFirstResponseSeconds);
    const rpc = await call(base, "POST", "/ops.v1.AssistService/GetProblemReportStats", {
      body: { from: today, to: today },
      headers: asDeveloper(),
    });
    assert.equal(rpc.status, 200);
    assert.equal((rpc.body.stats as unknown[]).length, 2);
    const badRange = await call(base, "GET", "/assist/reports/stats?from=yesterday", { headers: asDeveloper() });
    assert.equal(badRange.status, 400);
    const sessions = await call(base, "POST", "/ops.v1.AssistService/ListAssistSessions", { body: {}, headers: asDeveloper() });
    assert.equal((sessions.body.sessions as unknown[]).length, 1);
  });

  test("recordings older than the retention are swept", async () => {
    const { sessionId, widget } = await openWidget(base, { join: true });
    widget.send({ t: "console", entries: [{ level: "log", text: "old line", at: 1 }] });
    const read = () => call(base, "GET", `/assist/sessions/${sessionId}/recording`, { headers: asDeveloper() });
    await eventually("the recorded line", async () => ((await read()).body.events as unknown[]).length === 1);
    const db = new pg.Client({ connectionString: env.db.url });
    await db.connect();
    await db.query("UPDATE assist_relay.recording_events SET received_at = now() - interval '2 hours' WHERE session_id = $1", [sessionId]);
    await db.end();
    await eventually("the sweep", async () => ((await read()).body.events as unknown[]).length === 0, 5000);
    widget.close();
  });
});
