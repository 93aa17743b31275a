import assert from "node:assert/strict";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { eventually } from "@opsplane/testing";
import { type Agent, startAgent } from "../src/agent.js";
import { startProxy } from "../src/proxy.js";
import type { RuleSetDocument } from "../src/rules/index.js";

const ruleSet: RuleSetDocument = {
  version: 7,
  rules: [
    {
      name: "pay",
      interface: { pattern: "/api/pay/**", method: "POST", id: { kind: "json", expr: "orderNo" } },
      callback: { pattern: "/notify/pay", id: { kind: "json", expr: "out_trade_no" } },
      ttlSeconds: 60,
    },
    {
      name: "alipay",
      interface: { pattern: "/api/alipay", method: "POST", id: { kind: "form", expr: "out_trade_no" } },
      callback: { pattern: "/notify/alipay", id: { kind: "form", expr: "out_trade_no" } },
      ttlSeconds: 60,
    },
    {
      name: "order",
      interface: { pattern: "/api/orders", id: { kind: "json", expr: "order.id", from: "response" } },
      callback: { pattern: "/notify/order", id: { kind: "script", expr: "function extract(m) { return 'x'; }" } },
      ttlSeconds: 60,
    },
  ],
};

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

type Batch = { env: string; registrations: Array<{ rule: string; id: string }> };

type Answer = { status: number; body: unknown };

/** Stands in for callback-dispatcher's agent API: serves the rules, records registration batches and answers them with `answer`. */
async function startFakeDispatcher(
  answer: (batch: Batch) => Answer | Promise<Answer> = () => ({ status: 200, body: {} }),
  rules: RuleSetDocument = ruleSet,
) {
  const batches: Array<{ env: string; registrations: Array<{ rule: string; id: string }>; auth: string | undefined }> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      if (req.url?.startsWith("/_dispatcher/v1/agent/rules")) {
        if (req.headers["if-none-match"] === `"${rules.version}"`) return res.writeHead(304).end();
        res.writeHead(200, { "content-type": "application/json", etag: `"${rules.version}"` });
        return res.end(JSON.stringify(rules));
      }
      const batch = JSON.parse(Buffer.concat(chunks).toString()) as Batch;
      batches.push({ ...batch, auth: req.headers.authorization });
      const { status, body } = await answer(batch);
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    });
  });
  const url = await listen(server);
  return { url, batches, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** A business app that reads its body late and answers in several writes. */
function businessApp(): http.Server {
  return http.createServer((req, res) => {
    setTimeout(() => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString();
        if (req.url === "/api/orders" && req.headers["x-answer-gzip"])
          return res
            .writeHead(201, { "content-type": "application/json", "content-encoding": "gzip" })
            .end(gzipSync('{"order":{"id":"ORD-GZ"}}'));
        if (req.url === "/api/orders") {
          res.writeHead(201, { "content-type": "application/json" });
          res.write('{"order":{"id":');
          return res.end('"ORD-9"}}');
        }
        res.writeHead(200, { "content-type": "text/plain" });
        res.end(`echo:${body}`);
      });
    }, 5);
  });
}

