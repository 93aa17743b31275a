// assist-relay: operator→developer latency with many concurrent sessions, and the cost of
// rrweb's full snapshot of a big page.
//  - relay: one relay process (single node, in-process fan-out; with REDIS_URL set, a second
//    run with Redis fan-out on that one relay, where widget and developer share the replica,
//    and a third with two relay processes, every widget on one and every developer on the
//    other, so each message crosses Redis). SESSIONS widget+developer socket pairs; every widget sends a
//    ~400-byte rrweb batch every INTERVAL_MS for SECONDS; latency = widget send → developer
//    receive (same process, same clock). The relay runs as its own process, as deployed.
//  - snapshot: rrweb record() on a page of ~10,000 DOM nodes in headless Chromium: time to
//    the full-snapshot event and its JSON size.
//  - bundle: the built widget.js (npm run build -w services/assist-relay) minified, gzip and
//    brotli (quality 11, as the relay serves it) beside rrweb's own record bundle; target: the
//    widget's brotli size at most rrweb's + 15 KB.
// Prints one JSON object.   DATABASE_URL=postgres://… npx tsx bench/assist.ts
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import path from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { sha256Hex } from "@opsplane/platform";
import { chromiumArgs, chromiumPath, createTestDatabase, eventually, freePort } from "@opsplane/testing";
import { chromium } from "playwright-core";
import WebSocket from "ws";

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 200);
const INTERVAL_MS = Number(process.env.BENCH_INTERVAL_MS ?? 100);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const SNAPSHOT_NODES = 10_000;
const ORIGIN = "http://operator.bench";
const API_KEY = "bench-developer-key-0123456789";
const relayDir = path.join(__dirname, "..", "services", "assist-relay");

async function startRelay(databaseUrl: string, redisUrl: string | undefined): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn(process.execPath, ["--import", "tsx", path.join(relayDir, "src", "main.ts")], {
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl ?? "",
      ASSIST_REDIS_PREFIX: `bench:${process.pid}:`,
      PORT: String(port),
      HOST: "127.0.0.1",
      LOG_LEVEL: "warn",
      ASSIST_ALLOWED_ORIGINS: ORIGIN,
      AUTH_API_KEYS: `bench:viewer:${sha256Hex(API_KEY)}`,
      ASSIST_CLIENT_MAX_FAILURES: "100000",
      // 200 sessions opened from one address in a few seconds: far past the limit for anonymous callers.
      ASSIST_PUBLIC_PER_ADDRESS_PER_MINUTE: "100000",
      ASSIST_PUBLIC_GLOBAL_PER_MINUTE: "100000",
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const url = `http://127.0.0.1:${port}`;
  await eventually("the relay to answer", async () => (await fetch(`${url}/readyz`).catch(() => undefined))?.ok === true, 60_000);
  return { url, proc };
}

const open = (url: string, origin?: string) =>
  new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(url, { headers: origin ? { origin } : {} });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });

async function post(url: string, body: unknown, headers: Record<string, string>) {
  const r = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
  return (await r.json()) as Record<string, string>;
}

