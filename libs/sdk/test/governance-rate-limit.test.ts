import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { eventually } from "@opsplane/testing";
import Fastify, { type FastifyInstance } from "fastify";
import { fastifyPlugin } from "../src/adapters/fastify.js";
import { type Answer, baseUrl, call, governed, latch, reachesHandler, removal, rule } from "./governance-fixtures.js";

const { governance, ctx } = governed();
let app: FastifyInstance;
let url: string;
let held = latch();
let entered = 0;

before(async () => {
  app = Fastify();
  await app.register(fastifyPlugin(ctx));
  app.get("/loans/:id", async (req) => ({ id: (req.params as { id: string }).id }));
  app.post("/loans", { config: { opsplane: { code: "loan.apply" } } }, async () => {
    entered++;
    await held.promise;
    return { ok: true };
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  url = baseUrl(app.server.address());
});

after(() => app.close());

/** Sends requests one after another for `ms`; answers the statuses, how long it really took, and the last refusal. */
async function hammer(path: string, ms: number): Promise<{ ok: number; limited: number; seconds: number; refused?: Answer }> {
  const start = performance.now();
  let ok = 0;
  let limited = 0;
  let refused: Answer | undefined;
  while (performance.now() - start < ms) {
    const r = await call(`${url}${path}`);
    if (r.status === 200) ok++;
    else if (r.status === 429) {
      limited++;
      refused = r;
    } else assert.fail(`unexpected status ${r.status}`);
  }
  return { ok, limited, seconds: (performance.now() - start) / 1000, refused };
}

test("a TPS limit lets through the configured calls a second and answers the rest 429", async (t) => {
  governance.apply([rule("rate-limit", "get.loans.id", { tps: 2 })]);
  // Removed however the test ends: the next test starts from a bucket of its own.
  t.after(() => governance.apply([removal("rate-limit", "get.loans.id")]));
  const { ok, limited, seconds, refused } = await hammer("/loans/7", 2500);
  // A full bucket (one second's worth) plus 2 a second after that.
  assert.ok(ok >= Math.floor(2 * seconds), `${ok} passed in ${seconds.toFixed(2)} s at 2 TPS`);
  assert.ok(ok <= 2 + Math.ceil(2 * seconds), `${ok} passed in ${seconds.toFixed(2)} s at 2 TPS`);
  assert.ok(limited > ok, "most requests were refused");

  // A refusal as the caller sees it (one from the run: a call made after it could find a token refilled
  // on a slow machine).
  assert.ok(refused);
  assert.equal(refused.headers.get("x-opsplane-governance"), "rate-limited");
  assert.equal(refused.headers.get("retry-after"), "1");
  assert.deepEqual(refused.body, { error: "rate-limited", message: "interface get.loans.id is over its rate limit: 2 calls a second" });
});

test("a burst at a low TPS gets exactly the bucket's calls through", async (t) => {
  governance.apply([rule("rate-limit", "get.loans.id", { tps: 3 })]);
  t.after(() => governance.apply([removal("rate-limit", "get.loans.id")]));
  const start = performance.now();
  const answers = await Promise.all(Array.from({ length: 12 }, () => call(`${url}/loans/1`)));
  const seconds = (performance.now() - start) / 1000;
  const ok = answers.filter((a) => a.status === 200).length;
  assert.ok(ok >= 3 && ok <= 3 + Math.floor(3 * seconds), `${ok} of 12 passed in ${seconds.toFixed(2)} s at 3 TPS`);
  assert.equal(answers.filter((a) => a.status === 429).length, 12 - ok);
});

test("a concurrency limit refuses calls over the limit in flight, and a finished call frees its slot", async () => {
  governance.apply([rule("rate-limit", "loan.apply", { concurrency: 2 })]);
  held = latch();
  entered = 0;
  const first = [call(`${url}/loans`, { method: "POST" }), call(`${url}/loans`, { method: "POST" })];
  await eventually("two calls in the handler", () => entered === 2);

  const third = await call(`${url}/loans`, { method: "POST" });
  assert.equal(third.status, 429);
  assert.equal(third.headers.get("x-opsplane-governance"), "concurrency-limited");
  assert.match((third.body as { message: string }).message, /already has 2 calls in flight/);
  assert.equal(entered, 2, "the refused call never reached the handler");

  held.open();
  assert.deepEqual(
    (await Promise.all(first)).map((a) => a.status),
    [200, 200],
  );
  await eventually("the slots free again", async () => (await call(`${url}/loans`, { method: "POST" })).status === 200);
});

test("a client that goes away frees its concurrency slot", async () => {
  governance.apply([rule("rate-limit", "loan.apply", { concurrency: 1 })]);
  held = latch();
  entered = 0;
  const abort = new AbortController();
  const gone = call(`${url}/loans`, { method: "POST", signal: abort.signal }).catch(() => "aborted");
  await eventually("the call in the handler", () => entered === 1);
  abort.abort();
  assert.equal(await gone, "aborted");

  // The server hears of the abort a moment later; until then a new call is refused. Its handler
  // is still held, so only the abort can have freed the slot.
  let next: { pending: Promise<Answer> } | undefined;
  await eventually("a new call in the handler", async () => {
    next = await reachesHandler(
      () => call(`${url}/loans`, { method: "POST" }),
      () => entered,
    );
    return next !== undefined;
  });
  held.open();
  assert.equal((await next!.pending).status, 200);
  governance.apply([removal("rate-limit", "loan.apply")]);
});

test("a TPS limit changed mid-traffic bites at once and lets go when removed", async () => {
  governance.apply([rule("rate-limit", "get.loans.id", { tps: 10_000 })]);
  let stop = false;
  const statuses: number[] = [];
  const traffic = (async () => {
    while (!stop) statuses.push((await call(`${url}/loans/3`)).status);
  })();
  await eventually("traffic flowing", () => statuses.length >= 20);
  assert.ok(!statuses.includes(429));

  governance.apply([rule("rate-limit", "get.loans.id", { tps: 1 })]);
  const changedAt = statuses.length;
  await eventually("requests refused under the new limit", () => statuses.slice(changedAt).filter((s) => s === 429).length >= 20);
  assert.ok(statuses.slice(changedAt).filter((s) => s === 200).length <= 3, "at most the bucket's token and a refill passed");

  governance.apply([removal("rate-limit", "get.loans.id")]);
  const removedAt = statuses.length;
  await eventually("requests passing again", () => statuses.slice(removedAt + 1).filter((s) => s === 200).length >= 20);
  stop = true;
  await traffic;
  assert.ok(
    statuses.every((s) => s === 200 || s === 429),
    "no request failed while the rule changed",
  );
});