describe("interception agent", () => {
  let dispatcher: Awaited<ReturnType<typeof startFakeDispatcher>>;
  let app: http.Server;
  let appUrl: string;
  let agent: Agent;

  before(async () => {
    dispatcher = await startFakeDispatcher();
    app = businessApp();
    appUrl = await listen(app);
    agent = startAgent({ dispatcherUrl: dispatcher.url, env: "sit", token: "app-1:secret", log: () => {} });
    await eventually("rules loaded", () => agent.stats().rulesVersion === 7);
  });

  after(async () => {
    await agent.stop();
    app.close();
    await dispatcher.close();
  });

  const registrations = () => dispatcher.batches.flatMap((b) => b.registrations);

  test("reports the id from a matching request without changing what the app receives or answers", async () => {
    const body = JSON.stringify({ orderNo: "P-1", note: "x".repeat(10_000) });
    const res = await fetch(`${appUrl}/api/pay/alipay`, { method: "POST", body });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), `echo:${body}`);
    await eventually("P-1 reported", () => registrations().some((r) => r.rule === "pay" && r.id === "P-1"));
    const batch = dispatcher.batches.find((b) => b.registrations.some((r) => r.id === "P-1"))!;
    assert.equal(batch.env, "sit");
    assert.equal(batch.auth, `Basic ${Buffer.from("app-1:secret").toString("base64")}`);
  });

  test("reads the id from the response for figure-4 rules, across several writes", async () => {
    const res = await fetch(`${appUrl}/api/orders`, { method: "POST", body: "{}" });
    assert.deepEqual(await res.json(), { order: { id: "ORD-9" } });
    await eventually("ORD-9 reported", () => registrations().some((r) => r.rule === "order" && r.id === "ORD-9"));
  });

  test("reads ids as the dispatcher does: compressed bodies inflated, a GBK form in its charset, a UTF-8 byte order mark skipped", async () => {
    // Each went unread or garbled before, while the dispatcher read the callback's id right: the callback went to production.
    const gz = gzipSync('{"orderNo":"P-GZ"}');
    const compressed = await fetch(`${appUrl}/api/pay/x`, { method: "POST", headers: { "content-encoding": "gzip" }, body: gz });
    assert.equal(compressed.status, 200);
    assert.deepEqual(Buffer.from(await compressed.arrayBuffer()), Buffer.concat([Buffer.from("echo:"), Buffer.from(gz.toString())]));
    await fetch(`${appUrl}/api/alipay`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded; charset=GBK" },
      body: "out_trade_no=UAT-%B6%A9%B5%A5X",
    });
    await fetch(`${appUrl}/api/pay/x`, { method: "POST", body: '\uFEFF{"orderNo":"P-BOM"}' });
    const answered = await fetch(`${appUrl}/api/orders`, { method: "POST", headers: { "x-answer-gzip": "1" }, body: "{}" });
    assert.equal(answered.status, 201);
    for (const [rule, id] of [
      ["pay", "P-GZ"],
      ["alipay", "UAT-订单X"],
      ["pay", "P-BOM"],
      ["order", "ORD-GZ"],
    ])
      await eventually(`${rule} ${id} reported`, () => registrations().some((r) => r.rule === rule && r.id === id));
  });

  test("non-matching paths, other methods and bodies without an id report nothing and pass unchanged", async () => {
    const before = registrations().length;
    const failuresBefore = agent.stats().extractionFailures;
    assert.equal(await (await fetch(`${appUrl}/api/other`, { method: "POST", body: '{"orderNo":"N"}' })).text(), 'echo:{"orderNo":"N"}');
    assert.equal(await (await fetch(`${appUrl}/api/pay/x`, { method: "PUT", body: '{"orderNo":"N"}' })).text(), 'echo:{"orderNo":"N"}');
    assert.equal(await (await fetch(`${appUrl}/api/pay/x`, { method: "POST", body: "not json" })).text(), "echo:not json");
    await eventually("the malformed body counted", () => agent.stats().extractionFailures === failuresBefore + 1);
    await agent.flush();
    assert.equal(registrations().length, before);
  });
});

describe("agent with the dispatcher down", () => {
  test("the app keeps answering; registrations queue up to the bound, then are dropped and counted", async () => {
    const app = businessApp();
    const appUrl = await listen(app);
    const fake = await startFakeDispatcher();
    const agent = startAgent({ dispatcherUrl: fake.url, env: "sit", retryMs: 10, maxQueue: 3, timeoutMs: 200, log: () => {} });
    await eventually("rules loaded", () => agent.stats().rulesVersion === 7);
    await fake.close(); // now nothing answers at the dispatcher's address
    try {
      for (let i = 0; i < 6; i++) {
        const res = await fetch(`${appUrl}/api/pay/x`, { method: "POST", body: JSON.stringify({ orderNo: `D-${i}` }) });
        assert.equal(await res.text(), `echo:{"orderNo":"D-${i}"}`);
      }
      await eventually("drops counted", () => agent.stats().registered === 6 && agent.stats().dropped >= 3);
      assert.ok(agent.stats().queued <= 3);
    } finally {
      await agent.stop();
      app.close();
    }
  });
});

