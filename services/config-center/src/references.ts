import { badRequest } from "@opsplane/platform";
import { resourceNamePattern } from "./identifiers.js";

/**
 * Technical parameters (and resources) reference public resources instead of copying their
 * addresses and credentials: an object `{"$ref": "middleware/loan-db"}` stands for the whole
 * resource (its config and secrets), `{"$ref": "middleware/loan-db#password"}` for one field.
 * References are resolved when an instance fetches the value, so a rotated password reaches
 * every app that uses it.
 */
export interface Reference {
  /** "middleware/loan-db" */
  resource: string;
  field: string | undefined;
}

const refPattern = /^(middleware|service)\/([^#]+)(?:#([A-Za-z0-9_.-]{1,64}))?$/;

/** Whether `v` is a reference object: exactly one member, "$ref". */
function refText(v: unknown): string | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
  const keys = Object.keys(v);
  return keys.length === 1 && keys[0] === "$ref" ? String((v as { $ref: unknown }).$ref) : undefined;
}

export function parseReference(text: string): Reference {
  const m = refPattern.exec(text);
  if (!m || !resourceNamePattern.test(m[2]!))
    throw badRequest(
      `reference ${JSON.stringify(text)} must be "middleware/<name>" or "service/<name>", optionally followed by "#<field>"`,
    );
  return { resource: `${m[1]}/${m[2]}`, field: m[3] };
}

/** The resources `value` references directly, each once, in order of appearance. */
export function findReferences(value: unknown): string[] {
  const found = new Set<string>();
  const walk = (v: unknown) => {
    const text = refText(v);
    if (text !== undefined) {
      found.add(parseReference(text).resource);
      return;
    }
    if (Array.isArray(v)) for (const x of v) walk(x);
    else if (typeof v === "object" && v !== null) for (const x of Object.values(v)) walk(x);
  };
  walk(value);
  return [...found];
}

/** A resource as references see it: its config (which may hold references itself) and its opened secrets. */
export interface ResolvableResource {
  config: Record<string, unknown>;
  secrets(): Record<string, string>;
}

export class UnresolvableReference extends Error {}

/**
 * Replaces every reference in `value` by what it names, following references inside resources.
 * Throws UnresolvableReference for a missing resource, a missing field or a cycle, naming the path.
 */
export function resolveReferences(value: unknown, lookup: (resource: string) => ResolvableResource | undefined): unknown {
  const resolving: string[] = [];
  const resolved = new Map<string, Record<string, unknown>>();

  const wholeResource = (id: string): Record<string, unknown> => {
    const done = resolved.get(id);
    if (done) return done;
    if (resolving.includes(id))
      throw new UnresolvableReference(`references form a cycle: ${[...resolving.slice(resolving.indexOf(id)), id].join(" -> ")}`);
    const r = lookup(id);
    if (!r)
      throw new UnresolvableReference(
        `reference to ${id}, which does not exist${resolving.length ? ` (via ${resolving.join(" -> ")})` : ""}`,
      );
    resolving.push(id);
    const out = { ...(walk(r.config) as Record<string, unknown>), ...r.secrets() };
    resolving.pop();
    resolved.set(id, out);
    return out;
  };

  const walk = (v: unknown): unknown => {
    const text = refText(v);
    if (text !== undefined) {
      const ref = parseReference(text);
      const whole = wholeResource(ref.resource);
      if (ref.field === undefined) return whole;
      if (!Object.hasOwn(whole, ref.field))
        throw new UnresolvableReference(`reference ${text}: ${ref.resource} has no field "${ref.field}"`);
      return whole[ref.field];
    }
    if (Array.isArray(v)) return v.map(walk);
    if (typeof v === "object" && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(value);
}
