import { randomBytes } from "node:crypto";
import type { RequestListener } from "node:http";
import { hostname, networkInterfaces } from "node:os";
import type { AdapterContext } from "./adapters/adapter-context.js";
import { type ExpressAdapter, expressAdapter } from "./adapters/express.js";
import { fastifyPlugin, type OpsplaneFastifyPlugin } from "./adapters/fastify.js";
import { createGuard, type Guard } from "./adapters/guard.js";
import { type HttpWrapOptions, wrapHttpHandler } from "./adapters/node-http.js";
import { RoutesSeen } from "./adapters/routes-seen.js";
import { BusinessParams } from "./business-params.js";
import { ConfigCenterError, ConfigClient, type RegistrationRequest } from "./config-client.js";
import { ConfigSocket } from "./config-socket.js";
import type { ConfigValue, PoolProbe, SdkLogger } from "./contracts.js";
import { composeEdge } from "./edge.js";
import { Governance } from "./governance/governance.js";
import { DistributedLock } from "./locks.js";
import { createLogger, OnceLog } from "./logger.js";
import { checkOptions, optionsFromEnv, type SdkOptions } from "./options.js";
import { PluginHost } from "./plugins.js";
import type { ChangesMessage, RegistrationAnswer } from "./protocol.js";
import { Reporter } from "./reports/reporter.js";
import { type ResourceDeclaration, ResourcesReport } from "./resources-report.js";
import { backoffDelay, defaultRetry } from "./retry.js";
import type { ChangeHook } from "./run-hooks.js";
import { DistributedSequence } from "./sequences.js";
import { type SnapshotContent, SnapshotStore } from "./snapshot.js";
import { InterfaceStats } from "./stats/interface-stats.js";
import { TechnicalConfig } from "./technical-config.js";
import { type DialCheck, DialChecks } from "./terminal/dial.js";
import { gracefulShutdown } from "./terminal/shutdown.js";
import { Terminal } from "./terminal/terminal.js";

/** `joined`: registered, on config-center's configuration, listening. `degraded`: on the snapshot or local configuration. */
export type SdkState = "joined" | "degraded";

/** config-center refused this app's credentials (seed step 2: a refused app does not start). */
export class SdkRefusedError extends Error {
  override name = "SdkRefusedError";
  constructor(
    message: string,
    readonly status: number | undefined,
  ) {
    super(message);
  }
}

export interface TechnicalConfigView {
  get<T = unknown>(key: string): T | undefined;
  get<T>(key: string, fallback: T): T;
  /** Every key with a value, config-center's above local. */
  entries(): Record<string, unknown>;
  onChange<T = unknown>(key: string, rebuild: ChangeHook<T>): () => void;
}

export interface BusinessParamsView {
  get<T = unknown>(key: string): T | undefined;
  load<T = unknown>(key: string): Promise<T | undefined>;
  onChange<T = unknown>(key: string, listener: ChangeHook<T>): () => void;
}

export interface Sdk {
  /**
   * "joined": registered, on config-center's configuration, its socket open or down for less than
   * the heartbeat timeout. "degraded": not registered (yet), stopped by config-center, or the socket
   * down longer than the heartbeat timeout (config-center counts the instance offline then too).
   */
  readonly state: SdkState;
  /** The config socket is open now: pushed changes arrive. False at once when it drops. */
  readonly connected: boolean;
  /** The registered instance id (undefined until registered). */
  readonly instanceId: string | undefined;
  /** config-center's version the configuration in use is at (0: local configuration only). */
  readonly version: number;
  readonly config: TechnicalConfigView;
  readonly business: BusinessParamsView;
  /** `await app.register(sdk.fastify())` before the routes: governance and statistics per route. */
  fastify(): OpsplaneFastifyPlugin;
  /** `app.use(sdk.express())`, or per route `sdk.express.route(code?)`. */
  readonly express: ExpressAdapter;
  /** `http.createServer(sdk.http(handler))`. */
  http(handler: RequestListener, options?: HttpWrapOptions): RequestListener;
  /** The same gate around a queue consumer, a job or any async call: `sdk.guard(code, fn)` returns the guarded function. */
  readonly guard: Guard;
  /** The app's own check, run by each dial test with the monitor's challenge. */
  dialCheck(name: string, check: DialCheck, options?: { timeoutMs?: number }): void;
  /** A connection or worker pool reported against its maximum (helpers: pgPool, ioredisPool, undiciPool, workerPool). */
  pool(probe: PoolProbe): void;
  /** Interfaces, queues and jobs to report (step 11); reported again when they change. */
  declare(resources: ResourceDeclaration): void;
  lock(name: string): DistributedLock;
  sequence(name: string): DistributedSequence;
  /** Graceful: the last report, the socket closed (config-center marks the instance offline), the snapshot written. */
  close(): Promise<void>;
}

