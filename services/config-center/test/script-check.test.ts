import assert from "node:assert/strict";
import { test } from "node:test";
import { AppError } from "@opsplane/platform";
import { ScriptCheck } from "../src/script-check.js";

test("a script the sandbox could not run (closed, no worker) is a 503 to retry, not a 400 blaming the script", async () => {
  const check = new ScriptCheck();
  const script = "function respond(req) { return { body: req.amount }; }";
  await check.check(script, "the script");
  await check.close();
  await assert.rejects(check.check(script, "the script"), (err: unknown) => {
    assert.ok(err instanceof AppError);
    assert.equal(err.status, 503, err.message);
    assert.equal(err.retryAfterSeconds, 5);
    assert.match(err.message, /^the script could not be checked: /);
    return true;
  });
});
