import type { ItemRef as ItemRefMessage } from "@opsplane/contracts";
import {
  AbandonGrayRequestSchema,
  AbandonGrayResponseSchema,
  ConfigCenterService,
  DeleteItemRequestSchema,
  DeleteItemResponseSchema,
  DeleteResourceResponseSchema,
  DiffItemResponseSchema,
  ForceReleaseLockResponseSchema,
  GetAppOpenApiResponseSchema,
  GetAppResponseSchema,
  GetItemResponseSchema,
  GetResourceResponseSchema,
  GetSettingsResponseSchema,
  ImportDictionaryRequestSchema,
  ImportDictionaryResponseSchema,
  ItemHistoryResponseSchema,
  ListAppResourcesResponseSchema,
  ListAppsResponseSchema,
  ListAuditResponseSchema,
  ListChangesResponseSchema,
  ListInstancesResponseSchema,
  ListItemsResponseSchema,
  ListLocksResponseSchema,
  ListResourcesResponseSchema,
  ListSequencesResponseSchema,
  PreviewMetadataResponseSchema,
  PutAppRequestSchema,
  PutAppResponseSchema,
  PutItemRequestSchema,
  PutItemResponseSchema,
  PutLockRequestSchema,
  PutLockResponseSchema,
  PutResourceRequestSchema,
  PutResourceResponseSchema,
  PutSequenceRequestSchema,
  PutSequenceResponseSchema,
  PutSettingsResponseSchema,
  ReleaseGrayRequestSchema,
  ReleaseGrayResponseSchema,
  RollbackItemRequestSchema,
  RollbackItemResponseSchema,
  RotateSecretsResponseSchema,
  StartGrayRequestSchema,
  StartGrayResponseSchema,
} from "@opsplane/contracts";
import { badRequest, rpcService } from "@opsplane/platform";
import type { AppView } from "../apps.js";
import { listAudit } from "../audit-trail.js";
import type { ConfigCenter } from "../config-center.js";
import type { GraySelector } from "../gray.js";
import { checkAppId, checkItemRef, optionalVersion } from "../identifiers.js";
import { changeView, type PutItemInput } from "../items.js";
import { actor, listMessage, lockMessage, requestJson, response } from "./json.js";

const appMessage = (app: AppView) => ({ ...app, environments: listMessage(app.environments) });

const refOf = (r: ItemRefMessage | undefined) => checkItemRef({ kind: r?.kind, app: r?.app, env: r?.env, key: r?.key });
const admin = { role: "admin" as const };
const operator = { role: "operator" as const };

