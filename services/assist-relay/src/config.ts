import ipaddr from "ipaddr.js";
import { z } from "zod";

/** assist-relay's own environment variables (beside the platform's). */
export const assistEnv = {
  /** Origins whose pages may embed the widget, comma separated (e.g. "https://ops.bank.example"). */
  ASSIST_ALLOWED_ORIGINS: z.string().default(""),
  /** How long a connection key can be redeemed. */
  ASSIST_KEY_TTL_SECONDS: z.coerce.number().int().min(10).max(3600).default(300),
  /** Wrong keys tried against one session's key before it is burned. */
  ASSIST_KEY_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(5),
  /** Failed key redemptions one API key may make per window before 429. */
  ASSIST_CLIENT_MAX_FAILURES: z.coerce.number().int().min(1).default(10),
  /** Failed key redemptions from one client address (all API keys together) per window before 429. */
  ASSIST_ADDRESS_MAX_FAILURES: z.coerce.number().int().min(1).default(50),
  ASSIST_CLIENT_FAILURE_WINDOW_SECONDS: z.coerce.number().int().min(1).default(900),
  /**
   * Proxies (the Ingress controller, a load balancer) whose `X-Forwarded-For` names the client, as comma
   * separated CIDRs ("10.0.0.0/8,127.0.0.1/32"). Empty: the header is ignored and the peer is the client.
   */
  TRUSTED_PROXIES: z
    .string()
    .default("")
    .refine(
      (list) =>
        list
          .split(",")
          .map((c) => c.trim())
          .filter(Boolean)
          .every((c) => ipaddr.isValidCIDR(c)),
      "a comma separated list of CIDRs, like 10.0.0.0/8,127.0.0.1/32",
    ),
  /** Sessions opened, and reports filed, without signing in: per client address and per minute (each). */
  ASSIST_PUBLIC_PER_ADDRESS_PER_MINUTE: z.coerce.number().int().min(1).default(20),
  /** The same for all addresses together (each). */
  ASSIST_PUBLIC_GLOBAL_PER_MINUTE: z.coerce.number().int().min(1).default(600),
  /** Developers one session admits: each redeems the key (or a renewed one) while it is valid; one controls at a time. */
  ASSIST_MAX_DEVELOPERS: z.coerce.number().int().min(1).max(50).default(5),
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
    .default(2 * 1024 * 1024),
  /** CSS selector of inputs whose values may leave the browser; every other input is masked. */
  ASSIST_UNMASKED_INPUT_SELECTOR: z.string().default(".assist-unmask"),
  /**
   * Paths of the page's API calls whose request and response bodies are captured, comma separated picomatch
   * patterns (e.g. "/api/orders/**,/api/status"); the bodies of every other call are never read. Empty: none.
   */
  ASSIST_NETWORK_BODY_URLS: z.string().default(""),
  /** Captured bodies are cut to this size (after masking). */
  ASSIST_NETWORK_BODY_MAX_BYTES: z.coerce.number().int().min(0).max(1_048_576).default(4096),
  /**
   * Names whose values are masked wherever the sanitiser meets them (case-insensitive regular expression, found
   * anywhere in the name unless anchored with ^ and $): JSON keys in bodies and console lines, form fields, URL query parameters, and inputs
   * (which then stay masked even when allow-listed).
   */
  /** The old name of ASSIST_MASKED_KEYS: refused, so an upgrade that still sets it does not fall back to the defaults unnoticed. */
  ASSIST_MASKED_BODY_KEYS: z
    .string()
    .optional()
    .refine((v) => !v, "was renamed: set ASSIST_MASKED_KEYS (a case-insensitive regular expression of names) instead"),
  ASSIST_MASKED_KEYS: z
    .string()
    .default(
      "pass(word|wd)?|pwd|^pin$|pin_?code|cvv|cvc|card|passport|ssn|acct|account_?(no|num)|security_?code|session_?id|ticket|^sign$|api_?key|id_?no|id_?number|id_?card|cert|token|secret|otp|mobile|phone|^tel$|e_?mail|name$|^xm$|sfzh|zjhm|sjhm?|yhkh|authorization|cookie",
    )
    .refine((source) => {
      try {
        new RegExp(source, "i");
        return true;
      } catch {
        return false;
      }
    }, "not a valid regular expression"),
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
