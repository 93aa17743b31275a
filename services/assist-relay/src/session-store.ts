import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { Bus } from "@opsplane/bus";
import { AssistSessionEndedSchema, AssistSessionOpenedSchema, toEventData, topics } from "@opsplane/contracts";
import { type Auditor, conflict, forbidden, notFound, type Principal } from "@opsplane/platform";
import { type Pool, type Queryable, withTransaction } from "@opsplane/store";
import { newConnectionKey, newToken, parseConnectionKey, secretMatches, tokenHash } from "./keys.js";

export interface SessionRow {
  id: string;
  status: "waiting" | "active" | "ended";
  origin: string;
  page_url: string;
  developer: string | null;
  report_id: string | null;
  opened_at: Date;
  connected_at: Date | null;
  ended_at: Date | null;
  ended_by: string | null;
}

export interface SessionStoreOptions {
  keyTtlSeconds: number;
  /** Developers one session admits (`ASSIST_MAX_DEVELOPERS`). */
  maxDevelopers: number;
  keyMaxAttempts: number;
  ticketTtlSeconds: number;
}

/** Why a key redemption failed, for the caller and the refusal record. */
export class KeyRefused extends Error {
  constructor(
    readonly reason: "malformed" | "unknown" | "expired" | "full" | "burned" | "wrong",
    message: string,
    readonly sessionId?: string,
    /** This refusal used up the key's last attempt: the operator is told to get a new key. */
    readonly blockedNow = false,
  ) {
    super(message);
  }
}

/** Who ended a session: the operator, the maximum session age (`expired`) or the idle timeout (`idle`). */
export type EndedBy = "operator" | "expired" | "idle";

const sessionColumns = "id, status, origin, page_url, developer, report_id, opened_at, connected_at, ended_at, ended_by";

/** Assist sessions, their connection keys, socket tickets and widget socket bindings, watches, control grants and refusals. */
export class SessionStore {
  constructor(
    readonly pool: Pool,
    private readonly bus: Bus,
    private readonly audit: Auditor,
    private readonly opts: SessionStoreOptions,
  ) {}

  async open(origin: string, pageUrl: string, requestId: string) {
    const id = randomUUID();
    const widget = newToken();
    return withTransaction(this.pool, async (tx) => {
      await tx.query("INSERT INTO sessions (id, origin, page_url, widget_token_hash) VALUES ($1, $2, $3, $4)", [
        id,
        origin,
        pageUrl,
        widget.hash,
      ]);
      const key = await this.insertKey(tx, id);
      await this.audit.record(tx, {
        principal: undefined,
        action: "session.open",
        target: `session/${id}`,
        after: { origin, pageUrl },
        requestId,
      });
      const event = create(AssistSessionOpenedSchema, { sessionId: id, origin, pageUrl });
      await this.bus.publish(
        {
          topic: topics.assistSessionOpened.name,
          type: topics.assistSessionOpened.type,
          key: id,
          data: toEventData(topics.assistSessionOpened, event),
        },
        { tx },
      );
      return { sessionId: id, widgetToken: widget.token, ...key };
    });
  }

