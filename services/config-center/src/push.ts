import { randomUUID } from "node:crypto";
import type { Logger } from "@opsplane/platform";
import { type Pool, withTransaction } from "@opsplane/store";
import type { WebSocket } from "ws";
import { type ConfigValue, type Lookup, ValueResolver } from "./config-values.js";
import { byKindAndKey, type ItemRow } from "./effective.js";
import { type GraySelector, selects } from "./gray.js";
import type { ItemKind } from "./identifiers.js";
import type { RegisteredInstance } from "./instances.js";
import { itemColumns } from "./items.js";
import type { ConfigMetrics } from "./metrics.js";
import type { ResourceStore } from "./resources.js";

/** A `config.changed` event as the hub uses it (kind "app": an app's access changed; "instance": an instance connected). */
export interface ChangeEvent {
  version: number;
  kind: string;
  app: string;
  env: string;
  key: string;
  action: string;
  graySelector: GraySelector | undefined;
  appState: string;
  /** kind "instance": the number of the instance's newest connection. */
  connection: number;
  /** kind "instance": the replica that connection reached. */
  replica: string;
}

/** What the server sends on an instance socket (see the README's instance protocol). */
export type ToInstance =
  | { t: "changes"; version: number; catchUp?: boolean; changes: ConfigValue[] }
  | { t: "pong"; at: number }
  | { t: "error"; reason: string };

/** Sockets whose unsent output passes this are too slow to keep: they are closed and catch up on reconnect. */
const maxBufferedBytes = 16 * 1024 * 1024;
/** Pushes awaiting acknowledgement kept per socket for the latency metric. */
const maxAwaiting = 64;

/** One instance's socket on this replica. */
export class InstanceSocket {
  readonly connectionId = randomUUID();
  /** Every change up to this version has been sent. */
  sentVersion = 0;
  ackedVersion = 0;
  heardAt = Date.now();
  /** The instance's connection number (0 until recorded): a newer connection of the instance closes this socket. */
  connection = 0;
  /** Live pushes wait while the reconnect catch-up is read, then follow it. */
  catchingUp = true;
  queued: Array<{ version: number; frame: Buffer; atMs: number }> = [];
  /** Pushes not yet acknowledged, with when their change reached this replica (its clock, as the ack's). */
  awaiting: Array<{ version: number; atMs: number }> = [];

  constructor(
    readonly identity: RegisteredInstance,
    readonly ws: WebSocket,
    /** When its handshake began checking the app's access (this replica's clock). */
    readonly checkedAtMs = Date.now(),
  ) {}

  send(message: ToInstance): void {
    this.sendFrame(Buffer.from(JSON.stringify(message)));
  }

  sendFrame(frame: Buffer): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (this.ws.bufferedAmount > maxBufferedBytes) {
      this.ws.close(1013, "not reading its messages; reconnect to catch up");
      return;
    }
    this.ws.send(frame, { binary: false });
  }
}

interface HubDeps {
  pool: Pool;
  resources: ResourceStore;
  metrics: ConfigMetrics;
  log: Logger;
  cycleMs: number;
  inlineMaxBytes: number;
  /** This replica's id: it closes its own older sockets as newer ones are added, not by event. */
  replica: string;
  /** An app was disabled, enabled or its credentials changed: tokens and caches go (the hub closes its sockets unless enabled). */
  onAppChanged(appId: string): void;
}

/**
 * Pushes changes to the instances connected to this replica (seed change flow, step 4). Events of
 * `config.changed` from every replica arrive through the bus and wait for the next scan cycle; a
 * cycle merges them per key (several changes of one key become the latest), reads the current
 * rows of the keys once, and sends each affected instance what it now sees of them. Instances
 * that see the same thing share one serialised frame. A reconnecting instance first gets every
 * key changed since the version it last had (`catchUp`), then the live pushes that waited.
 */
