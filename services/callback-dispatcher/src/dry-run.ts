import { sampleExchange } from "@opsplane/callback-agent/rules";
import type { Registry } from "./registry.js";
import { decide } from "./router.js";
import type { RuleSetSnapshot } from "./rule-set.js";

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

/** Where a callback would go and why, without forwarding or recording it. */
export async function dryRun(input: DryRunInput, rules: RuleSetSnapshot, registry: Registry): Promise<DryRunResult> {
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
