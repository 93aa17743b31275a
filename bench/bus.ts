// Bus adapters side by side: throughput and publish→handle latency for 1 KB events, one
// producer, one consumer group. Two phases per adapter, each on a bus of its own:
//  - saturation: the producer publishes as fast as it can (a window of publishes in
//    flight, like a Kafka producer's buffer); events/s from first publish to last handled;
//  - paced: the producer publishes at PACED_RATE events/s; latency percentiles of
//    publish call → handler call (same process, same clock).
// The kafka adapter's path is longer: outbox → relay → broker → consumer group.
// Prints one JSON object: the adapter's figures, or with `--adapter both` (`make bench`)
// `{ results: [postgres, kafka] }` measured in the same run.
//   DATABASE_URL=postgres://… [KAFKA_BROKERS=host:port] npx tsx bench/bus.ts --adapter postgres|kafka|both
import { randomBytes } from "node:crypto";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { type Bus, type BusEvent, createBus } from "@opsplane/bus";
import { createPool, type Pool } from "@opsplane/store";
import { createTestDatabase } from "@opsplane/testing";

const EVENT_SIZE = 1024;
const SATURATION_EVENTS = Number(process.env.BENCH_EVENTS ?? 50_000);
const IN_FLIGHT = 500;
const PACED_RATE = Number(process.env.BENCH_RATE ?? 5000);
const PACED_SECONDS = 5;
// New each run: a broker in KAFKA_BROKERS keeps topics and group offsets between runs.
const TOPIC = `bench.events.${randomBytes(4).toString("hex")}`;

interface Sample {
  phase: "warmup" | "saturation" | "paced";
  sentAt: number;
  pad: string;
}

const bare = JSON.stringify({ phase: "saturation", sentAt: performance.now(), pad: "" } satisfies Sample).length;
const PAD = "x".repeat(EVENT_SIZE - bare);

/** Counts handled events per phase and keeps their latencies. */
class Sink {
  readonly handled = { warmup: 0, saturation: 0, paced: 0 };
  readonly latencies: number[] = [];
  private waiters: Array<() => void> = [];

  handle = async (e: BusEvent): Promise<void> => {
    const s = e.data as Sample;
    this.handled[s.phase]++;
    if (s.phase === "paced") this.latencies.push(performance.now() - s.sentAt);
    // Woken waiters are dropped: kept, every event would call all of them again (quadratic).
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  };

  async until(done: () => boolean): Promise<void> {
    while (!done()) await new Promise<void>((r) => this.waiters.push(r));
  }
}

function publish(bus: Bus, phase: Sample["phase"], i: number): Promise<void> {
  return bus.publish({ topic: TOPIC, type: "bench.v1.Sample", key: `k${i % 64}`, data: { phase, sentAt: performance.now(), pad: PAD } });
}

async function saturate(bus: Bus, phase: Sample["phase"], count: number): Promise<void> {
  let inFlight = 0;
  let wake: (() => void) | undefined;
  const pending: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    while (inFlight >= IN_FLIGHT) await new Promise<void>((r) => (wake = r));
    inFlight++;
    pending.push(
      publish(bus, phase, i).finally(() => {
        inFlight--;
        wake?.();
      }),
    );
  }
  await Promise.all(pending);
}

/** Publishes at `rate`; `commitLatencies` gets publish call → commit acknowledged, which separates database commit time from delivery. */
async function paced(bus: Bus, rate: number, seconds: number, commitLatencies: number[]): Promise<number> {
  const total = rate * seconds;
  const start = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < total; ) {
    // Publish whatever is due by now, then yield for a millisecond.
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    for (; i < due; i++) {
      const t = performance.now();
      pending.push(publish(bus, "paced", i).then(() => void commitLatencies.push(performance.now() - t)));
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
  return total;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const round = (v: number) => Math.round(v * 100) / 100;

type Adapter = "postgres" | "kafka";

function newBus(adapter: Adapter, pool: Pool): Promise<Bus> {
  if (adapter === "postgres") return createBus({ kind: "postgres", pool, source: "/bench/bus" });
  const brokers = process.env.KAFKA_BROKERS as string;
  return createBus({ kind: "kafka", pool, source: "/bench/bus", kafkaBrokers: brokers.split(","), kafka: { numPartitions: 1 } });
}

/** One adapter measured on a database of its own. */
async function measure(adapter: Adapter) {
  const loadAtStart = os.loadavg()[0]!;
  const db = await createTestDatabase();
  const pool = createPool(db.url, { schema: "public", applicationName: "bench-bus" });
  try {
    const bus = await newBus(adapter, pool);
    const sink = new Sink();
    await bus.subscribe({ group: "bench", topics: [TOPIC], batchSize: 1000, handler: sink.handle });

    await saturate(bus, "warmup", 2000);
    await sink.until(() => sink.handled.warmup === 2000);

    const t0 = performance.now();
    await saturate(bus, "saturation", SATURATION_EVENTS);
    await sink.until(() => sink.handled.saturation === SATURATION_EVENTS);
    const saturationMs = performance.now() - t0;

    const commitLatencies: number[] = [];
    const pacedEvents = await paced(bus, PACED_RATE, PACED_SECONDS, commitLatencies);
    await sink.until(() => sink.handled.paced === pacedEvents);
    await bus.close();

    const lat = sink.latencies.sort((a, b) => a - b);
    const commit = commitLatencies.sort((a, b) => a - b);
    return {
      adapter,
      eventsPerSec: Math.round(SATURATION_EVENTS / (saturationMs / 1000)),
      p50Ms: round(percentile(lat, 50)),
      p99Ms: round(percentile(lat, 99)),
      p95Ms: round(percentile(lat, 95)),
      maxMs: round(lat.at(-1)!),
      eventSizeBytes: EVENT_SIZE,
      producers: 1,
      groups: 1,
      saturation: { events: SATURATION_EVENTS, producerInFlight: IN_FLIGHT, elapsedMs: Math.round(saturationMs) },
      paced: { ratePerSec: PACED_RATE, events: pacedEvents },
      publishCommitMs: { p50: round(percentile(commit, 50)), p99: round(percentile(commit, 99)), max: round(commit.at(-1)!) },
      target: { eventsPerSec: 5000, p99Ms: 50 },
      // Other work on the machine shares its 2 cores; the load average says how much.
      machine: { cpus: os.availableParallelism(), loadAverage1m: { start: round(loadAtStart), end: round(os.loadavg()[0]!) } },
    };
  } finally {
    await pool.end();
    await db.drop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { adapter: { type: "string", default: "postgres" } } });
  const adapter = values.adapter;
  if (adapter !== "postgres" && adapter !== "kafka" && adapter !== "both") throw new Error("--adapter must be postgres, kafka or both");
  if (adapter !== "postgres" && !process.env.KAFKA_BROKERS) {
    const why = process.env.KAFKA_UNAVAILABLE ?? "`make bench` starts a broker";
    throw new Error(`--adapter ${adapter} needs KAFKA_BROKERS (${why})`);
  }
  if (adapter !== "both") return console.log(JSON.stringify(await measure(adapter)));
  const results = [await measure("postgres"), await measure("kafka")];
  console.log(JSON.stringify({ results }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
