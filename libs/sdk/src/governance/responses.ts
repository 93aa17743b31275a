import type { EdgeDecision, EdgeReason, EdgeResponse } from "../contracts.js";

export type RespondDecision = Extract<EdgeDecision, { action: "respond" }>;

/** Header naming why governance answered instead of the handler, on every such answer. */
export const governanceHeader = "x-opsplane-governance";

/**
 * A JSON error answer `{error, message}`, built once when a rule is applied and shared by every
 * request it answers, so refusing a request allocates nothing.
 */
export function refusal(reason: EdgeReason, statusCode: number, message: string, headers: Record<string, string> = {}): RespondDecision {
  const response: EdgeResponse = Object.freeze({
    statusCode,
    headers: Object.freeze({ "content-type": "application/json; charset=utf-8", [governanceHeader]: reason, ...headers }),
    body: JSON.stringify({ error: reason, message }),
  });
  return Object.freeze({ action: "respond", reason, response });
}

/** Whole seconds for a `retry-after` header, at least 1. */
export function retryAfter(ms: number): string {
  return String(Math.max(1, Math.ceil(ms / 1000)));
}
