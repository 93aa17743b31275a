import assert from "node:assert/strict";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { startDispatcher, viewerKey } from "./helpers/dispatcher.js";

// A rule's script calls run one at a time. Anyone can send callbacks that run it to its time limit; a
// flood of them held every other callback on the rule, production's too, for as long as the flood lasted
// (15 s behind 300 of them, 51 s behind 1,000, past any platform's timeout).
describe("a flood of callbacks running a rule's script to its time limit", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: http.Server;

  before(async () => {
    prod = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => res.end("prod"));
    });
    await new Promise<void>((resolve) => prod.listen(0, "127.0.0.1", resolve));
    d = await startDispatcher({ SCRIPT_TIME_LIMIT_MS: "50", SCRIPT_WAIT_LIMIT_MS: "300" });
    const prodUrl = `http://127.0.0.1:${(prod.address() as AddressInfo).port}`;
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: prodUrl, production: true })).status, 200);
    const rule = await d.api("PUT", "/_dispatcher/v1/rules/scripted", {
      interface: { pattern: "/api/x", id: { kind: "json", expr: "id" } },
      callback: {
        pattern: "/cb/**",
        // Runs away on a body holding "spin", as a careless script might on input nobody expected.
        id: { kind: "script", expr: "function extract(m) { if (m.body.includes('spin')) while (true) {} return JSON.parse(m.body).id }" },
        sample: { path: "/cb/pay", body: '{"id":"P-1"}', expectId: "P-1" },
      },
      ttlSeconds: 600,
    });
    assert.equal(rule.status, 200, JSON.stringify(rule.body));
  });

  after(async () => {
    await d?.close();
    await new Promise((resolve) => prod?.close(resolve));
  });

  const send = (body: string, requestId: string) =>
    fetch(`${d.url}/cb/pay`, { method: "POST", headers: { "content-type": "application/json", "x-request-id": requestId }, body });

  test("a callback behind it is answered within SCRIPT_WAIT_LIMIT_MS of reaching the script, not after the flood; the flood is shed", async () => {
    // 200 calls of 50 ms: ten seconds of the rule's worker. Connected first, then sent at once, so
    // they are all queued behind the first before it comes back.
    const sockets = await Promise.all(
      Array.from(
        { length: 200 },
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const socket = net.connect(Number(new URL(d.url).port), "127.0.0.1", () => resolve(socket));
            socket.once("error", reject);
          }),
      ),
    );
    const flood = sockets.map((socket, i) => {
      const body = '{"id":"spin"}';
      socket.end(
        `POST /cb/pay HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-Id: flood-${i}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
      );
      return new Promise<number>((resolve) => {
        let answer = "";
        socket
          .setEncoding("latin1")
          .on("data", (chunk: string) => {
            answer += chunk;
          })
          .once("close", () => resolve(Number(answer.slice(9, 12))));
      });
    });
    await Promise.race(flood);
    const started = performance.now();
    const behind = await send('{"id":"P-2"}', "behind-flood");
    const waited = performance.now() - started;
    const answer = [behind.status, await behind.text()];
    // Without a wait limit it waited for the flood queued ahead of it: 2.7 s here, and longer the larger the flood.
    assert.ok(waited < 1_500, `answered after ${Math.round(waited)} ms`);
    const shed = (await Promise.all(flood)).filter((status) => status === 503).length;
    assert.ok(shed >= 100, `${shed} of the flood's 200 callbacks were answered 503 instead of waiting their turn`);

    // Either its wait ran out (503, retried by its platform) or the flood ahead of it was shed first and it ran.
    const decision = await eventually("the decision", async () => {
      const { body } = await d.api("GET", "/_dispatcher/v1/decisions?requestId=behind-flood", undefined, viewerKey);
      return (body.decisions as Array<{ reason: string; detail: string; status: number }>)[0];
    });
    if (answer[0] === 503) {
      assert.equal(behind.headers.get("retry-after"), "5");
      assert.equal(decision.reason, "script_unavailable");
      assert.match(decision.detail, /the sandbox is busy: the call did not start within 300 ms; retry later/);
    } else assert.deepEqual([...answer, decision.reason], [200, "prod", "not_registered"]);
    const metrics = await (await fetch(`${d.url}/metrics`)).text();
    const counted = /callback_dispatcher_extraction_failures_total\{rule="scripted",reason="script_unavailable"[^}]*\} (\d+)/.exec(metrics);
    assert.ok(Number(counted?.[1]) >= shed, `counted as script_unavailable: ${counted?.[0]}`);

    const after = await send('{"id":"P-3"}', "after-flood");
    assert.deepEqual([after.status, await after.text()], [200, "prod"]);
  });
});
