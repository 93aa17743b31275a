import { ExtractionError, type HttpExchange } from "@opsplane/callback-agent/rules";
import { storableText } from "@opsplane/store";
import type { Environment } from "./config-store.js";
import type { Registry } from "./registry.js";
import type { RuleSetSnapshot } from "./rule-set.js";

/** Why a callback goes where it goes. Only "registered" leads to a test environment. */
export type Reason =
  | "registered"
  | "not_registered"
  | "no_rule"
  | "extraction_failed"
  | "body_too_large"
  | "unknown_environment"
  | "registry_unavailable"
  | "no_production";

export interface Decision {
  rule: string | undefined;
  objectId: string | undefined;
  /** Undefined only when no production environment is configured. */
  target: Environment | undefined;
  reason: Reason;
  detail: string | undefined;
}

export interface ExtractionFailure {
  rule: string;
  reason: string;
}

/**
 * Decides where one callback goes. Rules whose callback pattern matches are
 * tried in name order; the first (rule, id) registered by a configured test
 * environment wins. Anything else — no rule, no id, a failing script, an
 * unknown environment — goes to production, with the reason.
 */
export async function decide(
  x: HttpExchange,
  bodyComplete: boolean,
  rules: RuleSetSnapshot,
  registry: Registry,
  onExtractionFailure: (f: ExtractionFailure) => void,
): Promise<Decision> {
  const toProduction = (reason: Reason, rule?: string, objectId?: string, detail?: string): Decision =>
    rules.production
      ? { rule, objectId, target: rules.production, reason, detail }
      : {
          rule,
          objectId,
          target: undefined,
          reason: "no_production",
          detail: `would go to production (${reason}), but none is configured`,
        };

  const matching = rules.rules.filter((r) => r.matchesCallback(x.method, x.path));
  if (!matching.length) return toProduction("no_rule");
  if (!bodyComplete) {
    onExtractionFailure({ rule: matching[0]!.name, reason: "body_too_large" });
    return toProduction("body_too_large", matching[0]!.name, undefined, "body larger than the extraction limit; not read");
  }
  let firstMiss: Decision | undefined;
  for (const rule of matching) {
    let id: string;
    try {
      // Made storable as registrations are (a NUL as the text \u0000), so the same raw id finds its registration.
      id = storableText(await rule.callbackId(x));
    } catch (err) {
      const reason = err instanceof ExtractionError ? err.reason : "script_failed";
      onExtractionFailure({ rule: rule.name, reason });
      firstMiss ??= toProduction("extraction_failed", rule.name, undefined, (err as Error).message);
      continue;
    }
    let envName: string | undefined;
    try {
      envName = await registry.lookup(rule.name, id);
    } catch (err) {
      return toProduction("registry_unavailable", rule.name, id, `registry lookup failed: ${(err as Error).message}`);
    }
    if (envName === undefined) {
      if (!firstMiss || firstMiss.reason === "extraction_failed") firstMiss = toProduction("not_registered", rule.name, id);
      continue;
    }
    const env = rules.environments.get(envName);
    if (!env || env.production)
      return toProduction("unknown_environment", rule.name, id, `registered by "${envName}", which is not a configured test environment`);
    return { rule: rule.name, objectId: id, target: env, reason: "registered", detail: undefined };
  }
  return firstMiss!;
}
