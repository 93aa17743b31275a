import { z } from "zod";

/** Variables every service reads. A service adds its own with {@link loadConfig}'s `extra`. */
export const baseEnv = {
  HOST: z.string().default("0.0.0.0"),
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL"),
  DATABASE_POOL_MAX: z.coerce.number().int().min(1).max(200).default(10),
  /** How long a request waits for a database connection (a new one, or a free one from a busy pool) before it gets 503. */
  DATABASE_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).default(5_000),
  /** A query unanswered this long on an open connection (a partition, a frozen server) fails as an outage. */
  DATABASE_QUERY_TIMEOUT_MS: z.coerce.number().int().min(100).default(30_000),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, "must be a redis:// URL")
    .optional(),
  BUS: z.enum(["postgres", "kafka"]).default("postgres"),
  KAFKA_BROKERS: z.string().optional(),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  /** `id:role:sha256hex` entries, comma separated (see `npx opsplane-key`). */
  AUTH_API_KEYS: z.string().default(""),
  /** `appId:sha256hex` entries, comma separated. */
  AUTH_APP_CREDENTIALS: z.string().default(""),
  BODY_LIMIT_BYTES: z.coerce.number().int().min(1024).default(1_048_576),
  /**
   * How long a client may take to send a whole request, headers and body (a 408 past it, the connection
   * closed): a caller trickling a body a byte at a time must not hold a connection and its buffers for ever.
   */
  REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1_000).max(3_600_000).default(120_000),
  /** How long SIGTERM may take before the process exits anyway. */
  SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(100).default(10_000),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().url().optional(),
  /** Refusals of one caller, action and target beyond the first are counted, not recorded one by one, within this window. */
  AUDIT_DENIAL_WINDOW_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60),
};

export type ConfigShape = z.ZodRawShape;
export type BaseConfig = z.infer<z.ZodObject<typeof baseEnv>> & { PORT: number };
export type Config<E extends ConfigShape> = BaseConfig & z.infer<z.ZodObject<E>>;

export class ConfigError extends Error {}

/**
 * Reads and validates the environment. The first bad or missing variable is
 * reported in one line that names it, e.g.
 * `invalid environment variable PORT: expected a number (got "eighty")`.
 */
export function loadConfig<E extends ConfigShape>(defaultPort: number, extra: E, env: NodeJS.ProcessEnv = process.env): Config<E> {
  const schema = z
    .object({ PORT: z.coerce.number().int().min(0).max(65535).default(defaultPort), ...baseEnv, ...extra })
    .superRefine((c, ctx) => {
      const { BUS, KAFKA_BROKERS } = c as { BUS?: string; KAFKA_BROKERS?: string };
      if (BUS === "kafka" && !KAFKA_BROKERS) ctx.addIssue({ code: "custom", path: ["KAFKA_BROKERS"], message: "required when BUS=kafka" });
    });
  // Empty strings mean "unset", as they do in most container env files.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = schema.safeParse(present);
  if (parsed.success) return parsed.data as unknown as Config<E>;
  const issue = parsed.error.issues[0]!;
  const name = String(issue.path[0] ?? "?");
  const given = present[name];
  if (given === undefined) throw new ConfigError(`missing environment variable ${name}: ${issue.message}`);
  const shown = /SECRET|PASSWORD|KEY|TOKEN|CREDENTIAL|URL/.test(name) ? "<redacted>" : JSON.stringify(given);
  throw new ConfigError(`invalid environment variable ${name}: ${issue.message} (got ${shown})`);
}
