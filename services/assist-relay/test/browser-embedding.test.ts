import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, test } from "node:test";
import { brotliDecompressSync } from "node:zlib";
import type { Page } from "playwright-core";
import { type BrowserStage, browserSkip, startBrowserStage } from "./browser-stage.js";
import { developerKey } from "./harness.js";

/** A GET whose body is not decompressed, to see what travels. */
const rawGet = (url: string, headers: Record<string, string>) =>
  new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }>((resolve, reject) => {
    request(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    })
      .on("error", reject)
      .end();
  });

describe("embedding: the widget on a page with a strict Content-Security-Policy, served compressed", { skip: browserSkip }, () => {
  let stage: BrowserStage;
  let operator: Page;
  let relay: string;
  const violations: string[] = [];

  before(async () => {
    stage = await startBrowserStage({
      site: (_req, res, relayUrl) => {
        // The strictest policy a bank's page has: no inline style or script at all; the relay allowed for the widget.
        const csp = `default-src 'self'; script-src ${relayUrl}; style-src 'self'; connect-src ${relayUrl} ${relayUrl.replace("http", "ws")}; img-src 'self'`;
        res
          .writeHead(200, { "content-type": "text/html", "content-security-policy": csp })
          .end(`<!doctype html><html><body><h1 id="title">Payments</h1><script src="${relayUrl}/assist/widget.js"></script></body></html>`);
      },
      redis: false,
    });
    ({ relay, operator } = stage);
    operator.on("console", (m) => {
      if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
    });
    await operator.goto(stage.siteUrl);
  });
  after(() => stage?.close());

  test("under style-src 'self' the widget is styled and its hidden sections stay hidden; assistance works", async () => {
    const help = operator.locator("#opsplane-assist [data-toggle]");
    await help.waitFor();
    assert.equal(await help.evaluate((b) => getComputedStyle(b).backgroundColor), "rgb(21, 101, 192)");
    assert.equal(await operator.locator("#opsplane-assist [data-menu]").isVisible(), false, "the menu starts closed");
    assert.equal(await operator.locator("#opsplane-assist-panel").isVisible(), false, "the console panel starts closed");
    await help.click();
    assert.equal(await operator.locator("#opsplane-assist [data-session]").isVisible(), false);
    assert.equal(await operator.locator("#opsplane-assist [data-consent]").isVisible(), false);
    await operator.click("text=Request remote assistance");
    await operator.waitForFunction(() =>
      /^\w{4}-\w{4}-\w{4}$/.test(document.querySelector("#opsplane-assist [data-key]")?.textContent ?? ""),
    );

    const developer = await stage.newPage();
    developer.on("console", (m) => {
      if (/Content Security Policy/i.test(m.text())) violations.push(`console: ${m.text()}`);
    });
    await developer.goto(`${relay}/console`);
    await developer.fill("#api-key", developerKey);
    await developer.fill("#connection-key", (await operator.textContent("#opsplane-assist [data-key]"))!);
    await developer.click("#connect button");
    await developer.waitForFunction(() =>
      (window as unknown as { assistConsole: { document?: Document } }).assistConsole.document?.querySelector("#title"),
    );
    assert.deepEqual(violations, [], "neither the operator's page nor the console broke its policy");
  });

  test("widget.js travels compressed with an ETag and is not sent again while unchanged; /console sends its policy", async () => {
    const plain = await rawGet(`${relay}/assist/widget.js`, {});
    const br = await rawGet(`${relay}/assist/widget.js`, { "accept-encoding": "gzip, deflate, br" });
    assert.equal(br.headers["content-encoding"], "br");
    assert.ok(br.body.length < plain.body.length / 3, `${br.body.length} bytes brotli against ${plain.body.length}`);
    assert.deepEqual(brotliDecompressSync(br.body), plain.body);
    const etag = String(br.headers.etag);
    assert.match(etag, /^"[\w-]+"$/);
    const again = await rawGet(`${relay}/assist/widget.js`, { "accept-encoding": "br", "if-none-match": etag });
    assert.equal(again.status, 304);
    assert.equal(again.body.length, 0);

    const page = await rawGet(`${relay}/console`, {});
    assert.match(String(page.headers["content-security-policy"]), /frame-ancestors 'none'/);
    assert.match(String(page.headers["content-security-policy"]), /script-src 'self'(;|$)/);

    // Pages embed the widget with a cache buster, and the console is linked with the recording to replay:
    // both are the same files (routes elsewhere refuse a query parameter they do not declare).
    const busted = await rawGet(`${relay}/assist/widget.js?v=3`, {});
    assert.equal(busted.status, 200);
    assert.deepEqual(busted.body, plain.body);
    assert.equal((await rawGet(`${relay}/console?replay=00000000-0000-4000-8000-000000000000`, {})).status, 200);
  });
});
