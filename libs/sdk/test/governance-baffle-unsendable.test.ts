/**
 * A baffle whose answer Node cannot send (a header name that is not a token, a value with CR/LF)
 * must never crash the app or inject a header: a rule is refused when applied, a script's answer
 * is a 500, and whatever still cannot be written is a 500 `baffle` JSON answer. Each adapter that
 * writes answers itself (express, node:http, fastify) is served by a real server.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, beforeEach, test } from "node:test";
import express from "express";
import Fastify, { type FastifyInstance } from "fastify";
import type { AdapterContext } from "../src/adapters/adapter-context.js";
import { expressAdapter } from "../src/adapters/express.js";
import { fastifyPlugin } from "../src/adapters/fastify.js";
import { wrapHttpHandler } from "../src/adapters/node-http.js";
import { RoutesSeen } from "../src/adapters/routes-seen.js";
import type { Edge } from "../src/contracts.js";
import { baseUrl, call, governed, recordingLog, removal, rule } from "./governance-fixtures.js";

const { governance, ctx, log } = governed();
const servers: http.Server[] = [];
let fastify: FastifyInstance;
/** The same interface `loan.quote` under each adapter. */
const urls: Record<string, string> = {};

async function serve(listener: http.RequestListener): Promise<string> {
  const server = http.createServer(listener);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return baseUrl(server.address());
}

const handler: http.RequestListener = (_req, res) => {
  res.setHeader("content-type", "text/plain");
  res.end("handler");
};

before(async () => {
  const app = express();
  app.use(expressAdapter(ctx).route("loan.quote"), (req, res) => handler(req, res));
  urls.express = await serve(app);
  urls.http = await serve(wrapHttpHandler(ctx, handler, { code: () => "loan.quote" }));
  fastify = Fastify();
  await fastify.register(fastifyPlugin(ctx));
  fastify.get("/", { config: { opsplane: { code: "loan.quote" } } }, async () => "handler");
  await fastify.listen({ port: 0, host: "127.0.0.1" });
  urls.fastify = baseUrl(fastify.server.address());
});

after(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  await fastify.close();
  await governance.close();
});

beforeEach(() => governance.apply([removal("baffle", "loan.quote")]));

const linesAbout = (from: number, text: string) => log.lines.slice(from).filter((l) => l.msg.includes(text)).length;

for (const delayMs of [undefined, 50]) {
  test(`a baffle rule with a header name that is not a token is ignored, the previous rule kept (delayMs ${delayMs})`, async () => {
    const good = { enabled: true, response: { status: 202, body: "mock" } };
    governance.apply([rule("baffle", "loan.quote", good)]);
    const from = log.lines.length;
    const bad = { enabled: true, response: { status: 200, headers: { "bad header": "2" }, body: "x" }, delayMs };
    governance.apply([rule("baffle", "loan.quote", bad)]);
    for (const [adapter, url] of Object.entries(urls)) {
      for (let i = 0; i < 2; i++) {
        const r = await call(url);
        assert.equal(r.status, 202, `${adapter}: the previous baffle still answers`);
        assert.equal(r.body, "mock", adapter);
      }
    }
    assert.equal(linesAbout(from, "governance rule baffle/loan.quote ignored"), 1, "logged once");
    assert.match(
      governance.describe().ignored.find((i) => i.key === "baffle/loan.quote")?.reason ?? "",
      /^\/response\/headers: header name "bad header" is not a valid HTTP token$/,
    );

    // With no previous baffle the interface is served by its handler.
    governance.apply([removal("baffle", "loan.quote"), rule("baffle", "loan.quote", { ...bad, body: "y" })]);
    for (const [adapter, url] of Object.entries(urls)) assert.equal((await call(url)).body, "handler", adapter);
  });
}

