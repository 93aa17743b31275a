/**
 * Governance rule values (config-center's `governanceSchemas`, seed paragraph 0064) read into typed
 * rules. Config-center validates a rule when it is saved; the SDK checks again because a value
 * that does not parse must never reach a request: it is reported to the caller, which keeps the
 * previous rule. Fields this SDK does not know are ignored (a newer config-center may add some).
 */

import { headersProblem } from "./http-fields.js";

export type RuleType = "route" | "baffle" | "rate-limit" | "circuit-breaker";

export interface RouteCondition {
  by: "param" | "caller" | "provider";
  /** The live parameter's name when `by` is "param". */
  name?: string;
  values: string[];
  enabled: boolean;
}

export interface RouteRule {
  enabled: boolean;
  conditions: RouteCondition[];
}

export interface BaffleRule {
  enabled: boolean;
  response: { status?: number; headers?: Record<string, string>; body?: unknown };
  delayMs?: number;
  script?: string;
}

export interface RateLimitRule {
  enabled: boolean;
  tps?: number;
  concurrency?: number;
}

export interface BreakerRule {
  enabled: boolean;
  timeoutMs?: number;
  errorCount?: number;
  errorRatio?: number;
  minRequests: number;
  windowMs: number;
  openMs: number;
}

export type Rule =
  | { type: "route"; rule: RouteRule }
  | { type: "baffle"; rule: BaffleRule }
  | { type: "rate-limit"; rule: RateLimitRule }
  | { type: "circuit-breaker"; rule: BreakerRule };

/** Defaults for what a breaker rule may leave out. */
export const breakerDefaults = {
  windowMs: 10_000,
  minRequests: 5,
  /** A rule with only `timeoutMs` opens when half the calls in the window were slow or failed. */
  errorRatio: 0.5,
};

const ruleTypes: readonly string[] = ["route", "baffle", "rate-limit", "circuit-breaker"];

/** Splits `<type>/<code>`; a string is the reason it cannot be split. */
export function parseRuleKey(key: string): { type: RuleType; code: string } | string {
  const slash = key.indexOf("/");
  const type = slash < 0 ? key : key.slice(0, slash);
  if (!ruleTypes.includes(type)) return `unknown rule type "${type}" (expected ${ruleTypes.join(", ")})`;
  const code = key.slice(slash + 1);
  if (slash < 0 || code === "") return `key "${key}" names no interface code (expected ${type}/<code>)`;
  return { type: type as RuleType, code };
}

/** Thrown inside the parsers only; `parseRule` turns it into the reason. */
class Invalid extends Error {}

/** The typed rule, or the reason the value does not parse. */
export function parseRule(type: RuleType, value: unknown): Rule | string {
  try {
    switch (type) {
      case "route":
        return { type, rule: route(value) };
      case "baffle":
        return { type, rule: baffle(value) };
      case "rate-limit":
        return { type, rule: rateLimit(value) };
      case "circuit-breaker":
        return { type, rule: breaker(value) };
    }
  } catch (err) {
    if (err instanceof Invalid) return err.message;
    throw err;
  }
}

function route(value: unknown): RouteRule {
  const v = object(value, "");
  const conditions = optional(v.conditions, "/conditions", (c, at) => array(c, at, 100).map((item, i) => condition(item, `${at}/${i}`)));
  return { enabled: boolean(v.enabled, "/enabled"), conditions: conditions ?? [] };
}

function condition(value: unknown, at: string): RouteCondition {
  const v = object(value, at);
  const by = v.by;
  if (by !== "param" && by !== "caller" && by !== "provider") throw new Invalid(`${at}/by must be param, caller or provider`);
  const name = optional(v.name, `${at}/name`, (n, where) => string(n, where, 1, 128));
  if (by === "param" && name === undefined) throw new Invalid(`${at}/name is required when by is "param"`);
  const values = array(v.values, `${at}/values`, 1000).map((s, i) => string(s, `${at}/values/${i}`, 0, 256));
  if (values.length === 0) throw new Invalid(`${at}/values must not be empty`);
  return { by, name, values, enabled: boolean(v.enabled, `${at}/enabled`) };
}

