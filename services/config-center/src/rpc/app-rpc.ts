import {
  AcquireLockResponseSchema,
  ConfigAppService,
  GetBusinessValuesResponseSchema,
  GetMetadataResponseSchema,
  IssueTokenRequestSchema,
  IssueTokenResponseSchema,
  NextSequenceBlockResponseSchema,
  RegisterInstanceRequestSchema,
  RegisterInstanceResponseSchema,
  ReleaseLockResponseSchema,
  ReportResourcesRequestSchema,
  ReportResourcesResponseSchema,
} from "@opsplane/contracts";
import { clientAddressKey, rpcService } from "@opsplane/platform";
import type { ConfigCenter } from "../config-center.js";
import type { Registration } from "../instances.js";
import { actor, lockMessage, requestJson, response, tokenOf } from "./json.js";
import { refuseUnknownBinaryFields } from "./unknown-fields.js";

/** ConfigAppService: the managed apps' calls. Authenticated by the start-up token in `x-config-token`, checked here. */
export function appRpc(cc: ConfigCenter) {
  return rpcService({
    service: ConfigAppService,
    access: "public",
    impl: {
      async issueToken(req, ctx) {
        const body = requestJson(IssueTokenRequestSchema, req);
        const address = ctx.values.get(clientAddressKey) || undefined;
        return response(IssueTokenResponseSchema, await cc.issueToken(body.appId ?? "", body.secret ?? "", actor(ctx).requestId, address));
      },
      async registerInstance(req, ctx) {
        refuseUnknownBinaryFields(RegisterInstanceRequestSchema, req);
        return response(
          RegisterInstanceResponseSchema,
          await cc.register(tokenOf(ctx), requestJson(RegisterInstanceRequestSchema, req) as Registration),
        );
      },
      async getMetadata(req, ctx) {
        return response(GetMetadataResponseSchema, { metadata: await cc.metadataOf(tokenOf(ctx), req.instanceId) });
      },
      async getBusinessValues(req, ctx) {
        const instance = await cc.instanceFor(tokenOf(ctx), req.instanceId);
        return response(GetBusinessValuesResponseSchema, await cc.metadata.businessValues(instance, req.keys));
      },
      async reportResources(req, ctx) {
        const instance = await cc.instanceFor(tokenOf(ctx), req.instanceId);
        const body = requestJson(ReportResourcesRequestSchema, req);
        return response(ReportResourcesResponseSchema, await cc.appResources.report(instance, instance.appVersion, body));
      },
      async acquireLock(req, ctx) {
        const appId = await cc.apps.verifyToken(tokenOf(ctx));
        const { acquired, lock } = await cc.locks.acquire(appId, req.name, req.holder, req.leaseMs);
        return response(AcquireLockResponseSchema, { acquired, lock: lockMessage(lock) });
      },
      async releaseLock(req, ctx) {
        const appId = await cc.apps.verifyToken(tokenOf(ctx));
        return response(ReleaseLockResponseSchema, { released: await cc.locks.release(appId, req.name, Number(req.fencingToken)) });
      },
      async nextSequenceBlock(req, ctx) {
        const appId = await cc.apps.verifyToken(tokenOf(ctx));
        return response(NextSequenceBlockResponseSchema, await cc.sequences.nextBlock(appId, req.name));
      },
    },
  });
}
