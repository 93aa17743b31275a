import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { agentApp, startDispatcher } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

// The platform signs every callback with the app secret that test and production share.
const appSecret = "shared-app-secret";
const repoRoot = path.join(__dirname, "..", "..", "..");

const rules = {
  "pay-json": {
    interface: { pattern: "/api/pay", method: "POST", id: { kind: "json", expr: "orderNo" } },
    callback: { pattern: "/notify/pay/**", id: { kind: "json", expr: "$.data.out_trade_no" } },
    ttlSeconds: 600,
  },
  "alipay-form": {
    interface: { pattern: "/api/alipay/trade", id: { kind: "form", expr: "out_trade_no" } },
    callback: { pattern: "/notify/alipay", id: { kind: "form", expr: "out_trade_no" } },
    ttlSeconds: 600,
  },
  "wxpay-xml": {
    interface: { pattern: "/api/wxpay/**", id: { kind: "json", expr: "outTradeNo" } },
    callback: { pattern: "/notify/wx?ay", id: { kind: "xml", expr: "xml.out_trade_no" } },
    ttlSeconds: 600,
  },
  // A platform that calls its third party while A is still in progress: the callback may beat the agent's
  // report, so the dispatcher holds an unregistered callback up to 3 s for its registration.
  checkout: {
    interface: { pattern: "/api/checkout", method: "POST", id: { kind: "json", expr: "orderNo" } },
    callback: { pattern: "/notify/checkout", id: { kind: "json", expr: "out_trade_no" } },
    ttlSeconds: 600,
    holdMs: 3_000,
  },
  // Figure 4: the id exists only in A's response, and the callback carries it in its path.
  "order-paid": {
    interface: { pattern: "/api/orders", method: "POST", id: { kind: "json", expr: "order.id", from: "response" } },
    callback: {
      pattern: "/callbacks/orders/*/paid",
      id: { kind: "script", expr: "function extract(msg) { return msg.path.split('/')[3]; }" },
      sample: { path: "/callbacks/orders/ORD-1/paid", body: "{}", expectId: "ORD-1" },
    },
    ttlSeconds: 600,
  },
};

