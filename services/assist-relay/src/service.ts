import path from "node:path";
import websocket from "@fastify/websocket";
import { packageVersion, type ServiceDefinition } from "@opsplane/platform";
import { assistEnv, parseOrigins } from "./config.js";
import { createFailureLimiter } from "./failure-limiter.js";
import { createHub } from "./hub.js";
import { IdleTimeout } from "./idle-timeout.js";
import { installLiveSockets } from "./live.js";
import { createAssistMetrics } from "./metrics.js";
import { createOriginPolicy } from "./origin-policy.js";
import type { CapturePolicy, ToDeveloper, ToWidget } from "./protocol.js";
import { Recorder } from "./recorder.js";
import { installReportRoutes } from "./report-routes.js";
import { ReportStore } from "./report-store.js";
import { assistRpc } from "./rpc.js";
import { installSessionRoutes } from "./session-routes.js";
import { SessionStore } from "./session-store.js";
import { installWebRoutes } from "./web-routes.js";
import { WidgetBinding } from "./widget-binding.js";

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
    const limiter = createFailureLimiter(
      ctx.redis,
      config.ASSIST_REDIS_PREFIX,
      config.ASSIST_CLIENT_MAX_FAILURES,
      config.ASSIST_CLIENT_FAILURE_WINDOW_SECONDS,
    );
    const origins = createOriginPolicy(app, parseOrigins(config.ASSIST_ALLOWED_ORIGINS), async (origin, what) => {
      metrics.refusals.inc({ reason: "origin" });
      await sessions.refusal(undefined, `origin:${origin}`, "origin", what);
    });
    const policy: CapturePolicy = {
      unmaskedInputSelector: config.ASSIST_UNMASKED_INPUT_SELECTOR,
      networkBodyMaxBytes: config.ASSIST_NETWORK_BODY_MAX_BYTES,
      maskedBodyKeys: config.ASSIST_MASKED_BODY_KEYS,
    };

    // ws refuses frames past this hard cap by closing; below it the relay answers oversize frames with a reason.
    await app.register(websocket, { options: { maxPayload: config.ASSIST_MAX_MESSAGE_BYTES * 2 } });
    installWebRoutes(app);
    installSessionRoutes({ app, store: sessions, recorder, origins, limiter, audit: ctx.audit, metrics, policy });
    installReportRoutes(app, reports, sessions, origins, config.ASSIST_REPORT_BODY_LIMIT_BYTES);
    installLiveSockets({
      app,
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
      await idle.close();
      await binding.close();
      await hub.close();
      // Last: it rejects when some of the recording could not be written, which fails the shutdown.
      await recorder.close();
    });
    return { rpc: [assistRpc(sessions, reports)] };
  },
};
