import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import type { Page } from "playwright-core";
import { type BrowserStage, browserSkip, startBrowserStage } from "./browser-stage.js";
import { asDeveloper, call, developerKey, openWidget } from "./harness.js";

/** Two same-origin pages of the operator's application, each with the widget. */
function operatorPage(relay: string, title: string) {
  return `<!doctype html><html><body>
    <h1>${title}</h1>
    <p id="counter">0</p><button id="inc" onclick="counter.textContent = String(Number(counter.textContent) + 1)">Add</button>
    <a id="next" href="/second">Next page</a>
    <script src="${relay}/assist/widget.js"></script>
  </body></html>`;
}

describe("sessions survive drops: a dropped socket, a relay restart, a page load, a console reload", { skip: browserSkip }, () => {
  let stage: BrowserStage;
  let env: BrowserStage["env"];
  let operator: Page;
  let developer: Page;
  let relay: string;
  let sessionId: string;

  before(async () => {
    stage = await startBrowserStage({
      site: (req, res, relayUrl) =>
        void res
          .writeHead(200, { "content-type": "text/html" })
          .end(operatorPage(relayUrl, req.url === "/second" ? "Second page" : "Orders")),
    });
    ({ env, relay, operator } = stage);
    developer = await stage.newPage();
    await operator.goto(stage.siteUrl);
  });
  after(() => stage?.close());

  const inView = (selector: string, text: string) =>
    developer.waitForFunction(
      ([sel, want]) =>
        (window as unknown as { assistConsole: { document?: Document } }).assistConsole.document?.querySelector(sel!)?.textContent === want,
      [selector, text],
      { timeout: 30_000 },
    );
  const operatorStatus = (text: string) =>
    operator.locator("#opsplane-assist [data-status]", { hasText: text }).waitFor({ timeout: 30_000 });
  const watching = () =>
    developer.waitForFunction(() => document.querySelector("#status")?.textContent?.startsWith("Watching session"), undefined, {
      timeout: 30_000,
    });
  /** Cuts every socket of the relay as a broken network would (no close frame: the browsers see 1006). */
  const dropSockets = () => {
    for (const client of env.relays[0]!.ctx.app.websocketServer.clients) client.terminate();
  };
  const click = async (n: number) => {
    for (let i = 0; i < n; i++) await operator.click("#inc");
  };

  test("the developer watches the operator's page", async () => {
    await operator.click("#opsplane-assist [data-toggle]");
    await operator.click("text=Request remote assistance");
    await operator.waitForFunction(() =>
      /^\w{4}-\w{4}-\w{4}$/.test(document.querySelector("#opsplane-assist [data-key]")?.textContent ?? ""),
    );
    await developer.goto(`${relay}/console`);
    await developer.fill("#api-key", developerKey);
    await developer.fill("#connection-key", (await operator.textContent("#opsplane-assist [data-key]"))!);
    await developer.click("#connect button");
    await watching();
    sessionId = (await developer.textContent("#status"))!.replace("Watching session ", "");
    await operatorStatus("key:dev is watching this page");
    await click(1);
    await inView("#counter", "1");
  });

  test("after a dropped connection both sides reconnect to the same session and the operator sees who watches", async () => {
    dropSockets();
    await operatorStatus("Connection lost; reconnecting");
    await operatorStatus("key:dev is watching this page");
    await watching();
    await click(1);
    await inView("#counter", "2");
  });

  test("a relay restart closes the sockets with 1001 (going away) and both sides resume on the relay that answers", async () => {
    // A page's socket, to read the close code the browsers get.
    const probe = await openWidget(relay);
    await env.restart(0);
    assert.equal((await eventually("the probe closed", () => probe.widget.closed)).code, 1001);
    await operatorStatus("key:dev is watching this page");
    await watching();
    await click(1);
    await inView("#counter", "3");
  });

  test("a page load on the same origin resumes the session with a fresh snapshot of the new page", async () => {
    await operator.click("#next");
    await operator.waitForURL(/\/second$/);
    await inView("h1", "Second page");
    await inView("#counter", "0");
    await operatorStatus("key:dev is watching this page");
    await click(2);
    await inView("#counter", "2");
  });

  test("a reload of the developer console re-joins the session it watched", async () => {
    await developer.reload();
    await watching();
    await inView("h1", "Second page");
    await click(1);
    await inView("#counter", "3");
  });

  test("End assistance while the connection is down still ends the session, and the developer is told", async () => {
    dropSockets();
    await operatorStatus("Connection lost; reconnecting");
    if (!(await operator.locator("#opsplane-assist [data-end]").isVisible())) await operator.click("#opsplane-assist [data-toggle]");
    await operator.click("#opsplane-assist [data-end]");
    await developer.locator("#status", { hasText: "Session ended by the operator" }).waitFor({ timeout: 30_000 });
    const session = await call(relay, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() });
    assert.equal(session.body.status, "ended");
    assert.equal(session.body.endedBy, "operator");
    // Nothing to resume on the next page load.
    await operator.reload();
    await eventually("the widget mounted", () => operator.locator("#opsplane-assist [data-toggle]").isVisible());
    assert.equal(await operator.evaluate(() => sessionStorage.getItem("opsplane-assist-session")), null);
  });
});