describe("callbacks reach the environment whose traffic created the object", () => {
  let dispatcher: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: Awaited<ReturnType<typeof startSignedStub>>;
  let sit: Awaited<ReturnType<typeof startSignedStub>>;
  let app: ChildProcess;
  let appUrl: string;

  before(async () => {
    prod = await startSignedStub("prod", appSecret);
    sit = await startSignedStub("sit", appSecret);
    dispatcher = await startDispatcher();
    assert.equal((await dispatcher.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prod.url, production: true })).status, 200);
    // sit's own ids carry its prefixes; anything else (a production order number) it may not claim.
    const sitEnv = { baseUrl: sit.url, idPatterns: { "*": "(PAY|ALI|WX|ORD)-[0-9A-Za-z]+" } };
    assert.equal((await dispatcher.api("PUT", "/_dispatcher/v1/environments/sit", sitEnv)).status, 200);
    for (const [name, rule] of Object.entries(rules)) {
      const res = await dispatcher.api("PUT", `/_dispatcher/v1/rules/${name}`, rule);
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    const version = (await dispatcher.api("GET", "/_dispatcher/v1/rules")).body.version;

    app = spawn(process.execPath, ["--import", "@opsplane/callback-agent", path.join(__dirname, "fixtures", "test-env-app.js")], {
      cwd: repoRoot,
      env: {
        ...process.env,
        OPSPLANE_DISPATCHER_URL: dispatcher.url,
        OPSPLANE_ENV: "sit",
        OPSPLANE_AGENT_TOKEN: `${agentApp.id}:${agentApp.secret}`,
        // Otherwise the agent's defaults: reports leave as soon as ids are found.
        OPSPLANE_RULES_REFRESH_MS: "200",
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const firstLine = await new Promise<string>((resolve, reject) => {
      createInterface({ input: app.stdout! }).once("line", resolve);
      app.once("exit", (code) => reject(new Error(`test-environment app exited with ${code}`)));
    });
    appUrl = `http://127.0.0.1:${(JSON.parse(firstLine) as { port: number }).port}`;
    // The agent has the current rules once it has fetched this version.
    await eventually("the agent to load the rules", async () => {
      const { agents } = (await dispatcher.api("GET", "/_dispatcher/v1/agents")).body as {
        agents: Array<{ env: string; rulesVersion: number }>;
      };
      return agents.some((a) => a.env === "sit" && a.rulesVersion === version);
    });
  });

  after(async () => {
    app?.kill("SIGTERM");
    await dispatcher?.close();
    await prod?.close();
    await sit?.close();
  });

  /** Drives interface A through the app and checks the app saw the request unchanged. */
  async function callApp(pathname: string, body: string, contentType: string) {
    const res = await fetch(`${appUrl}${pathname}`, { method: "POST", headers: { "content-type": contentType }, body });
    const json = (await res.json()) as { received?: string; order?: { id: string; received: string } };
    assert.equal(Buffer.from(json.received ?? json.order!.received, "base64").toString(), body, "the app received the exact body");
    return json;
  }

  async function registered(rule: string, id: string) {
    return eventually(`${rule}/${id} to be registered by sit's agent`, async () => {
      const { body } = await dispatcher.api("GET", `/_dispatcher/v1/registrations/${rule}/${encodeURIComponent(id)}`);
      return body.env === "sit" && body.registeredBy === `app:${agentApp.id}`;
    });
  }

  /** Sends the platform's signed callback to the dispatcher and returns the response. */
  async function platformCallback(pathname: string, body: string, contentType: string) {
    const bytes = Buffer.from(body);
    const res = await fetch(`${dispatcher.url}${pathname}`, {
      method: "POST",
      headers: { "content-type": contentType, "x-signature": sign(appSecret, bytes) },
      body: bytes,
    });
    return { status: res.status, headers: res.headers, text: await res.text(), bytes };
  }

  function landedIn(stub: typeof sit, pathname: string, bytes: Buffer) {
    const got = stub.received.find((r) => r.url === pathname);
    assert.ok(got, `${pathname} reached ${stub === sit ? "sit" : "prod"}`);
    assert.ok(got.verified, "HMAC of the body verified at the receiver");
    assert.deepEqual(got.body, bytes, "body forwarded byte for byte");
  }

  test("figure 3, JSON: id in A's request, JSON callback goes to sit", async () => {
    await callApp("/api/pay", JSON.stringify({ orderNo: "PAY-1001", amount: 12.5 }), "application/json");
    await registered("pay-json", "PAY-1001");
    const body = JSON.stringify({ data: { out_trade_no: "PAY-1001", status: "SUCCESS", note: "支付成功" } });
    const res = await platformCallback("/notify/pay/v2", body, "application/json; charset=utf-8");
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.text), { ok: true, env: "sit" });
    assert.equal(res.headers.get("x-served-by"), "sit");
    landedIn(sit, "/notify/pay/v2", res.bytes);
    assert.ok(!prod.received.some((r) => r.url === "/notify/pay/v2"));
  });

  test("figure 3, form: form-encoded callback with query string goes to sit", async () => {
    await callApp("/api/alipay/trade", "out_trade_no=ALI-77&total_amount=9.90", "application/x-www-form-urlencoded");
    await registered("alipay-form", "ALI-77");
    const body = "notify_id=n1&out_trade_no=ALI-77&subject=%E5%95%86%E5%93%81+A&sign=abc%2B%2F%3D";
    const res = await platformCallback("/notify/alipay?charset=utf-8&version=1.0", body, "application/x-www-form-urlencoded");
    assert.equal(res.status, 200);
    landedIn(sit, "/notify/alipay?charset=utf-8&version=1.0", res.bytes);
  });

  test("figure 3, XML: WeChat-style XML callback goes to sit and its XML answer comes back", async () => {
    await callApp("/api/wxpay/unified-order", JSON.stringify({ outTradeNo: "WX-5" }), "application/json");
    await registered("wxpay-xml", "WX-5");
    const body = "<xml><appid><![CDATA[wx1]]></appid><out_trade_no><![CDATA[WX-5]]></out_trade_no><result_code>SUCCESS</result_code></xml>";
    const res = await platformCallback("/notify/wxpay", body, "text/xml");
    assert.equal(res.status, 200);
    assert.match(res.text, /<env>sit<\/env>/);
    landedIn(sit, "/notify/wxpay", res.bytes);
  });

  test("figure 4: id only in A's response, callback to another path (script extractor) goes to sit", async () => {
    const created = await callApp("/api/orders", JSON.stringify({ sku: "vip-month" }), "application/json");
    const orderId = created.order!.id;
    await registered("order-paid", orderId);
    const res = await platformCallback(`/callbacks/orders/${orderId}/paid`, JSON.stringify({ paid: true }), "application/json");
    assert.equal(res.status, 200);
    landedIn(sit, `/callbacks/orders/${orderId}/paid`, res.bytes);
  });

  test("a callback racing its registration (sent right after A's request starts) reaches sit", async () => {
    const body = JSON.stringify({ out_trade_no: "PAY-RACE1", status: "SUCCESS" });
    // A is not awaited: the third party's callback leaves while the app is still taking A.
    const a = callApp("/api/checkout", JSON.stringify({ orderNo: "PAY-RACE1" }), "application/json");
    const res = await platformCallback("/notify/checkout", body, "application/json");
    await a;
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-served-by"), "sit");
    landedIn(sit, "/notify/checkout", res.bytes);
  });

  test("an id outside sit's pattern is refused: its callback stays with production, and the agent carries on", async () => {
    await callApp("/api/pay", JSON.stringify({ orderNo: "8800123" }), "application/json");
    await eventually("the dispatcher to refuse 8800123 from sit's agent", async () => {
      const { rows } = await dispatcher.svc.ctx.pool.query<{ after: { refused?: Array<{ id: string }> } }>(
        "SELECT after FROM audit_log WHERE action = 'registration.create' AND outcome = 'denied' AND actor = $1",
        [`app:${agentApp.id}`],
      );
      return rows.some((r) => r.after.refused?.some((x) => x.id === "8800123"));
    });
    await callApp("/api/pay", JSON.stringify({ orderNo: "PAY-1002" }), "application/json");
    await registered("pay-json", "PAY-1002");
    const body = JSON.stringify({ data: { out_trade_no: "8800123", status: "SUCCESS" } });
    const res = await platformCallback("/notify/pay/v2?order=8800123", body, "application/json");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-served-by"), "prod");
    landedIn(prod, "/notify/pay/v2?order=8800123", res.bytes);
    assert.ok(!sit.received.some((r) => r.url === "/notify/pay/v2?order=8800123"));
  });

  test("an id never registered goes to production, byte for byte", async () => {
    const body = JSON.stringify({ data: { out_trade_no: "PAY-PROD-9" } });
    const res = await platformCallback("/notify/pay/v2?from=prod", body, "application/json");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-served-by"), "prod");
    landedIn(prod, "/notify/pay/v2?from=prod", res.bytes);
  });

  test("a replay re-sends a kept callback to sit byte for byte, its signature still valid", async () => {
    const { id } = await eventually("the PAY-RACE1 decision", async () => {
      const { body } = await dispatcher.api("GET", "/_dispatcher/v1/decisions?objectId=PAY-RACE1");
      return (body.decisions as Array<{ id: string }>)[0];
    });
    const first = sit.received.find((r) => r.url === "/notify/checkout")!;
    const count = sit.received.length;
    // No body at all, as `curl -X POST …/replay` sends: the defaults.
    const res = await dispatcher.api("POST", `/_dispatcher/v1/decisions/${id}/replay`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal((res.body.replay as { status: number }).status, 200);
    assert.equal(sit.received.length, count + 1);
    const again = sit.received.at(-1)!;
    assert.equal(again.url, "/notify/checkout");
    assert.deepEqual(again.body, first.body, "the same bytes");
    assert.ok(again.verified, "HMAC of the body verified at the receiver");
  });

  test("every decision is recorded and queryable", async () => {
    const sitDecision = await eventually("the PAY-1001 decision", async () => {
      const { body } = await dispatcher.api("GET", "/_dispatcher/v1/decisions?objectId=PAY-1001");
      return (body.decisions as Array<Record<string, unknown>>)[0];
    });
    assert.equal(sitDecision.targetEnv, "sit");
    assert.equal(sitDecision.reason, "registered");
    assert.equal(sitDecision.rule, "pay-json");
    assert.equal(sitDecision.status, 200);
    const prodDecision = await eventually("the PAY-PROD-9 decision", async () => {
      const { body } = await dispatcher.api("GET", "/_dispatcher/v1/decisions?objectId=PAY-PROD-9");
      return (body.decisions as Array<Record<string, unknown>>)[0];
    });
    assert.equal(prodDecision.targetEnv, "prod");
    assert.equal(prodDecision.reason, "not_registered");
  });
});
