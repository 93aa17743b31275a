import assert from "node:assert/strict";
import { test } from "node:test";
import { authorize, createAuthenticator, sha256Hex } from "@opsplane/platform";

const auth = createAuthenticator(`ops:operator:${sha256Hex("k-ops")},ro:viewer:${sha256Hex("k-ro")}`, `payments:${sha256Hex("s3cret")}`);
const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString("base64")}`;

test("API keys resolve to their id and role; unknown keys are refused", () => {
  assert.deepEqual(auth.authenticate("Bearer k-ops"), { kind: "key", id: "ops", role: "operator" });
  assert.equal(auth.authenticate(undefined), undefined);
  assert.throws(() => auth.authenticate("Bearer k-nope"), /unknown API key/);
  assert.throws(() => auth.authenticate("Token k-ops"), /must be 'Bearer/);
});

test("app credentials resolve to the app; a wrong secret or app is refused", () => {
  assert.deepEqual(auth.authenticate(basic("payments", "s3cret")), { kind: "app", id: "payments" });
  assert.throws(() => auth.authenticate(basic("payments", "guess")), /unknown app credentials/);
  assert.throws(() => auth.authenticate(basic("ledger", "s3cret")), /unknown app credentials/);
});

test("roles are ranked and apps need routes that accept them", () => {
  const viewer = auth.authenticate("Bearer k-ro");
  assert.doesNotThrow(() => authorize(viewer, { role: "viewer" }));
  assert.throws(() => authorize(viewer, { role: "operator" }), /role viewer may not call this API; it needs operator/);
  const app = auth.authenticate(basic("payments", "s3cret"));
  assert.throws(() => authorize(app, { role: "viewer" }), /app payments may not/);
  assert.doesNotThrow(() => authorize(app, { role: "admin", apps: true }));
  assert.throws(() => authorize(undefined, { role: "viewer" }), /credentials required/);
});

test("malformed key configuration stops start-up with the entry named", () => {
  assert.throws(() => createAuthenticator("ops:root:abc", ""), /^Error: invalid environment variable AUTH_API_KEYS: entry "ops" must be/);
  assert.throws(() => createAuthenticator("", "payments:plaintext"), /AUTH_APP_CREDENTIALS: entry "payments" must be appId:sha256hex/);
});
