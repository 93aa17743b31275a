import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { type Auditor, badRequest, forbidden, notFound, type Principal, unauthorized } from "@opsplane/platform";
import { type Pool, withTransaction } from "@opsplane/store";
import { type Actor, type ChangeLog, checkExpectedRevision, lockTarget } from "./change-log.js";
import { checkAppId, envPattern } from "./identifiers.js";

export interface AppView {
  appId: string;
  systemDomain: string;
  description: string;
  enabled: boolean;
  /** The environments the app's credentials may act for; null: DEFAULT_APP_ENVIRONMENTS. */
  environments: string[] | null;
  health: "up" | "down" | "unknown";
  lastActiveAt: string;
  onlineInstances: number;
  hasSecret: boolean;
  createdAt: string;
  createdBy: string;
  revision: number;
}

interface AppRow {
  app_id: string;
  system_domain: string;
  description: string;
  enabled: boolean;
  environments: string[] | null;
  secret_hash: Buffer | null;
  last_active_at: Date | null;
  created_at: Date;
  created_by: string;
  revision: number;
  online: number;
  instances: number;
}

/** Why an app was refused a token: the `reason` label of the refusals metric. */
export type RefusalReason = "malformed" | "bad-credentials" | "disabled" | "unknown-app" | "throttled";

export class TokenRefused extends Error {
  constructor(
    readonly reason: RefusalReason,
    readonly error: Error,
  ) {
    super(error.message);
  }
}

const appColumns = `a.app_id, a.system_domain, a.description, a.enabled, a.environments, a.secret_hash, a.last_active_at, a.created_at, a.created_by, a.revision,
  (SELECT count(*) FROM instances i WHERE i.app_id = a.app_id AND i.state = 'online')::int AS online,
  (SELECT count(*) FROM instances i WHERE i.app_id = a.app_id)::int AS instances`;

const sha256 = (s: string) => createHash("sha256").update(s).digest();

/**
 * App records, the admission switch and start-up tokens (seed steps 2 and 5). An app proves itself
 * with its secret: the one stored on its record (set by an admin, or by its first registration),
 * else the one configured in AUTH_APP_CREDENTIALS. An app with neither is admitted only while the
 * global switch admits unknown apps; its first registration then creates its record and keeps the
 * secret it presented; an app known from AUTH_APP_CREDENTIALS gets its record (without a secret)
 * at its first token. Tokens are random, stored hashed, and checked from memory once seen.
 * A token acts only for the environments on its app's record (or, until an admin lists them, the
 * configured defaults, which leave production out): production secrets need a grant.
 */
export class AppStore {
  private readonly tokens = new Map<string, { appId: string; expiresAtMs: number }>();
  private readonly access = new Map<string, { enabled: boolean; environments: string[] }>();

  constructor(
    private readonly pool: Pool,
    private readonly audit: Auditor,
    private readonly changes: ChangeLog,
    private readonly o: { tokenTtlSeconds: number; configuredSecrets: Map<string, Buffer>; defaultEnvironments: string[] },
  ) {}

