import assert from "node:assert/strict";
import http from "node:http";
import { after, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { wrapHttpHandler } from "../src/adapters/node-http.js";
import { baseUrl, call, governed, rule } from "./governance-fixtures.js";

const servers: http.Server[] = [];

async function serve(listener: http.RequestListener): Promise<string> {
  const server = http.createServer(listener);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return baseUrl(server.address());
}

after(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

const ok: http.RequestListener = (_req, res) => {
  res.end("ok");
};

test("without a code function, a request's code comes from its method and path, ids as id", async () => {
  const { governance, ctx, seen } = governed();
  const url = await serve(wrapHttpHandler(ctx, ok));
  await call(`${url}/loans/123?x=1`);
  await call(`${url}/loans/7f9c2d3e-8a1b-4c5d-9e6f-0a1b2c3d4e5f`);
  await call(`${url}/users/alice`, { method: "POST" });
  await call(`${url}/`);
  // A call finishes when its response closes, which the client may see a moment before.
  await eventually("the four calls finished", () => seen.finished.length === 4);
  assert.deepEqual(
    seen.finished.map((f) => f.code),
    ["get.loans.id", "get.loans.id", "post.users.alice", "get.root"],
  );
  assert.deepEqual(ctx.routes.list(), [
    { code: "get.loans.id", method: "GET", path: "/loans/:id" },
    { code: "post.users.alice", method: "POST", path: "/users/alice" },
    { code: "get.root", method: "GET", path: "/" },
  ]);
  governance.apply([rule("route", "get.loans.id", { enabled: false })]);
  assert.equal((await call(`${url}/loans/999`)).status, 503);
});

test("a code function names the interface; one that throws is logged once and the path's code is used", async () => {
  const { governance, ctx, log, seen } = governed();
  const url = await serve(
    wrapHttpHandler(ctx, ok, {
      code: (req) => {
        const op = req.headers["x-op"];
        if (typeof op !== "string") throw new Error("no x-op header");
        return op;
      },
    }),
  );
  governance.apply([rule("route", "loan.apply", { enabled: false })]);
  assert.equal((await call(`${url}/anything`, { headers: { "x-op": "loan.apply" } })).status, 503);
  assert.equal((await call(`${url}/anything`)).status, 200, "the request is still served");
  assert.equal((await call(`${url}/anything`)).status, 200);
  await eventually("the three calls finished", () => seen.finished.length === 3);
  assert.equal(log.lines.filter((l) => l.level === "error").length, 1);
  assert.match(log.lines.find((l) => l.level === "error")?.msg ?? "", /no x-op header; requests get the code of their path instead/);
  assert.deepEqual(
    seen.finished.map((f) => f.code),
    ["loan.apply", "get.anything", "get.anything"],
  );
});

test("a handler's 5xx answers count as failures: the breaker opens", async () => {
  const { governance, ctx } = governed();
  let handled = 0;
  const url = await serve(
    wrapHttpHandler(ctx, (_req, res) => {
      handled++;
      res.statusCode = 502;
      res.end("upstream down");
    }),
  );
  governance.apply([rule("circuit-breaker", "get.pay", { errorCount: 2, openMs: 60_000 })]);
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push((await call(`${url}/pay`)).status);
  assert.deepEqual(statuses, [502, 502, 503, 503]);
  assert.equal(handled, 2);
});
