import path from "node:path";
import { createSandboxScripts } from "@opsplane/callback-agent/sandbox-scripts";
import { packageVersion, type ServiceDefinition } from "@opsplane/platform";
import { dispatcherEnv } from "./config.js";
import { createConfigStore } from "./config-store.js";
import { createDecisionLog } from "./decision-log.js";
import { createDecisionRetention } from "./decision-retention.js";
import { createForwarder } from "./forwarder.js";
import { callbackCounter, createDispatcherMetrics, upstreamTimer } from "./metrics.js";
import { redisRegistry } from "./redis-registry.js";
import { memoryRegistry } from "./registry.js";
import { registerAdminRoutes } from "./routes/admin.js";
import { registerAgentRoutes } from "./routes/agent.js";
import { callbackFront } from "./routes/callbacks.js";
import { dispatcherRpc } from "./rpc.js";
import { createRuleSetCache } from "./rule-set.js";

/** Routes third-party callbacks to the test environment that started the business object, or to production. */
export const definition: ServiceDefinition<typeof dispatcherEnv> = {
  name: "callback-dispatcher",
  version: packageVersion(__dirname),
  defaultPort: 8086,
  env: dispatcherEnv,
  migrationsDir: path.join(__dirname, "..", "migrations"),
  async setup(ctx) {
    const { config } = ctx;
    const metrics = createDispatcherMetrics(ctx.metrics);
    const scripts = await createSandboxScripts({
      timeLimitMs: config.SCRIPT_TIME_LIMIT_MS,
      memoryLimitBytes: config.SCRIPT_MEMORY_LIMIT_BYTES,
    });
    ctx.onClose(() => scripts.close());

    const store = createConfigStore({ pool: ctx.pool, bus: ctx.bus, audit: ctx.audit });
    const rules = await createRuleSetCache({
      pool: ctx.pool,
      compileScript: scripts.compile,
      pollMs: config.RULES_POLL_MS,
      log: ctx.log,
      onReload: (s) => metrics.ruleSetVersion.set(s.version),
    });
    ctx.onClose(async () => rules.close());

    const registry = ctx.redis
      ? redisRegistry({
          pool: ctx.pool,
          redis: ctx.redis,
          prefix: config.REDIS_KEY_PREFIX,
          timeoutMs: config.REGISTRY_REDIS_TIMEOUT_MS,
          warmCheckMs: config.REGISTRY_WARM_CHECK_MS,
          schema: ctx.name,
          log: ctx.log,
        })
      : await memoryRegistry(ctx.pool, config.REGISTRY_MEMORY_MAX);
    const purge = setInterval(
      () => void registry.purgeExpired().catch((err) => ctx.log.warn({ err }, "registration purge failed")),
      60_000,
    );
    purge.unref();
    ctx.onClose(async () => clearInterval(purge));
    ctx.onClose(() => registry.close());

    const forwarder = createForwarder({
      timeoutMs: config.UPSTREAM_TIMEOUT_MS,
      connections: config.UPSTREAM_CONNECTIONS,
      onResponseHeaders: upstreamTimer(metrics),
    });
    ctx.onClose(() => forwarder.close());
    const decisions = createDecisionLog({
      pool: ctx.pool,
      bus: ctx.bus,
      log: ctx.log,
      flushMs: config.DECISION_FLUSH_MS,
      maxQueue: config.DECISION_QUEUE_MAX,
      // Half the shutdown bound: what a hung PostgreSQL leaves unwritten is logged before the process is killed.
      closeTimeoutMs: config.SHUTDOWN_TIMEOUT_MS / 2,
      events: config.DISPATCH_EVENTS,
      onDrop: (reason, count) => metrics.decisionsDropped.inc({ reason }, count),
    });
    ctx.onClose(() => decisions.close());
    const retention = createDecisionRetention({
      pool: ctx.pool,
      schema: ctx.name,
      retentionDays: config.DECISION_RETENTION_DAYS,
      sweepMs: config.DECISION_SWEEP_MS,
      log: ctx.log,
    });
    ctx.onClose(() => retention.close());

    registerAdminRoutes(ctx.app, { ctx, store, rules, registry, compileScript: scripts.compile });
    registerAgentRoutes(ctx.app, {
      rules,
      registry,
      metrics,
      bindings: config.AGENT_ENVIRONMENTS,
      audit: ctx.audit,
      log: ctx.log,
    });
    ctx.serveBeforeRouter(
      callbackFront(
        {
          rules,
          registry,
          forwarder,
          decisions,
          metrics,
          countCallback: callbackCounter(metrics),
          extractLimitBytes: config.CALLBACK_EXTRACT_LIMIT_BYTES,
        },
        { log: ctx.log, recordRequest: ctx.recordRequest },
      ),
    );
    ctx.log.info(
      { registry: registry.kind, version: rules.current().version, agentBindings: Object.fromEntries(config.AGENT_ENVIRONMENTS) },
      "callback dispatcher ready",
    );
    return {
      rpc: [dispatcherRpc({ rules, registry })],
      // Callbacks are routed from memory (rules, registrations, decisions queued): a database blip
      // shows in /readyz but keeps the dispatcher in the load balancer.
      nonCriticalChecks: ["postgres", "bus"],
    };
  },
};
