import type { ReportedResourceJson as ReportedResource } from "@opsplane/contracts";
import { badRequest, notFound } from "@opsplane/platform";
import { advisoryXactLock, type Pool, withTransaction } from "@opsplane/store";
import type { RegisteredInstance } from "./instances.js";

export type AppResourceKind = "interface" | "queue" | "job";

const codePattern = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}$/;
const maxPerKind = 5_000;

function checkList(list: unknown, kind: AppResourceKind): ReportedResource[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw badRequest(`${kind}s must be an array`);
  if (list.length > maxPerKind) throw badRequest(`at most ${maxPerKind} ${kind}s per report`);
  const seen = new Set<string>();
  return list.map((r: ReportedResource, i) => {
    if (typeof r !== "object" || r === null) throw badRequest(`${kind}s[${i}] must be an object`);
    if (typeof r.code !== "string" || !codePattern.test(r.code))
      throw badRequest(`${kind}s[${i}].code must be 1-200 of A-Z a-z 0-9 _ . : / -`);
    if (seen.has(r.code)) throw badRequest(`${kind} ${r.code} is reported twice`);
    seen.add(r.code);
    for (const f of ["handler", "description", "method", "path", "topic", "cron"] as const)
      if (r[f] !== undefined && (typeof r[f] !== "string" || r[f]!.length > 1024))
        throw badRequest(`${kind}s[${i}].${f} must be a string of at most 1024 characters`);
    if (r.method && !/^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)$/i.test(r.method))
      throw badRequest(`${kind}s[${i}].method is not an HTTP method`);
    if (r.path && !r.path.startsWith("/")) throw badRequest(`${kind}s[${i}].path must start with /`);
    for (const f of ["params", "response"] as const)
      if (r[f] !== undefined && r[f] !== null && (typeof r[f] !== "object" || Array.isArray(r[f])))
        throw badRequest(`${kind}s[${i}].${f} must be a JSON Schema object`);
    return r;
  });
}

/**
 * Interfaces, queues and scheduled jobs apps report after starting, kept per app version (a
 * report replaces what was known of that version), and the OpenAPI document built from them.
 */
export class AppResourceStore {
  constructor(private readonly pool: Pool) {}

  /** Whether any version of the app ever reported an interface or queue with this code (what governance rules govern). */
  async reported(appId: string, code: string): Promise<boolean> {
    const { rows } = await this.pool.query<{ found: boolean }>(
      "SELECT EXISTS (SELECT 1 FROM app_resources WHERE app_id = $1 AND code = $2 AND kind IN ('interface', 'queue')) AS found",
      [appId, code],
    );
    return rows[0]!.found;
  }

  async report(instance: RegisteredInstance, appVersion: string, body: { interfaces?: unknown; queues?: unknown; jobs?: unknown }) {
    const lists: Array<[AppResourceKind, ReportedResource[]]> = [
      ["interface", checkList(body.interfaces, "interface")],
      ["queue", checkList(body.queues, "queue")],
      ["job", checkList(body.jobs, "job")],
    ];
    const total = lists.reduce((n, [, l]) => n + l.length, 0);
    await withTransaction(this.pool, async (tx) => {
      // Instances of one version report at once when they start together: one report at a time
      // (the later one wins), not two deletes followed by clashing inserts.
      await advisoryXactLock(tx, `opsplane.config-center.app-resources ${JSON.stringify([instance.appId, appVersion])}`);
      await tx.query("DELETE FROM app_resources WHERE app_id = $1 AND app_version = $2", [instance.appId, appVersion]);
      if (!total) return;
      const flat = lists.flatMap(([kind, l]) => l.map((r) => ({ kind, r })));
      await tx.query(
        `INSERT INTO app_resources (app_id, app_version, kind, code, spec, instance_id)
         SELECT $1, $2, k, c, s, $6 FROM unnest($3::text[], $4::text[], $5::jsonb[]) AS t(k, c, s)`,
        [
          instance.appId,
          appVersion,
          flat.map((f) => f.kind),
          flat.map((f) => f.r.code),
          flat.map((f) => JSON.stringify(f.r)),
          instance.instanceId,
        ],
      );
    });
    const [interfaces, queues, jobs] = lists.map(([, l]) => l.length) as [number, number, number];
    return { appId: instance.appId, appVersion, interfaces, queues, jobs };
  }

  /** What was reported for an app version (the latest reported version when none is given). */
  async list(appId: string, appVersion: string | undefined) {
    const versions = (
      await this.pool.query<{ app_version: string }>(
        "SELECT app_version FROM app_resources WHERE app_id = $1 GROUP BY app_version ORDER BY max(reported_at) DESC",
        [appId],
      )
    ).rows.map((r) => r.app_version);
    const version = appVersion || versions[0];
    if (version === undefined) return { appId, appVersion: "", resources: [], versions };
    const { rows } = await this.pool.query<{ kind: AppResourceKind; spec: ReportedResource; reported_at: Date; instance_id: string }>(
      "SELECT kind, spec, reported_at, instance_id FROM app_resources WHERE app_id = $1 AND app_version = $2 ORDER BY kind, code",
      [appId, version],
    );
    return {
      appId,
      appVersion: version,
      resources: rows.map((r) => ({ kind: r.kind, resource: r.spec, reportedAt: r.reported_at.toISOString(), instanceId: r.instance_id })),
      versions,
    };
  }

  /** OpenAPI 3.1 of an app version: one operation per reported interface; queues and jobs as extensions. */
  async openApi(appId: string, appVersion: string | undefined): Promise<object> {
    const listed = await this.list(appId, appVersion);
    // An app whose instances register no version reports under "": that is a version too.
    if (listed.versions.length === 0 && !appVersion) throw notFound(`app ${appId} has reported no resources`);
    const paths: Record<string, Record<string, object>> = {};
    const of = (kind: AppResourceKind) => listed.resources.filter((r) => r.kind === kind).map((r) => r.resource);
    for (const i of of("interface")) {
      const path = i.path || `/${i.code}`;
      const method = (i.method || "post").toLowerCase();
      paths[path] ??= {};
      paths[path][method] = {
        operationId: i.code,
        ...(i.description ? { summary: i.description } : {}),
        ...(i.handler ? { "x-handler": i.handler } : {}),
        ...(i.rules !== undefined && i.rules !== null ? { "x-validation-rules": i.rules } : {}),
        ...(i.params ? { requestBody: { required: true, content: { "application/json": { schema: i.params } } } } : {}),
        responses: { "200": { description: "OK", ...(i.response ? { content: { "application/json": { schema: i.response } } } : {}) } },
      };
    }
    return {
      openapi: "3.1.0",
      info: { title: appId, version: listed.appVersion, description: `Interfaces reported by instances of ${appId} ${listed.appVersion}` },
      paths,
      "x-queues": of("queue"),
      "x-jobs": of("job"),
    };
  }
}
