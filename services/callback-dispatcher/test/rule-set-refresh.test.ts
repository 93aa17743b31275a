import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import pg from "pg";
import { startDispatcher } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

const secret = "platform-secret";

// Issue 16: a good callback went to production in CI. The rule saved just before had answered 200,
// but the rule set in force was read before it was stored (another reload was on its way), so the
// registration of its id was ignored as being for an unknown rule.
describe("a saved rule is in force once its PUT answers", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;
  let locker: pg.Client;

  before(async () => {
    prod = await startSignedStub("prod", secret);
    sit = await startSignedStub("sit", secret);
    // No polling during the test: only the reloads the changes themselves ask for.
    d = await startDispatcher({ RULES_POLL_MS: "600000" });
    await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true });
    await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url });
    locker = new pg.Client({ connectionString: d.databaseUrl });
    await locker.connect();
  });

  after(async () => {
    await locker?.end();
    await d?.close();
    await Promise.all([prod?.close(), sit?.close()]);
  });

  const rule = (name: string) => ({
    interface: { pattern: `/api/${name}`, id: { kind: "json", expr: "id" } },
    callback: { pattern: `/cb/${name}`, id: { kind: "json", expr: "id" } },
    ttlSeconds: 600,
  });

  test("even when it is stored while the reload for an earlier change is still reading", async () => {
    // The reload for `first` reads the environments last: holding that table keeps it on its way,
    // with the rules it read before `second` was stored.
    await locker.query("BEGIN");
    await locker.query("LOCK TABLE callback_dispatcher.environments IN ACCESS EXCLUSIVE MODE");
    const first = d.api("PUT", "/_dispatcher/v1/rules/first", rule("first"));
    try {
      await eventually("the reload for the first rule waiting on the lock", async () => {
        const { rows } = await locker.query(
          "SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'callback_dispatcher.environments'::regclass",
        );
        return rows.length > 0;
      });
      const second = d.api("PUT", "/_dispatcher/v1/rules/second", rule("second"));
      await eventually("the second rule stored", async () => (await d.api("GET", "/_dispatcher/v1/rules/second")).status === 200);
      await locker.query("COMMIT");
      assert.equal((await first).status, 200);
      assert.equal((await second).status, 200);
    } finally {
      await locker.query("ROLLBACK").catch(() => {});
    }

    const registered = await d.api("POST", "/_dispatcher/v1/registrations", { env: "sit", registrations: [{ rule: "second", id: "S2" }] });
    assert.deepEqual(registered.body, { registered: 1, ignoredRules: [] });
    const body = '{"id":"S2"}';
    const res = await fetch(`${d.url}/cb/second`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-signature": sign(secret, body) },
      body,
    });
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    assert.ok(
      sit.received.some((x) => x.url === "/cb/second"),
      "the callback for the id registered right after its rule was saved reached sit",
    );
  });
});

