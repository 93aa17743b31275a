import diagnostics from "node:diagnostics_channel";
import type { Server } from "node:http";
import type { SdkLogger } from "../contracts.js";

export interface GracefulShutdownOptions {
  /** The app's servers: they stop accepting, let in-flight requests finish, then close. */
  servers: () => Iterable<Server>;
  /** Runs once the servers are closed (the SDK's own close: last report, socket, terminal). */
  close: () => Promise<void>;
  log: SdkLogger;
  /** Default process.exit. */
  exit?: (code: number) => void;
}

/** Node publishes every finished HTTP response here (`{ request, response, socket, server }`). */
const responseFinished = "http.server.response.finish";

/**
 * The shutdown command's default action (seed step 16): stop accepting connections, give
 * in-flight requests up to `graceMs` to finish (then cut what is left), close the SDK, exit 0.
 * A keep-alive connection is closed as soon as its last response finished: `server.close()`
 * closes only the connections idle at that moment, and one whose request finishes later would
 * otherwise stay open (and hold the shutdown) until its keep-alive timeout or the grace's end.
 */
export function gracefulShutdown(options: GracefulShutdownOptions): (graceMs: number) => Promise<void> {
  let running: Promise<void> | undefined;
  const run = async (graceMs: number) => {
    const servers = [...options.servers()];
    options.log.info(`shutting down: ${servers.length} server(s) stop accepting, in-flight requests get ${graceMs} ms`);
    const draining = new Set<unknown>(servers);
    // Published before the server lets go of the connection: close what is idle just after.
    const closeWhenIdle = (message: unknown) => {
      const { server } = message as { server?: Server };
      if (server !== undefined && draining.has(server)) setImmediate(() => server.closeIdleConnections());
    };
    diagnostics.subscribe(responseFinished, closeWhenIdle);
    const closed = servers.map(
      (server) =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        }),
    );
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([
      Promise.all(closed).then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), graceMs);
      }),
    ]);
    clearTimeout(timer);
    diagnostics.unsubscribe(responseFinished, closeWhenIdle);
    if (late) {
      options.log.warn(`shutting down: requests still in flight after ${graceMs} ms; their connections are cut`);
      for (const server of servers) server.closeAllConnections();
    }
    try {
      await options.close();
    } catch (err) {
      options.log.warn(`shutting down: closing the SDK failed: ${(err as Error)?.message}`);
    }
    (options.exit ?? process.exit)(0);
  };
  return (graceMs) => {
    running ??= run(graceMs);
    return running;
  };
}
