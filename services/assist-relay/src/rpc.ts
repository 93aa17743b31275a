import { create } from "@bufbuild/protobuf";
import {
  AssistService,
  AssistSessionSchema,
  GetProblemReportStatsResponseSchema,
  ListAssistSessionsResponseSchema,
  ListProblemReportsResponseSchema,
  ProblemReportSchema,
  ProblemReportStatSchema,
} from "@opsplane/contracts";
import { badRequest, rpcService } from "@opsplane/platform";
import { statsRange } from "./report-routes.js";
import { categories, type ReportStore, statuses } from "./report-store.js";
import type { SessionStore } from "./session-store.js";

const clampLimit = (n: number) => (n <= 0 ? 50 : Math.min(n, 500));
const oneOf = <T extends string>(value: string, allowed: readonly T[], field: string): T | undefined => {
  if (!value) return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw badRequest(`${field} must be one of ${allowed.join(", ")}`);
  return value as T;
};

/** A YYYY-MM-DD day that exists (2024-02-30 and 2024-99-99 do not). */
const isCalendarDate = (v: string) => /^\d{4}-\d{2}-\d{2}$/.test(v) && new Date(Date.parse(v) || 0).toISOString().slice(0, 10) === v;

/** Read-only Connect queries over sessions and reports (viewer role). */
export function assistRpc(sessions: SessionStore, reports: ReportStore) {
  return rpcService({
    service: AssistService,
    access: { role: "viewer" },
    impl: {
      async listAssistSessions(req) {
        const status = oneOf(req.status, ["waiting", "active", "ended"] as const, "status");
        const rows = await sessions.list(status, clampLimit(req.limit));
        return create(ListAssistSessionsResponseSchema, {
          sessions: rows.map((s) =>
            create(AssistSessionSchema, {
              id: s.id,
              status: s.status,
              origin: s.origin,
              pageUrl: s.page_url,
              developer: s.developer ?? "",
              reportId: s.report_id ?? "",
              openedAt: s.opened_at.toISOString(),
              endedAt: s.ended_at?.toISOString() ?? "",
            }),
          ),
        });
      },
      async listProblemReports(req) {
        const rows = await reports.list({
          status: oneOf(req.status, statuses, "status"),
          category: oneOf(req.category, categories, "category"),
          limit: clampLimit(req.limit),
        });
        return create(ListProblemReportsResponseSchema, {
          reports: rows.map((r) => create(ProblemReportSchema, { ...r, sessionId: r.sessionId ?? "" })),
        });
      },
      async getProblemReportStats(req) {
        for (const [field, v] of [
          ["from", req.from],
          ["to", req.to],
        ] as const)
          if (v && !isCalendarDate(v)) throw badRequest(`${field} must be a date as YYYY-MM-DD`);
        const { from, to } = statsRange(req.from, req.to);
        const stats = await reports.stats(from, to);
        return create(GetProblemReportStatsResponseSchema, { stats: stats.map((s) => create(ProblemReportStatSchema, s)) });
      },
    },
  });
}
