import { create } from "@bufbuild/protobuf";
import type { Bus } from "@opsplane/bus";
import type { RuleSpec } from "@opsplane/callback-agent/rules";
import { CallbackRulesChangedSchema, toEventData, topics } from "@opsplane/contracts";
import { type Auditor, badRequest, conflict, notFound, type Principal } from "@opsplane/platform";
import { advisoryXactLock, type Pool, type PoolClient, withTransaction } from "@opsplane/store";
import { type AsyncDelivery, type AsyncDeliveryBody, checkAsyncDelivery, productionRefusal } from "./async-delivery-config.js";
import { checkIdPatterns, type IdPatterns } from "./claims.js";
import type { UrlPolicy } from "./environment-url-policy.js";

export interface Environment {
  name: string;
  baseUrl: string;
  production: boolean;
  description: string;
  /** Ids this test environment may claim (see claims.ts); empty: any id. */
  idPatterns: IdPatterns;
  /** Set: callbacks routed here are answered from its template and delivered in the background (async-delivery-config.ts). */
  asyncDelivery?: AsyncDelivery | null;
}

/**
 * An environment as an operator saves it: without `idPatterns` or `production`, the stored ones
 * stay. `replacesProduction` names the production environment this one takes over from, in the same
 * transaction (the other becomes a test environment), so there is never a moment without one.
 */
export type EnvironmentInput = Omit<Environment, "idPatterns" | "production" | "asyncDelivery"> & {
  idPatterns?: IdPatterns;
  /** Omitted: the stored one stays; `{}`: synchronous again. */
  asyncDelivery?: AsyncDeliveryBody;
  production?: boolean;
  replacesProduction?: string;
};

export interface StoredRule {
  name: string;
  revision: number;
  enabled: boolean;
  spec: RuleSpec;
  updatedAt: string;
}

export interface ChangeContext {
  principal: Principal | undefined;
  requestId: string;
}

interface Deps {
  pool: Pool;
  bus: Bus;
  audit: Auditor;
  /** Where base URLs may point (ENVIRONMENT_URL_ALLOW, never link-local or metadata addresses). */
  urlPolicy: UrlPolicy;
}

/**
 * Rules and environments, versioned together: every change bumps the one
 * rule-set version in the same transaction as its audit row and its
 * `callback.rules.changed` event, so replicas and agents that see the new
 * version see the change.
 */
