import { RuleInvalidError, type RuleSpec, type ScriptCompiler, validateRule } from "@opsplane/callback-agent/rules";
import { type App, badRequest, outageRetryAfterSeconds, type Principal, type ServiceContext, unavailable } from "@opsplane/platform";
import { storableText } from "@opsplane/store";
import { Type } from "@sinclair/typebox";
import type { ConfigStore } from "../config-store.js";
import { dryRun } from "../dry-run.js";
import { RecordTimeoutError, type Registered, type Registry, registrationRecord } from "../registry.js";
import { type ConfiguredEnvironment, type RuleSetCache, registeredByThisOne } from "../rule-set.js";
import { DryRunBody, EnvironmentBody, EnvName, NameParam, RuleBody } from "../schemas.js";

const base = "/_dispatcher/v1";

export interface AdminDeps {
  ctx: ServiceContext;
  store: ConfigStore;
  rules: RuleSetCache;
  registry: Registry;
  /** How long an operator's read of the registrations record may take (REGISTRY_RECORD_TIMEOUT_MS). */
  recordTimeoutMs: number;
  compileScript: ScriptCompiler;
  /** VIA_PSEUDONYM: a dry run of a callback carrying it says it would be refused as a loop. */
  viaPseudonym: string;
}

/** Operators' REST API: environments, rules (validated, versioned, audited), decisions, dry runs. */
export function registerAdminRoutes(app: App, d: AdminDeps): void {
  const who = (req: { principal?: Principal; id: string }) => ({ principal: req.principal, requestId: req.id });

  app.get(`${base}/environments`, async () => ({ environments: await d.store.listEnvironments() }));

  app.put(`${base}/environments/:name`, { schema: { params: Type.Object({ name: EnvName }), body: EnvironmentBody } }, async (req) => {
    const env = await d.store.putEnvironment(who(req), {
      name: req.params.name,
      baseUrl: req.body.baseUrl,
      production: req.body.production,
      replacesProduction: req.body.replacesProduction,
      description: req.body.description ?? "",
      idPatterns: req.body.idPatterns,
      asyncDelivery: req.body.asyncDelivery,
    });
    await d.rules.refresh();
    return env;
  });

  app.delete(`${base}/environments/:name`, { schema: { params: Type.Object({ name: EnvName }) } }, async (req, reply) => {
    await d.store.deleteEnvironment(who(req), req.params.name);
    await d.rules.refresh();
    return reply.code(204).send();
  });

  app.get(`${base}/rules`, async () => ({ version: d.rules.current().version, rules: await d.store.listRules() }));

  app.get(`${base}/rules/:name`, { schema: { params: Type.Object({ name: NameParam }) } }, async (req) => d.store.getRule(req.params.name));

  app.get(`${base}/rules/:name/revisions`, { schema: { params: Type.Object({ name: NameParam }) } }, async (req) => ({
    revisions: await d.store.ruleRevisions(req.params.name),
  }));

  app.put(
    `${base}/rules/:name`,
    {
      schema: {
        params: Type.Object({ name: NameParam }),
        querystring: Type.Object({ expectRevision: Type.Optional(Type.Integer({ minimum: 0 })) }),
        body: RuleBody,
      },
    },
    async (req) => {
      const spec: RuleSpec = { name: req.params.name, ...req.body };
      try {
        await validateRule(spec, d.compileScript);
      } catch (err) {
        if (err instanceof RuleInvalidError) throw badRequest(`rule ${spec.name} is invalid: ${err.message}`, { field: err.field });
        throw err;
      }
      const saved = await d.store.putRule(who(req), spec, req.query.expectRevision);
      await d.rules.refresh();
      return { ...saved, version: d.rules.current().version };
    },
  );

  app.delete(`${base}/rules/:name`, { schema: { params: Type.Object({ name: NameParam }) } }, async (req, reply) => {
    await d.store.deleteRule(who(req), req.params.name);
    await d.rules.refresh();
    return reply.code(204).send();
  });

  // allowUnstorable: like a callback's, the id is looked up made storable, as it was registered.
  app.get(
    `${base}/registrations/:rule/:id`,
    {
      config: { allowUnstorable: true },
      schema: { params: Type.Object({ rule: NameParam, id: Type.String({ minLength: 1, maxLength: 256 }) }) },
    },
    async (req) => {
      const rule = req.params.rule;
      const id = storableText(req.params.id);
      // `env` is what routing sees (the hot copy); the rest is the record's: who registered it, when, until when.
      // Both read the record within REGISTRY_RECORD_TIMEOUT_MS: a stalled PostgreSQL is a 503 then, not a wait for the pool's timeout.
      const [found, record] = await Promise.all([
        d.registry.lookup(rule, id),
        registrationRecord(d.ctx.pool, d.recordTimeoutMs, rule, id),
      ]).catch((err: unknown) => {
        throw err instanceof RecordTimeoutError ? unavailable(`${err.message}; retry later`, outageRetryAfterSeconds) : err;
      });
      return {
        rule,
        id,
        env: found?.env ?? null,
        // A registration outlives a deleted environment, and is not inherited by one created again under its
        // name: its callbacks then go to production (unknown_environment).
        environmentConfigured: found === undefined ? null : configuredNow(d.rules.current().environments.get(found.env), found),
        registeredBy: record?.registeredBy ?? null,
        registeredAt: record?.registeredAt ?? null,
        expiresAt: record?.expiresAt ?? null,
      };
    },
  );

  app.post(`${base}/dry-run`, { config: { access: { role: "viewer" } }, schema: { body: DryRunBody } }, async (req) =>
    dryRun(req.body, d.rules.current(), d.registry, d.viaPseudonym),
  );
}

const configuredNow = (env: ConfiguredEnvironment | undefined, found: Registered) => env !== undefined && registeredByThisOne(env, found);
