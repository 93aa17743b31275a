import type { Sanitiser } from "@opsplane/assist-widget/sanitiser";
import { type App, AppError, type Auditor, badRequest, forbidden, type Principal, redactCredentials } from "@opsplane/platform";
import { Type } from "@sinclair/typebox";
import type { FastifyRequest } from "fastify";
import type { FailureLimiter } from "./failure-limiter.js";
import type { Hub } from "./hub.js";
import type { AssistMetrics } from "./metrics.js";
import type { OriginPolicy } from "./origin-policy.js";
import type { CapturePolicy, OpenedSession, ToDeveloper, ToWidget } from "./protocol.js";
import type { PublicLimiter } from "./public-limiter.js";
import type { Recorder } from "./recorder.js";
import { KeyRefused, type SessionRow, type SessionStore } from "./session-store.js";

export interface SessionRouteDeps {
  app: App;
  store: SessionStore;
  recorder: Recorder;
  hub: Hub;
  origins: OriginPolicy;
  limiter: FailureLimiter;
  publicLimiter: PublicLimiter;
  clientAddress: (req: FastifyRequest) => string;
  audit: Auditor;
  metrics: AssistMetrics;
  policy: CapturePolicy;
  sanitiser: Sanitiser;
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
export function installSessionRoutes(deps: SessionRouteDeps): void {
  const { app, store, recorder, hub, origins, limiter, publicLimiter, clientAddress, audit, metrics, policy, sanitiser } = deps;
  const widgetToken = async (req: { headers: Record<string, unknown> }, sessionId: string) => {
    const token = req.headers["x-assist-token"];
    if (typeof token !== "string") throw forbidden("the x-assist-token header (the session token) is required");
    return store.widgetSession(sessionId, token);
  };

  // The widget masks with the relay's settings from the page's start, so calls and console lines before a session are masked alike.
  app.get("/assist/policy", { config: { access: "public" } }, async (req) => {
    await origins.require(req, "widget");
    return policy;
  });

  app.post(
    "/assist/sessions",
    {
      config: { access: "public" },
      schema: { body: Type.Object({ pageUrl: Type.String({ maxLength: 2048 }) }, { additionalProperties: false }) },
    },
    async (req, reply) => {
      // Counted before the origin check: a flood of refused origins would otherwise cost a refusal record each.
      await publicLimiter.take("session", clientAddress(req), reply);
      const origin = await origins.require(req, "widget");
      // Stored, audited and published on the bus: a page's own credentials in its URL (`?sessionid=`) stay out of all three.
      const opened = await store.open(origin, sanitiser.text(redactCredentials(req.body.pageUrl)), req.id);
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
      const client = { principal: `${principal.kind}:${principal.id}`, address: clientAddress(req) };
      const blocked = await limiter.attempt(client);
      if (blocked) {
        metrics.refusals.inc({ reason: "key-attempts" });
        await store.refusal(undefined, client.principal, "key-attempts", `${blocked.by}; address ${client.address}`);
        reply.header("retry-after", String(blocked.retryAfterSeconds));
        throw new AppError(
          429,
          "too_many_attempts",
          `too many wrong connection keys from this ${blocked.by}; try again in ${blocked.retryAfterSeconds} s`,
        );
      }
      let refused = false;
      try {
        const { sessionId } = await store.redeem(req.body.key, principal, req.id);
        return { sessionId, ...(await store.issueTicket(sessionId, principal, req.id)) };
      } catch (err) {
        if (!(err instanceof KeyRefused)) throw err;
        refused = true;
        metrics.refusals.inc({ reason: `key-${err.reason}` });
        await store.refusal(err.sessionId, client.principal, `key-${err.reason}`, `address ${client.address}`);
        await audit.record(store.pool, {
          principal,
          action: "session.connect",
          target: err.sessionId ? `session/${err.sessionId}` : "session/?",
          after: { reason: err.reason },
          requestId: req.id,
          outcome: "denied",
        });
        // The operator's page shows that its key is blocked and offers a new one.
        if (err.blockedNow && err.sessionId)
          await hub.publish(err.sessionId, "widget", JSON.stringify({ t: "key-blocked" } satisfies ToWidget));
        if (err.reason === "malformed") throw badRequest(err.message);
        // Unknown and wrong keys get the same answer: which lookups exist is not for guessing.
        if (err.reason === "unknown" || err.reason === "wrong")
          throw new AppError(403, "key_wrong", "wrong connection key; check it with the operator");
        throw new AppError(403, `key_${err.reason}`, err.message);
      } finally {
        // Counted as failed before it was tried: only a refused key stays counted.
        if (!refused) await limiter.succeeded(client);
      }
    },
  );

  app.post("/assist/sessions/:id/tickets", { config: { access: { role: "viewer" } }, schema: { params: SessionParams } }, async (req) =>
    store.issueTicket(req.params.id, req.principal as Principal, req.id),
  );

  app.post("/assist/sessions/:id/end", { config: { access: "public" }, schema: { params: SessionParams } }, async (req) => {
    await origins.require(req, "widget");
    await widgetToken(req, req.params.id);
    // The page ends this way (its socket may be down); the developer is told, and the page's socket, if any, is closed.
    if (await store.end(req.params.id, "operator")) {
      await hub.publish(req.params.id, "developer", JSON.stringify({ t: "session-ended", by: "operator" } satisfies ToDeveloper));
      await hub.publish(req.params.id, "widget", JSON.stringify({ t: "session-ended", by: "operator" } satisfies ToWidget));
    }
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
      const session = await store.get(req.params.id);
      // While it runs, the recording is the live view a few hundred milliseconds late: only for those the operator let
      // watch (they entered the key). Once it has ended, any viewer may replay it.
      const principal = req.principal as Principal;
      if (session.status !== "ended" && (principal.kind !== "key" || !(await store.joined(session.id, `key:${principal.id}`))))
        throw forbidden("this session is still running: until it ends, its recording is only for the developers who entered its key");
      await recorder.flush();
      const events = await recorder.read(req.params.id, req.query.after, req.query.limit);
      return { events, next: events.length === req.query.limit ? events[events.length - 1]!.id : null };
    },
  );
}
