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
