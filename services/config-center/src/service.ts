import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import path from "node:path";
import swagger from "@fastify/swagger";
import websocket from "@fastify/websocket";
import { fromEventData, topics } from "@opsplane/contracts";
import { closeRedis, packageVersion, type ServiceDefinition } from "@opsplane/platform";
import { AppResourceStore } from "./app-resources.js";
import { AppStore, configuredSecrets } from "./apps.js";
import { BusinessCache } from "./business-cache.js";
import { ChangeLog } from "./change-log.js";
import { configCenterEnv } from "./config.js";
import { ConfigCenter } from "./config-center.js";
import { startHistoryPruning } from "./history-pruning.js";
import { InstanceStore } from "./instances.js";
import { ItemStore } from "./items.js";
import { startLiveness } from "./liveness.js";
import { LockStore } from "./locks.js";
import { MetadataService } from "./metadata.js";
import { createConfigMetrics } from "./metrics.js";
import { type ChangeEvent, PushHub } from "./push.js";
import { RedisCircuit } from "./redis-circuit.js";
import { ResourceStore } from "./resources.js";
import { nameBodyLimits } from "./routes/body-limits.js";
import { installInstanceApi } from "./routes/instance-api.js";
import { explainOversizedMessages, installInstanceSocket } from "./routes/instance-socket.js";
import { installAppRoutes } from "./routes/manage-apps.js";
import { importPath, installItemRoutes } from "./routes/manage-items.js";
import { installResourceRoutes } from "./routes/manage-resources.js";
import { appRpc } from "./rpc/app-rpc.js";
import { centerRpc } from "./rpc/center-rpc.js";
import { ScriptCheck } from "./script-check.js";
import { SecretBox } from "./secret-box.js";
import { SequenceStore } from "./sequences.js";
import { TokenThrottle } from "./token-throttle.js";
import { ValueSchemas } from "./value-schemas.js";

/** The longest config-center waits for one Redis command (the kit's readiness check waits as long). */
const redisCommandTimeoutMs = 2_000;

