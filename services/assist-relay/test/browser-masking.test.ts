import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { assistEnv } from "../src/config.js";
import { type BrowserStage, browserSkip, startBrowserStage } from "./browser-stage.js";
import { asDeveloper, call, developerKey } from "./harness.js";

// The sensitive values: each must be masked wherever it leaves the page.
const card = "6222020200112233446"; // UnionPay, Luhn-valid
const visa = "4111111111111111";
const residentId = "11010519491231002X";
const mobile = "13812345678";
const email = "zhang.san@example.com";
const accessToken = "tok-7f3a9c51";
const otp = "918273";
const fullName = "Zhang Sanfeng";
const customGrade = "GRADE-GOLD-77"; // under a key only the relay's configuration names
const pageCredential = "Bearer page-credential-4471";
const riskScore = "risk-score-93"; // the page's own hook rewrites it
const balance = "98,765.43"; // inside [data-assist-mask]
// Attributes inside [data-assist-mask]: a hover title, an accessible name, a data attribute; set at load and changed during the session.
const holder = "Ouyang Xiuwen";
const dueAmount = "4,321.09";
const addedAmount = "7,654.21";
const notCaptured = "uncaptured-body-5521"; // a call whose path is not in ASSIST_NETWORK_BODY_URLS
// A millisecond timestamp is 13 digits (and this one passes Luhn): it is not a card number.
const timestamp = 1700000000004;
const secrets = [
  card,
  visa,
  residentId,
  mobile,
  email,
  accessToken,
  otp,
  fullName,
  customGrade,
  pageCredential,
  riskScore,
  balance,
  holder,
  dueAmount,
  addedAmount,
  notCaptured,
];

function operatorPage(relay: string) {
  return `<!doctype html><html><body>
    <h1>Customer</h1>
    <p id="card-text">Card ${card}</p>
    <p id="id-text">ID ${residentId}</p>
    <p id="contact">Call ${mobile} or write to ${email}</p>
    <p id="when">Opened at ${timestamp}</p>
    <p id="balance" class="amount" data-assist-mask title="Balance ${balance}" data-holder="${holder}">Balance ${balance}
      <span aria-label="Holder ${holder}">holder</span></p>
    <a id="link" href="/statement?access_token=${accessToken}&amp;idNo=${residentId}">statement</a>
    <label>ID <input id="sfzh" name="sfzh" class="assist-unmask"></label>
    <label>Account <input id="acct" name="acctNo" class="assist-unmask"></label>
    <label>Note <input id="note" class="assist-unmask"></label>
    <select id="currency" class="assist-unmask"><option>CNY</option><option>USD</option><option>EUR</option></select>
    <select id="branch"><option>North</option><option>South</option></select>
    <div id="rerender"></div>
    <script>
      window.opsplaneAssist = {
        sanitiseNetwork: (e) => (e.url.includes("/api/heartbeat") ? null : e),
        sanitiseConsole: (e) => ({ ...e, text: e.text.replace(/risk-score-\\d+/g, "risk-score-hidden") }),
      };
      window.activity = async (label) => {
        console.log(label, { mobile: "${mobile}", otp: "${otp}", name: "${fullName}" });
        console.info(label + " paying with " + "${card}" + " for " + "${residentId}" + " at " + ${timestamp});
        console.warn("${riskScore}");
        await fetch("/api/profile?access_token=${accessToken}&idNo=${residentId}", { headers: { authorization: "${pageCredential}" } });
        await fetch("/api/statement");
        await fetch("/api/heartbeat");
      };
    </script>
    <script src="${relay}/assist/widget.js"></script>
  </body></html>`;
}

const profile = JSON.stringify({
  name: fullName,
  mobile,
  email,
  otp,
  sfzh: residentId,
  acctNo: card,
  custGrade: customGrade,
  createdAt: timestamp,
  balance: 1200,
  note: `paid with ${visa}, mail ${email}`,
});

