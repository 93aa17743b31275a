import { z } from "zod";

/** config-center's own environment variables (beside the platform's). */
export const configCenterEnv = {
  /** Lifetime of a start-up token; an instance fetches a new one when it restarts. */
  TOKEN_TTL_SECONDS: z.coerce
    .number()
    .int()
    .min(60)
    .max(30 * 86_400)
    .default(86_400),
  /**
   * The environments an app's credentials may act for until an admin lists the app's own
   * (comma separated). Production is left out on purpose: its secrets need an explicit grant.
   */
  DEFAULT_APP_ENVIRONMENTS: z.string().default("dev,test,sit,uat"),
  /** Failed token requests (wrong secret or unknown app) allowed per app id and per client address in one window. */
  TOKEN_FAILURE_LIMIT: z.coerce.number().int().min(1).default(20),
  /** The fixed window those failures are counted in; past the limit, token requests get 429 until it ends. */
  TOKEN_FAILURE_WINDOW_SECONDS: z.coerce.number().int().min(1).max(86_400).default(300),
  /** How often instances send heartbeats (told to them at registration). */
  HEARTBEAT_INTERVAL_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
  /** Silence after which a socket is closed and its instance marked offline. */
  HEARTBEAT_TIMEOUT_MS: z.coerce.number().int().min(300).max(3_600_000).default(30_000),
  /** Heartbeats and acknowledgements are written to PostgreSQL in one batch this often. */
  HEARTBEAT_FLUSH_MS: z.coerce.number().int().min(50).default(5_000),
  /** The scan cycle: changes that arrived within one cycle are merged per key and pushed together. */
  PUSH_CYCLE_MS: z.coerce.number().int().min(10).max(60_000).default(100),
  /** Business values larger than this are not carried by change events; instances fetch them. */
  PUSH_INLINE_MAX_BYTES: z.coerce.number().int().min(0).default(65_536),
  /** Largest value of one parameter or rule (JSON bytes). */
  ITEM_MAX_BYTES: z.coerce.number().int().min(1024).default(4_194_304),
  /** Largest dictionary import request (CSV or JSON); larger ones get 413 before parsing. */
  IMPORT_BODY_LIMIT_BYTES: z.coerce.number().int().min(1024).default(8_388_608),
  /** Most entries in one imported dictionary. */
  IMPORT_MAX_ENTRIES: z.coerce.number().int().min(1).default(200_000),
  /**
   * AES-256-GCM keys sealing resource secrets: `keyId:base64(32 bytes)`, comma separated (mount
   * them from a Kubernetes Secret). The first seals new values unless SECRET_ACTIVE_KEY_ID says
   * otherwise; the others still open what they sealed, so keys can rotate. Without keys, secret
   * fields are refused.
   */
  SECRET_KEYS: z.string().default(""),
  SECRET_ACTIVE_KEY_ID: z.string().optional(),
  /** Key prefix of the business-parameter central cache in Redis. */
  CONFIG_REDIS_PREFIX: z.string().default("config-center:"),
  /** Messages an instance may send per second on its socket; more are refused, a sustained flood closes it. */
  SOCKET_MAX_MESSAGES_PER_SECOND: z.coerce.number().int().min(1).default(20),
  /** Largest message an instance may send on its socket. */
  SOCKET_MAX_MESSAGE_BYTES: z.coerce.number().int().min(256).default(65_536),
  /** Changes older than this many days are pruned from the history (the newest HISTORY_KEEP_MIN of each item stay). */
  HISTORY_RETENTION_DAYS: z.coerce.number().int().min(1).default(180),
  /** Changes of each item kept whatever their age, so rollback and diff reach at least that far back. */
  HISTORY_KEEP_MIN: z.coerce.number().int().min(1).default(50),
  /** How often one replica prunes the history. */
  HISTORY_PRUNE_INTERVAL_SECONDS: z.coerce.number().int().min(1).default(3_600),
  /** Name of this replica in the instances table and its push consumer group; the pod name on Kubernetes. */
  REPLICA_ID: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,100}$/, "letters, digits, . _ - only")
    .optional(),
};

export type ConfigCenterEnv = typeof configCenterEnv;
