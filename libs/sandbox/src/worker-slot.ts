import { Worker } from "node:worker_threads";
import type { SandboxFailure } from "./errors.js";
import type { ScriptSource, WorkerMessage, WorkerReply, WorkerRequest } from "./protocol.js";
import { isolatedWorkerOptions, workerFile } from "./worker-isolation.js";

/** A script as a slot sees it: enough to (re)load it into whichever worker is current. */
export interface PlacedScript extends ScriptSource {
  readonly id: number;
  /** Worker generation that holds the script, if any. */
  loadedIn: number | undefined;
}

type Job =
  | {
      type: "load" | "call";
      script: PlacedScript;
      input: string;
      resolve: (reply: WorkerReply) => void;
      /** Set while a call with a wait limit waits behind others: it gives up when it fires. */
      waiting?: NodeJS.Timeout;
    }
  | { type: "dispose"; id: number };

const failed = (failure: Omit<SandboxFailure, "logs">): WorkerReply => ({ ok: false, fatal: false, failure: { ...failure, logs: [] } });

/**
 * One worker thread and its FIFO of requests. One request is in flight at a time so the watchdog
 * knows when it started; a worker that dies or overruns is replaced and scripts reload into the
 * new one on their next call.
 */
export class WorkerSlot {
  private worker: Worker | undefined;
  private ready = false;
  private generation = 0;
  /**
   * Requests waiting, by script, taken in turn: one script's flood of calls (each run to its time limit)
   * delays another script's next call by one call of each script ahead of it, not by the whole flood.
   * Within a script, first come first served (its load before its calls, its dispose after them).
   */
  private readonly queues = new Map<number, Job[]>();
  private inFlight: { job: Extract<Job, { resolve: unknown }>; generation: number; timer: NodeJS.Timeout } | undefined;
  private closed = false;
  private lastError = "";

  constructor(private readonly options: { watchdogGraceMs: number; workerStackMb: number }) {}

  /** Starts the worker and resolves once its QuickJS module is loaded. */
  start(): Promise<void> {
    const worker = this.spawn();
    return new Promise((resolve, reject) => {
      worker.on("message", (message: WorkerMessage) => message === "ready" && resolve());
      worker.once("exit", (code) => reject(new Error(`sandbox worker failed to start (exit code ${code})`)));
    });
  }

  /**
   * Queues a request. With `waitLimitMs`, a call that has not started within it (the worker busy with
   * the calls before it) is not run: it resolves as unavailable, so a flood of slow calls cannot hold
   * the ones behind it for as long as the flood lasts.
   */
  request(type: "load" | "call", script: PlacedScript, input = "", waitLimitMs?: number): Promise<WorkerReply> {
    if (this.closed) return Promise.resolve(failed({ kind: "unavailable", message: "sandbox is closed" }));
    return new Promise((resolve) => {
      const job: Extract<Job, { resolve: unknown }> = { type, script, input, resolve };
      this.enqueue(script.id, job);
      this.pump();
      const waiting = this.queues.get(script.id);
      if (waitLimitMs !== undefined && waiting?.includes(job))
        job.waiting = setTimeout(() => {
          const at = waiting.indexOf(job);
          if (at < 0) return;
          waiting.splice(at, 1);
          if (!waiting.length && this.queues.get(script.id) === waiting) this.queues.delete(script.id);
          resolve(failed({ kind: "unavailable", message: `the sandbox is busy: the call did not start within ${waitLimitMs} ms` }));
        }, waitLimitMs);
    });
  }

  private enqueue(scriptId: number, job: Job): void {
    const waiting = this.queues.get(scriptId);
    if (waiting) waiting.push(job);
    else this.queues.set(scriptId, [job]);
  }

  /** The first request of the script whose turn it is; that script then goes to the back of the line. */
  private next(): Job | undefined {
    const first = this.queues.entries().next();
    if (first.done) return undefined;
    const [scriptId, waiting] = first.value;
    const job = waiting.shift();
    this.queues.delete(scriptId);
    if (waiting.length) this.queues.set(scriptId, waiting);
    return job;
  }

