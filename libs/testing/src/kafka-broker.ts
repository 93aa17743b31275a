import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { Kafka, logLevel } from "kafkajs";
import { freePort } from "./free-port.js";
import { eventually } from "./poll.js";

/** libs/testing/kafka/pom.xml: the one place the broker's version is pinned. */
const POM = path.join(__dirname, "..", "kafka", "pom.xml");
/** The repository's .data folder (this file sits in libs/testing/src or libs/testing/dist). */
const DATA = path.resolve(__dirname, "..", "..", "..", ".data");

export const KAFKA_VERSION = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(readFileSync(POM, "utf8"))?.[1] ?? "unknown";

/** Why no local broker can run here (no JDK, no Maven, registry unreachable): one line for the skip message. */
export class KafkaUnavailable extends Error {}

const MAVEN_TIMEOUT_MS = 300_000;
const START_DEADLINE_MS = 90_000;
const STOP_DEADLINE_MS = 15_000;
// The machine is shared: a small heap and the serial collector keep the broker to ~300 MB and one GC thread.
const JVM_OPTS = ["-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-Djava.awt.headless=true", "-Dorg.apache.logging.log4j.level=WARN"];

const execFileAsync = promisify(execFile);
// A failure rejects with the child's stdout and stderr on the error.
const run = (cmd: string, args: string[], timeoutMs: number) =>
  execFileAsync(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });

