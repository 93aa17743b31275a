// The life of a launcher helper (scripts/embedded-pg.ts, scripts/kafka-broker.ts) around the
// server it runs: it stops the server on SIGTERM, or when its stdin closes because the launcher
// is gone, and leaves Ctrl-C to the launcher. When the server dies under it, it says how and
// exits 1, so the launcher restarts both.

let stopping = false;

/** From now on, SIGTERM or the launcher's going stops `server` and ends this process. */
export function stopWithLauncher(server: { stop(): Promise<void> }): void {
  const stop = () => {
    if (stopping) return;
    stopping = true;
    server.stop().finally(() => process.exit(0));
  };
  process.on("SIGTERM", stop).on("SIGINT", () => {});
  process.stdin.on("end", stop).on("close", stop).resume();
}

/** Tells the launcher the server is ready at `address`, and ends this process when `exited` says it died unasked. */
export function announceReady(server: string, address: string, exited: Promise<string>): void {
  exited.then((how) => {
    if (stopping) return;
    console.error(`the ${server} exited (${how})`);
    process.exit(1);
  });
  console.log(`ready ${address}`);
}
