import { ExtractionError, ExtractionRefused, type HttpExchange } from "@opsplane/callback-agent/rules";
import { storableText } from "@opsplane/store";
import type { Environment } from "./config-store.js";
import type { HeldId, RegistrationHold } from "./registration-hold.js";
import type { Registered, Registry } from "./registry.js";
import { type RuleSetSnapshot, registeredByThisOne } from "./rule-set.js";

/** Why a callback goes where it goes. Only "registered" leads to a test environment. */
export const reasons = [
  "registered",
  "not_registered",
  "no_rule",
  "extraction_failed",
  "body_too_large",
  "unknown_environment",
  "not_claimable",
  "registry_unavailable",
  "script_unavailable",
  "no_production",
] as const;
export type Reason = (typeof reasons)[number];

export interface Decision {
  rule: string | undefined;
  objectId: string | undefined;
  /**
   * Undefined (answered 503) when no production environment is configured, a script that could route it
   * could not run, or the registry could not answer for an id a test environment may claim.
   */
  target: Environment | undefined;
  reason: Reason;
  detail: string | undefined;
}

export interface ExtractionFailure {
  rule: string;
  reason: string;
}

/** Why a callback whose id no test environment may claim went to production unlooked-up. */
const unclaimableDetail = "no test environment may claim this id (their idPatterns); not looked up";

/** Whether some configured test environment may claim (rule, id): only then can a registration for it exist or be on its way. */
function claimable(rules: RuleSetSnapshot, rule: string, id: string): boolean {
  for (const env of rules.environments.values()) if (!env.production && !rules.claims.get(env.name)?.(rule, id)) return true;
  return false;
}

/**
 * Decides where one callback goes. Rules whose callback pattern matches are
 * tried in name order; the first (rule, id) registered by a configured test
 * environment wins. Ids no test environment may claim are not looked up. When none is, and a matching rule has `holdMs` for an id
 * some test environment may claim, the callback waits (with `hold`) up to the
 * longest such `holdMs` for a registration still in flight, then looks its ids up
 * once more (a registry failing then is `registry_unavailable`). Anything else — no
 * rule, no id, a failing script, an unknown environment — goes to production,
 * with the reason. Except a script the sandbox could not run (closed, no worker
 * could start), or a registry that cannot answer for an id a test environment may
 * claim: that says nothing about the id, which may be a test environment's, so the
 * callback is answered 503 for the platform to retry.
 */
