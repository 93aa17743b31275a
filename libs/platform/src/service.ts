import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { type Bus, createBus } from "@opsplane/bus";
import { GetServiceInfoResponseSchema, ServiceInfoService } from "@opsplane/contracts";
import { createPool, LoggedFailure, type Migration, migrate, type Pool, readMigrations } from "@opsplane/store";
import closeWithGrace from "close-with-grace";
import Fastify, { type FastifyBaseLogger, type FastifyReply } from "fastify";
import type { Redis } from "ioredis";
import type { Registry } from "prom-client";
import secureJson from "secure-json-parse";
import type { App } from "./app.js";
import { type Auditor, createAuditor } from "./audit.js";
import { auditRestPath, auditRpc, installAuditRoute } from "./audit-query.js";
import { createAuthenticator, installAuth, type Principal } from "./auth.js";
import { validatorsWithoutBodyCoercion } from "./body-validation.js";
import { activeTraceContext, tracedBus } from "./bus-tracing.js";
import { clientErrorAnswer, connectAnswer, expectationAnswer } from "./client-errors.js";
import { type Config, ConfigError, type ConfigShape, loadConfig } from "./config.js";
import { AppError, installErrorModel, urlRefusal } from "./errors.js";
import { type Check, installHealth, readiness } from "./health.js";
import { installHostRequirement } from "./host-header.js";
import { installInputGuard, refuseUndeclaredQueries } from "./input-guard.js";
import { createLogger, type Logger, redactCredentials } from "./logger.js";
import { createMetricsRegistry, installRedMetrics, type RecordRequest } from "./metrics.js";
import { closeRedis, connectRedis } from "./redis-client.js";
import { installRequestIdHeader, requestIdOf } from "./request-id.js";
import { retry } from "./retry.js";
import {
  clientAddressKey,
  principalKey,
  type RpcService,
  registerRpcServices,
  requestIdKey,
  rpcInterceptor,
  rpcPaths,
  rpcService,
} from "./rpc.js";
import { installRpcBodyLimit } from "./rpc-body-limit.js";

export interface ServiceContext<E extends ConfigShape = ConfigShape> {
  name: string;
  version: string;
  config: Config<E>;
  log: Logger;
  app: App;
  /** Pool whose search_path is the service's own schema. */
  pool: Pool;
  bus: Bus;
  /** Present when REDIS_URL is set; every use must also work without it (single node). */
  redis: Redis | undefined;
  metrics: Registry;
  audit: Auditor;
  /** Runs at shutdown after HTTP has drained, in reverse order of registration (e.g. close consumers). */
  onClose(fn: () => Promise<void>): void;
  /**
   * Serves requests on the raw HTTP server before fastify's router, for hot paths that need none of
   * its hooks (a proxy's catch-all). `handler` returns true when it took the request, false to pass it
   * on to fastify. Taken requests skip fastify's auth, request logging and RED hooks: the handler
   * answers every one (request id included) and counts it with {@link recordRequest}. While shutting
   * down every request goes to fastify, which refuses it with 503.
   */
  serveBeforeRouter(handler: (req: IncomingMessage, res: ServerResponse) => boolean): void;
  /** Counts one request in the per-route RED metrics (`http_requests_total`, `http_request_duration_seconds`). */
  recordRequest: RecordRequest;
}

export interface ServiceParts {
  rpc?: RpcService[];
  /** Extra readiness checks by name, beside postgres, migrations, bus and redis. */
  checks?: Record<string, Check>;
  /**
   * Checks (the kit's own included, e.g. "postgres", "bus") that /readyz reports but that do not
   * make the service unready: dependencies it keeps serving without for a while, from memory.
   */
  nonCriticalChecks?: string[];
}

export interface ServiceDefinition<E extends ConfigShape = ConfigShape> {
  /** Kebab-case name; the database schema is the same with underscores. */
  name: string;
  version: string;
  defaultPort: number;
  env?: E;
  /** Folder of the service's own `NNN_name.sql` migrations. */
  migrationsDir?: string;
  /** Registers routes, RPC services and consumers; runs after migrations, before listening. */
  setup(ctx: ServiceContext<E>): Promise<ServiceParts> | ServiceParts;
}

