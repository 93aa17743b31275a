import { existsSync } from "node:fs";
import path from "node:path";
import type { WorkerOptions } from "node:worker_threads";

// Compiled, the worker sits next to this file; run from source (tsx), it is the built twin in dist/.
export const workerFile = [path.join(__dirname, "worker.js"), path.join(__dirname, "..", "dist", "worker.js")].find((file) =>
  existsSync(file),
);

/**
 * Options that keep the host's start-up hooks out of a sandbox worker. Node hands every Worker the
 * host's `execArgv` and re-reads `NODE_OPTIONS` from its env, so an app started with
 * `node --import some-agent` would run that agent again in each worker, and an agent that itself
 * uses the sandbox would start workers without end. The worker needs no host option: it only
 * runs QuickJS.
 */
export function isolatedWorkerOptions(): Pick<WorkerOptions, "execArgv" | "env"> {
  const { NODE_OPTIONS: _hostOptions, ...env } = process.env;
  return { execArgv: [], env };
}