export async function decide(
  x: HttpExchange,
  bodyComplete: boolean,
  rules: RuleSetSnapshot,
  registry: Registry,
  onExtractionFailure: (f: ExtractionFailure) => void,
  hold?: RegistrationHold,
): Promise<Decision> {
  const matching = rules.rules.filter((r) => r.matchesCallback(x.method, x.path));
  if (!matching.length) return toProduction(rules, "no_rule");
  if (!bodyComplete) {
    onExtractionFailure({ rule: matching[0]!.name, reason: "body_too_large" });
    return toProduction(rules, "body_too_large", matching[0]!.name, undefined, "body larger than the extraction limit; not read");
  }
  let firstMiss: Decision | undefined;
  let scriptUnavailable: Decision | undefined;
  // Ids not registered (yet) that a rule may hold the callback for.
  let awaited: HeldId[] | undefined;
  let holdMs = 0;
  for (const rule of matching) {
    let id: string;
    try {
      // Made storable as registrations are (a NUL as the text \u0000), so the same raw id finds its registration.
      // Declarative extractors answer at once: awaited only when a script's promise comes back.
      const got = rule.callbackId(x);
      id = storableText(typeof got === "string" ? got : await got);
    } catch (err) {
      const reason = err instanceof ExtractionError || err instanceof ExtractionRefused ? err.reason : "script_failed";
      onExtractionFailure({ rule: rule.name, reason });
      if (reason === "script_unavailable") {
        scriptUnavailable ??= {
          rule: rule.name,
          objectId: undefined,
          target: undefined,
          reason,
          detail: `${(err as Error).message}; retry later`,
        };
        continue;
      }
      firstMiss ??= toProduction(
        rules,
        reason === "body_too_large" ? reason : "extraction_failed",
        rule.name,
        undefined,
        (err as Error).message,
      );
      continue;
    }
    if (!claimable(rules, rule.name, id)) {
      // No configured test environment may claim it (their idPatterns), so no registration can route it:
      // production's, without asking the registry (nor waiting on one that is slow or down).
      if (!firstMiss || firstMiss.reason === "extraction_failed")
        firstMiss = toProduction(rules, "not_registered", rule.name, id, unclaimableDetail);
      continue;
    }
    let found: Registered | undefined;
    try {
      found = await registry.lookup(rule.name, id);
    } catch (err) {
      return registryUnavailable(rule.name, id, `registry lookup failed: ${(err as Error).message}`);
    }
    if (found === undefined) {
      if (!firstMiss || firstMiss.reason === "extraction_failed") firstMiss = toProduction(rules, "not_registered", rule.name, id);
      if (rule.holdMs > 0 && hold) {
        awaited ??= [];
        awaited.push({ rule: rule.name, id });
        holdMs = Math.max(holdMs, rule.holdMs);
      }
      continue;
    }
    return routeTo(rules, rule.name, id, found);
  }
  if (!awaited || !hold) return scriptUnavailable ?? firstMiss!;
  const held = await hold.wait(awaited, holdMs);
  if (held.registered !== undefined)
    return routeTo(rules, held.rule, held.id, held.registered, `held ${held.heldMs} ms until its registration came`);
  if (!held.full) {
    // The hold's polls pass over a registry that cannot answer: its last word is a lookup like the one
    // before it, so a registry down is `registry_unavailable` here as there, not "no registration came".
    const last = await Promise.allSettled(awaited.map((x) => registry.lookup(x.rule, x.id)));
    for (const [i, x] of awaited.entries()) {
      const got = last[i]!;
      if (got.status === "rejected")
        return registryUnavailable(x.rule, x.id, `registry lookup failed: ${(got.reason as Error).message}; held ${held.heldMs} ms`);
      if (got.value !== undefined) return routeTo(rules, x.rule, x.id, got.value, `held ${held.heldMs} ms until its registration came`);
    }
  }
  if (scriptUnavailable) return scriptUnavailable;
  const why = held.full
    ? "not held: too many callbacks held already"
    : held.cutShort
      ? `held ${held.heldMs} ms, cut short by shutdown; no registration came by then`
      : `held ${held.heldMs} ms; no registration came`;
  return { ...firstMiss!, detail: firstMiss!.detail ? `${firstMiss!.detail}; ${why}` : why };
}

/**
 * Neither Redis nor the PostgreSQL record could say who registered `id`, which a test environment may
 * claim (only those are looked up): answered 503 for the platform to retry rather than handed to
 * production (a test payment's notification there is the defect the registry exists to prevent).
 */
function registryUnavailable(rule: string, id: string, detail: string): Decision {
  return {
    rule,
    objectId: id,
    target: undefined,
    reason: "registry_unavailable",
    detail: `${detail}; a test environment may claim this id: 503 for the platform to retry, not production`,
  };
}

/** The callback to production for `reason`; with none configured, nowhere (`no_production`, answered 503). */
function toProduction(rules: RuleSetSnapshot, reason: Reason, rule?: string, objectId?: string, detail?: string): Decision {
  return rules.production
    ? { rule, objectId, target: rules.production, reason, detail }
    : {
        rule,
        objectId,
        target: undefined,
        reason: "no_production",
        detail: `would go to production (${reason}), but none is configured`,
      };
}

/**
 * The callback to the environment that registered its id, while that is a configured test environment,
 * the one that registered it (an environment deleted and created again under the same name is another,
 * a new owner, a new URL, and does not inherit the ids its predecessor registered), and one that may
 * still claim the id.
 */
function routeTo(rules: RuleSetSnapshot, rule: string, id: string, found: Registered, detail?: string): Decision {
  const env = rules.environments.get(found.env);
  if (!env || env.production)
    return toProduction(rules, "unknown_environment", rule, id, `registered by "${found.env}", which is not a configured test environment`);
  if (!registeredByThisOne(env, found))
    return toProduction(
      rules,
      "unknown_environment",
      rule,
      id,
      `registered by an earlier environment "${found.env}", deleted since; the one configured now was created after the registration`,
    );
  // Its patterns narrowed since it registered the id: an environment gets only the ids it may claim now.
  const refused = rules.claims.get(env.name)?.(rule, id);
  if (refused)
    return toProduction(
      rules,
      "not_claimable",
      rule,
      id,
      `registered by "${found.env}", whose idPatterns no longer let it claim this id (${refused})`,
    );
  return { rule, objectId: id, target: env, reason: "registered", detail };
}