  async issueToken(appIdIn: unknown, secretIn: unknown, requestId: string): Promise<{ token: string; appId: string; expiresAt: string }> {
    if (typeof appIdIn !== "string" || typeof secretIn !== "string" || !appIdIn || !secretIn)
      throw new TokenRefused("malformed", badRequest("appId and secret are required"));
    let appId: string;
    try {
      appId = checkAppId(appIdIn);
    } catch (err) {
      throw new TokenRefused("malformed", err as Error);
    }
    if (secretIn.length < 8 || secretIn.length > 256) throw new TokenRefused("malformed", badRequest("secret must be 8-256 characters"));
    const given = sha256(secretIn);
    const principal: Principal = { kind: "app", id: appId };
    return withTransaction(this.pool, async (tx) => {
      // A first registration creates the record: two at once must not both keep their secret.
      await lockTarget(tx, `app/${appId}`);
      const app = (await tx.query<AppRow>("SELECT enabled, secret_hash FROM apps WHERE app_id = $1 FOR UPDATE", [appId])).rows[0];
      const known = app?.secret_hash ?? this.o.configuredSecrets.get(appId);
      if (known) {
        if (!timingSafeEqual(known, given)) throw new TokenRefused("bad-credentials", unauthorized(wrongCredentials));
        // Only after the secret: a guesser must not learn which apps exist or are disabled.
        if (app && !app.enabled) throw new TokenRefused("disabled", forbidden(`app ${appId} is disabled`));
        // Known only from AUTH_APP_CREDENTIALS: those prove the app, so its record is created now (whatever the
        // admission switch says) without a secret of its own, so the kit's entry stays the one that counts.
        const created =
          !app &&
          (await tx.query("INSERT INTO apps (app_id, created_by) VALUES ($1, 'credentials') ON CONFLICT DO NOTHING", [appId])).rowCount;
        if (created)
          await this.audit.record(tx, {
            principal,
            action: "app.create",
            target: `app/${appId}`,
            after: { appId, createdBy: "credentials", hasSecret: false },
            requestId,
          });
      } else {
        const { rows } = await tx.query<{ admit: boolean }>("SELECT admit_unknown_apps AS admit FROM settings");
        // The same answer as a wrong secret, so the refusal does not tell which app ids exist.
        if (!rows[0]!.admit) throw new TokenRefused("unknown-app", unauthorized(wrongCredentials));
        if (app && !app.enabled) throw new TokenRefused("disabled", forbidden(`app ${appId} is disabled`));
        // First registration of an unknown app: its record is created and keeps the secret it presented.
        await tx.query(
          `INSERT INTO apps (app_id, secret_hash, created_by) VALUES ($1, $2, 'registration')
           ON CONFLICT (app_id) DO UPDATE SET secret_hash = $2, revision = apps.revision + 1`,
          [appId, given],
        );
        await this.audit.record(tx, {
          principal,
          action: app ? "app.claim" : "app.create",
          target: `app/${appId}`,
          after: { appId, createdBy: "registration", hasSecret: true },
          requestId,
        });
      }
      const token = `cct_${randomBytes(24).toString("base64url")}`;
      const expiresAt = new Date(Date.now() + this.o.tokenTtlSeconds * 1000);
      await tx.query("INSERT INTO app_tokens (token_hash, app_id, expires_at) VALUES ($1, $2, $3)", [sha256(token), appId, expiresAt]);
      await tx.query("DELETE FROM app_tokens WHERE app_id = $1 AND expires_at < now()", [appId]);
      return { token, appId, expiresAt: expiresAt.toISOString() };
    });
  }

  /** The app a token belongs to; 401 for an unknown or expired token, 403 once the app is disabled. */
  async verifyToken(token: string | undefined): Promise<string> {
    if (!token) throw unauthorized("the x-config-token header is required: get a token with IssueToken");
    const hash = sha256(token);
    const key = hash.toString("hex");
    let entry = this.tokens.get(key);
    if (!entry) {
      const row = (
        await this.pool.query<{ app_id: string; expires_at: Date }>("SELECT app_id, expires_at FROM app_tokens WHERE token_hash = $1", [
          hash,
        ])
      ).rows[0];
      if (!row) throw unauthorized("unknown start-up token");
      entry = { appId: row.app_id, expiresAtMs: row.expires_at.getTime() };
      if (this.tokens.size >= 200_000) this.tokens.delete(this.tokens.keys().next().value!);
      this.tokens.set(key, entry);
    }
    if (entry.expiresAtMs < Date.now()) {
      this.tokens.delete(key);
      throw unauthorized("start-up token expired: get a new one with IssueToken");
    }
    if (!(await this.accessOf(entry.appId)).enabled) throw forbidden(`app ${entry.appId} is disabled`);
    return entry.appId;
  }

