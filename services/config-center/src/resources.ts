import { type Auditor, badRequest, conflict, forbidden, notFound, type Principal } from "@opsplane/platform";
import { type Pool, type Queryable, withTransaction } from "@opsplane/store";
import { type Actor, actorName, type ChangeLog, checkExpectedRevision, lockTarget } from "./change-log.js";
import { type ItemRef, itemTarget, resourceNamePattern } from "./identifiers.js";
import { findReferences, type ResolvableResource, resolveReferences, UnresolvableReference } from "./references.js";
import type { Sealed, SecretBox } from "./secret-box.js";

/** Public resource kinds (seed module 2024) and the types each may have. */
export const resourceTypes: Record<string, string[]> = {
  middleware: ["mysql", "oracle", "postgresql", "redis", "kafka", "rabbitmq", "zookeeper", "filestore"],
  service: ["http", "grpc", "other"],
};

export const MASK = "******";

interface ResourceRow {
  kind: string;
  name: string;
  type: string;
  config: Record<string, unknown>;
  secrets: Record<string, Sealed>;
  description: string;
  refs: string[];
  revision: number;
  updated_at: Date;
  updated_by: string;
}

export interface ResourceView {
  kind: string;
  name: string;
  type: string;
  config: Record<string, unknown>;
  secrets: Record<string, string>;
  description: string;
  refs: string[];
  revision: number;
  updatedAt: string;
  updatedBy: string;
  keyIds: string[];
}

export interface PutResourceInput {
  kind: string;
  name: string;
  type: string;
  config?: unknown;
  secrets?: Record<string, string>;
  removeSecrets?: string[];
  description?: string;
  comment?: string;
}

const fieldName = /^[A-Za-z0-9_.-]{1,64}$/;
const columns = "kind, name, type, config, secrets, description, refs, revision, updated_at, updated_by";
const isAdmin = (p: Principal | undefined) => p?.kind === "key" && p.role === "admin";

/**
 * Middleware and public services, with their secrets sealed at rest. Secrets leave this store
 * only resolved into an instance's technical parameters, or revealed to an admin who asks (and
 * is audited); everyone else, the audit trail included, sees them masked.
 */
export class ResourceStore {
  constructor(
    private readonly pool: Pool,
    private readonly changes: ChangeLog,
    private readonly audit: Auditor,
    private readonly box: SecretBox | undefined,
  ) {}

  async list(kind: string | undefined): Promise<ResourceView[]> {
    const { rows } = await this.pool.query<ResourceRow>(
      `SELECT ${columns} FROM resources WHERE ($1::text IS NULL OR kind = $1) ORDER BY kind, name`,
      [kind || null],
    );
    return rows.map((r) => this.view(r, false));
  }

  async get(who: Actor, kind: string, name: string, reveal: boolean): Promise<ResourceView> {
    if (reveal && !isAdmin(who.principal)) throw forbidden("only admins may reveal secrets");
    const row = (await this.pool.query<ResourceRow>(`SELECT ${columns} FROM resources WHERE kind = $1 AND name = $2`, [kind, name]))
      .rows[0];
    if (!row) throw notFound(`no resource ${kind}/${name}`);
    if (reveal && Object.keys(row.secrets).length) await this.recordReveal(who, `resource/${kind}/${name}`, Object.keys(row.secrets));
    return this.view(row, reveal);
  }

  /** Every look at unmasked secrets is in the audit trail (which fields, never their values). */
  async recordReveal(who: Actor, target: string, fields: string[]): Promise<void> {
    await this.audit.record(this.pool, {
      principal: who.principal,
      action: "secrets.reveal",
      target,
      after: { fields },
      requestId: who.requestId,
    });
  }