/** App registration, parameters, resources and governance rules, pushed live to every instance. */
export const definition: ServiceDefinition<typeof configCenterEnv> = {
  name: "config-center",
  version: packageVersion(__dirname),
  defaultPort: 8083,
  env: configCenterEnv,
  migrationsDir: path.join(__dirname, "..", "migrations"),
  async setup(ctx) {
    const { app, config, log, pool } = ctx;
    const replica = config.REPLICA_ID ?? `${hostname()}-${randomUUID().slice(0, 8)}`;
    const metrics = createConfigMetrics(ctx.metrics);
    const box = SecretBox.fromConfig(config.SECRET_KEYS, config.SECRET_ACTIVE_KEY_ID);
    const changes = new ChangeLog(ctx.bus);
    // Redis is a cache and a counter here, never worth waiting for: every command has a deadline, so
    // one that accepts connections but does not answer (a partition) fails like one that is down,
    // instead of holding requests (and shutdown) forever.
    const redis = ctx.redis?.duplicate({ commandTimeout: redisCommandTimeoutMs });
    // The kit's client logs Redis errors already (same server): these would repeat them.
    redis?.on("error", () => {});
    // And after one failure none is sent until Redis answers a probe: an outage costs one deadline, not one per request.
    const circuit = redis && new RedisCircuit(redis, log);
    const cache = new BusinessCache(circuit, config.CONFIG_REDIS_PREFIX, pool, metrics, log);
    ctx.onClose(async () => {
      cache.close();
      circuit?.close();
      if (redis) await closeRedis(redis);
    });

    const apps = new AppStore(pool, ctx.audit, changes, {
      tokenTtlSeconds: config.TOKEN_TTL_SECONDS,
      configuredSecrets: configuredSecrets(config.AUTH_APP_CREDENTIALS),
      defaultEnvironments: config.DEFAULT_APP_ENVIRONMENTS.split(",")
        .map((e) => e.trim())
        .filter(Boolean),
    });
    const throttle = new TokenThrottle(circuit, config.CONFIG_REDIS_PREFIX, log, {
      limit: config.TOKEN_FAILURE_LIMIT,
      windowSeconds: config.TOKEN_FAILURE_WINDOW_SECONDS,
    });
    const instances = new InstanceStore(pool, changes);
    const resources = new ResourceStore(pool, changes, ctx.audit, box);
    const scripts = new ScriptCheck();
    ctx.onClose(() => scripts.close());
    const items = new ItemStore(
      pool,
      changes,
      ctx.audit,
      new ValueSchemas(),
      scripts,
      { itemMaxBytes: config.ITEM_MAX_BYTES, historyKeepMin: config.HISTORY_KEEP_MIN },
      (c, version) => {
        metrics.changes.inc({ kind: c.kind, action: c.action });
        cache.written(c, version);
      },
    );
    const metadata = new MetadataService(pool, resources);
    const cc = new ConfigCenter(
      pool,
      log,
      metrics,
      apps,
      instances,
      items,
      resources,
      metadata,
      new LockStore(pool, ctx.audit),
      new SequenceStore(pool, ctx.audit),
      new AppResourceStore(pool),
      throttle,
      {
        heartbeatIntervalMs: config.HEARTBEAT_INTERVAL_MS,
        heartbeatTimeoutMs: config.HEARTBEAT_TIMEOUT_MS,
        importMaxEntries: config.IMPORT_MAX_ENTRIES,
      },
    );

    const hub = new PushHub({
      pool,
      resources,
      metrics,
      log,
      cycleMs: config.PUSH_CYCLE_MS,
      replica,
      inlineMaxBytes: config.PUSH_INLINE_MAX_BYTES,
      // The bus handler below has already dropped the app's cached metadata.
      onAppChanged: (appId) => apps.forget(appId),
    });
    // Every replica sees every change (its own group), from now on: instances catch up by version when they (re)connect.
    const push = await ctx.bus.subscribe({
      group: `config-center.push.${replica}`,
      topics: [topics.configChanged.name],
      fromBeginning: false,
      handler: async (event) => {
        const e = fromEventData(topics.configChanged, event.data);
        const change: ChangeEvent = {
          version: Number(e.version),
          kind: e.kind,
          app: e.app,
          env: e.env,
          key: e.key,
          action: e.action,
          graySelector: e.graySelector
            ? { labels: e.graySelector.labels, pods: e.graySelector.pods, instanceIds: e.graySelector.instanceIds }
            : undefined,
          appState: e.appState,
          connection: Number(e.connection),
          replica: e.replica,
        };
        // Cached metadata of the app ("" = shared: of every app) is stale from here on; a connection changes none.
        if (change.kind !== "instance") metadata.invalidate(change.app);
        // Tokens and access of a changed app are re-read from here on, so sockets whose handshake
        // starts now hold the new access and the hub's cycle leaves them open.
        if (change.kind === "app") apps.forget(change.app);
        hub.enqueue(change);
      },
    });
    const liveness = startLiveness({
      pool,
      instances,
      hub,
      metrics,
      log,
      flushMs: config.HEARTBEAT_FLUSH_MS,
      timeoutMs: config.HEARTBEAT_TIMEOUT_MS,
    });
    const pruning = startHistoryPruning({
      pool,
      metrics,
      log,
      retentionDays: config.HISTORY_RETENTION_DAYS,
      keepMin: config.HISTORY_KEEP_MIN,
      intervalMs: config.HISTORY_PRUNE_INTERVAL_SECONDS * 1000,
    });
    ctx.onClose(async () => {
      await push.close();
      hub.close();
      await liveness.close();
      await pruning.close();
    });

    nameBodyLimits(app, { body: config.BODY_LIMIT_BYTES, import: config.IMPORT_BODY_LIMIT_BYTES }, importPath);
    await app.register(swagger, {
      openapi: {
        openapi: "3.1.0",
        info: {
          title: "config-center",
          version: ctx.version,
          description:
            "REST view of config-center (the same operations as the Connect services ops.v1.ConfigAppService and ops.v1.ConfigCenterService). " +
            "Apps send their start-up token as x-config-token; people send Authorization: Bearer <API key>. " +
            'In item paths, "_" stands for the shared app and for every environment.',
        },
        components: {
          securitySchemes: {
            apiKey: { type: "http", scheme: "bearer", description: "A person's or tool's API key (AUTH_API_KEYS)" },
            configToken: {
              type: "apiKey",
              in: "header",
              name: "x-config-token",
              description: "An app's start-up token (POST /config/v1/token)",
            },
          },
        },
        security: [{ apiKey: [] }],
        tags: [
          { name: "instances", description: "Managed apps: token, registration, metadata, reports, locks, sequences" },
          { name: "apps", description: "Apps, admission, instances, reported resources, audit" },
          { name: "items", description: "Business and technical parameters and governance rules, with their versions" },
          { name: "resources", description: "Public resources and secrets, locks, sequences" },
        ],
      },
      hideUntagged: true,
    });
    app.get("/config/v1/openapi.json", { config: { access: "public" }, schema: { hide: true } }, async () => app.swagger());

    // Shutdown: sockets are closed with "going away" so instances reconnect at once (to another replica).
    await app.register(websocket, {
      options: {
        maxPayload: config.SOCKET_MAX_MESSAGE_BYTES,
        WebSocket: explainOversizedMessages(config.SOCKET_MAX_MESSAGE_BYTES, metrics),
      },
      preClose(done) {
        hub.closeAll(1001, "config-center is shutting down; reconnect");
        app.websocketServer.close(() => done());
      },
    });
    installInstanceSocket({
      app,
      apps,
      instances,
      hub,
      metrics,
      log,
      replica,
      maxMessagesPerSecond: config.SOCKET_MAX_MESSAGES_PER_SECOND,
    });
    installInstanceApi(app, cc);
    installAppRoutes(app, cc);
    installItemRoutes(app, cc, config.IMPORT_BODY_LIMIT_BYTES);
    installResourceRoutes(app, cc);

    log.info(
      { replica, secrets: box ? `active key ${box.activeKeyId}` : "none (secret fields refused)", redis: Boolean(ctx.redis) },
      "config center ready",
    );
    return {
      rpc: [appRpc(cc), centerRpc(cc)],
      // Redis is only the central business cache: without it instances read business values from
      // config-center, so an outage shows in /readyz ("degraded") but keeps the replica serving.
      nonCriticalChecks: ["redis"],
    };
  },
};
