import { type Auditor, badRequest, forbidden, notFound } from "@opsplane/platform";
import { type Pool, withTransaction } from "@opsplane/store";
import { type Actor, checkExpectedRevision, lockTarget } from "./change-log.js";
import { checkAppId, lockNamePattern } from "./identifiers.js";

export interface LockView {
  name: string;
  state: "free" | "held";
  holder: string;
  acquiredAt: string;
  expiresAt: string;
  fencingToken: number;
  /** Declared by an admin: the apps that may use it. Null: undeclared, the first app to acquire it owns it. */
  apps: string[] | null;
  description: string;
  revision: number;
}

interface LockRow {
  name: string;
  app_id: string | null;
  holder: string | null;
  acquired_at: Date | null;
  expires_at: Date | null;
  fencing_token: number;
  apps: string[] | null;
  description: string;
  revision: number;
}

const view = (r: LockRow): LockView => {
  const held = r.holder !== null && r.expires_at !== null && r.expires_at.getTime() > Date.now();
  return {
    name: r.name,
    state: held ? "held" : "free",
    holder: held ? r.holder! : "",
    acquiredAt: held ? r.acquired_at!.toISOString() : "",
    expiresAt: held ? r.expires_at!.toISOString() : "",
    fencingToken: r.fencing_token,
    apps: r.apps,
    description: r.description,
    revision: r.revision,
  };
};

function checkName(name: string): string {
  if (!lockNamePattern.test(name)) throw badRequest(`lock name ${JSON.stringify(name)} must be 1-128 of A-Z a-z 0-9 _ . : / -`);
  return name;
}

/** Another app's lock: refused without saying whose it is. */
function checkOwner(lock: LockRow, appId: string): void {
  if (lock.apps !== null) {
    if (!lock.apps.includes(appId))
      throw forbidden(`lock ${lock.name} is declared for other apps: an admin lists the apps that may use it`);
  } else if (lock.app_id !== null && lock.app_id !== appId) throw forbidden(`lock ${lock.name} belongs to another app`);
}

/** Who may take a lock, in SQL: one of its declared apps, or for an undeclared one its first app (or anyone while it has none). */
const mayTake = "(CASE WHEN locks.apps IS NULL THEN locks.app_id IS NULL OR locks.app_id = $4 ELSE $4 = ANY (locks.apps) END)";

/** The holder asking again while its lease runs: a renewal, which keeps the acquisition and its fencing token. */
const renewing = "(locks.holder = $2 AND locks.expires_at > now())";

/**
 * Distributed locks (seed module 2024): leases in PostgreSQL, each acquisition numbered by a
 * fencing token the holder passes to release (and to whatever it protects). A lease that runs out
 * frees the lock; its holder asking again before then renews it (a new lease from now, the same
 * fencing token); an admin may force a stuck one free (audited), which also ends its ownership.
 * An admin may declare a lock with the apps allowed to use it; an undeclared lock belongs to the
 * app that first acquired it (first come: any app can take a name first, so declare the names
 * that matter). Either way one app cannot hold or free another's.
 */
export class LockStore {
  constructor(
    private readonly pool: Pool,
    private readonly audit: Auditor,
  ) {}

  async acquire(appId: string, nameIn: string, holderIn: string, leaseMs: number): Promise<{ acquired: boolean; lock: LockView }> {
    const name = checkName(nameIn);
    if (!holderIn || holderIn.length > 200) throw badRequest("holder is required (at most 200 characters)");
    if (!Number.isInteger(leaseMs) || leaseMs < 100 || leaseMs > 86_400_000) throw badRequest("leaseMs must be 100 to 86400000");
    const holder = `${appId}/${holderIn}`;
    const { rows } = await this.pool.query<LockRow>(
      `INSERT INTO locks (name, app_id, holder, acquired_at, expires_at, fencing_token)
       VALUES ($1, $4, $2, now(), now() + make_interval(secs => $3::float8 / 1000), 1)
       ON CONFLICT (name) DO UPDATE SET app_id = $4, holder = $2,
         acquired_at = CASE WHEN ${renewing} THEN locks.acquired_at ELSE now() END,
         expires_at = now() + make_interval(secs => $3::float8 / 1000),
         fencing_token = CASE WHEN ${renewing} THEN locks.fencing_token ELSE locks.fencing_token + 1 END
       WHERE ${mayTake} AND (locks.holder IS NULL OR locks.expires_at <= now() OR locks.holder = $2)
       RETURNING *`,
      [name, holder, leaseMs, appId],
    );
    if (rows[0]) return { acquired: true, lock: view(rows[0]) };
    const current = (await this.pool.query<LockRow>("SELECT * FROM locks WHERE name = $1", [name])).rows[0]!;
    checkOwner(current, appId);
    return { acquired: false, lock: view(current) };
  }

