import path from "node:path";
import { createSandboxScripts } from "@opsplane/callback-agent/sandbox-scripts";
import { packageVersion, type ServiceDefinition } from "@opsplane/platform";
import { createAsyncDeliveryMetrics } from "./async-delivery-metrics.js";
import { createAsyncDeliveryWorker } from "./async-delivery-worker.js";
import { createAsyncIntake } from "./async-intake.js";
import { dispatcherEnv } from "./config.js";
import { createConfigStore } from "./config-store.js";
import { createDecisionLog } from "./decision-log.js";
import { createDecisionRetention } from "./decision-retention.js";
import { createUrlPolicy } from "./environment-url-policy.js";
import { createForwarder } from "./forwarder.js";
import { createDispatcherMetrics, upstreamTimer } from "./metrics.js";
import { redisRegistry } from "./redis-registry.js";
import { createRegistrationHold } from "./registration-hold.js";
import { memoryRegistry } from "./registry.js";
import { createReplayer } from "./replay.js";
import { createReplicaRoster } from "./replica-roster.js";
import { createResender } from "./resend.js";
import { registerAdminRoutes } from "./routes/admin.js";
import { registerAgentRoutes } from "./routes/agent.js";
import { callbackFront } from "./routes/callbacks.js";
import { registerDecisionRoutes } from "./routes/decisions.js";
import { registerDeliveryRoutes } from "./routes/deliveries.js";
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
      waitLimitMs: config.SCRIPT_WAIT_LIMIT_MS,
    });
    ctx.onClose(() => scripts.close());

    const urlPolicy = createUrlPolicy(config.ENVIRONMENT_URL_ALLOW);
    const store = createConfigStore({ pool: ctx.pool, bus: ctx.bus, audit: ctx.audit, urlPolicy });
    const rules = await createRuleSetCache({
      pool: ctx.pool,
      compileScript: scripts.compile,
      pollMs: config.RULES_POLL_MS,
      extractLimitBytes: config.CALLBACK_EXTRACT_LIMIT_BYTES,
      log: ctx.log,
      onReload: (s) => metrics.ruleSetVersion.set(s.version),
    });
    ctx.onClose(async () => rules.close());

    const registry = ctx.redis
      ? await redisRegistry({
          pool: ctx.pool,
          redis: ctx.redis,
          prefix: config.REDIS_KEY_PREFIX,
          timeoutMs: config.REGISTRY_REDIS_TIMEOUT_MS,
          recordTimeoutMs: config.REGISTRY_RECORD_TIMEOUT_MS,
          warmCheckMs: config.REGISTRY_WARM_CHECK_MS,
          schema: ctx.name,
          log: ctx.log,
        })
      : await memoryRegistry(ctx.pool, config.REGISTRY_MEMORY_MAX, config.REGISTRY_RECORD_TIMEOUT_MS);
    const purge = setInterval(
      () => void registry.purgeExpired().catch((err) => ctx.log.warn({ err }, "registration purge failed")),
      60_000,
    );
    purge.unref();
    ctx.onClose(async () => clearInterval(purge));
    ctx.onClose(() => registry.close());
    const roster = await createReplicaRoster({
      pool: ctx.pool,
      registry: registry.kind,
      heartbeatMs: config.REPLICA_HEARTBEAT_MS,
      log: ctx.log,
    });
    ctx.onClose(() => roster.close());

    const hold = createRegistrationHold({
      registry,
      pollMs: config.HOLD_POLL_MS,
      maxHeld: config.HOLD_MAX_CALLBACKS,
      onHeld: (count) => metrics.heldCallbacks.set(count),
      onOutcome: (outcome) => metrics.holds.inc({ outcome }),
    });
    // Before the registry closes: held callbacks are answered first (after their last lookup).
    ctx.onClose(async () => hold.close());

    const forwarder = createForwarder({
      timeoutMs: config.UPSTREAM_TIMEOUT_MS,
      connections: config.UPSTREAM_CONNECTIONS,
      lookup: urlPolicy.lookup,
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
      storeMaxBytes: config.CALLBACK_STORE_MAX_BYTES,
      maxPayloadBytes: config.CALLBACK_QUEUE_MAX_BYTES,
      onPayloadDropped: () => metrics.payloadsDropped.inc(),
    });
    ctx.onClose(() => decisions.close());
    const retention = createDecisionRetention({
      pool: ctx.pool,
      schema: ctx.name,
      retentionDays: config.DECISION_RETENTION_DAYS,
      callbackRetentionDays: config.CALLBACK_RETENTION_DAYS,
      deadLetterRetentionDays: config.DEAD_LETTER_RETENTION_DAYS,
      sweepMs: config.DECISION_SWEEP_MS,
      log: ctx.log,
    });
    ctx.onClose(() => retention.close());

    // Replays and asynchronous deliveries: kept callbacks sent again, off the callback path.
    const resender = createResender({ timeoutMs: config.UPSTREAM_TIMEOUT_MS, lookup: urlPolicy.lookup });
    ctx.onClose(() => resender.close());
    const replayer = createReplayer({ pool: ctx.pool, rules, audit: ctx.audit, resender });
    const asyncMetrics = createAsyncDeliveryMetrics(ctx.metrics, ctx.pool, ctx.log);
    const deliveryWorker = createAsyncDeliveryWorker({
      pool: ctx.pool,
      resender,
      log: ctx.log,
      metrics: asyncMetrics,
      concurrency: config.ASYNC_DELIVERY_CONCURRENCY,
      perEnvironment: config.ASYNC_DELIVERY_PER_ENVIRONMENT ?? Math.ceil(config.ASYNC_DELIVERY_CONCURRENCY / 2),
      pollMs: config.ASYNC_DELIVERY_POLL_MS,
      leaseMs: config.ASYNC_DELIVERY_LEASE_MS,
      closeTimeoutMs: config.SHUTDOWN_TIMEOUT_MS / 2,
    });
    // Before the resender closes (hooks run in reverse): attempts in flight finish or are abandoned first.
    ctx.onClose(() => deliveryWorker.close());
    const asyncIntake = createAsyncIntake({
      pool: ctx.pool,
      bus: ctx.bus,
      log: ctx.log,
      events: config.DISPATCH_EVENTS,
      storeMaxBytes: config.CALLBACK_STORE_MAX_BYTES,
      writeTimeoutMs: config.UPSTREAM_TIMEOUT_MS,
      metrics: asyncMetrics,
      countCallback: metrics.countCallback,
      queued: deliveryWorker.wake,
    });

    registerAdminRoutes(ctx.app, {
      ctx,
      store,
      rules,
      registry,
      recordTimeoutMs: config.REGISTRY_RECORD_TIMEOUT_MS,
      compileScript: scripts.compile,
      viaPseudonym: config.VIA_PSEUDONYM,
    });
    registerDecisionRoutes(ctx.app, { pool: ctx.pool, replayer });
    registerDeliveryRoutes(ctx.app, { pool: ctx.pool, audit: ctx.audit, redriven: deliveryWorker.wake });
    registerAgentRoutes(ctx.app, {
      rules,
      registry,
      roster,
      recordTimeoutMs: config.REGISTRY_RECORD_TIMEOUT_MS,
      hold,
      metrics,
      bindings: config.AGENT_ENVIRONMENTS,
      audit: ctx.audit,
      log: ctx.log,
    });
    const front = callbackFront(
      {
        rules,
        registry,
        hold,
        forwarder,
        decisions,
        asyncIntake,
        metrics,
        extractLimitBytes: config.CALLBACK_EXTRACT_LIMIT_BYTES,
        viaPseudonym: config.VIA_PSEUDONYM,
      },
      { log: ctx.log, recordRequest: ctx.recordRequest },
    );
    ctx.serveBeforeRouter(front.serve);
    // The first hook at shutdown (they run in reverse), once the callers still connected at half the bound
    // were cut off: the callbacks still being routed or forwarded end now, each recording its decision
    // before the decision log's last flush. Before, they finished after it (an environment answering
    // late, a held callback released) and their decisions were lost without a word.
    ctx.onClose(async () => {
      hold.close();
      forwarder.stop("not answered before the dispatcher shut down; its caller's connection was closed at half of SHUTDOWN_TIMEOUT_MS");
      const left = await front.settled(config.SHUTDOWN_TIMEOUT_MS / 4);
      if (left)
        ctx.log.error(
          { count: left },
          `${left} callbacks still being routed at shutdown (a registry lookup or an asynchronous intake not answered): their decisions are not recorded`,
        );
    });
    ctx.log.info(
      { registry: registry.kind, version: rules.current().version, agentBindings: Object.fromEntries(config.AGENT_ENVIRONMENTS) },
      "callback dispatcher ready",
    );
    return {
      rpc: [dispatcherRpc({ rules, registry, replayer, pool: ctx.pool, viaPseudonym: config.VIA_PSEUDONYM })],
      checks: {
        replicas: async () => {
          if (roster.conflict) throw new Error(roster.conflict);
        },
      },
      // Callbacks are routed from memory (rules, registrations, decisions queued): a database blip
      // shows in /readyz but keeps the dispatcher in the load balancer. So does a Redis outage: lookups
      // fall back to the PostgreSQL record. A replica without Redis beside others misroutes: out of the
      // load balancer, the others (with Redis) take its traffic; those stay in, degraded, naming it.
      nonCriticalChecks: ["postgres", "bus", ...(registry.kind === "redis" ? ["redis", "replicas"] : [])],
    };
  },
};
