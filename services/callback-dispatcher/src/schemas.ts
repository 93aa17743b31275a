import { type Static, Type } from "@sinclair/typebox";
import { AsyncDeliveryBody } from "./async-delivery-config.js";

export const NameParam = Type.String({ pattern: "^[a-z0-9][a-z0-9_.-]{0,62}$", description: "lower-case letters, digits, _ . -" });
export const envNamePattern = "^[a-z][a-z0-9-]{0,31}$";
export const EnvName = Type.String({ pattern: envNamePattern });

const Extractor = Type.Object(
  {
    kind: Type.Union([
      Type.Literal("json"),
      Type.Literal("query"),
      Type.Literal("form"),
      Type.Literal("header"),
      Type.Literal("xml"),
      Type.Literal("script"),
    ]),
    expr: Type.String({ minLength: 1, maxLength: 16_384 }),
    from: Type.Optional(Type.Union([Type.Literal("request"), Type.Literal("response")])),
  },
  { additionalProperties: false },
);

const Headers = Type.Record(Type.String(), Type.String({ maxLength: 8192 }));

/** An HTTP method as a request line carries it (the dry run's over Connect is checked against it too). */
export const httpMethod = /^[A-Za-z]{1,16}$/;

const Sample = Type.Object(
  {
    method: Type.Optional(Type.String({ pattern: httpMethod.source })),
    path: Type.String({ pattern: "^/", maxLength: 2048 }),
    query: Type.Optional(Type.String({ maxLength: 8192 })),
    headers: Type.Optional(Headers),
    body: Type.Optional(Type.String({ maxLength: 262_144 })),
    response: Type.Optional(
      Type.Object(
        {
          status: Type.Optional(Type.Integer({ minimum: 100, maximum: 599 })),
          headers: Type.Optional(Headers),
          body: Type.Optional(Type.String({ maxLength: 262_144 })),
        },
        { additionalProperties: false },
      ),
    ),
    expectId: Type.String({ minLength: 1, maxLength: 256 }),
  },
  { additionalProperties: false },
);

/** Longest a rule may hold a callback waiting for its registration: well inside third parties' callback timeouts (5 s and more). */
export const maxHoldMs = 3_000;

const Pattern = Type.String({ pattern: "^/", maxLength: 1024 });
const Method = Type.String({ pattern: httpMethod.source });

/** A rule as operators write it; the name comes from the URL. */
export const RuleBody = Type.Object(
  {
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    enabled: Type.Optional(Type.Boolean()),
    interface: Type.Object(
      {
        pattern: Pattern,
        method: Type.Optional(Method),
        host: Type.Optional(Type.String({ pattern: "^[A-Za-z0-9.-]{1,253}$" })),
        id: Extractor,
        sample: Type.Optional(Sample),
      },
      { additionalProperties: false },
    ),
    callback: Type.Object(
      {
        pattern: Pattern,
        method: Type.Optional(Method),
        id: Extractor,
        sample: Type.Optional(Sample),
        /** Largest body (decoded) the callback extractor reads; default 64 KiB, at most CALLBACK_EXTRACT_LIMIT_BYTES. */
        extractLimitBytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 16_777_216 })),
      },
      { additionalProperties: false },
    ),
    ttlSeconds: Type.Integer({ minimum: 1, maximum: 90 * 24 * 3600 }),
    holdMs: Type.Optional(Type.Integer({ minimum: 0, maximum: maxHoldMs })),
  },
  { additionalProperties: false },
);
export type RuleBody = Static<typeof RuleBody>;

export const EnvironmentBody = Type.Object(
  {
    baseUrl: Type.String({ pattern: "^https?://", maxLength: 2048 }),
    production: Type.Optional(Type.Boolean()),
    /** With `production: true`: the production environment this one replaces, in one step (it becomes a test environment). */
    replacesProduction: Type.Optional(Type.String({ pattern: envNamePattern })),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    /** Ids this test environment may claim, by rule name or "*"; omitted or empty: any id. */
    idPatterns: Type.Optional(
      // propertyNames, not a key pattern: fastify's Ajv would silently drop keys that miss the pattern.
      Type.Record(Type.String(), Type.String({ minLength: 1, maxLength: 512 }), {
        maxProperties: 100,
        propertyNames: { pattern: "^(\\*|[a-z0-9][a-z0-9_.-]{0,62})$" },
      }),
    ),
    /** Answer third parties from a template and deliver in the background; omitted: the stored setting stays; `{}`: off. */
    asyncDelivery: Type.Optional(AsyncDeliveryBody),
  },
  { additionalProperties: false },
);
export type EnvironmentBody = Static<typeof EnvironmentBody>;

export const RegistrationsBody = Type.Object(
  {
    env: EnvName,
    registrations: Type.Array(
      Type.Object({ rule: NameParam, id: Type.String({ minLength: 1, maxLength: 256 }) }, { additionalProperties: false }),
      { minItems: 1, maxItems: 5000 },
    ),
  },
  { additionalProperties: false },
);
export type RegistrationsBody = Static<typeof RegistrationsBody>;

export const DryRunBody = Type.Object(
  {
    method: Type.String({ pattern: httpMethod.source }),
    path: Type.String({ pattern: "^/", maxLength: 8192 }),
    headers: Type.Optional(Headers),
    body: Type.Optional(Type.String({ maxLength: 1_048_576 })),
  },
  { additionalProperties: false },
);
export type DryRunBody = Static<typeof DryRunBody>;

export const DecisionsQuery = Type.Object(
  {
    rule: Type.Optional(Type.String({ maxLength: 64 })),
    objectId: Type.Optional(Type.String({ maxLength: 256 })),
    target: Type.Optional(Type.String({ maxLength: 32 })),
    reason: Type.Optional(Type.String({ maxLength: 64 })),
    requestId: Type.Optional(Type.String({ maxLength: 256 })),
    from: Type.Optional(Type.String({ maxLength: 64 })),
    to: Type.Optional(Type.String({ maxLength: 64 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    pageToken: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);

// Any number: one past PostgreSQL's bigint names no decision (404), as an unknown one does.
export const DecisionIdParam = Type.Object({ id: Type.String({ pattern: "^[0-9]+$" }) });

export const ReplayBody = Type.Object(
  {
    /** Environment to send it to; omitted: where it was routed (production only when named). */
    env: Type.Optional(EnvName),
  },
  { additionalProperties: false },
);
export type ReplayBody = Static<typeof ReplayBody>;
export type DecisionsQuery = Static<typeof DecisionsQuery>;