  dispose(script: PlacedScript): void {
    const held = script.loadedIn === this.generation && this.worker !== undefined;
    script.loadedIn = undefined;
    if (this.closed || !held) return;
    this.enqueue(script.id, { type: "dispose", id: script.id });
    this.pump();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.failQueued("sandbox is closed");
    this.finish(failed({ kind: "unavailable", message: "sandbox is closed" }));
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private spawn(): Worker {
    if (!workerFile) throw new Error("sandbox worker not built: run `npx tsc -b` (dist/worker.js is missing)");
    const worker = new Worker(workerFile, { ...isolatedWorkerOptions(), resourceLimits: { stackSizeMb: this.options.workerStackMb } });
    this.worker = worker;
    this.ready = false;
    this.generation++;
    worker.on("message", (message: WorkerMessage) => this.onMessage(worker, message));
    worker.on("error", (error) => {
      if (worker === this.worker) this.lastError = error.message;
    });
    worker.on("exit", (code) => this.onExit(worker, code));
    return worker;
  }

  private pump(): void {
    if (this.closed || this.inFlight) return;
    const worker = this.worker;
    if (!worker) {
      if (this.queues.size === 0) return;
      try {
        this.spawn();
      } catch (error) {
        this.failQueued(`sandbox worker failed to start: ${(error as Error).message}`);
      }
      return;
    }
    if (!this.ready) return;
    let job = this.next();
    while (job?.type === "dispose") {
      worker.postMessage({ type: "dispose", id: job.id } satisfies WorkerRequest);
      job = this.next();
    }
    if (!job) {
      // An idle sandbox must not keep the process alive.
      worker.unref();
      return;
    }
    worker.ref();
    clearTimeout(job.waiting);
    const { script } = job;
    const reload = script.loadedIn !== this.generation;
    const load = { source: script.source, limits: script.limits };
    const request: WorkerRequest =
      job.type === "load"
        ? { type: "load", id: script.id, ...load }
        : { type: "call", id: script.id, input: job.input, ...(reload && { load }) };
    worker.postMessage(request);
    // The VM stops a runaway script itself; this only catches a worker stuck where the interrupt
    // cannot reach (native code). Budget: load + call + reading the error, each up to the time limit.
    const { timeLimitMs } = script.limits;
    const budget = timeLimitMs * (reload ? 3 : 2) + this.options.watchdogGraceMs;
    const timer = setTimeout(() => this.overran(worker, timeLimitMs), budget);
    this.inFlight = { job, generation: this.generation, timer };
  }

  private onMessage(worker: Worker, message: WorkerMessage): void {
    if (worker !== this.worker) return;
    if (message === "ready") {
      this.ready = true;
    } else {
      const current = this.inFlight;
      if (current && (message.ok || message.failure.kind !== "compile")) current.job.script.loadedIn = current.generation;
      if (!message.ok && message.fatal) this.retire();
      this.finish(message);
    }
    this.pump();
  }

  private onExit(worker: Worker, code: number): void {
    if (worker !== this.worker) return;
    const detail = this.lastError ? `: ${this.lastError}` : "";
    this.retire();
    this.finish(failed({ kind: "crash", message: `sandbox worker stopped unexpectedly (exit code ${code})${detail}` }));
    // A worker that cannot even start would otherwise be respawned forever; the calls waiting for it are told.
    if (!this.ready) this.failQueued(`sandbox worker failed to start${detail}`);
    this.pump();
  }

  /** The calls waiting here never run: the sandbox's reason, not their scripts' (SandboxUnavailableError). */
  private failQueued(message: string): void {
    const waiting = [...this.queues.values()].flat();
    this.queues.clear();
    for (const job of waiting)
      if (job.type !== "dispose") {
        clearTimeout(job.waiting);
        job.resolve(failed({ kind: "unavailable", message }));
      }
  }

  private overran(worker: Worker, timeLimitMs: number): void {
    if (worker !== this.worker) return;
    this.retire();
    void worker.terminate();
    this.finish(failed({ kind: "timeout", message: `script exceeded its time limit of ${timeLimitMs} ms (its worker was stopped)` }));
    this.pump();
  }

  /** Forgets the current worker; the next job spawns a fresh one, and every script reloads into it. */
  private retire(): void {
    this.worker = undefined;
    this.lastError = "";
  }

  private finish(reply: WorkerReply): void {
    const current = this.inFlight;
    if (!current) return;
    this.inFlight = undefined;
    clearTimeout(current.timer);
    current.job.resolve(reply);
  }
}
