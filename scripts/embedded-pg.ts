// Runs the launcher's embedded PostgreSQL in its own process group, so the terminal's
// Ctrl-C reaches the services first and the database stays up while they drain. Prints
// `ready <url>` once it accepts connections; stops the server on SIGTERM, or when its
// stdin closes because the launcher is gone.
import { startEmbeddedPostgres } from "@opsplane/testing";

const [dataDir, port] = process.argv.slice(2);
if (!dataDir || !port) {
  console.error("usage: embedded-pg <data dir> <port>");
  process.exit(2);
}

startEmbeddedPostgres(dataDir, Number(port)).then(
  (pg) => {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      pg.stop().finally(() => process.exit(0));
    };
    process.on("SIGTERM", stop).on("SIGINT", () => {});
    process.stdin.on("end", stop).on("close", stop).resume();
    console.log(`ready ${pg.url}`);
  },
  (err: Error) => {
    console.error(`PostgreSQL did not start: ${err.message}`);
    process.exit(1);
  },
);
