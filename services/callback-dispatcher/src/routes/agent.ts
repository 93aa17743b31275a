import {
  type App,
  type AppError,
  type Auditor,
  actorOf,
  type Logger,
  outageRetryAfterSeconds,
  type Principal,
  unavailable,
} from "@opsplane/platform";
import { storableJson, storableText, withDeadline } from "@opsplane/store";
import { Type } from "@sinclair/typebox";
import { type AgentBindings, isRefusal, testEnvironmentFor } from "../agent-bindings.js";
import { type ClaimRefusal, claimRefused } from "../claims.js";
import type { DispatcherMetrics } from "../metrics.js";
import type { RegistrationHold } from "../registration-hold.js";
import { RecordTimeoutError, type RegistrationInput, type Registry } from "../registry.js";
import type { ReplicaRoster } from "../replica-roster.js";
import type { RuleSetCache, RuleSetSnapshot } from "../rule-set.js";
import { EnvName, RegistrationsBody } from "../schemas.js";

/** What the dispatcher knows about an agent from its last rules fetch (per replica, in memory). */
export interface AgentSeen {
  env: string;
  principal: string;
  rulesVersion: number;
  lastSeen: string;
}

export interface AgentRouteDeps {
  rules: RuleSetCache;
  registry: Registry;
  /** Without Redis beside other replicas this replica is unready, and refuses registrations too. */
  roster: Pick<ReplicaRoster, "conflict">;
  /** REGISTRY_RECORD_TIMEOUT_MS: how long a registration waits for PostgreSQL, to check the rule set and to be written, each. */
  recordTimeoutMs: number;
  hold: RegistrationHold;
  metrics: DispatcherMetrics;
  bindings: AgentBindings;
  audit: Auditor;
  log: Logger;
}

/** The request fields an audit row needs. */
type ActorRequest = { principal?: Principal; id: string };

/** Ids of a batch named in its audit row: enough to recognise it, bounded whatever the batch size. */
const auditSample = 20;

/** One entry of a batch: `id` made storable, `sent` as the agent sent it (refusals name it so, for the agent to recognise its own ids). */
interface BatchEntry {
  rule: string;
  id: string;
  sent: string;
}

/**
 * What a batch comes to under one rule set: the entries to store, with their rules' TTLs, and the rules
 * it names that the rule set does not have. Throws the refusal (403, or 400 for an unknown environment).
 */
function planBatch(
  snapshot: RuleSetSnapshot,
  principal: Principal | undefined,
  env: string,
  entries: BatchEntry[],
  bindings: AgentBindings,
): { known: Array<RegistrationInput & { sent: string }>; ignoredRules: string[] } {
  testEnvironmentFor(principal, env, snapshot, bindings);
  const byName = new Map(snapshot.rules.map((r) => [r.name, r]));
  // An agent may still hold a rule deleted a moment ago: skip those entries rather than refuse the batch (it would retry forever).
  const ignoredRules = [...new Set(entries.filter((r) => !byName.has(r.rule)).map((r) => r.rule))];
  // The same id seen twice in one flush (a retried request) is one registration.
  const known = [...new Map(entries.filter((r) => byName.has(r.rule)).map((r) => [`${r.rule}\u0000${r.id}`, r])).values()];
  const mayClaim = snapshot.claims.get(env)!;
  const refused: ClaimRefusal[] = [];
  for (const r of known) {
    const reason = mayClaim(r.rule, r.id);
    if (reason) refused.push({ rule: r.rule, id: r.sent, reason });
  }
  if (refused.length) throw claimRefused(env, refused, known.length);
  return { known: known.map((r) => ({ ...r, ttlSeconds: byName.get(r.rule)!.ttlSeconds })), ignoredRules };
}

/**
 * The agents' API: their rules (with an ETag on the rule-set version) and
 * their registrations. Agents authenticate with app credentials bound to one
 * test environment (AGENT_ENVIRONMENTS), or with an operator API key; neither
 * can change rules. Every batch registered and every registration refused is audited.
 */
