import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { type BrowserStage, browserSkip, startBrowserStage } from "./browser-stage.js";
import { asDeveloper, call, developerKey, handlerKey, otherDeveloperKey } from "./harness.js";

function operatorPage(relay: string) {
  return `<!doctype html><html><body>
    <h1 id="title">Transfer</h1>
    <form id="search" onsubmit="event.preventDefault(); result.textContent = 'searched ' + q.value">
      <input id="q" class="assist-unmask"> <input id="after-q" class="assist-unmask">
    </form>
    <p id="result"></p><p id="arrows">0</p>
    <script>
      document.addEventListener("keydown", (e) => {
        if (e.key === "ArrowDown") arrows.textContent = String(Number(arrows.textContent) + 1);
        if (e.key === "Escape") result.textContent = "escaped";
      });
    </script>
    <script src="${relay}/assist/widget.js"></script>
  </body></html>`;
}

describe("control and presence with two watching developers", { skip: browserSkip }, () => {
  let stage: BrowserStage;
  let env: BrowserStage["env"];
  let operator: Page;
  let dev: Page;
  let dev2: Page;
  let relay: string;
  let sessionId: string;
  let key: string;

  before(async () => {
    stage = await startBrowserStage({
      site: (_req, res, relayUrl) => void res.writeHead(200, { "content-type": "text/html" }).end(operatorPage(relayUrl)),
      relays: 2,
    });
    ({ env, relay, operator } = stage);
    dev = await stage.newPage();
    dev2 = await stage.newPage();
    await operator.goto(stage.siteUrl);
  });
  after(() => stage?.close());

  const join = async (page: Page, relayUrl: string, apiKey: string) => {
    await page.goto(`${relayUrl}/console`);
    await page.fill("#api-key", apiKey);
    await page.fill("#connection-key", key);
    await page.click("#connect button");
    await page.waitForFunction(() => document.querySelector("#status")?.textContent?.startsWith("Watching session"));
    await page.waitForFunction(() =>
      (window as unknown as { assistConsole: { document?: Document } }).assistConsole.document?.querySelector("#title"),
    );
  };
  const operatorStatus = (text: string) => operator.locator("#opsplane-assist [data-status]", { hasText: text }).waitFor();
  const allow = async (who: string) => {
    const consent = operator.locator("#opsplane-assist [data-consent]");
    await consent.locator(`text=${who} asks to control this page`).waitFor();
    await consent.locator("text=Allow control").click();
  };

  test("two developers watch the same session with the same key, each on another replica, and the operator sees both", async () => {
    await operator.click("#opsplane-assist [data-toggle]");
    await operator.click("text=Request remote assistance");
    await operator.waitForFunction(() =>
      /^\w{4}-\w{4}-\w{4}$/.test(document.querySelector("#opsplane-assist [data-key]")?.textContent ?? ""),
    );
    key = (await operator.textContent("#opsplane-assist [data-key]"))!;
    await join(dev, env.relays[0]!.url, developerKey);
    await join(dev2, env.relays[1]!.url, otherDeveloperKey);
    sessionId = (await dev.textContent("#status"))!.replace("Watching session ", "");
    await operatorStatus("key:dev and key:dev2 are watching this page");
  });

  test("the operator sees where a developer points", async () => {
    // Watching, not in control: the rebuilt page takes no clicks, but the pointer still shows.
    await dev.frameLocator("#replay iframe").locator("#title").hover({ force: true });
    const pointer = operator.locator("#opsplane-assist-pointer");
    await pointer.locator("text=key:dev").waitFor();
    // The arrow's tip is on the same element of the operator's page.
    const title = (await operator.locator("#title").boundingBox())!;
    await operator.waitForFunction((box) => {
      const m = /translate\((-?\d+)px, (-?\d+)px\)/.exec(
        (document.querySelector("#opsplane-assist-pointer") as HTMLElement).style.transform,
      );
      return (
        !!m && Number(m[1]) >= box.x && Number(m[1]) <= box.x + box.width && Number(m[2]) >= box.y && Number(m[2]) <= box.y + box.height
      );
    }, title);
  });

  test("one developer controls at a time: the other is refused while the first holds control", async () => {
    await dev.click("#request-control");
    await allow("key:dev");
    await dev.locator("#control-state", { hasText: "Control granted" }).waitFor();
    await dev2.locator("#control-state", { hasText: "key:dev has control" }).waitFor();
    await dev2.click("#request-control");
    await dev2.locator("#notice", { hasText: "Control refused: key:dev has control; ask them to release it" }).waitFor();
    assert.equal(await operator.locator("#opsplane-assist [data-consent]").isVisible(), false, "the operator is not asked");
  });

  test("in control, Enter submits the operator's form, Tab moves the focus, arrows and Escape reach the page's handlers", async () => {
    const q = dev.frameLocator("#replay iframe").locator("#q");
    await q.click();
    await q.pressSequentially("abc");
    await operator.waitForFunction(() => (document.querySelector("#q") as HTMLInputElement).value === "abc");
    await q.press("Enter");
    await operator.locator("#result", { hasText: "searched abc" }).waitFor();
    await q.press("ArrowDown");
    await q.press("ArrowDown");
    await operator.locator("#arrows", { hasText: "2" }).waitFor();
    await q.press("Tab");
    await operator.waitForFunction(() => document.activeElement?.id === "after-q");
    await dev.frameLocator("#replay iframe").locator("#after-q").press("Escape");
    await operator.locator("#result", { hasText: "escaped" }).waitFor();
  });

  test("control ends when the operator's tab is hidden, and the developer is told why", async () => {
    await operator.evaluate(() => {
      Object.defineProperty(document, "visibilityState", { value: "hidden", configurable: true });
      document.dispatchEvent(new Event("visibilitychange"));
    });
    await operator.locator("#opsplane-assist-banner").waitFor({ state: "hidden" });
    await dev.locator("#notice", { hasText: "Control ended: the operator's tab was hidden" }).waitFor();
    await dev.locator("#control-state", { hasText: "Control taken back by the operator" }).waitFor();
    await operator.evaluate(() => {
      delete (document as unknown as { visibilityState?: string }).visibilityState;
    });
    // Now the other developer may ask, and gets control.
    await dev2.click("#request-control");
    await allow("key:dev2");
    await dev2.locator("#control-state", { hasText: "Control granted" }).waitFor();
    await operator.locator("#opsplane-assist-banner", { hasText: "Remote control granted to key:dev2" }).waitFor();
  });

  test("each developer is authenticated and audited, and re-joins with the key while it is valid", async () => {
    const again = await call(relay, "POST", "/assist/connect", { body: { key }, headers: asDeveloper(developerKey) });
    assert.equal(again.status, 200);
    assert.equal(again.body.sessionId, sessionId);
    const trail = await call(relay, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() });
    const watchers = new Set((trail.body.watches as Array<{ developer: string }>).map((w) => w.developer));
    assert.deepEqual([...watchers].sort(), ["key:dev", "key:dev2"]);
    const audit = await call(relay, "GET", `/_audit/v1/entries?action=session.connect&target=session/${sessionId}`, {
      headers: asDeveloper(handlerKey),
    });
    const actors = (audit.body.entries as Array<{ actor: string; outcome: string }>).map((e) => `${e.actor} ${e.outcome}`);
    assert.ok(actors.some((a) => /dev2/.test(a)) && actors.some((a) => /\bdev\b|key:dev /.test(a)), actors.join("; "));
  });
});
