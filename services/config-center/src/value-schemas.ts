import { badRequest } from "@opsplane/platform";
import { Ajv, type ErrorObject, type Options, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import { RE2JS } from "re2js";
import type { ItemKind } from "./identifiers.js";

const code = { type: "string", minLength: 1, maxLength: 64 };
const name = { type: "string", minLength: 1, maxLength: 256 };

/**
 * Business parameter categories (seed module 2022) and the schema a value of each must satisfy
 * unless the parameter carries its own. "custom" has none.
 */
export const businessCategories: Record<string, object | undefined> = {
  "decision-model": { type: "object" },
  dictionary: {
    type: "array",
    items: {
      type: "object",
      required: ["code", "name"],
      properties: { code, name, sort: { type: "integer" }, enabled: { type: "boolean" } },
    },
  },
  "tree-dictionary": {
    $defs: {
      node: {
        type: "object",
        required: ["code", "name"],
        properties: { code, name, children: { type: "array", items: { $ref: "#/$defs/node" } } },
      },
    },
    type: "array",
    items: { $ref: "#/$defs/node" },
  },
  "bank-codes": {
    type: "array",
    items: { type: "object", required: ["code", "name"], properties: { code: { type: "string", pattern: "^[0-9]{12}$" }, name } },
  },
  "card-bin": {
    type: "array",
    items: {
      type: "object",
      required: ["bin", "bank", "cardType"],
      properties: {
        bin: { type: "string", pattern: "^[0-9]{6,10}$" },
        bank: name,
        cardType: { enum: ["debit", "credit", "prepaid", "semi-credit"] },
        length: { type: "integer", minimum: 12, maximum: 19 },
      },
    },
  },
  channel: { type: "object" },
  "phone-segment": {
    type: "array",
    items: {
      type: "object",
      required: ["segment", "carrier"],
      properties: { segment: { type: "string", pattern: "^1[0-9]{2,6}$" }, carrier: name, province: name, city: name },
    },
  },
  division: {
    $defs: {
      node: {
        type: "object",
        required: ["code", "name"],
        properties: {
          code: { type: "string", pattern: "^[0-9]{6}([0-9]{6})?$" },
          name,
          children: { type: "array", items: { $ref: "#/$defs/node" } },
        },
      },
    },
    type: "array",
    items: { $ref: "#/$defs/node" },
  },
  custom: undefined,
};

export const technicalCategories = ["database", "file-server", "middleware", "service", "other"];

const enabled = { type: "boolean" };

/**
 * A baffle's response headers, held to what the SDK (Node) can send: a name that is an RFC 9110
 * token and not one Node derives from the body, a value without control characters other than
 * tab (no CR, LF or NUL: no header injection), nor characters beyond Latin-1. Anything else
 * would make every instance of the app fail the call at `writeHead`.
 */
const baffleHeaders = {
  type: "object",
  maxProperties: 64,
  propertyNames: {
    pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
    not: { pattern: "^(?i)(content-length|transfer-encoding|connection)$" },
  },
  additionalProperties: { type: "string", maxLength: 8192, pattern: "^[\\t\\x20-\\x7e\\x80-\\xff]*$" },
};

/**
 * Governance rule types (seed module 2026, paragraph 0064). A rule's key is `<type>/<interface or
 * queue code>`; its value must satisfy the type's schema (rules carry no schema of their own).
 */
export const governanceSchemas: Record<string, object> = {
  // The global switch of an interface or queue, and switches by live parameter, caller or provider.
  route: {
    type: "object",
    required: ["enabled"],
    additionalProperties: false,
    properties: {
      enabled,
      conditions: {
        type: "array",
        maxItems: 100,
        items: {
          type: "object",
          required: ["by", "values", "enabled"],
          additionalProperties: false,
          properties: {
            by: { enum: ["param", "caller", "provider"] },
            // The live parameter's name when `by` is "param".
            name: { type: "string", minLength: 1, maxLength: 128 },
            values: { type: "array", minItems: 1, maxItems: 1000, items: { type: "string", maxLength: 256 } },
            enabled,
          },
          if: { properties: { by: { const: "param" } } },
          // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then, not a thenable
          then: { required: ["name"] },
        },
      },
    },
  },
  // Test baffle: the interface answers from this mock instead of its handler.
  baffle: {
    type: "object",
    required: ["enabled", "response"],
    additionalProperties: false,
    properties: {
      enabled,
      response: {
        type: "object",
        additionalProperties: false,
        properties: {
          status: { type: "integer", minimum: 100, maximum: 599 },
          headers: baffleHeaders,
          body: {},
        },
      },
      delayMs: { type: "integer", minimum: 0, maximum: 60_000 },
      // A QuickJS script computing the response from the request, run by the SDK's sandbox.
      script: { type: "string", maxLength: 16_384 },
    },
  },
  "rate-limit": {
    type: "object",
    additionalProperties: false,
    anyOf: [{ required: ["tps"] }, { required: ["concurrency"] }],
    properties: {
      enabled,
      tps: { type: "number", exclusiveMinimum: 0, maximum: 1_000_000 },
      concurrency: { type: "integer", minimum: 1, maximum: 100_000 },
    },
  },
  "circuit-breaker": {
    type: "object",
    required: ["openMs"],
    additionalProperties: false,
    anyOf: [{ required: ["errorCount"] }, { required: ["errorRatio"] }, { required: ["timeoutMs"] }],
    properties: {
      enabled,
      // A call slower than this counts as a failure.
      timeoutMs: { type: "integer", minimum: 1, maximum: 600_000 },
      errorCount: { type: "integer", minimum: 1 },
      errorRatio: { type: "number", exclusiveMinimum: 0, maximum: 1 },
      // Calls needed in the window before the ratio counts.
      minRequests: { type: "integer", minimum: 1 },
      windowMs: { type: "integer", minimum: 100, maximum: 3_600_000 },
      // How long the breaker stays open before letting a trial call through.
      openMs: { type: "integer", minimum: 100, maximum: 3_600_000 },
    },
  },
};

/** A `pattern` or `patternProperties` key RE2 cannot compile (lookarounds, backreferences). */
class UnsupportedPattern extends Error {
  constructor(
    readonly pattern: string,
    cause: Error,
  ) {
    super(cause.message);
  }
}

/**
 * Schemas come from operators, so their patterns run on RE2: linear time whatever the pattern,
 * where JavaScript's backtracking engine takes exponential time on `^(a+)+$` (ReDoS). RE2 is
 * Unicode-aware without ajv's "u" flag.
 */
const re2: NonNullable<NonNullable<Options["code"]>["regExp"]> = Object.assign(
  (pattern: string) => {
    try {
      return RE2JS.compile(pattern);
    } catch (err) {
      throw new UnsupportedPattern(pattern, err as Error);
    }
  },
  { code: 'require("re2js").RE2JS.compile' },
);

/** The JSON Pointer of the first `pattern` or `patternProperties` key in `schema` that is `pattern`. */
function patternPath(schema: unknown, pattern: string, at = ""): string | undefined {
  if (typeof schema !== "object" || schema === null) return undefined;
  const s = schema as Record<string, unknown>;
  if (s.pattern === pattern && !Array.isArray(schema)) return `${at}/pattern`;
  const props = s.patternProperties;
  if (typeof props === "object" && props !== null && pattern in props) return `${at}/patternProperties`;
  for (const [k, v] of Object.entries(s)) {
    const found = patternPath(v, pattern, `${at}/${k.replaceAll("~", "~0").replaceAll("/", "~1")}`);
    if (found) return found;
  }
  return undefined;
}

const unrunnable = (schema: unknown, err: UnsupportedPattern) =>
  badRequest(
    `schema ${patternPath(schema, err.pattern) ?? "/"}: ${JSON.stringify(err.pattern)} is not a pattern config-center can run (RE2 syntax, without lookarounds or backreferences): ${err.message}`,
  );

/** Every `pattern` and `patternProperties` key in a schema (not inside values: `const`, `enum`, `default`, `examples`). */
function patternsOf(schema: unknown): string[] {
  if (typeof schema !== "object" || schema === null) return [];
  const s = schema as Record<string, unknown>;
  const own = [
    ...(typeof s.pattern === "string" && !Array.isArray(schema) ? [s.pattern] : []),
    ...(typeof s.patternProperties === "object" && s.patternProperties !== null ? Object.keys(s.patternProperties) : []),
  ];
  const values = new Set(["const", "enum", "default", "examples"]);
  return [...own, ...Object.entries(s).flatMap(([k, v]) => (values.has(k) ? [] : patternsOf(v)))];
}

/**
 * Validates values against JSON Schemas (ajv). Compiled validators are cached by the schema's
 * text, so a parameter's schema compiles once however often its value changes.
 */
export class ValueSchemas {
  // strictSchema: a keyword ajv does not know (`maxLenght`) or an unknown format is refused, not silently ignored.
  private readonly ajv = new Ajv({ allErrors: false, strict: false, strictSchema: true, validateFormats: true, code: { regExp: re2 } });
  private readonly compiled = new Map<string, ValidateFunction>();

  constructor() {
    addFormats.default(this.ajv);
  }

  /** Refuses a schema ajv cannot compile, naming the problem. */
  checkSchema(schema: unknown): void {
    if (typeof schema !== "object" || schema === null || Array.isArray(schema)) throw badRequest("schema must be a JSON Schema object");
    // ajv skips compiling a pattern whose sub-schema accepts anything (`{}`): compile every one here.
    for (const pattern of patternsOf(schema)) {
      try {
        re2(pattern, "");
      } catch (err) {
        if (err instanceof UnsupportedPattern) throw unrunnable(schema, err);
        throw err;
      }
    }
    this.compile(schema as object);
  }

  /** The schema an item's value must satisfy: its own, else its category's; governance rules only their type's. */
  schemaFor(kind: ItemKind, category: string, own: object | null | undefined): object | undefined {
    if (kind === "governance") return governanceSchemas[category];
    return own ?? (kind === "business" ? businessCategories[category] : undefined);
  }

  /**
   * Throws 400 naming the first place where `value` breaks `schema`. With `entryPlace`, the value
   * is an imported list and the entry is named as the file shows it (its line, its position).
   */
  validate(value: unknown, schema: object | undefined, what: string, entryPlace?: (index: number) => string): void {
    if (!schema) return;
    const check = this.compile(schema);
    if (!check(value))
      throw badRequest(`${what} does not match its schema: ${describe(check.errors?.[0], entryPlace)}`, {
        errors: check.errors?.slice(0, 10),
      });
  }

  private compile(schema: object): ValidateFunction {
    const text = JSON.stringify(schema);
    let fn = this.compiled.get(text);
    if (!fn) {
      try {
        fn = this.ajv.compile(schema);
      } catch (err) {
        if (err instanceof UnsupportedPattern) throw unrunnable(schema, err);
        throw badRequest(`schema is not a valid JSON Schema: ${(err as Error).message}`);
      }
      if (this.compiled.size >= 10_000) this.compiled.delete(this.compiled.keys().next().value!);
      this.compiled.set(text, fn);
    }
    return fn;
  }
}

function describe(e: ErrorObject | undefined, entryPlace?: (index: number) => string): string {
  if (!e) return "invalid";
  const entry = entryPlace && /^\/(\d+)(\/.*)?$/.exec(e.instancePath);
  const at = entry ? `${entryPlace(Number(entry[1]))}: ${entry[2] ?? "/"}` : e.instancePath || "/";
  // A `propertyNames` failure is reported at the object: name the property that broke it.
  if (e.propertyName !== undefined)
    return `${at} property name ${JSON.stringify(e.propertyName)} ${e.keyword === "not" ? "is not allowed" : (e.message ?? "is invalid")}`;
  return `${at} ${e.message ?? "is invalid"}${e.params && "allowedValues" in e.params ? ` (${(e.params.allowedValues as unknown[]).join(", ")})` : ""}`;
}