  /** A fresh key for a session still waiting for its developer (the old one stops working). */
  async renewKey(sessionId: string, requestId: string) {
    return withTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<{ status: string }>("SELECT status FROM sessions WHERE id = $1 FOR UPDATE", [sessionId]);
      // Also while developers watch: a new key admits another developer.
      if (!rows[0] || rows[0].status === "ended") throw conflict("the session has ended; a new key cannot connect anyone");
      await tx.query("UPDATE connection_keys SET state = 'replaced' WHERE session_id = $1 AND state = 'pending'", [sessionId]);
      const key = await this.insertKey(tx, sessionId);
      const after = { keyExpiresAt: key.keyExpiresAt };
      await this.audit.record(tx, { principal: undefined, action: "session.key-renew", target: `session/${sessionId}`, after, requestId });
      return key;
    });
  }

  private async insertKey(tx: Queryable, sessionId: string) {
    // The 4-character lookup may collide with a key still stored: draw again.
    for (let attempt = 0; ; attempt++) {
      const key = newConnectionKey();
      const { rowCount } = await tx.query(
        `INSERT INTO connection_keys (lookup, session_id, secret_hash, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4)) ON CONFLICT (lookup) DO NOTHING`,
        [key.lookup, sessionId, key.secretHash, this.opts.keyTtlSeconds],
      );
      if (rowCount === 1) {
        const { rows } = await tx.query<{ expires_at: Date }>("SELECT expires_at FROM connection_keys WHERE lookup = $1", [key.lookup]);
        return { key: key.display, keyExpiresAt: rows[0]!.expires_at.toISOString() };
      }
      if (attempt > 20) throw new Error("could not draw a free connection key");
    }
  }

  /** The session a widget token belongs to, if it is still open. */
  async widgetSession(sessionId: string, widgetToken: string): Promise<SessionRow> {
    const { rows } = await this.pool.query<SessionRow & { widget_token_hash: string }>(
      `SELECT ${sessionColumns}, widget_token_hash FROM sessions WHERE id = $1`,
      [sessionId],
    );
    const row = rows[0];
    if (!row || row.widget_token_hash !== tokenHash(widgetToken)) throw forbidden("unknown session or wrong session token");
    if (row.status === "ended") throw conflict("the session has ended");
    return row;
  }

  /**
   * Redeems a key for `developer`: single use, before expiry, with a limited
   * number of wrong attempts per key. Returns the session it opens.
   */
  async redeem(typed: string, developer: Principal, requestId: string): Promise<{ sessionId: string }> {
    const parsed = parseConnectionKey(typed);
    if (!parsed) throw new KeyRefused("malformed", "a connection key has 12 letters and digits, like ABCD-EFGH-JKMN");
    const actor = `${developer.kind}:${developer.id}`;
    const outcome = await withTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<{
        session_id: string;
        secret_hash: Buffer;
        expired: boolean;
        failed_attempts: number;
        state: string;
      }>(
        `SELECT session_id, secret_hash, expires_at <= now() AS expired, failed_attempts, state
         FROM connection_keys WHERE lookup = $1 FOR UPDATE`,
        [parsed.lookup],
      );
      const key = rows[0];
      if (!key) return new KeyRefused("unknown", "unknown connection key");
      // Compare first, so a guess learns nothing about the key's state.
      const matches = secretMatches(parsed.secret, key.secret_hash);
      if (key.state === "burned")
        return new KeyRefused(
          "burned",
          "this connection key was blocked after too many wrong attempts; ask the operator for a new one",
          key.session_id,
        );
      if (!matches) {
        const failed = key.failed_attempts + 1;
        const burned = failed >= this.opts.keyMaxAttempts;
        await tx.query(
          "UPDATE connection_keys SET failed_attempts = $2, state = CASE WHEN $3 THEN 'burned' ELSE state END WHERE lookup = $1",
          [parsed.lookup, failed, burned && key.state === "pending"],
        );
        return new KeyRefused("wrong", "wrong connection key", key.session_id, burned && key.state === "pending");
      }
      // 'used' is a key redeemed before keys admitted several developers; 'replaced' one the operator renewed.
      if (key.state !== "pending" || key.expired)
        return new KeyRefused("expired", "this connection key has expired; ask the operator for a new one", key.session_id);
      // While valid, the key admits each developer who has it (up to the limit); a developer who has it again re-joins.
      const admitted = await tx.query<{ developer: string }>("SELECT developer FROM session_developers WHERE session_id = $1 FOR UPDATE", [
        key.session_id,
      ]);
      const again = admitted.rows.some((r) => r.developer === actor);
      if (!again && admitted.rows.length >= this.opts.maxDevelopers)
        return new KeyRefused("full", `this session already has ${this.opts.maxDevelopers} developers, the most it admits`, key.session_id);
      const { rowCount } = await tx.query(
        `UPDATE sessions SET status = 'active', developer = COALESCE(developer, $2), connected_at = COALESCE(connected_at, now())
         WHERE id = $1 AND status <> 'ended'`,
        [key.session_id, actor],
      );
      if (rowCount !== 1) return new KeyRefused("expired", "this session has ended", key.session_id);
      if (!again) await tx.query("INSERT INTO session_developers (session_id, developer) VALUES ($1, $2)", [key.session_id, actor]);
      await this.audit.record(tx, {
        principal: developer,
        action: "session.connect",
        target: `session/${key.session_id}`,
        after: { again },
        requestId,
      });
      return { sessionId: key.session_id };
    });
    if (outcome instanceof KeyRefused) throw outcome;
    return outcome;
  }

  /** A single-use ticket for the session's own developer to open the developer WebSocket. */
  async issueTicket(
    sessionId: string,
    developer: Principal,
    requestId: string,
  ): Promise<{ ticket: string; expiresAt: string; developer: string }> {
    if (developer.kind !== "key") throw forbidden("only a developer signed in with an API key may watch a session");
    const actor = `key:${developer.id}`;
    const session = await this.get(sessionId);
    if (session.status === "ended") throw conflict("the session has ended");
    if (!(await this.joined(sessionId, actor))) throw forbidden("you have not joined this session; enter the operator's key to connect");
    const t = newToken();
    return withTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<{ expires_at: Date }>(
        `INSERT INTO developer_tickets (ticket_hash, session_id, developer, role, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING expires_at`,
        [t.hash, sessionId, actor, developer.role, this.opts.ticketTtlSeconds],
      );
      const expiresAt = rows[0]!.expires_at.toISOString();
      await this.audit.record(tx, {
        principal: developer,
        action: "session.ticket",
        target: `session/${sessionId}`,
        after: { expiresAt },
        requestId,
      });
      return { ticket: t.token, expiresAt, developer: actor };
    });
  }

  /** Whether `developer` (`key:<id>`) has entered the session's key: the operator let them watch. */
  async joined(sessionId: string, developer: string): Promise<boolean> {
    const { rowCount } = await this.pool.query("SELECT 1 FROM session_developers WHERE session_id = $1 AND developer = $2", [
      sessionId,
      developer,
    ]);
    return rowCount === 1;
  }

  /** Uses up a ticket; undefined when unknown, used or expired. */
  async takeTicket(ticket: string): Promise<{ sessionId: string; developer: string; role: string } | undefined> {
    const { rows } = await this.pool.query<{ session_id: string; developer: string; role: string }>(
      `UPDATE developer_tickets t SET used_at = now() FROM sessions s
       WHERE t.ticket_hash = $1 AND t.used_at IS NULL AND t.expires_at > now() AND s.id = t.session_id AND s.status <> 'ended'
       RETURNING t.session_id, t.developer, t.role`,
      [tokenHash(ticket)],
    );
    return rows[0] ? { sessionId: rows[0].session_id, developer: rows[0].developer, role: rows[0].role } : undefined;
  }

  /** A single-use ticket for the session's page to open its WebSocket (so the session token never travels in a URL). */
  async issueWidgetTicket(sessionId: string, requestId: string): Promise<{ ticket: string; expiresAt: string }> {
    const t = newToken();
    return withTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<{ expires_at: Date }>(
        `INSERT INTO widget_tickets (ticket_hash, session_id, expires_at)
         VALUES ($1, $2, now() + make_interval(secs => $3)) RETURNING expires_at`,
        [t.hash, sessionId, this.opts.ticketTtlSeconds],
      );
      const expiresAt = rows[0]!.expires_at.toISOString();
      const entry = {
        principal: undefined,
        action: "session.widget-ticket",
        target: `session/${sessionId}`,
        after: { expiresAt },
        requestId,
      };
      await this.audit.record(tx, entry);
      return { ticket: t.token, expiresAt };
    });
  }

  /** Uses up a widget ticket; the session it opens, or undefined when unknown, used, expired or its session ended. */
  async takeWidgetTicket(ticket: string): Promise<string | undefined> {
    const { rows } = await this.pool.query<{ session_id: string }>(
      `UPDATE widget_tickets t SET used_at = now() FROM sessions s
       WHERE t.ticket_hash = $1 AND t.used_at IS NULL AND t.expires_at > now() AND s.id = t.session_id AND s.status <> 'ended'
       RETURNING t.session_id`,
      [tokenHash(ticket)],
    );
    return rows[0]?.session_id;
  }

  /** Makes `holder` the session's one widget socket until `leaseSeconds` from now; false while another socket holds it. */
  async bindWidgetSocket(sessionId: string, holder: string, leaseSeconds: number): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `UPDATE sessions SET widget_socket = $2, widget_socket_until = now() + make_interval(secs => $3)
       WHERE id = $1 AND status <> 'ended' AND (widget_socket IS NULL OR widget_socket_until < now())`,
      [sessionId, holder, leaseSeconds],
    );
    return rowCount === 1;
  }

  /** Extends the bindings of these sockets (one statement for every widget socket a replica holds). */
  async renewWidgetSockets(holders: readonly string[], leaseSeconds: number): Promise<void> {
    if (holders.length === 0) return;
    await this.pool.query(
      "UPDATE sessions SET widget_socket_until = now() + make_interval(secs => $2) WHERE widget_socket = ANY($1::text[])",
      [holders, leaseSeconds],
    );
  }

  /** Frees the sessions of these sockets at once (a replica shutting down), so the pages reconnect to another replica straight away. */
  async releaseWidgetSockets(holders: readonly string[]): Promise<void> {
    if (holders.length === 0) return;
    await this.pool.query("UPDATE sessions SET widget_socket = NULL, widget_socket_until = NULL WHERE widget_socket = ANY($1::text[])", [
      holders,
    ]);
  }

  async unbindWidgetSocket(sessionId: string, holder: string): Promise<void> {
    await this.pool.query("UPDATE sessions SET widget_socket = NULL, widget_socket_until = NULL WHERE id = $1 AND widget_socket = $2", [
      sessionId,
      holder,
    ]);
  }

  async get(sessionId: string): Promise<SessionRow> {
    const { rows } = await this.pool.query<SessionRow>(`SELECT ${sessionColumns} FROM sessions WHERE id = $1`, [sessionId]);
    if (!rows[0]) throw notFound(`no session ${sessionId}`);
    return rows[0];
  }

  async list(status: string | undefined, limit: number): Promise<SessionRow[]> {
    const { rows } = await this.pool.query<SessionRow>(
      `SELECT ${sessionColumns} FROM sessions WHERE ($1::text IS NULL OR status = $1) ORDER BY opened_at DESC LIMIT $2`,
      [status ?? null, limit],
    );
    return rows;
  }

  async startWatch(sessionId: string, developer: string): Promise<number> {
    const { rows } = await this.pool.query<{ id: string }>("INSERT INTO watches (session_id, developer) VALUES ($1, $2) RETURNING id", [
      sessionId,
      developer,
    ]);
    return Number(rows[0]!.id);
  }

  async endWatch(watchId: number): Promise<void> {
    await this.pool.query("UPDATE watches SET ended_at = now() WHERE id = $1 AND ended_at IS NULL", [watchId]);
  }

  async grantControl(sessionId: string, developer: string): Promise<void> {
    await withTransaction(this.pool, async (tx) => {
      await tx.query("INSERT INTO control_grants (session_id, developer) VALUES ($1, $2)", [sessionId, developer]);
      await this.audit.record(tx, { principal: undefined, action: "control.grant", target: `session/${sessionId}`, after: { developer } });
    });
  }

  /** Ends any open grant; the developer who held it, or undefined when there was none. */
  async revokeControl(
    sessionId: string,
    by: "operator" | "developer" | "developer-left" | "session-ended" | "page-reconnected",
  ): Promise<string | undefined> {
    return withTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<{ developer: string }>(
        "UPDATE control_grants SET revoked_at = now(), revoked_by = $2 WHERE session_id = $1 AND revoked_at IS NULL RETURNING developer",
        [sessionId, by],
      );
      if (rows[0])
        await this.audit.record(tx, {
          principal: undefined,
          action: "control.revoke",
          target: `session/${sessionId}`,
          after: { developer: rows[0].developer, by },
        });
      return rows[0]?.developer;
    });
  }

  async linkReport(sessionId: string, reportId: string, tx: Queryable): Promise<void> {
    await tx.query("UPDATE sessions SET report_id = $2 WHERE id = $1", [sessionId, reportId]);
  }

  /** Ends the session once; publishes who watched and who held control. False when it had already ended. */
  async end(sessionId: string, by: EndedBy): Promise<boolean> {
    return withTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<SessionRow>(
        `UPDATE sessions SET status = 'ended', ended_at = now(), ended_by = $2 WHERE id = $1 AND status <> 'ended' RETURNING ${sessionColumns}`,
        [sessionId, by],
      );
      const session = rows[0];
      if (!session) return false;
      await tx.query("UPDATE watches SET ended_at = now() WHERE session_id = $1 AND ended_at IS NULL", [sessionId]);
      await tx.query(
        "UPDATE control_grants SET revoked_at = now(), revoked_by = 'session-ended' WHERE session_id = $1 AND revoked_at IS NULL",
        [sessionId],
      );
      await tx.query("UPDATE connection_keys SET state = 'replaced' WHERE session_id = $1 AND state = 'pending'", [sessionId]);
      const summary = await tx.query<{ watched: string; holders: string[] }>(
        `SELECT COALESCE((SELECT sum(extract(epoch FROM ended_at - started_at)) FROM watches WHERE session_id = $1), 0)::bigint AS watched,
                COALESCE((SELECT array_agg(DISTINCT developer) FROM control_grants WHERE session_id = $1), '{}') AS holders`,
        [sessionId],
      );
      const durationSeconds = BigInt(Math.round((session.ended_at!.getTime() - session.opened_at.getTime()) / 1000));
      const event = create(AssistSessionEndedSchema, {
        sessionId,
        developer: session.developer ?? "",
        durationSeconds,
        watchedSeconds: BigInt(summary.rows[0]!.watched),
        controlHolders: summary.rows[0]!.holders,
        endedBy: by,
      });
      await this.audit.record(tx, { principal: undefined, action: "session.end", target: `session/${sessionId}`, after: { by } });
      await this.bus.publish(
        {
          topic: topics.assistSessionEnded.name,
          type: topics.assistSessionEnded.type,
          key: sessionId,
          data: toEventData(topics.assistSessionEnded, event),
        },
        { tx },
      );
      return true;
    });
  }

  async refusal(sessionId: string | undefined, actor: string, reason: string, detail = ""): Promise<void> {
    await this.pool.query("INSERT INTO refusals (session_id, actor, reason, detail) VALUES ($1, $2, $3, $4)", [
      sessionId ?? null,
      actor,
      reason,
      detail.slice(0, 500),
    ]);
  }

  async refusals(sessionId: string) {
    const { rows } = await this.pool.query<{ actor: string; reason: string; detail: string; at: Date }>(
      "SELECT actor, reason, detail, at FROM refusals WHERE session_id = $1 ORDER BY id",
      [sessionId],
    );
    return rows;
  }

  /** Watches and control grants: who watched the session, when, for how long, and who held control. */
  async auditTrail(sessionId: string) {
    const watches = await this.pool.query<{ developer: string; started_at: Date; ended_at: Date | null }>(
      "SELECT developer, started_at, ended_at FROM watches WHERE session_id = $1 ORDER BY id",
      [sessionId],
    );
    const grants = await this.pool.query<{ developer: string; granted_at: Date; revoked_at: Date | null; revoked_by: string | null }>(
      "SELECT developer, granted_at, revoked_at, revoked_by FROM control_grants WHERE session_id = $1 ORDER BY id",
      [sessionId],
    );
    return { watches: watches.rows, controlGrants: grants.rows };
  }

  /** Ends sessions open too long; returns their ids. */
  async expireStale(maxHours: number): Promise<string[]> {
    const { rows } = await this.pool.query<{ id: string }>(
      "SELECT id FROM sessions WHERE status <> 'ended' AND opened_at < now() - make_interval(secs => $1)",
      [maxHours * 3600],
    );
    const ended: string[] = [];
    for (const { id } of rows) if (await this.end(id, "expired")) ended.push(id);
    return ended;
  }

  /** Marks the widgets of these sessions as heard from now (one statement for every session a replica holds). */
  async touchWidgets(sessionIds: readonly string[]): Promise<void> {
    if (sessionIds.length === 0) return;
    await this.pool.query("UPDATE sessions SET last_widget_at = now() WHERE id = ANY($1::uuid[]) AND status <> 'ended'", [sessionIds]);
  }

  /** Ends the open sessions whose widget has not been heard from for `idleSeconds`; returns their ids. */
  async endIdle(idleSeconds: number): Promise<string[]> {
    const { rows } = await this.pool.query<{ id: string }>(
      "SELECT id FROM sessions WHERE status <> 'ended' AND last_widget_at < now() - make_interval(secs => $1)",
      [idleSeconds],
    );
    const ended: string[] = [];
    // Replicas sweep concurrently; `end` ends a session once, so only one of them announces it.
    for (const { id } of rows) if (await this.end(id, "idle")) ended.push(id);
    return ended;
  }

  /** Deletes recordings, tickets and keys older than the retention; returns how many recording events went. */
  async sweepRetention(retentionHours: number): Promise<number> {
    const secs = retentionHours * 3600;
    const { rowCount } = await this.pool.query("DELETE FROM recording_events WHERE received_at < now() - make_interval(secs => $1)", [
      secs,
    ]);
    await this.pool.query("DELETE FROM developer_tickets WHERE expires_at < now() - interval '1 hour'");
    await this.pool.query("DELETE FROM widget_tickets WHERE expires_at < now() - interval '1 hour'");
    await this.pool.query("DELETE FROM connection_keys WHERE expires_at < now() - make_interval(secs => $1)", [Math.min(secs, 86400)]);
    await this.pool.query("DELETE FROM refusals WHERE at < now() - make_interval(secs => $1)", [secs]);
    return rowCount ?? 0;
  }
}