  /** 403 unless the app's credentials may act for `env` (registration, metadata, the socket). */
  async checkEnvironment(appId: string, env: string): Promise<void> {
    const { environments } = await this.accessOf(appId);
    if (!environments.includes(env))
      throw forbidden(`app ${appId} is not granted environment ${env}: an admin lists it in the app's environments`);
  }

  private async accessOf(appId: string): Promise<{ enabled: boolean; environments: string[] }> {
    let a = this.access.get(appId);
    if (!a) {
      const row = (
        await this.pool.query<{ enabled: boolean; environments: string[] | null }>(
          "SELECT enabled, environments FROM apps WHERE app_id = $1",
          [appId],
        )
      ).rows[0];
      a = { enabled: row?.enabled ?? false, environments: row?.environments ?? this.o.defaultEnvironments };
      this.access.set(appId, a);
    }
    return a;
  }

  /** An app was disabled, enabled, its credentials or environments changed (on any replica): forget its tokens and access. */
  forget(appId: string): void {
    this.access.delete(appId);
    for (const [k, v] of this.tokens) if (v.appId === appId) this.tokens.delete(k);
  }

  async list(): Promise<AppView[]> {
    const { rows } = await this.pool.query<AppRow>(`SELECT ${appColumns} FROM apps a ORDER BY a.app_id`);
    return rows.map(view);
  }

  async get(appId: string): Promise<AppView> {
    const row = (await this.pool.query<AppRow>(`SELECT ${appColumns} FROM apps a WHERE a.app_id = $1`, [checkAppId(appId)])).rows[0];
    if (!row) throw notFound(`no app ${appId}`);
    return view(row);
  }

  async put(
    who: Actor,
    input: {
      appId: string;
      systemDomain?: string;
      description?: string;
      enabled?: boolean;
      secret?: string;
      environments?: string[];
    },
    expectRevision: number | undefined,
  ): Promise<AppView> {
    const appId = checkAppId(input.appId);
    if ((input.systemDomain ?? "").length > 128) throw badRequest("systemDomain must be at most 128 characters");
    if (input.secret && (input.secret.length < 8 || input.secret.length > 256)) throw badRequest("secret must be 8-256 characters");
    for (const env of input.environments ?? [])
      if (!envPattern.test(env)) throw badRequest(`environment ${JSON.stringify(env)} must be 1-32 of a-z 0-9 _ -`);
    const environments = input.environments && [...new Set(input.environments)].sort();
    await withTransaction(this.pool, async (tx) => {
      await lockTarget(tx, `app/${appId}`);
      const prev = (await tx.query<AppRow>(`SELECT ${appColumns} FROM apps a WHERE a.app_id = $1 FOR UPDATE OF a`, [appId])).rows[0];
      checkExpectedRevision(`app ${appId}`, prev?.revision ?? 0, expectRevision);
      const { rows } = await tx.query<AppRow>(
        `INSERT INTO apps (app_id, system_domain, description, enabled, secret_hash, created_by, environments)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (app_id) DO UPDATE SET system_domain = $2, description = $3, enabled = $4,
           secret_hash = COALESCE($5, apps.secret_hash), environments = $7, revision = apps.revision + 1
         RETURNING app_id, system_domain, description, enabled, environments, secret_hash, last_active_at, created_at, created_by, revision,
           0 AS online, 0 AS instances`,
        [
          appId,
          input.systemDomain ?? prev?.system_domain ?? "",
          input.description ?? prev?.description ?? "",
          input.enabled ?? prev?.enabled ?? true,
          input.secret ? sha256(input.secret) : null,
          `${who.principal?.kind}:${who.principal?.id}`,
          environments ?? prev?.environments ?? null,
        ],
      );
      const after = rows[0]!;
      // New credentials: the tokens issued for the old ones go. Every replica caches the enabled switch and the
      // tokens and environments, so any change of them is published: disabled, new credentials or other
      // environments also close the app's sockets (reconnecting is checked against the new environments).
      if (prev && input.secret) await tx.query("DELETE FROM app_tokens WHERE app_id = $1", [appId]);
      const environmentsChanged = String(after.environments) !== String(prev?.environments);
      if (prev && (after.enabled !== prev.enabled || input.secret || environmentsChanged))
        await this.changes.appChanged(
          tx,
          appId,
          !after.enabled ? "disabled" : input.secret ? "credentials" : after.enabled !== prev.enabled ? "enabled" : "environments",
        );
      await this.audit.record(tx, {
        principal: who.principal,
        action: prev ? "app.update" : "app.create",
        target: `app/${appId}`,
        before: prev ? auditView(prev) : undefined,
        after: auditView(after),
        requestId: who.requestId,
      });
    });
    this.forget(appId);
    return this.get(appId);
  }

