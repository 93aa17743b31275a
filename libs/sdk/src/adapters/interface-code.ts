/**
 * Interface codes: what governance rules (`<type>/<code>`) and reports are keyed by. A code must
 * be a valid config-center key once the longest rule type is put in front of it.
 */
const keyPattern = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}$/;
const longestPrefix = "circuit-breaker/".length;
export const maxCodeLength = 200 - longestPrefix;

/** Throws a clear error for a code no rule could name. */
export function checkCode(code: string, where: string): string {
  if (typeof code !== "string" || code.length > maxCodeLength || !keyPattern.test(code))
    throw new TypeError(
      `${where}: interface code ${JSON.stringify(code)} is not valid: 1 to ${maxCodeLength} characters of letters, digits and _ . : / -, starting with a letter or digit`,
    );
  return code;
}

/**
 * The code of a route without one of its own: the method and the route pattern's segments joined
 * by dots, lower case, parameters without their colon (`POST /loans/:id/repay` →
 * `post.loans.id.repay`, `GET /` → `get.root`, a wildcard `*` → `any`). HEAD is GET's code, so an
 * automatic HEAD route shares its GET route's rules.
 */
export function routeCode(method: string | readonly string[], pattern: string): string {
  const methods = (typeof method === "string" ? [method] : [...method]).map((m) => (m.toUpperCase() === "HEAD" ? "get" : m.toLowerCase()));
  const parts = [[...new Set(methods)].join("-")];
  for (const segment of pattern.split("/")) {
    if (segment === "") continue;
    const cleaned = segment
      .replace(/\(.*\)/g, "") // a parameter's regular expression: /:id(^\d+$)
      .replace(/^\*$/, "any")
      .replace(/[:*?]/g, "")
      .toLowerCase()
      .replace(/[^a-z0-9_-]+/g, "_")
      .replace(/^[_-]+|[_-]+$/g, "");
    if (cleaned !== "") parts.push(cleaned);
  }
  if (parts.length === 1) parts.push("root");
  return fit(parts.join("."));
}

/** A path segment that is an id, not a name: a number, a UUID, or a long token with digits in it. */
export const idSegment = /^(\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(?=[^/]*\d)[A-Za-z0-9_-]{16,})$/i;

/**
 * The code of a request where only its path is known (node:http, express app-level, auto mode):
 * the path's id segments become `id` (`GET /loans/123` → `get.loans.id`, as `GET /loans/:id`
 * would give), the rest as `routeCode`. Results are cached; past `maxCodes` distinct codes every
 * new path maps to `<method>.other`, so a path full of free text cannot grow the tables without end.
 */
export class PathCodes {
  static readonly maxCodes = 1000;
  private static readonly maxCached = 10_000;
  private readonly cache = new Map<string, Map<string, string>>();
  /** Each code given out, with the path pattern it stands for (`/loans/:id`). */
  private readonly patterns = new Map<string, string>();
  private cached = 0;

  code(method: string, path: string): string {
    let byPath = this.cache.get(method);
    if (byPath === undefined) {
      byPath = new Map();
      this.cache.set(method, byPath);
    }
    let code = byPath.get(path);
    if (code === undefined) {
      code = this.derive(method, path);
      if (this.cached >= PathCodes.maxCached) {
        for (const m of this.cache.values()) m.clear();
        this.cached = 0;
      }
      byPath.set(path, code);
      this.cached++;
    }
    return code;
  }

  /** The path pattern a code stands for. */
  pattern(code: string): string | undefined {
    return this.patterns.get(code);
  }

  private derive(method: string, path: string): string {
    let pattern = "";
    for (const segment of path.split("/")) if (segment !== "") pattern += `/${idSegment.test(safeDecode(segment)) ? ":id" : segment}`;
    const code = routeCode(method, pattern);
    if (this.patterns.has(code)) return code;
    if (this.patterns.size >= PathCodes.maxCodes) return routeCode(method, "/other");
    this.patterns.set(code, pattern || "/");
    return code;
  }
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Long codes keep their start and a hash of the whole, so two long routes stay apart. */
function fit(code: string): string {
  if (code.length <= maxCodeLength) return code;
  let h = 2166136261;
  for (let i = 0; i < code.length; i++) h = Math.imul(h ^ code.charCodeAt(i), 16777619);
  return `${code.slice(0, maxCodeLength - 9)}.${(h >>> 0).toString(16).padStart(8, "0")}`;
}
