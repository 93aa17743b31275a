import type { App } from "@opsplane/platform";
import type { ConfigCenter } from "../config-center.js";
import { header } from "./instance-socket.js";
import {
  AcquireLockBody,
  BusinessKeysBody,
  InstanceParams,
  RegistrationBody,
  ReleaseLockBody,
  ReportBody,
  SequenceNameBody,
  TokenBody,
} from "./schemas.js";

const base = "/config/v1";
/** Apps authenticate with their start-up token (`x-config-token`), not with the platform's credentials. */
const app = { access: "public" as const };
const tags = ["instances"];
const security = [{ configToken: [] }];

/** The managed apps' side of the REST view (seed start-up steps 2-11); the same calls as ConfigAppService. */
export function installInstanceApi(http: App, cc: ConfigCenter): void {
  http.post(
    `${base}/token`,
    { config: app, schema: { tags, security: [], summary: "App credentials for a start-up token", body: TokenBody } },
    async (req) => cc.issueToken(req.body.appId, req.body.secret, req.id, req.ip),
  );

  http.post(
    `${base}/instances`,
    { config: app, schema: { tags, security, summary: "Register an instance of the token's app", body: RegistrationBody } },
    async (req, reply) => reply.code(201).send(await cc.register(header(req), req.body)),
  );

  http.get(
    `${base}/instances/:instanceId/metadata`,
    {
      config: app,
      schema: {
        tags,
        security,
        summary: "Start-up metadata: technical, start-up business and governance, at one version",
        params: InstanceParams,
      },
    },
    async (req, reply) => reply.type("application/json").send(await cc.metadataJson(header(req), req.params.instanceId)),
  );

  http.post(
    `${base}/instances/:instanceId/business`,
    {
      config: app,
      schema: {
        tags,
        security,
        summary: "Business parameters by key, as this instance sees them",
        params: InstanceParams,
        body: BusinessKeysBody,
      },
    },
    async (req) => cc.metadata.businessValues(await cc.instanceFor(header(req), req.params.instanceId), req.body.keys),
  );

  http.put(
    `${base}/instances/:instanceId/resources`,
    {
      config: app,
      schema: { tags, security, summary: "Report the instance's interfaces, queues and jobs", params: InstanceParams, body: ReportBody },
    },
    async (req) => {
      const instance = await cc.instanceFor(header(req), req.params.instanceId);
      return cc.appResources.report(instance, instance.appVersion, req.body);
    },
  );

  http.post(
    `${base}/locks/acquire`,
    { config: app, schema: { tags, security, summary: "Acquire a distributed lock", body: AcquireLockBody } },
    async (req) => cc.locks.acquire(await cc.apps.verifyToken(header(req)), req.body.name, req.body.holder, req.body.leaseMs),
  );

  http.post(
    `${base}/locks/release`,
    { config: app, schema: { tags, security, summary: "Release a lock with its fencing token", body: ReleaseLockBody } },
    async (req) => ({
      released: await cc.locks.release(await cc.apps.verifyToken(header(req)), req.body.name, req.body.fencingToken),
    }),
  );

  http.post(
    `${base}/sequences/next`,
    { config: app, schema: { tags, security, summary: "The next block of a distributed sequence", body: SequenceNameBody } },
    async (req) => cc.sequences.nextBlock(await cc.apps.verifyToken(header(req)), req.body.name),
  );
}
