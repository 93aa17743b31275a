import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { compileRule, type HttpExchange } from "@opsplane/callback-agent/rules";
import { createSandboxScripts, type SandboxScripts } from "@opsplane/callback-agent/sandbox-scripts";
import pg from "pg";
import { unroutedMessage } from "../src/dispatch.js";
import { memoryRegistry, type Registry } from "../src/registry.js";
import { decide } from "../src/router.js";
import { type ConfiguredEnvironment, configuredEnvironmentColumns, type RuleSetSnapshot } from "../src/rule-set.js";
import { startDispatcher } from "./helpers/dispatcher.js";

// A script that fails on a callback is the rule's verdict: production gets the callback. A script the
// sandbox cannot run at all (closed, or no worker could start) says nothing about the callback, whose
// id may be a test environment's: it must not be sent to production for that.
describe("a callback whose script the sandbox cannot run", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let pool: pg.Pool;
  let registry: Registry;
  let scripts: SandboxScripts;
  let snapshot: RuleSetSnapshot;

  before(async () => {
    d = await startDispatcher();
    await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: "http://127.0.0.1:9/prod", production: true });
    await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: "http://127.0.0.1:9/sit" });
    const spec = {
      name: "scripted",
      interface: { pattern: "/api/x", id: { kind: "json" as const, expr: "id" } },
      callback: {
        pattern: "/cb/**",
        id: { kind: "script" as const, expr: "function extract(m) { return JSON.parse(m.body).id }" },
        sample: { path: "/cb/pay", body: '{"id":"S"}', expectId: "S" },
      },
      ttlSeconds: 600,
    };
    const { name, ...body } = spec;
    assert.equal((await d.api("PUT", `/_dispatcher/v1/rules/${name}`, body)).status, 200);
    const registered = await d.api("POST", "/_dispatcher/v1/registrations", { env: "sit", registrations: [{ rule: name, id: "S1" }] });
    assert.equal(registered.body.registered, 1);

    pool = new pg.Pool({ connectionString: d.databaseUrl, options: "-c search_path=callback_dispatcher" });
    registry = await memoryRegistry(pool, 1000, 2000);
    scripts = await createSandboxScripts({ timeLimitMs: 1000 });
    const environments = new Map<string, ConfiguredEnvironment>(
      (await pool.query<ConfiguredEnvironment>(`SELECT ${configuredEnvironmentColumns} FROM environments`)).rows.map((e) => [e.name, e]),
    );
    snapshot = {
      version: 1,
      rules: [compileRule(spec, scripts.compile)],
      specs: [spec],
      environments,
      production: environments.get("prod"),
      claims: new Map(),
    };
  });

  after(async () => {
    await scripts?.close();
    await pool?.end();
    await d?.close();
  });

  const callback: HttpExchange = { method: "POST", path: "/cb/pay", query: "", headers: {}, body: Buffer.from('{"id":"S1"}') };

  test("is answered 503 for the platform to retry, never sent to production", async () => {
    const failures: Array<{ rule: string; reason: string }> = [];
    const running = await decide(callback, true, snapshot, registry, (f) => failures.push(f));
    assert.equal(running.target?.name, "sit", "while the sandbox runs the script, the registered id goes to sit");

    await scripts.close();
    const closed = await decide(callback, true, snapshot, registry, (f) => failures.push(f));
    assert.equal(closed.target, undefined, `not forwarded anywhere: ${JSON.stringify(closed)}`);
    assert.equal(closed.reason, "script_unavailable");
    assert.match(String(closed.detail), /script could not run: sandbox is closed; retry later/);
    const told = unroutedMessage(closed, "req-1");
    assert.equal(
      told,
      "the callback could not be routed yet; retry later (request id req-1)",
      "the third party is not told the sandbox's state",
    );
    assert.deepEqual(failures, [{ rule: "scripted", reason: "script_unavailable" }]);
  });
});
