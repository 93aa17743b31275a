import { type Static, Type } from "@sinclair/typebox";

/** Request schemas of the REST view; they also describe it in the OpenAPI document. */

const Version = { minimum: 0, maximum: Number.MAX_SAFE_INTEGER };
const Revision = Type.Optional(
  Type.Integer({ ...Version, description: "The revision you read; a stale one is refused with 409 (0: must not exist yet)" }),
);
const Comment = Type.Optional(Type.String({ maxLength: 1024, description: "Why, recorded with the change" }));
const StringMap = (max: number) => Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: max }));

export const TokenBody = Type.Object(
  { appId: Type.String({ maxLength: 64 }), secret: Type.String({ maxLength: 256 }) },
  { additionalProperties: false },
);

export const RegistrationBody = Type.Object(
  {
    env: Type.String({ maxLength: 32, description: "Environment, e.g. prod" }),
    hostName: Type.String({ maxLength: 253 }),
    ip: Type.String({ maxLength: 45 }),
    servicePort: Type.Integer(),
    sdkPort: Type.Optional(Type.Integer({ description: "SDK terminal service port (1818 in the seed)" })),
    startParams: Type.Optional(StringMap(4096)),
    labels: Type.Optional(StringMap(253)),
    podName: Type.Optional(Type.String({ maxLength: 253 })),
    podNamespace: Type.Optional(Type.String({ maxLength: 253 })),
    appVersion: Type.Optional(Type.String({ maxLength: 64 })),
    systemDomain: Type.Optional(Type.String({ maxLength: 128 })),
  },
  { additionalProperties: false },
);

export const InstanceParams = Type.Object({ instanceId: Type.String({ maxLength: 64 }) });
export const BusinessKeysBody = Type.Object(
  { keys: Type.Array(Type.String({ maxLength: 200 }), { minItems: 1, maxItems: 1000 }) },
  { additionalProperties: false },
);

const Reported = Type.Object(
  {
    code: Type.String({ maxLength: 200 }),
    handler: Type.Optional(Type.String({ maxLength: 1024 })),
    params: Type.Optional(Type.Unknown({ description: "JSON Schema of the parameters" })),
    rules: Type.Optional(Type.Unknown({ description: "Validation rules" })),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    method: Type.Optional(Type.String({ maxLength: 16 })),
    path: Type.Optional(Type.String({ maxLength: 1024 })),
    topic: Type.Optional(Type.String({ maxLength: 1024 })),
    cron: Type.Optional(Type.String({ maxLength: 1024 })),
    response: Type.Optional(Type.Unknown({ description: "JSON Schema of the response" })),
  },
  { additionalProperties: false },
);
export const ReportBody = Type.Object(
  {
    interfaces: Type.Optional(Type.Array(Reported, { maxItems: 5000 })),
    queues: Type.Optional(Type.Array(Reported, { maxItems: 5000 })),
    jobs: Type.Optional(Type.Array(Reported, { maxItems: 5000 })),
  },
  { additionalProperties: false },
);

export const AcquireLockBody = Type.Object(
  { name: Type.String({ maxLength: 128 }), holder: Type.String({ maxLength: 200 }), leaseMs: Type.Integer() },
  { additionalProperties: false },
);
export const ReleaseLockBody = Type.Object(
  { name: Type.String({ maxLength: 128 }), fencingToken: Type.Integer() },
  { additionalProperties: false },
);
export const SequenceNameBody = Type.Object({ name: Type.String({ maxLength: 128 }) }, { additionalProperties: false });

export const AppParams = Type.Object({ appId: Type.String({ maxLength: 64 }) });
export const AppBody = Type.Object(
  {
    systemDomain: Type.Optional(Type.String({ maxLength: 128 })),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    enabled: Type.Optional(Type.Boolean({ description: "false refuses the app's tokens and closes its sockets" })),
    secret: Type.Optional(Type.String({ minLength: 8, maxLength: 256, description: "New app credentials" })),
    environments: Type.Optional(
      Type.Array(Type.String({ maxLength: 32 }), {
        maxItems: 64,
        description: "The environments the app's credentials may act for; unset: DEFAULT_APP_ENVIRONMENTS (no production)",
      }),
    ),
    expectRevision: Revision,
  },
  { additionalProperties: false },
);
export const SettingsBody = Type.Object({ admitUnknownApps: Type.Boolean(), expectRevision: Revision }, { additionalProperties: false });
export const InstancesQuery = Type.Object(
  { state: Type.Optional(Type.String({ maxLength: 16 })), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) },
  { additionalProperties: false },
);
export const VersionQuery = Type.Object({ version: Type.Optional(Type.String({ maxLength: 64 })) }, { additionalProperties: false });

/** An item's place: kind, app ("_" shared), env ("_" every environment), and the key (may contain "/"). */
export const ItemParams = Type.Object({
  kind: Type.String({ maxLength: 16 }),
  app: Type.String({ maxLength: 64, description: '"_" for shared items' }),
  env: Type.String({ maxLength: 32, description: '"_" for every environment' }),
  "*": Type.String({ maxLength: 200, description: "the key" }),
});
export type ItemParams = Static<typeof ItemParams>;
export const ImportParams = Type.Object({
  app: ItemParams.properties.app,
  env: ItemParams.properties.env,
  "*": ItemParams.properties["*"],
});