export class PushHub {
  private readonly sockets = new Map<string, InstanceSocket>();
  private readonly byApp = new Map<string, Set<InstanceSocket>>();
  /** Events waiting for the next cycle, each with when it reached this replica. */
  private pending: Array<ChangeEvent & { receivedAtMs: number }> = [];
  private cycling: Promise<void> | undefined;
  private failing = false;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly d: HubDeps) {
    this.timer = setInterval(() => void this.cycle(), d.cycleMs);
    this.timer.unref();
  }

  get size(): number {
    return this.sockets.size;
  }

  all(): IterableIterator<InstanceSocket> {
    return this.sockets.values();
  }

  add(s: InstanceSocket): void {
    const previous = this.sockets.get(s.identity.instanceId);
    if (previous) previous.ws.close(4009, "replaced by a newer connection of this instance");
    this.sockets.set(s.identity.instanceId, s);
    const app = this.byApp.get(s.identity.appId) ?? new Set<InstanceSocket>();
    this.byApp.set(s.identity.appId, app);
    app.add(s);
    this.d.metrics.connectedInstances.set(this.sockets.size);
  }

  remove(s: InstanceSocket): void {
    if (this.sockets.get(s.identity.instanceId) === s) this.sockets.delete(s.identity.instanceId);
    const app = this.byApp.get(s.identity.appId);
    app?.delete(s);
    if (app?.size === 0) this.byApp.delete(s.identity.appId);
    this.d.metrics.connectedInstances.set(this.sockets.size);
  }

  /**
   * An event from the bus. The time it arrived is the start of the push latency: the ack is timed
   * on this replica's clock too (the commit time in the event is another replica's clock).
   */
  enqueue(e: ChangeEvent): void {
    this.pending.push({ ...e, receivedAtMs: Date.now() });
  }

  /** The instance acknowledged everything up to `version`: observe how long each push took. */
  acked(s: InstanceSocket, version: number): void {
    if (version > s.ackedVersion) s.ackedVersion = version;
    const now = Date.now();
    while (s.awaiting.length && s.awaiting[0]!.version <= version)
      this.d.metrics.pushLatency.observe((now - s.awaiting.shift()!.atMs) / 1000);
  }

  /** Runs one scan cycle (the timer calls it); resolves when its pushes are sent. */
  cycle(): Promise<void> {
    if (this.cycling) return this.cycling;
    const events = this.pending;
    this.pending = [];
    this.cycling = (async () => {
      try {
        await this.runCycle(events);
        this.failing = false;
      } catch (err) {
        // PostgreSQL unreachable: keep the events for the next cycle (one warning per outage).
        this.pending = events.concat(this.pending);
        if (!this.failing) this.d.log.warn({ err: (err as Error).message, events: events.length }, "push cycle failed; retrying");
        this.failing = true;
      } finally {
        this.cycling = undefined;
      }
    })();
    return this.cycling;
  }

  /** Sends a (re)connected instance every key changed after `from`, then lets live pushes through. */
  async catchUp(s: InstanceSocket, from: number): Promise<void> {
    const { app, env } = s.identity;
    const { version, rows, keys, lookup } = await withTransaction(
      this.d.pool,
      async (tx) => {
        const version = (await tx.query<{ version: number }>("SELECT version FROM version_counter")).rows[0]!.version;
        // An instance ahead of the log (the database was restored) starts over from nothing.
        const since = from > version ? 0 : from;
        const keys = (
          await tx.query<{ kind: ItemKind; key: string }>(
            "SELECT DISTINCT kind, key FROM changes WHERE version > $1 AND app IN ('', $2) AND env IN ('', $3)",
            [since, app, env],
          )
        ).rows;
        const rows = keys.length
          ? (
              await tx.query<ItemRow>(
                `SELECT ${itemColumns} FROM items WHERE (kind, key) IN (SELECT * FROM unnest($1::text[], $2::text[])) AND app IN ('', $3) AND env IN ('', $4)`,
                [keys.map((k) => k.kind), keys.map((k) => k.key), app, env],
              )
            ).rows
          : [];
        const lookup = rows.some((r) => r.refs.length) ? await this.d.resources.resolvables(tx) : undefined;
        return { version, rows, keys, lookup };
      },
      { isolation: "repeatable read", readOnly: true },
    );
    const resolver = new ValueResolver(lookup, this.d.inlineMaxBytes);
    const grouped = byKindAndKey(rows);
    const changes = keys.map(({ kind, key }) => {
      const { row, gray } = resolver.pick(grouped.get(`${kind}\u0000${key}`), s.identity);
      return resolver.value(kind, key, row, gray);
    });
    s.send({ t: "changes", version, catchUp: true, changes });
    this.d.metrics.pushes.inc({ mode: "catch-up" });
    s.sentVersion = version;
    const waited = s.queued;
    s.queued = [];
    s.catchingUp = false;
    // Those the catch-up already covered (versions commit in order) are skipped by deliver.
    for (const q of waited) this.deliver(s, q.version, q.frame, q.atMs);
  }

  /** Closes every socket (shutdown: "going away", the instances reconnect to another replica). */
  closeAll(code: number, reason: string): void {
    for (const s of this.sockets.values()) s.ws.close(code, reason);
  }

  close(): void {
    clearInterval(this.timer);
  }

  private deliver(s: InstanceSocket, version: number, frame: Buffer, atMs: number): void {
    if (s.catchingUp) {
      s.queued.push({ version, frame, atMs });
      return;
    }
    // Already covered by the catch-up read (versions commit in order, so it saw this change).
    if (version <= s.sentVersion) return;
    s.sendFrame(frame);
    s.sentVersion = version;
    s.awaiting.push({ version, atMs });
    if (s.awaiting.length > maxAwaiting) s.awaiting.shift();
    this.d.metrics.pushes.inc({ mode: "live" });
  }

  private async runCycle(events: Array<ChangeEvent & { receivedAtMs: number }>): Promise<void> {
    if (!events.length) return;
    const started = process.hrtime.bigint();

    for (const e of events) {
      if (e.kind === "instance") {
        // A newer connection of the instance on another replica: the older socket here goes. Sockets on
        // this replica are replaced as they are added (add()): their numbers are taken in separate
        // transactions, so a socket abandoned during its handshake can be numbered after the one that
        // replaced it, and must not close it.
        if (e.replica === this.d.replica) continue;
        const s = this.sockets.get(e.key);
        if (s && s.connection !== 0 && s.connection < e.connection) s.ws.close(4009, "replaced by a newer connection of this instance");
        continue;
      }
      if (e.kind !== "app") continue;
      this.d.onAppChanged(e.app);
      if (e.appState === "enabled") continue;
      const reason =
        e.appState === "disabled"
          ? [4003, "app disabled"]
          : e.appState === "environments"
            ? [4001, "app environments changed: reconnect"]
            : [4001, "app credentials changed: get a new token"];
      // Only sockets whose access was checked before the change reached this replica: one checked
      // after it (the app's cached access was dropped on arrival) already holds what the change allows.
      for (const s of this.byApp.get(e.app) ?? [])
        if (s.checkedAtMs <= e.receivedAtMs) s.ws.close(reason[0] as number, reason[1] as string);
    }
    const changes = events.filter((e) => e.kind !== "app" && e.kind !== "instance");
    if (!changes.length) return;
    const version = Math.max(...changes.map((e) => e.version));

    // Which keys each instance must hear about; the earliest arrival of each for the latency metric.
    const targets = new Map<InstanceSocket, Map<string, number>>();
    const everyone = [...this.sockets.values()];
    for (const e of changes) {
      const k = `${e.kind}\u0000${e.key}`;
      for (const s of e.app === "" ? everyone : (this.byApp.get(e.app) ?? [])) {
        if (e.env !== "" && e.env !== s.identity.env) continue;
        if (e.graySelector && !selects(e.graySelector, s.identity)) continue;
        const keys = targets.get(s) ?? new Map<string, number>();
        targets.set(s, keys);
        keys.set(k, Math.min(keys.get(k) ?? e.receivedAtMs, e.receivedAtMs));
      }
    }
    if (!targets.size) return;

    const kinds: string[] = [];
    const names: string[] = [];
    for (const k of new Set(changes.map((e) => `${e.kind}\u0000${e.key}`))) {
      const [kind, key] = k.split("\u0000") as [string, string];
      kinds.push(kind);
      names.push(key);
    }
    const { rows } = await this.d.pool.query<ItemRow>(
      `SELECT ${itemColumns} FROM items WHERE (kind, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
      [kinds, names],
    );
    const lookup: Lookup | undefined = rows.some((r) => r.refs.length) ? await this.d.resources.resolvables(this.d.pool) : undefined;
    const resolver = new ValueResolver(lookup, this.d.inlineMaxBytes);
    const grouped = byKindAndKey(rows);
    const rowIds = new Map<ItemRow, number>(rows.map((r, i) => [r, i]));

    // Instances that see the same rows (and the same gray values) get the same frame, serialised once.
    const frames = new Map<string, Buffer>();
    for (const [s, keys] of targets) {
      const ordered = [...keys.keys()].sort();
      const picks = ordered.map((k) => resolver.pick(grouped.get(k), s.identity));
      const signature = picks.map((p, i) => `${ordered[i]}\u0001${p.row ? rowIds.get(p.row) : -1}\u0001${p.gray ? 1 : 0}`).join("\u0002");
      let frame = frames.get(signature);
      if (!frame) {
        const values = picks.map((p, i) => {
          const [kind, key] = ordered[i]!.split("\u0000") as [ItemKind, string];
          return resolver.value(kind, key, p.row, p.gray);
        });
        frame = Buffer.from(JSON.stringify({ t: "changes", version, changes: values } satisfies ToInstance));
        frames.set(signature, frame);
      }
      this.deliver(s, version, frame, Math.min(...keys.values()));
    }
    this.d.metrics.pushCycleSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
  }
}
