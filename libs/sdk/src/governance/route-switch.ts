import type { EdgeDecision, EdgeRequest } from "../contracts.js";
import { type RespondDecision, refusal } from "./responses.js";
import type { RouteCondition, RouteRule } from "./rules.js";

/** Answered when a rule needs the body and the adapter will have it later. */
export const DEFER: EdgeDecision = Object.freeze({ action: "defer" });

/**
 * A closed interface answers 503: it exists but operations switched it off for now, which tells a
 * caller or gateway to go elsewhere or retry later; 404 would say it never existed and 403 that
 * the caller lacks a right.
 */
const closedStatus = 503;

interface Condition {
  byParam: boolean;
  name: string;
  values: ReadonlySet<string>;
  enabled: boolean;
  closed: RespondDecision;
}

/**
 * A route rule compiled for one interface: the first condition that matches the request decides
 * (its `enabled`); when none matches, the global `enabled` does. So `enabled: false` with a caller
 * condition `enabled: true` opens the interface to those callers only. Provider conditions test
 * this instance's own identities, known before any request, so they are settled here.
 */
export class RouteSwitch {
  private readonly conditions: Condition[] = [];
  private readonly enabled: boolean;
  private readonly closed: RespondDecision;
  /** Open to every request: nothing to check. */
  readonly alwaysOpen: boolean;

  constructor(code: string, rule: RouteRule, providers: ReadonlySet<string>) {
    let enabled = rule.enabled;
    let closed = refusal("route-closed", closedStatus, `interface ${code} is closed by its route rule`);
    for (const c of rule.conditions) {
      if (c.by === "provider") {
        if (!c.values.some((v) => providers.has(v))) continue;
        enabled = c.enabled;
        closed = refusal("route-closed", closedStatus, `interface ${code} is closed on this instance by its route rule (${describe(c)})`);
        break;
      }
      this.conditions.push({
        byParam: c.by === "param",
        name: c.name ?? "",
        values: new Set(c.values),
        enabled: c.enabled,
        closed: refusal("route-closed", closedStatus, `interface ${code} is closed by its route rule (${describe(c)})`),
      });
    }
    this.enabled = enabled;
    this.closed = closed;
    this.alwaysOpen = enabled && this.conditions.length === 0;
  }

  /** The refusal for a closed interface, DEFER to wait for the body, or undefined when open. */
  check(req: EdgeRequest): EdgeDecision | undefined {
    for (let i = 0; i < this.conditions.length; i++) {
      const c = this.conditions[i]!;
      let value: unknown;
      if (c.byParam) {
        value = param(req, c.name);
        if (value === undefined && req.body === undefined && req.bodyFollows) return DEFER;
      } else value = req.caller ?? first(req.headers["x-opsplane-caller"]);
      if (matches(value, c.values)) return c.enabled ? undefined : c.closed;
    }
    return this.enabled ? undefined : this.closed;
  }
}

function describe(c: RouteCondition): string {
  const shown = c.values.slice(0, 5).join(", ") + (c.values.length > 5 ? ", …" : "");
  return c.by === "param" ? `${c.name} in ${shown}` : `${c.by} in ${shown}`;
}

function first(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h[0] : h;
}

/** A live parameter: route params, then the query string, then a top-level field of the body. */
function param(req: EdgeRequest, name: string): unknown {
  const p = req.params;
  if (p !== undefined && Object.hasOwn(p, name)) return p[name];
  const q = req.query;
  if (typeof q === "string") {
    if (q !== "") {
      const all = new URLSearchParams(q).getAll(name);
      if (all.length > 0) return all;
    }
  } else if (q !== undefined && q !== null && Object.hasOwn(q, name)) return q[name];
  const b = req.body;
  if (typeof b === "object" && b !== null && !Array.isArray(b) && Object.hasOwn(b, name)) return (b as Record<string, unknown>)[name];
  return undefined;
}

function matches(value: unknown, values: ReadonlySet<string>): boolean {
  if (typeof value === "string") return values.has(value);
  if (typeof value === "number" || typeof value === "boolean") return values.has(String(value));
  if (Array.isArray(value)) return value.some((v) => matches(v, values));
  return false;
}