/**
 * Joins the platform (seed start-up steps 1-12) and resolves once the app may serve: on
 * config-center's configuration (`state: "joined"`), or, when config-center cannot be joined within
 * `startupTimeoutMs` or refuses the registration, on the last snapshot or the local configuration
 * (`state: "degraded"`), joining in the background. Rejects (SdkRefusedError) when config-center
 * refuses the app's credentials, and (SdkOptionsError) when a setting is missing.
 */
export async function startSdk(options?: SdkOptions): Promise<Sdk> {
  const o = options ?? optionsFromEnv();
  checkOptions(o);
  const sdk = new SdkInstance(o);
  await sdk.start();
  return sdk;
}

/** The adapters' context of a started SDK: auto mode hooks servers with it. */
export function adapterContextOf(sdk: Sdk): AdapterContext {
  return (sdk as SdkInstance).adapters;
}

type Outcome = "joined" | "degrade" | SdkRefusedError;

class SdkInstance implements Sdk {
  state: SdkState = "degraded";
  connected = false;
  /** Since when the socket is not open (undefined while it is, or before there is one). */
  private disconnectedAt: number | undefined;
  private downTimer: NodeJS.Timeout | undefined;
  version = 0;
  readonly config: TechnicalConfig;
  readonly business: BusinessParams;
  private readonly log: SdkLogger;
  private readonly client: ConfigClient;
  private readonly snapshot: SnapshotStore | undefined;
  private readonly resources: ResourcesReport;
  private readonly joinLog: OnceLog;
  private readonly locks = new Map<string, DistributedLock>();
  private readonly sequences = new Map<string, DistributedSequence>();
  private readonly governanceValues = new Map<string, ConfigValue>();
  private readonly holder: string;
  private readonly governance: Governance;
  private readonly stats: InterfaceStats;
  private readonly plugins: PluginHost;
  private readonly reporter: Reporter;
  private readonly dialChecks = new DialChecks();
  private readonly terminal: Terminal;
  private readonly terminalLog: OnceLog;
  readonly adapters: AdapterContext;
  readonly express: ExpressAdapter;
  readonly guard: Guard;
  private registration: RegistrationAnswer | undefined;
  private socket: ConfigSocket | undefined;
  /** Where the configuration in use came from: a snapshot never replaces config-center's. */
  private source: "local" | "snapshot" | "center" = "local";
  /** Configuration changes (metadata, snapshot, pushes) are applied one at a time, in order. */
  private applying: Promise<void> = Promise.resolve();
  private closed = false;
  /** The join step under way (or that failed last): token, registration or metadata. */
  private step = "token";
  private lastFailure: { kind: string; message: string } | undefined;
  private joining: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /** Set while start-up waits: told of each failed join attempt, it decides whether start-up waits on. */
  private startup: ((err: unknown, step: string) => void) | undefined;

