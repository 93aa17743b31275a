import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { chromiumArgs, chromiumPath } from "@opsplane/testing";
import { type Browser, chromium, type Page } from "playwright-core";
import { asDeveloper, call, developerKey, startRelays } from "./harness.js";

const secretPassword = "S3cret-pass-778";
const cardNumber = "6222020200112233445";

/** The operator's business page: a counter, sensitive inputs, an API call; the widget comes from the relay. */
function operatorPage(relay: string) {
  return `<!doctype html><html><body>
    <h1>Orders</h1>
    <p id="counter">0</p><button id="inc" onclick="counter.textContent = String(Number(counter.textContent) + 1)">Add</button>
    <label>Password <input id="pw" type="password"></label>
    <label>Card <input id="card" name="cardNumber"></label>
    <label>Note <input id="note" class="assist-unmask"></label>
    <button id="load" onclick="fetch('/api/balance').then(r => r.json()).then(b => { console.log('balance loaded', b.balance); balance.textContent = b.balance; })">Load balance</button>
    <span id="balance"></span>
    <script src="${relay}/assist/widget.js"></script>
  </body></html>`;
}

describe("assist in the browser: operator page with the widget and the developer console", {
  skip: existsSync(chromiumPath) ? false : `${chromiumPath} not found`,
}, () => {
  let env: Awaited<ReturnType<typeof startRelays>>;
  let site: Server;
  let browser: Browser;
  let operator: Page;
  let developer: Page;
  let relay: string;
  let sessionId: string;

  before(async () => {
    site = createServer((req, res) => {
      if (req.url === "/api/balance") {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ balance: 1200, cardNumber }));
        return;
      }
      res.writeHead(200, { "content-type": "text/html" }).end(operatorPage(relay));
    });
    await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
    const siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    env = await startRelays(1, { redis: true, origins: [siteUrl] });
    relay = env.relays[0]!.url;
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: chromiumArgs,
    });
    operator = await (await browser.newContext()).newPage();
    developer = await (await browser.newContext()).newPage();
    await operator.goto(siteUrl);
  });
  after(async () => {
    await browser?.close();
    await env?.close();
    site?.close();
  });

  const replayed = (selector: string, prop: "textContent" | "value") =>
    developer.evaluate(
      ([sel, p]) => {
        const el = (window as unknown as { assistConsole: { document?: Document } }).assistConsole.document?.querySelector(sel);
        return el ? String((el as unknown as Record<string, unknown>)[p!]) : undefined;
      },
      [selector, prop],
    );
  const waitReplayed = (selector: string, prop: "textContent" | "value", expected: string) =>
    developer.waitForFunction(
      ([sel, p, want]) => {
        const el = (window as unknown as { assistConsole: { document?: Document } }).assistConsole.document?.querySelector(sel!);
        return el !== null && el !== undefined && String((el as unknown as Record<string, unknown>)[p!]) === want;
      },
      [selector, prop, expected],
    );

  test("the operator asks for assistance, the developer connects with the key and sees the page change live", async () => {
    await operator.click("#opsplane-assist [data-toggle]");
    await operator.click("text=Request remote assistance");
    const keyEl = operator.locator("#opsplane-assist [data-key]");
    await operator.waitForFunction(() =>
      /^\w{4}-\w{4}-\w{4}$/.test(document.querySelector("#opsplane-assist [data-key]")?.textContent ?? ""),
    );
    const key = (await keyEl.textContent())!;

    await developer.goto(`${relay}/console`);
    await developer.fill("#api-key", developerKey);
    await developer.fill("#connection-key", key);
    await developer.click("#connect button");
    await developer.waitForFunction(() => document.querySelector("#status")?.textContent?.startsWith("Watching session"));
    sessionId = (await developer.textContent("#status"))!.replace("Watching session ", "");
    await operator.waitForFunction(
      () => document.querySelector("#opsplane-assist [data-status]")?.textContent === "key:dev is watching this page",
    );

    await waitReplayed("#counter", "textContent", "0");
    await operator.click("#inc");
    await waitReplayed("#counter", "textContent", "1");
  });

  test("console lines and the page's fetch call show in the operator's floating panel and in the developer's panels, bodies masked", async () => {
    await operator.click("#opsplane-assist [data-console]");
    await operator.click("#load");
    await operator.locator("#opsplane-assist-panel .assist-console-line", { hasText: "balance loaded 1200" }).waitFor();
    await operator.locator("#opsplane-assist-panel .assist-network-call", { hasText: "/api/balance → 200" }).waitFor();
    await developer.locator("#console-lines li", { hasText: "balance loaded 1200" }).waitFor();
    const call_ = developer.locator("#network-calls li", { hasText: "GET" });
    await call_.filter({ hasText: "/api/balance → 200" }).waitFor();
    const body = await call_.locator("pre").textContent();
    assert.match(body!, /"balance":1200/);
    assert.ok(!body!.includes(cardNumber), "the card number in the response never reaches the developer");
    // The same floating panel, in sync, inside the developer's live view.
    await developer.waitForFunction(() =>
      (window as unknown as { assistConsole: { document?: Document } }).assistConsole.document
        ?.querySelector("#opsplane-assist-panel")
        ?.textContent?.includes("balance loaded 1200"),
    );
  });

  test("masked inputs never reach the developer; allow-listed ones do", async () => {
    await operator.fill("#pw", secretPassword);
    await operator.fill("#card", cardNumber);
    await operator.fill("#note", "visible note");
    await waitReplayed("#note", "value", "visible note");
    assert.equal(await replayed("#pw", "value"), "*".repeat(secretPassword.length));
    assert.equal(await replayed("#card", "value"), "*".repeat(cardNumber.length));
    const recording = await call(relay, "GET", `/assist/sessions/${sessionId}/recording?limit=5000`, { headers: asDeveloper() });
    const stored = JSON.stringify(recording.body);
    assert.ok(stored.includes("visible note"));
    assert.ok(!stored.includes(secretPassword) && !stored.includes(cardNumber), "the stored recording holds neither secret");
  });

  test("control is refused before consent, works after it, and stops when the operator takes it back", async () => {
    const sendClick = () =>
      developer.evaluate(() => {
        const c = (window as unknown as { assistConsole: { nodeId(s: string): number; sendControl(a: unknown): void } }).assistConsole;
        c.sendControl({ kind: "click", id: c.nodeId("#inc") });
      });
    await sendClick();
    await developer.locator("#notice", { hasText: "Control refused: remote control has not been granted" }).waitFor();
    assert.equal(await operator.textContent("#counter"), "1");

    await developer.click("#request-control");
    const consent = operator.locator("#opsplane-assist [data-consent]");
    await consent.locator("text=key:dev asks to control this page").waitFor();
    await consent.locator("text=Allow control").click();
    await operator.locator("#opsplane-assist-banner", { hasText: "Remote control granted to key:dev" }).waitFor();
    await developer.locator("#control-state", { hasText: "Control granted" }).waitFor();

    const frame = developer.frameLocator("#replay iframe");
    await frame.locator("#inc").click();
    await operator.waitForFunction(() => document.querySelector("#counter")?.textContent === "2");
    await frame.locator("#note").fill("typed by developer");
    await operator.waitForFunction(() => (document.querySelector("#note") as HTMLInputElement).value === "typed by developer");

    await operator.locator("#opsplane-assist-banner button", { hasText: "Take back control" }).click();
    await operator.locator("#opsplane-assist-banner").waitFor({ state: "hidden" });
    await developer.locator("#control-state", { hasText: "Control taken back by the operator" }).waitFor();
    await sendClick();
    await developer.locator("#notice", { hasText: "Control refused" }).waitFor();
    assert.equal(await operator.textContent("#counter"), "2");

    const trail = await call(relay, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() });
    assert.deepEqual(
      (trail.body.controlGrants as Array<{ revokedBy: string }>).map((g) => g.revokedBy),
      ["operator"],
    );
  });

  test("after the operator ends the session, the developer replays its stored recording: the page as it was at the start and at the end", async () => {
    if (!(await operator.locator("#opsplane-assist [data-end]").isVisible())) await operator.click("#opsplane-assist [data-toggle]");
    await operator.click("#opsplane-assist [data-end]");
    await developer.locator("#status", { hasText: "Session ended by the operator" }).waitFor();

    await developer.fill("#replay-session", sessionId);
    await developer.click("#replay-form button");
    type Recording = { document?: Document; totalTime: number; seek(ms: number): void };
    const replayedText = (selector: string, want: string) =>
      developer.waitForFunction(
        ([sel, w]) => {
          const rec = (window as unknown as { assistConsole: { recording: Recording } }).assistConsole.recording;
          return rec.document?.querySelector(sel!)?.textContent === w;
        },
        [selector, want],
      );
    await replayedText("h1", "Orders");
    await replayedText("#counter", "0");
    await developer.evaluate(() => {
      const rec = (window as unknown as { assistConsole: { recording: Recording } }).assistConsole.recording;
      rec.seek(rec.totalTime);
    });
    // The end state: the operator's click and the developer's remote click; the recorded console line in the panel.
    await replayedText("#counter", "2");
    await developer.locator("#console-lines li", { hasText: "balance loaded 1200" }).waitFor();
  });
});
