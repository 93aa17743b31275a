import { type App, type Auditor, optionalBody } from "@opsplane/platform";
import type { Pool } from "@opsplane/store";
import { Type } from "@sinclair/typebox";
import { deliveryDetail, listDeliveries, redrive } from "../deliveries.js";
import { DecisionIdParam, EnvName } from "../schemas.js";

const base = "/_dispatcher/v1/deliveries";

const DeliveriesQuery = Type.Object(
  {
    state: Type.Optional(Type.Union([Type.Literal("pending"), Type.Literal("delivered"), Type.Literal("dead")])),
    env: Type.Optional(EnvName),
    from: Type.Optional(Type.String({ maxLength: 64 })),
    to: Type.Optional(Type.String({ maxLength: 64 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    pageToken: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);

const RedriveBody = Type.Object(
  {
    /** Environment to deliver it to; omitted: the one it was owed to. */
    env: Type.Optional(EnvName),
  },
  { additionalProperties: false },
);

/** Asynchronous deliveries: what is pending, delivered or dead-lettered, and re-driving a dead letter. */
export function registerDeliveryRoutes(app: App, d: { pool: Pool; audit: Auditor; redriven(): void }): void {
  app.get(base, { config: { access: { role: "viewer" } }, schema: { querystring: DeliveriesQuery } }, async (req) =>
    listDeliveries(d.pool, req.query),
  );

  app.get(`${base}/:id`, { config: { access: { role: "viewer" } }, schema: { params: DecisionIdParam } }, async (req) =>
    deliveryDetail(d.pool, req.params.id),
  );

  app.post(
    `${base}/:id/redrive`,
    { config: { access: { role: "operator" } }, schema: { params: DecisionIdParam, body: RedriveBody }, ...optionalBody },
    async (req, reply) => {
      const delivery = await redrive(d.pool, d.audit, {
        id: req.params.id,
        env: req.body.env,
        principal: req.principal,
        requestId: req.id,
      });
      d.redriven();
      return reply.code(202).send({ delivery });
    },
  );
}
