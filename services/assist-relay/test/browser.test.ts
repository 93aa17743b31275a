import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { type BrowserStage, browserSkip, startBrowserStage } from "./browser-stage.js";
import { asDeveloper, call, developerKey } from "./harness.js";

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
    <label>Amount <input id="amount" type="number"></label>
    <label>Remarks <textarea id="remarks"></textarea></label>
    <label>Branch <select id="branch"><option>North</option><option>South</option><option>East</option></select></label>
    <label><input id="agree" type="checkbox"> I agree</label>
    <div id="memo" contenteditable="true">memo</div>
    <button id="load" onclick="fetch('/api/balance').then(r => r.json()).then(b => { console.log('balance loaded', b.balance); balance.textContent = b.balance; })">Load balance</button>
    <span id="balance"></span>
    <script src="${relay}/assist/widget.js"></script>
  </body></html>`;
}

describe("assist in the browser: operator page with the widget and the developer console", { skip: browserSkip }, () => {
  let stage: BrowserStage;
  let operator: Page;
  let developer: Page;
  let relay: string;
  let sessionId: string;
  const widgetSocketUrls: string[] = [];

  before(async () => {
    stage = await startBrowserStage({
      site: (req, res, relayUrl) => {
        if (req.url === "/api/balance") {
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ balance: 1200, cardNumber }));
          return;
        }
        res.writeHead(200, { "content-type": "text/html" }).end(operatorPage(relayUrl));
      },
      relayEnv: { ASSIST_NETWORK_BODY_URLS: "/api/**" },
    });
    ({ relay, operator } = stage);
    // The clipboard, for a paste into the live view.
    developer = await stage.newPage({ permissions: ["clipboard-read", "clipboard-write"] });
    operator.on("websocket", (ws) => widgetSocketUrls.push(ws.url()));
    await operator.goto(stage.siteUrl);
  });
  after(() => stage?.close());

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
    const opened = operator.waitForResponse((r) => r.url().endsWith("/assist/sessions") && r.request().method() === "POST");
    await operator.click("text=Request remote assistance");
    const { widgetToken } = (await (await opened).json()) as { widgetToken: string };
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
    // The page's socket was opened with a single-use ticket: the session token is in no URL (access logs keep URLs).
    assert.equal(widgetSocketUrls.length, 1);
    assert.match(widgetSocketUrls[0]!, /\/assist\/ws\/widget\?ticket=/);
    assert.ok(!widgetSocketUrls[0]!.includes(widgetToken));
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

  test("in control, the developer's typing into a masked field edits the operator's real value, never the masked one", async () => {
    await developer.click("#request-control");
    await operator.locator("#opsplane-assist [data-consent] >> text=Allow control").click();
    await developer.locator("#control-state", { hasText: "Control granted" }).waitFor();
    const frame = developer.frameLocator("#replay iframe");
    const card = frame.locator("#card");
    const operatorCard = () => operator.inputValue("#card");
    const cardChanges = async (from: string) => {
      await operator.waitForFunction((before) => (document.querySelector("#card") as HTMLInputElement).value !== before, from);
      return operatorCard();
    };

    // The reproduction: click the field, End, type 9.
    await card.click();
    await card.press("End");
    await card.pressSequentially("9");
    assert.equal(await cardChanges(cardNumber), `${cardNumber}9`);
    // Backspace, a character typed in the middle, a selection typed over, a paste: each where the developer put it.
    await card.press("Backspace");
    assert.equal(await cardChanges(`${cardNumber}9`), cardNumber);
    await card.press("Home");
    for (let i = 0; i < 4; i++) await card.press("ArrowRight");
    await card.pressSequentially("-");
    assert.equal(await cardChanges(cardNumber), `6222-${cardNumber.slice(4)}`);
    await card.press("Shift+ArrowLeft");
    await card.pressSequentially(" ");
    assert.equal(await cardChanges(`6222-${cardNumber.slice(4)}`), `6222 ${cardNumber.slice(4)}`);
    await developer.evaluate(() => navigator.clipboard.writeText("77"));
    await card.press("End");
    await card.press("Control+V");
    assert.equal(await cardChanges(`6222 ${cardNumber.slice(4)}`), `6222 ${cardNumber.slice(4)}77`);

    // Once the developer leaves the field, the view shows the page's state again: masked, never the digits.
    await frame.locator("h1").click();
    await waitReplayed("#card", "value", "*".repeat(cardNumber.length + 3));
  });

  test("in control, an edit made on a stale view of a field is refused visibly and the operator's value stays", async () => {
    const card = developer.frameLocator("#replay iframe").locator("#card");
    await card.click();
    // The operator types while the developer has the field focused (the developer's view of it is now stale).
    await operator.fill("#card", cardNumber);
    await card.press("End");
    await card.pressSequentially("5");
    await developer
      .locator("#notice", { hasText: "Control refused: the field on the operator's page no longer matches your view" })
      .waitFor();
    assert.equal(await operator.inputValue("#card"), cardNumber);
    // The refusal shows the developer the field's real (masked) state again; an edit on it goes through.
    await waitReplayed("#card", "value", "*".repeat(cardNumber.length));
    await card.press("End");
    await card.pressSequentially("5");
    await operator.waitForFunction((want) => (document.querySelector("#card") as HTMLInputElement).value === want, `${cardNumber}5`);

    // A masked number field cannot show its asterisks (the live view shows it empty): typing there is refused, never a new value.
    await operator.fill("#amount", "1200");
    await developer.locator("#notice").evaluate((n) => {
      n.textContent = "";
    });
    const amount = developer.frameLocator("#replay iframe").locator("#amount");
    await amount.click();
    await amount.pressSequentially("5");
    await developer
      .locator("#notice", { hasText: "Control refused: the field on the operator's page no longer matches your view" })
      .waitFor();
    assert.equal(await operator.inputValue("#amount"), "1200");
  });

  test("in control, the developer moves over a masked textarea's lines as over the real ones", async () => {
    const frame = developer.frameLocator("#replay iframe");
    await frame.locator("h1").click();
    await operator.fill("#remarks", "ab\ncd");
    await developer.waitForFunction(
      () =>
        (window as unknown as { assistConsole: { document?: Document } }).assistConsole.document?.querySelector("textarea")?.value
          .length === 5,
    );
    const view = await replayed("#remarks", "value");
    const remarks = frame.locator("#remarks");
    await remarks.click();
    await remarks.press("Control+End");
    await remarks.press("Home");
    await remarks.pressSequentially("Q");
    await operator.waitForFunction(() => (document.querySelector("#remarks") as HTMLTextAreaElement).value !== "ab\ncd");
    assert.equal(await operator.inputValue("#remarks"), "ab\nQcd");
    assert.equal(view, "**\n**", "the developer sees the lines, never the characters");
  });

  test("in control, an edit that cuts a masked emoji in half edits the whole emoji, and the developer's next edit there shows the field again", async () => {
    const frame = developer.frameLocator("#replay iframe");
    const remarks = frame.locator("#remarks");
    const operatorRemarks = () => operator.inputValue("#remarks");
    const remarksChange = async (from: string) => {
      await operator.waitForFunction((before) => (document.querySelector("#remarks") as HTMLTextAreaElement).value !== before, from);
      return operatorRemarks();
    };
    const freshView = async (value: string) => {
      await frame.locator("h1").click();
      await operator.fill("#remarks", value);
      await waitReplayed("#remarks", "value", "*".repeat(value.length));
      await remarks.click();
      await remarks.press("End");
    };

    // The developer sees a😀b as ****: the second Backspace names half of the emoji.
    await freshView("a😀b");
    await remarks.press("Backspace");
    assert.equal(await remarksChange("a😀b"), "a😀");
    await remarks.press("Backspace");
    assert.equal(await remarksChange("a😀"), "a");

    // A character typed between the emoji's halves lands after it; the view is a unit off, so the next edit is refused.
    await freshView("a😀b");
    await remarks.press("ArrowLeft");
    await remarks.press("ArrowLeft");
    await remarks.pressSequentially("X");
    assert.equal(await remarksChange("a😀b"), "a😀Xb");
    await remarks.pressSequentially("Y");
    await developer.locator("#notice", { hasText: "Control refused: your view of the field was a character off" }).waitFor();
    assert.equal(await operatorRemarks(), "a😀Xb");
    // The refusal shows the field again; an edit on it goes through.
    await waitReplayed("#remarks", "value", "*****");
    await remarks.press("End");
    await remarks.pressSequentially("Z");
    assert.equal(await remarksChange("a😀Xb"), "a😀XbZ");
  });

  test("in control, the developer chooses an option and ticks a box on the operator's page; rich-text areas and passwords refuse typing visibly", async () => {
    const frame = developer.frameLocator("#replay iframe");
    await frame.locator("#branch").selectOption("South");
    await operator.waitForFunction(() => (document.querySelector("#branch") as HTMLSelectElement).value === "South");
    await frame.locator("#agree").click();
    await operator.waitForFunction(() => (document.querySelector("#agree") as HTMLInputElement).checked);

    await frame.locator("#memo").click();
    await frame.locator("#memo").pressSequentially("x");
    await developer.locator("#notice", { hasText: "Not sent: typing into rich-text (contenteditable) areas is not supported" }).waitFor();
    assert.equal(await operator.textContent("#memo"), "memo");

    // The operator sees masked fields' real values change as the developer types, but not a password: typing there is refused.
    await frame.locator("#pw").click();
    await frame.locator("#pw").pressSequentially("x");
    await developer.locator("#notice", { hasText: "Control refused: password fields are typed by the operator only" }).waitFor();
    assert.equal(await operator.inputValue("#pw"), secretPassword);

    await developer.click("#release-control");
    await operator.locator("#opsplane-assist-banner").waitFor({ state: "hidden" });
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
