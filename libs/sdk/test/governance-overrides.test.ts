import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { fastifyPlugin } from "../src/adapters/fastify.js";
import { baseUrl, call, governed, rule } from "./governance-fixtures.js";

const { governance, ctx } = governed();
let app: FastifyInstance;
let base: string;

before(async () => {
  app = Fastify();
  await app.register(fastifyPlugin(ctx));
  app.get("/loans/:id", async () => ({ ok: true }));
  app.get("/health", { config: { opsplane: false } }, async () => ({ up: true }));
  await app.listen({ port: 0, host: "127.0.0.1" });
  base = baseUrl(app.server.address());
});

after(() => app.close());

beforeEach(() => {
  governance.override("get.loans.id", null);
  governance.setInstanceOffline(false);
});

const loan = () => call(`${base}/loans/1`);

test("a throttle command limits TPS on this instance and answers what it applied", async () => {
  assert.deepEqual(governance.override("get.loans.id", { tps: 1 }), { tps: 1 });
  const statuses = await Promise.all(Array.from({ length: 6 }, loan)).then((a) => a.map((r) => r.status));
  assert.equal(statuses.filter((s) => s === 200).length, 1, `statuses ${statuses}`);
  const refused = await loan();
  assert.equal(refused.status, 429);
  assert.equal(
    (refused.body as { message: string }).message,
    "interface get.loans.id is over the throttle a terminal command set: 1 calls a second",
  );
});

test("the stricter of a pushed limit and a throttle applies, and clearing the throttle leaves the pushed one", async () => {
  governance.apply([rule("rate-limit", "get.loans.id", { tps: 2 })]);
  governance.override("get.loans.id", { tps: 100 });
  const statuses = await Promise.all(Array.from({ length: 6 }, loan)).then((a) => a.map((r) => r.status));
  assert.ok(statuses.filter((s) => s === 200).length <= 3, `statuses ${statuses}`);
  assert.deepEqual(governance.override("get.loans.id", { tps: null }), {});
  assert.deepEqual(Object.keys(governance.describe().interfaces.find((i) => i.code === "get.loans.id")?.rules ?? {}), ["rate-limit"]);
  governance.apply([rule("rate-limit", "get.loans.id", { tps: 100_000 })]);
});

test("a break command holds the breaker open until cleared", async () => {
  governance.override("get.loans.id", { breakOpen: true });
  const r = await loan();
  assert.equal(r.status, 503);
  assert.equal(r.headers.get("x-opsplane-governance"), "circuit-open");
  assert.match((r.body as { message: string }).message, /forced open on this instance/);
  governance.override("get.loans.id", { breakOpen: false });
  assert.equal((await loan()).status, 200);
});

test("an offline command takes one interface offline; a merged command keeps the other fields", async () => {
  governance.override("get.loans.id", { offline: true });
  assert.deepEqual(governance.override("get.loans.id", { concurrency: 5 }), { offline: true, concurrency: 5 });
  const r = await loan();
  assert.equal(r.status, 503);
  assert.equal(r.headers.get("x-opsplane-governance"), "interface-offline");
  assert.deepEqual(governance.describe().interfaces.find((i) => i.code === "get.loans.id")?.override, { offline: true, concurrency: 5 });
  governance.override("get.loans.id", null);
  assert.equal((await loan()).status, 200);
});

test("an instance taken offline answers 503 on every governed route, and serves again when back", async () => {
  governance.setInstanceOffline(true);
  const r = await call(`${base}/loans/9`);
  assert.equal(r.status, 503);
  assert.deepEqual(r.body, { error: "instance-offline", message: "this instance is offline (terminal command)" });
  assert.equal((await call(`${base}/health`)).status, 200, "a route with opsplane: false stays out of governance");
  assert.equal(governance.describe().instanceOffline, true);
  governance.setInstanceOffline(false);
  assert.equal((await loan()).status, 200);
});

test("a bad override value is refused naming the field, and nothing changes", async () => {
  governance.override("get.loans.id", { concurrency: 3 });
  assert.throws(() => governance.override("get.loans.id", { tps: -1, offline: true }), /tps must be a number above 0/);
  assert.throws(() => governance.override("get.loans.id", { concurrency: 1.5 }), /concurrency must be an integer/);
  assert.deepEqual(governance.describe().interfaces.find((i) => i.code === "get.loans.id")?.override, { concurrency: 3 });
  assert.equal((await loan()).status, 200);
});