export const ItemsQuery = Type.Object(
  {
    kind: Type.Optional(Type.String({ maxLength: 16 })),
    app: Type.Optional(Type.String({ maxLength: 64, description: '"_" for shared items only' })),
    env: Type.Optional(Type.String({ maxLength: 32, description: '"_" for every-environment items only' })),
    prefix: Type.Optional(Type.String({ maxLength: 200 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
  },
  { additionalProperties: false },
);
export const PutItemBody = Type.Object(
  {
    value: Type.Unknown({ description: "Any JSON; validated by the schema" }),
    schema: Type.Optional(
      Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()], { description: "JSON Schema; null removes it" }),
    ),
    category: Type.Optional(Type.String({ maxLength: 32 })),
    startup: Type.Optional(Type.Boolean({ description: "Business: part of the start-up metadata" })),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    expectRevision: Revision,
    comment: Comment,
  },
  { additionalProperties: false },
);
export const ChangeBody = Type.Object({ expectRevision: Revision, comment: Comment }, { additionalProperties: false });
export const HistoryQuery = Type.Object(
  { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) },
  { additionalProperties: false },
);
export const DiffQuery = Type.Object(
  { from: Type.Integer(Version), to: Type.Optional(Type.Integer({ ...Version, description: "0 or absent: the current value" })) },
  { additionalProperties: false },
);
export const RollbackBody = Type.Object(
  { toVersion: Type.Integer({ minimum: 1 }), expectRevision: Revision, comment: Comment },
  { additionalProperties: false },
);
export const ImportQuery = Type.Object(
  {
    format: Type.Optional(Type.Union([Type.Literal("csv"), Type.Literal("json")])),
    expectRevision: Revision,
    category: Type.Optional(Type.String({ maxLength: 32 })),
    comment: Comment,
  },
  { additionalProperties: false },
);
const Selector = Type.Object(
  {
    labels: Type.Optional(StringMap(253)),
    pods: Type.Optional(Type.Array(Type.String({ maxLength: 507 }), { maxItems: 10_000, description: '"namespace/name"' })),
    instanceIds: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 10_000 })),
  },
  { additionalProperties: false },
);
export const GrayBody = Type.Object(
  { value: Type.Unknown(), selector: Selector, expectRevision: Revision, comment: Comment },
  { additionalProperties: false },
);
export const PreviewQuery = Type.Object(
  {
    app: Type.String({ maxLength: 64 }),
    env: Type.String({ maxLength: 32 }),
    labels: Type.Optional(Type.String({ maxLength: 4096, description: "k=v,k2=v2" })),
    pod: Type.Optional(Type.String({ maxLength: 507, description: "namespace/name" })),
    reveal: Type.Optional(Type.Boolean({ description: "admins: secrets unmasked (audited)" })),
  },
  { additionalProperties: false },
);
export const ChangesQuery = Type.Object(
  { after: Type.Optional(Type.Integer(Version)), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })) },
  { additionalProperties: false },
);

export const ResourcesQuery = Type.Object({ kind: Type.Optional(Type.String({ maxLength: 16 })) }, { additionalProperties: false });
export const ResourceParams = Type.Object({ kind: Type.String({ maxLength: 16 }), name: Type.String({ maxLength: 63 }) });
export const RevealQuery = Type.Object({ reveal: Type.Optional(Type.Boolean()) }, { additionalProperties: false });
export const ResourceBody = Type.Object(
  {
    type: Type.String({ maxLength: 32 }),
    config: Type.Optional(
      Type.Object({}, { additionalProperties: true, description: 'May hold references: {"$ref": "middleware/<name>[#field]"}' }),
    ),
    secrets: Type.Optional(StringMap(65_536)),
    removeSecrets: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 100 })),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    expectRevision: Revision,
    comment: Comment,
  },
  { additionalProperties: false },
);
export const DeleteResourceQuery = Type.Object({ expectRevision: Revision }, { additionalProperties: false });
export const LockNameBody = Type.Object({ name: Type.String({ maxLength: 128 }) }, { additionalProperties: false });
export const LockParams = Type.Object({ name: Type.String({ maxLength: 128 }) });
export const LockBody = Type.Object(
  {
    apps: Type.Array(Type.String({ maxLength: 64 }), {
      maxItems: 1000,
      description: "The apps whose tokens may acquire and release the lock; any other app's get 403",
    }),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    expectRevision: Revision,
  },
  { additionalProperties: false },
);
export const SequenceParams = Type.Object({ name: Type.String({ maxLength: 128 }) });
export const SequenceBody = Type.Object(
  {
    pattern: Type.String({ maxLength: 128, description: "e.g. LN{yyyyMMdd}{seq:6}" }),
    cacheSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    reset: Type.Optional(Type.Union([Type.Literal("never"), Type.Literal("daily"), Type.Literal("monthly")])),
    cycle: Type.Optional(Type.Boolean()),
    min: Type.Optional(Type.Integer(Version)),
    max: Type.Optional(Type.Integer({ ...Version, minimum: 1 })),
    timeZone: Type.Optional(Type.String({ maxLength: 64 })),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    apps: Type.Optional(
      Type.Array(Type.String({ maxLength: 64 }), {
        maxItems: 1000,
        description: "The apps whose tokens may draw numbers; none by default",
      }),
    ),
    expectRevision: Revision,
  },
  { additionalProperties: false },
);
export const AuditQuery = Type.Object(
  { target: Type.Optional(Type.String({ maxLength: 300 })), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) },
  { additionalProperties: false },
);
