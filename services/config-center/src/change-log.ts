import { create } from "@bufbuild/protobuf";
import type { Bus } from "@opsplane/bus";
import { ConfigChangedSchema, toEventData, topics } from "@opsplane/contracts";
import { conflict, type Principal } from "@opsplane/platform";
import { advisoryXactLock, type Queryable } from "@opsplane/store";
import type { GraySelector } from "./gray.js";
import type { ItemRef } from "./identifiers.js";

/** Who makes a change, for the change record and the audit trail. */
export interface Actor {
  principal: Principal | undefined;
  requestId: string;
}

export const actorName = (a: Actor) => (a.principal ? `${a.principal.kind}:${a.principal.id}` : "anonymous");

export type ChangeAction = "set" | "delete" | "rollback" | "import" | "gray-start" | "gray-release" | "gray-abandon" | "ref-changed";

export interface ChangeRecord extends ItemRef {
  action: ChangeAction;
  /** The item's value after the change (JSON null is a value); null once deleted (action "delete"). */
  value: unknown;
  schema: object | null;
  category: string;
  startup: boolean;
  description: string;
  graySelector?: GraySelector;
  comment: string;
}

/** Refuses a write against a stale revision, telling the caller the current one. */
export function checkExpectedRevision(what: string, current: number, expected: number | undefined): void {
  if (expected !== undefined && expected !== current)
    throw conflict(`${what} is at revision ${current}, not ${expected}: reload it and apply your change again`, {
      currentRevision: current,
    });
}

/**
 * Makes the writers of one audit target (an item, resource, app, sequence or lock) run one after
 * the other, whether or not its row exists yet: `SELECT … FOR UPDATE` locks nothing while the row
 * is absent, so concurrent creates would each find it absent (each passing `expectRevision: 0`,
 * each audited with no before) and the later ones overwrite the first. Taken first in the
 * transaction, before any row lock.
 */
export async function lockTarget(tx: Queryable, target: string): Promise<void> {
  await advisoryXactLock(tx, `opsplane.config-center ${target}`);
}

/**
 * The one way a change enters the log. In the caller's transaction: takes the next global
 * version (holding the counter row until commit, so versions commit in order), writes the change
 * rows and publishes one `config.changed` event per row. Replicas push from those events.
 */
export class ChangeLog {
  constructor(private readonly bus: Bus) {}

  async nextVersion(tx: Queryable): Promise<number> {
    const { rows } = await tx.query<{ version: number }>("UPDATE version_counter SET version = version + 1 RETURNING version");
    return rows[0]!.version;
  }

  async record(tx: Queryable, who: Actor, version: number, changes: ChangeRecord[]): Promise<void> {
    const atMs = Date.now();
    for (const c of changes) {
      await tx.query(
        `INSERT INTO changes (version, kind, app, env, key, action, value, schema, category, startup, description, gray_selector, actor, comment, request_id)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)`,
        [
          version,
          c.kind,
          c.app,
          c.env,
          c.key,
          c.action,
          // SQL NULL for a delete, JSON null for a null value: the log tells them apart.
          c.action === "delete" ? null : JSON.stringify(c.value),
          c.schema === null ? null : JSON.stringify(c.schema),
          c.category,
          c.startup,
          c.description,
          c.graySelector ? JSON.stringify(c.graySelector) : null,
          actorName(who),
          c.comment,
          who.requestId,
        ],
      );
    }
    await this.bus.publish(
      changes.map((c) => ({
        topic: topics.configChanged.name,
        type: topics.configChanged.type,
        // One key: every replica sees the changes in version order (one Kafka partition).
        key: "config",
        data: toEventData(
          topics.configChanged,
          create(ConfigChangedSchema, {
            version: BigInt(version),
            kind: c.kind,
            app: c.app,
            env: c.env,
            key: c.key,
            action: c.action,
            graySelector: c.graySelector,
            atMs: BigInt(atMs),
          }),
        ),
      })),
      { tx },
    );
  }

  /** Tells every replica that an instance connected (its `connection`-th time): they close its older sockets (4009). */
  async instanceConnected(tx: Queryable, appId: string, instanceId: string, connection: number, replica: string): Promise<void> {
    await this.bus.publish(
      {
        topic: topics.configChanged.name,
        type: topics.configChanged.type,
        key: "config",
        data: toEventData(
          topics.configChanged,
          create(ConfigChangedSchema, {
            kind: "instance",
            app: appId,
            key: instanceId,
            connection: BigInt(connection),
            replica,
            atMs: BigInt(Date.now()),
          }),
        ),
      },
      { tx },
    );
  }

  /**
   * Tells every replica that an app was disabled, enabled again or its credentials changed: each forgets
   * what it cached of the app (tokens, enabled switch); disabled or new credentials also close its sockets.
   */
  async appChanged(tx: Queryable, appId: string, state: "disabled" | "enabled" | "credentials" | "environments"): Promise<void> {
    await this.bus.publish(
      {
        topic: topics.configChanged.name,
        type: topics.configChanged.type,
        key: "config",
        data: toEventData(
          topics.configChanged,
          create(ConfigChangedSchema, { kind: "app", app: appId, appState: state, atMs: BigInt(Date.now()) }),
        ),
      },
      { tx },
    );
  }
}
