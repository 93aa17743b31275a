import type { App, Principal } from "@opsplane/platform";
import { listAudit } from "../audit-trail.js";
import type { ConfigCenter } from "../config-center.js";
import { checkAppId } from "../identifiers.js";
import { AppBody, AppParams, AuditQuery, InstancesQuery, SettingsBody, VersionQuery } from "./schemas.js";

const base = "/config/v1";
const admin = { access: { role: "admin" as const } };
const operator = { access: { role: "operator" as const } };
const tags = ["apps"];
export const who = (req: { principal?: Principal; id: string }) => ({ principal: req.principal, requestId: req.id });

/** Apps, the admission switch, instances, reported app resources and the audit trail. */
export function installAppRoutes(http: App, cc: ConfigCenter): void {
  http.get(`${base}/apps`, { schema: { tags, summary: "Apps with their health and online instances" } }, async () => ({
    apps: await cc.apps.list(),
  }));

  http.get(`${base}/apps/:appId`, { schema: { tags, params: AppParams } }, async (req) => cc.apps.get(req.params.appId));

  http.put(
    `${base}/apps/:appId`,
    {
      config: admin,
      schema: {
        tags,
        summary: "Create or change an app: system domain, enabled switch, credentials, environments (admin)",
        params: AppParams,
        body: AppBody,
      },
    },
    async (req) => {
      const { expectRevision, ...rest } = req.body;
      return cc.apps.put(who(req), { appId: req.params.appId, ...rest }, expectRevision);
    },
  );

  http.get(`${base}/settings`, { schema: { tags } }, async () => cc.apps.settings());

  http.put(
    `${base}/settings`,
    { config: admin, schema: { tags, summary: "Whether unknown apps are admitted (admin)", body: SettingsBody } },
    async (req) => cc.apps.putSettings(who(req), req.body.admitUnknownApps, req.body.expectRevision),
  );

  http.get(
    `${base}/apps/:appId/instances`,
    { schema: { tags, summary: "Instances of an app, newest first (its history)", params: AppParams, querystring: InstancesQuery } },
    async (req) => ({ instances: await cc.instances.list(checkAppId(req.params.appId), req.query.state, req.query.limit) }),
  );

  http.get(
    `${base}/apps/:appId/resources`,
    { schema: { tags, summary: "Reported interfaces, queues and jobs of an app version", params: AppParams, querystring: VersionQuery } },
    async (req) => cc.appResources.list(checkAppId(req.params.appId), req.query.version),
  );

  http.get(
    `${base}/apps/:appId/openapi.json`,
    {
      schema: {
        tags,
        summary: "OpenAPI document of an app version, from its reported interfaces",
        params: AppParams,
        querystring: VersionQuery,
      },
    },
    async (req) => cc.appResources.openApi(checkAppId(req.params.appId), req.query.version),
  );

  // Operators, as for the platform's own audit query (/_audit/v1/entries): refusals of other callers are in it.
  http.get(
    `${base}/audit`,
    { config: operator, schema: { tags, summary: "The audit trail, newest first, by target prefix", querystring: AuditQuery } },
    async (req) => ({
      entries: await listAudit(cc.pool, req.query.target, req.query.limit),
    }),
  );
}