async function openPair(base: string, developerBase: string) {
  const ws = base.replace("http", "ws");
  const s = await post(`${base}/assist/sessions`, { pageUrl: `${ORIGIN}/` }, { origin: ORIGIN });
  const t = await post(`${base}/assist/sessions/${s.sessionId}/widget-ticket`, {}, { origin: ORIGIN, "x-assist-token": s.widgetToken! });
  const widget = await open(`${ws}/assist/ws/widget?ticket=${t.ticket}`, ORIGIN);
  const joined = new Promise<void>((resolve) => widget.on("message", (d) => String(d).includes('"developer-joined"') && resolve()));
  const c = await post(`${developerBase}/assist/connect`, { key: s.key }, { authorization: `Bearer ${API_KEY}` });
  const developer = await open(`${developerBase.replace("http", "ws")}/assist/ws/developer?ticket=${c.ticket}`);
  await joined;
  return { widget, developer };
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

async function latencyRun(databaseUrl: string, redisUrl: string | undefined, replicas: 1 | 2 = 1) {
  const relays = [await startRelay(databaseUrl, redisUrl)];
  if (replicas === 2) relays.push(await startRelay(databaseUrl, redisUrl));
  const widgetBase = relays[0]!.url;
  const developerBase = relays[relays.length - 1]!.url;
  try {
    const pairs = [];
    for (let i = 0; i < SESSIONS; i += 20)
      pairs.push(...(await Promise.all(Array.from({ length: Math.min(20, SESSIONS - i) }, () => openPair(widgetBase, developerBase)))));
    const latencies: number[] = [];
    let measuring = false;
    for (const { developer } of pairs) {
      developer.on("message", (d) => {
        const text = String(d);
        if (!text.startsWith('{"t":"rrweb"')) return;
        const sentAt = (JSON.parse(text) as { events: Array<{ data: { sentAt: number } }> }).events[0]!.data.sentAt;
        if (measuring) latencies.push(performance.now() - sentAt);
      });
    }
    // A typical incremental batch: a text mutation and a mouse move.
    const pad = "x".repeat(250);
    const send = (widget: WebSocket) =>
      widget.send(
        JSON.stringify({
          t: "rrweb",
          events: [
            {
              type: 3,
              timestamp: Date.now(),
              data: { source: 0, sentAt: performance.now(), texts: [{ id: 42, value: pad }], attributes: [], removes: [], adds: [] },
            },
          ],
        }),
      );
    const timers = pairs.map(({ widget }, i) => {
      let timer: NodeJS.Timeout | undefined;
      // Spread the sessions over the interval, as real pages would be.
      const start = setTimeout(
        () => {
          timer = setInterval(() => send(widget), INTERVAL_MS);
        },
        (i * INTERVAL_MS) / pairs.length,
      );
      return () => {
        clearTimeout(start);
        clearInterval(timer);
      };
    });
    await new Promise((r) => setTimeout(r, 2000)); // warm-up, not measured
    measuring = true;
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    measuring = false;
    for (const stop of timers) stop();
    for (const { widget, developer } of pairs) {
      widget.close();
      developer.close();
    }
    latencies.sort((x, y) => x - y);
    const round = (n: number) => Math.round(n * 100) / 100;
    return {
      fanOut: redisUrl ? "redis" : "in-process",
      relays: replicas,
      path: replicas === 2 ? "widget on relay 1 → Redis → developer on relay 2" : "widget and developer on the same relay",
      sessions: pairs.length,
      messagesPerSecond: round(latencies.length / SECONDS),
      messages: latencies.length,
      p50Ms: round(percentile(latencies, 50)),
      p99Ms: round(percentile(latencies, 99)),
      maxMs: round(latencies[latencies.length - 1] ?? 0),
    };
  } finally {
    for (const relay of relays) {
      relay.proc.kill("SIGTERM");
      await new Promise((r) => relay.proc.once("exit", r));
    }
  }
}

const measureSnapshotInPage = `(() => {
  let nodes = document.querySelectorAll("*").length;
  const walker = document.createTreeWalker(document, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) nodes++;
  const runs = [];
  for (let i = 0; i < 5; i++) {
    let snapshot;
    const t0 = performance.now();
    const stop = rrweb.record({ emit: (e) => { if (e.type === 2) snapshot = e; }, maskAllInputs: true });
    const bytes = JSON.stringify(snapshot).length;
    runs.push({ ms: performance.now() - t0, bytes });
    stop();
  }
  const sorted = runs.map((r) => r.ms).sort((a, b) => a - b);
  return { domNodes: nodes, fullSnapshotBytes: runs[0].bytes, fullSnapshotMedianMs: Math.round(sorted[2] * 10) / 10, runs: runs.length };
})()`;

async function snapshotRun() {
  if (!existsSync(chromiumPath)) return { skipped: `${chromiumPath} not found` };
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: chromiumArgs,
  });
  try {
    const page = await browser.newPage();
    // Each row is a div, a span, its text and an input: 4 nodes.
    const rows = Array.from(
      { length: SNAPSHOT_NODES / 4 },
      (_, i) => `<div class="row"><span>Order ${i} · ¥${(i * 37) % 9999}</span><input value="v${i}"></div>`,
    );
    await page.setContent(`<!doctype html><html><body>${rows.join("")}</body></html>`);
    await page.addScriptTag({ path: path.join(path.dirname(require.resolve("rrweb")), "rrweb.umd.cjs") });
    // A string, not a function: tsx's transform would add helpers the page does not have.
    return (await page.evaluate(measureSnapshotInPage)) as {
      domNodes: number;
      fullSnapshotBytes: number;
      fullSnapshotMedianMs: number;
      runs: number;
    };
  } finally {
    await browser.close();
  }
}

function sizes(file: string) {
  const bytes = readFileSync(file);
  return {
    minifiedBytes: bytes.length,
    gzipBytes: gzipSync(bytes, { level: 9 }).length,
    brotliBytes: brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length,
  };
}

function bundleRun() {
  const widgetFile = path.join(relayDir, "dist", "web", "widget.js");
  if (!existsSync(widgetFile)) return { skipped: `${widgetFile} not built` };
  const widget = sizes(widgetFile);
  const rrwebRecord = sizes(path.join(path.dirname(require.resolve("@rrweb/record")), "record.umd.min.cjs"));
  const overBytes = widget.brotliBytes - rrwebRecord.brotliBytes;
  return { widget, rrwebRecord, brotliOverRrwebBytes: overBytes, target: "brotli ≤ rrweb record + 15 KB", met: overBytes <= 15 * 1024 };
}

async function main() {
  const db = await createTestDatabase();
  try {
    const relay = [await latencyRun(db.url, undefined)];
    if (process.env.REDIS_URL) {
      relay.push(await latencyRun(db.url, process.env.REDIS_URL));
      relay.push(await latencyRun(db.url, process.env.REDIS_URL, 2));
    }
    const snapshot = await snapshotRun();
    const bundle = bundleRun();
    console.log(
      JSON.stringify(
        {
          bench: "assist",
          loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
          cpus: cpus().length,
          intervalMs: INTERVAL_MS,
          measuredSeconds: SECONDS,
          relay,
          snapshot,
          bundle,
          target: "p99 < 100 ms at 200 sessions",
        },
        null,
        2,
      ),
    );
  } finally {
    await db.drop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
