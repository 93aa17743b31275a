import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { brotliCompressSync, gzipSync } from "node:zlib";
import { type RunningService, startService } from "@opsplane/platform";
import { createTestDatabase, type TestDatabase } from "@opsplane/testing";
import { fixtureService } from "./fixture-service.js";

const limit = 4096;
const rpcPath = "/ops.v1.ServiceInfoService/GetServiceInfo";

/** A body sent with Transfer-Encoding: chunked (no Content-Length), as a streaming client sends it. */
function chunked(text: string): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  return new ReadableStream({
    start(c) {
      for (let i = 0; i < bytes.length; i += 1024) c.enqueue(bytes.slice(i, i + 1024));
      c.close();
    },
  });
}

describe("the body limit on Connect routes", () => {
  let db: TestDatabase;
  let svc: RunningService;
  before(async () => {
    db = await createTestDatabase();
    svc = await startService(fixtureService(), {
      DATABASE_URL: db.url,
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "silent",
      BODY_LIMIT_BYTES: String(limit),
    });
  });
  after(async () => {
    await svc.close();
    await db.drop();
  });

  const post = (body: BodyInit, headers: Record<string, string> = {}) =>
    fetch(svc.url + rpcPath, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
      duplex: "half",
    } as RequestInit);
  const oversize = JSON.stringify({ padding: "x".repeat(limit * 3) });

  test("a chunked body over the limit is 413, as with a Content-Length", async () => {
    for (const body of [chunked(oversize), oversize]) {
      const res = await post(body);
      assert.equal(res.status, 413);
      assert.deepEqual(await res.json(), { code: "resource_exhausted", message: `request body exceeds ${limit} bytes` });
    }
  });

  test("a compressed body that inflates past the limit is 413; one within it reaches the RPC; a corrupt one is 400", async () => {
    const bomb = gzipSync(oversize);
    assert.ok(bomb.length < limit);
    const big = await post(bomb, { "content-encoding": "gzip" });
    assert.equal(big.status, 413);
    assert.equal(((await big.json()) as { code: string }).code, "resource_exhausted");
    const small = await post(brotliCompressSync("{}"), { "content-encoding": "br" });
    assert.equal(small.status, 200);
    assert.equal(((await small.json()) as { name: string }).name, "fixture-svc");
    const corrupt = await post("not gzip at all", { "content-encoding": "gzip" });
    assert.equal(corrupt.status, 400);
  });

  test("a chunked body within the limit reaches the RPC", async () => {
    const res = await post(chunked("{}"));
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { name: string }).name, "fixture-svc");
  });
});