describe("masking: one sanitiser, configured at the relay, on live frames, history and the stored recording", { skip: browserSkip }, () => {
  let stage: BrowserStage;
  let operator: Page;
  let developer: Page;
  let relay: string;
  let sessionId: string;
  // What the widget itself sends: masked in the operator's browser, not only by the relay.
  const sentByPage: string[] = [];

  before(async () => {
    stage = await startBrowserStage({
      site: (req, res, relayUrl) => {
        if (req.url?.startsWith("/api/profile")) return void res.writeHead(200, { "content-type": "application/json" }).end(profile);
        if (req.url === "/api/statement") return void res.writeHead(200, { "content-type": "text/plain" }).end(notCaptured);
        if (req.url === "/api/heartbeat") return void res.writeHead(204).end();
        res.writeHead(200, { "content-type": "text/html" }).end(operatorPage(relayUrl));
      },
      redis: false,
      relayEnv: {
        ASSIST_NETWORK_BODY_URLS: "/api/profile",
        ASSIST_MASKED_KEYS: `${assistEnv.ASSIST_MASKED_KEYS.parse(undefined)}|custGrade`,
      },
    });
    ({ relay, operator } = stage);
    developer = await stage.newPage();
    operator.on("websocket", (ws) => ws.on("framesent", (f) => sentByPage.push(String(f.payload))));
    const policy = operator.waitForResponse((r) => r.url().endsWith("/assist/policy"));
    await operator.goto(`${stage.siteUrl}/customer?access_token=${accessToken}&idNo=${residentId}`);
    await policy;
  });
  after(() => stage?.close());

  const liveView = () =>
    developer.evaluate(() => {
      const doc = (window as unknown as { assistConsole: { document?: Document } }).assistConsole.document;
      const values = [...(doc?.querySelectorAll("input") ?? [])].map((i) => `${i.id}=${i.value}`);
      return `${doc?.documentElement.outerHTML ?? ""}\n${values.join("\n")}`;
    });
  const panels = () =>
    developer.evaluate(
      () => `${document.querySelector("#console-lines")?.textContent}\n${document.querySelector("#network-calls")?.innerHTML}`,
    );
  const selectInView = (selector: string) =>
    developer.evaluate((sel) => {
      const s = (window as unknown as { assistConsole: { document?: Document } }).assistConsole.document?.querySelector(sel) as
        | HTMLSelectElement
        | null
        | undefined;
      return s ? { value: s.value, index: s.selectedIndex } : undefined;
    }, selector);
  const leaks = (text: string) => secrets.filter((s) => text.includes(s));

  test("what the page did before the session (history) and during it reaches the developer masked, the timestamp intact", async () => {
    // Before the session: console lines and calls, typed values, chosen options.
    await operator.evaluate(() => (window as unknown as { activity(l: string): Promise<void> }).activity("before"));
    await operator.fill("#sfzh", residentId);
    await operator.fill("#acct", card);
    await operator.fill("#note", `call ${mobile}`);
    await operator.selectOption("#currency", "USD");
    await operator.selectOption("#branch", "South");

    await operator.click("#opsplane-assist [data-toggle]");
    await operator.click("text=Request remote assistance");
    await operator.waitForFunction(() =>
      /^\w{4}-\w{4}-\w{4}$/.test(document.querySelector("#opsplane-assist [data-key]")?.textContent ?? ""),
    );
    const key = (await operator.textContent("#opsplane-assist [data-key]"))!;
    await developer.goto(`${relay}/console`);
    await developer.fill("#api-key", developerKey);
    await developer.fill("#connection-key", key);
    await developer.click("#connect button");
    await developer.waitForFunction(() => document.querySelector("#status")?.textContent?.startsWith("Watching session"));
    sessionId = (await developer.textContent("#status"))!.replace("Watching session ", "");
    await developer.waitForFunction(() =>
      (window as unknown as { assistConsole: { document?: Document } }).assistConsole.document?.querySelector("#when"),
    );

    // During the session: the same again, and the page re-renders a list.
    await operator.evaluate(() => (window as unknown as { activity(l: string): Promise<void> }).activity("during"));
    await operator.evaluate(() => {
      document.querySelector("#rerender")!.innerHTML =
        '<select id="currency2" class="assist-unmask"><option>CNY</option><option>USD</option></select>';
      (document.querySelector("#currency2") as HTMLSelectElement).value = "USD";
    });
    // The masked paragraph's title changes, and an element with a title is added inside it.
    await operator.evaluate(
      ([due, added]) => {
        const p = document.querySelector("#balance")!;
        p.setAttribute("title", `Due ${due}`);
        p.insertAdjacentHTML("beforeend", `<abbr id="added" title="Added ${added}">+</abbr>`);
      },
      [dueAmount, addedAmount],
    );
    // The masked list re-rendered with the operator's choice marked, as server-rendered markup does.
    await operator.evaluate(() => {
      const branch = document.querySelector("#branch") as HTMLSelectElement;
      branch.innerHTML = "<option>North</option><option selected>South</option><option>East</option>";
      branch.options[1]!.setAttribute("selected", "selected");
    });
    await developer.locator("#console-lines li", { hasText: "during paying with" }).waitFor();
    await developer.locator("#network-calls li", { hasText: "/api/statement" }).nth(1).waitFor();
    await developer.waitForFunction(() =>
      (window as unknown as { assistConsole: { document?: Document } }).assistConsole.document?.querySelector("#currency2"),
    );
    await developer.waitForFunction(
      () =>
        (window as unknown as { assistConsole: { document?: Document } }).assistConsole.document?.querySelectorAll("#branch option")
          .length === 3,
    );
    await developer.waitForFunction(() =>
      (window as unknown as { assistConsole: { document?: Document } }).assistConsole.document?.querySelector("#balance #added"),
    );

    const seen = `${await liveView()}\n${await panels()}`;
    assert.deepEqual(leaks(seen), [], "no sensitive value reaches the developer");
    const sent = sentByPage.join("\n");
    assert.ok(sent.includes('"title":"***** ********"'), "the added element's title left the page masked");
    assert.deepEqual(
      [balance, holder, dueAmount, addedAmount].filter((s) => sent.includes(s)),
      [],
      "masked elements' text and attributes leave the page masked",
    );
    assert.match(seen, /Opened at 1700000000004/, "a millisecond timestamp in the page text is not a card number");
    assert.match(seen, /before paying with \*{15}3446 for \*{14}002X at 1700000000004/, "history: console line masked");
    assert.match(seen, /during paying with \*{15}3446/, "live: console line masked");
    assert.match(seen, /138\*\*\*\*5678/, "mobile numbers keep their first three and last four digits");
    assert.match(seen, /access_token=\*\*\*/, "query parameters masked in links and call URLs");
    assert.match(seen, /risk-score-hidden/, "the page's own sanitiser ran");
    assert.ok(!seen.includes("/api/heartbeat"), "the page's sanitiser left a call out");
    assert.match(seen, /acct=\*{19}/, "an allow-listed field named acctNo stays masked");
    assert.match(seen, /sfzh=\*{18}/, "an allow-listed field named sfzh stays masked");
    assert.match(seen, /note=call 138\*\*\*\*5678/, "an allow-listed field shows its value, sanitised");
    assert.match(
      seen,
      /<p id="balance" class="amount"[^>]* title="\*\*\* \*{8}"/,
      "a masked element keeps its layout attributes, not its title",
    );

    // Lists: an allow-listed one shows the operator's option after a full snapshot and after a re-render; a masked one shows none, never a wrong one.
    assert.deepEqual(await selectInView("#currency"), { value: "USD", index: 1 });
    assert.deepEqual(await selectInView("#currency2"), { value: "USD", index: 1 });
    assert.deepEqual(await selectInView("#branch"), { value: "", index: -1 }, "the masked list shows no option, also re-rendered");
  });

  test("a problem report's page snapshot is the stream's own snapshot, masked alike", async () => {
    await operator.click("#opsplane-assist [data-report]");
    const form = operator.locator("#opsplane-assist-report");
    await form.locator("[name=reporter]").fill("Li Na");
    await form.locator("[name=description]").fill("the balance is wrong");
    await form.locator("button[type=submit]").click();
    await form.locator("[data-result]", { hasText: "Sent. Report" }).waitFor();
    const reportId = (await form.locator("[data-result]").getAttribute("data-report-id"))!;
    const report = await call(relay, "GET", `/assist/reports/${reportId}`, { headers: asDeveloper() });
    const attachment = (report.body.attachments as Array<{ id: number; name: string }>).find((a) => a.name === "page.json")!;
    const download = await fetch(`${relay}/assist/reports/${reportId}/attachments/${attachment.id}`, { headers: asDeveloper() });
    const snapshot = await download.text();
    assert.deepEqual(
      (JSON.parse(snapshot) as Array<{ type: number }>).map((e) => e.type),
      [4, 2],
      "rrweb's Meta and full snapshot events",
    );
    assert.match(snapshot, /Opened at 1700000000004/);
    assert.deepEqual(leaks(snapshot), []);
  });

  test("the stored recording holds the same masked stream: bodies only where enabled, valid JSON, no header", async () => {
    const recording = await call(relay, "GET", `/assist/sessions/${sessionId}/recording?limit=5000`, { headers: asDeveloper() });
    assert.equal(recording.status, 200);
    const stored = JSON.stringify(recording.body);
    assert.deepEqual(leaks(stored), [], "no sensitive value is stored");
    // The masked list's choice is told neither by the length of its masked value ("South": five `*`) nor by an option's `selected`.
    assert.ok(!stored.includes('"*****"'), "a masked list's value is a fixed placeholder");
    assert.ok(!stored.includes('"selected"'), "no option of the masked list is marked chosen");
    type Call = { url: string; status: number; responseBody?: string };
    const calls = (recording.body.events as Array<{ kind: string; payload: { entries: Call[] } }>)
      .filter((e) => e.kind === "network")
      .flatMap((e) => e.payload.entries);
    const profiles = calls.filter((c) => c.url.includes("/api/profile"));
    assert.equal(profiles.length, 2, "the call before the session (history) and the one during it");
    for (const p of profiles) {
      assert.match(p.url, /access_token=\*\*\*&idNo=\*\*\*/);
      const body = JSON.parse(p.responseBody!) as Record<string, unknown>;
      assert.equal(body.createdAt, timestamp, "the timestamp stays a number and the JSON stays valid");
      assert.equal(body.balance, 1200);
      for (const k of ["name", "mobile", "email", "otp", "sfzh", "acctNo", "custGrade"]) assert.equal(body[k], "***", k);
      assert.equal(body.note, "paid with ************1111, mail z********@example.com");
    }
    const statements = calls.filter((c) => c.url.endsWith("/api/statement"));
    assert.equal(statements.length, 2);
    assert.ok(
      statements.every((s) => s.status === 200 && s.responseBody === undefined),
      "bodies of other calls are not captured",
    );
    // The session's page URL, as stored and audited.
    const session = await call(relay, "GET", `/assist/sessions/${sessionId}`, { headers: asDeveloper() });
    assert.match(String(session.body.pageUrl), /\/customer\?access_token=.+&idNo=\*\*\*$/);
    assert.deepEqual(leaks(String(session.body.pageUrl)), []);
  });
});
