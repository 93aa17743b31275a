import pg from "pg";
import type { BusLogger } from "./logger.js";
import { ALL_TOPICS, comparePositions, type LoggedEvent, NOTIFY_CHANNEL, type Position, readLog } from "./postgres-log.js";
import { Wakeup } from "./wakeup.js";

export interface ConsumerTuning {
  /** Read even without a notification this often, in case one was missed (default 1000). */
  pollIntervalMs: number;
  /** How often a standby member tries to become the active one (default 1000). */
  takeoverCheckMs: number;
}

export const defaultConsumerTuning: ConsumerTuning = { pollIntervalMs: 1000, takeoverCheckMs: 1000 };

/**
 * Handles a batch in order and returns how many events, from the start, are done
 * and may be committed. `attempt` is the delivery attempt of the whole batch;
 * `shouldStop` turns true on close or when the session (and so the group) is lost.
 */
export type BatchProcessor = (events: LoggedEvent[], attempt: number, shouldStop: () => boolean) => Promise<number>;

export interface PostgresConsumerOptions extends ConsumerTuning {
  pool: pg.Pool;
  group: string;
  /** Topics to read; [ALL_TOPICS] reads the whole log. */
  topics: string[];
  batchSize: number;
  fromBeginning: boolean;
  process: BatchProcessor;
  logger: BusLogger;
}

interface Cursor {
  committed: Position;
  /** End of the batch last handed to a handler; beyond `committed` after a crash. */
  claimed: Position;
  /** How often the claimed range was handed out: the attempt number of a redelivery. */
  claims: number;
}

interface CursorRow {
  txid: string;
  seq: string;
  claimed_txid: string;
  claimed_seq: string;
  claims: number;
}

const MAX_BACKOFF_MS = 5000;

/**
 * One member of a consumer group on the postgres log. Per (group, topic) one member
 * is active: it holds a session advisory lock on its own connection and is the only
 * one reading and committing. When that connection dies (crash, network, terminate)
 * PostgreSQL drops the lock, a standby takes it over and resumes from the committed
 * offset, so events handled but not yet committed are delivered again (at least once).
 * Offset commits go through the lock-holding connection, so a member that lost its
 * connection can never commit over its successor.
 */
export class PostgresConsumer {
  private stopping = false;
  /** Fired by notifications and by close: ends an idle wait early. */
  private readonly wake = new Wakeup();
  /** Fired only by close: ends retry back-offs. */
  readonly closed = new Wakeup();
  private readonly loop: Promise<void>;
  private markReady!: (err?: unknown) => void;
  /** Settles after the first attempt to join: rejects when the database could not be reached. */
  readonly ready: Promise<void>;

  constructor(private readonly o: PostgresConsumerOptions) {
    this.ready = new Promise<void>((resolve, reject) => {
      this.markReady = (err) => (err === undefined ? resolve() : reject(err));
    });
    this.loop = this.run();
  }

  get closing(): boolean {
    return this.stopping;
  }

  /** Stops reading, lets the batch in flight finish, commits it and releases the group. */
  async close(): Promise<void> {
    this.stopping = true;
    this.wake.fire();
    this.closed.fire();
    await this.loop;
  }

  private async run(): Promise<void> {
    const listensTo = new Set(this.o.topics);
    let backoff = 100;
    let first = true;
    while (!this.stopping) {
      const client = new pg.Client(this.o.pool.options);
      // Once the session is gone another member may own the group: stop handling its events.
      let lost = false;
      client.on("error", (err) => {
        lost = true;
        this.wake.fire();
        this.o.logger.warn({ err, group: this.o.group }, "bus: consumer connection error");
      });
      client.on("end", () => {
        lost = true;
        this.wake.fire();
      });
      client.on("notification", (n) => {
        if (n.payload && (listensTo.has(ALL_TOPICS) || listensTo.has(n.payload))) this.wake.fire();
      });
      try {
        await client.connect();
        await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
        // Offsets are cheap to lose: a commit lost in a database crash only means a redelivery.
        await client.query("SET synchronous_commit = off");
        backoff = 100;
        await this.serve(
          client,
          () => this.stopping || lost,
          () => {
            if (first) this.markReady();
            first = false;
          },
        );
      } catch (err) {
        if (first) {
          this.stopping = true;
          this.markReady(err);
          return;
        }
        if (!this.stopping) {
          this.o.logger.warn({ err, group: this.o.group, topics: this.o.topics }, "bus: consumer lost its connection; reconnecting");
          await this.closed.wait(backoff);
          backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        }
      } finally {
        await client.end().catch(() => {});
      }
    }
  }

