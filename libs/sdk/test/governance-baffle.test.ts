import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";
import { eventually } from "@opsplane/testing";
import Fastify, { type FastifyInstance } from "fastify";
import { fastifyPlugin } from "../src/adapters/fastify.js";
import { baseUrl, call, governed, removal, rule } from "./governance-fixtures.js";

const { governance, ctx, log } = governed();
let app: FastifyInstance;
let url: string;
let handled = 0;

before(async () => {
  app = Fastify();
  await app.register(fastifyPlugin(ctx));
  app.post("/loans/:id/repay", { config: { opsplane: { code: "loan.repay" } } }, async () => {
    handled++;
    return { repaid: true };
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  url = `${baseUrl(app.server.address())}/loans/42/repay`;
});

after(async () => {
  await app.close();
  await governance.close();
});

beforeEach(() => {
  governance.apply([removal("baffle", "loan.repay")]);
  handled = 0;
});

const repay = (body: unknown, query = "") =>
  call(`${url}${query}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

test("a baffle answers its mock response and the handler never runs", async () => {
  governance.apply([
    rule("baffle", "loan.repay", { enabled: true, response: { status: 202, headers: { "X-Mock": "yes" }, body: { repaid: "mocked" } } }),
  ]);
  const r = await repay({ amount: 10 });
  assert.equal(r.status, 202);
  assert.equal(r.headers.get("x-mock"), "yes");
  assert.equal(r.headers.get("x-opsplane-governance"), "baffle");
  assert.deepEqual(r.body, { repaid: "mocked" });
  assert.equal(handled, 0);

  governance.apply([rule("baffle", "loan.repay", { enabled: false, response: { status: 202 } })]);
  assert.deepEqual((await repay({ amount: 10 })).body, { repaid: true }, "a disabled baffle lets the handler answer");
  assert.equal(handled, 1);
});

test("a baffle waits delayMs before answering, and a text body goes as text", async () => {
  governance.apply([rule("baffle", "loan.repay", { enabled: true, response: { body: "queued" }, delayMs: 300 })]);
  const start = performance.now();
  const r = await repay({});
  assert.ok(performance.now() - start >= 290, `answered after ${performance.now() - start} ms`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("content-type"), "text/plain; charset=utf-8");
  assert.equal(r.body, "queued");
  assert.equal(handled, 0);
});

test("a baffle script computes the response from the request's body, route params and query", async () => {
  const script = `function respond(req) {
    const ok = req.body.amount <= 1000;
    return { status: ok ? 200 : 422, body: { loan: req.params.id, channel: req.query.channel, approved: ok } };
  }`;
  governance.apply([rule("baffle", "loan.repay", { enabled: true, response: { headers: { "x-mock": "script" } }, script })]);
  const small = await repay({ amount: 500 }, "?channel=app");
  assert.equal(small.status, 200);
  assert.deepEqual(small.body, { loan: "42", channel: "app", approved: true });
  assert.equal(small.headers.get("x-mock"), "script", "what the script leaves out comes from the rule");
  const large = await repay({ amount: 5000 }, "?channel=h5");
  assert.equal(large.status, 422);
  assert.deepEqual(large.body, { loan: "42", channel: "h5", approved: false });
  assert.equal(handled, 0);
});

test("a failing baffle script answers 500 naming the reason, logged once", async () => {
  const before = log.lines.length;
  governance.apply([
    rule("baffle", "loan.repay", {
      enabled: true,
      response: {},
      script: "function respond(req) { throw new Error('no mock for ' + req.params.id) }",
    }),
  ]);
  for (let i = 0; i < 3; i++) {
    const r = await repay({});
    assert.equal(r.status, 500);
    assert.equal(r.headers.get("x-opsplane-governance"), "baffle");
    assert.deepEqual(r.body, {
      error: "baffle-script-failed",
      message: "baffle script of loan.repay failed: script: Error: no mock for 42",
    });
  }
  assert.equal(log.lines.slice(before).filter((l) => l.msg.startsWith("baffle script of loan.repay")).length, 1);
  assert.equal(handled, 0);
});

test("a baffle script that runs past its time limit or does not compile answers 500 with the reason", async () => {
  governance.apply([rule("baffle", "loan.repay", { enabled: true, response: {}, script: "function respond() { for (;;) {} }" })]);
  const looping = await repay({});
  assert.equal(looping.status, 500);
  assert.match(
    (looping.body as { message: string }).message,
    /^baffle script of loan\.repay failed: timeout: script exceeded its time limit of 100 ms/,
  );

  const before = log.lines.length;
  governance.apply([rule("baffle", "loan.repay", { enabled: true, response: {}, script: "function respond( {" })]);
  await eventually("the compile failure logged", () =>
    log.lines.slice(before).some((l) => /does not compile: compile: SyntaxError/.test(l.msg)),
  );
  const broken = await repay({});
  assert.equal(broken.status, 500);
  assert.match((broken.body as { message: string }).message, /^baffle script of loan\.repay failed: compile: SyntaxError/);
  assert.equal(log.lines.slice(before).filter((l) => l.msg.startsWith("baffle script of loan.repay")).length, 1, "logged once");
});

test("a script that returns something other than a response object answers 500 saying so", async () => {
  governance.apply([rule("baffle", "loan.repay", { enabled: true, response: {}, script: "function respond() { return [1, 2] }" })]);
  const r = await repay({});
  assert.equal(r.status, 500);
  assert.equal(
    (r.body as { message: string }).message,
    "baffle script of loan.repay failed: it returned an array, not { status, headers, body }",
  );
});