async function checkJava(): Promise<void> {
  let banner: string;
  try {
    banner = (await run("java", ["-version"], 30_000)).stderr;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new KafkaUnavailable(e.code === "ENOENT" ? "no JDK (`java` is not on PATH)" : `java -version failed: ${e.message}`);
  }
  const major = Number(/version "(\d+)/.exec(banner)?.[1] ?? 0);
  if (major < 17) throw new KafkaUnavailable(`Kafka ${KAFKA_VERSION} needs Java 17 or later, found: ${banner.split("\n")[0]}`);
}

let jars: Promise<string> | undefined;

/**
 * The folder holding the broker's jars: `.data/kafka-jars/<version>/libs`, fetched once from Maven
 * Central with `mvn dependency:copy-dependencies` and reused by later runs. Concurrent callers
 * (parallel test files) each download into their own folder and the first rename wins.
 */
export function kafkaJars(): Promise<string> {
  jars ??= fetchJars();
  return jars;
}

async function fetchJars(): Promise<string> {
  const dir = path.join(DATA, "kafka-jars", KAFKA_VERSION);
  const libs = path.join(dir, "libs");
  await checkJava();
  if (existsSync(libs)) return libs;
  const partial = `${dir}.partial-${process.pid}`;
  await rm(partial, { recursive: true, force: true });
  try {
    await run(
      "mvn",
      [
        "-B",
        "-q",
        "-f",
        POM,
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        `-DoutputDirectory=${path.join(partial, "libs")}`,
        // An unreachable registry fails in seconds rather than Maven's default minutes.
        "-Dmaven.wagon.http.connectionTimeout=15000",
        "-Dmaven.wagon.http.readTimeout=60000",
        "-Dmaven.wagon.http.retryHandler.count=1",
      ],
      MAVEN_TIMEOUT_MS,
    );
  } catch (err) {
    await rm(partial, { recursive: true, force: true });
    const e = err as NodeJS.ErrnoException & { stdout?: string; killed?: boolean };
    if (e.code === "ENOENT") throw new KafkaUnavailable("no Maven (`mvn` is not on PATH)");
    if (e.killed)
      throw new KafkaUnavailable(`Maven did not fetch org.apache.kafka:kafka_2.13:${KAFKA_VERSION} within ${MAVEN_TIMEOUT_MS / 1000} s`);
    const reason = (e.stdout ?? "").split("\n").find((l) => l.includes("[ERROR]")) ?? e.message;
    throw new KafkaUnavailable(
      `Maven could not fetch org.apache.kafka:kafka_2.13:${KAFKA_VERSION} from Maven Central: ${reason.replace(/^\S*\[ERROR\]\S*\s*/, "").slice(0, 300)}`,
    );
  }
  try {
    await rename(partial, dir);
  } catch (err) {
    // Another process got there first: its folder is as good as ours.
    await rm(partial, { recursive: true, force: true });
    if (!existsSync(libs)) throw err;
  }
  return libs;
}

export interface KafkaBrokerOptions {
  /** Holds the broker's configuration, log and data; formatted on first use, reused afterwards. */
  dataDir: string;
  /** Client port; a free one when absent. Give the same ports to restart on the same data. */
  port?: number;
  controllerPort?: number;
}

/**
 * A single-node Apache Kafka broker in KRaft mode (broker and controller in one JVM) from the
 * Maven Central jars. `start` resolves once the broker answers metadata requests and has a
 * group coordinator; it fails (and kills the JVM) when that takes longer than 90 s.
 */
export class KafkaBroker {
  private proc: ChildProcess | undefined;
  /** Settles when the broker started last ends, however it ends, with how (`signal SIGKILL`, `code 1`). */
  exited: Promise<string> = Promise.resolve("not started");

  private constructor(
    readonly dataDir: string,
    readonly port: number,
    readonly controllerPort: number,
    private readonly libs: string,
  ) {}

  /** Resolves the jars (or throws KafkaUnavailable) and picks ports; does not start the broker. */
  static async create(o: KafkaBrokerOptions): Promise<KafkaBroker> {
    const libs = await kafkaJars();
    return new KafkaBroker(path.resolve(o.dataDir), o.port ?? (await freePort()), o.controllerPort ?? (await freePort()), libs);
  }

  /** `host:port` for KAFKA_BROKERS. */
  get url(): string {
    return `127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get logFile(): string {
    return path.join(this.dataDir, "broker.log");
  }

  async start(): Promise<void> {
    if (this.running) return;
    const config = await this.writeConfig();
    if (!existsSync(path.join(this.dataDir, "logs", "meta.properties"))) {
      // A cluster id is 16 random bytes in base64url; Kafka refuses one that starts with "-".
      const clusterId = `A${randomBytes(16).toString("base64url").slice(1)}`;
      await this.java(["kafka.tools.StorageTool", "format", "-t", clusterId, "-c", config]);
    }
    const log = openSync(this.logFile, "a");
    const proc = spawn("java", [...JVM_OPTS, "-cp", `${this.libs}/*`, "kafka.Kafka", config], { stdio: ["ignore", log, log] });
    closeSync(log);
    this.proc = proc;
    this.exited = once(proc, "exit").then(([code, signal]) => (signal ? `signal ${signal}` : `code ${code}`));
    // A test process that ends without stopping its broker must not leave a JVM behind.
    const killOnExit = () => proc.kill("SIGKILL");
    process.once("exit", killOnExit);
    proc.once("exit", () => process.off("exit", killOnExit));
    const died = this.exited.then((how) => {
      throw new Error(`Kafka broker exited (${how}) before it was ready; see ${this.logFile}:\n${this.logTail()}`);
    });
    died.catch(() => {});
    try {
      await Promise.race([this.answersMetadata(), died]);
    } catch (err) {
      await this.kill();
      throw err;
    }
  }

  /** SIGTERM and wait, SIGKILL after a deadline: a clean shutdown that cannot hang. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc || !this.running) return;
    const exited = once(proc, "exit");
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), STOP_DEADLINE_MS);
    await exited;
    clearTimeout(timer);
  }

  /** SIGKILL, as a crashed host or an OOM kill would end it. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || !this.running) return;
    const exited = once(proc, "exit");
    proc.kill("SIGKILL");
    await exited;
  }

  private async writeConfig(): Promise<string> {
    await mkdir(this.dataDir, { recursive: true });
    const file = path.join(this.dataDir, "server.properties");
    const settings = {
      "process.roles": "broker,controller",
      "node.id": 1,
      "controller.quorum.voters": `1@127.0.0.1:${this.controllerPort}`,
      listeners: `PLAINTEXT://127.0.0.1:${this.port},CONTROLLER://127.0.0.1:${this.controllerPort}`,
      "advertised.listeners": `PLAINTEXT://127.0.0.1:${this.port}`,
      "controller.listener.names": "CONTROLLER",
      "inter.broker.listener.name": "PLAINTEXT",
      "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
      "log.dirs": path.join(this.dataDir, "logs"),
      // Topics come from the code under test (the bus creates what it uses), never from a typo.
      "auto.create.topics.enable": false,
      // One node: every internal topic has one replica, and groups need not wait for more members.
      "offsets.topic.replication.factor": 1,
      "offsets.topic.num.partitions": 1,
      "transaction.state.log.replication.factor": 1,
      "transaction.state.log.min.isr": 1,
      "share.coordinator.state.topic.replication.factor": 1,
      "share.coordinator.state.topic.min.isr": 1,
      "group.initial.rebalance.delay.ms": 0,
      "num.network.threads": 2,
      "num.io.threads": 2,
    };
    await writeFile(
      file,
      `${Object.entries(settings)
        .map(([k, v]) => `${k}=${v}`)
        .join("\n")}\n`,
    );
    return file;
  }

  private async java(args: string[]): Promise<void> {
    try {
      await run("java", [...JVM_OPTS, "-cp", `${this.libs}/*`, ...args], 60_000);
    } catch (err) {
      const e = err as Error & { stdout?: string; stderr?: string };
      throw new Error(`${args[0]} failed: ${e.stdout ?? ""}${e.stderr ?? ""}`.trim());
    }
  }

  private async answersMetadata(): Promise<void> {
    const kafka = new Kafka({
      clientId: "opsplane-testing",
      brokers: [this.url],
      logLevel: logLevel.NOTHING,
      connectionTimeout: 1000,
      retry: { retries: 0 },
    });
    await eventually(
      `the Kafka broker on ${this.url} to answer metadata requests`,
      async () => {
        const admin = kafka.admin();
        try {
          await admin.connect();
          const { brokers, controller } = await admin.describeCluster();
          if (brokers.length === 0 || controller === null) return false;
          // Finding a group coordinator creates __consumer_offsets now, rather than under the
          // first consumer group, whose kafkajs would log "coordinator not available" errors.
          await admin.describeGroups(["opsplane-readiness"]);
          return true;
        } finally {
          await admin.disconnect();
        }
      },
      START_DEADLINE_MS,
      200,
    );
  }

  private logTail(): string {
    try {
      return readFileSync(this.logFile, "utf8").split("\n").slice(-20).join("\n");
    } catch {
      return "(no log)";
    }
  }
}
