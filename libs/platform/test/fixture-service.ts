import { create } from "@bufbuild/protobuf";
import { ConfigAppService, IssueTokenResponseSchema } from "@opsplane/contracts";
import { conflict, notFound, rpcService, type ServiceDefinition } from "@opsplane/platform";
import { withTransaction } from "@opsplane/store";
import { Type } from "@sinclair/typebox";

/** A small service built on the kit, as a real service would be, to test the kit's behaviour. */
/** `slow`: `/slow` calls `entered` when it starts handling, then waits for `gate`. */
/** `rpcCalls`: the public RPC `ConfigAppService/IssueToken` adds each request's `secret` to it and echoes it as `token`. */
export function fixtureService(slow?: { gate: Promise<void>; entered: () => void }, rpcCalls: string[] = []): ServiceDefinition {
  return {
    name: "fixture-svc",
    version: "0.0.1",
    defaultPort: 0,
    setup: async ({ app, pool, audit }) => {
      await pool.query("CREATE TABLE IF NOT EXISTS things (id serial PRIMARY KEY, name text UNIQUE NOT NULL, size int NOT NULL)");
      app.post(
        "/things",
        {
          schema: {
            body: Type.Object({ name: Type.String({ minLength: 1 }), size: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }),
          },
        },
        async (req, reply) => {
          const row = await withTransaction(pool, async (tx) => {
            const { rows } = await tx.query("INSERT INTO things (name, size) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING *", [
              req.body.name,
              req.body.size,
            ]);
            if (!rows[0]) throw conflict(`thing ${req.body.name} exists`);
            await audit.record(tx, {
              principal: req.principal,
              action: "thing.create",
              target: `thing/${rows[0].id}`,
              after: rows[0],
              requestId: req.id,
            });
            return rows[0];
          });
          reply.code(201);
          return row;
        },
      );
      app.get("/things/:id", { schema: { params: Type.Object({ id: Type.Integer() }) } }, async (req) => {
        const { rows } = await pool.query("SELECT * FROM things WHERE id = $1", [req.params.id]);
        if (!rows[0]) throw notFound(`thing ${req.params.id} not found`);
        return rows[0];
      });
      app.get("/slow", { config: { access: "public" } }, async () => {
        slow?.entered();
        await slow?.gate;
        return { done: true };
      });
      const echo = rpcService({
        service: ConfigAppService,
        access: "public",
        impl: {
          issueToken: (req) => {
            rpcCalls.push(req.secret);
            return create(IssueTokenResponseSchema, { appId: req.appId, token: req.secret });
          },
        },
      });
      return { rpc: [echo] };
    },
  };
}
