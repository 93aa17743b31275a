import { type Auditor, badRequest, conflict, notFound } from "@opsplane/platform";
import { type Pool, type PoolClient, withTransaction } from "@opsplane/store";
import { createPatch } from "rfc6902";
import { type Actor, type ChangeAction, type ChangeLog, type ChangeRecord, checkExpectedRevision, lockTarget } from "./change-log.js";
import type { ItemRow } from "./effective.js";
import { checkSelector, type GraySelector } from "./gray.js";
import { type ItemKind, type ItemRef, itemTarget } from "./identifiers.js";
import { findReferences } from "./references.js";
import { checkItemReferences } from "./resources.js";
import type { ScriptCheck } from "./script-check.js";
import { businessCategories, governanceSchemas, technicalCategories, type ValueSchemas } from "./value-schemas.js";

/** An item as the API shows it. */
export interface ItemView extends ItemRef {
  value: unknown;
  schema: object | null;
  category: string;
  startup: boolean;
  description: string;
  refs: string[];
  revision: number;
  updatedAt: string;
  updatedBy: string;
  gray?: { value: unknown; selector: GraySelector; revision: number; startedAt: string; startedBy: string };
}

export interface ChangeView extends ItemRef {
  version: number;
  action: string;
  value: unknown;
  actor: string;
  at: string;
  comment: string;
  graySelector?: GraySelector;
}

export interface PutItemInput {
  value: unknown;
  /** undefined keeps the stored schema, null removes it. */
  schema?: object | null;
  category?: string;
  startup?: boolean;
  description?: string;
  comment?: string;
  /** An imported dictionary: where entry i stood in the file, to name it in a refusal. */
  entryPlace?: (index: number) => string;
}

export const itemColumns =
  "kind, app, env, key, value, schema, category, startup, description, refs, revision, updated_at, updated_by, gray_value, gray_selector, gray_revision, gray_started_at, gray_started_by";

const where = "kind = $1 AND app = $2 AND env = $3 AND key = $4";
const refArgs = (r: ItemRef) => [r.kind, r.app, r.env, r.key];

export function itemView(r: ItemRow): ItemView {
  return {
    kind: r.kind,
    app: r.app,
    env: r.env,
    key: r.key,
    value: r.value,
    schema: r.schema,
    category: r.category,
    startup: r.startup,
    description: r.description,
    refs: r.refs,
    revision: r.revision,
    updatedAt: r.updated_at.toISOString(),
    updatedBy: r.updated_by,
    ...(r.gray_selector
      ? {
          gray: {
            value: r.gray_value,
            selector: r.gray_selector,
            revision: r.gray_revision ?? r.revision,
            startedAt: r.gray_started_at?.toISOString() ?? "",
            startedBy: r.gray_started_by ?? "",
          },
        }
      : {}),
  };
}

/**
 * Business and technical parameters and governance rules, and every way they change: set,
 * delete, rollback, dictionary import, gray start, release and abandon. Each change is one
 * transaction that checks the expected revision, validates the value against its schema and its
 * references against the public resources, takes the next version, writes the item and its
 * change record, audits before and after, and publishes the `config.changed` event.
 */
export class ItemStore {
  constructor(
    private readonly pool: Pool,
    private readonly changes: ChangeLog,
    private readonly audit: Auditor,
    private readonly schemas: ValueSchemas,
    private readonly scripts: ScriptCheck,
    private readonly limits: { itemMaxBytes: number; historyKeepMin: number },
    /** Called after each committed change (metrics, the business cache). */
    private readonly committed: (change: ChangeRecord, version: number) => void,
  ) {}

  async list(filter: { kind?: string; app?: string; env?: string; keyPrefix?: string; limit?: number }): Promise<ItemView[]> {
    const { rows } = await this.pool.query<ItemRow>(
      `SELECT ${itemColumns} FROM items
       WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR app = $2) AND ($3::text IS NULL OR env = $3)
         AND ($4::text IS NULL OR starts_with(key, $4))
       ORDER BY kind, key, app, env LIMIT $5`,
      [filter.kind || null, filter.app ?? null, filter.env ?? null, filter.keyPrefix || null, Math.min(filter.limit || 1000, 10_000)],
    );
    return rows.map(itemView);
  }

