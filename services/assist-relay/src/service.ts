import path from "node:path";
import websocket from "@fastify/websocket";
import { createSanitiser } from "@opsplane/assist-widget/sanitiser";
import { packageVersion, type ServiceDefinition } from "@opsplane/platform";
import picomatch from "picomatch";
import { clientAddresses } from "./client-address.js";
import { assistEnv, parseOrigins } from "./config.js";
import { FailureLimiter } from "./failure-limiter.js";
import { createHub } from "./hub.js";
import { IdleTimeout } from "./idle-timeout.js";
import { installLiveSockets } from "./live.js";
import { createAssistMetrics } from "./metrics.js";
import { createOriginPolicy } from "./origin-policy.js";
import type { CapturePolicy, ToDeveloper, ToWidget } from "./protocol.js";
import { PublicLimiter } from "./public-limiter.js";
import { Recorder } from "./recorder.js";
import { installReportRoutes } from "./report-routes.js";
import { ReportStore } from "./report-store.js";
import { assistRpc } from "./rpc.js";
import { installSessionRoutes } from "./session-routes.js";
import { SessionStore } from "./session-store.js";
import { installWebRoutes } from "./web-routes.js";
import { WidgetBinding } from "./widget-binding.js";
import { createWindowCounter } from "./window-counter.js";

