import { AppError, badRequest } from "@opsplane/platform";
import { RE2JS } from "re2js";

/**
 * Which ids a test environment may claim: by rule name, or `*` for the rules
 * without their own entry; each a regular expression (RE2 syntax, linear-time
 * matching whatever the pattern) that the whole id must match. Empty: any id.
 */
export type IdPatterns = Record<string, string>;

export interface ClaimRefusal {
  rule: string;
  id: string;
  reason: string;
}

/** Tells why `id` may not be registered under `rule`, or undefined when it may. */
export type ClaimCheck = (rule: string, id: string) => string | undefined;

function compile(key: string, pattern: string): RE2JS {
  try {
    return RE2JS.compile(pattern);
  } catch (err) {
    throw badRequest(`idPatterns["${key}"] is not a regular expression: ${(err as Error).message}`, { field: `idPatterns.${key}` });
  }
}

/** Throws 400 naming the first pattern that does not compile. */
export function checkIdPatterns(patterns: IdPatterns): void {
  for (const [key, pattern] of Object.entries(patterns)) compile(key, pattern);
}

/** Compiled once per rule-set version, so registering a batch costs one match per id. */
export function compileClaimCheck(env: string, patterns: IdPatterns): ClaimCheck {
  const keys = Object.keys(patterns);
  if (!keys.length) return () => undefined;
  const byKey = new Map(keys.map((k) => [k, compile(k, patterns[k]!)]));
  const fallback = byKey.get("*");
  return (rule, id) => {
    const own = byKey.get(rule);
    const re = own ?? fallback;
    if (!re) return `environment "${env}" has no id pattern for rule ${rule} (nor "*")`;
    if (re.matches(id)) return undefined;
    return `does not match ${own ? `rule ${rule}'s` : "the"} pattern ${re.pattern()} of environment "${env}"`;
  };
}

/** The 403 for a batch with unclaimable ids: nothing of it is stored, and `details.refused` lists them. */
export function claimRefused(env: string, refused: ClaimRefusal[], total: number): AppError {
  return new AppError(
    403,
    "id_not_claimable",
    `environment "${env}" may not claim ${refused.length} of these ${total} ids; nothing was registered`,
    { refused },
  );
}
