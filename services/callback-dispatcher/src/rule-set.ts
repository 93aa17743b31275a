import { type CompiledRule, compileRule, type RuleSpec, type ScriptCompiler } from "@opsplane/callback-agent/rules";
import type { Logger } from "@opsplane/platform";
import { type Pool, withTransaction } from "@opsplane/store";
import { type ClaimCheck, compileClaimCheck } from "./claims.js";
import { type Environment, environmentColumns } from "./config-store.js";
import { exchangeForExtraction } from "./extraction-body.js";
import type { Registered } from "./registry.js";
import type { RuleBody } from "./schemas.js";

/** A rule's body extraction limit unless it sets its own (`callback.extractLimitBytes`): real notifications are under 4 KB. */
export const defaultExtractLimitBytes = 65_536;

/**
 * The rule with its callback extractor bounded: a body (decoded: gzip, charset) over the rule's
 * limit is refused before any parser sees it, so no rule parses a large XML or JSON body on the
 * event loop. Query and header extractors never read the body, so they keep working for any body.
 */
function withExtractionLimit(rule: CompiledRule, limit: number, decodeBound: number): CompiledRule {
  const kind = rule.spec.callback.id.kind;
  if (kind === "query" || kind === "header") return rule;
  const extract = rule.callbackId;
  return { ...rule, callbackId: (x) => extract(exchangeForExtraction(x, limit, decodeBound)) };
}

/**
 * An environment as routing sees it. `createdAt` (µs since the epoch, the record's clock): a registration
 * older than that was made by a deleted environment of the same name, not by this one.
 */
export type ConfiguredEnvironment = Environment & { createdAt: number };
export const configuredEnvironmentColumns = `${environmentColumns}, (extract(epoch FROM created_at) * 1000000)::float8 AS "createdAt"`;

/** Whether `found` was registered by `env` as configured now, not by a deleted environment of the same name. */
export const registeredByThisOne = (env: ConfiguredEnvironment, found: Registered) =>
  found.version === undefined || found.version >= env.createdAt;

/** Everything the hot path needs, compiled once per rule-set version and swapped whole. */
export interface RuleSetSnapshot {
  version: number;
  /** Enabled rules only, in name order. */
  rules: CompiledRule[];
  /** Specs of all rules, as agents receive them. */
  specs: RuleSpec[];
  environments: Map<string, ConfiguredEnvironment>;
  production: ConfiguredEnvironment | undefined;
  /** Per test environment: which ids it may claim. */
  claims: Map<string, ClaimCheck>;
}

export interface RuleSetCache {
  current(): RuleSetSnapshot;
  /**
   * Reloads when the stored version differs from the one in memory; true once the rule set in force
   * is the stored one as of the call, false when PostgreSQL could not be read (the previous one stays).
   */
  refresh(): Promise<boolean>;
  close(): void;
}

/**
 * Keeps the compiled rule set in memory and follows changes made on any
 * replica by polling the one version number (cheap: a single-row read).
 */
export async function createRuleSetCache(o: {
  pool: Pool;
  compileScript: ScriptCompiler;
  pollMs: number;
  /** CALLBACK_EXTRACT_LIMIT_BYTES: no rule's extraction limit goes past it. */
  extractLimitBytes: number;
  log: Logger;
  onReload(snapshot: RuleSetSnapshot): void;
}): Promise<RuleSetCache> {
  let snapshot = await load();
  o.onReload(snapshot);

  async function load(): Promise<RuleSetSnapshot> {
    // One snapshot of version, rules and environments, so they always agree.
    const { version, ruleRows, envRows } = await withTransaction(
      o.pool,
      async (tx) => ({
        version: Number((await tx.query<{ version: string }>("SELECT version FROM rule_set_version")).rows[0]!.version),
        ruleRows: (await tx.query<{ spec: RuleSpec; enabled: boolean }>("SELECT spec, enabled FROM rules ORDER BY name")).rows,
        envRows: (await tx.query<ConfiguredEnvironment>(`SELECT ${configuredEnvironmentColumns} FROM environments`)).rows,
      }),
      { isolation: "repeatable read", readOnly: true },
    );
    const rules: CompiledRule[] = [];
    const limitOf = (spec: RuleSpec) =>
      Math.min((spec.callback as RuleBody["callback"]).extractLimitBytes ?? defaultExtractLimitBytes, o.extractLimitBytes);
    // One decode per callback serves every rule: bounded by the largest limit in force.
    const decodeBound = Math.max(0, ...ruleRows.map((r) => limitOf(r.spec)));
    for (const row of ruleRows) {
      if (!row.enabled) continue;
      try {
        rules.push(withExtractionLimit(compileRule(row.spec, o.compileScript), limitOf(row.spec), decodeBound));
      } catch (err) {
        o.log.error({ rule: row.spec.name, err: (err as Error).message }, "stored rule does not compile; skipped");
      }
    }
    const claims = new Map<string, ClaimCheck>();
    for (const env of envRows) {
      try {
        claims.set(env.name, compileClaimCheck(env.name, env.idPatterns));
      } catch (err) {
        // Checked on save, so only a pattern saved by another build lands here: claim nothing rather than anything.
        o.log.error({ env: env.name, err: (err as Error).message }, "stored id pattern does not compile; the environment may claim no id");
        claims.set(env.name, () => `environment "${env.name}" has an id pattern that does not compile`);
      }
    }
    return {
      version,
      rules,
      specs: ruleRows.filter((r) => r.enabled).map((r) => r.spec),
      environments: new Map(envRows.map((e) => [e.name, e])),
      production: envRows.find((e) => e.production),
      claims,
    };
  }

  const reload = async (): Promise<boolean> => {
    try {
      const { rows } = await o.pool.query<{ version: string }>("SELECT version FROM rule_set_version");
      if (Number(rows[0]!.version) === snapshot.version) return true;
      snapshot = await load();
      o.onReload(snapshot);
      o.log.info({ version: snapshot.version, rules: snapshot.rules.length }, "rule set reloaded");
      return true;
    } catch (err) {
      o.log.warn({ err: (err as Error).message }, "rule set refresh failed; keeping the previous one");
      return false;
    }
  };
  // A reload already on its way may have read the rules before the caller's change was stored: the
  // caller waits for one that starts after it asked (callers meanwhile share it). Joining the one on
  // its way answered a PUT before its rule was in force, and registrations for it were ignored.
  let refreshing: Promise<boolean> | undefined;
  let next: Promise<boolean> | undefined;
  const refresh = (): Promise<boolean> => {
    if (!refreshing) {
      refreshing = reload().finally(() => {
        refreshing = undefined;
      });
      return refreshing;
    }
    next ??= refreshing.then(() => {
      next = undefined;
      return refresh();
    });
    return next;
  };

  // A poll needs no reload of its own while one is on its way: the next tick sees what that one missed.
  const timer = setInterval(() => {
    if (!refreshing) void refresh();
  }, o.pollMs);
  timer.unref();
  return { current: () => snapshot, refresh, close: () => clearInterval(timer) };
}