  /** Creates or changes a resource; every technical item that resolves through it is pushed again. */
  async put(
    who: Actor,
    input: PutResourceInput,
    expectRevision: number | undefined,
  ): Promise<{ version: number; resource: ResourceView; affected: ItemRef[] }> {
    const { kind, name } = checkId(input.kind, input.name);
    if (!resourceTypes[kind]!.includes(input.type))
      throw badRequest(`type of a ${kind} resource must be one of ${resourceTypes[kind]!.join(", ")}`);
    const config = input.config ?? {};
    if (typeof config !== "object" || config === null || Array.isArray(config)) throw badRequest("config must be a JSON object");
    const secrets = input.secrets ?? {};
    for (const [field, v] of Object.entries(secrets)) {
      if (!fieldName.test(field)) throw badRequest(`secret field ${JSON.stringify(field)} must be 1-64 of A-Z a-z 0-9 _ . -`);
      if (Object.hasOwn(config, field)) throw badRequest(`${field} is both a config field and a secret field`);
      if (typeof v !== "string" || v.length > 65_536) throw badRequest(`secret ${field} must be a string of at most 65536 characters`);
    }
    if (Object.keys(secrets).length && !this.box) throw badRequest("secret fields need SECRET_KEYS configured on config-center");
    const id = `${kind}/${name}`;
    const refs = findReferences(config);

    return withTransaction(this.pool, async (tx) => {
      await lockTarget(tx, `resource/${id}`);
      const all = await loadAll(tx, "update");
      const prev = all.get(id);
      checkExpectedRevision(`resource ${id}`, prev?.revision ?? 0, expectRevision);
      const sealed: Record<string, Sealed> = { ...(prev?.secrets ?? {}) };
      for (const f of input.removeSecrets ?? []) delete sealed[f];
      for (const [field, v] of Object.entries(secrets)) sealed[field] = this.box!.seal(v, `${id}#${field}`);
      for (const field of Object.keys(sealed)) if (field in config) throw badRequest(`${field} is both a config field and a secret field`);
      const next: ResourceRow = {
        kind,
        name,
        type: input.type,
        config: config as Record<string, unknown>,
        secrets: sealed,
        description: input.description ?? prev?.description ?? "",
        refs,
        revision: 0,
        updated_at: new Date(),
        updated_by: actorName(who),
      };
      all.set(id, next);
      // Resolving the resource through the would-be state finds missing targets and cycles.
      try {
        resolveReferences({ $ref: id }, (r) => placeholder(all.get(r)));
      } catch (err) {
        if (err instanceof UnresolvableReference) throw badRequest(`resource ${id}: ${err.message}`);
        throw err;
      }
      await refuseBreakingUsers(tx, id, all);
      const version = await this.changes.nextVersion(tx);
      next.revision = version;
      await tx.query(
        `INSERT INTO resources (kind, name, type, config, secrets, description, refs, revision, updated_by)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)
         ON CONFLICT (kind, name) DO UPDATE SET type = $3, config = $4, secrets = $5, description = $6, refs = $7, revision = $8,
           updated_at = now(), updated_by = $9`,
        [kind, name, input.type, JSON.stringify(config), JSON.stringify(sealed), next.description, refs, version, next.updated_by],
      );
      const affected = await this.refChanged(tx, who, version, dependentsOf(id, all), input.comment ?? `resource ${id} changed`);
      await this.audit.record(tx, {
        principal: who.principal,
        action: prev ? "resource.update" : "resource.create",
        target: `resource/${id}`,
        before: prev ? this.view(prev, false) : undefined,
        after: this.view(next, false),
        requestId: who.requestId,
      });
      return { version, resource: this.view(next, false), affected };
    });
  }

