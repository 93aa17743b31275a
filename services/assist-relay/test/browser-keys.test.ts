import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { type BrowserStage, browserSkip, startBrowserStage } from "./browser-stage.js";
import { asDeveloper, developerKey, handlerKey, otherDeveloperKey } from "./harness.js";

const keyPattern = /^\w{4}-\w{4}-\w{4}$/;

describe("connection keys in the browser: limits per API key, the operator told of a dead key", { skip: browserSkip }, () => {
  let stage: BrowserStage;
  let operator: Page;
  let relay: string;

  before(async () => {
    stage = await startBrowserStage({
      site: (_req, res, relayUrl) =>
        void res
          .writeHead(200, { "content-type": "text/html" })
          .end(`<!doctype html><h1>Orders</h1><script src="${relayUrl}/assist/widget.js"></script>`),
      // Behind the chart's Ingress every developer reaches the relay from one address.
      relayEnv: {
        ASSIST_CLIENT_MAX_FAILURES: "3",
        ASSIST_KEY_MAX_ATTEMPTS: "3",
        ASSIST_KEY_TTL_SECONDS: "10",
        TRUSTED_PROXIES: "127.0.0.1/32",
      },
    });
    ({ relay, operator } = stage);
    await operator.goto(stage.siteUrl);
  });
  after(() => stage?.close());

  const developerConsole = async (apiKey: string) => {
    const page = await stage.newPage();
    await page.goto(`${relay}/console`);
    await page.fill("#api-key", apiKey);
    return page;
  };
  const tryKey = async (page: Page, key: string) => {
    await page.locator("#notice").evaluate((n) => {
      n.textContent = "";
    });
    await page.fill("#connection-key", key);
    await page.click("#connect button");
  };
  /** Clicks, then waits for the widget to show a key other than the one it showed before the click. */
  const keyAfterClick = async (selector: string) => {
    // Read before clicking: read after, it may already be the new key, and no other would ever come.
    const old = (await operator.textContent("#opsplane-assist [data-key]")) ?? "";
    await operator.click(selector);
    await operator.waitForFunction((old) => {
      const key = document.querySelector("#opsplane-assist [data-key]")?.textContent ?? "";
      return /^\w{4}-\w{4}-\w{4}$/.test(key) && key !== old;
    }, old);
    return (await operator.textContent("#opsplane-assist [data-key]"))!;
  };
  const status = (text: string) => operator.locator("#opsplane-assist [data-status]", { hasText: text }).waitFor({ timeout: 20_000 });

  test("one developer's wrong keys lock out their API key, not a colleague at the same address; the operator gets a new key for an expired or blocked one", async () => {
    // A developer mistypes three times: their API key is refused for a while, with when to try again.
    const clumsy = await developerConsole(developerKey);
    for (let i = 0; i < 3; i++) {
      await tryKey(clumsy, `ZZZ${i}-ZZZZ-ZZZZ`);
      await clumsy.locator("#notice", { hasText: "Not connected: wrong connection key; check it with the operator" }).waitFor();
    }
    await tryKey(clumsy, "ZZZ9-ZZZZ-ZZZZ");
    await clumsy
      .locator("#notice", { hasText: /Not connected: too many wrong connection keys from this API key; try again in \d+ s/ })
      .waitFor();

    // The operator's key expires unused: the widget says so and a new key is one click away.
    await operator.click("#opsplane-assist [data-toggle]");
    const expiring = await keyAfterClick("text=Request remote assistance");
    assert.match(expiring, keyPattern);
    await status("This key has expired; get a new key");
    const blocked = await keyAfterClick("#opsplane-assist [data-new-key]");

    // Someone guesses at the new key until it is blocked: the widget says so too.
    for (const c of ["0", "1", "2"]) {
      const guess = `${blocked.slice(0, 5)}${c.repeat(4)}-${c.repeat(4)}`;
      if (guess === blocked) continue;
      await fetch(`${relay}/assist/connect`, {
        method: "POST",
        headers: { "content-type": "application/json", ...asDeveloper(handlerKey), "x-forwarded-for": "198.51.100.20" },
        body: JSON.stringify({ key: guess }),
      });
    }
    await status("This key was blocked after too many wrong tries; get a new key");
    const fresh = await keyAfterClick("#opsplane-assist [data-new-key]");
    await status("Waiting for a developer");

    // A colleague, from the same address as the clumsy developer, connects with it.
    const colleague = await developerConsole(otherDeveloperKey);
    await tryKey(colleague, fresh);
    await colleague.waitForFunction(() => document.querySelector("#status")?.textContent?.startsWith("Watching session"));
    await status("key:dev2 is watching this page");
  });
});