export interface RunningService<E extends ConfigShape = ConfigShape> {
  ctx: ServiceContext<E>;
  /** Base URL it listens on, e.g. http://127.0.0.1:8083. */
  url: string;
  /**
   * Graceful stop: not ready, stop accepting, drain requests, close consumers, close pools. Resolves
   * with how many close hooks failed (each is logged); the pools are closed either way.
   */
  close(): Promise<{ failedCloseHooks: number }>;
}

const platformMigrationsDir = path.join(__dirname, "..", "migrations");

/** Builds and starts a service from its definition and the environment. */
export async function startService<E extends ConfigShape>(
  def: ServiceDefinition<E>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RunningService<E>> {
  const startedAt = Date.now();
  const config = loadConfig(def.defaultPort, def.env ?? ({} as E), env);
  const authenticator = createAuthenticator(config.AUTH_API_KEYS, config.AUTH_APP_CREDENTIALS);
  const log = createLogger(def.name, config.LOG_LEVEL);
  const schema = def.name.replace(/-/g, "_");
  const pool = createPool(config.DATABASE_URL, {
    schema,
    applicationName: def.name,
    max: config.DATABASE_POOL_MAX,
    connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS,
    queryTimeoutMs: config.DATABASE_QUERY_TIMEOUT_MS,
  });
  const closers: Array<() => Promise<void>> = [];
  let shuttingDown = false;

  const migrations: Migration[] = [
    ...(await readMigrations(platformMigrationsDir)),
    ...(def.migrationsDir ? await readMigrations(def.migrationsDir) : []),
  ];
  // Pods often start before their database answers: wait for it rather than crash-loop.
  const applied = await retry(
    () => migrate(pool, schema, migrations),
    (err, delay) => log.warn({ err: err.message, retryInMs: delay }, "migrations could not run yet"),
    () => shuttingDown,
  );
  if (applied.length) log.info({ applied }, "migrations applied");

  const bus = await retry(
    async () =>
      tracedBus(
        await createBus({
          kind: config.BUS,
          pool,
          source: `/opsplane/${def.name}`,
          kafkaBrokers: config.KAFKA_BROKERS?.split(",").map((b) => b.trim()),
          logger: log,
          traceContext: activeTraceContext,
        }),
      ),
    (err, delay) => log.warn({ err: err.message, retryInMs: delay }, "event bus could not start yet"),
    () => shuttingDown,
  );
  const redis = config.REDIS_URL ? connectRedis(config.REDIS_URL, log) : undefined;
  const metrics = createMetricsRegistry(def.name);
  const audit = createAuditor(def.name, bus, { pool, log, windowMs: config.AUDIT_DENIAL_WINDOW_SECONDS * 1000 });

  const app: App = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    bodyLimit: config.BODY_LIMIT_BYTES,
    requestIdHeader: false,
    genReqId: (req) => requestIdOf(req, req.headers["x-request-id"]),
    return503OnClosing: true,
    // A URL fastify cannot decode (invalid UTF-8, a broken escape) never reaches the router or its
    // hooks: answered here in the same error model, with its request id.
    frameworkErrors: (err, req, reply) => {
      const message = urlRefusal(err.message);
      req.log.info({ status: 400, error: "bad_request" }, message);
      // Typed for any route's generics; this reply belongs to no route.
      void (reply as unknown as FastifyReply).header("x-request-id", req.id).code(400).send({ error: "bad_request", message });
    },
    // A request Node's parser refused is answered in the error model, with a request id (see client-errors.ts).
    clientErrorHandler: clientErrorAnswer(log),
    forceCloseConnections: "idle",
    // Fastify turns Node's request timeout off: a request still arriving after REQUEST_TIMEOUT_MS is
    // answered 408 (see client-errors.ts). Node looks for them on a timer, here every tenth of the
    // timeout (no more often than once a second), not every 30 s.
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    // A request without Host is refused by the kit (host-header.ts), in the error model, not by Node.
    http: { connectionsCheckingInterval: Math.max(1_000, config.REQUEST_TIMEOUT_MS / 10), requireHostHeader: false },
    // Fastify's validator drops a field a schema closes out; ours refuses it (see errors.ts).
    ajv: { customOptions: { removeAdditional: false } },
    schemaController: validatorsWithoutBodyCoercion,
    // Ids in paths are up to 256 characters, percent-encoded up to 12 bytes each (fastify's default, 100,
    // refused a registration's own lookup); the header section's 16 KiB bounds the URL anyway.
    routerOptions: { maxParamLength: 4096 },
  }).withTypeProvider<TypeBoxTypeProvider>();
  // By default Node keeps the first 2000 raw header entries of a request (about a thousand headers)
  // and drops the rest without a word: a signature header past them was lost. Unlimited, every header
  // is kept and the header section's size bounds them (`maxHeaderSize`, 16 KiB: larger is a 431).
  app.server.maxHeadersCount = 0;
  // The header section has its own bound (Node's 60 s); never longer than the whole request's.
  app.server.headersTimeout = Math.min(app.server.headersTimeout, config.REQUEST_TIMEOUT_MS);
  // A client that sends its request and then shuts down its sending side (a FIN, as some HTTP/1.0
  // clients and scripts do) still gets its answer: by default Node ends the connection on that FIN,
  // before the answer is written, although the request is acted on (a callback forwarded, unanswered).
  (app.server as typeof app.server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  app.server.on("connect", connectAnswer(log));
  // Node answers an Expect other than 100-continue itself, a bare 417 with no request id, unless this is
  // listened to; it comes before the request event, so before-router handlers (the dispatcher's) are covered too.
  app.server.on("checkExpectation", expectationAnswer(log));
  // Fastify also reads text/plain (as a string) on every route: a JSON route then answered 400 "body must
  // be object" for it. A service whose route takes text adds its own parser in its setup (config-center's
  // dictionary import), so this comes first.
  app.removeContentTypeParser("text/plain");
  installRequestIdHeader(app);
  installHostRequirement(app);
  // Connections that were busy when shutdown began would otherwise stay open, idle, until the
  // keep-alive timeout (72 s), holding app.close() past SHUTDOWN_TIMEOUT_MS.
  app.addHook("onSend", async (_req, reply) => {
    if (shuttingDown) reply.header("connection", "close");
  });

  let recordRequest: RecordRequest = () => {};
  const ctx: ServiceContext<E> = {
    name: def.name,
    version: def.version,
    config,
    log,
    app,
    pool,
    bus,
    redis,
    metrics,
    audit,
    onClose: (fn) => closers.push(fn),
    serveBeforeRouter: (handler) => {
      const router = app.server.listeners("request") as Array<(req: IncomingMessage, res: ServerResponse) => void>;
      app.server.removeAllListeners("request");
      app.server.on("request", (req: IncomingMessage, res: ServerResponse) => {
        // The kit's own REST paths are never a before-router handler's to take.
        if (shuttingDown || req.url?.startsWith(auditRestPath) || !handler(req, res))
          for (const fn of router) fn.call(app.server, req, res);
      });
    },
    recordRequest: (method, route, statusCode, seconds) => recordRequest(method, route, statusCode, seconds),
  };

  // Refusals are audited throttled (see Auditor.denied), by route template: ids and query strings
  // (a denied call often carries a stolen or stale credential) stay out of the target.
  const onDenied = (requestId: string, target: string, principal: Principal | undefined, err: AppError, path?: string) =>
    audit.denied({
      principal,
      action: "access.denied",
      target,
      after: { status: err.status, reason: err.message, ...(path === undefined ? {} : { path }) },
      requestId,
    });

  // Connect routes are known once setup has returned its RPC services.
  let rpcRoutes = new Set<string>();
  const isRpcRoute = (url: string | undefined) => url !== undefined && rpcRoutes.has(url);
  recordRequest = installRedMetrics(app, metrics);
  installErrorModel(app, config.BODY_LIMIT_BYTES, isRpcRoute, recordRequest);
  refuseUndeclaredQueries(app, isRpcRoute);
  const checks = new Map<string, Check>([
    ["postgres", async () => void (await pool.query("SELECT 1"))],
    ["bus", () => bus.check()],
  ]);
  if (redis) checks.set("redis", async () => void (await redis.ping()));
  const nonCritical = new Set<string>();
  installHealth(app, checks, nonCritical, () => shuttingDown);

  const parts = await def.setup(ctx);
  for (const [name, check] of Object.entries(parts.checks ?? {})) checks.set(name, check);
  for (const name of parts.nonCriticalChecks ?? []) nonCritical.add(name);

  const infoService = rpcService({
    service: ServiceInfoService,
    access: "public",
    impl: {
      getServiceInfo: async () =>
        create(GetServiceInfoResponseSchema, {
          name: def.name,
          version: def.version,
          uptimeSeconds: BigInt(Math.floor((Date.now() - startedAt) / 1000)),
          bus: bus.kind,
          ready: (await readiness(checks, nonCritical, shuttingDown)).ready,
        }),
    },
  });
  const services = [infoService, auditRpc(pool), ...(parts.rpc ?? [])];
  rpcRoutes = rpcPaths(services);
  installAuditRoute(app, pool);
  installInputGuard(app, isRpcRoute);
  installAuth(
    app,
    authenticator,
    isRpcRoute,
    // The path as called goes in `after`, minus any credential in its query.
    (req, err) =>
      onDenied(
        req.id,
        `${req.method} ${req.routeOptions.url ?? "(no route)"}`,
        req.principal,
        err,
        redactCredentials(req.url).slice(0, 1024),
      ),
  );
  installRpcBodyLimit(app, isRpcRoute, config.BODY_LIMIT_BYTES);
  await app.register(fastifyConnectPlugin, {
    routes: (router) => registerRpcServices(router, services),
    readMaxBytes: config.BODY_LIMIT_BYTES,
    // A field the request message does not declare is refused (400 naming it), not dropped: the
    // REST views refuse unknown fields too, and a typo (`evn` for `env`) must not pass silently.
    jsonOptions: { ignoreUnknownFields: false },
    interceptors: [
      rpcInterceptor(
        services,
        (method, principal, err, requestId) => onDenied(requestId, method, principal, err),
        (method, err) => log.error({ err, method }, "rpc failed"),
      ),
    ],
    contextValues: (req) => {
      const values = new Map<symbol, unknown>([
        [principalKey.id, req.principal],
        [requestIdKey.id, req.id],
        [clientAddressKey.id, req.ip],
      ]);
      return {
        get: (key) => (values.has(key.id) ? values.get(key.id) : key.defaultValue) as never,
        set: (key, value) => {
          values.set(key.id, value);
          return undefined as never;
        },
        delete: (key) => {
          values.delete(key.id);
          return undefined as never;
        },
      };
    },
  });

  // An empty body is no body, whatever its Content-Type says: a DELETE sent with
  // `content-type: application/json` and nothing else (as many clients send it) reaches its route
  // as one without a body, and the route's schema decides whether it needed one. Added after the
  // Connect plugin, which sets its own parser for that type in its scope and refuses to replace a custom one.
  // Bytes that are not UTF-8 are refused too: decoded leniently they would become U+FFFD and be
  // stored as if the caller had sent that.
  // The parse error is told as it is (where the JSON breaks; a `__proto__` key refused as such), not as
  // fastify's one "Body is not valid JSON" for every case.
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (_req, body, done) => {
    if (body.length === 0) return done(null, undefined);
    let text: string;
    try {
      text = utf8.decode(body as Buffer);
    } catch {
      return done(new AppError(400, "invalid_json", "body is not valid UTF-8"));
    }
    try {
      done(null, secureJson.parse(text, undefined, { protoAction: "error", constructorAction: "error" }));
    } catch (err) {
      const poisoned = /forbidden prototype property/.test((err as Error).message);
      done(
        new AppError(
          400,
          "invalid_json",
          poisoned
            ? "body has a __proto__ key or a constructor.prototype, which are refused (they would alter objects' prototypes)"
            : `body is not valid JSON: ${(err as Error).message}`,
        ),
      );
    }
  });
  await app.listen({ port: config.PORT, host: config.HOST });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : config.PORT;
  log.info({ port, bus: bus.kind, redis: Boolean(redis) }, `${def.name} listening`);

  /**
   * Stops taking requests and waits for those in flight, for at most half of the shutdown bound: a
   * connection the HTTP server never sees idle again (seen: a callback whose caller left while its routing
   * waited) would hold app.close() for its keep-alive timeout, past the bound, and the close hooks after it
   * (queued rows written, within the other half) would never run. Past that, the connections left are closed.
   */
  async function closeServer(): Promise<void> {
    const closed = app.close();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      closed.then(() => false),
      new Promise<true>((resolve) => {
        timer = setTimeout(resolve, config.SHUTDOWN_TIMEOUT_MS / 2, true);
      }),
    ]);
    clearTimeout(timer);
    if (!timedOut) return;
    log.warn({ waitedMs: config.SHUTDOWN_TIMEOUT_MS / 2 }, "shutting down: closing the connections still open");
    app.server.closeAllConnections();
    await closed;
  }

  let closing: Promise<{ failedCloseHooks: number }> | undefined;
  return {
    ctx,
    url: `http://127.0.0.1:${port}`,
    close: () => {
      closing ??= (async () => {
        shuttingDown = true;
        await closeServer();
        await audit.close();
        let failedCloseHooks = 0;
        for (const fn of closers.reverse())
          await fn().catch((err) => {
            failedCloseHooks++;
            if (!(err instanceof LoggedFailure)) log.error({ err }, "close hook failed");
          });
        await bus.close().catch((err) => log.error({ err }, "bus close failed"));
        if (redis) await closeRedis(redis);
        await pool.end();
        log.info(`${def.name} stopped`);
        return { failedCloseHooks };
      })();
      return closing;
    },
  };
}