describe("agent during a dispatcher outage", () => {
  test("failing reports and rule fetches are logged once each, not alternately at every try; their recovery once", async () => {
    const app = businessApp();
    const appUrl = await listen(app);
    const fake = await startFakeDispatcher();
    const port = Number(new URL(fake.url).port);
    const lines: string[] = [];
    const agent = startAgent({
      dispatcherUrl: fake.url,
      env: "sit",
      retryMs: 20,
      rulesRefreshMs: 20,
      timeoutMs: 500,
      log: (l) => lines.push(l),
    });
    await eventually("rules loaded", () => agent.stats().rulesVersion === 7);
    await fake.close();
    // The dispatcher's address now takes connections and drops them: each report and each rule fetch fails.
    let tries = 0;
    const dropping = net.createServer((socket) => {
      tries++;
      socket.destroy();
    });
    await new Promise<void>((r) => dropping.listen(port, "127.0.0.1", r));
    let back: http.Server | undefined;
    try {
      await fetch(`${appUrl}/api/pay/x`, { method: "POST", body: JSON.stringify({ orderNo: "OUT-1" }) });
      await eventually("twenty failed tries", () => tries >= 20);
      const failures = (what: RegExp) => lines.filter((l) => what.test(l)).length;
      assert.equal(failures(/^cannot report registrations/), 1, lines.join("\n"));
      assert.equal(failures(/^cannot fetch rules/), 1, lines.join("\n"));

      await new Promise<void>((r) => dropping.close(() => r()));
      const received: string[] = [];
      back = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          if (req.url?.startsWith("/_dispatcher/v1/agent/rules")) return res.writeHead(304).end();
          received.push(Buffer.concat(chunks).toString());
          res.writeHead(200, { "content-type": "application/json" }).end("{}");
        });
      });
      await new Promise<void>((r) => back!.listen(port, "127.0.0.1", r));
      await eventually("the queued id reported", () => received.some((b) => b.includes("OUT-1")));
      await eventually(
        "the recovery logged",
        () => lines.includes("registrations reported again") && lines.includes("rules fetched again"),
      );
      assert.equal(lines.filter((l) => l === "registrations reported again").length, 1);
    } finally {
      await agent.stop();
      app.close();
      dropping.close();
      back?.close();
    }
  });
});

