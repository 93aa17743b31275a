import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { Bus } from "@opsplane/bus";
import { ProblemReportChangedSchema, toEventData, topics } from "@opsplane/contracts";
import { type Auditor, badRequest, conflict, forbidden, notFound, type Principal } from "@opsplane/platform";
import { type Pool, type PoolClient, withTransaction } from "@opsplane/store";
import { newToken, tokenHash } from "./keys.js";

export const categories = ["data", "program", "consultation", "other"] as const;
export const statuses = ["open", "in_progress", "resolved", "closed"] as const;
export type Category = (typeof categories)[number];
export type Status = (typeof statuses)[number];

/** Which status a report may move to from each status (resolved may be reopened; closed is final). */
const nextStatuses: Record<Status, Status[]> = {
  open: ["in_progress", "resolved", "closed"],
  in_progress: ["resolved", "closed"],
  resolved: ["in_progress", "closed"],
  closed: [],
};

export interface NewReport {
  reporter: string;
  contact?: string;
  customerRef?: string;
  category: Category;
  description: string;
  attachments?: Array<{ kind: "snapshot" | "image"; name: string; contentType: string; dataBase64: string }>;
  sessionId?: string;
}

export interface ReportRow {
  id: string;
  reporter: string;
  contact: string;
  customer_ref: string;
  category: Category;
  description: string;
  status: Status;
  session_id: string | null;
  created_at: Date;
  updated_at: Date;
  first_response_at: Date | null;
  resolved_at: Date | null;
}

const columns =
  "id, reporter, contact, customer_ref, category, description, status, session_id, created_at, updated_at, first_response_at, resolved_at";
const actorOf = (p: Principal | undefined) => (p ? `${p.kind}:${p.id}` : "reporter");

/** The problem-report channel: reports, attachments, handling history and statistics. */
export class ReportStore {
  constructor(
    private readonly pool: Pool,
    private readonly bus: Bus,
    private readonly audit: Auditor,
  ) {}

