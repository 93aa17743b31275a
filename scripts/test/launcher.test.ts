import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { chromiumArgs, chromiumPath, eventually, freePort, KafkaUnavailable, kafkaJars } from "@opsplane/testing";
import { chromium } from "playwright-core";
import { demoPorts } from "../demo/demo.js";
import { services } from "../services.js";

// World-readable, as .data is: as root the database server runs as the postgres user.
const dataDir = mkdtempSync(path.join(tmpdir(), "opsplane-run-"));
chmodSync(dataDir, 0o755);
after(() => rmSync(dataDir, { recursive: true, force: true }));

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });

// A newcomer's `make run`, without Redis: the suite's REDIS_URL is shared by every run, and the
// demo's registrations would outlive this run's database there.
const { REDIS_URL: _sharedRedis, ...launcherEnv } = process.env;

/**
 * Where this run's ports go: below Linux's ephemeral range (32768 and up), where the kernel hands out
 * the local ports of outgoing connections, and on none that something here already holds (CI's
 * RabbitMQ keeps 25672; a demo's SDK terminal there ran without one and the Ctrl-C check saw it open).
 */
async function portOffset(): Promise<number> {
  const bases = [...services.map((s) => s.port), ...Object.values(demoPorts)];
  for (;;) {
    const offset = 10_000 + Math.floor(Math.random() * 14_000);
    const held = await Promise.all(bases.map((p) => listening(p + offset)));
    if (!held.includes(true)) return offset;
  }
}

