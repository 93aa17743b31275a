import path from "node:path";
import { Worker } from "node:worker_threads";
import type { FromNetThread, NetFailureInfo, ToNetThread } from "./net-protocol.js";

/**
 * The SDK's connections to the platform (config-center's HTTP API and socket, the Redis business
 * cache, monitor-center's reports) run on a worker thread of their own; the app's thread only
 * exchanges messages with it. Why: V8 optimises Node's socket, stream and event code for the
 * objects it has seen pass through it, and in one thread every connection passes through the same
 * functions. A service that only answers requests gets code fitted to its server sockets; client
 * connections beside them, even a call every few seconds, have V8 recompile that hot path for both
 * kinds. On the loan demo, which makes no outgoing calls, the SDK's connections on the app's thread
 * cost 3 to 6 % of its throughput before the first request passed the SDK's gate. (An app that
 * makes outgoing calls of its own pays this already, with or without the SDK.)
 *
 * One thread per process, started with the first connection. Like the sockets it holds, it keeps
 * the process alive only while a connection is open or a call is under way. If it dies, calls in
 * progress fail and open sockets and clients see an error and a close, as on a lost network; the
 * next connection starts a new one.
 */
class NetThread {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly calls = new Map<number, { resolve(m: FromNetThread): void; reject(err: NetFailure): void }>();
  /** Open sockets and Redis clients, by id: they hear their events. */
  private readonly endpoints = new Map<number, { kind: "ws" | "redis"; listener(m: FromNetThread): void }>();

  /** A request with one answer (an HTTP exchange, a Redis command). */
  call(message: (id: number) => ToNetThread): Promise<FromNetThread> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.post(message(id));
    });
  }

  /** Opens a socket or a client, whose events go to `listener` until `closed(id)`. */
  open(kind: "ws" | "redis", message: (id: number) => ToNetThread, listener: (m: FromNetThread) => void): number {
    const id = this.nextId++;
    this.endpoints.set(id, { kind, listener });
    this.post(message(id));
    return id;
  }

  /** An endpoint is gone (its close event came, or its owner let it go). */
  closed(id: number): void {
    if (this.endpoints.delete(id)) this.holdWhileBusy();
  }

  post(message: ToNetThread): void {
    try {
      this.worker ??= this.start();
    } catch (err) {
      // No thread to carry it (the worker's file is missing from the install): a failure like any other.
      this.lost(undefined, `it did not start: ${(err as Error).message}`);
      return;
    }
    this.worker.postMessage(message);
    this.holdWhileBusy();
  }

  private start(): Worker {
    const worker = startWorker();
    worker.on("message", (m: FromNetThread) => this.received(m));
    worker.on("error", (err) => this.lost(worker, err.message));
    worker.on("exit", (code) => this.lost(worker, `it exited with code ${code}`));
    worker.unref();
    return worker;
  }

  private received(m: FromNetThread): void {
    if (m.t === "ws" || m.t === "redis") {
      this.endpoints.get(m.id)?.listener(m);
      return;
    }
    const call = this.calls.get(m.id);
    if (!call) return;
    this.calls.delete(m.id);
    this.holdWhileBusy();
    if (m.t === "failed") call.reject(new NetFailure(m.failure));
    else call.resolve(m);
  }

  private holdWhileBusy(): void {
    if (this.calls.size + this.endpoints.size > 0) this.worker?.ref();
    else this.worker?.unref();
  }

  /** The thread died (or never started): what was under way fails, later; the next message starts another. */
  private lost(worker: Worker | undefined, why: string): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    const reason = `the SDK's network thread stopped (${why})`;
    const calls = [...this.calls.values()];
    this.calls.clear();
    const endpoints = [...this.endpoints];
    for (const [id, { kind }] of endpoints) if (kind === "redis") this.endpoints.delete(id);
    this.holdWhileBusy();
    // Told from a fresh turn, as events from the thread would be: never inside the caller's own call.
    setImmediate(() => {
      for (const call of calls) call.reject(new NetFailure({ timedOut: false, reason }));
      for (const [id, { kind, listener }] of endpoints) {
        // A Redis client is gone with the thread: its owner opens another for its next command.
        if (kind === "redis") listener({ t: "redis", id, event: { type: "lost", message: reason } });
        else {
          listener({ t: "ws", id, event: { type: "error", message: reason } });
          listener({ t: "ws", id, event: { type: "close", code: 1006, reason: "" } });
        }
      }
    });
  }
}

/**
 * The worker's entry beside this file: JavaScript in the built package; when the SDK runs from its
 * TypeScript sources (its own tests, under tsx), tsx's require hook is loaded into the worker first.
 * None of the app's node flags: `--import @opsplane/sdk/auto` would load a second SDK's code there,
 * and the thread runs nothing but this entry.
 */
function startWorker(): Worker {
  const entry = path.join(__dirname, `net-worker${path.extname(__filename)}`);
  if (!entry.endsWith(".ts")) return new Worker(entry, { execArgv: [] });
  const load = `require(${JSON.stringify(require.resolve("tsx/cjs"))}); require(${JSON.stringify(entry)});`;
  return new Worker(load, { eval: true, execArgv: [] });
}

export const netThread = new NetThread();

/** A call that got no answer: `timedOut` after its timeout, else `reason` says why (ECONNREFUSED, ENOTFOUND…). */
export class NetFailure extends Error {
  override readonly name = "NetFailure";
  readonly timedOut: boolean;
  readonly reason: string;

  constructor(info: NetFailureInfo) {
    super(info.timedOut ? "no answer in time" : info.reason);
    this.timedOut = info.timedOut;
    this.reason = info.reason;
  }
}

export interface HttpAnswer {
  status: number;
  retryAfter: string | null;
  text: string;
}

/** An HTTP exchange on the network thread, given up after `timeoutMs` (body included); rejects with a NetFailure. */
export async function httpCall(
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string; timeoutMs: number },
): Promise<HttpAnswer> {
  const m = await netThread.call((id) => ({ t: "http", id, url, ...init }));
  if (m.t !== "http") throw new Error(`network thread answered an HTTP call with ${m.t}`);
  return { status: m.status, retryAfter: m.retryAfter, text: m.text };
}