  async delete(who: Actor, kindIn: string, nameIn: string, expectRevision: number | undefined) {
    const { kind, name } = checkId(kindIn, nameIn);
    const id = `${kind}/${name}`;
    return withTransaction(this.pool, async (tx) => {
      const prev = (await tx.query<ResourceRow>(`SELECT ${columns} FROM resources WHERE kind = $1 AND name = $2 FOR UPDATE`, [kind, name]))
        .rows[0];
      if (!prev) throw notFound(`no resource ${id}`);
      checkExpectedRevision(`resource ${id}`, prev.revision, expectRevision);
      const users = await tx.query<{ who: string }>(
        `SELECT 'item ' || kind || '/' || CASE app WHEN '' THEN '*' ELSE app END || '/' || CASE env WHEN '' THEN '*' ELSE env END || '/' || key AS who
           FROM items WHERE refs @> ARRAY[$1]
         UNION ALL SELECT 'resource ' || kind || '/' || name FROM resources WHERE refs @> ARRAY[$1]
         LIMIT 10`,
        [id],
      );
      if (users.rows.length)
        throw conflict(`resource ${id} is still referenced by ${users.rows.map((r) => r.who).join(", ")}`, {
          referencedBy: users.rows.map((r) => r.who),
        });
      const version = await this.changes.nextVersion(tx);
      await tx.query("DELETE FROM resources WHERE kind = $1 AND name = $2", [kind, name]);
      await this.audit.record(tx, {
        principal: who.principal,
        action: "resource.delete",
        target: `resource/${id}`,
        before: this.view(prev, false),
        requestId: who.requestId,
      });
      return { version, resource: this.view(prev, false), affected: [] as ItemRef[] };
    });
  }

  /** Re-seals every secret not sealed with the active key. */
  async rotate(who: Actor): Promise<{ rotated: number; keyId: string }> {
    const box = this.box;
    if (!box) throw badRequest("no SECRET_KEYS configured on config-center");
    return withTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<ResourceRow>(`SELECT ${columns} FROM resources WHERE secrets <> '{}' FOR UPDATE`);
      let rotated = 0;
      for (const r of rows) {
        const id = `${r.kind}/${r.name}`;
        let changed = false;
        for (const [field, s] of Object.entries(r.secrets)) {
          if (s.kid === box.activeKeyId) continue;
          r.secrets[field] = box.seal(box.open(s, `${id}#${field}`), `${id}#${field}`);
          changed = true;
          rotated++;
        }
        if (changed)
          await tx.query("UPDATE resources SET secrets = $3 WHERE kind = $1 AND name = $2", [r.kind, r.name, JSON.stringify(r.secrets)]);
      }
      await this.audit.record(tx, {
        principal: who.principal,
        action: "secrets.rotate",
        target: "secrets",
        after: { rotated, keyId: box.activeKeyId },
        requestId: who.requestId,
      });
      return { rotated, keyId: box.activeKeyId };
    });
  }

  /**
   * Every resource, as references resolve them: secrets opened only when a reference reaches them,
   * or shown masked (`masked`, for people's previews).
   */
  async resolvables(q: Queryable, masked = false): Promise<(id: string) => ResolvableResource | undefined> {
    const all = await loadAll(q, "none");
    return (id) => {
      const r = all.get(id);
      if (!r) return undefined;
      if (masked) return placeholder(r);
      return {
        config: r.config,
        secrets: () => {
          const box = this.box;
          const out: Record<string, string> = {};
          for (const [field, s] of Object.entries(r.secrets)) {
            if (!box) throw new UnresolvableReference(`${id} has sealed secrets but no SECRET_KEYS are configured`);
            out[field] = box.open(s, `${id}#${field}`);
          }
          return out;
        },
      };
    };
  }

  /** Records a "ref-changed" change for every technical item referencing one of `resources`. */
  private async refChanged(tx: Queryable, who: Actor, version: number, resources: string[], comment: string): Promise<ItemRef[]> {
    const { rows } = await tx.query<
      ItemRef & { value: unknown; schema: object | null; category: string; startup: boolean; description: string }
    >(
      "SELECT kind, app, env, key, value, schema, category, startup, description FROM items WHERE refs && $1::text[] ORDER BY app, env, key",
      [resources],
    );
    if (rows.length)
      await this.changes.record(
        tx,
        who,
        version,
        rows.map((r) => ({ ...r, action: "ref-changed" as const, comment })),
      );
    return rows.map(({ kind, app, env, key }) => ({ kind, app, env, key }));
  }

  private view(r: ResourceRow, reveal: boolean): ResourceView {
    const id = `${r.kind}/${r.name}`;
    return {
      kind: r.kind,
      name: r.name,
      type: r.type,
      config: r.config,
      secrets: Object.fromEntries(Object.entries(r.secrets).map(([f, s]) => [f, reveal ? this.box!.open(s, `${id}#${f}`) : MASK])),
      description: r.description,
      refs: r.refs,
      revision: r.revision,
      updatedAt: r.updated_at.toISOString(),
      updatedBy: r.updated_by,
      keyIds: [...new Set(Object.values(r.secrets).map((s) => s.kid))],
    };
  }
}