describe("agent with registrations the dispatcher refuses", () => {
  // As callback-dispatcher answers an id its environment may not claim: 403, nothing stored, the refused ids listed.
  const refuseProd = (batch: Batch) => {
    const refused = batch.registrations.filter((r) => r.id.startsWith("PROD-")).map((r) => ({ ...r, reason: "does not match SIT-.*" }));
    return refused.length
      ? {
          status: 403,
          body: { error: "id_not_claimable", message: `environment "sit" may not claim ${refused.length} ids`, details: { refused } },
        }
      : { status: 200, body: { registered: batch.registrations.length, ignoredRules: [] } };
  };

  async function agentWith(answer: (batch: Batch) => Answer) {
    const app = businessApp();
    const appUrl = await listen(app);
    // Every report waits at the dispatcher until the test opens the gate, so the ids the app
    // produces meanwhile queue up behind it and leave as the next batch: the test decides what it holds.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const fake = await startFakeDispatcher(async (batch) => {
      await gate;
      return answer(batch);
    });
    const lines: string[] = [];
    const agent = startAgent({ dispatcherUrl: fake.url, env: "sit", log: (l) => lines.push(l) });
    await eventually("rules loaded", () => agent.stats().rulesVersion === 7);
    const pay = async (orderNo: string) =>
      (await fetch(`${appUrl}/api/pay/x`, { method: "POST", body: JSON.stringify({ orderNo }) })).text();
    const close = async () => {
      open();
      await agent.stop();
      app.close();
      await fake.close();
    };
    return { agent, fake, lines, pay, open, close };
  }

  test("sends the rest of a batch once without the refused ids, and never sends those again", async () => {
    const t = await agentWith(refuseProd);
    try {
      await t.pay("SIT-1");
      await eventually("SIT-1 sent and held at the dispatcher", () => t.fake.batches.length === 1);
      for (const id of ["PROD-1", "SIT-2", "SIT-3"]) await t.pay(id);
      await eventually("three ids queued behind it", () => t.agent.stats().queued === 3);
      t.open();
      await eventually("every batch answered", () => t.agent.stats().sent + t.agent.stats().refused === 4);
      assert.deepEqual(
        t.fake.batches.map((b) => b.registrations.map((r) => r.id)),
        [["SIT-1"], ["PROD-1", "SIT-2", "SIT-3"], ["SIT-2", "SIT-3"]],
      );
      await t.agent.flush();
      assert.equal(t.fake.batches.length, 3, "the refused id is not retried");
      assert.deepEqual(
        { sent: t.agent.stats().sent, refused: t.agent.stats().refused, queued: t.agent.stats().queued },
        { sent: 3, refused: 1, queued: 0 },
      );
      assert.ok(
        t.lines.some((l) => /refused.*id_not_claimable.*may not claim/.test(l)),
        t.lines.join("\n"),
      );
      // The next ids still go through.
      await t.pay("SIT-4");
      await eventually("SIT-4 sent", () => t.fake.batches.length === 4);
      assert.deepEqual(t.fake.batches.at(-1)?.registrations, [{ rule: "pay", id: "SIT-4" }]);
    } finally {
      await t.close();
    }
  });

  test("drops a batch refused as a whole (credentials bound to another environment) instead of retrying it forever", async () => {
    const t = await agentWith(() => ({
      status: 403,
      body: { error: "agent_bound_elsewhere", message: 'app agent-uat is bound to environment "uat" and may not act for "sit"' },
    }));
    try {
      t.open();
      await t.pay("SIT-9");
      await eventually("SIT-9 refused", () => t.agent.stats().refused === 1);
      await t.agent.flush();
      await t.agent.flush();
      assert.equal(t.fake.batches.length, 1);
      assert.deepEqual({ refused: t.agent.stats().refused, queued: t.agent.stats().queued }, { refused: 1, queued: 0 });
      assert.ok(
        t.lines.some((l) => /agent_bound_elsewhere.*bound to environment "uat"/.test(l)),
        t.lines.join("\n"),
      );
    } finally {
      await t.close();
    }
  });
});

describe("agent installed without the sandbox (@opsplane/sandbox is an optional peer)", () => {
  test("script rules are skipped with one log line; the other rules keep reporting", async () => {
    const withScript: RuleSetDocument = {
      version: 8,
      rules: [
        ...ruleSet.rules,
        {
          name: "scripted",
          interface: { pattern: "/api/scripted", id: { kind: "script", expr: "function extract(m) { return m.path; }" } },
          callback: { pattern: "/notify/scripted", id: { kind: "json", expr: "id" } },
          ttlSeconds: 60,
        },
      ],
    };
    const fake = await startFakeDispatcher(undefined, withScript);
    const app = businessApp();
    const appUrl = await listen(app);
    const lines: string[] = [];
    const agent = startAgent({
      dispatcherUrl: fake.url,
      env: "sit",
      log: (l) => lines.push(l),
      scriptCompiler: () => Promise.reject(new Error("Cannot find module '@opsplane/sandbox'")),
    });
    try {
      await eventually("rules loaded", () => agent.stats().rulesVersion === 8);
      assert.equal(agent.stats().rules, ruleSet.rules.length, "every rule but the script one");
      await fetch(`${appUrl}/api/pay/x`, { method: "POST", body: JSON.stringify({ orderNo: "NOSB-1" }) });
      await eventually("NOSB-1 reported", () => fake.batches.some((b) => b.registrations.some((r) => r.id === "NOSB-1")));
      assert.ok(
        lines.some((l) => /script extractors unavailable, script rules skipped: Cannot find module/.test(l)),
        lines.join("\n"),
      );
    } finally {
      await agent.stop();
      app.close();
      await fake.close();
    }
  });
});