  async get(ref: ItemRef): Promise<ItemView> {
    const item = await this.find(ref);
    if (!item) throw notFound(`no ${itemTarget(ref)}`);
    return item;
  }

  async find(ref: ItemRef): Promise<ItemView | undefined> {
    const row = (await this.pool.query<ItemRow>(`SELECT ${itemColumns} FROM items WHERE ${where}`, refArgs(ref))).rows[0];
    return row && itemView(row);
  }

  async history(ref: ItemRef, limit = 100): Promise<ChangeView[]> {
    const { rows } = await this.pool.query<ChangeRow>(
      `SELECT version, kind, app, env, key, action, value, actor, at, comment, gray_selector FROM changes WHERE ${where}
       ORDER BY version DESC LIMIT $5`,
      [...refArgs(ref), Math.min(limit, 1000)],
    );
    if (!rows.length) throw notFound(`no ${itemTarget(ref)} in the change log`);
    return rows.map(changeView);
  }

  /** The item's values at two versions (0: now) and the RFC 6902 patch from one to the other. */
  async diff(ref: ItemRef, from: number, to: number): Promise<{ from: unknown; to: unknown; patch: unknown }> {
    const a = (await this.valueAt(this.pool, ref, from)).value;
    const b =
      to === 0
        ? ((await this.pool.query<{ value: unknown }>(`SELECT value FROM items WHERE ${where}`, refArgs(ref))).rows[0]?.value ?? null)
        : (await this.valueAt(this.pool, ref, to)).value;
    return { from: a, to: b, patch: createPatch(a, b) };
  }

  async put(
    who: Actor,
    ref: ItemRef,
    input: PutItemInput,
    expectRevision: number | undefined,
    action: ChangeAction = "set",
  ): Promise<{ version: number; item: ItemView }> {
    await this.checkScript(ref, input.value);
    return this.change(who, ref, action, async (tx, prev) => {
      checkExpectedRevision(itemTarget(ref), prev?.revision ?? 0, expectRevision);
      refuseDuringGray(ref, prev);
      const next = await this.checked(tx, ref, prev, input);
      return { next, comment: input.comment ?? "" };
    });
  }

  delete(who: Actor, ref: ItemRef, expectRevision: number | undefined, comment = ""): Promise<{ version: number; item: ItemView }> {
    return this.change(who, ref, "delete", async (_tx, prev) => {
      if (!prev) throw notFound(`no ${itemTarget(ref)}`);
      checkExpectedRevision(itemTarget(ref), prev.revision, expectRevision);
      refuseDuringGray(ref, prev);
      return { next: undefined, comment };
    });
  }

  /** Makes the value (and schema, category, flags) the item had at `toVersion` current again. */
  async rollback(
    who: Actor,
    ref: ItemRef,
    toVersion: number,
    expectRevision: number | undefined,
    comment = "",
  ): Promise<{ version: number; item: ItemView }> {
    await this.checkScript(ref, (await this.valueAt(this.pool, ref, toVersion)).value);
    return this.change(who, ref, "rollback", async (tx, prev) => {
      checkExpectedRevision(itemTarget(ref), prev?.revision ?? 0, expectRevision);
      refuseDuringGray(ref, prev);
      const then = await this.valueAt(tx, ref, toVersion);
      const why = comment || `rollback to version ${toVersion}`;
      if (then.action === "delete") {
        if (!prev) throw badRequest(`${itemTarget(ref)} did not exist at version ${toVersion} and does not exist now`);
        return { next: undefined, comment: why };
      }
      const next = await this.checked(tx, ref, prev, {
        value: then.value,
        schema: then.schema,
        category: then.category,
        startup: then.startup,
        description: then.description,
      });
      return { next, comment: why };
    });
  }

