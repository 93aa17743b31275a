import { type App, forbidden, type Principal } from "@opsplane/platform";
import { Type } from "@sinclair/typebox";
import type { OriginPolicy } from "./origin-policy.js";
import { categories, type ReportStore, statuses } from "./report-store.js";
import type { SessionStore } from "./session-store.js";

const literals = <T extends string>(values: readonly T[]) => Type.Union(values.map((v) => Type.Literal(v)));
const ReportParams = Type.Object({ id: Type.String({ format: "uuid" }) });

const NewReportBody = Type.Object(
  {
    reporter: Type.String({ minLength: 1, maxLength: 200 }),
    contact: Type.Optional(Type.String({ maxLength: 200 })),
    customerRef: Type.Optional(Type.String({ maxLength: 200 })),
    category: literals(categories),
    description: Type.String({ minLength: 1, maxLength: 20000 }),
    attachments: Type.Optional(
      Type.Array(
        Type.Object({
          kind: Type.Union([Type.Literal("snapshot"), Type.Literal("image")]),
          name: Type.String({ minLength: 1, maxLength: 200 }),
          contentType: Type.String({ pattern: "^(image/[a-z0-9.+-]+|application/json)$" }),
          dataBase64: Type.String({ minLength: 1 }),
        }),
        { maxItems: 10 },
      ),
    ),
    /** Links the report to the assist session the widget holds (with its session token). */
    session: Type.Optional(Type.Object({ id: Type.String({ format: "uuid" }), token: Type.String({ minLength: 1 }) })),
  },
  { additionalProperties: false },
);

/** The problem-report channel over REST: reporters file and follow, handlers change status and comment, viewers read stats. */
export function installReportRoutes(
  app: App,
  reports: ReportStore,
  sessions: SessionStore,
  origins: OriginPolicy,
  bodyLimit: number,
): void {
  app.post("/assist/reports", { config: { access: "public" }, bodyLimit, schema: { body: NewReportBody } }, async (req, reply) => {
    // Signed-in callers (a handler filing on someone's behalf) need no widget origin; the widget's page does.
    if (!req.principal) await origins.require(req, "report channel");
    const { session, ...input } = req.body;
    if (session) await sessions.widgetSession(session.id, session.token);
    const created = await reports.create({ ...input, sessionId: session?.id }, req.principal, req.id, async (tx, id) => {
      if (session) await sessions.linkReport(session.id, id, tx);
    });
    reply.code(201);
    return created;
  });

  app.get(
    "/assist/reports",
    {
      schema: {
        querystring: Type.Object({
          status: Type.Optional(literals(statuses)),
          category: Type.Optional(literals(categories)),
          limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
        }),
      },
    },
    async (req) => ({ reports: await reports.list(req.query) }),
  );

  app.get(
    "/assist/reports/stats",
    {
      schema: {
        querystring: Type.Object({
          from: Type.Optional(Type.String({ format: "date" })),
          to: Type.Optional(Type.String({ format: "date" })),
        }),
      },
    },
    async (req) => {
      const { from, to } = statsRange(req.query.from, req.query.to);
      return { from, to, stats: await reports.stats(from, to) };
    },
  );

  app.get("/assist/reports/:id", { schema: { params: ReportParams } }, async (req) => reports.get(req.params.id));

  app.get("/assist/reports/:id/follow", { config: { access: "public" }, schema: { params: ReportParams } }, async (req) => {
    const token = req.headers["x-reporter-token"];
    if (typeof token !== "string") throw forbidden("the x-reporter-token header (given when the report was filed) is required");
    return reports.follow(req.params.id, token);
  });

  app.get(
    "/assist/reports/:id/attachments/:attachmentId",
    { schema: { params: Type.Object({ id: Type.String({ format: "uuid" }), attachmentId: Type.Integer({ minimum: 1 }) }) } },
    async (req, reply) => {
      const a = await reports.attachment(req.params.id, req.params.attachmentId);
      reply.type(a.content_type).header("content-disposition", `attachment; filename="${a.name.replace(/["\\\r\n]/g, "_")}"`);
      return a.content;
    },
  );

  app.post(
    "/assist/reports/:id/status",
    {
      config: { access: { role: "operator" } },
      schema: {
        params: ReportParams,
        body: Type.Object(
          { status: literals(statuses), comment: Type.Optional(Type.String({ maxLength: 20000 })) },
          { additionalProperties: false },
        ),
      },
    },
    async (req) => {
      await reports.transition(req.params.id, req.body.status, req.body.comment ?? "", req.principal as Principal, req.id);
      return reports.get(req.params.id);
    },
  );

  app.post(
    "/assist/reports/:id/comments",
    {
      config: { access: { role: "operator" } },
      schema: {
        params: ReportParams,
        body: Type.Object(
          { comment: Type.String({ minLength: 1, maxLength: 20000 }), visibleToReporter: Type.Boolean({ default: true }) },
          { additionalProperties: false },
        ),
      },
    },
    async (req, reply) => {
      await reports.comment(req.params.id, req.body.comment, req.body.visibleToReporter, req.principal as Principal, req.id);
      reply.code(201);
      return reports.get(req.params.id);
    },
  );
}

/** Defaults to the last 30 days (UTC), ending today. */
export function statsRange(from: string | undefined, to: string | undefined) {
  const today = new Date().toISOString().slice(0, 10);
  const end = to || today;
  const start = from || new Date(Date.parse(end) - 29 * 86400_000).toISOString().slice(0, 10);
  return { from: start, to: end };
}
