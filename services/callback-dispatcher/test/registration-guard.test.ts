import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { loadConfig, sha256Hex } from "@opsplane/platform";
import { createPool, migrate, readMigrations } from "@opsplane/store";
import { createTestDatabase, eventually } from "@opsplane/testing";
import { dispatcherEnv } from "../src/config.js";
import { agentApp, operatorKey, startDispatcher } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

const secret = "platform-secret";
const uatAgent = { id: "agent-uat", secret: "agent-uat-secret-0123456789" };
const unboundAgent = { id: "agent-new", secret: "agent-new-secret-0123456789" };
const basic = (app: { id: string; secret: string }) => `Basic ${Buffer.from(`${app.id}:${app.secret}`).toString("base64")}`;

interface Refused {
  rule: string;
  id: string;
  reason: string;
}

// A test environment's agent must never be able to make production's callbacks go to its stub.
describe("who may register which ids for which environment", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;

  before(async () => {
    prod = await startSignedStub("prod", secret);
    sit = await startSignedStub("sit", secret);
    d = await startDispatcher({
      AUTH_APP_CREDENTIALS: [agentApp, uatAgent, unboundAgent].map((a) => `${a.id}:${sha256Hex(a.secret)}`).join(","),
      AGENT_ENVIRONMENTS: `${agentApp.id}:sit,${uatAgent.id}:uat`,
      // Refusals are throttled per caller, action and target: a short window shows the suppressed ones soon.
      AUDIT_DENIAL_WINDOW_SECONDS: "1",
    });
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true })).status, 200);
    // sit creates its orders as SIT-…; its refunds (another rule) carry the payment platform's own ids.
    const sitEnv = await d.api("PUT", "/_dispatcher/v1/environments/sit", {
      baseUrl: sit.url,
      idPatterns: { "*": "SIT-[0-9]+", refund: "RF[0-9]{6}" },
    });
    assert.equal(sitEnv.status, 200, JSON.stringify(sitEnv.body));
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/uat", { baseUrl: sit.url })).status, 200);
    for (const name of ["pay", "refund"]) {
      const rule = {
        interface: { pattern: `/api/${name}`, id: { kind: "json", expr: "orderNo" } },
        callback: { pattern: `/notify/${name}`, id: { kind: "json", expr: "out_trade_no" } },
        ttlSeconds: 600,
      };
      assert.equal((await d.api("PUT", `/_dispatcher/v1/rules/${name}`, rule)).status, 200);
    }
  });

  after(async () => {
    await d?.close();
    await Promise.all([prod?.close(), sit?.close()]);
  });

  async function register(authorization: string, env: string, registrations: Array<{ rule: string; id: string }>) {
    const res = await fetch(`${d.url}/_dispatcher/v1/registrations`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization },
      body: JSON.stringify({ env, registrations }),
    });
    return { status: res.status, body: (await res.json()) as { message?: string; details?: { refused: Refused[] } } };
  }

  const registeredEnv = async (rule: string, id: string) =>
    (await d.api("GET", `/_dispatcher/v1/registrations/${rule}/${encodeURIComponent(id)}`)).body.env;

  const auditRows = async (actor: string, outcome: "ok" | "denied") =>
    (
      await d.svc.ctx.pool.query<{ action: string; target: string; after: Record<string, unknown> }>(
        "SELECT action, target, after FROM audit_log WHERE actor = $1 AND outcome = $2 AND action = 'registration.create' ORDER BY id",
        [actor, outcome],
      )
    ).rows;

  test("an agent bound to sit registering for uat gets 403 naming the reason, and nothing is stored", async () => {
    const res = await register(basic(agentApp), "uat", [{ rule: "pay", id: "SIT-100" }]);
    assert.equal(res.status, 403);
    assert.match(String(res.body.message), /agent-sit is bound to environment "sit".*"uat"/);
    assert.equal(await registeredEnv("pay", "SIT-100"), null);
    // The agent bound to uat may.
    assert.equal((await register(basic(uatAgent), "uat", [{ rule: "pay", id: "SIT-100" }])).status, 200);
    assert.equal(await registeredEnv("pay", "SIT-100"), "uat");
  });

  test("nothing registers for production: neither an agent nor an operator key", async () => {
    const asAgent = await register(basic(agentApp), "prod", [{ rule: "pay", id: "SIT-101" }]);
    assert.equal(asAgent.status, 403);
    const asOperator = await register(`Bearer ${operatorKey}`, "prod", [{ rule: "pay", id: "SIT-101" }]);
    assert.equal(asOperator.status, 403);
    assert.match(String(asOperator.body.message), /"prod" is production/);
    assert.equal(await registeredEnv("pay", "SIT-101"), null);
  });

  test("a production order id outside sit's pattern is refused, and production's callback still goes to production", async () => {
    const res = await register(basic(agentApp), "sit", [{ rule: "pay", id: "2024112900017" }]);
    assert.equal(res.status, 403);
    assert.match(String(res.body.message), /environment "sit" may not claim/);
    assert.deepEqual(
      res.body.details?.refused.map((r) => [r.rule, r.id]),
      [["pay", "2024112900017"]],
    );
    assert.match(String(res.body.details?.refused[0]?.reason), /SIT-\[0-9\]\+/);
    const body = Buffer.from(JSON.stringify({ out_trade_no: "2024112900017", status: "PAID" }));
    const callback = await fetch(`${d.url}/notify/pay`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-signature": sign(secret, body) },
      body,
    });
    assert.equal(callback.status, 200);
    assert.equal(callback.headers.get("x-served-by"), "prod");
    assert.ok(prod.received.some((r) => r.url === "/notify/pay" && r.body.equals(body) && r.verified));
    assert.ok(!sit.received.some((r) => r.body.equals(body)), "the test stub never saw production's callback");
  });

  test("a batch mixing claimable and unclaimable ids is refused whole, listing only the unclaimable ones", async () => {
    const res = await register(basic(agentApp), "sit", [
      { rule: "pay", id: "SIT-200" },
      { rule: "pay", id: "PROD-200" },
      { rule: "refund", id: "RF123456" },
      { rule: "refund", id: "SIT-201" },
    ]);
    assert.equal(res.status, 403);
    assert.deepEqual(
      res.body.details?.refused.map((r) => [r.rule, r.id]),
      [
        ["pay", "PROD-200"],
        ["refund", "SIT-201"],
      ],
      "a rule's own pattern replaces the environment's default one",
    );
    assert.match(String(res.body.message), /nothing was registered/);
    assert.equal(await registeredEnv("pay", "SIT-200"), null);
    assert.equal(await registeredEnv("refund", "RF123456"), null);
    const good = await register(basic(agentApp), "sit", [
      { rule: "pay", id: "SIT-200" },
      { rule: "refund", id: "RF123456" },
    ]);
    assert.equal(good.status, 200);
    assert.equal(await registeredEnv("refund", "RF123456"), "sit");
  });

  test("the claim patterns bind operator keys too", async () => {
    const res = await register(`Bearer ${operatorKey}`, "sit", [{ rule: "pay", id: "PROD-300" }]);
    assert.equal(res.status, 403);
    assert.equal(await registeredEnv("pay", "PROD-300"), null);
  });

  test("an agent credential with no environment is refused, and told what the admin must configure", async () => {
    const res = await register(basic(unboundAgent), "sit", [{ rule: "pay", id: "SIT-400" }]);
    assert.equal(res.status, 403);
    assert.match(String(res.body.message), /agent-new is not bound to an environment.*"agent-new:<env>".*AGENT_ENVIRONMENTS/);
    assert.equal(await registeredEnv("pay", "SIT-400"), null);
    const rules = await fetch(`${d.url}/_dispatcher/v1/agent/rules?env=sit`, { headers: { authorization: basic(unboundAgent) } });
    assert.equal(rules.status, 403, "an unbound agent gets no rules either, so it learns of the problem at start-up");
    const wrongEnvRules = await fetch(`${d.url}/_dispatcher/v1/agent/rules?env=uat`, { headers: { authorization: basic(agentApp) } });
    assert.equal(wrongEnvRules.status, 403);
  });

  test("every registration keeps its principal: in the lookup and in one audit row per batch", async () => {
    const batch = Array.from({ length: 50 }, (_, i) => ({ rule: "pay", id: `SIT-5${String(i).padStart(2, "0")}` }));
    const before = (await auditRows("app:agent-sit", "ok")).length;
    assert.equal((await register(basic(agentApp), "sit", batch)).status, 200);
    const { body } = await d.api("GET", "/_dispatcher/v1/registrations/pay/SIT-507");
    assert.equal(body.env, "sit");
    assert.equal(body.registeredBy, "app:agent-sit");
    assert.ok(Date.parse(String(body.expiresAt)) > Date.parse(String(body.registeredAt)));
    const rows = (await auditRows("app:agent-sit", "ok")).slice(before);
    assert.equal(rows.length, 1, "one audit row for the batch, not one per id");
    assert.equal(rows[0]!.target, "environment/sit");
    assert.equal(rows[0]!.after.count, 50);
    assert.deepEqual(rows[0]!.after.byRule, { pay: 50 });
    assert.equal((await register(`Bearer ${operatorKey}`, "sit", [{ rule: "pay", id: "SIT-600" }])).status, 200);
    assert.equal((await d.api("GET", "/_dispatcher/v1/registrations/pay/SIT-600")).body.registeredBy, "key:ops");
  });

  test("the same id twice in one batch (a retried request) is registered once", async () => {
    const twice = { rule: "pay", id: "SIT-700" };
    const res = await register(basic(agentApp), "sit", [twice, { rule: "pay", id: "SIT-701" }, twice]);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(await registeredEnv("pay", "SIT-700"), "sit");
  });

  test("ids PostgreSQL cannot store (NUL, lone surrogate) are registered made storable, and their callbacks still find them", async () => {
    const before = (await auditRows("app:agent-uat", "ok")).length;
    const res = await register(basic(uatAgent), "uat", [
      { rule: "pay", id: "UAT-GOOD-1" },
      { rule: "pay", id: "BAD\u0000X" },
      { rule: "pay", id: "BAD\ud800" },
      { rule: "pay", id: "UAT-GOOD-2" },
    ]);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(await registeredEnv("pay", "UAT-GOOD-1"), "uat");
    assert.equal(await registeredEnv("pay", "UAT-GOOD-2"), "uat");
    assert.equal(await registeredEnv("pay", "BAD\u0000X"), "uat", "the operators' lookup finds it by the raw id too");
    const [audited] = (await auditRows("app:agent-uat", "ok")).slice(before);
    assert.deepEqual(audited?.after.sample, ["pay/UAT-GOOD-1", "pay/BAD\\u0000X", "pay/BAD\uFFFD", "pay/UAT-GOOD-2"]);
    // The payment platform calls back with the same raw ids: they go to uat (served by the sit stub), not production.
    for (const id of ["BAD\u0000X", "BAD\ud800"]) {
      const body = Buffer.from(JSON.stringify({ out_trade_no: id, status: "PAID" }));
      const callback = await fetch(`${d.url}/notify/pay`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-signature": sign(secret, body) },
        body,
      });
      assert.equal(callback.status, 200);
      assert.equal(callback.headers.get("x-served-by"), "sit", `callback for ${JSON.stringify(id)}`);
    }
  });

  test("a 256-character id (emoji, each one character) is found by its lookup URL, and its callback sent with a byte order mark goes to its environment", async () => {
    const id = `E${"😀".repeat(255)}`;
    assert.equal((await d.api("POST", "/_dispatcher/v1/registrations", { env: "uat", registrations: [{ rule: "pay", id }] })).status, 200);
    // 3,000+ characters percent-encoded: fastify's default path-parameter bound (100) answered 400 quoting the URL.
    assert.equal(await registeredEnv("pay", id), "uat");
    const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ out_trade_no: id }))]);
    const callback = await fetch(`${d.url}/notify/pay`, {
      method: "POST",
      headers: { "content-type": "application/json; charset=utf-8", "x-signature": sign(secret, body) },
      body,
    });
    assert.equal(callback.status, 200);
    assert.equal(callback.headers.get("x-served-by"), "sit", "uat's stub, not production");
  });

  test("refusals are audited with the principal and what was refused", async () => {
    const denied = await eventually("agent-sit's refusals in the audit log", async () => {
      const rows = await auditRows("app:agent-sit", "denied");
      return rows.length >= 4 ? rows : undefined;
    });
    assert.ok(denied.some((r) => r.target === "environment/uat" && /bound to environment "sit"/.test(String(r.after.reason))));
    const claim = denied.find((r) => r.after.refusedCount === 2)!;
    assert.deepEqual(
      (claim.after.refused as Refused[]).map((r) => r.id),
      ["PROD-200", "SIT-201"],
    );
    assert.ok((await auditRows("app:agent-new", "denied")).length >= 1);
  });

  test("a flood of refusals from one agent adds a few audit rows that count every refusal", async () => {
    for (let i = 0; i < 50; i++) assert.equal((await register(basic(uatAgent), "sit", [{ rule: "pay", id: `SIT-9${i}` }])).status, 403);
    const rows = await eventually("the flood's suppressed refusals to be counted", async () => {
      const denied = (await auditRows("app:agent-uat", "denied")).filter((r) => r.target === "environment/sit");
      // A row stands for one refusal, or with `suppressed` for that many not recorded on their own.
      const counted = denied.reduce((sum, r) => sum + Number(r.after.suppressed ?? 1), 0);
      return counted === 50 ? denied : undefined;
    });
    assert.ok(rows.length <= 6, `${rows.length} rows for 50 refusals`);
  });

  test("a refused id PostgreSQL cannot store is named as the agent sent it, so the agent can send the rest again", async () => {
    const res = await register(basic(agentApp), "sit", [
      { rule: "pay", id: "SIT-300" },
      { rule: "pay", id: "PROD\u0000300" },
    ]);
    assert.equal(res.status, 403);
    assert.deepEqual(
      res.body.details?.refused.map((r) => r.id),
      ["PROD\u0000300"],
    );
  });

  test("id patterns are checked when an environment is saved", async () => {
    const put = (idPatterns: Record<string, string>, production = false) =>
      d.api("PUT", "/_dispatcher/v1/environments/sit2", { baseUrl: sit.url, production, idPatterns });
    const notRegex = await put({ "*": "SIT-(" });
    assert.equal(notRegex.status, 400);
    assert.match(String(notRegex.body.message), /idPatterns\["\*"\]/);
    // RE2 syntax: matching stays linear in the id whatever the pattern, so constructs that need backtracking are refused.
    const lookahead = await put({ pay: "(?!PROD-).*" });
    assert.equal(lookahead.status, 400);
    assert.match(String(lookahead.body.message), /idPatterns\["pay"\] is not a regular expression/);
    assert.equal((await put({ "*": "SIT-1" }, true)).status, 400, "production claims nothing, so it takes no patterns");
    assert.equal((await put({ "no such/rule": "x" })).status, 400);
    // A script that only moves sit's URL must not widen what sit may claim.
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: `${sit.url}/`, description: "moved" })).status, 200);
    const envs = (await d.api("GET", "/_dispatcher/v1/environments")).body.environments as Array<{ name: string; idPatterns: unknown }>;
    assert.ok(!envs.some((e) => e.name === "sit2"), "nothing saved");
    assert.deepEqual(envs.find((e) => e.name === "sit")?.idPatterns, { "*": "SIT-[0-9]+", refund: "RF[0-9]{6}" });
    assert.equal((await register(basic(agentApp), "sit", [{ rule: "pay", id: "PROD-800" }])).status, 403);
  });

  test("the bindings in force are listed with the agents seen", async () => {
    const { body } = await d.api("GET", "/_dispatcher/v1/agents");
    assert.deepEqual(body.bindings, [
      { app: "agent-sit", env: "sit" },
      { app: "agent-uat", env: "uat" },
    ]);
  });
});

