import type { App } from "@opsplane/platform";
import type { ConfigCenter } from "../config-center.js";
import { who } from "./manage-apps.js";
import {
  DeleteResourceQuery,
  LockBody,
  LockNameBody,
  LockParams,
  ResourceBody,
  ResourceParams,
  ResourcesQuery,
  RevealQuery,
  SequenceBody,
  SequenceParams,
} from "./schemas.js";

const base = "/config/v1";
const admin = { access: { role: "admin" as const } };
const tags = ["resources"];

/** Public resources and their secrets, locks and sequences: admins change them, viewers see them masked. */
export function installResourceRoutes(http: App, cc: ConfigCenter): void {
  http.get(
    `${base}/resources`,
    { schema: { tags, summary: "Middleware and public services, secrets masked", querystring: ResourcesQuery } },
    async (req) => ({
      resources: await cc.resources.list(req.query.kind),
    }),
  );

  http.get(
    `${base}/resources/:kind/:name`,
    {
      schema: { tags, summary: "One resource; admins may reveal its secrets (audited)", params: ResourceParams, querystring: RevealQuery },
    },
    async (req) => cc.resources.get(who(req), req.params.kind, req.params.name, req.query.reveal === true),
  );

  http.put(
    `${base}/resources/:kind/:name`,
    {
      config: admin,
      schema: {
        tags,
        summary: "Create or change a resource (admin); instances using it are pushed",
        params: ResourceParams,
        body: ResourceBody,
      },
    },
    async (req) => {
      const { expectRevision, ...rest } = req.body;
      return cc.resources.put(who(req), { ...rest, kind: req.params.kind, name: req.params.name }, expectRevision);
    },
  );

  http.delete(
    `${base}/resources/:kind/:name`,
    {
      config: admin,
      schema: { tags, summary: "Delete a resource nothing references (admin)", params: ResourceParams, querystring: DeleteResourceQuery },
    },
    async (req) => cc.resources.delete(who(req), req.params.kind, req.params.name, req.query.expectRevision),
  );

  http.post(
    `${base}/secrets/rotate`,
    { config: admin, schema: { tags, summary: "Re-seal every secret with the active key (admin)" } },
    async (req) => cc.resources.rotate(who(req)),
  );

  http.get(`${base}/locks`, { schema: { tags, summary: "Distributed locks: state and holder" } }, async () => ({
    locks: await cc.locks.list(),
  }));

  http.put(
    `${base}/locks/:name`,
    {
      config: admin,
      schema: { tags, summary: "Declare a lock with the apps that may use it (admin)", params: LockParams, body: LockBody },
    },
    async (req) => {
      const { expectRevision, ...rest } = req.body;
      return cc.locks.declare(who(req), { name: req.params.name, ...rest }, expectRevision);
    },
  );

  http.post(
    `${base}/locks/force-release`,
    { config: admin, schema: { tags, summary: "Free a lock whatever its holder (admin)", body: LockNameBody } },
    async (req) => cc.locks.forceRelease(who(req), req.body.name),
  );

  http.get(`${base}/sequences`, { schema: { tags, summary: "Distributed sequences" } }, async () => ({
    sequences: await cc.sequences.list(),
  }));

  http.put(
    `${base}/sequences/:name`,
    { config: admin, schema: { tags, summary: "Create or change a sequence (admin)", params: SequenceParams, body: SequenceBody } },
    async (req) => {
      const { expectRevision, ...rest } = req.body;
      return cc.sequences.put(who(req), { name: req.params.name, ...rest }, expectRevision);
    },
  );
}
