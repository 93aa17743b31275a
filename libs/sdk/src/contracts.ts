/**
 * The seams between the SDK's parts: what config-center sends, what the edge (adapters) asks the
 * governance gate, and what every request reports to the statistics and plugins. Each part is
 * written against these types only, so it can be read and tested on its own.
 */
import type { IncomingHttpHeaders } from "node:http";

/** One line of output: the SDK never throws at the app for a platform problem, it logs once and goes on. */
export interface SdkLogger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** A config value as config-center sends it in metadata and change messages (its README, "Instance protocol"). */
export interface ConfigValue {
  kind: "business" | "technical" | "governance";
  key: string;
  app: string;
  env: string;
  category?: string;
  revision?: number;
  gray?: boolean;
  value?: unknown;
  /** No value for this instance any more. */
  deleted?: boolean;
  /** A business value too large to push: read it from Redis or config-center. */
  fetch?: boolean;
  /** A technical value config-center could not resolve: keep the old one. */
  error?: string;
}

/** A request as the edge sees it, before the app's handler runs. */
export interface EdgeRequest {
  /** The interface (or queue, or job) code: what governance rules and reports are keyed by. */
  code: string;
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** Who calls: the `x-opsplane-caller` header, or what the adapter was told. */
  caller?: string;
  /** Live parameters a `route` condition `by: "param"` can test (query string, route params). */
  params?: Record<string, string>;
  /**
   * The query string: parsed by the framework, or raw (`a=1&b=2`, no `?`) where it is not, so it is
   * parsed only when a rule needs it.
   */
  query?: Record<string, unknown> | string;
  /** The parsed body, where the framework has one before the handler (fastify preHandler). */
  body?: unknown;
  /**
   * The adapter can call `enter` again once the body is parsed (fastify: onRequest, then
   * preHandler). Governance answers `defer` when a rule of this code needs the body.
   */
  bodyFollows?: boolean;
}

/** How a request ended, for breakers, statistics and plugins. */
export interface RequestOutcome {
  statusCode: number;
  /** A 5xx, a thrown error, or an aborted request. */
  failed: boolean;
  durationMs: number;
}

/** A response the edge writes instead of calling the app's handler. */
export interface EdgeResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: string | Buffer;
  /** A baffle's configured delay before answering. */
  delayMs?: number;
}

/** Why the edge answered instead of the handler; the value of `x-opsplane-governance` and of report counters. */
export type EdgeReason =
  | "route-closed"
  | "rate-limited"
  | "concurrency-limited"
  | "circuit-open"
  | "baffle"
  | "interface-offline"
  | "instance-offline";

/**
 * `enter` decides synchronously and keeps no reference to the request once it returns, so an
 * adapter may reuse one request object. Every `proceed` is ended exactly once (`Edge.finish`); the
 * response objects are shared: write them, never change them.
 */
export type EdgeDecision =
  | EdgeCall
  | { action: "respond"; reason: EdgeReason; response: EdgeResponse | Promise<EdgeResponse> }
  /** Only for a request with `bodyFollows`: nothing was counted; call `enter` again with the body. */
  | { action: "defer" };

/** A call governance let through. Shared by the calls of a code where it can be: it holds no per-request state. */
export interface EdgeCall {
  readonly action: "proceed";
  /** Ends the call; `now` is the governance clock's time (read when left out). */
  finish(outcome: RequestOutcome, now?: number): void;
}

/**
 * What adapters call for every request: the governance gate, composed with timing, statistics and
 * plugins. A request costs two clock reads (`now()` on arrival, one in `finish`) and no allocation:
 * the adapter keeps the call and its arrival time until it finishes it.
 */
export interface Edge {
  /** The monotonic clock (ms) calls are timed on. */
  now(): number;
  /** `arrivedAt`: `now()` when the request arrived. */
  enter(request: EdgeRequest, arrivedAt: number): EdgeDecision;
  /**
   * Ends a call `enter` let through, exactly once: times it from `arrivedAt`, then governance
   * (breakers count failures and slow calls) and the observers see it.
   */
  finish(call: EdgeCall, code: string, arrivedAt: number, statusCode: number, failed: boolean): void;
}

/**
 * Sees every request an adapter handled (statistics, plugins). The outcome object is the edge's
 * own, reused for the next request: read it during the call, copy what you keep.
 */
export interface RequestObserver {
  requestFinished(code: string, outcome: RequestOutcome, answeredBy?: EdgeReason): void;
}

/** An authenticated call to config-center's instance API (token header added, retried by its owner). */
export interface ConfigCenterCaller {
  /** POST/PUT/GET a JSON body to a path under the config-center base URL; throws on network errors. */
  request(method: "GET" | "POST" | "PUT", path: string, body?: unknown): Promise<{ status: number; body: unknown }>;
}

/** A connection or worker pool the app owns, reported against its maximum in self-test reports. */
export interface PoolProbe {
  name: string;
  kind: "connection" | "worker";
  /** In use now and the configured maximum. */
  read(): { used: number; max: number; waiting?: number };
}

/** What the terminal needs from governance: the commands it applies and the state its status page shows. */
export interface GovernanceControl {
  /** Merges `cmd` into the code's override (`null` removes it); answers the override now in force. */
  override(code: string, cmd: LocalOverride | null): LocalOverride;
  setInstanceOffline(offline: boolean): void;
  describe(): GovernanceState;
}

/**
 * A terminal command's local change to one interface's governance (control commands, step 16):
 * it adds to the pushed rules (the stricter applies), lasts until cleared or restart, and is this
 * instance's only. Fields left out keep their current value; `null` clears a field.
 */
export interface LocalOverride {
  /** Throttle: at most this many calls per second. */
  tps?: number | null;
  /** Throttle: at most this many calls in flight. */
  concurrency?: number | null;
  /** Break: answer 503 circuit-open until cleared. */
  breakOpen?: boolean | null;
  /** Take the interface offline: answer 503 interface-offline until cleared. */
  offline?: boolean | null;
}

/** A breaker as the terminal shows it. */
export interface BreakerState {
  state: "closed" | "open" | "half-open";
  /** Calls and failures (errors and slow calls) in the current window. */
  calls: number;
  failures: number;
  /** While open: time left before the trial call. */
  retryInMs?: number;
}

/** What governance applies now, for the terminal and reports. */
export interface GovernanceState {
  instanceOffline: boolean;
  interfaces: Array<{
    code: string;
    /** The pushed rules in force, by type (`route`, `baffle`, `rate-limit`, `circuit-breaker`), with revisions. */
    rules: Record<string, { revision?: number; value: unknown }>;
    override?: LocalOverride;
    breaker?: BreakerState;
    inFlight: number;
  }>;
  /** Pushed values that did not parse and were ignored (the previous rule of the key stays). */
  ignored: Array<{ key: string; revision?: number; reason: string }>;
}