describe("AGENT_ENVIRONMENTS", () => {
  const load = (AGENT_ENVIRONMENTS: string) =>
    loadConfig(8086, dispatcherEnv, { DATABASE_URL: "postgres://localhost/x", AGENT_ENVIRONMENTS }).AGENT_ENVIRONMENTS;

  test("binds each agent credential to one environment; a second binding of the same app stops start-up", () => {
    assert.deepEqual(
      [...load("agent-sit:sit, agent-uat:uat\nagent-uat2:uat")],
      [
        ["agent-sit", "sit"],
        ["agent-uat", "uat"],
        ["agent-uat2", "uat"],
      ],
    );
    assert.throws(() => load("agent-sit:sit,agent-sit:uat"), /AGENT_ENVIRONMENTS: agent-sit is bound more than once/);
    assert.throws(() => load("agent-sit"), /AGENT_ENVIRONMENTS: "agent-sit" must be appId:environment/);
    assert.throws(() => load("agent-sit:SIT"), /must be appId:environment/);
  });
});

describe("a database from before registrations recorded their principal", () => {
  test("its registrations keep routing and say their principal was not recorded", async () => {
    const db = await createTestDatabase();
    const pool = createPool(db.url, { schema: "callback_dispatcher", applicationName: "migration-test" });
    try {
      const first = (await readMigrations(path.join(__dirname, "..", "migrations"))).filter((m) => m.id.startsWith("001_"));
      await migrate(pool, "callback_dispatcher", first);
      await pool.query(
        `INSERT INTO environments (name, base_url, production) VALUES ('prod', 'http://127.0.0.1:1', true), ('sit', 'http://127.0.0.1:2', false);
         INSERT INTO registrations (rule, object_id, env, expires_at) VALUES ('pay', 'OLD-1', 'sit', now() + interval '1 hour')`,
      );
    } finally {
      await pool.end();
    }
    const d = await startDispatcher({}, { redis: false, databaseUrl: db.url });
    try {
      const { body } = await d.api("GET", "/_dispatcher/v1/registrations/pay/OLD-1");
      assert.equal(body.env, "sit");
      assert.equal(body.registeredBy, "unrecorded");
      const envs = (await d.api("GET", "/_dispatcher/v1/environments")).body.environments as Array<{ name: string; idPatterns: unknown }>;
      assert.deepEqual(envs.find((e) => e.name === "sit")?.idPatterns, {}, "existing environments may claim any id until given patterns");
    } finally {
      await d.svc.close();
      await db.drop();
    }
  });
});
