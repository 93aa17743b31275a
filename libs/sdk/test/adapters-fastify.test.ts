import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { eventually } from "@opsplane/testing";
import Fastify, { type FastifyInstance } from "fastify";
import { fastifyPlugin } from "../src/adapters/fastify.js";
import { baseUrl, call, governed, latch, reachesHandler, removal, rule } from "./governance-fixtures.js";

const { governance, ctx, seen } = governed();
let app: FastifyInstance;
let base: string;

before(async () => {
  app = Fastify();
  await app.register(fastifyPlugin(ctx));
  // Registered again, and inside a plugin: still one gate per request.
  await app.register(fastifyPlugin(ctx));
  app.get("/", async () => ({ home: true }));
  app.get("/loans/:id", async () => {
    await sleep(30);
    return { ok: true };
  });
  app.post("/loans", { config: { opsplane: { code: "loan.apply" } } }, async () => ({ applied: true }));
  app.get("/boom", async () => {
    throw new Error("boom");
  });
  app.register(
    async (child) => {
      await child.register(fastifyPlugin(ctx));
      child.get("/rates/:term", async () => ({ rate: 0.05 }));
    },
    { prefix: "/v2" },
  );
  await app.listen({ port: 0, host: "127.0.0.1" });
  base = baseUrl(app.server.address());
});

after(() => app.close());

test("routes get their code from config, else from method and pattern, and are listed for the resources report", async () => {
  await app.ready();
  const listed = ctx.routes.list();
  assert.deepEqual(listed.map((r) => `${r.code} ${r.method} ${r.path}`).sort(), [
    "get.boom GET /boom",
    "get.loans.id GET /loans/:id",
    "get.root GET /",
    "get.v2.rates.term GET /v2/rates/:term",
    "loan.apply POST /loans",
  ]);

  governance.apply([rule("route", "get.v2.rates.term", { enabled: false }), rule("route", "loan.apply", { enabled: false })]);
  assert.equal((await call(`${base}/v2/rates/12`)).status, 503, "a route declared in a plugin is governed");
  assert.equal((await call(`${base}/loans`, { method: "POST" })).status, 503, "the configured code is the one rules name");
  assert.equal((await call(`${base}/`)).status, 200);
  governance.apply([removal("route", "get.v2.rates.term"), removal("route", "loan.apply")]);
});

test("HEAD requests share their GET route's code", async () => {
  governance.apply([rule("route", "get.loans.id", { enabled: false })]);
  assert.equal((await call(`${base}/loans/1`, { method: "HEAD" })).status, 503);
  governance.apply([removal("route", "get.loans.id")]);
  assert.equal((await call(`${base}/loans/1`, { method: "HEAD" })).status, 200);
});

test("an invalid configured code fails when the route is declared, naming it", async () => {
  const bad = Fastify();
  await bad.register(fastifyPlugin(governed().ctx));
  assert.throws(
    () => bad.get("/x", { config: { opsplane: { code: "bad code!" } } }, async () => ({})),
    /fastify route GET \/x: interface code "bad code!" is not valid/,
  );
  await bad.close();
});

test("each request is seen once by the observers: timed, failed on errors, with the reason when governance answered", async () => {
  seen.finished.length = 0;
  await call(`${base}/loans/5`);
  await call(`${base}/boom`);
  governance.apply([rule("route", "get.root", { enabled: false })]);
  await call(`${base}/`);
  governance.apply([removal("route", "get.root")]);

  // A call finishes in onResponse, which may run a moment after the client has the answer.
  await eventually("the three calls finished", () => seen.finished.length === 3);
  const [loan, boom, closed] = seen.finished;
  assert.equal(loan?.code, "get.loans.id");
  assert.equal(loan?.outcome.statusCode, 200);
  assert.ok((loan?.outcome.durationMs ?? 0) >= 25, `timed ${loan?.outcome.durationMs} ms for a 30 ms handler`);
  assert.deepEqual([boom?.code, boom?.outcome.statusCode, boom?.outcome.failed], ["get.boom", 500, true]);
  assert.deepEqual([closed?.code, closed?.outcome.statusCode, closed?.answeredBy], ["get.root", 503, "route-closed"]);
});

test("over HTTP/2, a client that cancels its stream frees its concurrency slot, and the call counts as aborted", async () => {
  const h2 = governed();
  h2.governance.apply([rule("rate-limit", "loan.apply", { concurrency: 1 })]);
  const server = Fastify({ http2: true });
  await server.register(fastifyPlugin(h2.ctx));
  const held = latch();
  let entered = 0;
  server.post("/loans", { config: { opsplane: { code: "loan.apply" } } }, async () => {
    entered++;
    await held.promise;
    return { ok: true };
  });
  await server.listen({ port: 0, host: "127.0.0.1" });
  const session = http2.connect(baseUrl(server.server.address()));
  const post = () => {
    const stream = session.request({ ":method": "POST", ":path": "/loans" });
    stream.end();
    // 0: the stream closed without an answer.
    const status = new Promise<number>((resolve) => {
      stream.on("response", (headers) => resolve(Number(headers[":status"])));
      stream.on("error", () => resolve(0));
      stream.on("close", () => resolve(0));
    });
    return { stream, status };
  };
  try {
    const first = post();
    await eventually("the call in the handler", () => entered === 1);
    assert.equal(await post().status, 429, "the slot is taken");
    first.stream.close(http2.constants.NGHTTP2_CANCEL);
    // The server hears of the cancel a moment later; the held handler cannot have freed the slot.
    await eventually(
      "a new call in the handler",
      async () =>
        (await reachesHandler(
          () => post().status.then((status) => ({ status, headers: new Headers(), body: "" })),
          () => entered,
        )) !== undefined,
    );
    const ended = h2.seen.finished.filter((f) => f.answeredBy === undefined).map((f) => [f.code, f.outcome.statusCode, f.outcome.failed]);
    assert.deepEqual(ended, [["loan.apply", 499, true]], "the cancelled call, as a client that went away");
  } finally {
    held.open();
    session.destroy();
    await server.close();
  }
});