/** Live remote assistance: DOM streaming, console and network capture, consented remote control; problem reports. */
export const definition: ServiceDefinition<typeof assistEnv> = {
  name: "assist-relay",
  version: packageVersion(__dirname),
  defaultPort: 8081,
  env: assistEnv,
  migrationsDir: path.join(__dirname, "..", "migrations"),
  async setup(ctx) {
    const { app, config, log } = ctx;
    const metrics = createAssistMetrics(ctx.metrics);
    const sessions = new SessionStore(ctx.pool, ctx.bus, ctx.audit, {
      keyTtlSeconds: config.ASSIST_KEY_TTL_SECONDS,
      keyMaxAttempts: config.ASSIST_KEY_MAX_ATTEMPTS,
      maxDevelopers: config.ASSIST_MAX_DEVELOPERS,
      ticketTtlSeconds: config.ASSIST_TICKET_TTL_SECONDS,
    });
    const reports = new ReportStore(ctx.pool, ctx.bus, ctx.audit);
    // Half the shutdown bound: what a hung PostgreSQL leaves unwritten is logged before the process is killed.
    const recorder = new Recorder(
      ctx.pool,
      log,
      (reason, count) => metrics.recordingDropped.inc({ reason }, count),
      config.SHUTDOWN_TIMEOUT_MS / 2,
    );
    const hub = createHub(ctx.redis, config.ASSIST_REDIS_PREFIX, {
      delivered: (via, count) => metrics.fanoutDelivered.inc({ via }, count),
      published: (messages) => {
        metrics.fanoutPublishes.inc();
        metrics.fanoutPublishedMessages.inc(messages);
      },
    });
    // A session ended by the relay (idle, too old) is announced to both sides, wherever their sockets are.
    const announceEnded = async (sessionId: string, by: "idle" | "expired") => {
      await hub.publish(sessionId, "developer", JSON.stringify({ t: "session-ended", by } satisfies ToDeveloper));
      await hub.publish(sessionId, "widget", JSON.stringify({ t: "session-ended", by } satisfies ToWidget));
    };
    const binding = new WidgetBinding(sessions, config.ASSIST_HEARTBEAT_SECONDS, log);
    const idle = new IdleTimeout(sessions, config.ASSIST_IDLE_TIMEOUT_SECONDS, (id) => announceEnded(id, "idle"), metrics, log);
    const limiter = new FailureLimiter(
      createWindowCounter(ctx.redis, config.ASSIST_REDIS_PREFIX, config.ASSIST_CLIENT_FAILURE_WINDOW_SECONDS),
      config.ASSIST_CLIENT_MAX_FAILURES,
      config.ASSIST_ADDRESS_MAX_FAILURES,
    );
    const publicLimiter = new PublicLimiter(
      createWindowCounter(ctx.redis, config.ASSIST_REDIS_PREFIX, 60),
      config.ASSIST_PUBLIC_PER_ADDRESS_PER_MINUTE,
      config.ASSIST_PUBLIC_GLOBAL_PER_MINUTE,
    );
    const clientAddress = clientAddresses(config.TRUSTED_PROXIES);
    const origins = createOriginPolicy(app, parseOrigins(config.ASSIST_ALLOWED_ORIGINS), async (origin, what) => {
      metrics.refusals.inc({ reason: "origin" });
      await sessions.refusal(undefined, `origin:${origin}`, "origin", what);
    });
    // Configured once, here: the widget gets the same settings (patterns compiled to regular expressions, so picomatch stays out of its bundle).
    const policy: CapturePolicy = {
      unmaskedInputSelector: config.ASSIST_UNMASKED_INPUT_SELECTOR,
      sanitiser: {
        maskedKeys: config.ASSIST_MASKED_KEYS,
        networkBodyUrls: config.ASSIST_NETWORK_BODY_URLS.split(",")
          .map((p) => p.trim())
          .filter(Boolean)
          .map((p) => picomatch.makeRe(p).source),
        networkBodyMaxBytes: config.ASSIST_NETWORK_BODY_MAX_BYTES,
      },
    };
    const sanitiser = createSanitiser(policy.sanitiser);

    // ws refuses frames past this hard cap by closing; below it the relay answers oversize frames with a reason.
    await app.register(websocket, {
      options: { maxPayload: config.ASSIST_MAX_MESSAGE_BYTES * 2 },
      // At shutdown (SIGTERM, a deploy) every socket is told "going away": pages and consoles reconnect, reaching another replica.
      preClose(done) {
        for (const client of app.websocketServer.clients) client.close(1001, "the relay is restarting; reconnect");
        app.websocketServer.close();
        done();
      },
    });
    installWebRoutes(app);
    installSessionRoutes({
      app,
      store: sessions,
      recorder,
      hub,
      origins,
      limiter,
      publicLimiter,
      clientAddress,
      audit: ctx.audit,
      metrics,
      policy,
      sanitiser,
    });
    installReportRoutes(app, reports, sessions, origins, publicLimiter, clientAddress, sanitiser, config.ASSIST_REPORT_BODY_LIMIT_BYTES);
    installLiveSockets({
      app,
      sanitiser,
      store: sessions,
      hub,
      recorder,
      idle,
      binding,
      origins,
      audit: ctx.audit,
      metrics,
      log,
      maxMessageBytes: config.ASSIST_MAX_MESSAGE_BYTES,
      maxMessagesPerSecond: config.ASSIST_MAX_MESSAGES_PER_SECOND,
      heartbeatSeconds: config.ASSIST_HEARTBEAT_SECONDS,
    });

    const sweep = setInterval(() => {
      Promise.all([sessions.expireStale(config.ASSIST_SESSION_MAX_HOURS), sessions.sweepRetention(config.ASSIST_RECORDING_RETENTION_HOURS)])
        .then(async ([ended, deleted]) => {
          for (const id of ended) await announceEnded(id, "expired");
          if (ended.length || deleted) log.info({ endedSessions: ended.length, deletedRecordingEvents: deleted }, "assist retention sweep");
        })
        .catch((err) => log.error({ err }, "assist retention sweep failed"));
    }, config.ASSIST_SWEEP_INTERVAL_SECONDS * 1000);
    sweep.unref();
    idle.start();
    binding.start();

    ctx.onClose(async () => {
      clearInterval(sweep);
      // Started with the recording's close, not before it: with PostgreSQL frozen, freeing the bindings and writing the
      // activity wait for its query timeout, and the recording would not even be tried before the kit's timeout ends
      // the process, with no word of what it held.
      const rest = Promise.all([idle.close(), binding.close(), hub.close()]);
      rest.catch((err) => log.error({ err }, "could not free this replica's sessions at shutdown"));
      // Bounded (half of SHUTDOWN_TIMEOUT_MS): it rejects, logging the count, when some of the recording could not be written,
      // which fails the shutdown (exit 1) without waiting for the rest.
      await recorder.close();
      await rest;
    });
    return { rpc: [assistRpc(sessions, reports)] };
  },
};