/**
 * Entry point for a service's main.ts: start, then stop gracefully on SIGTERM/SIGINT
 * within SHUTDOWN_TIMEOUT_MS (exit 0 when drained, 1 when the bound is hit or a close
 * hook failed, e.g. queued rows could not be written).
 * A configuration error stops start-up with one line naming the variable.
 */
export function runMain<E extends ConfigShape>(def: ServiceDefinition<E>): void {
  startService(def).then(
    (svc) => {
      closeWithGrace({ delay: svc.ctx.config.SHUTDOWN_TIMEOUT_MS, logger: svc.ctx.log }, async ({ signal, err }) => {
        if (err) svc.ctx.log.error({ err }, "fatal error, shutting down");
        else svc.ctx.log.info({ signal }, "shutting down");
        const { failedCloseHooks } = await svc.close();
        // close-with-grace exits 1 when this throws: something was left undone, and the exit code says so.
        if (failedCloseHooks) throw new Error(`${failedCloseHooks} close hook(s) failed`);
      });
    },
    (err: Error) => {
      process.stderr.write(
        err instanceof ConfigError ? `${def.name}: ${err.message}\n` : `${def.name}: start-up failed: ${err.stack ?? err.message}\n`,
      );
      process.exit(1);
    },
  );
}

/** The `version` of the package.json above a compiled service's dist folder. */
export function packageVersion(distDir: string): string {
  return (JSON.parse(readFileSync(path.join(distDir, "..", "package.json"), "utf8")) as { version: string }).version;
}
