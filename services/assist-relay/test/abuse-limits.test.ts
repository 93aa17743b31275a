import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { asDeveloper, call, developerKey, handlerKey, openWidget, operatorOrigin, otherDeveloperKey, startRelays } from "./harness.js";

const connect = (base: string, key: string, apiKey: string, forwardedFor?: string) =>
  fetch(`${base}/assist/connect`, {
    method: "POST",
    headers: { "content-type": "application/json", ...asDeveloper(apiKey), ...(forwardedFor ? { "x-forwarded-for": forwardedFor } : {}) },
    body: JSON.stringify({ key }),
  });
const unknownKey = (i: number) => `ZZZ${i}-ZZZZ-ZZZZ`;

describe("abuse limits, behind a trusted proxy", () => {
  let env: Awaited<ReturnType<typeof startRelays>>;
  let base: string;
  before(async () => {
    env = await startRelays(1, {
      redis: true,
      env: { TRUSTED_PROXIES: "127.0.0.1/32", ASSIST_CLIENT_MAX_FAILURES: "3", ASSIST_ADDRESS_MAX_FAILURES: "5" },
    });
    base = env.relays[0]!.url;
  });
  after(() => env.close());

  test("failures count per API key first, then per forwarded client address; Retry-After is what is left of the window", async () => {
    for (let i = 0; i < 3; i++) assert.equal((await connect(base, unknownKey(i), developerKey, "203.0.113.1")).status, 403);
    const blocked = await connect(base, unknownKey(9), developerKey, "198.51.100.7");
    assert.equal(blocked.status, 429, "the API key is used up, from any address");
    assert.match(((await blocked.json()) as { message: string }).message, /from this API key; try again in \d+ s/);
    const retryAfter = Number(blocked.headers.get("retry-after"));
    assert.ok(retryAfter > 0 && retryAfter <= 900, `Retry-After ${retryAfter} is within the 900 s window`);
    // A colleague behind the same proxy, from the same address, is not blocked by it.
    assert.equal((await connect(base, unknownKey(1), otherDeveloperKey, "203.0.113.1")).status, 403);
    assert.equal((await connect(base, unknownKey(2), handlerKey, "203.0.113.1")).status, 403);
    // That address has now failed 5 times, whatever the API key: it is blocked, another address is not.
    const byAddress = await connect(base, unknownKey(3), handlerKey, "203.0.113.1");
    assert.equal(byAddress.status, 429);
    assert.match(((await byAddress.json()) as { message: string }).message, /from this address/);
    assert.equal((await connect(base, unknownKey(4), handlerKey, "203.0.113.2")).status, 403);
  });
});

describe("abuse limits, with no trusted proxy", () => {
  let env: Awaited<ReturnType<typeof startRelays>>;
  let base: string;
  before(async () => {
    env = await startRelays(1, {
      redis: false,
      env: {
        ASSIST_CLIENT_MAX_FAILURES: "10",
        ASSIST_ADDRESS_MAX_FAILURES: "2",
        ASSIST_PUBLIC_PER_ADDRESS_PER_MINUTE: "3",
        ASSIST_PUBLIC_GLOBAL_PER_MINUTE: "1000",
        ASSIST_REPORT_BODY_LIMIT_BYTES: "4096",
      },
    });
    base = env.relays[0]!.url;
  });
  after(() => env.close());

  test("a forged X-Forwarded-For does not move the failures to another address", async () => {
    assert.equal((await connect(base, unknownKey(0), developerKey, "203.0.113.1")).status, 403);
    assert.equal((await connect(base, unknownKey(1), otherDeveloperKey, "203.0.113.2")).status, 403);
    assert.equal((await connect(base, unknownKey(2), handlerKey, "203.0.113.3")).status, 429);
  });

  test("opening sessions and filing reports without signing in are limited per address, with Retry-After; reports are bounded", async () => {
    const open = (forwardedFor: string) =>
      call(base, "POST", "/assist/sessions", {
        body: { pageUrl: `${operatorOrigin}/orders` },
        headers: { origin: operatorOrigin, "x-forwarded-for": forwardedFor },
      });
    for (let i = 0; i < 3; i++) assert.equal((await open(`203.0.113.${i}`)).status, 201);
    const fourth = await fetch(`${base}/assist/sessions`, {
      method: "POST",
      headers: { "content-type": "application/json", origin: operatorOrigin },
      body: JSON.stringify({ pageUrl: `${operatorOrigin}/orders` }),
    });
    assert.equal(fourth.status, 429);
    assert.ok(Number(fourth.headers.get("retry-after")) > 0);
    assert.match(((await fourth.json()) as { message: string }).message, /too many assistance sessions opened from this address/);

    const report = (description: string) =>
      call(base, "POST", "/assist/reports", {
        body: { reporter: "Li", category: "data", description },
        headers: { origin: operatorOrigin },
      });
    const tooLarge = await report("x".repeat(8000));
    assert.equal(tooLarge.status, 413, "a report past ASSIST_REPORT_BODY_LIMIT_BYTES is refused");
    assert.match(String(tooLarge.body.message), /exceeds 4096 bytes/, "the refusal names the report's limit, not the service-wide one");
    for (let i = 0; i < 3; i++) assert.equal((await report("the balance is wrong")).status, 201);
    assert.equal((await report("the balance is wrong")).status, 429);
  });
});

describe("a session's developers", () => {
  let env: Awaited<ReturnType<typeof startRelays>>;
  let base: string;
  before(async () => {
    env = await startRelays(1, { redis: false, env: { ASSIST_MAX_DEVELOPERS: "1" } });
    base = env.relays[0]!.url;
  });
  after(() => env.close());

  test("a session full of developers admits no other, and still re-admits its own", async () => {
    const { key, widget } = await openWidget(base);
    assert.equal((await connect(base, key, developerKey)).status, 200);
    const other = await connect(base, key, otherDeveloperKey);
    assert.equal(other.status, 403);
    assert.deepEqual(await other.json(), {
      error: "key_full",
      message: "this session already has 1 developers, the most it admits",
    });
    assert.equal((await connect(base, key, developerKey)).status, 200);
    widget.close();
  });
});