  async startGray(
    who: Actor,
    ref: ItemRef,
    value: unknown,
    selectorIn: GraySelector | undefined,
    expectRevision: number | undefined,
    comment = "",
  ) {
    const selector = checkSelector(selectorIn);
    await this.checkScript(ref, value);
    return this.change(who, ref, "gray-start", async (tx, prev) => {
      if (!prev) throw notFound(`no ${itemTarget(ref)}: create it before a gray release`);
      checkExpectedRevision(itemTarget(ref), prev.revision, expectRevision);
      refuseDuringGray(ref, prev);
      const checked = await this.checked(tx, ref, prev, { value });
      return {
        next: { ...prev, gray_value: checked.value, gray_selector: selector, refs: union(prev.refs, checked.refs) },
        comment,
        graySelector: selector,
      };
    });
  }

  releaseGray(who: Actor, ref: ItemRef, expectRevision: number | undefined, comment = "") {
    return this.change(who, ref, "gray-release", async (tx, prev) => {
      const gray = needGray(ref, prev);
      checkExpectedRevision(`the gray release of ${itemTarget(ref)}`, gray.gray_revision!, expectRevision);
      const next = await this.checked(tx, ref, gray, { value: gray.gray_value });
      return { next: { ...next, gray_value: null, gray_selector: null }, comment };
    });
  }

  abandonGray(who: Actor, ref: ItemRef, expectRevision: number | undefined, comment = "") {
    return this.change(who, ref, "gray-abandon", async (_tx, prev) => {
      const gray = needGray(ref, prev);
      checkExpectedRevision(`the gray release of ${itemTarget(ref)}`, gray.gray_revision!, expectRevision);
      // Only the instances the gray release reached need telling: they go back to the main value.
      return {
        next: { ...gray, gray_value: null, gray_selector: null, refs: findRefsOf(gray) },
        comment,
        graySelector: gray.gray_selector!,
      };
    });
  }

  /**
   * Loads a baffle's script (see ScriptCheck) before the change takes a database connection: a
   * check may take the sandbox's full second, and must not hold a connection meanwhile.
   */
  private async checkScript(ref: ItemRef, value: unknown): Promise<void> {
    if (ref.kind !== "governance" || !ref.key.startsWith("baffle/") || typeof value !== "object" || value === null) return;
    const script = (value as { script?: unknown }).script;
    if (typeof script === "string") await this.scripts.check(script, `the script of ${itemTarget(ref)}`);
  }

  /** Validates a would-be item: category, schema, value, size and references (a baffle's script is loaded before: checkScript). */
  private async checked(tx: PoolClient, ref: ItemRef, prev: ItemRow | undefined, input: PutItemInput): Promise<ItemRow> {
    if (input.value === undefined) throw badRequest("value is required");
    const size = Buffer.byteLength(JSON.stringify(input.value));
    if (size > this.limits.itemMaxBytes)
      throw badRequest(`value is ${size} bytes; the limit is ${this.limits.itemMaxBytes} (ITEM_MAX_BYTES)`);
    const category = checkCategory(ref, input.category ?? prev?.category);
    const schema = input.schema === undefined ? (prev?.schema ?? null) : input.schema;
    if (schema !== null) {
      if (ref.kind === "governance") throw badRequest("governance rules are validated by their type's schema and take none of their own");
      this.schemas.checkSchema(schema);
    }
    this.schemas.validate(input.value, this.schemas.schemaFor(ref.kind, category, schema), `value of ${itemTarget(ref)}`, input.entryPlace);
    let refs: string[] = [];
    if (ref.kind === "technical") {
      refs = findReferences(input.value);
      if (refs.length) await checkItemReferences(tx, input.value, itemTarget(ref));
    }
    return {
      ...(prev ?? emptyRow(ref)),
      value: input.value,
      schema,
      category,
      startup: ref.kind === "business" ? (input.startup ?? prev?.startup ?? false) : false,
      description: input.description ?? prev?.description ?? "",
      refs,
    };
  }