export function createConfigStore({ pool, bus, audit, urlPolicy }: Deps) {
  async function change<T>(
    who: ChangeContext,
    target: string,
    action: "create" | "update" | "delete",
    fn: (c: PoolClient) => Promise<{ before: unknown; after: unknown; result: T }>,
  ): Promise<T> {
    return withTransaction(pool, async (client) => {
      const { before, after, result } = await fn(client);
      const { rows } = await client.query<{ version: string }>("UPDATE rule_set_version SET version = version + 1 RETURNING version");
      const version = BigInt(rows[0]!.version);
      await audit.record(client, {
        principal: who.principal,
        action: `${target.split("/")[0]}.${action}`,
        target,
        before,
        after,
        requestId: who.requestId,
      });
      await bus.publish(
        {
          topic: topics.callbackRulesChanged.name,
          type: topics.callbackRulesChanged.type,
          key: target,
          data: toEventData(topics.callbackRulesChanged, create(CallbackRulesChangedSchema, { target, action, version })),
        },
        { tx: client },
      );
      return result;
    });
  }

  return {
    async version(): Promise<number> {
      const { rows } = await pool.query<{ version: string }>("SELECT version FROM rule_set_version");
      return Number(rows[0]!.version);
    },

    async listEnvironments(): Promise<Environment[]> {
      const { rows } = await pool.query<Environment>(`SELECT ${environmentColumns} FROM environments ORDER BY production DESC, name`);
      return rows;
    },

    /**
     * Creates or replaces an environment; omitted `idPatterns` and `production` keep the stored ones (a
     * script that only moves the URL must neither widen what it may claim nor demote production).
     * Production is never left without an environment: demoting it is refused, and another one takes
     * over only by naming it in `replacesProduction`, in one transaction.
     */
    async putEnvironment(who: ChangeContext, env: EnvironmentInput): Promise<Environment> {
      const url = checkBaseUrl(env.baseUrl);
      await urlPolicy.check(new URL(url));
      if (env.idPatterns) checkIdPatterns(env.idPatterns);
      return change(who, `environment/${env.name}`, "update", async (c) => {
        // The production row first, locked: two switches at once queue here rather than both winning. One that
        // waited for another's switch finds the row it waited for no longer production, and not the new one (its
        // statement's snapshot predates it): asked again, it sees it, instead of "there is no production".
        const productionNow = async () =>
          (await c.query<{ name: string }>("SELECT name FROM environments WHERE production FOR UPDATE")).rows[0]?.name;
        const current = (await productionNow()) ?? (await productionNow());
        const before = (
          await c.query<{ production: boolean; id_patterns: IdPatterns; async_delivery: AsyncDelivery | null }>(
            "SELECT base_url, production, description, id_patterns, async_delivery FROM environments WHERE name = $1 FOR UPDATE",
            [env.name],
          )
        ).rows[0];
        const idPatterns = env.idPatterns ?? before?.id_patterns ?? {};
        const production = env.production ?? before?.production ?? false;
        const asyncDelivery =
          env.asyncDelivery === undefined ? (before?.async_delivery ?? null) : (checkAsyncDelivery(env.asyncDelivery, production) ?? null);
        if (production && asyncDelivery && !asyncDelivery.allowOnProduction) throw productionRefusal();
        if (current === env.name && !production)
          throw conflict(
            `environment ${env.name} is production: callbacks no test environment claims go there, and without it they answer 503. ` +
              `Make another environment production in its place: PUT /_dispatcher/v1/environments/<name> {"production": true, "replacesProduction": "${env.name}"}`,
          );
        if (env.replacesProduction !== undefined) {
          // One reason each: the request a caller reads back says what to change in it.
          if (env.replacesProduction !== current)
            throw conflict(
              `replacesProduction names ${env.replacesProduction}, but ${current ? `the production environment is ${current}` : "there is no production environment"}`,
            );
          if (current === env.name)
            throw conflict(`${env.name} is production already; replacesProduction names the environment it replaces`);
          if (!production)
            throw conflict(`replacesProduction makes ${env.name} production in ${current}'s place: send "production": true with it`);
        }
        if (production) {
          if (Object.keys(idPatterns).length) throw badRequest("idPatterns are for test environments; nothing registers for production");
          if (current && current !== env.name && env.replacesProduction !== current)
            throw conflict(
              `environment ${current} is already production; there is exactly one. To switch in one step, send "replacesProduction": "${current}"`,
            );
          if (env.replacesProduction)
            await c.query("UPDATE environments SET production = false, updated_at = now() WHERE name = $1", [current]);
        }
        await c.query(
          `INSERT INTO environments (name, base_url, production, description, id_patterns, async_delivery) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (name) DO UPDATE SET base_url = $2, production = $3, description = $4, id_patterns = $5, async_delivery = $6, updated_at = now()`,
          [env.name, url, production, env.description, idPatterns, asyncDelivery],
        );
        const { replacesProduction, ...saved } = env;
        const after = { ...saved, baseUrl: url, production, idPatterns, asyncDelivery };
        return { before, after: replacesProduction ? { ...after, replacedProduction: replacesProduction } : after, result: after };
      });
    },

    /** Deletes a test environment; production is refused (every callback would answer 503): replace it first. */
    async deleteEnvironment(who: ChangeContext, name: string): Promise<void> {
      await change(who, `environment/${name}`, "delete", async (c) => {
        const { rows } = await c.query<{ production: boolean }>(
          "DELETE FROM environments WHERE name = $1 RETURNING name, base_url, production, id_patterns",
          [name],
        );
        if (!rows[0]) throw notFound(`no environment ${name}`);
        // The transaction rolls the delete back.
        if (rows[0].production)
          throw conflict(
            `environment ${name} is production and cannot be deleted: without it every callback no test environment claims answers 503. ` +
              `Make another environment production first (PUT /_dispatcher/v1/environments/<name> {"production": true, "replacesProduction": "${name}"}), then delete this one`,
          );
        // Owed deliveries are dead-lettered at once, naming the deletion, rather than at their next attempt.
        await c.query("UPDATE async_deliveries SET next_attempt_at = now() WHERE env = $1 AND state = 'pending' AND leased_by IS NULL", [
          name,
        ]);
        return { before: rows[0], after: undefined, result: undefined };
      });
    },

    async listRules(): Promise<StoredRule[]> {
      const { rows } = await pool.query<StoredRule>(
        `SELECT name, revision, enabled, spec, updated_at AS "updatedAt" FROM rules ORDER BY name`,
      );
      return rows;
    },

    async getRule(name: string): Promise<StoredRule> {
      const { rows } = await pool.query<StoredRule>(
        `SELECT name, revision, enabled, spec, updated_at AS "updatedAt" FROM rules WHERE name = $1`,
        [name],
      );
      if (!rows[0]) throw notFound(`no rule ${name}`);
      return rows[0];
    },

    async ruleRevisions(name: string): Promise<Array<{ revision: number; spec: RuleSpec | null; actor: string; at: string }>> {
      const { rows } = await pool.query(
        "SELECT revision, spec, actor, at FROM rule_revisions WHERE name = $1 ORDER BY revision DESC LIMIT 100",
        [name],
      );
      if (!rows.length) throw notFound(`no rule ${name}`);
      return rows;
    },

    /** Creates or replaces a rule (already validated by the caller); `expectRevision` guards against lost updates. */
    async putRule(who: ChangeContext, spec: RuleSpec, expectRevision: number | undefined): Promise<StoredRule> {
      return change(who, `rule/${spec.name}`, "update", async (c) => {
        // One change of a rule at a time: FOR UPDATE locks no row while the rule does not exist yet, and two
        // creations then drew the same revision (the second answered 500 on rule_revisions' key).
        await advisoryXactLock(c, ruleLock(spec.name));
        const prev = (
          await c.query<{ spec: RuleSpec; revision: number }>("SELECT spec, revision FROM rules WHERE name = $1 FOR UPDATE", [spec.name])
        ).rows[0];
        const last = (await c.query<{ r: number | null }>("SELECT max(revision) AS r FROM rule_revisions WHERE name = $1", [spec.name]))
          .rows[0]!.r;
        if (expectRevision !== undefined && (prev?.revision ?? 0) !== expectRevision)
          throw conflict(`rule ${spec.name} is at revision ${prev?.revision ?? 0}, not ${expectRevision}`);
        const revision = (last ?? 0) + 1;
        const { rows } = await c.query<StoredRule>(
          `INSERT INTO rules (name, spec, enabled, revision) VALUES ($1, $2, $3, $4)
           ON CONFLICT (name) DO UPDATE SET spec = $2, enabled = $3, revision = $4, updated_at = now()
           RETURNING name, revision, enabled, spec, updated_at AS "updatedAt"`,
          [spec.name, spec, spec.enabled !== false, revision],
        );
        await c.query("INSERT INTO rule_revisions (name, revision, spec, actor) VALUES ($1, $2, $3, $4)", [
          spec.name,
          revision,
          spec,
          actor(who),
        ]);
        return { before: prev?.spec, after: spec, result: rows[0]! };
      });
    },

    async deleteRule(who: ChangeContext, name: string): Promise<void> {
      await change(who, `rule/${name}`, "delete", async (c) => {
        await advisoryXactLock(c, ruleLock(name));
        const { rows } = await c.query<{ spec: RuleSpec; revision: number }>("DELETE FROM rules WHERE name = $1 RETURNING spec, revision", [
          name,
        ]);
        if (!rows[0]) throw notFound(`no rule ${name}`);
        const last = (await c.query<{ r: number }>("SELECT max(revision) AS r FROM rule_revisions WHERE name = $1", [name])).rows[0]!.r;
        await c.query("INSERT INTO rule_revisions (name, revision, spec, actor) VALUES ($1, $2, NULL, $3)", [name, last + 1, actor(who)]);
        return { before: rows[0].spec, after: undefined, result: undefined };
      });
    },
  };
}

export type ConfigStore = ReturnType<typeof createConfigStore>;

/** An environment as the API and the rule-set snapshot read it. */
export const environmentColumns =
  'name, base_url AS "baseUrl", production, description, id_patterns AS "idPatterns", async_delivery AS "asyncDelivery"';

/** The advisory lock a rule's changes take. */
const ruleLock = (name: string) => `callback_dispatcher.rule/${name}`;

const actor = (who: ChangeContext) => (who.principal ? `${who.principal.kind}:${who.principal.id}` : "anonymous");

/** Targets are the only hosts the dispatcher will send to: plain http(s) origins with an optional path prefix. */
function checkBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw badRequest(`baseUrl "${raw}" is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw badRequest("baseUrl must be http or https");
  if (url.username || url.password) throw badRequest("baseUrl must not carry credentials");
  if (url.search || url.hash) throw badRequest("baseUrl must not have a query or fragment");
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}