describe("registration window", () => {
  test("an id in A's request is reported while the app is still working on A, with no flush to wait for", async () => {
    const fake = await startFakeDispatcher();
    const reported = () => fake.batches.some((b) => b.registrations.some((r) => r.id === "EARLY-1"));
    // Interface A answers only once the dispatcher knows its id, as a platform calling its third party
    // synchronously does: the callback can come back before A's response leaves.
    const app = http.createServer((req, res) => {
      req.resume();
      req.on("end", async () => {
        await eventually("EARLY-1 reported before A answers", reported).then(
          () => res.writeHead(200).end("ok"),
          () => res.writeHead(500).end("not reported while A was in progress"),
        );
      });
    });
    const appUrl = await listen(app);
    // A retry interval of an hour: only a report sent at once can arrive.
    const agent = startAgent({ dispatcherUrl: fake.url, env: "sit", retryMs: 3_600_000, log: () => {} });
    try {
      await eventually("rules loaded", () => agent.stats().rulesVersion === 7);
      const res = await fetch(`${appUrl}/api/pay/x`, { method: "POST", body: JSON.stringify({ orderNo: "EARLY-1" }) });
      assert.equal(await res.text(), "ok");
    } finally {
      await agent.stop();
      app.close();
      await fake.close();
    }
  });

  test("reports leave one at a time when idle; ids found while one is in flight go together in the next", async () => {
    const app = businessApp();
    const appUrl = await listen(app);
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const fake = await startFakeDispatcher(async (batch) => {
      if (batch.registrations[0]?.id === "LOAD-0") await gate;
      return { status: 200, body: {} };
    });
    const agent = startAgent({ dispatcherUrl: fake.url, env: "sit", retryMs: 3_600_000, log: () => {} });
    const pay = (orderNo: string) => fetch(`${appUrl}/api/pay/x`, { method: "POST", body: JSON.stringify({ orderNo }) });
    try {
      await eventually("rules loaded", () => agent.stats().rulesVersion === 7);
      await pay("LOAD-0");
      await eventually("LOAD-0 sent", () => fake.batches.length === 1);
      await Promise.all(["LOAD-1", "LOAD-2", "LOAD-3"].map(pay));
      await eventually("three ids queued while LOAD-0 is in flight", () => agent.stats().queued === 3);
      open();
      await eventually("all four sent", () => agent.stats().sent === 4);
      assert.deepEqual(
        fake.batches.map((b) => b.registrations.map((r) => r.id).sort()),
        [["LOAD-0"], ["LOAD-1", "LOAD-2", "LOAD-3"]],
      );
      await pay("IDLE-1");
      await eventually("IDLE-1 sent on its own", () => fake.batches.length === 3);
      assert.deepEqual(fake.batches[2]!.registrations, [{ rule: "pay", id: "IDLE-1" }]);
    } finally {
      open();
      await agent.stop();
      app.close();
      await fake.close();
    }
  });
});

describe("sidecar proxy", () => {
  test("forwards traffic unchanged to the app behind it and reports ids seen through it", async () => {
    const fake = await startFakeDispatcher();
    const upstream = businessApp();
    const upstreamUrl = await listen(upstream);
    const agent = startAgent({ dispatcherUrl: fake.url, env: "uat", log: () => {} });
    const proxy = await startProxy({ port: 0, host: "127.0.0.1", upstream: upstreamUrl });
    try {
      await eventually("rules loaded", () => agent.stats().rulesVersion === 7);
      const body = JSON.stringify({ orderNo: "PX-1" });
      const res = await fetch(`${proxy.url}/api/pay/wx?a=1`, { method: "POST", body });
      assert.equal(res.status, 200);
      assert.equal(await res.text(), `echo:${body}`);
      await eventually("PX-1 reported", () => fake.batches.some((b) => b.env === "uat" && b.registrations.some((r) => r.id === "PX-1")));
    } finally {
      await proxy.close();
      await agent.stop();
      upstream.close();
      await fake.close();
    }
  });

  test("answers 502 when the app behind it is down", async () => {
    const proxy = await startProxy({ port: 0, host: "127.0.0.1", upstream: "http://127.0.0.1:1" });
    try {
      const res = await fetch(`${proxy.url}/anything`);
      assert.equal(res.status, 502);
    } finally {
      await proxy.close();
    }
  });
});
