import { NestedTooDeep, type Sanitiser } from "@opsplane/assist-widget/sanitiser";
import { type App, badRequest, forbidden, type Principal, payloadTooLarge } from "@opsplane/platform";
import { Type } from "@sinclair/typebox";
import type { FastifyRequest } from "fastify";
import type { OriginPolicy } from "./origin-policy.js";
import type { PublicLimiter } from "./public-limiter.js";
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

type Attachment = { kind: "snapshot" | "image"; name: string; contentType: string; dataBase64: string };

/** A page snapshot is page content like the live stream: the sanitiser masks it the same way before it is stored. */
function maskedSnapshot(a: Attachment, sanitiser: Sanitiser): Attachment {
  // An image is only ever an image: JSON under an image's kind would be stored without masking.
  if (a.kind === "image") {
    if (!a.contentType.startsWith("image/"))
      throw badRequest(`the image ${a.name} must have an image/* content type, not ${a.contentType}`);
    return a;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(a.dataBase64, "base64").toString("utf8"));
  } catch {
    throw badRequest(`the snapshot ${a.name} is not JSON`);
  }
  // The widget's snapshot is a list of rrweb events (a Meta and a full snapshot), masked as the live stream is;
  // anything else is masked as one event would be.
  let masked: unknown;
  try {
    masked = Array.isArray(parsed) ? sanitiser.rrweb(parsed) : sanitiser.rrweb([parsed])[0];
  } catch (err) {
    if (err instanceof NestedTooDeep) throw badRequest(`the snapshot ${a.name} is ${err.message}`);
    throw err;
  }
  return { ...a, dataBase64: Buffer.from(JSON.stringify(masked)).toString("base64") };
}

/** The problem-report channel over REST: reporters file and follow, handlers change status and comment, viewers read stats. */
export function installReportRoutes(
  app: App,
  reports: ReportStore,
  sessions: SessionStore,
  origins: OriginPolicy,
  publicLimiter: PublicLimiter,
  clientAddress: (req: FastifyRequest) => string,
  sanitiser: Sanitiser,
  bodyLimit: number,
): void {
  const reportRoute = {
    config: { access: "public" as const },
    bodyLimit,
    schema: { body: NewReportBody },
    // The platform's error model names the service-wide BODY_LIMIT_BYTES; this route's limit is its own.
    errorHandler: (err: { code?: string }) => {
      throw err.code === "FST_ERR_CTP_BODY_TOO_LARGE" ? payloadTooLarge(bodyLimit) : err;
    },
  };
  app.post("/assist/reports", reportRoute, async (req, reply) => {
    // Counted before the origin check, like opening a session: a forged Origin passes that check from curl.
    await publicLimiter.take("report", clientAddress(req), reply);
    await origins.require(req, "report channel");
    const { session, attachments, description, contact, customerRef, ...fields } = req.body;
    // Free text the reporter typed may hold a card or mobile number, an OTP: masked like page text before it is stored.
    const input = {
      ...fields,
      description: sanitiser.text(description),
      ...(contact === undefined ? {} : { contact: sanitiser.text(contact) }),
      ...(customerRef === undefined ? {} : { customerRef: sanitiser.text(customerRef) }),
      ...(attachments ? { attachments: attachments.map((a) => maskedSnapshot(a, sanitiser)) } : {}),
    };
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
