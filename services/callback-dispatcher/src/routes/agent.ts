import { type App, badRequest, type Principal } from "@opsplane/platform";
import { Type } from "@sinclair/typebox";
import type { DispatcherMetrics } from "../metrics.js";
import type { Registry } from "../registry.js";
import type { RuleSetCache } from "../rule-set.js";
import { EnvName, RegistrationsBody } from "../schemas.js";

/** What the dispatcher knows about an agent from its last rules fetch (per replica, in memory). */
export interface AgentSeen {
  env: string;
  principal: string;
  rulesVersion: number;
  lastSeen: string;
}

/**
 * The agents' API: their rules (with an ETag on the rule-set version) and
 * their registrations. Agents authenticate with an operator API key or with
 * app credentials, which cannot change rules.
 */
export function registerAgentRoutes(app: App, d: { rules: RuleSetCache; registry: Registry; metrics: DispatcherMetrics }): void {
  const access = { role: "operator" as const, apps: true };
  const seen = new Map<string, AgentSeen>();
  const actor = (p: Principal | undefined) => (p ? `${p.kind}:${p.id}` : "anonymous");

  const testEnv = (name: string) => {
    const env = d.rules.current().environments.get(name);
    if (!env) throw badRequest(`unknown environment "${name}"; configure it first`);
    if (env.production) throw badRequest(`environment "${name}" is production; only test environments register objects`);
    return env;
  };

  app.get(
    "/_dispatcher/v1/agent/rules",
    { config: { access }, schema: { querystring: Type.Object({ env: EnvName }) } },
    async (req, reply) => {
      testEnv(req.query.env);
      const snapshot = d.rules.current();
      const who = actor(req.principal);
      seen.set(`${req.query.env}|${who}`, {
        env: req.query.env,
        principal: who,
        rulesVersion: snapshot.version,
        lastSeen: new Date().toISOString(),
      });
      const etag = `"${snapshot.version}"`;
      reply.header("etag", etag);
      if (req.headers["if-none-match"] === etag) return reply.code(304).send();
      return { version: snapshot.version, rules: snapshot.specs };
    },
  );

  app.get("/_dispatcher/v1/agents", async () => ({ agents: [...seen.values()] }));

  app.post("/_dispatcher/v1/registrations", { config: { access }, schema: { body: RegistrationsBody } }, async (req) => {
    testEnv(req.body.env);
    const byName = new Map(d.rules.current().rules.map((r) => [r.name, r]));
    // An agent may still hold a rule deleted a moment ago: skip those entries rather than refuse the batch (it would retry forever).
    const known = req.body.registrations.filter((r) => byName.has(r.rule));
    const ignoredRules = [...new Set(req.body.registrations.filter((r) => !byName.has(r.rule)).map((r) => r.rule))];
    if (known.length)
      await d.registry.register(
        req.body.env,
        known.map((r) => ({ rule: r.rule, id: r.id, ttlSeconds: byName.get(r.rule)!.ttlSeconds })),
      );
    d.metrics.registrations.inc({ env: req.body.env }, known.length);
    return { registered: known.length, ignoredRules };
  });
}