function checkId(kind: string, name: string): { kind: string; name: string } {
  if (!Object.hasOwn(resourceTypes, kind))
    throw badRequest(`resource kind ${JSON.stringify(kind)} must be one of ${Object.keys(resourceTypes).join(", ")}`);
  if (!resourceNamePattern.test(name)) throw badRequest(`resource name ${JSON.stringify(name)} must be 1-63 of a-z 0-9 _ . -`);
  return { kind, name };
}

/**
 * Every resource. Resource writes lock them all ("update"), so two concurrent changes cannot close
 * a cycle between them; item writes share-lock them ("share"), so a resource cannot be deleted
 * while an item starting to reference it commits.
 */
async function loadAll(q: Queryable, lock: "update" | "share" | "none"): Promise<Map<string, ResourceRow>> {
  const { rows } = await q.query<ResourceRow>(`SELECT ${columns} FROM resources${lock === "none" ? "" : ` FOR ${lock.toUpperCase()}`}`);
  return new Map(rows.map((r) => [`${r.kind}/${r.name}`, r]));
}

/** A resource for checking references without opening secrets: field names only. */
function placeholder(r: ResourceRow | undefined): ResolvableResource | undefined {
  if (!r) return undefined;
  return { config: r.config, secrets: () => Object.fromEntries(Object.keys(r.secrets).map((f) => [f, MASK])) };
}

/** `id` and every resource that reaches it through references. */
function dependentsOf(id: string, all: Map<string, ResourceRow>): string[] {
  const out = new Set([id]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [rid, r] of all) {
      if (out.has(rid) || !r.refs.some((x) => out.has(x))) continue;
      out.add(rid);
      grew = true;
    }
  }
  return [...out];
}

/**
 * Refuses (409) a change of `id` that would leave an item or resource using it unresolvable (a
 * field they reference removed, or a cycle), naming them: `all` holds the would-be state.
 */
async function refuseBreakingUsers(tx: Queryable, id: string, all: Map<string, ResourceRow>): Promise<void> {
  const reached = dependentsOf(id, all);
  const lookup = (r: string) => placeholder(all.get(r));
  const users: Array<{ who: string; value: unknown }> = reached
    .filter((r) => r !== id)
    .map((r) => ({ who: `resource/${r}`, value: { $ref: r } }));
  const { rows } = await tx.query<ItemRef & { value: unknown; gray_value: unknown }>(
    "SELECT kind, app, env, key, value, gray_value FROM items WHERE refs && $1::text[] ORDER BY kind, app, env, key",
    [reached],
  );
  for (const r of rows) users.push({ who: itemTarget(r), value: r.gray_value === null ? r.value : [r.value, r.gray_value] });
  const broken: string[] = [];
  for (const u of users) {
    try {
      resolveReferences(u.value, lookup);
    } catch (err) {
      if (!(err instanceof UnresolvableReference)) throw err;
      broken.push(`${u.who} (${err.message})`);
    }
  }
  if (broken.length)
    throw conflict(`resource ${id}: this change would break what uses it: ${broken.slice(0, 10).join(", ")}`, {
      referencedBy: broken.slice(0, 10),
    });
}

/** Resolves an item's references for checking a write: missing targets, fields and cycles are refused; secrets stay sealed. */
export async function checkItemReferences(tx: Queryable, value: unknown, what: string): Promise<void> {
  const all = await loadAll(tx, "share");
  try {
    resolveReferences(value, (r) => placeholder(all.get(r)));
  } catch (err) {
    if (err instanceof UnresolvableReference) throw badRequest(`${what}: ${err.message}`);
    throw err;
  }
}
