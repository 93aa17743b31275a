import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { startDispatcher, viewerKey } from "./helpers/dispatcher.js";
import { setUpPay } from "./helpers/pay-route.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

// A test environment that takes callbacks and never answers, behind a pool of one connection: undici's
// own timeouts fired up to half a second late and began only once a connection took the request, so the
// third callback queued behind the first two was answered 504 after three times UPSTREAM_TIMEOUT_MS.
const timeoutMs = 1_000;
let d: Awaited<ReturnType<typeof startDispatcher>> | undefined;
let prod: Awaited<ReturnType<typeof startSignedStub>> | undefined;
let hung: Awaited<ReturnType<typeof startSignedStub>> | undefined;

before(async () => {
  prod = await startSignedStub("prod", "s");
  hung = await startSignedStub("sit", "s", { hang: true });
  d = await startDispatcher({ UPSTREAM_TIMEOUT_MS: String(timeoutMs), UPSTREAM_CONNECTIONS: "1" });
  await setUpPay(d.api, { prod: prod.url, sit: hung.url }, ["H1", "H2", "H3"]);
});

after(async () => {
  await d?.close();
  await Promise.all([prod?.close(), hung?.close()]);
});

async function callBack(orderNo: string): Promise<{ status: number; tookMs: number; requestId: string }> {
  const body = Buffer.from(JSON.stringify({ orderNo }));
  const started = performance.now();
  const res = await fetch(`${d!.url}/notify/pay`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-signature": sign("s", body) },
    body,
  });
  await res.arrayBuffer();
  return { status: res.status, tookMs: performance.now() - started, requestId: res.headers.get("x-request-id")! };
}

test("callbacks to an environment that never answers are each answered 504 at UPSTREAM_TIMEOUT_MS, those queued for its one connection too", async () => {
  const answers = await Promise.all(["H1", "H2", "H3"].map(callBack));
  for (const a of answers) {
    assert.equal(a.status, 504);
    assert.ok(a.tookMs >= timeoutMs - 5, `not before the deadline: ${Math.round(a.tookMs)} ms`);
    // Room for a loaded machine; before, the answers came after about 1.5, 3 and 4.5 s.
    assert.ok(a.tookMs < timeoutMs + 700, `answered ${Math.round(a.tookMs)} ms after it was sent`);
  }
  const errors = await Promise.all(
    answers.map((a) =>
      eventually(`the decision of ${a.requestId}`, async () => {
        const { body } = await d!.api("GET", `/_dispatcher/v1/decisions?requestId=${a.requestId}`, undefined, viewerKey);
        return (body.decisions as Array<{ status: number; error: string }>)[0];
      }),
    ),
  );
  assert.deepEqual(
    errors.map((e) => e.status),
    [504, 504, 504],
  );
  for (const e of errors) assert.match(e.error, new RegExp(`no answer within ${timeoutMs} ms \\(UPSTREAM_TIMEOUT_MS\\)`));
});
