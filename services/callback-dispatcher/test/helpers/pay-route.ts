import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { sign } from "./signed-stub.js";

type Api = (method: string, path: string, body?: unknown) => Promise<{ status: number; body: Record<string, unknown> }>;

/** prod and sit (signed stubs with secret "s") and the rule `pay` (JSON `orderNo` on both sides), then `ids` registered for sit. */
export async function setUpPay(api: Api, urls: { prod: string; sit: string }, ids: string[]): Promise<void> {
  await api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: urls.prod, production: true });
  await api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: urls.sit });
  await api("PUT", "/_dispatcher/v1/rules/pay", {
    interface: { pattern: "/api/pay", id: { kind: "json", expr: "orderNo" } },
    callback: { pattern: "/notify/pay", id: { kind: "json", expr: "orderNo" } },
    ttlSeconds: 600,
  });
  const registered = await api("POST", "/_dispatcher/v1/registrations", {
    env: "sit",
    registrations: ids.map((id) => ({ rule: "pay", id })),
  });
  assert.equal(registered.status, 200, JSON.stringify(registered.body));
}

/** The third party's status for the `pay` callback for `orderNo` sent to the dispatcher at `url`, and which environment answered it. */
export async function answerOf(url: string, orderNo: string): Promise<{ status: number; servedBy: string }> {
  const body = Buffer.from(JSON.stringify({ orderNo }));
  const res = await fetch(`${url}/notify/pay`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-signature": sign("s", body) },
    body,
    signal: AbortSignal.timeout(5_000),
  });
  await res.arrayBuffer();
  return { status: res.status, servedBy: res.headers.get("x-served-by") ?? "" };
}

/** Which environment answered the `pay` callback for `orderNo` sent to the dispatcher at `url` (200 expected). */
export async function routeOf(url: string, orderNo: string): Promise<string> {
  const { status, servedBy } = await answerOf(url, orderNo);
  assert.equal(status, 200);
  return servedBy;
}

/** Deletes a test's keys from the shared Redis (its prefix only). */
export async function dropPrefix(redisUrl: string, prefix: string): Promise<void> {
  const direct = new Redis(redisUrl);
  for await (const keys of direct.scanStream({ match: `${prefix}*`, count: 500 }) as AsyncIterable<string[]>)
    if (keys.length) await direct.del(...keys);
  direct.disconnect();
}