  async release(appId: string, nameIn: string, fencingToken: number): Promise<boolean> {
    const name = checkName(nameIn);
    const { rowCount } = await this.pool.query(
      "UPDATE locks SET holder = NULL, acquired_at = NULL, expires_at = NULL WHERE name = $1 AND fencing_token = $2 AND app_id = $3",
      [name, fencingToken, appId],
    );
    if (rowCount) return true;
    const current = (await this.pool.query<LockRow>("SELECT * FROM locks WHERE name = $1", [name])).rows[0];
    if (current) checkOwner(current, appId);
    return false;
  }

  async list(): Promise<LockView[]> {
    return (await this.pool.query<LockRow>("SELECT * FROM locks ORDER BY name")).rows.map(view);
  }

  /**
   * Declares a lock with the apps allowed to use it (admin, audited as `lock.declare`): from now on
   * only their tokens may acquire it. A lease another app holds now stays until its holder releases
   * it or it runs out (or an admin forces it free); after that the app cannot take it again.
   */
  async declare(who: Actor, input: { name: string; apps: string[]; description?: string }, expectRevision: number | undefined) {
    const name = checkName(input.name);
    if (!Array.isArray(input.apps)) throw badRequest("apps is required: the apps that may use the lock");
    const apps = [...new Set(input.apps.map((a) => checkAppId(a, "apps")))].sort();
    if ((input.description ?? "").length > 1024) throw badRequest("description must be at most 1024 characters");
    return withTransaction(this.pool, async (tx) => {
      await lockTarget(tx, `lock/${name}`);
      const before = (await tx.query<LockRow>("SELECT * FROM locks WHERE name = $1 FOR UPDATE", [name])).rows[0];
      checkExpectedRevision(`lock ${name}`, before?.revision ?? 0, expectRevision);
      const after = (
        await tx.query<LockRow>(
          `INSERT INTO locks (name, apps, description, revision) VALUES ($1, $2, $3, 1)
           ON CONFLICT (name) DO UPDATE SET apps = $2, description = $3, revision = locks.revision + 1
           RETURNING *`,
          [name, apps, input.description ?? before?.description ?? ""],
        )
      ).rows[0]!;
      await this.audit.record(tx, {
        principal: who.principal,
        action: "lock.declare",
        target: `lock/${name}`,
        before: before && view(before),
        after: view(after),
        requestId: who.requestId,
      });
      return view(after);
    });
  }

  async forceRelease(who: Actor, nameIn: string): Promise<LockView> {
    const name = checkName(nameIn);
    return withTransaction(this.pool, async (tx) => {
      const before = (await tx.query<LockRow>("SELECT * FROM locks WHERE name = $1 FOR UPDATE", [name])).rows[0];
      if (!before) throw notFound(`no lock ${name}`);
      const after = (
        await tx.query<LockRow>(
          // Ownership goes too, so a name another app claimed first can be given back.
          "UPDATE locks SET app_id = NULL, holder = NULL, acquired_at = NULL, expires_at = NULL WHERE name = $1 RETURNING *",
          [name],
        )
      ).rows[0]!;
      await this.audit.record(tx, {
        principal: who.principal,
        action: "lock.force-release",
        target: `lock/${name}`,
        before: view(before),
        after: view(after),
        requestId: who.requestId,
      });
      return view(after);
    });
  }
}
