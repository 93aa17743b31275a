import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { asDeveloper, type Client, call, connectDeveloper, openWidget, startRelays } from "./harness.js";

const card = "6222020200112233446";
const residentId = "11010519491231002X";
const mobile = "13812345678";
const email = "zhang.san@example.com";
const timestamp = 1700000000004;

let env: Awaited<ReturnType<typeof startRelays>>;
let base: string;
before(async () => {
  env = await startRelays(1, { redis: false, env: { ASSIST_NETWORK_BODY_URLS: "/api/**" } });
  base = env.relays[0]!.url;
});
after(() => env.close());

test("the widget gets the relay's masking settings before any session: body paths as patterns, the masked keys", async () => {
  const policy = await call(base, "GET", "/assist/policy", { headers: { origin: "http://operator.example" } });
  assert.equal(policy.status, 200);
  const sanitiser = policy.body.sanitiser as { networkBodyUrls: string[]; maskedKeys: string };
  assert.ok(new RegExp(sanitiser.networkBodyUrls[0]!).test("/api/orders/7"));
  assert.ok(!new RegExp(sanitiser.networkBodyUrls[0]!).test("/static/app.js"));
  assert.match("sfzh", new RegExp(sanitiser.maskedKeys, "i"));
  const elsewhere = await call(base, "GET", "/assist/policy", { headers: { origin: "http://evil.example" } });
  assert.equal(elsewhere.status, 403);
});

test("a page that sends clear data (an old or tampered widget) still reaches the developer and the recording masked", async () => {
  const { sessionId, key, widget } = await openWidget(base);
  const developer: Client = await connectDeveloper(base, key);
  await widget.next("developer joined", (m) => m.t === "developer-joined");
  widget.send({
    t: "rrweb",
    events: [
      {
        type: 4,
        timestamp,
        data: { href: `http://operator.example/customer?access_token=tok-1&idNo=${residentId}`, width: 800, height: 600 },
      },
      { type: 3, timestamp, data: { source: 0, texts: [{ id: 5, value: `Card ${card}, call ${mobile}, at ${timestamp}` }] } },
    ],
  });
  widget.send({ t: "console", entries: [{ level: "log", text: `{"otp":"918273","email":"${email}"}`, at: timestamp }] });
  const call_ = { via: "fetch", method: "POST", status: 200, startedAt: timestamp, durationMs: 3 };
  widget.send({
    t: "network",
    entries: [
      {
        ...call_,
        url: "http://operator.example/api/profile?token=abc",
        requestBody: `{"acctNo":"${card}","createdAt":${timestamp}}`,
        responseBody: `{"ref":${card}}`,
      },
      { ...call_, url: "http://operator.example/static/config", responseBody: "not to be captured" },
    ],
  });
  const network = await developer.next("network frame", (m) => m.t === "network");
  await developer.next("console frame", (m) => m.t === "console");
  const rrweb = await developer.next("page text", (m) => m.t === "rrweb");

  const forwarded = JSON.stringify([rrweb, network, developer.inbox.find((m) => m.t === "console")]);
  const recording = await call(base, "GET", `/assist/sessions/${sessionId}/recording`, { headers: asDeveloper() });
  for (const seen of [forwarded, JSON.stringify(recording.body)]) {
    for (const secret of [card, residentId, mobile, email, "918273", "tok-1", "token=abc", "not to be captured"])
      assert.ok(!seen.includes(secret), `${secret} was masked`);
    assert.ok(seen.includes(`at ${timestamp}`), "the timestamp stays");
  }
  const [profile, other] = network.entries as Array<{ url: string; requestBody?: string; responseBody?: string }>;
  assert.deepEqual(JSON.parse(profile!.requestBody!), { acctNo: "***", createdAt: timestamp });
  assert.deepEqual(JSON.parse(profile!.responseBody!), { ref: "***************3446" });
  assert.equal(other!.responseBody, undefined);
  developer.close();
  widget.close();
});

