import { compileExtractor, type Extractor, type ScriptCompiler } from "./extractors.js";
import { antMatcher } from "./pattern.js";
import type { HttpExchange, RuleSpec, SampleSpec } from "./types.js";

/** A rule ready for the hot path: matchers and extractors built once per rule version. */
export interface CompiledRule {
  spec: RuleSpec;
  name: string;
  ttlSeconds: number;
  /** How long an unregistered callback may wait for its registration (0: not held). */
  holdMs: number;
  matchesInterface(method: string, host: string | undefined, path: string): boolean;
  /** Whether the interface-A id comes from the response (figure 4) rather than the request (figure 3). */
  interfaceIdFromResponse: boolean;
  interfaceId: Extractor;
  matchesCallback(method: string, path: string): boolean;
  callbackId: Extractor;
}

/** Thrown when a rule cannot be saved: names the field and the problem. */
export class RuleInvalidError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/**
 * Compiles a rule; throws RuleInvalidError naming the part that does not compile.
 * Agents compile only the interface side (`only: "interface"`): the callback side
 * is the dispatcher's business and may use scripts the agent never needs.
 */
export function compileRule(spec: RuleSpec, compileScript?: ScriptCompiler, only?: "interface"): CompiledRule {
  const interfacePath = attempt("interface.pattern", () => antMatcher(spec.interface.pattern));
  const callbackPath = attempt("callback.pattern", () => antMatcher(spec.callback.pattern));
  const interfaceMethod = spec.interface.method?.toUpperCase();
  const callbackMethod = spec.callback.method?.toUpperCase();
  const host = spec.interface.host?.toLowerCase();
  return {
    spec,
    name: spec.name,
    ttlSeconds: spec.ttlSeconds,
    holdMs: spec.holdMs ?? 0,
    matchesInterface: (method, reqHost, path) =>
      (!interfaceMethod || interfaceMethod === method) && (!host || host === stripPort(reqHost)) && interfacePath(path),
    interfaceIdFromResponse: spec.interface.id.from === "response",
    interfaceId: attempt("interface.id", () => compileExtractor(spec.interface.id, compileScript)),
    matchesCallback: (method, path) => (!callbackMethod || callbackMethod === method) && callbackPath(path),
    callbackId:
      only === "interface"
        ? () => {
            throw new Error("callback extraction happens in the dispatcher");
          }
        : attempt("callback.id", () => compileExtractor(spec.callback.id, compileScript)),
  };
}

/**
 * Compiles the rule and runs each side's sample through its extractor. Script
 * extractors must carry a sample, since compiling alone says little about them.
 */
export async function validateRule(spec: RuleSpec, compileScript?: ScriptCompiler): Promise<CompiledRule> {
  const rule = compileRule(spec, compileScript);
  if (spec.callback.id.from === "response") throw new RuleInvalidError("callback.id.from", "a callback id can only come from the request");
  await checkSample("interface", spec.interface.sample, spec.interface.id.kind === "script", rule.interfaceId, (s) =>
    rule.matchesInterface((s.method ?? "POST").toUpperCase(), spec.interface.host, s.path),
  );
  await checkSample("callback", spec.callback.sample, spec.callback.id.kind === "script", rule.callbackId, (s) =>
    rule.matchesCallback((s.method ?? "POST").toUpperCase(), s.path),
  );
  return rule;
}

async function checkSample(
  side: string,
  sample: SampleSpec | undefined,
  required: boolean,
  extract: Extractor,
  matches: (s: SampleSpec) => boolean,
): Promise<void> {
  if (!sample) {
    if (required) throw new RuleInvalidError(`${side}.sample`, "a script extractor needs a sample request to check it against");
    return;
  }
  if (!matches(sample)) throw new RuleInvalidError(`${side}.sample.path`, `"${sample.path}" does not match ${side}.pattern`);
  let got: string;
  try {
    got = await extract(sampleExchange(sample));
  } catch (err) {
    throw new RuleInvalidError(`${side}.sample`, `no id read from the sample: ${(err as Error).message}`);
  }
  if (got !== sample.expectId)
    throw new RuleInvalidError(`${side}.sample`, `read id "${got}" from the sample, expected "${sample.expectId}"`);
}

export function sampleExchange(s: SampleSpec): HttpExchange {
  const lower = (h: Record<string, string> | undefined) =>
    Object.fromEntries(Object.entries(h ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    method: (s.method ?? "POST").toUpperCase(),
    path: s.path,
    query: s.query ?? "",
    headers: lower(s.headers),
    body: Buffer.from(s.body ?? ""),
    ...(s.response
      ? { response: { status: s.response.status ?? 200, headers: lower(s.response.headers), body: Buffer.from(s.response.body ?? "") } }
      : {}),
  };
}

function attempt<T>(field: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new RuleInvalidError(field, (err as Error).message);
  }
}

function stripPort(host: string | undefined): string | undefined {
  return host?.toLowerCase().replace(/:\d+$/, "");
}
