import { type App, optionalBody } from "@opsplane/platform";
import type { Pool } from "@opsplane/store";
import { decisionDetail, searchDecisions } from "../decision-search.js";
import { deliveryOfDecision } from "../deliveries.js";
import type { Replayer } from "../replay.js";
import { DecisionIdParam, DecisionsQuery, ReplayBody } from "../schemas.js";

const base = "/_dispatcher/v1/decisions";

/**
 * Reads the query as the dispatcher reads a callback's (URLSearchParams: bytes that are not UTF-8
 * become U+FFFD), not as fastify leaves a value it cannot decode (the text `%FF`), so a search
 * sending an id's bytes as its callback did (`objectId=%FF`) finds the decision recorded from it.
 */
function readQueryAsCallbacks(req: { raw: { url?: string }; query: unknown }, _reply: unknown, done: () => void): void {
  const url = req.raw.url ?? "";
  const query: Record<string, string | string[]> = Object.create(null);
  for (const [name, value] of new URLSearchParams(url.includes("?") ? url.slice(url.indexOf("?") + 1) : "")) {
    const seen = query[name];
    // A repeated name is a list, as fastify's parser gives it (and the schema refuses it).
    query[name] = seen === undefined ? value : [...(Array.isArray(seen) ? seen : [seen]), value];
  }
  req.query = query;
  done();
}

/** Operators' view of what happened to each callback, and the replay of a kept one. */
export function registerDecisionRoutes(app: App, d: { pool: Pool; replayer: Replayer }): void {
  // allowUnstorable: a callback's id may hold a NUL, and it is looked up made storable, as it was stored.
  app.get(
    base,
    { config: { allowUnstorable: true }, schema: { querystring: DecisionsQuery }, preValidation: readQueryAsCallbacks },
    async (req) => searchDecisions(d.pool, req.query),
  );

  // With its background delivery and attempts when it was answered from an asynchronous environment's template.
  app.get(`${base}/:id`, { schema: { params: DecisionIdParam } }, async (req) => ({
    ...(await decisionDetail(d.pool, req.params.id)),
    asyncDelivery: await deliveryOfDecision(d.pool, req.params.id),
  }));

  app.post(
    `${base}/:id/replay`,
    { config: { access: { role: "operator" } }, schema: { params: DecisionIdParam, body: ReplayBody }, ...optionalBody },
    async (req) => ({
      replay: await d.replayer.replay({ decisionId: req.params.id, env: req.body.env, principal: req.principal, requestId: req.id }),
    }),
  );
}
