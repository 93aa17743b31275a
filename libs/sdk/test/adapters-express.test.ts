import assert from "node:assert/strict";
import type http from "node:http";
import { after, before, test } from "node:test";
import { eventually } from "@opsplane/testing";
import express from "express";
import { expressAdapter } from "../src/adapters/express.js";
import { baseUrl, call, governed, removal, rule } from "./governance-fixtures.js";

const appLevel = governed();
const perRoute = governed();
const servers: http.Server[] = [];
let appLevelUrl: string;
let perRouteUrl: string;

function listen(app: express.Express): Promise<string> {
  return new Promise((resolve) => {
    const server = app.listen(0, "127.0.0.1", () => resolve(baseUrl(server.address())));
    servers.push(server);
  });
}

before(async () => {
  // One line for the whole app; a per-route middleware as well, which steps aside.
  const a = express();
  const sdkA = expressAdapter(appLevel.ctx);
  a.use(sdkA());
  a.get("/loans/:id", sdkA.route("loan.query"), (_req, res) => {
    res.json({ ok: true });
  });
  appLevelUrl = await listen(a);

  // Per route: explicit codes, or the route's own pattern (under its router's mount path).
  const b = express();
  const sdkB = expressAdapter(perRoute.ctx);
  b.post("/loans", express.json(), sdkB.route("loan.apply"), (_req, res) => {
    res.json({ applied: true });
  });
  const router = express.Router();
  router.get("/rates/:term", sdkB.route(), (_req, res) => {
    res.json({ rate: 0.05 });
  });
  b.use("/api", router);
  perRouteUrl = await listen(b);
});

after(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

test("app-level: every request is governed under the code of its method and path, ids as id", async () => {
  const { governance, ctx } = appLevel;
  governance.apply([rule("route", "get.loans.id", { enabled: false })]);
  const r = await call(`${appLevelUrl}/loans/42`);
  assert.equal(r.status, 503);
  assert.equal(r.headers.get("x-opsplane-governance"), "route-closed");
  governance.apply([removal("route", "get.loans.id")]);
  assert.equal((await call(`${appLevelUrl}/loans/43`)).status, 200);
  assert.deepEqual(ctx.routes.list(), [{ code: "get.loans.id", method: "GET", path: "/loans/:id" }]);
});

test("app-level and per-route together: each request is governed once, by the app-level middleware", async () => {
  const { governance, seen } = appLevel;
  governance.apply([rule("route", "loan.query", { enabled: false })]);
  seen.finished.length = 0;
  assert.equal((await call(`${appLevelUrl}/loans/7`)).status, 200, "the per-route code was not used");
  await eventually("the call finished", () => seen.finished.length > 0);
  assert.deepEqual(
    seen.finished.map((f) => f.code),
    ["get.loans.id"],
  );
  governance.apply([removal("route", "loan.query")]);
});

test("per route: an explicit code, with a param condition reading the parsed body", async () => {
  const { governance } = perRoute;
  governance.apply([
    rule("route", "loan.apply", { enabled: true, conditions: [{ by: "param", name: "product", values: ["cash"], enabled: false }] }),
  ]);
  const post = (product: string) =>
    call(`${perRouteUrl}/loans`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ product }) });
  assert.equal((await post("cash")).status, 503);
  assert.equal((await post("mortgage")).status, 200);
  governance.apply([removal("route", "loan.apply")]);
});

test("per route without a code: the route's pattern under its mount path", async () => {
  const { governance, ctx } = perRoute;
  governance.apply([rule("rate-limit", "get.api.rates.term", { concurrency: 1 })]);
  // Each call frees its slot when its response closes (which the client may see a moment
  // before), so calls one after another all pass.
  for (let i = 0; i < 5; i++)
    await eventually(`call ${i} passing`, async () => (await call(`${perRouteUrl}/api/rates/${i}`)).status === 200);
  governance.apply([rule("route", "get.api.rates.term", { enabled: false })]);
  assert.equal((await call(`${perRouteUrl}/api/rates/12`)).status, 503);
  governance.apply([removal("route", "get.api.rates.term"), removal("rate-limit", "get.api.rates.term")]);
  assert.ok(ctx.routes.list().some((r) => r.code === "get.api.rates.term" && r.path === "/api/rates/:term"));
});

test("an invalid per-route code fails when the middleware is made", () => {
  assert.throws(() => expressAdapter(perRoute.ctx).route("no spaces"), /sdk\.express\.route\(\): interface code "no spaces" is not valid/);
});

test("discover(app) reports per-route codes before any request, under their mount paths", () => {
  const { ctx } = governed();
  const sdk = expressAdapter(ctx);
  const app = express();
  app.get("/orders/:id", sdk.route("order.get"), (_req, res) => void res.end());
  app.post("/orders", express.json(), sdk.route("order.create"), (_req, res) => void res.end());
  app.get("/health", (_req, res) => void res.end());
  const api = express.Router();
  api.get("/rates/:term", sdk.route(), (_req, res) => void res.end());
  app.use("/api", api);
  const byUser = express.Router({ mergeParams: true });
  byUser.get("/limits", sdk.route("user.limits"), (_req, res) => void res.end());
  byUser.get("/history", sdk.route(), (_req, res) => void res.end());
  app.use("/users/:uid", byUser);

  assert.deepEqual(ctx.routes.list(), [], "nothing before discover");
  assert.equal(sdk.discover(app), 4);
  assert.deepEqual(ctx.routes.list(), [
    { code: "order.get", method: "GET", path: "/orders/:id" },
    { code: "order.create", method: "POST", path: "/orders" },
    { code: "get.api.rates.term", method: "GET", path: "/api/rates/:term" },
    // A mount path with parameters: the explicit code now, a derived one at its first request.
    { code: "user.limits", method: "GET" },
  ]);
});
