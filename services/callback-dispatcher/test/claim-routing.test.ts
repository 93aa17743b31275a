import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { startDispatcher } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

const secret = "platform-secret";

// Test environments' idPatterns say which ids each may claim: routing follows them as they stand now.
describe("routing by the test environments' id patterns", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  const stubs: Record<string, Awaited<ReturnType<typeof startSignedStub>>> = {};

  before(async () => {
    for (const name of ["prod", "sit", "uat"]) stubs[name] = await startSignedStub(name, secret);
    d = await startDispatcher({});
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: stubs.prod!.url, production: true })).status, 200);
    // sit starts without patterns (any id), as every environment created before patterns existed.
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: stubs.sit!.url })).status, 200);
    const rule = {
      interface: { pattern: "/api/pay", id: { kind: "json", expr: "orderNo" } },
      callback: { pattern: "/notify/pay", id: { kind: "json", expr: "orderNo" } },
      ttlSeconds: 600,
      // Held ids would wait this long: an id no environment may claim must not.
      holdMs: 3000,
    };
    assert.equal((await d.api("PUT", "/_dispatcher/v1/rules/pay", rule)).status, 200);
  });
  after(async () => {
    await d?.close();
    await Promise.all(Object.values(stubs).map((s) => s.close()));
  });

  const register = async (id: string) =>
    assert.equal((await d.api("POST", "/_dispatcher/v1/registrations", { env: "sit", registrations: [{ rule: "pay", id }] })).status, 200);
  let sent = 0;
  /** Sends id's callback; its decision is found by the request id returned. */
  const callback = async (id: string) => {
    const body = JSON.stringify({ orderNo: id });
    const requestId = `claim-routing-${++sent}`;
    const started = performance.now();
    const res = await fetch(`${d.url}/notify/pay`, {
      method: "POST",
      headers: { "x-signature": sign(secret, body), "x-request-id": requestId },
      body,
    });
    await res.arrayBuffer();
    return { servedBy: res.headers.get("x-served-by"), tookMs: performance.now() - started, requestId };
  };
  const decisionOf = async (requestId: string) =>
    eventually(`the decision of ${requestId}`, async () => {
      const { body } = await d.api("GET", `/_dispatcher/v1/decisions?requestId=${requestId}`);
      return (body.decisions as Array<{ reason: string; detail: string | null; targetEnv: string | null }>)[0];
    });
  const patterns = async (env: string, idPatterns: Record<string, string>) =>
    assert.equal((await d.api("PUT", `/_dispatcher/v1/environments/${env}`, { baseUrl: stubs[env]!.url, idPatterns })).status, 200);

  test("an id sit registered before its patterns were narrowed goes to production once they leave it out, saying why", async () => {
    await register("X-1");
    await register("SIT-1");
    assert.equal((await callback("X-1")).servedBy, "sit");
    await patterns("sit", { "*": "SIT-[0-9]+" });
    // uat may claim X-…, so X-1 is still looked up: found registered by sit, which may not claim it now.
    await patterns("uat", { "*": "X-[0-9]+" });
    // Before, sit kept receiving X-1's callbacks as long as its registration lived.
    const toProduction = await eventually("X-1 routed by the new patterns", async () => {
      const r = await callback("X-1");
      return r.servedBy === "prod" && r;
    });
    const decision = await decisionOf(toProduction.requestId);
    assert.equal(decision.reason, "not_claimable");
    assert.match(
      decision.detail ?? "",
      /registered by "sit", whose idPatterns no longer let it claim this id \(does not match the pattern SIT-\[0-9\]\+/,
    );
    assert.equal((await callback("SIT-1")).servedBy, "sit");
  });

  test("an id no test environment may claim goes to production at once, not looked up and never held", async () => {
    // Both test environments have patterns now (above): 2024-0001 is neither's.
    const { servedBy, tookMs, requestId } = await callback("2024-0001");
    assert.equal(servedBy, "prod");
    assert.ok(tookMs < 3000, `answered in ${Math.round(tookMs)} ms, not held for the rule's holdMs`);
    const decision = await decisionOf(requestId);
    assert.deepEqual(
      [decision.reason, decision.targetEnv, decision.detail],
      ["not_registered", "prod", "no test environment may claim this id (their idPatterns); not looked up"],
    );
    // An id uat may claim is looked up and, unregistered, held for its registration before production gets it.
    const held = await callback("X-2");
    assert.equal(held.servedBy, "prod");
    assert.ok(held.tookMs >= 3000, `held ${Math.round(held.tookMs)} ms`);
    assert.match((await decisionOf(held.requestId)).detail ?? "", /held \d+ ms; no registration came/);
  });

  test("an id sit registered, once no test environment may claim it any more, goes to production unlooked-up", async () => {
    // X-1 (sit's registration, above) was looked up while uat could claim X-…; now neither may.
    await patterns("uat", { "*": "UAT-[0-9]+" });
    const unlooked = await eventually("X-1 not looked up", async () => {
      const r = await callback("X-1");
      const decision = await decisionOf(r.requestId);
      return decision.reason === "not_registered" && { ...r, decision };
    });
    assert.deepEqual(
      [unlooked.servedBy, unlooked.decision.detail],
      ["prod", "no test environment may claim this id (their idPatterns); not looked up"],
    );
  });
});