  private async serve(client: pg.Client, shouldStop: () => boolean, joined: () => void): Promise<void> {
    const held = new Map<string, Cursor>();
    let nextJoin = 0;
    let waitingDelay = 1;
    while (!this.stopping) {
      if (held.size < this.o.topics.length && Date.now() >= nextJoin) {
        for (const topic of this.o.topics) {
          if (held.has(topic)) continue;
          const cursor = await this.tryJoin(client, topic);
          if (cursor) held.set(topic, cursor);
        }
        nextJoin = Date.now() + this.o.takeoverCheckMs;
        joined();
      }
      // Cleared before reading: a notification from now on triggers another pass.
      this.wake.clear();
      let progressed = false;
      let waiting = false;
      for (const [topic, cursor] of held) {
        if (this.stopping) break;
        const r = await this.pump(client, topic, cursor, shouldStop);
        progressed ||= r.progressed;
        waiting ||= r.waiting;
      }
      if (progressed) {
        waitingDelay = 1;
        continue;
      }
      let idle = this.o.pollIntervalMs;
      if (held.size < this.o.topics.length) idle = Math.min(idle, Math.max(0, nextJoin - Date.now()));
      if (waiting) {
        // Events are committed but an older transaction is still open: look again soon.
        idle = Math.min(idle, waitingDelay);
        waitingDelay = Math.min(waitingDelay * 2, 50);
      }
      await this.wake.wait(idle);
    }
  }

  /** Becomes the active member for `topic` if no one else is; returns its cursor. */
  private async tryJoin(client: pg.Client, topic: string): Promise<Cursor | undefined> {
    const lock = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok", [
      `opsplane.bus.group:${this.o.group}:${topic}`,
    ]);
    if (!lock.rows[0]!.ok) return undefined;
    // A new group starts at the beginning of the log, or after every transaction that has already ended.
    await client.query(
      `INSERT INTO bus.offsets (group_name, topic, txid, seq, claimed_txid, claimed_seq)
       SELECT $1, $2, s.txid, 0, s.txid, 0
       FROM (SELECT CASE WHEN $3::boolean THEN '0'::xid8 ELSE pg_snapshot_xmin(pg_current_snapshot()) END AS txid) s
       ON CONFLICT DO NOTHING`,
      [this.o.group, topic, this.o.fromBeginning],
    );
    const { rows } = await client.query<CursorRow>(
      `SELECT txid::text AS txid, seq::text AS seq, claimed_txid::text AS claimed_txid, claimed_seq::text AS claimed_seq, claims
       FROM bus.offsets WHERE group_name = $1 AND topic = $2`,
      [this.o.group, topic],
    );
    const r = rows[0]!;
    const cursor: Cursor = {
      committed: { txid: r.txid, seq: r.seq },
      claimed: { txid: r.claimed_txid, seq: r.claimed_seq },
      claims: r.claims,
    };
    if (comparePositions(cursor.claimed, cursor.committed) > 0) {
      // The previous member died holding a batch: what it had is delivered again, one attempt later.
      cursor.claims += 1;
      await this.saveClaim(client, topic, cursor);
      this.o.logger.info({ group: this.o.group, topic, attempt: cursor.claims }, "bus: took over a group; redelivering uncommitted events");
    }
    return cursor;
  }

  private async pump(
    client: pg.Client,
    topic: string,
    cursor: Cursor,
    shouldStop: () => boolean,
  ): Promise<{ progressed: boolean; waiting: boolean }> {
    const redelivery = comparePositions(cursor.claimed, cursor.committed) > 0;
    const read = await readLog(client, topic, cursor.committed, redelivery ? cursor.claimed : null, this.o.batchSize);
    const events = read.events;
    if (events.length === 0) return { progressed: false, waiting: read.waiting };
    if (!redelivery) {
      cursor.claimed = events.at(-1)!.position;
      cursor.claims = 1;
      await this.saveClaim(client, topic, cursor);
    }
    const done = await this.o.process(events, cursor.claims, shouldStop);
    if (done > 0) cursor.committed = events[done - 1]!.position;
    // Stopped early on close: the rest were never handed out, so they are not redeliveries.
    if (done < events.length) cursor.claimed = cursor.committed;
    await client.query(
      `UPDATE bus.offsets SET txid = $3::xid8, seq = $4, claimed_txid = $5::xid8, claimed_seq = $6, updated_at = now()
       WHERE group_name = $1 AND topic = $2`,
      [this.o.group, topic, cursor.committed.txid, cursor.committed.seq, cursor.claimed.txid, cursor.claimed.seq],
    );
    return { progressed: done > 0, waiting: read.waiting };
  }

  private async saveClaim(client: pg.Client, topic: string, cursor: Cursor): Promise<void> {
    await client.query(
      `UPDATE bus.offsets SET claimed_txid = $3::xid8, claimed_seq = $4, claims = $5, updated_at = now()
       WHERE group_name = $1 AND topic = $2`,
      [this.o.group, topic, cursor.claimed.txid, cursor.claimed.seq, cursor.claims],
    );
  }
}