test("a tampered page's OTP in JSON inside a string, its phone numbers, password value and unknown fields reach neither the developer nor the recording", async () => {
  const { sessionId, key, widget } = await openWidget(base);
  const developer: Client = await connectDeveloper(base, key);
  await widget.next("developer joined", (m) => m.t === "developer-joined");
  const password = (id: number, tagName: string, attributes: Record<string, string>) => ({
    type: 2,
    id,
    tagName,
    attributes,
    childNodes: [],
  });
  widget.send({
    t: "rrweb",
    events: [
      {
        type: 2,
        timestamp,
        data: {
          node: {
            type: 0,
            id: 1,
            childNodes: [
              password(2, "input", { type: "password", value: "hunter2" }),
              password(3, "input", { name: "otp", value: "551177" }),
            ],
          },
          initialOffset: { top: 0, left: 0 },
        },
      },
      { type: 3, timestamp, data: { source: 5, id: 2, text: "hunter22", isChecked: false } },
    ],
  });
  widget.send({
    t: "console",
    entries: [
      { level: "log", text: 'resp {"otp":"123456","ok":true}', at: timestamp },
      { level: "log", text: "sms otp: 654321 sent to +86 138 1234 5678 and １３９８７６５４３２１", at: timestamp, extra: "8613812345678" },
    ],
  });
  widget.send({
    t: "network",
    entries: [
      {
        via: "fetch",
        method: "GET",
        url: "http://operator.example/api/me",
        status: 200,
        startedAt: timestamp,
        durationMs: 3,
        requestHeaders: { authorization: "Bearer sekrit" },
      },
    ],
  });
  const network = await developer.next("network frame", (m) => m.t === "network");
  await developer.next("console frame", (m) => m.t === "console");
  const rrweb = await developer.next("page", (m) => m.t === "rrweb");
  const forwarded = JSON.stringify([rrweb, developer.inbox.find((m) => m.t === "console"), network]);
  const recording = await eventually("the frames recorded", async () => {
    const r = await call(base, "GET", `/assist/sessions/${sessionId}/recording`, { headers: asDeveloper() });
    return (r.body.events as unknown[]).length === 3 && JSON.stringify(r.body);
  });
  for (const seen of [forwarded, recording]) {
    for (const secret of [
      "hunter2",
      "551177",
      "123456",
      "654321",
      "1234 5678",
      "13812345678",
      "８７６５",
      "sekrit",
      "requestHeaders",
      "extra",
    ])
      assert.ok(!seen.includes(secret), `${secret} was masked or left out`);
    assert.ok(seen.includes("+86 138 **** 5678"), "a phone number keeps its first three and last four digits");
  }
  assert.deepEqual(Object.keys((network.entries as object[])[0]!).sort(), ["durationMs", "method", "startedAt", "status", "url", "via"]);
  developer.close();
  widget.close();
});

test("a report's description, contact and customer reference are stored masked", async () => {
  const filed = await call(base, "POST", "/assist/reports", {
    headers: { origin: "http://operator.example" },
    body: {
      reporter: "Li",
      category: "data",
      contact: "+86 138 1234 5678",
      customerRef: `card ${card}`,
      description: `the OTP was otp=918273 and the ID ${residentId}`,
    },
  });
  assert.equal(filed.status, 201, JSON.stringify(filed.body));
  const report = await call(base, "GET", `/assist/reports/${filed.body.id}`, { headers: asDeveloper() });
  const seen = JSON.stringify(report.body);
  for (const secret of ["1234 5678", card, "918273", residentId]) assert.ok(!seen.includes(secret), `${secret} was masked`);
  assert.match(seen, /\+86 138 \*\*\*\* 5678/);
});

test("a relay still configured with the masked keys' old name refuses to start, naming the new one", async () => {
  await assert.rejects(
    startRelays(1, { redis: false, env: { ASSIST_MASKED_BODY_KEYS: "password|card" } }),
    /ASSIST_MASKED_BODY_KEYS[\s\S]*renamed[\s\S]*ASSIST_MASKED_KEYS/,
  );
});
