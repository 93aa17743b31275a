import { create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  AuditEntrySchema,
  AuditService,
  type ListAuditEntriesRequest,
  ListAuditEntriesRequestSchema,
  type ListAuditEntriesResponse,
  ListAuditEntriesResponseSchema,
} from "@opsplane/contracts";
import type { Queryable } from "@opsplane/store";
import { Type } from "@sinclair/typebox";
import type { App } from "./app.js";
import type { Access } from "./auth.js";
import { badRequest } from "./errors.js";
import { type RpcService, rpcService } from "./rpc.js";
import { timeRange } from "./time-range.js";

/** REST path of the audit query; services serving requests before the router leave it to the kit. */
export const auditRestPath = "/_audit/v1/entries";

/**
 * Operators and admins read the trail; viewers do not. It holds the before and after of every
 * change (rule scripts, environment URLs, reporters' contact details) and the record of refused
 * calls (which keys probed which routes): an operator needs it to answer "who changed this", and a
 * viewer key, the one dashboards and read-only tools hold, has no business with either.
 */
const auditAccess: Access = { role: "operator" };

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;
const outcomes = new Set(["ok", "denied"]);
interface AuditRow {
  id: number;
  at: Date;
  actor: string;
  role: string | null;
  action: string;
  target: string;
  before: JsonValue | null;
  after: JsonValue | null;
  request_id: string | null;
  outcome: string;
}

/** Entries newest first (by id, the order they were written), filtered, `limit` at a time after `pageToken`. */
export async function listAuditEntries(pool: Queryable, req: ListAuditEntriesRequest): Promise<ListAuditEntriesResponse> {
  if (req.outcome && !outcomes.has(req.outcome)) throw badRequest(`outcome must be "ok" or "denied" (got ${JSON.stringify(req.outcome)})`);
  if (req.pageToken && !/^\d{1,18}$/.test(req.pageToken)) throw badRequest("pageToken must be a nextPageToken this API returned");
  if (req.limit < 0 || req.limit > MAX_LIMIT) throw badRequest(`limit must be between 1 and ${MAX_LIMIT}`);
  const limit = req.limit || DEFAULT_LIMIT;
  // Conditions only for the filters given, so the planner can use the (actor|action|target, id) indexes.
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    where.push(sql.replace("?", `$${params.length}`));
  };
  if (req.actor) add("actor = ?", req.actor);
  if (req.action) add("action = ?", req.action);
  if (req.target) add("target = ?", req.target);
  if (req.outcome) add("outcome = ?", req.outcome);
  const { from, to } = timeRange(req);
  if (from) add("at >= ?::timestamptz", from);
  if (to) add("at < ?::timestamptz", to);
  if (req.pageToken) add("id < ?", req.pageToken);
  params.push(limit + 1);
  const { rows } = await pool.query<AuditRow>(
    `SELECT id, at, actor, role, action, target, before, after, request_id, outcome FROM audit_log
     ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT $${params.length}`,
    params,
  );
  const page = rows.slice(0, limit);
  return create(ListAuditEntriesResponseSchema, {
    entries: page.map((r) =>
      create(AuditEntrySchema, {
        id: BigInt(r.id),
        at: r.at.toISOString(),
        actor: r.actor,
        role: r.role ?? "",
        action: r.action,
        target: r.target,
        before: r.before === null ? undefined : fromJson(ValueSchema, r.before),
        after: r.after === null ? undefined : fromJson(ValueSchema, r.after),
        requestId: r.request_id ?? "",
        outcome: r.outcome,
      }),
    ),
    nextPageToken: rows.length > limit ? String(page[page.length - 1]!.id) : "",
  });
}

/** `ops.v1.AuditService` over the service's own trail. */
export function auditRpc(pool: Queryable): RpcService {
  return rpcService({
    service: AuditService,
    access: auditAccess,
    impl: { listAuditEntries: (req) => listAuditEntries(pool, req) },
  });
}

const text = Type.Optional(Type.String({ maxLength: 512 }));

/**
 * `GET /_audit/v1/entries`: the RPC's query as query-string parameters (same names), answered
 * with the RPC's JSON, so both read the same.
 */
export function installAuditRoute(app: App, pool: Queryable): void {
  app.get(
    auditRestPath,
    {
      config: { access: auditAccess },
      schema: {
        querystring: Type.Object(
          {
            actor: text,
            action: text,
            target: text,
            outcome: text,
            from: text,
            to: text,
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LIMIT })),
            pageToken: text,
          },
          { additionalProperties: false },
        ),
      },
    },
    async (req) => toJson(ListAuditEntriesResponseSchema, await listAuditEntries(pool, create(ListAuditEntriesRequestSchema, req.query))),
  );
}