async function runLauncher(pgPort: number, offset: number, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ["--import", "tsx", "scripts/run.ts"], {
    env: {
      ...launcherEnv,
      OPSPLANE_DATA_DIR: dataDir,
      OPSPLANE_PG_PORT: String(pgPort),
      OPSPLANE_PORT_OFFSET: String(offset),
      LOG_LEVEL: "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const outcome = await eventually(
    "the launcher's summary",
    () => (child.exitCode !== null ? "exited" : out.includes("opsplane is up") && "up"),
    120_000,
    200,
  );
  if (outcome === "exited") throw new Error(`launcher exited with ${child.exitCode}: ${out}`);
  return { child, output: () => out };
}

describe("make run: the six services, the README's walkthrough of the demo, and supervision", () => {
  let offset: number;
  let ports: number[];
  const at = (port: number) => `http://127.0.0.1:${port + offset}`;
  const serviceAt = (name: string) => at(services.find((s) => s.name === name)!.port);
  // As the README has it: VIEWER=$(cat .data/viewer-key) OPERATOR=$(cat .data/operator-key).
  const key = (role: string) => readFileSync(path.join(dataDir, `${role}-key`), "utf8").trim();
  const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  const ok = async <T>(res: Response | Promise<Response>): Promise<T> => {
    const r = await res;
    const text = await r.text();
    assert.ok(r.ok, `${r.url} answered ${r.status}: ${text}`);
    return JSON.parse(text) as T;
  };
  let pgPort: number;
  let launcher: Awaited<ReturnType<typeof runLauncher>>;

  before(async () => {
    offset = await portOffset();
    ports = services.map((s) => s.port + offset);
    pgPort = await freePort();
    launcher = await runLauncher(pgPort, offset);
  });
  after(async () => {
    if (launcher && launcher.child.exitCode === null) {
      const exited = once(launcher.child, "exit");
      launcher.child.kill("SIGINT");
      await exited;
    }
  });

  test("the six services answer with their RED metrics, and the summary prints one API key per role", async () => {
    for (const [i, s] of services.entries()) {
      const ready = await fetch(`http://127.0.0.1:${ports[i]}/readyz`);
      assert.equal(ready.status, 200, `${s.name} /readyz`);
      const metrics = await (await fetch(`http://127.0.0.1:${ports[i]}/metrics`)).text();
      assert.match(metrics, /http_requests_total\{method="GET",route="\/readyz"/, `${s.name} RED metrics`);
    }
    for (const role of ["viewer", "operator", "admin"]) assert.match(launcher.output(), new RegExp(`  ${role} +${key(role)}\\n`));
    assert.match(launcher.output(), /listening on 127\.0\.0\.1/);
  });

  test("1. assist: the demo page's origin opens a session, and its connection key lets the viewer key in", async () => {
    const page = at(demoPorts.page);
    assert.match(await (await fetch(page)).text(), new RegExp(`<script src="${serviceAt("assist-relay")}/assist/widget.js">`));
    const session = await ok<{ sessionId: string; key: string }>(
      post(`${serviceAt("assist-relay")}/assist/sessions`, { pageUrl: `${page}/` }, { origin: page }),
    );
    const joined = await ok<{ sessionId: string; ticket: string }>(
      post(`${serviceAt("assist-relay")}/assist/connect`, { key: session.key }, { authorization: `Bearer ${key("viewer")}` }),
    );
    assert.equal(joined.sessionId, session.sessionId);
    const foreign = await post(
      `${serviceAt("assist-relay")}/assist/sessions`,
      { pageUrl: "http://elsewhere.example/" },
      { origin: "http://elsewhere.example" },
    );
    assert.equal(foreign.status, 403);
  });

  test("1. assist in Chromium: the operator asks for help on the demo page, the developer watches it from the console", {
    skip: existsSync(chromiumPath) ? false : `${chromiumPath} not found`,
  }, async () => {
    const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
    try {
      const operator = await (await browser.newContext()).newPage();
      await operator.goto(at(demoPorts.page));
      await operator.click("#opsplane-assist [data-toggle]");
      await operator.click("#opsplane-assist [data-assist]");
      await operator.waitForFunction(() =>
        /^\w{4}-\w{4}-\w{4}$/.test(document.querySelector("#opsplane-assist [data-key]")?.textContent ?? ""),
      );
      const connectionKey = (await operator.textContent("#opsplane-assist [data-key]"))!;

      const developer = await (await browser.newContext()).newPage();
      await developer.goto(`${serviceAt("assist-relay")}/console`);
      await developer.fill("#api-key", key("viewer"));
      await developer.fill("#connection-key", connectionKey);
      await developer.click("#connect button");
      await operator.waitForFunction(
        () => document.querySelector("#opsplane-assist [data-status]")?.textContent === "key:dev-viewer is watching this page",
      );
      // The note field is allow-listed: the developer sees what the operator types there.
      await operator.fill("#note", "card declined at the counter");
      await developer.waitForFunction(() => {
        const view = (window as unknown as { assistConsole: { document?: Document } }).assistConsole.document;
        return view?.querySelector<HTMLInputElement>("#note")?.value === "card declined at the counter";
      });
    } finally {
      await browser.close();
    }
  });

  test("2. callbacks: an order opened in sit is called back in sit, a production order in production, a production id sit reports is refused", async () => {
    const dispatcher = serviceAt("callback-dispatcher");
    const viewer = { authorization: `Bearer ${key("viewer")}` };
    await ok(post(`${at(demoPorts.sit)}/api/pay`, { orderNo: "SIT-1001" }));
    const registration = await eventually("sit's agent to report SIT-1001", async () => {
      const r = await ok<{ env: string | null; registeredBy: string }>(
        fetch(`${dispatcher}/_dispatcher/v1/registrations/pay/SIT-1001`, { headers: viewer }),
      );
      return r.env !== null && r.env !== undefined && r;
    });
    assert.deepEqual([registration.env, registration.registeredBy], ["sit", "app:agent-sit"]);

    assert.deepEqual(await ok(post(`${dispatcher}/notify/pay`, { orderNo: "SIT-1001", status: "PAID" })), {
      code: "SUCCESS",
      receivedBy: "sit",
    });
    assert.deepEqual(await ok(post(`${dispatcher}/notify/pay`, { orderNo: "PRD-2001", status: "PAID" })), {
      code: "SUCCESS",
      receivedBy: "production",
    });
    await eventually("the apps' lines", () =>
      [
        'sit-app             | callback received: POST /notify/pay {"orderNo":"SIT-1001"',
        'production-app      | callback received: POST /notify/pay {"orderNo":"PRD-2001"',
      ].every((line) => launcher.output().includes(line)),
    );
    const decisions = await eventually("both decisions recorded", async () => {
      const { decisions } = await ok<{ decisions: Array<{ objectId: string; targetEnv: string; reason: string }> }>(
        fetch(`${dispatcher}/_dispatcher/v1/decisions?limit=2`, { headers: viewer }),
      );
      return decisions.length === 2 && decisions;
    });
    assert.deepEqual(
      decisions.map((d) => [d.objectId, d.targetEnv, d.reason]),
      [
        ["PRD-2001", "production", "not_registered"],
        ["SIT-1001", "sit", "registered"],
      ],
    );

    await ok(post(`${at(demoPorts.sit)}/api/pay`, { orderNo: "PRD-2002" }));
    await eventually("the refusal in sit-app's lines", () =>
      /sit-app +\| \[callback-agent\] dispatcher refused 1 registrations \(id_not_claimable\)/.test(launcher.output()),
    );
    assert.deepEqual(await ok(post(`${dispatcher}/notify/pay`, { orderNo: "PRD-2002", status: "PAID" })), {
      code: "SUCCESS",
      receivedBy: "production",
    });
  });

  test("3. scan: the sample artifact from the demo page succeeds with its five codes and two violations", async () => {
    const rpc = (method: string, role: string, body: unknown) =>
      ok<Record<string, unknown>>(
        post(`${serviceAt("errcode-scanner")}/ops.v1.ErrcodeScanService/${method}`, body, { authorization: `Bearer ${key(role)}` }),
      );
    const { scan } = (await rpc("SubmitScan", "operator", { url: `${at(demoPorts.page)}/artifacts/demo-payments-1.0.jar` })) as {
      scan: { id: string };
    };
    type Done = {
      scan: { status: string; error?: string };
      errorCodes: Array<{ code: string; message: string }>;
      violations: Array<{ code: string; rule: string }>;
    };
    const done = await eventually("the scan to finish", async () => {
      const r = (await rpc("GetScan", "viewer", { id: scan.id })) as Done;
      return (r.scan.status === "succeeded" || r.scan.status === "failed") && r;
    });
    assert.equal(done.scan.status, "succeeded", done.scan.error);
    assert.deepEqual(
      done.errorCodes.map((c) => [c.code, c.message]),
      [
        ["ACC2001", "Account not found"],
        ["PAY1001", "Insufficient balance"],
        ["PAY1002", "Card expired"],
        ["PAY1003", "Daily limit exceeded"],
        ["acc-2002", "SQLSTATE 23505: duplicate key value violates unique constraint"],
      ],
    );
    assert.deepEqual(
      done.violations.map((v) => [v.code, v.rule]),
      [
        ["acc-2002", "code-pattern"],
        ["acc-2002", "message-leak"],
      ],
    );
    const { entries } = (await rpc("QueryRegistry", "viewer", {})) as { entries: Array<{ code: string }> };
    assert.deepEqual(
      entries.map((e) => e.code),
      ["ACC2001", "PAY1001", "PAY1002", "PAY1003"],
    );
  });

  test("4. a service killed is reported with its signal and restarted; so is PostgreSQL, and the services reconnect", async () => {
    const pid = Number(/assist-relay +http:\/\/\S+ +pid (\d+)/.exec(launcher.output())?.[1]);
    assert.ok(pid > 0, "the summary shows assist-relay's pid");
    process.kill(pid, "SIGKILL");
    await eventually(
      "assist-relay back",
      () =>
        /assist-relay died \(signal SIGKILL\) after \d+ s up; restarting it in 1 s\n[\s\S]*assist-relay is ready again/.test(
          launcher.output(),
        ),
      60_000,
      100,
    );
    assert.equal((await fetch(`${serviceAt("assist-relay")}/readyz`)).status, 200);

    const postmaster = Number(readFileSync(path.join(dataDir, "pg", "postmaster.pid"), "utf8").split("\n")[0]);
    process.kill(postmaster, "SIGKILL");
    await eventually(
      "PostgreSQL back",
      () => /PostgreSQL died \(code 1\)[\s\S]*PostgreSQL is ready again/.test(launcher.output()),
      60_000,
      100,
    );
    assert.match(launcher.output(), /PostgreSQL +\| the PostgreSQL server exited \(signal SIGKILL\)/);
    // Served from the database again: every service reconnected by itself.
    for (const s of services) {
      await eventually(
        `${s.name} ready on the restarted database`,
        async () => (await fetch(`${serviceAt(s.name)}/readyz`)).status === 200,
        60_000,
        200,
      );
    }
    await ok(
      fetch(`${serviceAt("callback-dispatcher")}/_dispatcher/v1/environments`, { headers: { authorization: `Bearer ${key("viewer")}` } }),
    );
  });

  test("Ctrl-C stops every process; the next run starts on the same data, keys and demo", async () => {
    const demoPortsNow = Object.values(demoPorts).map((p) => p + offset);
    for (let round = 1; round <= 2; round++) {
      if (round === 2) launcher = await runLauncher(pgPort, offset);
      const exited = once(launcher.child, "exit");
      launcher.child.kill("SIGINT");
      const [code] = await exited;
      assert.equal(code, 0, launcher.output());
      for (const port of [...ports, ...demoPortsNow, pgPort])
        assert.equal(await listening(port), false, `port ${port} still open after Ctrl-C`);
    }
    assert.doesNotMatch(launcher.output(), /migrations applied|demo: set/);
    assert.match(launcher.output(), new RegExp(`  viewer +${key("viewer")}\\n`));
  });
});

test("make run BUS=kafka runs the six services on the kafka bus beside a local broker, and Ctrl-C stops the broker too", async (t) => {
  try {
    await kafkaJars();
  } catch (err) {
    if (err instanceof KafkaUnavailable) return t.skip(err.message);
    throw err;
  }
  const pgPort = await freePort();
  // The broker's controller listens on the next port up.
  let kafkaPort = await freePort();
  while (await listening(kafkaPort + 1)) kafkaPort = await freePort();
  const offset = await portOffset();
  const ports = services.map((s) => s.port + offset);
  const { child, output } = await runLauncher(pgPort, offset, { BUS: "kafka", OPSPLANE_KAFKA_PORT: String(kafkaPort) });
  // A failed assertion must not leave the launcher and its processes holding this file open.
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
  });
  assert.match(output(), /opsplane is up \(single node, kafka bus/);
  assert.doesNotMatch(output(), /ERROR/);
  assert.match(output(), new RegExp(`kafka +127\\.0\\.0\\.1:${kafkaPort}`));
  for (const [i, s] of services.entries()) {
    const info = await fetch(`http://127.0.0.1:${ports[i]}/ops.v1.ServiceInfoService/GetServiceInfo`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    const body = (await info.json()) as { bus: string; ready: boolean };
    assert.deepEqual([body.bus, body.ready], ["kafka", true], `${s.name} is ready on the kafka bus`);
  }
  const exited = once(child, "exit");
  child.kill("SIGINT");
  const [code] = await exited;
  assert.equal(code, 0, output());
  for (const port of [...ports, pgPort, kafkaPort, kafkaPort + 1])
    assert.equal(await listening(port), false, `port ${port} still open after Ctrl-C`);
});