  constructor(private readonly o: SdkOptions) {
    this.log = o.log ?? createLogger(o.logLevel ?? "info");
    this.joinLog = new OnceLog(this.log);
    const timeoutMs = o.requestTimeoutMs ?? 5_000;
    this.client = new ConfigClient({ baseUrl: o.configUrl.replace(/\/+$/, ""), appId: o.appId, secret: o.secret, timeoutMs });
    const hookTimeoutMs = o.hookTimeoutMs ?? 30_000;
    this.config = new TechnicalConfig(o.localConfig ?? {}, this.log, hookTimeoutMs);
    this.business = new BusinessParams({
      appId: o.appId,
      env: o.env,
      redisUrl: o.redisUrl,
      redisPrefix: o.redisPrefix ?? "config-center:",
      fromCenter: (keys) => this.client.business(keys),
      log: this.log,
      resyncMs: o.businessResyncMs ?? 30_000,
      timeoutMs,
      hookTimeoutMs,
    });
    this.snapshot =
      o.snapshotDir === undefined
        ? undefined
        : new SnapshotStore({
            dir: o.snapshotDir,
            appId: o.appId,
            env: o.env,
            secret: o.secret,
            log: this.log,
            collect: () => this.content(),
          });
    this.resources = new ResourcesReport({
      send: (body) => this.client.reportResources(body),
      isRefusal: (err) => err instanceof ConfigCenterError && err.kind === "refused",
      log: this.log,
      retryBaseMs: o.retryBaseMs ?? defaultRetry.baseMs,
      retryMaxMs: o.retryMaxMs ?? defaultRetry.maxMs,
    });
    this.holder = `${o.hostName ?? hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;

    this.governance = new Governance({ log: this.log, providers: this.providers() });
    this.stats = new InterfaceStats({
      thresholds: o.thresholds,
      maxQps: (code) => (this.governanceValues.get(`rate-limit/${code}`)?.value as { tps?: number } | undefined)?.tps,
    });
    this.plugins = new PluginHost(this.log);
    const routes = new RoutesSeen();
    routes.onAdded((seen) => this.resources.discover("interfaces", seen));
    this.adapters = { edge: composeEdge(this.governance, [this.stats, this.plugins], this.log), routes, log: this.log };
    this.express = expressAdapter(this.adapters);
    this.guard = createGuard(this.adapters.edge);
    this.reporter = new Reporter({
      app: o.appId,
      env: o.env,
      instanceId: () => this.instanceId,
      stats: this.stats,
      log: this.log,
      plugins: this.plugins,
      intervalMs: o.reportIntervalMs,
      url: o.reportUrl,
      timeoutMs,
    });
    this.terminalLog = new OnceLog(this.log);
    this.terminal = new Terminal({
      port: o.terminalPort ?? 1818,
      host: o.terminalHost,
      instanceId: () => this.instanceId,
      log: this.log,
      keys: o.terminalKeys?.join(","),
      governance: this.governance,
      reporter: this.reporter,
      dialChecks: this.dialChecks,
      onShutdown:
        o.onShutdown ?? (({ graceMs }) => gracefulShutdown({ servers: () => [], close: () => this.close(), log: this.log })(graceMs)),
      status: () => ({
        state: this.state,
        connected: this.connected,
        ...(this.disconnectedAt === undefined ? {} : { disconnectedForMs: Date.now() - this.disconnectedAt }),
        app: o.appId,
        env: o.env,
        version: this.version,
      }),
    });
    if (o.resources) this.declare(o.resources);
  }

  get instanceId(): string | undefined {
    return this.registration?.instanceId;
  }

  async start(): Promise<void> {
    await this.plugins.load(this.o.plugins ?? []);
    const timeoutMs = this.o.startupTimeoutMs ?? 20_000;
    let timer: NodeJS.Timeout | undefined;
    const outcome = await new Promise<Outcome>((resolve) => {
      timer = setTimeout(() => resolve("degrade"), timeoutMs);
      this.startup = (err, step) => {
        const e = err instanceof ConfigCenterError ? err : undefined;
        // Seed step 2: credentials refused, the app does not start. Step 6: a refused registration degrades.
        if (e?.kind === "refused" && step === "token") resolve(new SdkRefusedError(e.message, e.status));
        else if (e?.kind === "refused") resolve("degrade");
        else if (e?.kind === "throttled" && (e.retryAfterMs ?? 0) >= timeoutMs) resolve("degrade");
      };
      this.joining = this.joinLoop().then(() => resolve("joined"));
    });
    clearTimeout(timer);
    if (outcome instanceof SdkRefusedError) {
      this.startup = undefined;
      await this.close();
      throw outcome;
    }
    // Until degrade() has said how the app started, the join loop's failures stay unlogged: a failure
    // logged first (while the snapshot loads) would take its kind, and the start-up line would be lost.
    if (outcome === "degrade") await this.degrade();
    this.startup = undefined;
  }

  fastify(): OpsplaneFastifyPlugin {
    return fastifyPlugin(this.adapters);
  }

  http(handler: RequestListener, options?: HttpWrapOptions): RequestListener {
    return wrapHttpHandler(this.adapters, handler, options);
  }

  dialCheck(name: string, check: DialCheck, options?: { timeoutMs?: number }): void {
    this.dialChecks.add(name, check, options);
  }

  pool(probe: PoolProbe): void {
    this.reporter.addPool(probe);
  }

  declare(resources: ResourceDeclaration): void {
    this.resources.declare(resources);
    // Declared codes show in reports before their first call.
    this.stats.track([...(resources.interfaces ?? []), ...(resources.queues ?? []), ...(resources.jobs ?? [])].map((r) => r.code));
  }

  lock(name: string): DistributedLock {
    const lock = this.locks.get(name) ?? new DistributedLock(this.client, name, this.holder);
    this.locks.set(name, lock);
    return lock;
  }

  sequence(name: string): DistributedSequence {
    const seq = this.sequences.get(name) ?? new DistributedSequence(this.client, name);
    this.sequences.set(name, seq);
    return seq;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.downTimer);
    this.wake?.();
    this.resources.deactivate();
    await this.joining?.catch(() => {});
    // The last report while still registered, then the socket (config-center marks the instance offline).
    await this.reporter.stop(this.state === "joined");
    await this.socket?.close();
    await this.terminal.stop();
    await this.business.close();
    await this.governance.close();
    await this.applying;
    if (this.source === "center") await this.snapshot?.save();
  }

  /** Joins, retrying with backoff until it does or the SDK closes. */
  private async joinLoop(): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        await this.joinOnce();
        return;
      } catch (err) {
        if (this.closed) return;
        // Seed step 6: a failed registration stops the terminal (a registered instance keeps it while metadata is retried).
        if (!this.registration) await this.terminal.stop();
        this.startup?.(err, this.step);
        this.lastFailure = { kind: failureKind(this.step, err), message: (err as Error).message };
        // During start-up the outcome is logged once, by degrade(); later each new kind of failure once.
        if (!this.startup)
          this.joinLog.problem(
            this.lastFailure.kind,
            `not joined to config-center: ${this.lastFailure.message}; retrying in the background`,
          );
        const retryAfter = err instanceof ConfigCenterError ? (err.retryAfterMs ?? 0) : 0;
        await this.pause(
          Math.max(retryAfter, backoffDelay(attempt, this.o.retryBaseMs ?? defaultRetry.baseMs, this.o.retryMaxMs ?? defaultRetry.maxMs)),
        );
      }
    }
  }

  /** Steps 2-11, each skipped when an earlier attempt got that far. */
  private async joinOnce(): Promise<void> {
    this.step = "token";
    await this.client.currentToken();
    if (!this.registration) {
      const sdkPort = await this.startTerminal();
      this.step = "registration";
      this.registration = await this.client.register(this.registrationBody(sdkPort));
      this.governance.setProviders(this.providers());
    }
    this.step = "metadata";
    const metadata = await this.client.metadata();
    if (this.closed) return;
    // Joining after a degraded start: values loaded meanwhile may be stale too.
    const rejoin = this.source !== "local";
    await this.serially(() => this.applyContent({ ...metadata, savedAt: "" }));
    if (rejoin) void this.business.resync();
    this.source = "center";
    this.openSocket(this.registration);
    this.state = "joined";
    this.joinLog.resolved();
    this.log.info(`joined config-center at version ${this.version}`, { instanceId: this.instanceId });
    void this.snapshot?.save();
    this.reporter.start();
    await this.resources.activate();
  }

  /** Step 3: the terminal listens (its port goes into the registration); a port it cannot have is logged, not fatal. */
  private async startTerminal(): Promise<number | undefined> {
    if (this.terminal.port !== undefined) return this.terminal.port;
    try {
      const port = await this.terminal.start();
      this.terminalLog.resolved();
      return port;
    } catch (err) {
      this.terminalLog.problem(
        "listen",
        `terminal service not started (${(err as Error).message}): no dial tests or commands reach this instance`,
        undefined,
        "error",
      );
      return undefined;
    }
  }

  /** Step 6: start on the snapshot (if any) or the local configuration, and keep joining in the background. */
  private async degrade(): Promise<void> {
    const snap = await this.snapshot?.load();
    await this.serially(async () => {
      if (!snap || this.source === "center") return;
      await this.applyContent(snap);
      this.source = "snapshot";
    });
    if (this.source === "center") return;
    const on = snap ? `the snapshot of version ${snap.version} (saved ${snap.savedAt})` : "local configuration";
    // The attempt under way when start-up gave up has not failed yet: it is taken as config-center not answering.
    const failure = this.lastFailure ?? {
      kind: `${this.step}:unavailable`,
      message: `config-center did not answer the ${this.step} step within ${this.o.startupTimeoutMs ?? 20_000} ms`,
    };
    this.joinLog.problem(failure.kind, `config-center not joined (${failure.message}); started on ${on}, joining in the background`);
  }

  /** A whole configuration (metadata or snapshot): keys it lacks are gone; hooks fire for what changed. */
  private async applyContent(c: SnapshotContent): Promise<void> {
    this.replaceGovernance(c.governance);
    await this.config.replace(c.technical);
    await this.business.replace(c.business);
    this.version = c.version;
  }

  private async applyChanges(m: ChangesMessage): Promise<void> {
    await this.serially(async () => {
      this.applyGovernance(m.changes.filter((c) => c.kind === "governance"));
      await this.config.apply(m.changes.filter((c) => c.kind === "technical"));
      await this.business.apply(m.changes.filter((c) => c.kind === "business"));
      this.version = Math.max(this.version, m.version);
    });
    void this.snapshot?.save();
  }

  /** The whole set (metadata, snapshot): rules it lacks are removed. */
  private replaceGovernance(values: ConfigValue[]): void {
    this.governanceValues.clear();
    for (const v of values) this.governanceValues.set(v.key, v);
    this.governance.apply(values, "full");
  }

  private applyGovernance(values: ConfigValue[]): void {
    if (!values.length) return;
    for (const v of values) {
      if (v.deleted) this.governanceValues.delete(v.key);
      else this.governanceValues.set(v.key, v);
    }
    this.governance.apply(values);
  }

  private openSocket(reg: RegistrationAnswer): void {
    if (this.socket) return;
    this.socket = new ConfigSocket({
      baseUrl: this.client.baseUrl,
      socketPath: reg.socketPath,
      version: () => this.version,
      token: () => this.client.currentToken(),
      renewToken: () => this.client.renewToken(),
      heartbeatIntervalMs: reg.heartbeatIntervalMs,
      heartbeatTimeoutMs: reg.heartbeatTimeoutMs,
      handshakeTimeoutMs: this.o.requestTimeoutMs ?? 5_000,
      retryBaseMs: this.o.retryBaseMs ?? defaultRetry.baseMs,
      retryMaxMs: this.o.retryMaxMs ?? defaultRetry.maxMs,
      onChanges: (m) => this.applyChanges(m),
      onConnection: (open) => this.socketConnection(open, reg.heartbeatTimeoutMs),
      onStopped: ({ code }) => this.socketStopped(code),
      log: this.log,
    });
    // A new socket (first, or after a stop) is given the heartbeat timeout to open.
    clearTimeout(this.downTimer);
    this.disconnectedAt = undefined;
    this.socketConnection(false, reg.heartbeatTimeoutMs);
    this.socket.start();
  }

  /**
   * `connected` follows the socket at once; `state` turns "degraded" once it has been down for the
   * heartbeat timeout (when config-center marks the instance offline), and "joined" when it opens.
   */
  private socketConnection(open: boolean, heartbeatTimeoutMs: number): void {
    this.connected = open;
    if (open) {
      clearTimeout(this.downTimer);
      this.disconnectedAt = undefined;
      if (this.state === "degraded" && !this.closed)
        this.log.info("config socket connected again: joined", { instanceId: this.instanceId });
      this.state = "joined";
      return;
    }
    // Each failed reconnection reports the socket down again: the outage counts from its start.
    if (this.disconnectedAt !== undefined) return;
    this.disconnectedAt = Date.now();
    this.downTimer = setTimeout(() => {
      if (this.connected || this.closed || this.state === "degraded") return;
      this.state = "degraded";
      this.log.warn(`config socket down for ${heartbeatTimeoutMs} ms: degraded (serving on version ${this.version}) until it reconnects`, {
        instanceId: this.instanceId,
      });
    }, heartbeatTimeoutMs);
    this.downTimer.unref();
  }

  /** config-center will not take this connection any more: serve on what we have; an unknown instance registers again. */
  private socketStopped(code: number): void {
    clearTimeout(this.downTimer);
    this.socket = undefined;
    this.state = "degraded";
    this.resources.deactivate();
    void this.reporter.stop();
    if (code !== 404 || this.closed) return;
    this.registration = undefined;
    this.joining = this.joinLoop();
  }

  private registrationBody(sdkPort: number | undefined): RegistrationRequest {
    const o = this.o;
    const plugins = this.plugins.registration();
    return {
      env: o.env,
      hostName: o.hostName ?? hostname(),
      ip: o.ip ?? localIp(),
      servicePort: o.servicePort,
      sdkPort,
      startParams: { ...o.startParams, "sdk.version": sdkVersion, ...(plugins ? { "sdk.plugins": plugins } : {}) },
      labels: o.labels,
      podName: o.podName,
      podNamespace: o.podNamespace,
      appVersion: o.appVersion,
      systemDomain: o.systemDomain,
    };
  }

  /** What route conditions `by: "provider"` match this instance by. */
  private providers(): string[] {
    const o = this.o;
    const ids = [o.hostName ?? hostname(), `${o.ip ?? localIp()}:${o.servicePort}`];
    for (const [k, v] of Object.entries(o.labels ?? {})) ids.push(`${k}=${v}`);
    if (this.instanceId) ids.push(this.instanceId);
    return ids;
  }

  /** The configuration in use, for the snapshot. */
  private content(): SnapshotContent {
    return {
      version: this.version,
      savedAt: new Date().toISOString(),
      technical: this.config.values(),
      business: this.business.values(),
      governance: [...this.governanceValues.values()],
    };
  }

  private serially(fn: () => Promise<void>): Promise<void> {
    const run = this.applying.then(fn);
    this.applying = run.catch((err) => this.log.error(`applying configuration failed: ${(err as Error).message}`));
    return run;
  }

  /** Waits `ms`, or less when the SDK closes. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}

/** Failures of one kind (the step, and refused, throttled or unavailable with the status) are logged once in a row. */
function failureKind(step: string, err: unknown): string {
  return err instanceof ConfigCenterError ? `${step}:${err.kind}${err.status ? `:${err.status}` : ""}` : `${step}:other`;
}

/** The first external IPv4 address, as config-center shows the node. */
function localIp(): string {
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  return "127.0.0.1";
}

const sdkVersion: string = (require("../package.json") as { version: string }).version;
