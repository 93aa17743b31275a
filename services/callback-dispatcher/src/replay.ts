import { hopByHopHeaders } from "@opsplane/callback-agent/hop-by-hop";
import { type Auditor, actorOf, conflict, notFound, type Principal } from "@opsplane/platform";
import { type Pool, withTransaction } from "@opsplane/store";
import { keptCallback } from "./decision-search.js";
import type { Resender, Resent } from "./resend.js";
import type { RuleSetCache } from "./rule-set.js";

export interface ReplayRequest {
  decisionId: string;
  /** Where to send it; omitted: the environment it was routed to (never production unless named here). */
  env?: string;
  principal: Principal | undefined;
  requestId: string;
}

export interface ReplayResult extends Resent {
  id: string;
  decisionId: string;
  env: string;
}

/** Headers the replay sets itself: its own request id, and which callback it replays. */
const replacedOnReplay = new Set(["x-request-id", "x-replay-of"]);

/**
 * Sends kept callbacks again, byte for byte: the same method, path and query, the end-to-end
 * headers as first forwarded (with the replay's own `X-Request-Id` and `X-Replay-Of: <original
 * request id>`) and the exact body. Each replay is audited before it is sent, so a replay with no
 * audit row cannot happen; its outcome is recorded with it in `callback_replays`.
 */
export function createReplayer(o: { pool: Pool; rules: RuleSetCache; audit: Auditor; resender: Resender }) {
  return {
    async replay(r: ReplayRequest): Promise<ReplayResult> {
      const c = await keptCallback(o.pool, r.decisionId);
      // As the record writes it: "05" names decision 5, and the audit and the answer say 5.
      const decisionId = c.decision.id;
      if (!c.kept) throw conflict(`decision ${decisionId}: its callback is no longer kept (CALLBACK_RETENTION_DAYS) or was never stored`);
      if (c.body === null)
        throw conflict(
          `decision ${decisionId}: its body (${c.bodySize ?? "more than CALLBACK_EXTRACT_LIMIT_BYTES"} bytes) was larger than CALLBACK_STORE_MAX_BYTES and was not kept; it cannot be replayed byte for byte`,
        );
      const snapshot = o.rules.current();
      const envName = r.env ?? c.decision.targetEnv;
      if (!envName) throw conflict(`decision ${decisionId} was routed nowhere (${c.decision.reason}); name the environment to replay to`);
      const env = snapshot.environments.get(envName);
      if (!env)
        throw r.env
          ? notFound(`no environment ${envName}`)
          : conflict(`environment ${envName}, where it was routed, no longer exists; name one`);
      if (env.production && r.env === undefined)
        throw conflict(
          `decision ${decisionId} was routed to production (${envName}); a replay would send production a duplicate callback. Name it ("env": "${envName}") to replay there`,
        );

      const headers: string[] = [];
      for (let i = 0; i + 1 < c.headers.length; i += 2) {
        const name = c.headers[i]!.toLowerCase();
        if (replacedOnReplay.has(name) || hopByHopHeaders.has(name) || name === "host") continue;
        headers.push(c.headers[i]!, c.headers[i + 1]!);
      }
      headers.push("x-request-id", r.requestId, "x-replay-of", c.decision.requestId);

      // Audited and recorded before it is sent: no replay happens without its audit row.
      const id = await withTransaction(o.pool, async (tx) => {
        const { rows } = await tx.query<{ id: string }>(
          "INSERT INTO callback_replays (decision_id, target_env, actor, request_id) VALUES ($1, $2, $3, $4) RETURNING id::text AS id",
          [decisionId, env.name, actorOf(r.principal), r.requestId],
        );
        await o.audit.record(tx, {
          principal: r.principal,
          action: "callback.replay",
          target: `decision/${decisionId}`,
          after: { env: env.name, production: env.production, replay: rows[0]!.id, originalRequestId: c.decision.requestId },
          requestId: r.requestId,
        });
        return rows[0]!.id;
      });
      const sent = await o.resender.send(env.baseUrl, c.method, c.target, headers, c.body);
      await o.pool.query("UPDATE callback_replays SET status = $2, latency_ms = $3, error = $4 WHERE id = $1", [
        id,
        sent.status,
        sent.latencyMs,
        sent.error,
      ]);
      return { id, decisionId, env: env.name, ...sent };
    },
  };
}

export type Replayer = ReturnType<typeof createReplayer>;
