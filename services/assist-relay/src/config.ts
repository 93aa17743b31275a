import { z } from "zod";

/** assist-relay's own environment variables (beside the platform's). */
export const assistEnv = {
  /** Origins whose pages may embed the widget, comma separated (e.g. "https://ops.bank.example"). */
  ASSIST_ALLOWED_ORIGINS: z.string().default(""),
  /** How long a connection key can be redeemed. */
  ASSIST_KEY_TTL_SECONDS: z.coerce.number().int().min(10).max(3600).default(300),
  /** Wrong keys tried against one session's key before it is burned. */
  ASSIST_KEY_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(5),
  /** Failed key redemptions one client (principal or IP) may make per window before 429. */
  ASSIST_CLIENT_MAX_FAILURES: z.coerce.number().int().min(1).default(10),
  ASSIST_CLIENT_FAILURE_WINDOW_SECONDS: z.coerce.number().int().min(1).default(900),
  /** Life of the single-use tickets the developer's browser and the operator's page open their WebSockets with. */
  ASSIST_TICKET_TTL_SECONDS: z.coerce.number().int().min(5).max(600).default(60),
  /**
   * Every socket is pinged this often and dropped when it has not answered the previous ping; the replica
   * holding a session's widget socket vouches for it this often (a dead replica's sessions are free
   * again after three times this). A page whose connection broke can reconnect within about twice this.
   */
  ASSIST_HEARTBEAT_SECONDS: z.coerce.number().int().min(1).max(300).default(15),
  /** Largest WebSocket message accepted (a full snapshot of a big page can be several MB). */
  ASSIST_MAX_MESSAGE_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(8 * 1024 * 1024),
  /** Messages per second a socket may send (token bucket; bursts up to twice this). */
  ASSIST_MAX_MESSAGES_PER_SECOND: z.coerce.number().int().min(1).default(100),
  /** Largest problem report (JSON with base64 attachments). */
  ASSIST_REPORT_BODY_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(8 * 1024 * 1024),
  /** CSS selector of inputs whose values may leave the browser; every other input is masked. */
  ASSIST_UNMASKED_INPUT_SELECTOR: z.string().default(".assist-unmask"),
  /** Request and response bodies captured from the page's API calls are cut to this size. */
  ASSIST_NETWORK_BODY_MAX_BYTES: z.coerce.number().int().min(0).max(1_048_576).default(4096),
  /** JSON keys whose values are masked in captured bodies (case-insensitive regular expression). */
  ASSIST_MASKED_BODY_KEYS: z.string().default("password|passwd|pin|cvv|card|idno|id_?number|cert|token|secret"),
  /** Recordings (and ended sessions' details) are deleted after this many hours. */
  ASSIST_RECORDING_RETENTION_HOURS: z.coerce.number().min(1).default(720),
  /** Sessions still open after this many hours are ended by the sweep. */
  ASSIST_SESSION_MAX_HOURS: z.coerce.number().min(0.01).default(8),
  /**
   * Sessions whose widget has sent nothing (no frame, no connection) for this many seconds are ended
   * (ended by "idle"), recorded and announced like an operator ending them. 0 disables.
   */
  ASSIST_IDLE_TIMEOUT_SECONDS: z.coerce.number().int().min(0).default(1800),
  /** Prefix of every Redis key and channel the relay uses (fan-out channels, key-failure counters). */
  ASSIST_REDIS_PREFIX: z.string().default("assist:"),
  ASSIST_SWEEP_INTERVAL_SECONDS: z.coerce.number().int().min(1).default(300),
};

export type AssistEnv = typeof assistEnv;

export function parseOrigins(list: string): Set<string> {
  return new Set(
    list
      .split(",")
      .map((o) => o.trim().replace(/\/$/, ""))
      .filter(Boolean),
  );
}
