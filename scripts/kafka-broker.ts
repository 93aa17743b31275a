// Runs the launcher's Kafka broker (`make run BUS=kafka`) in its own process group, so the
// terminal's Ctrl-C reaches the services first and the broker stays up while they drain.
// Prints `ready <host:port>` once it answers metadata requests; stops the broker on SIGTERM,
// or when its stdin closes because the launcher is gone. When the broker dies under it, it
// says how and exits 1, so the launcher restarts both.
import { KAFKA_VERSION, KafkaBroker } from "@opsplane/testing";

const [dataDir, port] = process.argv.slice(2);
if (!dataDir || !port) {
  console.error("usage: kafka-broker <data dir> <port>");
  process.exit(2);
}

async function main(): Promise<void> {
  console.error(`resolving Apache Kafka ${KAFKA_VERSION} (from Maven Central on the first run, .data/kafka-jars afterwards)…`);
  const broker = await KafkaBroker.create({ dataDir: dataDir as string, port: Number(port), controllerPort: Number(port) + 1 });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    broker.stop().finally(() => process.exit(0));
  };
  process.on("SIGTERM", stop).on("SIGINT", () => {});
  process.stdin.on("end", stop).on("close", stop).resume();
  await broker.start();
  broker.exited.then((how) => {
    if (stopping) return;
    console.error(`the Kafka broker exited (${how})`);
    process.exit(1);
  });
  console.log(`ready ${broker.url}`);
}

main().catch((err: Error) => {
  console.error(`Kafka did not start: ${err.message}`);
  process.exit(1);
});