  /** The item as of `version`: the last change to it at or before that version (gray changes aside). */
  private async valueAt(q: Pool | PoolClient, ref: ItemRef, version: number) {
    const { latest } = (await q.query<{ latest: number }>("SELECT version AS latest FROM version_counter")).rows[0]!;
    if (version > latest) throw notFound(`version ${version} does not exist yet: the latest version is ${latest}`);
    const row = (
      await q.query<{ action: string; value: unknown; schema: object | null; category: string; startup: boolean; description: string }>(
        `SELECT action, value, schema, category, startup, description FROM changes
         WHERE ${where} AND version <= $5 AND action NOT IN ('gray-start', 'gray-abandon')
         ORDER BY version DESC LIMIT 1`,
        [...refArgs(ref), version],
      )
    ).rows[0];
    if (!row) throw await this.noVersion(q, ref, version);
    return row;
  }

  /** Why the item has no value at `version`: one before the item existed, or pruned history. */
  private async noVersion(q: Pool | PoolClient, ref: ItemRef, version: number) {
    const kept = (
      await q.query<{ n: number; first: number | null }>(
        `SELECT count(*)::int AS n, min(version) AS first FROM changes WHERE ${where}`,
        refArgs(ref),
      )
    ).rows[0]!;
    if (kept.first === null) return notFound(`no ${itemTarget(ref)} in the change log`);
    // Pruning leaves every item at least its newest HISTORY_KEEP_MIN changes: with fewer, none of its history was pruned.
    if (kept.n < this.limits.historyKeepMin)
      return notFound(`${itemTarget(ref)} had no value at version ${version}: its first change is version ${kept.first}`);
    return notFound(
      `${itemTarget(ref)} has no version at or before ${version}: its oldest change kept is version ${kept.first} (changes older than HISTORY_RETENTION_DAYS beyond its newest HISTORY_KEEP_MIN are pruned)`,
    );
  }

  /**
   * One change in one transaction: lock the item (also while it does not exist: lockTarget), let
   * `decide` compute its next state (undefined: deleted), take a version, write the item and its
   * change record, audit, publish.
   */
  private async change(
    who: Actor,
    ref: ItemRef,
    action: ChangeAction,
    decide: (
      tx: PoolClient,
      prev: ItemRow | undefined,
    ) => Promise<{ next: ItemRow | undefined; comment: string; graySelector?: GraySelector }>,
  ): Promise<{ version: number; item: ItemView }> {
    const target = itemTarget(ref);
    const { version, item, record } = await withTransaction(this.pool, async (tx) => {
      await lockTarget(tx, target);
      const prev = (await tx.query<ItemRow>(`SELECT ${itemColumns} FROM items WHERE ${where} FOR UPDATE`, refArgs(ref))).rows[0];
      const { next, comment, graySelector } = await decide(tx, prev);
      const version = await this.changes.nextVersion(tx);
      let saved: ItemRow | undefined;
      if (next) {
        const grayOpen = action === "gray-start";
        saved = (
          await tx.query<ItemRow>(
            `INSERT INTO items (kind, app, env, key, value, schema, category, startup, description, refs, revision, updated_by,
                                gray_value, gray_selector, gray_revision, gray_started_at, gray_started_by)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)
             ON CONFLICT (kind, app, env, key) DO UPDATE SET value = $5, schema = $6, category = $7, startup = $8, description = $9,
               refs = $10, revision = $11, updated_at = now(), updated_by = $12, gray_value = $13, gray_selector = $14,
               gray_revision = $15, gray_started_at = $16, gray_started_by = $17
             RETURNING ${itemColumns}`,
            [
              ...refArgs(ref),
              JSON.stringify(next.value),
              next.schema === null ? null : JSON.stringify(next.schema),
              next.category,
              next.startup,
              next.description,
              next.refs,
              // A gray start leaves the main value's revision alone; its own revision is the gray's.
              grayOpen ? prev!.revision : version,
              grayOpen ? prev!.updated_by : actorOfWho(who),
              next.gray_selector ? JSON.stringify(next.gray_value) : null,
              next.gray_selector ? JSON.stringify(next.gray_selector) : null,
              grayOpen ? version : next.gray_selector ? next.gray_revision : null,
              grayOpen ? new Date() : next.gray_selector ? next.gray_started_at : null,
              grayOpen ? actorOfWho(who) : next.gray_selector ? next.gray_started_by : null,
            ],
          )
        ).rows[0]!;
      } else {
        await tx.query(`DELETE FROM items WHERE ${where}`, refArgs(ref));
      }
      const record: ChangeRecord = {
        ...ref,
        action: next ? action : "delete",
        value: action === "gray-start" ? next!.gray_value : next ? next.value : null,
        schema: next?.schema ?? null,
        category: next?.category ?? prev?.category ?? "",
        startup: next?.startup ?? false,
        description: next?.description ?? "",
        graySelector,
        comment,
      };
      await this.changes.record(tx, who, version, [record]);
      await this.audit.record(tx, {
        principal: who.principal,
        action: `item.${record.action}`,
        target,
        before: prev ? itemView(prev) : undefined,
        after: saved ? itemView(saved) : undefined,
        requestId: who.requestId,
      });
      return { version, item: saved ? itemView(saved) : itemView(prev!), record };
    });
    this.committed(record, version);
    return { version, item };
  }
}

