import path from "node:path";
import { Worker } from "node:worker_threads";
import type { Container } from "./archive.js";
import type { MethodModel } from "./classfile.js";
import type { ExtractionResult, ScanOptions } from "./engine.js";
import type { ScannedClass } from "./hierarchy.js";
import { ArtifactError } from "./limits.js";

/** What one scan may use: it runs in a worker thread that is stopped when it goes past either. */
export interface ScanBounds {
  /** Heap of the scan's thread (V8 old generation), in MiB. */
  maxHeapMb: number;
  /** Wall-clock time of the scan (reading, parsing and extraction). */
  timeLimitMs: number;
}

export const defaultBounds: ScanBounds = { maxHeapMb: 2048, timeLimitMs: 30 * 60_000 };

/** What the tables need of a class (the worker sends no more than this across threads). */
export type ClassRow = Pick<
  ScannedClass,
  "name" | "superName" | "interfaces" | "kind" | "visibility" | "major" | "location" | "containerId"
> & { methods: Array<Pick<MethodModel, "name" | "desc" | "length" | "invocations">> };

export interface RowHooks {
  onContainer?: (c: Container) => void;
  /** Awaited before the scan reads on; throwing stops the scan with that error. */
  onClass?: (c: ClassRow) => void | Promise<void>;
}

/** The scan went past its bounds: the artifact is too big or pathological for the scanner. */
export class ScanBoundsError extends Error {}

export interface WorkerInput {
  artifact: string;
  options: Omit<ScanOptions, "onClass" | "onContainer">;
  relay: boolean;
}
export type FromWorker =
  | { t: "batch"; containers: Container[]; classes: ClassRow[] }
  | { t: "done"; result: ExtractionResult }
  | { t: "stopped" }
  | { t: "failed"; artifactError: boolean; message: string; stack?: string };
export type ToWorker = { t: "more" } | { t: "stop" };

// Built, the worker is the .js beside this file. Run from source (tests, under tsx), it is the .ts
// beside it, loaded through tsx's require hook: a worker does not inherit the host's loader.
const fromSource = path.extname(__filename) === ".ts";
const workerFile = path.join(__dirname, `extract-worker${path.extname(__filename)}`);
const workerEntry = fromSource ? `require("tsx/cjs"); require(${JSON.stringify(workerFile)});` : workerFile;

/**
 * Extracts in a worker thread whose heap and time are bounded, so an artifact that would exhaust
 * memory or never finish fails its own scan with a reason instead of taking the process down.
 */
export function extractBounded(
  artifact: string,
  options: Omit<ScanOptions, "onClass" | "onContainer">,
  hooks: RowHooks = {},
  bounds: ScanBounds = defaultBounds,
): Promise<ExtractionResult> {
  const relay = Boolean(hooks.onClass || hooks.onContainer);
  const worker = new Worker(workerEntry, {
    eval: fromSource,
    // The host's start-up options (an agent, a loader) have no business in the scan's thread.
    execArgv: [],
    workerData: { artifact, options, relay } satisfies WorkerInput,
    resourceLimits: { maxOldGenerationSizeMb: bounds.maxHeapMb },
    stdout: false,
    stderr: false,
  });
  return new Promise<ExtractionResult>((resolve, reject) => {
    let settled = false;
    let hookError: unknown;
    const finish = (err: unknown, result?: ExtractionResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      if (err) reject(err);
      else resolve(result as ExtractionResult);
    };
    const timer = setTimeout(
      () => finish(new ScanBoundsError(`the scan took longer than its ${Math.round(bounds.timeLimitMs / 1000)} s time limit`)),
      bounds.timeLimitMs,
    );
    worker.on("message", (m: FromWorker) => {
      if (m.t === "batch") void relayBatch(m);
      else if (m.t === "done") finish(undefined, m.result);
      else if (m.t === "stopped") finish(hookError);
      else if (m.artifactError) finish(new ArtifactError(m.message));
      else finish(Object.assign(new Error(m.message), { stack: m.stack }));
    });
    worker.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ERR_WORKER_OUT_OF_MEMORY")
        finish(new ScanBoundsError(`the scan ran out of memory (its heap is limited to ${bounds.maxHeapMb} MiB)`));
      else finish(err);
    });
    worker.on("exit", (code) => finish(new Error(`the scan's worker thread exited (code ${code}) without a result`)));

    const relayBatch = async (m: { containers: Container[]; classes: ClassRow[] }) => {
      try {
        for (const c of m.containers) hooks.onContainer?.(c);
        for (const c of m.classes) await hooks.onClass?.(c);
        if (!settled) worker.postMessage({ t: "more" } satisfies ToWorker);
      } catch (err) {
        hookError = err;
        if (!settled) worker.postMessage({ t: "stop" } satisfies ToWorker);
      }
    };
  });
}