function baffle(value: unknown): BaffleRule {
  const v = object(value, "");
  const r = object(v.response, "/response");
  const status = optional(r.status, "/response/status", (s, at) => integer(s, at, 100, 599));
  const headers = optional(r.headers, "/response/headers", (h, at) => {
    const o = object(h, at);
    const problem = headersProblem(o);
    if (problem) throw new Invalid(`${at}: ${problem}`);
    return o as Record<string, string>;
  });
  return {
    enabled: boolean(v.enabled, "/enabled"),
    response: { status, headers, body: r.body },
    delayMs: optional(v.delayMs, "/delayMs", (d, at) => integer(d, at, 0, 60_000)),
    script: optional(v.script, "/script", (s, at) => string(s, at, 1, 16_384)),
  };
}

function rateLimit(value: unknown): RateLimitRule {
  const v = object(value, "");
  const tps = optional(v.tps, "/tps", (t, at) => {
    const n = number(t, at, 0, 1_000_000);
    if (n <= 0) throw new Invalid(`${at} must be above 0`);
    return n;
  });
  const concurrency = optional(v.concurrency, "/concurrency", (c, at) => integer(c, at, 1, 100_000));
  if (tps === undefined && concurrency === undefined) throw new Invalid("/ must set tps or concurrency");
  return { enabled: optional(v.enabled, "/enabled", boolean) ?? true, tps, concurrency };
}

function breaker(value: unknown): BreakerRule {
  const v = object(value, "");
  const timeoutMs = optional(v.timeoutMs, "/timeoutMs", (t, at) => integer(t, at, 1, 600_000));
  const errorCount = optional(v.errorCount, "/errorCount", (c, at) => integer(c, at, 1, Number.MAX_SAFE_INTEGER));
  const errorRatio = optional(v.errorRatio, "/errorRatio", (r, at) => {
    const n = number(r, at, 0, 1);
    if (n <= 0) throw new Invalid(`${at} must be above 0`);
    return n;
  });
  if (timeoutMs === undefined && errorCount === undefined && errorRatio === undefined)
    throw new Invalid("/ must set errorCount, errorRatio or timeoutMs");
  return {
    enabled: optional(v.enabled, "/enabled", boolean) ?? true,
    timeoutMs,
    errorCount,
    errorRatio: errorRatio ?? (errorCount === undefined ? breakerDefaults.errorRatio : undefined),
    minRequests:
      optional(v.minRequests, "/minRequests", (m, at) => integer(m, at, 1, Number.MAX_SAFE_INTEGER)) ?? breakerDefaults.minRequests,
    windowMs: optional(v.windowMs, "/windowMs", (w, at) => integer(w, at, 100, 3_600_000)) ?? breakerDefaults.windowMs,
    openMs: integer(v.openMs, "/openMs", 100, 3_600_000),
  };
}

function where(at: string): string {
  return at === "" ? "/" : at;
}

function object(v: unknown, at: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Invalid(`${where(at)} must be an object`);
  return v as Record<string, unknown>;
}

function array(v: unknown, at: string, max: number): unknown[] {
  if (!Array.isArray(v)) throw new Invalid(`${at} must be an array`);
  if (v.length > max) throw new Invalid(`${at} has more than ${max} items`);
  return v;
}

function boolean(v: unknown, at: string): boolean {
  if (typeof v !== "boolean") throw new Invalid(`${at} must be true or false`);
  return v;
}

function string(v: unknown, at: string, min: number, max: number): string {
  if (typeof v !== "string") throw new Invalid(`${at} must be a string`);
  if (v.length < min || v.length > max) throw new Invalid(`${at} must be ${min} to ${max} characters`);
  return v;
}

function number(v: unknown, at: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isFinite(v)) throw new Invalid(`${at} must be a number`);
  if (v < min || v > max) throw new Invalid(`${at} must be between ${min} and ${max}`);
  return v;
}

function integer(v: unknown, at: string, min: number, max: number): number {
  const n = number(v, at, min, max);
  if (!Number.isInteger(n)) throw new Invalid(`${at} must be an integer`);
  return n;
}

function optional<T>(v: unknown, at: string, read: (v: unknown, at: string) => T): T | undefined {
  return v === undefined ? undefined : read(v, at);
}