interface ChangeRow {
  version: number;
  kind: ItemKind;
  app: string;
  env: string;
  key: string;
  action: string;
  value: unknown;
  actor: string;
  at: Date;
  comment: string;
  gray_selector: GraySelector | null;
}

export function changeView(r: ChangeRow): ChangeView {
  return {
    version: r.version,
    kind: r.kind,
    app: r.app,
    env: r.env,
    key: r.key,
    action: r.action,
    value: r.value,
    actor: r.actor,
    at: r.at.toISOString(),
    comment: r.comment,
    ...(r.gray_selector ? { graySelector: r.gray_selector } : {}),
  };
}

const actorOfWho = (who: Actor) => (who.principal ? `${who.principal.kind}:${who.principal.id}` : "anonymous");

function emptyRow(ref: ItemRef): ItemRow {
  return {
    ...ref,
    value: null,
    schema: null,
    category: "",
    startup: false,
    description: "",
    refs: [],
    revision: 0,
    updated_at: new Date(),
    updated_by: "",
    gray_value: null,
    gray_selector: null,
    gray_revision: null,
    gray_started_at: null,
    gray_started_by: null,
  };
}

function refuseDuringGray(ref: ItemRef, prev: ItemRow | undefined): void {
  if (prev?.gray_selector)
    throw conflict(`${itemTarget(ref)} has a gray release in progress (revision ${prev.gray_revision}): release or abandon it first`, {
      currentRevision: prev.gray_revision,
    });
}

function needGray(ref: ItemRef, prev: ItemRow | undefined): ItemRow {
  if (!prev) throw notFound(`no ${itemTarget(ref)}`);
  if (!prev.gray_selector) throw conflict(`${itemTarget(ref)} has no gray release in progress`, { currentRevision: prev.revision });
  return prev;
}

const union = (a: string[], b: string[]) => [...new Set([...a, ...b])];
const findRefsOf = (r: ItemRow) => (r.kind === "technical" ? findReferences(r.value) : []);

/** The category of an item: a business category, a technical one, or for governance the rule type its key starts with. */
function checkCategory(ref: ItemRef, given: string | undefined): string {
  switch (ref.kind) {
    case "business": {
      const c = given || "custom";
      // Own keys only: `in` also finds Object.prototype's ("constructor", "toString"), whose "schema" is a function.
      if (!Object.hasOwn(businessCategories, c))
        throw badRequest(`business category ${JSON.stringify(c)} must be one of ${Object.keys(businessCategories).join(", ")}`);
      return c;
    }
    case "technical": {
      const c = given || "other";
      if (!technicalCategories.includes(c))
        throw badRequest(`technical category ${JSON.stringify(c)} must be one of ${technicalCategories.join(", ")}`);
      return c;
    }
    case "governance": {
      const type = ref.key.slice(0, ref.key.indexOf("/"));
      if (!Object.hasOwn(governanceSchemas, type) || ref.key.length <= type.length + 1)
        throw badRequest(
          `a governance rule's key is "<type>/<interface or queue code>" with type one of ${Object.keys(governanceSchemas).join(", ")}`,
        );
      if (given && given !== type) throw badRequest(`category of ${ref.key} is ${type}, from its key`);
      return type;
    }
  }
}
