import assert from "node:assert/strict";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { startDispatcher, viewerKey } from "./helpers/dispatcher.js";

type Decision = { status: number; error: string | null; targetEnv: string };

// A caller that leaves is not the dispatcher failing, and the record must say what the caller got. Before:
// a caller closing its connection mid-body was logged at error and counted as a 500 (anyone could raise the
// 5xx rate at will); one leaving while the environment was answering was recorded as answered 200.
describe("a caller that leaves before its callback is answered", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  let prod: http.Server;
  /** Bodies production read in full. */
  let received = 0;
  /** Paths production began to receive. */
  const begun = new Set<string>();

  before(async () => {
    prod = http.createServer((req, res) => {
      begun.add(req.url ?? "");
      // /cut fails mid-body: production's side gives up on the callback streamed to it.
      if (req.url?.startsWith("/cut")) return void req.once("data", () => req.socket.destroy());
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        received++;
        // /slow answers after the caller below has given up.
        setTimeout(() => res.end("prod"), req.url?.startsWith("/slow") ? 600 : 0);
      });
    });
    await new Promise<void>((resolve) => prod.listen(0, "127.0.0.1", resolve));
    d = await startDispatcher({ CALLBACK_EXTRACT_LIMIT_BYTES: "1024", REQUEST_TIMEOUT_MS: "1000" });
    const baseUrl = `http://127.0.0.1:${(prod.address() as AddressInfo).port}`;
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl, production: true })).status, 200);
  });

  after(async () => {
    await d?.close();
    prod?.closeAllConnections();
    await new Promise((resolve) => prod?.close(resolve));
  });

  const decisionOf = (requestId: string) =>
    eventually(`the decision of ${requestId}`, async () => {
      const { body } = await d.api("GET", `/_dispatcher/v1/decisions?requestId=${requestId}`, undefined, viewerKey);
      return (body.decisions as Decision[])[0];
    });

  const callbackRequests = async () => {
    const text = await (await fetch(`${d.url}/metrics`)).text();
    const counts: Record<string, number> = {};
    for (const m of text.matchAll(/^http_requests_total\{method="POST",route="\/\*",status_code="(\d+)"[^}]*\} (\d+)$/gm))
      counts[m[1]!] = Number(m[2]);
    return counts;
  };

  /**
   * Sends the head of a POST and `sent` of its `length` body bytes, waits until `ready` (the bytes are on their way
   * at least), then closes the connection: the dispatcher reads what was sent before it sees the close.
   */
  const leaveMidBody = async (path: string, requestId: string, length: number, sent: number, ready: () => boolean = () => true) => {
    const socket = net.connect(Number(new URL(d.url).port), "127.0.0.1");
    const closed = new Promise((resolve) => socket.on("close", resolve));
    await new Promise<void>((resolve) =>
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: x\r\nX-Request-Id: ${requestId}\r\nContent-Length: ${length}\r\n\r\n${"x".repeat(sent)}`,
        () => resolve(),
      ),
    );
    await eventually(`${requestId} to be under way`, ready);
    socket.destroy();
    await closed;
  };

  test("mid-body: counted as 499 (client closed request), not as a 500", async () => {
    const before = await callbackRequests();
    await leaveMidBody("/notify/pay", "left-mid-body", 100, 70);
    await eventually(
      "the abandoned callback counted",
      async () => ((await callbackRequests())["499"] ?? 0) > (before["499"] ?? 0) || undefined,
    );
    assert.equal((await callbackRequests())["500"] ?? 0, before["500"] ?? 0, "no 500 counted");
  });

  test("timed out mid-body (REQUEST_TIMEOUT_MS): answered 408 and counted as 408, not as its caller leaving", async () => {
    const before = await callbackRequests();
    const answer = await new Promise<string>((resolve) => {
      const socket = net.connect(Number(new URL(d.url).port), "127.0.0.1", () =>
        socket.write("POST /notify/pay HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nxx"),
      );
      let text = "";
      socket.on("data", (c) => {
        text += c;
      });
      socket.on("error", () => {});
      socket.on("close", () => resolve(text));
    });
    assert.match(answer, /^HTTP\/1\.1 408 /);
    await eventually(
      "the timed-out callback counted",
      async () => ((await callbackRequests())["408"] ?? 0) > (before["408"] ?? 0) || undefined,
    );
    const after = await callbackRequests();
    assert.equal(after["499"] ?? 0, before["499"] ?? 0, "not counted as its caller leaving");
    assert.equal(after["500"] ?? 0, before["500"] ?? 0, "no 500 counted");
  });

  test("mid-body of a callback streamed to its environment: the decision says the caller stopped, 499", async () => {
    // Over CALLBACK_EXTRACT_LIMIT_BYTES: forwarded as it comes, so production's request was under way.
    await leaveMidBody("/notify/big", "left-mid-stream", 5_000, 2_000, () => begun.has("/notify/big"));
    const decision = await decisionOf("left-mid-stream");
    assert.equal(decision.status, 499);
    assert.match(String(decision.error), /^the caller's request ended before it was received whole/);
  });

  test("the environment failing mid-body of a streamed callback is its failure, 502, not the caller's leaving", async () => {
    // The caller is still there, its body half sent, when production drops the connection.
    const socket = net.connect(Number(new URL(d.url).port), "127.0.0.1", () =>
      socket.write(
        `POST /cut/pay HTTP/1.1\r\nHost: x\r\nX-Request-Id: env-cut-mid-stream\r\nContent-Length: 5000\r\n\r\n${"x".repeat(2_000)}`,
      ),
    );
    const answer = await new Promise<string>((resolve) => {
      let text = "";
      socket.on("data", (c) => {
        text += c;
        if (text.includes("\r\n\r\n")) resolve(text);
      });
    });
    socket.destroy();
    assert.match(answer, /^HTTP\/1\.1 502 /);
    const decision = await decisionOf("env-cut-mid-stream");
    assert.equal(decision.status, 502);
    assert.doesNotMatch(String(decision.error), /caller/);
  });

  // A FIN alone may be a client that half-closed and still reads (it gets the answer); which, the decision cannot know.
  test("while the environment answers: the decision keeps its status and says the answer may not have reached it", async () => {
    // The caller gives up once production has its callback (production answers 600 ms after receiving it).
    const caller = new AbortController();
    const gaveUp = fetch(`${d.url}/slow/pay`, {
      method: "POST",
      headers: { "x-request-id": "left-waiting" },
      body: "out_trade_no=1",
      signal: caller.signal,
    }).catch((err: Error) => err);
    await eventually("production to have the callback", () => begun.has("/slow/pay"));
    caller.abort();
    assert.equal(((await gaveUp) as Error).name, "AbortError");
    const decision = await decisionOf("left-waiting");
    assert.deepEqual(
      [decision.status, decision.targetEnv, decision.error],
      [
        200,
        "prod",
        "the caller closed its connection (at least its sending side) before the environment answered: the answer may not have reached it",
      ],
    );
    assert.ok(received >= 1);
  });
});