// A rule saved on replica A, then at once an agent's registration for it sent to replica B: B had not polled
// the change yet, answered 200 with the rule in ignoredRules, and the callback went to production.
describe("a registration sent to another replica right after a change is decided by the stored rule set", () => {
  const recordTimeoutMs = 300;
  let a: Awaited<ReturnType<typeof startDispatcher>>;
  let b: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;

  before(async () => {
    prod = await startSignedStub("prod", secret);
    sit = await startSignedStub("sit", secret);
    // No polling: B learns of A's changes only when it asks.
    a = await startDispatcher({ RULES_POLL_MS: "600000" });
    assert.equal((await a.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true })).status, 200);
    assert.equal((await a.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url })).status, 200);
    b = await startDispatcher(
      {
        RULES_POLL_MS: "600000",
        REDIS_KEY_PREFIX: a.svc.ctx.config.REDIS_KEY_PREFIX,
        REGISTRY_RECORD_TIMEOUT_MS: String(recordTimeoutMs),
        // Out of reach: only the record's own deadline can end a stalled check.
        DATABASE_QUERY_TIMEOUT_MS: "600000",
      },
      { databaseUrl: a.databaseUrl },
    );
  });

  after(async () => {
    await b?.svc.close();
    await a?.close();
    await Promise.all([prod?.close(), sit?.close()]);
  });

  const rule = (name: string) => ({
    interface: { pattern: `/api/${name}`, id: { kind: "json", expr: "id" } },
    callback: { pattern: `/cb/${name}`, id: { kind: "json", expr: "id" } },
    ttlSeconds: 600,
  });
  const register = (env: string, rule: string, id: string) =>
    b.api("POST", "/_dispatcher/v1/registrations", { env, registrations: [{ rule, id }] });

  test("a rule saved on A: its id registered on B is stored and its callback reaches the test environment", async () => {
    assert.equal((await a.api("PUT", "/_dispatcher/v1/rules/newr", rule("newr"))).status, 200);
    const registered = await register("sit", "newr", "N1");
    assert.deepEqual(registered.body, { registered: 1, ignoredRules: [] });
    const body = '{"id":"N1"}';
    const res = await fetch(`${b.url}/cb/newr`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-signature": sign(secret, body) },
      body,
    });
    await res.arrayBuffer();
    assert.equal(res.headers.get("x-served-by"), "sit");
    // A rule no replica has is still ignored.
    assert.deepEqual((await register("sit", "nope", "N2")).body, { registered: 0, ignoredRules: ["nope"] });
  });

  test("an environment created on A, or its id patterns widened there, is not refused for good on B", async () => {
    assert.equal((await a.api("PUT", "/_dispatcher/v1/environments/sit2", { baseUrl: sit.url })).status, 200);
    const created = await register("sit2", "newr", "N3");
    assert.equal(created.status, 200, JSON.stringify(created.body));
    // B saves the narrow patterns (and so reloads them), A widens them.
    const narrow = await b.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url, idPatterns: { "*": "OLD-[0-9]+" } });
    assert.equal(narrow.status, 200);
    assert.equal(
      (await a.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url, idPatterns: { "*": "(OLD|NEW)-[0-9]+" } })).status,
      200,
    );
    const widened = await register("sit", "newr", "NEW-1");
    assert.deepEqual([widened.status, widened.body], [200, { registered: 1, ignoredRules: [] }]);
    assert.equal((await register("sit", "newr", "OTHER-1")).body.error, "id_not_claimable");
  });

  // The claim check is what keeps a test environment from capturing production's ids: a looser rule set
  // B had not yet reloaded approved ids the stored patterns refuse.
  test("id patterns narrowed on A: B refuses an id they no longer allow", async () => {
    assert.equal((await register("sit", "newr", "OLD-5")).status, 200, "allowed by the patterns both replicas hold");
    assert.equal(
      (await a.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: sit.url, idPatterns: { "*": "NEW-[0-9]+" } })).status,
      200,
    );
    const narrowed = await register("sit", "newr", "OLD-6");
    assert.equal(narrowed.status, 403, JSON.stringify(narrowed.body));
    assert.equal(narrowed.body.error, "id_not_claimable");
  });

  test("while the rule set cannot be read, a registration naming a rule B does not know is 503 within the deadline, not ignored", async () => {
    assert.equal((await a.api("PUT", "/_dispatcher/v1/rules/late", rule("late"))).status, 200);
    const locker = new pg.Client({ connectionString: a.databaseUrl });
    await locker.connect();
    try {
      await locker.query("BEGIN");
      await locker.query("LOCK TABLE callback_dispatcher.rule_set_version IN ACCESS EXCLUSIVE MODE");
      const started = performance.now();
      const stalled = await register("sit", "late", "NEW-2");
      const tookMs = performance.now() - started;
      assert.equal(stalled.status, 503, JSON.stringify(stalled.body));
      assert.ok(tookMs < recordTimeoutMs + 1_000, `answered in ${Math.round(tookMs)} ms`);
      assert.match(String(stalled.body.message), /rule set could not be checked against PostgreSQL/);
      assert.match(String(stalled.body.message), new RegExp(`within ${recordTimeoutMs} ms \\(REGISTRY_RECORD_TIMEOUT_MS\\)`));
    } finally {
      await locker.query("ROLLBACK");
      await locker.end();
    }
    assert.deepEqual((await register("sit", "late", "NEW-2")).body, { registered: 1, ignoredRules: [] });
  });
});
