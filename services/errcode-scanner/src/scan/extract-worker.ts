// The worker thread one bounded scan runs in (see isolated-extract.ts): it extracts, and hands
// containers and class rows to the thread that started it in batches, waiting for each to be
// taken so that a slow consumer (the service's table writer) holds the scan back, not memory.
import { once } from "node:events";
import { parentPort, workerData } from "node:worker_threads";
import type { Container } from "./archive.js";
import { extractErrorCodes, type ScanOptions } from "./engine.js";
import type { ScannedClass } from "./hierarchy.js";
import type { ClassRow, FromWorker, ToWorker, WorkerInput } from "./isolated-extract.js";
import { ArtifactError } from "./limits.js";

const BATCH = 64;
const port = parentPort;
if (!port) throw new Error("extract-worker runs only as a worker thread");
const input = workerData as WorkerInput;

let containers: Container[] = [];
let classes: ClassRow[] = [];

function post(message: FromWorker): void {
  (port as NonNullable<typeof port>).postMessage(message);
}

/** Sends what is pending and waits until the host has taken it (or tells the scan to stop). */
async function flush(): Promise<void> {
  if (!containers.length && !classes.length) return;
  post({ t: "batch", containers, classes });
  containers = [];
  classes = [];
  const [reply] = (await once(port as NonNullable<typeof port>, "message")) as [ToWorker];
  if (reply.t === "stop") throw new StopRequested();
}

class StopRequested extends Error {}

const row = (c: ScannedClass): ClassRow => ({
  name: c.name,
  superName: c.superName,
  interfaces: c.interfaces,
  kind: c.kind,
  visibility: c.visibility,
  major: c.major,
  location: c.location,
  containerId: c.containerId,
  methods: c.methods.map((m) => ({ name: m.name, desc: m.desc, length: m.length, invocations: m.invocations })),
});

async function main(): Promise<void> {
  const options: ScanOptions = { ...input.options };
  if (input.relay) {
    options.onContainer = (c) => void containers.push(c);
    options.onClass = async (c) => {
      classes.push(row(c));
      if (classes.length >= BATCH) await flush();
    };
  }
  try {
    const result = await extractErrorCodes(input.artifact, options);
    await flush();
    post({ t: "done", result });
  } catch (err) {
    if (err instanceof StopRequested) post({ t: "stopped" });
    else if (err instanceof ArtifactError) post({ t: "failed", artifactError: true, message: err.message });
    else post({ t: "failed", artifactError: false, message: (err as Error).message, stack: (err as Error).stack });
  }
}

void main();