test("baffle rules with a CR/LF in a header value, a framing header or a status out of range are ignored", async () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ headers: { "x-a": "1\r\nset-cookie: evil=1" } }, /header x-a holds a character HTTP cannot carry/],
    [{ headers: { "content-length": "1" } }, /header content-length is set by the server/],
    [{ status: 99 }, /\/response\/status must be between 100 and 599/],
  ];
  for (const [response, reason] of cases) {
    governance.apply([rule("baffle", "loan.quote", { enabled: true, response })]);
    assert.match(governance.describe().ignored.find((i) => i.key === "baffle/loan.quote")?.reason ?? "", reason);
    for (const [adapter, url] of Object.entries(urls)) assert.equal((await call(url)).body, "handler", adapter);
  }
});

test("a baffle script returning a header with CR/LF from the query answers 500, injects nothing and is logged once", async () => {
  const script = 'function respond(req) { return { status: 200, headers: { "x-q": req.query.v || "ok" }, body: "hi" }; }';
  governance.apply([rule("baffle", "loan.quote", { enabled: true, response: {}, script })]);
  for (const [adapter, url] of Object.entries(urls)) assert.equal((await call(`${url}/?v=fine`)).headers.get("x-q"), "fine", adapter);
  const from = log.lines.length;
  for (const [adapter, url] of Object.entries(urls)) {
    for (let i = 0; i < 2; i++) {
      const r = await call(`${url}/?v=a%0d%0aSet-Cookie:%20evil=1`);
      assert.equal(r.status, 500, adapter);
      assert.equal(r.headers.get("set-cookie"), null, `${adapter}: no header injected`);
      assert.equal(r.headers.get("x-opsplane-governance"), "baffle", adapter);
      assert.equal(
        (r.body as { message: string }).message,
        "baffle script of loan.quote failed: it returned a header that cannot be sent: header x-q holds a character HTTP cannot carry (CR, LF, NUL, another control, beyond Latin-1)",
      );
    }
  }
  assert.equal(linesAbout(from, "baffle script of loan.quote"), 1, "logged once");
  for (const [adapter, url] of Object.entries(urls)) assert.equal((await call(`${url}/?v=again`)).headers.get("x-q"), "again", adapter);
});

test("a baffle script returning a header name that is not a token, or a framing header, answers 500", async () => {
  const cases: Array<[string, string]> = [
    ['{ headers: { "bad header": "2" } }', 'header name "bad header" is not a valid HTTP token'],
    ['{ headers: { "Transfer-Encoding": "chunked" }, body: "x" }', "header Transfer-Encoding is set by the server, not a baffle"],
  ];
  for (const [result, reason] of cases) {
    governance.apply([rule("baffle", "loan.quote", { enabled: true, response: {}, script: `function respond() { return ${result}; }` })]);
    for (const [adapter, url] of Object.entries(urls)) {
      const r = await call(url);
      assert.equal(r.status, 500, adapter);
      assert.ok((r.body as { message: string }).message.endsWith(reason), `${adapter}: ${JSON.stringify(r.body)}`);
    }
  }
});

test("an edge answer that still cannot be written is a 500 baffle JSON answer, logged once, never a crash", async () => {
  const badLog = recordingLog();
  const edge: Edge = {
    now: () => performance.now(),
    finish: () => {},
    enter: (req) => ({
      action: "respond",
      reason: "baffle",
      response: { statusCode: 200, headers: { "bad header": "2" }, body: "x", ...(req.path === "/later" ? { delayMs: 20 } : {}) },
    }),
  };
  const bad: AdapterContext = { edge, routes: new RoutesSeen(), log: badLog };
  const app = express();
  app.use(expressAdapter(bad)());
  app.use((req, res) => handler(req, res));
  const targets = [await serve(app), await serve(wrapHttpHandler(bad, handler))];
  for (const url of targets)
    for (const path of ["/now", "/later"]) {
      const r = await call(`${url}${path}`);
      assert.equal(r.status, 500);
      assert.equal(r.headers.get("x-opsplane-governance"), "baffle");
      assert.equal((r.body as { error: string }).error, "baffle-failed");
      assert.match((r.body as { message: string }).message, /header name "bad header" is not a valid HTTP token/);
    }
  assert.equal(badLog.lines.filter((l) => l.msg.startsWith("governance answer replaced by a 500")).length, 2, "once per adapter");
});