/** ConfigCenterService: the people's calls. Viewers read, operators change parameters and rules, admins the rest. */
export function centerRpc(cc: ConfigCenter) {
  return rpcService({
    service: ConfigCenterService,
    access: { role: "viewer" },
    methods: {
      putApp: admin,
      putSettings: admin,
      putItem: operator,
      deleteItem: operator,
      rollbackItem: operator,
      importDictionary: operator,
      startGray: operator,
      releaseGray: operator,
      abandonGray: operator,
      putResource: admin,
      deleteResource: admin,
      rotateSecrets: admin,
      putLock: admin,
      forceReleaseLock: admin,
      putSequence: admin,
      listAudit: operator,
    },
    impl: {
      listApps: async () => response(ListAppsResponseSchema, { apps: (await cc.apps.list()).map(appMessage) }),
      getApp: async (req) => response(GetAppResponseSchema, { app: appMessage(await cc.apps.get(req.appId)) }),
      async putApp(req, ctx) {
        const b = requestJson(PutAppRequestSchema, req);
        const app = await cc.apps.put(
          actor(ctx),
          {
            appId: req.appId,
            systemDomain: req.systemDomain,
            description: req.description,
            enabled: req.enabled,
            secret: req.secret || undefined,
            environments: req.environments?.values,
          },
          optionalVersion(b.expectRevision, "expectRevision"),
        );
        return response(PutAppResponseSchema, { app: appMessage(app) });
      },
      getSettings: async () => response(GetSettingsResponseSchema, { settings: await cc.apps.settings() }),
      putSettings: async (req, ctx) =>
        response(PutSettingsResponseSchema, {
          settings: await cc.apps.putSettings(
            actor(ctx),
            req.admitUnknownApps,
            req.expectRevision === undefined ? undefined : Number(req.expectRevision),
          ),
        }),
      listInstances: async (req) =>
        response(ListInstancesResponseSchema, { instances: await cc.instances.list(checkAppId(req.appId), req.state, req.limit) }),

      listItems: async (req) =>
        response(ListItemsResponseSchema, {
          items: await cc.items.list({
            kind: req.kind || undefined,
            app: req.app,
            env: req.env,
            keyPrefix: req.keyPrefix,
            limit: req.limit,
          }),
        }),
      getItem: async (req) => response(GetItemResponseSchema, { item: await cc.items.get(refOf(req.ref)) }),
      async putItem(req, ctx) {
        const b = requestJson(PutItemRequestSchema, req);
        if (!("value" in b)) throw badRequest("value is required");
        const input: PutItemInput = {
          value: b.value,
          schema: b.schema as object | null | undefined,
          category: req.category || undefined,
          startup: req.startup,
          description: req.description || undefined,
          comment: req.comment,
        };
        const { warnings, ...change } = await cc.putItem(
          actor(ctx),
          refOf(req.ref),
          input,
          optionalVersion(b.expectRevision, "expectRevision"),
        );
        return response(PutItemResponseSchema, { change, warnings });
      },
      async deleteItem(req, ctx) {
        const b = requestJson(DeleteItemRequestSchema, req);
        const change = await cc.items.delete(actor(ctx), refOf(req.ref), optionalVersion(b.expectRevision, "expectRevision"), req.comment);
        return response(DeleteItemResponseSchema, { change });
      },
      itemHistory: async (req) =>
        response(ItemHistoryResponseSchema, { changes: await cc.items.history(refOf(req.ref), req.limit || 100) }),
      diffItem: async (req) =>
        response(DiffItemResponseSchema, await cc.items.diff(refOf(req.ref), Number(req.fromVersion), Number(req.toVersion))),
      async rollbackItem(req, ctx) {
        const b = requestJson(RollbackItemRequestSchema, req);
        const change = await cc.items.rollback(
          actor(ctx),
          refOf(req.ref),
          Number(req.toVersion),
          optionalVersion(b.expectRevision, "expectRevision"),
          req.comment,
        );
        return response(RollbackItemResponseSchema, { change });
      },
      async importDictionary(req, ctx) {
        const b = requestJson(ImportDictionaryRequestSchema, req);
        const { entries, ...change } = await cc.importDictionary(actor(ctx), refOf(req.ref), {
          format: req.format,
          content: req.content,
          expectRevision: optionalVersion(b.expectRevision, "expectRevision"),
          comment: req.comment,
          category: req.category,
        });
        return response(ImportDictionaryResponseSchema, { change, entries });
      },
      async startGray(req, ctx) {
        const b = requestJson(StartGrayRequestSchema, req);
        if (!("value" in b)) throw badRequest("value is required");
        const change = await cc.items.startGray(
          actor(ctx),
          refOf(req.ref),
          b.value,
          b.selector as GraySelector | undefined,
          optionalVersion(b.expectRevision, "expectRevision"),
          req.comment,
        );
        return response(StartGrayResponseSchema, { change });
      },
      async releaseGray(req, ctx) {
        const b = requestJson(ReleaseGrayRequestSchema, req);
        const change = await cc.items.releaseGray(
          actor(ctx),
          refOf(req.ref),
          optionalVersion(b.expectRevision, "expectRevision"),
          req.comment,
        );
        return response(ReleaseGrayResponseSchema, { change });
      },
      async abandonGray(req, ctx) {
        const b = requestJson(AbandonGrayRequestSchema, req);
        const change = await cc.items.abandonGray(
          actor(ctx),
          refOf(req.ref),
          optionalVersion(b.expectRevision, "expectRevision"),
          req.comment,
        );
        return response(AbandonGrayResponseSchema, { change });
      },
      async previewMetadata(req) {
        const [podNamespace = "", podName = ""] = req.pod.split("/");
        const viewer = { app: checkAppId(req.app), env: req.env, instanceId: "", labels: req.labels, podName, podNamespace };
        return response(PreviewMetadataResponseSchema, { metadata: await cc.metadata.preview(viewer, false) });
      },
      async listChanges(req) {
        const { rows } = await cc.pool.query(
          "SELECT version, kind, app, env, key, action, value, actor, at, comment, gray_selector FROM changes WHERE version > $1 ORDER BY version, id LIMIT $2",
          [Number(req.afterVersion), Math.min(req.limit || 1000, 10_000)],
        );
        const current = (await cc.pool.query<{ version: number }>("SELECT version FROM version_counter")).rows[0]!.version;
        return response(ListChangesResponseSchema, { changes: rows.map(changeView), version: current });
      },

      listResources: async (req) => response(ListResourcesResponseSchema, { resources: await cc.resources.list(req.kind || undefined) }),
      getResource: async (req, ctx) =>
        response(GetResourceResponseSchema, { resource: await cc.resources.get(actor(ctx), req.kind, req.name, req.reveal) }),
      async putResource(req, ctx) {
        const b = requestJson(PutResourceRequestSchema, req);
        const change = await cc.resources.put(
          actor(ctx),
          {
            kind: req.kind,
            name: req.name,
            type: req.type,
            config: b.config,
            secrets: req.secrets,
            removeSecrets: req.removeSecrets,
            description: req.description || undefined,
            comment: req.comment || undefined,
          },
          optionalVersion(b.expectRevision, "expectRevision"),
        );
        return response(PutResourceResponseSchema, { change });
      },
      deleteResource: async (req, ctx) =>
        response(DeleteResourceResponseSchema, {
          change: await cc.resources.delete(
            actor(ctx),
            req.kind,
            req.name,
            req.expectRevision === undefined ? undefined : Number(req.expectRevision),
          ),
        }),
      rotateSecrets: async (_req, ctx) => response(RotateSecretsResponseSchema, await cc.resources.rotate(actor(ctx))),

      listLocks: async () => response(ListLocksResponseSchema, { locks: (await cc.locks.list()).map(lockMessage) }),
      async putLock(req, ctx) {
        const b = requestJson(PutLockRequestSchema, req);
        const lock = await cc.locks.declare(
          actor(ctx),
          { name: req.name, apps: req.apps, description: req.description },
          optionalVersion(b.expectRevision, "expectRevision"),
        );
        return response(PutLockResponseSchema, { lock: lockMessage(lock) });
      },
      forceReleaseLock: async (req, ctx) =>
        response(ForceReleaseLockResponseSchema, { lock: lockMessage(await cc.locks.forceRelease(actor(ctx), req.name)) }),
      listSequences: async () => response(ListSequencesResponseSchema, { sequences: await cc.sequences.list() }),
      async putSequence(req, ctx) {
        const b = requestJson(PutSequenceRequestSchema, req);
        const sequence = await cc.sequences.put(
          actor(ctx),
          {
            name: req.name,
            pattern: req.pattern,
            cacheSize: req.cacheSize || undefined,
            reset: req.reset || undefined,
            cycle: req.cycle,
            min: b.min === undefined ? undefined : Number(b.min),
            max: b.max === undefined ? undefined : Number(b.max),
            timeZone: req.timeZone || undefined,
            description: req.description || undefined,
            apps: req.apps?.values,
          },
          optionalVersion(b.expectRevision, "expectRevision"),
        );
        return response(PutSequenceResponseSchema, { sequence });
      },

      listAppResources: async (req) =>
        response(ListAppResourcesResponseSchema, await cc.appResources.list(checkAppId(req.appId), req.appVersion || undefined)),
      getAppOpenApi: async (req) =>
        response(GetAppOpenApiResponseSchema, {
          document: await cc.appResources.openApi(checkAppId(req.appId), req.appVersion || undefined),
        }),
      listAudit: async (req) =>
        response(ListAuditResponseSchema, { entries: await listAudit(cc.pool, req.targetPrefix || undefined, req.limit || 100) }),
    },
  });
}
