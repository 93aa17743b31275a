// Runs the launcher's Kafka broker (`make run BUS=kafka`) in its own process group, so the
// terminal's Ctrl-C reaches the services first and the broker stays up while they drain.
// Prints `ready <host:port>` once it answers metadata requests; stops and restarts with the
// launcher as scripts/helper-lifecycle.ts says.
import { KAFKA_VERSION, KafkaBroker } from "@opsplane/testing";
import { announceReady, stopWithLauncher } from "./helper-lifecycle.js";

const [dataDir, port] = process.argv.slice(2);
if (!dataDir || !port) {
  console.error("usage: kafka-broker <data dir> <port>");
  process.exit(2);
}

async function main(): Promise<void> {
  console.error(`resolving Apache Kafka ${KAFKA_VERSION} (from Maven Central on the first run, .data/kafka-jars afterwards)…`);
  const broker = await KafkaBroker.create({ dataDir: dataDir as string, port: Number(port), controllerPort: Number(port) + 1 });
  stopWithLauncher(broker);
  await broker.start();
  announceReady("Kafka broker", broker.url, broker.exited);
}

main().catch((err: Error) => {
  console.error(`Kafka did not start: ${err.message}`);
  process.exit(1);
});
