import { sampleExchange } from "@opsplane/callback-agent/rules";
import { connectRefusal, hostRefusal } from "@opsplane/platform";
import { refusalOf } from "./callback-refusal.js";
import type { Registry } from "./registry.js";
import { decide } from "./router.js";
import type { RuleSetSnapshot } from "./rule-set.js";
import { loopMessage, viaNames } from "./via.js";

export interface DryRunInput {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface DryRunResult {
  rule: string;
  objectId: string;
  targetEnv: string;
  targetUrl: string;
  reason: string;
  detail: string;
}

/** What a callback the dispatcher answers itself, before routing it, is told instead of a route. */
const unrouted = (reason: string, detail: string): DryRunResult => ({
  rule: "",
  objectId: "",
  targetEnv: "",
  targetUrl: "",
  reason,
  detail,
});

/**
 * Where a callback would go and why, without forwarding or recording it. One the live path refuses
 * before routing says so: `refused` (answered 400, the detail naming why) or `forwarding_loop` (508).
 */
export async function dryRun(input: DryRunInput, rules: RuleSetSnapshot, registry: Registry, viaPseudonym: string): Promise<DryRunResult> {
  // Header names as the live path reads them: in any case, `Host` given twice ("Host" and "host") is two.
  if (input.method.toUpperCase() === "CONNECT") return unrouted("refused", `answered 405 (method_not_allowed): ${connectRefusal}`);
  const named = (name: string) => Object.entries(input.headers ?? {}).filter(([k]) => k.toLowerCase() === name);
  // A dry run's headers seldom name Host at all: only a second one is refused (as on HTTP/1.0).
  const refusal = hostRefusal(named("host").length, "1.0") ?? refusalOf(input.path);
  if (refusal) return unrouted("refused", `answered 400 (bad_request): ${refusal}`);
  const via = named("via").map(([, v]) => v);
  if (via.length && viaNames(via.join(", "), viaPseudonym))
    return unrouted("forwarding_loop", `answered 508 (loop_detected): ${loopMessage(viaPseudonym)}`);
  const q = input.path.indexOf("?");
  const exchange = sampleExchange({
    method: input.method,
    path: q < 0 ? input.path : input.path.slice(0, q),
    query: q < 0 ? "" : input.path.slice(q + 1),
    headers: input.headers,
    body: input.body,
    expectId: "",
  });
  const d = await decide(exchange, true, rules, registry, () => {});
  return {
    rule: d.rule ?? "",
    objectId: d.objectId ?? "",
    targetEnv: d.target?.name ?? "",
    targetUrl: d.target ? `${d.target.baseUrl}${input.path}` : "",
    reason: d.reason,
    detail: d.detail ?? "",
  };
}
