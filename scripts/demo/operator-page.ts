// The demo's operator page: a bank's service-desk page that embeds assist-relay's widget (its
// origin is in ASSIST_ALLOWED_ORIGINS), with a customer lookup calling a small JSON API so the
// developer has console lines and API calls to watch. It also serves the sample artifact that
// errcode-scanner may fetch (ERRCODE_ARTIFACT_URL_PREFIXES is this server's /artifacts/).
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import path from "node:path";

const [port, relayUrl, artifactFile, host = "127.0.0.1"] = process.argv.slice(2);
if (!port || !relayUrl || !artifactFile) {
  console.error("usage: operator-page <port> <assist-relay URL> <artifact file> [host]");
  process.exit(2);
}
const artifact = { path: `/artifacts/${path.basename(artifactFile)}`, bytes: readFileSync(artifactFile) };

const customers: Record<string, { name: string; account: string; cardNumber: string; balance: number; status: string }> = {
  C1001: { name: "Li Wei", account: "6222 **** **** 2233", cardNumber: "6222020200112233445", balance: 12_480.5, status: "active" },
  C1002: { name: "Zhang Min", account: "6217 **** **** 8810", cardNumber: "6217000010098810", balance: 310.0, status: "frozen" },
};

const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Service desk · opsplane demo</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; margin: 0; background: #f4f6f8; color: #1d2733; }
  header { background: #0b4f6c; color: #fff; padding: 12px 24px; }
  header small { opacity: .8; margin-left: 8px; }
  main { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; padding: 16px 24px; max-width: 1000px; }
  section { background: #fff; border-radius: 6px; padding: 12px 16px; box-shadow: 0 1px 2px #0002; }
  h2 { font-size: 16px; margin: 4px 0 12px; }
  label { display: block; margin: 8px 0; }
  input, select { font: inherit; padding: 4px 6px; width: 220px; }
  button { font: inherit; padding: 4px 12px; }
  dl { display: grid; grid-template-columns: 110px 1fr; margin: 8px 0; }
  dt { color: #5b6b7b; }
  .howto { grid-column: 1 / -1; background: #fffbe6; }
  code { background: #0001; padding: 0 3px; }
</style>
</head>
<body>
<header><strong>Acme Bank · Service desk</strong><small>the operator's page of the opsplane demo</small></header>
<main>
  <section class="howto">
    <h2>Remote assistance, step by step</h2>
    <ol>
      <li>Click <strong>Help</strong> at the bottom right, then <em>Request remote assistance</em>: the widget shows a connection key.</li>
      <li>The developer opens <a href="${relayUrl}/console" target="_blank">${relayUrl}/console</a>, signs in with the viewer API key
        that <code>make run</code> printed, and enters that key: they see this page live, with its console and API calls.</li>
      <li>Look up a customer, type in the form: the developer sees it happen, input values masked
        (the note field is allow-listed with <code>class="assist-unmask"</code>).</li>
    </ol>
  </section>
  <section>
    <h2>Customer lookup</h2>
    <label>Customer id <input id="customer-id" class="assist-unmask" value="C1001"></label>
    <button id="lookup">Look up</button>
    <dl id="customer"></dl>
  </section>
  <section>
    <h2>Transfer</h2>
    <label>Amount <input id="amount" type="number" value="100"></label>
    <label>Card number <input id="card" name="cardNumber" autocomplete="cc-number"></label>
    <label>Branch <select id="branch"><option>North</option><option>South</option><option>East</option></select></label>
    <label>Note <input id="note" class="assist-unmask" placeholder="seen unmasked by the developer"></label>
    <label>Password <input id="password" type="password"></label>
    <button id="transfer">Transfer</button> <span id="transfer-result"></span>
  </section>
</main>
<script>
  const show = (c) => document.getElementById("customer").innerHTML =
    "<dt>Name</dt><dd>" + c.name + "</dd><dt>Account</dt><dd>" + c.account + "</dd>" +
    "<dt>Balance</dt><dd>" + c.balance.toFixed(2) + "</dd><dt>Status</dt><dd>" + c.status + "</dd>";
  document.getElementById("lookup").onclick = async () => {
    const id = document.getElementById("customer-id").value.trim();
    const res = await fetch("/api/customers/" + encodeURIComponent(id));
    if (!res.ok) { console.warn("no customer", id, res.status); document.getElementById("customer").textContent = "not found"; return; }
    const customer = await res.json();
    console.log("customer loaded", id);
    show(customer);
  };
  document.getElementById("transfer").onclick = () => {
    const amount = Number(document.getElementById("amount").value);
    if (!(amount > 0)) { console.error("transfer refused: amount must be positive"); return; }
    console.log("transfer submitted", amount);
    document.getElementById("transfer-result").textContent = "submitted";
  };
</script>
<script src="${relayUrl}/assist/widget.js"></script>
</body>
</html>
`;

const server = createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://page");
  if (url.pathname === "/" || url.pathname === "/index.html") {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(page);
  } else if (url.pathname === artifact.path) {
    res.writeHead(200, { "content-type": "application/java-archive", "content-length": artifact.bytes.length }).end(artifact.bytes);
  } else if (url.pathname.startsWith("/api/customers/")) {
    const id = url.pathname.slice("/api/customers/".length);
    const customer = Object.hasOwn(customers, id) ? customers[id] : undefined;
    if (customer) res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(customer));
    else res.writeHead(404, { "content-type": "application/json" }).end('{"error":"no such customer"}');
  } else if (url.pathname === "/favicon.ico") {
    res.writeHead(204).end();
  } else if (url.pathname === "/healthz") {
    res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
  } else {
    res.writeHead(404).end();
  }
});
server.listen(Number(port), host, () => console.log(`operator page on http://${host}:${port}, sample artifact at ${artifact.path}`));
// A demo page has nothing to drain.
process.on("SIGTERM", () => process.exit(0));