  async settings(): Promise<{ admitUnknownApps: boolean; revision: number }> {
    const { rows } = await this.pool.query<{ admit: boolean; revision: number }>(
      "SELECT admit_unknown_apps AS admit, revision FROM settings",
    );
    return { admitUnknownApps: rows[0]!.admit, revision: rows[0]!.revision };
  }

  async putSettings(who: Actor, admitUnknownApps: boolean, expectRevision: number | undefined) {
    await withTransaction(this.pool, async (tx) => {
      const before = (
        await tx.query<{ admit: boolean; revision: number }>("SELECT admit_unknown_apps AS admit, revision FROM settings FOR UPDATE")
      ).rows[0]!;
      checkExpectedRevision("settings", before.revision, expectRevision);
      await tx.query("UPDATE settings SET admit_unknown_apps = $1, revision = revision + 1", [admitUnknownApps]);
      await this.audit.record(tx, {
        principal: who.principal,
        action: "settings.update",
        target: "settings",
        before: { admitUnknownApps: before.admit },
        after: { admitUnknownApps },
        requestId: who.requestId,
      });
    });
    return this.settings();
  }

  /**
   * Records a refused token request in the audit trail, throttled by the platform (one row per
   * caller and window, with a count), so guessing secrets cannot flood the trail.
   */
  refused(appId: string, reason: RefusalReason, message: string, requestId: string): void {
    const known = appIdPatternSafe(appId);
    this.audit.denied({
      principal: known ? { kind: "app", id: appId } : undefined,
      action: "token.refused",
      target: `app/${known ? appId : "?"}`,
      after: { reason, message },
      requestId,
    });
  }
}

const appIdPatternSafe = (s: string) => /^[a-z0-9][a-z0-9_.-]{0,63}$/.test(s);

function view(r: AppRow): AppView {
  return {
    appId: r.app_id,
    systemDomain: r.system_domain,
    description: r.description,
    enabled: r.enabled,
    environments: r.environments,
    health: r.online > 0 ? "up" : r.instances > 0 ? "down" : "unknown",
    lastActiveAt: r.last_active_at?.toISOString() ?? "",
    onlineInstances: r.online,
    hasSecret: r.secret_hash !== null,
    createdAt: r.created_at.toISOString(),
    createdBy: r.created_by,
    revision: r.revision,
  };
}

/** An app for the audit trail: never the secret's hash, only whether there is one. */
const auditView = (r: AppRow) => ({
  appId: r.app_id,
  systemDomain: r.system_domain,
  description: r.description,
  enabled: r.enabled,
  environments: r.environments,
  hasSecret: r.secret_hash !== null,
});

const wrongCredentials = "wrong app id or secret";

/** AUTH_APP_CREDENTIALS (`appId:sha256hex,…`) as the app secrets config-center also accepts. */
export function configuredSecrets(spec: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const entry of spec.split(/[,\n]/).map((s) => s.trim())) {
    const [id, hash] = entry.split(":");
    if (id && hash && /^[0-9a-f]{64}$/.test(hash)) out.set(id, Buffer.from(hash, "hex"));
  }
  return out;
}
