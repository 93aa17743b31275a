import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { startDispatcher } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

const secret = "platform-secret";

// Both registries: Redis (several replicas) and memory (one replica, loaded from the record at start).
for (const redis of [true, false]) {
  describe(`an environment deleted and created again under its name (${redis ? "Redis" : "memory"} registry)`, () => {
    let d: Awaited<ReturnType<typeof startDispatcher>>;
    const stubs: Record<string, Awaited<ReturnType<typeof startSignedStub>>> = {};

    before(async () => {
      for (const name of ["prod", "old-sit", "new-sit"]) stubs[name] = await startSignedStub(name, secret);
      d = await startDispatcher({}, { redis });
      assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: stubs.prod!.url, production: true })).status, 200);
      assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: stubs["old-sit"]!.url })).status, 200);
      const rule = {
        interface: { pattern: "/api/pay", id: { kind: "json", expr: "orderNo" } },
        callback: { pattern: "/notify/pay", id: { kind: "json", expr: "orderNo" } },
        ttlSeconds: 600,
      };
      assert.equal((await d.api("PUT", "/_dispatcher/v1/rules/pay", rule)).status, 200);
    });
    after(async () => {
      await d?.close();
      await Promise.all(Object.values(stubs).map((s) => s.close()));
    });

    const register = async (id: string) =>
      assert.equal(
        (await d.api("POST", "/_dispatcher/v1/registrations", { env: "sit", registrations: [{ rule: "pay", id }] })).status,
        200,
      );
    const callback = async (id: string) => {
      const body = JSON.stringify({ orderNo: id });
      const res = await fetch(`${d.url}/notify/pay`, { method: "POST", headers: { "x-signature": sign(secret, body) }, body });
      await res.arrayBuffer();
      return res.headers.get("x-served-by");
    };
    const lookup = async (id: string) => (await d.api("GET", `/_dispatcher/v1/registrations/pay/${id}`)).body;

    test("does not inherit the ids its predecessor registered: their callbacks go to production, saying why", async () => {
      await register("OLD-1");
      assert.equal(await callback("OLD-1"), "old-sit");
      assert.equal((await d.api("DELETE", "/_dispatcher/v1/environments/sit")).status, 204);
      assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: stubs["new-sit"]!.url })).status, 200);
      await eventually("the new sit routing", async () => (await lookup("OLD-1")).environmentConfigured === false);
      // Before, the new sit (another owner, another URL) received the old sit's payment notification.
      assert.equal(await callback("OLD-1"), "prod");
      assert.equal(stubs["new-sit"]!.received.length, 0);
      await eventually("the decision recorded", async () => {
        const { body } = await d.api("GET", "/_dispatcher/v1/decisions?objectId=OLD-1&limit=10");
        const latest = (body.decisions as Array<{ reason: string; detail: string | null }>)[0];
        return latest?.reason === "unknown_environment" && /earlier environment "sit", deleted since/.test(latest.detail ?? "");
      });
    });

    test("the new environment's own registrations reach it, the same id registered again included", async () => {
      await register("NEW-1");
      assert.equal(await callback("NEW-1"), "new-sit");
      await register("OLD-1");
      assert.equal(await callback("OLD-1"), "new-sit");
      assert.equal((await lookup("OLD-1")).environmentConfigured, true);
      // Saved again in place (not deleted): the same environment, its registrations kept.
      const saved = await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: stubs["new-sit"]!.url, description: "renamed" });
      assert.equal(saved.status, 200);
      await eventually("the save seen", async () => {
        const { body } = await d.api("GET", "/_dispatcher/v1/environments");
        return (body.environments as Array<{ name: string; description: string }>).some(
          (e) => e.name === "sit" && e.description === "renamed",
        );
      });
      assert.equal(await callback("NEW-1"), "new-sit");
    });
  });
}
