// Runs the launcher's Kafka broker (`make run BUS=kafka`) in its own process group, so the
// terminal's Ctrl-C reaches the services first and the broker stays up while they drain.
// Prints `ready <host:port>` once it answers metadata requests; stops and restarts with the
// launcher as scripts/helper-lifecycle.ts says.
import { createServer } from "node:net";
import { freePort, KAFKA_VERSION, KafkaBroker } from "@opsplane/testing";
import { announceReady, stopWithLauncher } from "./helper-lifecycle.js";

const [dataDir, port] = process.argv.slice(2);
if (!dataDir || !port) {
  console.error("usage: kafka-broker <data dir> <port>");
  process.exit(2);
}

async function main(): Promise<void> {
  console.error(`resolving Apache Kafka ${KAFKA_VERSION} (from Maven Central on the first run, .data/kafka-jars afterwards)…`);
  // The controller listens next to the broker unless something else holds that port (the broker would
  // then fail to bind it): only this process talks to its own controller, so any free port serves.
  const next = Number(port) + 1;
  const controllerPort = (await isFree(next)) ? next : await freePort();
  const broker = await KafkaBroker.create({ dataDir: dataDir as string, port: Number(port), controllerPort });
  stopWithLauncher(broker);
  await broker.start();
  announceReady("Kafka broker", broker.url, broker.exited);
}

function isFree(p: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => resolve(false));
    probe.listen(p, "127.0.0.1", () => probe.close(() => resolve(true)));
  });
}

main().catch((err: Error) => {
  console.error(`Kafka did not start: ${err.message}`);
  process.exit(1);
});
