import { type App, AppError, type Auditor, badRequest, forbidden, type Principal, redactCredentials } from "@opsplane/platform";
import { Type } from "@sinclair/typebox";
import type { FailureLimiter } from "./failure-limiter.js";
import type { AssistMetrics } from "./metrics.js";
import type { OriginPolicy } from "./origin-policy.js";
import type { CapturePolicy, OpenedSession } from "./protocol.js";
import type { Recorder } from "./recorder.js";
import { KeyRefused, type SessionRow, type SessionStore } from "./session-store.js";

export interface SessionRouteDeps {
  app: App;
  store: SessionStore;
  recorder: Recorder;
  origins: OriginPolicy;
  limiter: FailureLimiter;
  audit: Auditor;
  metrics: AssistMetrics;
  policy: CapturePolicy;
}

const SessionParams = Type.Object({ id: Type.String({ format: "uuid" }) });

export function presentSession(s: SessionRow) {
  return {
    id: s.id,
    status: s.status,
    origin: s.origin,
    pageUrl: s.page_url,
    developer: s.developer,
    reportId: s.report_id,
    openedAt: s.opened_at.toISOString(),
    connectedAt: s.connected_at?.toISOString() ?? null,
    endedAt: s.ended_at?.toISOString() ?? null,
    endedBy: s.ended_by,
  };
}

/** REST side of assist sessions: the widget opens them, developers redeem keys for tickets, viewers read the audit. */
export function installSessionRoutes({ app, store, recorder, origins, limiter, audit, metrics, policy }: SessionRouteDeps): void {
  const widgetToken = async (req: { headers: Record<string, unknown> }, sessionId: string) => {
    const token = req.headers["x-assist-token"];
    if (typeof token !== "string") throw forbidden("the x-assist-token header (the session token) is required");
    return store.widgetSession(sessionId, token);
  };

  app.post(
    "/assist/sessions",
    {
      config: { access: "public" },
      schema: { body: Type.Object({ pageUrl: Type.String({ maxLength: 2048 }) }, { additionalProperties: false }) },
    },
    async (req, reply) => {
      const origin = await origins.require(req, "widget");
      // Stored, audited and published on the bus: a page's own credentials in its URL (`?sessionid=`) stay out of all three.
      const opened = await store.open(origin, redactCredentials(req.body.pageUrl), req.id);
      reply.code(201);
      return { ...opened, policy } satisfies OpenedSession;
    },
  );

  // The page opens its socket with a single-use ticket, never with the session token in the URL (URLs end up in access logs).
  app.post("/assist/sessions/:id/widget-ticket", { config: { access: "public" }, schema: { params: SessionParams } }, async (req) => {
    const origin = await origins.require(req, "widget");
    try {
      await widgetToken(req, req.params.id);
    } catch (err) {
      metrics.refusals.inc({ reason: "widget-token" });
      await store.refusal(req.params.id, `origin:${origin}`, "widget-token", (err as Error).message);
      throw err;
    }
    return store.issueWidgetTicket(req.params.id, req.id);
  });

  app.post("/assist/sessions/:id/key", { config: { access: "public" }, schema: { params: SessionParams } }, async (req) => {
    await origins.require(req, "widget");
    await widgetToken(req, req.params.id);
    return store.renewKey(req.params.id, req.id);
  });

  app.post(
    "/assist/connect",
    {
      config: { access: { role: "viewer" } },
      schema: { body: Type.Object({ key: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false }) },
    },
    async (req, reply) => {
      const principal = req.principal as Principal;
      const clients = [`principal:${principal.kind}:${principal.id}`, `ip:${req.ip}`];
      if (await limiter.blocked(clients)) {
        metrics.refusals.inc({ reason: "key-attempts" });
        await store.refusal(undefined, `${principal.kind}:${principal.id}`, "key-attempts", `ip ${req.ip}`);
        reply.header("retry-after", "900");
        throw new AppError(429, "too_many_attempts", "too many wrong connection keys from this client; try again later");
      }
      try {
        const { sessionId } = await store.redeem(req.body.key, principal, req.id);
        return { sessionId, ...(await store.issueTicket(sessionId, principal, req.id)) };
      } catch (err) {
        if (!(err instanceof KeyRefused)) throw err;
        metrics.refusals.inc({ reason: `key-${err.reason}` });
        await limiter.fail(clients);
        await store.refusal(err.sessionId, `${principal.kind}:${principal.id}`, `key-${err.reason}`, `ip ${req.ip}`);
        await audit.record(store.pool, {
          principal,
          action: "session.connect",
          target: err.sessionId ? `session/${err.sessionId}` : "session/?",
          after: { reason: err.reason },
          requestId: req.id,
          outcome: "denied",
        });
        throw err.reason === "malformed" ? badRequest(err.message) : new AppError(403, `key_${err.reason}`, err.message);
      }
    },
  );

  app.post("/assist/sessions/:id/tickets", { config: { access: { role: "viewer" } }, schema: { params: SessionParams } }, async (req) =>
    store.issueTicket(req.params.id, req.principal as Principal, req.id),
  );

  app.post("/assist/sessions/:id/end", { config: { access: "public" }, schema: { params: SessionParams } }, async (req) => {
    await origins.require(req, "widget");
    await widgetToken(req, req.params.id);
    await store.end(req.params.id, "operator");
    return presentSession(await store.get(req.params.id));
  });

  app.get(
    "/assist/sessions",
    {
      schema: {
        querystring: Type.Object({
          status: Type.Optional(Type.Union([Type.Literal("waiting"), Type.Literal("active"), Type.Literal("ended")])),
          limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
        }),
      },
    },
    async (req) => ({ sessions: (await store.list(req.query.status, req.query.limit)).map(presentSession) }),
  );

  app.get("/assist/sessions/:id", { schema: { params: SessionParams } }, async (req) => {
    const session = await store.get(req.params.id);
    const trail = await store.auditTrail(req.params.id);
    return {
      ...presentSession(session),
      watches: trail.watches.map((w) => ({
        developer: w.developer,
        startedAt: w.started_at.toISOString(),
        endedAt: w.ended_at?.toISOString() ?? null,
        seconds: ((w.ended_at ?? new Date()).getTime() - w.started_at.getTime()) / 1000,
      })),
      controlGrants: trail.controlGrants.map((g) => ({
        developer: g.developer,
        grantedAt: g.granted_at.toISOString(),
        revokedAt: g.revoked_at?.toISOString() ?? null,
        revokedBy: g.revoked_by,
      })),
      refusals: (await store.refusals(req.params.id)).map((r) => ({
        actor: r.actor,
        reason: r.reason,
        detail: r.detail,
        at: r.at.toISOString(),
      })),
    };
  });

  app.get(
    "/assist/sessions/:id/recording",
    {
      schema: {
        params: SessionParams,
        querystring: Type.Object({
          after: Type.Integer({ minimum: 0, default: 0 }),
          limit: Type.Integer({ minimum: 1, maximum: 5000, default: 1000 }),
        }),
      },
    },
    async (req) => {
      await store.get(req.params.id);
      await recorder.flush();
      const events = await recorder.read(req.params.id, req.query.after, req.query.limit);
      return { events, next: events.length === req.query.limit ? events[events.length - 1]!.id : null };
    },
  );
}