export function registerAgentRoutes(app: App, d: AgentRouteDeps): void {
  const access = { role: "operator" as const, apps: true };
  const seen = new Map<string, AgentSeen>();

  /**
   * Runs `fn`; a refusal (403) is logged and counted before it reaches the caller, and audited when
   * `audit` names the action. Refused rules fetches are not audited: a misconfigured agent asks
   * again every few seconds, and rules are no secret.
   */
  async function recordingRefusals<T>(req: ActorRequest, env: string, audit: string | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!isRefusal(err)) throw err;
      d.log.warn({ audit: true, actor: actorOf(req.principal), env, reason: err.code, reqId: req.id }, err.message);
      d.metrics.registrationRefusals.inc({ reason: err.code });
      if (audit) auditRefusal(req, env, audit, err);
      throw err;
    }
  }

  // Throttled by the kit per caller, action and target: an agent refused on every flush cannot fill the table.
  function auditRefusal(req: ActorRequest, env: string, action: string, err: AppError): void {
    const refused = (err.details as { refused?: ClaimRefusal[] } | undefined)?.refused;
    d.audit.denied({
      principal: req.principal,
      action,
      target: `environment/${env}`,
      after: {
        reason: err.message,
        ...(refused ? { refusedCount: refused.length, refused: storableJson(refused.slice(0, auditSample)) } : {}),
      },
      requestId: req.id,
    });
  }

  app.get(
    "/_dispatcher/v1/agent/rules",
    { config: { access }, schema: { querystring: Type.Object({ env: EnvName }) } },
    async (req, reply) =>
      recordingRefusals(req, req.query.env, undefined, async () => {
        const snapshot = d.rules.current();
        testEnvironmentFor(req.principal, req.query.env, snapshot, d.bindings);
        const who = actorOf(req.principal);
        seen.set(`${req.query.env}|${who}`, {
          env: req.query.env,
          principal: who,
          rulesVersion: snapshot.version,
          lastSeen: new Date().toISOString(),
        });
        const etag = `"${snapshot.version}"`;
        reply.header("etag", etag);
        if (req.headers["if-none-match"] === etag) return reply.code(304).send();
        return { version: snapshot.version, rules: snapshot.specs };
      }),
  );

  app.get("/_dispatcher/v1/agents", async () => ({
    agents: [...seen.values()],
    bindings: [...d.bindings].map(([app, env]) => ({ app, env })),
  }));

  /** This replica's rule set brought up to the stored one, within REGISTRY_RECORD_TIMEOUT_MS, or a 503. */
  async function storedRuleSet(): Promise<void> {
    const ms = d.recordTimeoutMs;
    const stale = (why: string) =>
      unavailable(
        `registrations not stored: this replica's rule set could not be checked against PostgreSQL (${why}); retry later`,
        outageRetryAfterSeconds,
      );
    const upToDate = await withDeadline(d.rules.refresh(), ms, () => stale(`no answer within ${ms} ms (REGISTRY_RECORD_TIMEOUT_MS)`));
    if (!upToDate) throw stale("the read failed");
  }

  // All or nothing: a batch with one id its environment may not claim stores none, and the 403
  // lists the refused ones, so the agent can send the rest again without them.
  // allowUnstorable: ids come from business requests and may hold anything; each is made storable as the
  // callback path looks it up, so one such id neither fails the batch nor routes its callback elsewhere.
  app.post(
    "/_dispatcher/v1/registrations",
    { config: { access, allowUnstorable: true }, schema: { body: RegistrationsBody } },
    async (req) => {
      const env = req.body.env;
      const entries = req.body.registrations.map((r) => ({ rule: r.rule, id: storableText(r.id), sent: r.id }));
      return recordingRefusals(req, env, "registration.create", async () => {
        // Unready beside other replicas (see replica-roster.ts), yet reachable by an agent given its address:
        // what it stored here the replicas with Redis would never see. The agent sends it again elsewhere.
        const conflict = d.registry.kind === "memory" ? d.roster.conflict : undefined;
        if (conflict) throw unavailable(`registrations not stored on this replica: ${conflict}`, outageRetryAfterSeconds);
        // Decided by the stored rule set, not this replica's copy (polled every RULES_POLL_MS): a rule or
        // environment saved on another replica a moment ago is known, and id patterns narrowed there are
        // applied, so a copy not yet reloaded never approves a claim the stored patterns refuse.
        await storedRuleSet();
        const { known, ignoredRules } = planBatch(d.rules.current(), req.principal, env, entries, d.bindings);
        if (known.length) {
          const byRule: Record<string, number> = {};
          for (const r of known) byRule[r.rule] = (byRule[r.rule] ?? 0) + 1;
          await d.registry
            .register(
              { env, registeredBy: actorOf(req.principal), items: known.map(({ rule, id, ttlSeconds }) => ({ rule, id, ttlSeconds })) },
              // One audit row per batch, in the transaction that stores it: agents send thousands of ids a second.
              (tx) =>
                d.audit.record(tx, {
                  principal: req.principal,
                  action: "registration.create",
                  target: `environment/${env}`,
                  after: { count: known.length, byRule, sample: known.slice(0, auditSample).map((r) => `${r.rule}/${r.id}`) },
                  requestId: req.id,
                }),
            )
            .catch((err: unknown) => {
              // PostgreSQL stalled (a lock on `registrations`, a full pool): none of the batch was stored (or, its COMMIT
              // cut off, all of it); the agent sends it again, which stores the same.
              throw err instanceof RecordTimeoutError
                ? unavailable(`registrations not stored: ${err.message}; retry later`, outageRetryAfterSeconds)
                : err;
            });
        }
        // Callbacks held on this replica for these ids go now, not at the next poll.
        for (const r of known) d.hold.registered({ env }, r.rule, r.id);
        d.metrics.registrations.inc({ env }, known.length);
        return { registered: known.length, ignoredRules };
      });
    },
  );
}
