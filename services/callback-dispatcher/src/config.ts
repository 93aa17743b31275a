import { z } from "zod";
import { parseAgentBindings } from "./agent-bindings.js";
import { parseUrlAllowList } from "./environment-url-policy.js";
import { defaultViaPseudonym } from "./via.js";

/** The dispatcher's own environment variables (beside the platform's). */
export const dispatcherEnv = {
  /**
   * Which test environment each agent's app credentials act for, `appId:env` entries (comma or
   * newline separated). An app credential not listed here may not fetch rules or register.
   */
  AGENT_ENVIRONMENTS: z
    .string()
    .default("")
    .transform((value, ctx) => {
      const parsed = parseAgentBindings(value);
      if (typeof parsed === "string") {
        ctx.issues.push({ code: "custom", message: parsed, input: value });
        return z.NEVER;
      }
      return parsed;
    }),
  /**
   * Hosts and networks environment base URLs may point to: host names (`*.test.example.com` for its
   * subdomains), addresses and CIDR ranges, comma or space separated. Empty: any host. Link-local and
   * cloud metadata addresses are refused either way, also when a name resolves to them.
   */
  ENVIRONMENT_URL_ALLOW: z
    .string()
    .default("")
    .transform((value, ctx) => {
      const parsed = parseUrlAllowList(value);
      if (typeof parsed === "string") {
        ctx.issues.push({ code: "custom", message: parsed, input: value });
        return z.NEVER;
      }
      return parsed;
    }),
  /**
   * The name this dispatcher gives itself in the `Via` header of what it forwards; a callback arriving
   * with it is one it forwarded already (a loop), answered 508. Dispatchers forwarding to one another
   * need different names.
   */
  VIA_PSEUDONYM: z
    .string()
    .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/, "must be an HTTP token (letters, digits, -._~ and the like), at most 64 characters")
    .default(defaultViaPseudonym),
  /** Key prefix of registrations in Redis. */
  REDIS_KEY_PREFIX: z.string().default("callback-dispatcher:"),
  /** How long an upstream may take to answer (headers, then each body chunk) before the callback gets 504. */
  UPSTREAM_TIMEOUT_MS: z.coerce.number().int().min(100).max(300_000).default(10_000),
  /** Keep-alive connections per environment. */
  UPSTREAM_CONNECTIONS: z.coerce.number().int().min(1).max(1024).default(64),
  /** Bytes of a callback body read for id extraction; larger bodies stream to production unread. */
  CALLBACK_EXTRACT_LIMIT_BYTES: z.coerce.number().int().min(1024).default(1_048_576),
  /** How often each replica checks the rule-set version for changes made elsewhere. */
  RULES_POLL_MS: z.coerce.number().int().min(50).default(2_000),
  /** How often decisions are written to PostgreSQL (and published) in one batch; small batches keep each flush's pause on the event loop short. */
  DECISION_FLUSH_MS: z.coerce.number().int().min(10).default(50),
  /**
   * Which decisions are also published as `callback.dispatched`: "notable" (routed to a test
   * environment, failed upstream, or sent to production for a reason other than "not ours"),
   * "all", or "none". Every decision is recorded in the decisions table either way.
   */
  DISPATCH_EVENTS: z.enum(["notable", "all", "none"]).default("notable"),
  /** Decisions held in memory while PostgreSQL is slow; past this they are dropped and counted. */
  DECISION_QUEUE_MAX: z.coerce.number().int().min(100).default(100_000),
  /** Recorded decisions older than this many days are deleted. */
  DECISION_RETENTION_DAYS: z.coerce.number().min(1).max(3650).default(14),
  /** Callbacks' bytes and headers (for showing and replaying them) are deleted after this many days. */
  CALLBACK_RETENTION_DAYS: z.coerce.number().min(0.01).max(3650).default(7),
  /** Largest callback body kept for replay; larger bodies are recorded without it. 0 keeps no callbacks at all. */
  CALLBACK_STORE_MAX_BYTES: z.coerce.number().int().min(0).max(10_485_760).default(65_536),
  /** Most callback body bytes waiting in memory to be written; past it decisions are recorded without their callback. */
  CALLBACK_QUEUE_MAX_BYTES: z.coerce.number().int().min(65_536).default(67_108_864),
  /** How often the retention sweep runs (one replica at a time, under an advisory lock). */
  DECISION_SWEEP_MS: z.coerce.number().int().min(100).default(3_600_000),
  /** How long a registry call to Redis may take before PostgreSQL answers instead (lookup) or Redis catches up later (registration). */
  REGISTRY_REDIS_TIMEOUT_MS: z.coerce.number().int().min(5).max(10_000).default(50),
  /**
   * How long a registry lookup from the PostgreSQL record may take (Redis cold, or not answering),
   * waiting for a pool connection included; past it the callback is routed as `registry_unavailable`.
   */
  REGISTRY_RECORD_TIMEOUT_MS: z.coerce.number().int().min(20).max(10_000).default(2_000),
  /** How often each replica checks that Redis holds the warm marker (and retries a failed warm from PostgreSQL). */
  REGISTRY_WARM_CHECK_MS: z.coerce.number().int().min(50).default(1_000),
  /** Without Redis: most registrations kept in memory (oldest evicted first). */
  REGISTRY_MEMORY_MAX: z.coerce.number().int().min(100).default(1_000_000),
  /** How often each replica records itself (and its registry) in PostgreSQL and looks for the others; three missed beats and a replica counts as gone. */
  REPLICA_HEARTBEAT_MS: z.coerce.number().int().min(50).max(60_000).default(5_000),
  /** While callbacks are held for a rule's `holdMs`, how often the registry is polled for registrations received by other replicas. */
  HOLD_POLL_MS: z.coerce.number().int().min(5).max(1_000).default(25),
  /** Most callbacks held at once; past it an unregistered callback is routed at once (and its decision says so). */
  HOLD_MAX_CALLBACKS: z.coerce.number().int().min(0).default(1_000),
  /** Asynchronous environments: deliveries in flight at once on each replica. */
  ASYNC_DELIVERY_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(8),
  /**
   * Deliveries of one environment in flight at once, across the replicas (default: half of
   * ASYNC_DELIVERY_CONCURRENCY, rounded up), so one that never answers leaves room for the others.
   */
  ASYNC_DELIVERY_PER_ENVIRONMENT: z.coerce.number().int().min(1).max(256).optional(),
  /** How often each replica looks for due deliveries (a callback queued on this replica is claimed at once). */
  ASYNC_DELIVERY_POLL_MS: z.coerce.number().int().min(20).max(60_000).default(1_000),
  /**
   * How long a claimed delivery belongs to its replica; an attempt is abandoned after half of it, and a
   * replica that dies mid-attempt leaves the delivery to the others once it ends.
   */
  ASYNC_DELIVERY_LEASE_MS: z.coerce.number().int().min(1_000).max(3_600_000).default(60_000),
  /** Dead letters not re-driven are deleted after this many days (delivered ones with their decisions). */
  DEAD_LETTER_RETENTION_DAYS: z.coerce.number().min(0.01).max(3650).default(30),
  /** Limits of one extraction script call. */
  SCRIPT_TIME_LIMIT_MS: z.coerce.number().int().min(1).max(10_000).default(50),
  SCRIPT_MEMORY_LIMIT_BYTES: z.coerce.number().int().min(1_048_576).default(16_777_216),
  /**
   * Longest a callback waits for the sandbox's worker to start its script call (busy with the calls
   * before it, e.g. a flood of callbacks running a script to its time limit); past it the callback is
   * `script_unavailable` (503, retried by the platform) instead of waiting out the flood.
   */
  SCRIPT_WAIT_LIMIT_MS: z.coerce.number().int().min(10).max(60_000).default(1_000),
};
