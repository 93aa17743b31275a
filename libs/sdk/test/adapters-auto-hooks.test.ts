import assert from "node:assert/strict";
import http from "node:http";
import { after, before, test } from "node:test";
import { eventually } from "@opsplane/testing";
import express from "express";
import Fastify, { type FastifyInstance } from "fastify";
import { installAutoHooks } from "../src/adapters/auto-hooks.js";
import { expressAdapter } from "../src/adapters/express.js";
import { baseUrl, call, governed, rule } from "./governance-fixtures.js";

const { governance, ctx, seen } = governed();
let uninstall: () => void;
let fastifyApp: FastifyInstance;
const servers: http.Server[] = [];
let fastifyUrl: string;
let plainUrl: string;
let expressUrl: string;

async function listen(server: http.Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return baseUrl(server.address());
}

before(async () => {
  uninstall = installAutoHooks(ctx);
  // An unmodified fastify app: created after the hooks, as `--import @opsplane/sdk/auto` ensures.
  fastifyApp = Fastify();
  fastifyApp.get("/loans/:id", async () => ({ ok: true }));
  await fastifyApp.listen({ port: 0, host: "127.0.0.1" });
  fastifyUrl = baseUrl(fastifyApp.server.address());
  plainUrl = await listen(http.createServer((_req, res) => res.end("plain")));
  // An express app that also uses the declared middleware: auto mode governs it first.
  const app = express();
  app.use(expressAdapter(ctx)());
  app.get("/rates/:term", (_req, res) => {
    res.json({ rate: 0.05 });
  });
  expressUrl = await listen(http.createServer(app));
});

after(async () => {
  uninstall();
  await fastifyApp.close();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

test("a fastify app is hooked through its initialization channel and governed once per request", async () => {
  governance.apply([rule("route", "get.loans.id", { enabled: false })]);
  seen.finished.length = 0;
  const r = await call(`${fastifyUrl}/loans/1`);
  assert.equal(r.status, 503);
  assert.equal(r.headers.get("x-opsplane-governance"), "route-closed");
  assert.deepEqual(
    seen.finished.map((f) => f.code),
    ["get.loans.id"],
    "the server wrap left the fastify server to its hooks",
  );
  assert.ok(ctx.routes.list().some((i) => i.code === "get.loans.id" && i.path === "/loans/:id"));
});

test("other http servers are governed through the request event, each request once", async () => {
  governance.apply([rule("route", "get.ping", { enabled: false }), rule("rate-limit", "get.rates.id", { tps: 1 })]);
  const closed = await call(`${plainUrl}/ping`);
  assert.equal(closed.status, 503);
  assert.equal(closed.body && (closed.body as { error: string }).error, "route-closed");
  assert.equal((await call(`${plainUrl}/other`)).status, 200);

  seen.finished.length = 0;
  const statuses = [(await call(`${expressUrl}/rates/12`)).status, (await call(`${expressUrl}/rates/24`)).status];
  assert.deepEqual(statuses, [200, 429], "one token at 1 TPS: had both gates counted, the first call would have been refused");
  await eventually("both calls finished", () => seen.finished.length >= 2);
  assert.deepEqual(
    seen.finished.map((f) => f.code),
    ["get.rates.id", "get.rates.id"],
  );
});

test("once uninstalled, servers answer ungoverned", async () => {
  governance.apply([rule("route", "get.gone", { enabled: false })]);
  assert.equal((await call(`${plainUrl}/gone`)).status, 503);
  uninstall();
  assert.equal((await call(`${plainUrl}/gone`)).status, 200);
  uninstall = () => {};
});