  async create(
    input: NewReport,
    principal: Principal | undefined,
    requestId: string,
    linkSession?: (tx: PoolClient, id: string) => Promise<void>,
  ) {
    const id = randomUUID();
    const reporterToken = newToken();
    return withTransaction(this.pool, async (tx) => {
      await tx.query(
        `INSERT INTO reports (id, reporter, contact, customer_ref, category, description, reporter_token_hash, session_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [
          id,
          input.reporter,
          input.contact ?? "",
          input.customerRef ?? "",
          input.category,
          input.description,
          reporterToken.hash,
          input.sessionId ?? null,
        ],
      );
      for (const a of input.attachments ?? []) {
        const content = Buffer.from(a.dataBase64, "base64");
        if (content.length === 0) throw badRequest(`attachment "${a.name}" is empty or not base64`);
        await tx.query("INSERT INTO report_attachments (report_id, kind, name, content_type, content) VALUES ($1, $2, $3, $4, $5)", [
          id,
          a.kind,
          a.name,
          a.contentType,
          content,
        ]);
      }
      await tx.query("INSERT INTO report_history (report_id, actor, to_status, comment) VALUES ($1, $2, 'open', 'reported')", [
        id,
        input.reporter,
      ]);
      await linkSession?.(tx, id);
      await this.audit.record(tx, {
        principal,
        action: "report.create",
        target: `report/${id}`,
        after: { category: input.category, sessionId: input.sessionId },
        requestId,
      });
      await this.publish(tx, id, input.category, "open", "", actorOf(principal));
      return { id, reporterToken: reporterToken.token, status: "open" as Status };
    });
  }

  /** Moves a report to `to` with an optional comment; the first handler action sets the first-response time. */
  async transition(id: string, to: Status, comment: string, principal: Principal, requestId: string) {
    return withTransaction(this.pool, async (tx) => {
      const report = await this.lock(tx, id);
      if (!nextStatuses[report.status].includes(to))
        throw conflict(`a report that is ${report.status} cannot become ${to}`, { allowed: nextStatuses[report.status] });
      const { rows } = await tx.query<ReportRow>(
        `UPDATE reports SET status = $2, updated_at = now(), first_response_at = COALESCE(first_response_at, now()),
           resolved_at = CASE WHEN $2 IN ('resolved', 'closed') THEN COALESCE(resolved_at, now()) WHEN $2 = 'in_progress' THEN NULL ELSE resolved_at END
         WHERE id = $1 RETURNING ${columns}`,
        [id, to],
      );
      await tx.query("INSERT INTO report_history (report_id, actor, from_status, to_status, comment) VALUES ($1, $2, $3, $4, $5)", [
        id,
        actorOf(principal),
        report.status,
        to,
        comment,
      ]);
      await this.audit.record(tx, {
        principal,
        action: "report.transition",
        target: `report/${id}`,
        before: { status: report.status },
        after: { status: to, comment },
        requestId,
      });
      await this.publish(tx, id, report.category, to, report.status, actorOf(principal));
      return rows[0]!;
    });
  }

  async comment(id: string, comment: string, visibleToReporter: boolean, principal: Principal, requestId: string) {
    await withTransaction(this.pool, async (tx) => {
      const report = await this.lock(tx, id);
      if (report.status === "closed") throw conflict("a closed report takes no more comments");
      await tx.query("UPDATE reports SET updated_at = now(), first_response_at = COALESCE(first_response_at, now()) WHERE id = $1", [id]);
      await tx.query("INSERT INTO report_history (report_id, actor, comment, visible_to_reporter) VALUES ($1, $2, $3, $4)", [
        id,
        actorOf(principal),
        comment,
        visibleToReporter,
      ]);
      await this.audit.record(tx, {
        principal,
        action: "report.comment",
        target: `report/${id}`,
        after: { comment, visibleToReporter },
        requestId,
      });
    });
  }

  private async lock(tx: PoolClient, id: string): Promise<ReportRow> {
    const { rows } = await tx.query<ReportRow>(`SELECT ${columns} FROM reports WHERE id = $1 FOR UPDATE`, [id]);
    if (!rows[0]) throw notFound(`no report ${id}`);
    return rows[0];
  }

  private async publish(tx: PoolClient, id: string, category: string, status: string, previousStatus: string, actor: string) {
    const event = create(ProblemReportChangedSchema, { reportId: id, category, status, previousStatus, actor });
    await this.bus.publish(
      {
        topic: topics.assistReportChanged.name,
        type: topics.assistReportChanged.type,
        key: id,
        data: toEventData(topics.assistReportChanged, event),
      },
      { tx },
    );
  }

  async get(id: string, onlyVisibleToReporter = false) {
    const { rows } = await this.pool.query<ReportRow>(`SELECT ${columns} FROM reports WHERE id = $1`, [id]);
    if (!rows[0]) throw notFound(`no report ${id}`);
    const history = await this.pool.query<{
      actor: string;
      from_status: string | null;
      to_status: string | null;
      comment: string;
      visible_to_reporter: boolean;
      at: Date;
    }>(
      `SELECT actor, from_status, to_status, comment, visible_to_reporter, at FROM report_history
       WHERE report_id = $1 AND ($2 = false OR visible_to_reporter) ORDER BY id`,
      [id, onlyVisibleToReporter],
    );
    const attachments = await this.pool.query<{ id: string; kind: string; name: string; content_type: string; size: number }>(
      "SELECT id, kind, name, content_type, length(content) AS size FROM report_attachments WHERE report_id = $1 ORDER BY id",
      [id],
    );
    return {
      ...present(rows[0]),
      history: history.rows.map((h) => ({
        actor: h.actor,
        fromStatus: h.from_status,
        toStatus: h.to_status,
        comment: h.comment,
        visibleToReporter: h.visible_to_reporter,
        at: h.at.toISOString(),
      })),
      attachments: attachments.rows.map((a) => ({
        id: Number(a.id),
        kind: a.kind,
        name: a.name,
        contentType: a.content_type,
        size: a.size,
      })),
    };
  }

  /** The reporter's view: only with the token given at creation, only comments meant for the reporter. */
  async follow(id: string, reporterToken: string) {
    const { rows } = await this.pool.query<{ reporter_token_hash: string }>("SELECT reporter_token_hash FROM reports WHERE id = $1", [id]);
    if (!rows[0] || rows[0].reporter_token_hash !== tokenHash(reporterToken)) throw forbidden("unknown report or wrong reporter token");
    const report = await this.get(id, true);
    return { ...report, history: report.history.map(({ visibleToReporter: _, ...h }) => h) };
  }

  async attachment(reportId: string, attachmentId: number) {
    const { rows } = await this.pool.query<{ name: string; content_type: string; content: Buffer }>(
      "SELECT name, content_type, content FROM report_attachments WHERE report_id = $1 AND id = $2",
      [reportId, attachmentId],
    );
    if (!rows[0]) throw notFound(`report ${reportId} has no attachment ${attachmentId}`);
    return rows[0];
  }

  async list(filter: { status?: string; category?: string; limit: number }) {
    const { rows } = await this.pool.query<ReportRow>(
      `SELECT ${columns} FROM reports WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR category = $2)
       ORDER BY created_at DESC LIMIT $3`,
      [filter.status ?? null, filter.category ?? null, filter.limit],
    );
    return rows.map(present);
  }

  /** Per category and UTC day of creation: volume, handled ratio, mean time to first response and to resolution. */
  async stats(from: string, to: string) {
    const { rows } = await this.pool.query<{
      day: string;
      category: string;
      volume: number;
      handled_ratio: number;
      first_response: number | null;
      resolve: number | null;
    }>(
      `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, category, count(*)::int AS volume,
              avg(CASE WHEN status IN ('resolved', 'closed') THEN 1.0 ELSE 0.0 END)::float8 AS handled_ratio,
              avg(extract(epoch FROM first_response_at - created_at))::float8 AS first_response,
              avg(extract(epoch FROM resolved_at - created_at))::float8 AS resolve
       FROM reports
       WHERE created_at >= ($1::date AT TIME ZONE 'UTC') AND created_at < (($2::date + 1) AT TIME ZONE 'UTC')
       GROUP BY 1, 2 ORDER BY 1, 2`,
      [from, to],
    );
    return rows.map((r) => ({
      day: r.day,
      category: r.category,
      volume: r.volume,
      handledRatio: r.handled_ratio,
      meanFirstResponseSeconds: r.first_response ?? 0,
      meanResolveSeconds: r.resolve ?? 0,
    }));
  }
}

export function present(r: ReportRow) {
  return {
    id: r.id,
    reporter: r.reporter,
    contact: r.contact,
    customerRef: r.customer_ref,
    category: r.category,
    description: r.description,
    status: r.status,
    sessionId: r.session_id,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    firstResponseAt: r.first_response_at?.toISOString() ?? null,
    resolvedAt: r.resolved_at?.toISOString() ?? null,
  };
}
