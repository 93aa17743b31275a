import assert from "node:assert/strict";
import http from "node:http";
import { after, before, beforeEach, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { wrapHttpHandler } from "../src/adapters/node-http.js";
import { baseUrl, call, governed, removal, rule } from "./governance-fixtures.js";

const { governance, ctx, log } = governed({ providers: ["instance-1", "zone=b"] });
let server: http.Server;
let url: string;
let handled = 0;

before(async () => {
  server = http.createServer(
    wrapHttpHandler(ctx, (_req, res) => {
      handled++;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ rate: 0.05 }));
    }),
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `${baseUrl(server.address())}/loans/42`;
});

after(() => new Promise((r) => server.close(r)));

beforeEach(() => {
  governance.apply([removal("route", "get.loans.id")]);
  handled = 0;
});

const get = (query = "", caller?: string) => call(`${url}${query}`, { headers: caller ? { "x-opsplane-caller": caller } : {} });

test("a closed interface answers 503 route-closed with a JSON reason, and the handler never runs", async () => {
  governance.apply([rule("route", "get.loans.id", { enabled: false })]);
  const r = await get();
  assert.equal(r.status, 503);
  assert.equal(r.headers.get("x-opsplane-governance"), "route-closed");
  assert.deepEqual(r.body, { error: "route-closed", message: "interface get.loans.id is closed by its route rule" });
  assert.equal(handled, 0);
});

test("a caller condition closes the interface to one caller only", async () => {
  governance.apply([
    rule("route", "get.loans.id", { enabled: true, conditions: [{ by: "caller", values: ["partner-b"], enabled: false }] }),
  ]);
  const refused = await get("", "partner-b");
  assert.equal(refused.status, 503);
  assert.equal((refused.body as { message: string }).message, "interface get.loans.id is closed by its route rule (caller in partner-b)");
  assert.equal((await get("", "partner-a")).status, 200);
  assert.equal((await get()).status, 200);
});

test("a closed interface can stay open to the callers a condition names", async () => {
  governance.apply([
    rule("route", "get.loans.id", { enabled: false, conditions: [{ by: "caller", values: ["ops-console"], enabled: true }] }),
  ]);
  assert.equal((await get("", "ops-console")).status, 200);
  assert.equal((await get("", "partner-a")).status, 503);
});

test("a param condition tests the live query parameter", async () => {
  governance.apply([
    rule("route", "get.loans.id", {
      enabled: true,
      conditions: [{ by: "param", name: "channel", values: ["h5", "mini"], enabled: false }],
    }),
  ]);
  assert.equal((await get("?channel=h5")).status, 503);
  assert.equal((await get("?channel=mini&x=1")).status, 503);
  assert.equal((await get("?channel=app")).status, 200);
  assert.equal((await get()).status, 200);
});

test("a provider condition closes the interface on the instances it names", async () => {
  governance.apply([
    rule("route", "get.loans.id", { enabled: true, conditions: [{ by: "provider", values: ["zone=b"], enabled: false }] }),
  ]);
  const r = await get();
  assert.equal(r.status, 503);
  assert.equal(
    (r.body as { message: string }).message,
    "interface get.loans.id is closed on this instance by its route rule (provider in zone=b)",
  );
  governance.setProviders(["instance-1", "zone=a"]);
  assert.equal((await get()).status, 200, "not on an instance in another zone");
  governance.setProviders(["instance-1", "zone=b"]);
});

test("a route switched mid-traffic takes effect at the next request, and no request fails meanwhile", async () => {
  let stop = false;
  const statuses: number[] = [];
  const traffic = Array.from({ length: 3 }, async () => {
    while (!stop) statuses.push((await get()).status);
  });
  await eventually("traffic flowing", () => statuses.length >= 30);
  governance.apply([rule("route", "get.loans.id", { enabled: false })]);
  assert.equal((await get()).status, 503, "closed at once");
  const closedAt = statuses.length;
  await eventually("traffic refused", () => statuses.length >= closedAt + 30);
  governance.apply([rule("route", "get.loans.id", { enabled: true })]);
  assert.equal((await get()).status, 200, "open at once");
  stop = true;
  await Promise.all(traffic);
  assert.ok(statuses.every((s) => s === 200 || s === 503));
  // At most the requests already past the gate when it closed (one per client) answer 200 after it.
  assert.ok(statuses.slice(closedAt + 3, closedAt + 30).every((s) => s === 503));
});

test("a malformed rule is logged once and ignored: the previous rule stays", async () => {
  governance.apply([rule("route", "get.loans.id", { enabled: false })]);
  const before = log.lines.length;
  const bad = rule("route", "get.loans.id", { enabled: "no" });
  governance.apply([bad]);
  governance.apply([{ ...bad }]);
  assert.equal((await get()).status, 503, "the previous rule still closes the interface");
  const warned = log.lines.slice(before).filter((l) => l.level === "warn");
  assert.deepEqual(
    warned.map((l) => l.msg),
    ["governance rule route/get.loans.id ignored, the previous rule stays: /enabled must be true or false"],
  );
  assert.deepEqual(governance.describe().ignored, [
    { key: "route/get.loans.id", revision: bad.revision, reason: "/enabled must be true or false" },
  ]);

  governance.apply([rule("route", "get.loans.id", { enabled: true, conditions: [{ by: "param", values: ["x"], enabled: false }] })]);
  assert.equal((await get()).status, 503, "a param condition without a name is refused too");
  governance.apply([rule("route", "get.loans.id", { enabled: true })]);
  assert.equal((await get()).status, 200, "a good rule replaces it");
  assert.deepEqual(governance.describe().ignored, []);
});

test("a deleted rule goes, and a full set removes the rules it no longer has", async () => {
  governance.apply([rule("route", "get.loans.id", { enabled: false })]);
  governance.apply([removal("route", "get.loans.id")]);
  assert.equal((await get()).status, 200);

  governance.apply([rule("route", "get.loans.id", { enabled: false })]);
  governance.apply([rule("rate-limit", "get.loans.id", { tps: 1000 })], "full");
  assert.equal((await get()).status, 200, "the route rule was not in the full set");
  assert.deepEqual(Object.keys(governance.describe().interfaces.find((i) => i.code === "get.loans.id")?.rules ?? {}), ["rate-limit"]);
  governance.apply([], "full");
});
