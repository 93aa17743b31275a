import { AppError, badRequest, type Principal } from "@opsplane/platform";
import type { Environment } from "./config-store.js";
import type { RuleSetSnapshot } from "./rule-set.js";
import { envNamePattern } from "./schemas.js";

/** App id → the one test environment its credentials act for (`AGENT_ENVIRONMENTS`). */
export type AgentBindings = ReadonlyMap<string, string>;

const envName = new RegExp(envNamePattern);

/** Reads `appId:env` entries (comma or newline separated); a message naming the bad entry otherwise. */
export function parseAgentBindings(value: string): AgentBindings | string {
  const bindings = new Map<string, string>();
  for (const entry of value
    .split(/[,\n]/)
    .map((x) => x.trim())
    .filter(Boolean)) {
    const [app, env, ...rest] = entry.split(":");
    if (!app || !env || rest.length || !envName.test(env)) return `"${entry}" must be appId:environment, e.g. agent-sit:sit`;
    if (bindings.has(app)) return `${app} is bound more than once; an agent credential acts for one environment`;
    bindings.set(app, env);
  }
  return bindings;
}

/**
 * The test environment `principal` may fetch rules and register ids for. An
 * agent's app credentials act only for their bound environment; an operator API
 * key (whose holder can reconfigure environments anyway) for any test
 * environment. Nobody registers for production. 403s are refusals worth auditing.
 */
export function testEnvironmentFor(
  principal: Principal | undefined,
  name: string,
  rules: RuleSetSnapshot,
  bindings: AgentBindings,
): Environment {
  if (principal?.kind === "app") {
    const bound = bindings.get(principal.id);
    if (bound === undefined)
      throw new AppError(
        403,
        "agent_not_bound",
        `app ${principal.id} is not bound to an environment; an admin must add "${principal.id}:<env>" to the dispatcher's AGENT_ENVIRONMENTS`,
      );
    if (bound !== name)
      throw new AppError(
        403,
        "agent_bound_elsewhere",
        `app ${principal.id} is bound to environment "${bound}" and may not act for "${name}"`,
      );
  }
  const env = rules.environments.get(name);
  if (!env) throw badRequest(`unknown environment "${name}"; configure it first`);
  if (env.production)
    throw new AppError(403, "production_environment", `environment "${name}" is production; nothing registers for production`);
  return env;
}

/** Whether `err` is one of the refusals above or a claim refusal: the ones audited and counted. */
export const isRefusal = (err: unknown): err is AppError => err instanceof AppError && err.status === 403;
