import { randomUUID } from "node:crypto";
import type { Logger } from "@opsplane/platform";
import { closeRedis, watchRedisConnection } from "@opsplane/platform";
import { type Pool, tryAdvisoryXactLock, withDeadline, withTransaction } from "@opsplane/store";
import type { Redis } from "ioredis";
import { purge, type Registered, type Registry, readRecord, record, recordTransaction } from "./registry.js";

/** Rows copied from the record to Redis per script call while warming: each call stays well inside the timeout. */
const warmBatch = 500;

// Sets each registration key unless Redis holds a newer registration of it (a value is "<version> <env>"):
// a warm copying an old row never overwrites a registration written since. ARGV: version, env, ttl ms per key.
const setIfNewer = `
for i, key in ipairs(KEYS) do
  local version = ARGV[3 * i - 2]
  local current = redis.call('GET', key)
  local held = current and string.match(current, '^(%d+) ')
  if not held or tonumber(held) <= tonumber(version) then
    redis.call('SET', key, version .. ' ' .. ARGV[3 * i - 1], 'PX', ARGV[3 * i])
  end
end`;

// Marks Redis warm only if the warm that is ending is still the current one: data lost or a write
// missed while it ran deleted its token, and then Redis holds less than the record.
const markWarm = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], ARGV[1])
  return 1
end
return 0`;

/** One registration as Redis holds it: the value "<version> <env>", expiring after `ttlMs`. */
interface RedisCopy {
  rule: string;
  id: string;
  version: string;
  env: string;
  ttlMs: string;
}

export interface RedisRegistryOptions {
  pool: Pool;
  /** The kit's client; the registry opens its own connection from it, with deadlines. */
  redis: Redis;
  prefix: string;
  /** How long a Redis call may take before the record answers instead. */
  timeoutMs: number;
  /** How long a lookup from the record, or a registration's write to it, may take, from waiting for a connection to its answer, before it fails. */
  recordTimeoutMs: number;
  /** How often a replica checks that Redis is warm and retries a failed warm. */
  warmCheckMs: number;
  schema: string;
  log: Logger;
}

/** How long the start waits for the registry's Redis connection before going on without it. */
const startupWaitMs = 2_000;

/**
 * Registrations served from Redis, a cache of the PostgreSQL record. Redis is trusted to say
 * "not registered" only while it holds the warm marker, which a warm writes after copying every
 * live registration from the record; Redis losing its data (restart without persistence, failover,
 * FLUSHDB) loses the marker too. Without the marker, or while Redis does not answer within
 * `timeoutMs`, lookups are answered by the record and a warm is started (one replica at a time).
 * The record answers within `recordTimeoutMs` or the lookup fails (`registry_unavailable`).
 */
export async function redisRegistry(o: RedisRegistryOptions): Promise<Registry> {
  // Its own connection: no offline queue and no retries, so a call to an unreachable Redis fails
  // at once, and a deadline on each call for one that accepts but does not answer (a partition).
  // withDeadline, not ioredis's commandTimeout: after the event loop was held (a starved CPU), that
  // timer fired before the answer already in the socket was read, and callbacks went to the record.
  const redis = o.redis.duplicate({ enableOfflineQueue: false, maxRetriesPerRequest: 0 });
  // A connection gone silent without a reset would keep every lookup on the record (and a stalled record
  // then sends registered callbacks to production) although Redis answers a new one: it is replaced.
  watchRedisConnection(redis, "registry", o.log);
  const timed = <T>(call: Promise<T>) =>
    withDeadline(call, o.timeoutMs, () => new Error(`Redis did not answer within ${o.timeoutMs} ms (REGISTRY_REDIS_TIMEOUT_MS)`));
  // The kit's client logs Redis errors already (same server): these would repeat them.
  redis.on("error", () => {});
  // Without an offline queue, a registration made before this connection is up misses Redis (the
  // record answers for it until the next warm): a reachable Redis is connected before the service
  // takes traffic. One that is not reachable holds the start for at most `startupWaitMs`.
  await new Promise<void>((resolve) => {
    if (redis.status === "ready") return resolve();
    const timer = setTimeout(resolve, startupWaitMs);
    redis.once("ready", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  redis.defineCommand("setIfNewer", { lua: setIfNewer });
  redis.defineCommand("markWarm", { numberOfKeys: 2, lua: markWarm });
  const script = redis as Redis & {
    setIfNewer(numberOfKeys: number, ...keysThenArgs: string[]): Promise<unknown>;
    markWarm(warming: string, warm: string, token: string): Promise<number>;
  };
  const key = (rule: string, id: string) => `${o.prefix}reg:${rule}:${id}`;
  const warmKey = `${o.prefix}registry:warm`;
  const warmingKey = `${o.prefix}registry:warming`;
  const lockName = `opsplane.${o.schema}.registry-warm`;

  // A registration this process wrote to the record but not to Redis: until a warm of its own has
  // copied it, this process distrusts Redis and makes the others do so (by deleting the marker).
  let missedWrites = 0;
  let warming: Promise<void> | undefined;
  // Attempts are spaced: while another replica warms, every lookup batch would otherwise try too.
  let nextWarmAt = 0;
  // Failed attempts in a row: an outage is told once at warn (it retries every check), not at every check.
  let failedWarms = 0;

  const writeAll = (rows: RedisCopy[]) =>
    timed(script.setIfNewer(rows.length, ...rows.map((r) => key(r.rule, r.id)), ...rows.flatMap((r) => [r.version, r.env, r.ttlMs])));

  async function warm(): Promise<void> {
    const missedBefore = missedWrites;
    if (missedBefore) await timed(redis.del(warmKey, warmingKey));
    const warmed = await withTransaction(o.pool, async (tx) => {
      // Another replica is warming: its marker will say so; this one checks again later.
      if (!(await tryAdvisoryXactLock(tx, lockName))) return false;
      const token = randomUUID();
      await timed(redis.set(warmingKey, token));
      let after = { rule: "", id: "" };
      for (;;) {
        const { rows } = await tx.query<RedisCopy>(
          `SELECT rule, object_id AS id, env, (extract(epoch FROM registered_at) * 1000000)::bigint::text AS version,
                  ceil(extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint::text AS "ttlMs"
           FROM registrations WHERE (rule, object_id) > ($1, $2) AND expires_at > clock_timestamp()
           ORDER BY rule, object_id LIMIT $3`,
          [after.rule, after.id, warmBatch],
        );
        if (rows.length) await writeAll(rows);
        if (rows.length < warmBatch) break;
        after = rows[rows.length - 1]!;
      }
      return (await timed(script.markWarm(warmingKey, warmKey, token))) === 1;
    });
    // Only a warm that began after the last missed write has copied it.
    if (warmed && missedWrites === missedBefore) missedWrites = 0;
    if (!warmed) return;
    o.log.info(failedWarms ? { failedAttempts: failedWarms } : {}, "registry: Redis warmed from the PostgreSQL record");
    failedWarms = 0;
  }

  const startWarm = () => {
    if (warming || Date.now() < nextWarmAt) return;
    nextWarmAt = Date.now() + o.warmCheckMs;
    warming = warm()
      .catch((err) => {
        const fields = { err: (err as Error).message, failedAttempts: ++failedWarms };
        if (failedWarms === 1) o.log.warn(fields, "registry: warming Redis from the record failed; retrying every REGISTRY_WARM_CHECK_MS");
        else o.log.debug(fields, "registry: warming Redis from the record failed again");
      })
      .finally(() => {
        warming = undefined;
      });
  };

  // Missed writes of every replica, counted in the record: a replica cut off from Redis cannot delete
  // the marker itself, so each replica that reaches Redis deletes it when the count has grown.
  const missedCount = async () =>
    (await o.pool.query<{ count: string }>("SELECT count::text AS count FROM registry_missed_writes")).rows[0]!.count;
  // Unknown (PostgreSQL did not answer at start): the first count read is taken as grown.
  let missedSeen = await missedCount().catch(() => undefined);
  let following = false;
  async function followMissedWrites(): Promise<void> {
    if (following) return;
    following = true;
    try {
      const count = await missedCount();
      if (count === missedSeen) return;
      await timed(redis.del(warmKey, warmingKey));
      // Only once the marker is gone: a replica that cannot delete it tries again at the next check.
      missedSeen = count;
      startWarm();
    } catch {
      // PostgreSQL or Redis not answering: the next check tries again.
    } finally {
      following = false;
    }
  }

  // Without traffic too: Redis that lost its data is warmed again, and a missed write is caught up.
  const checkTimer = setInterval(() => {
    void followMissedWrites();
    if (missedWrites) return startWarm();
    timed(redis.exists(warmKey)).then(
      (n) => n === 0 && startWarm(),
      () => {},
    );
  }, o.warmCheckMs);
  checkTimer.unref();

  // Callbacks wait for this answer: it fails within the record's own deadline, not the pool's query timeout.
  async function fromRecord(items: Array<{ rule: string; id: string }>): Promise<Map<string, Registered>> {
    const { rows } = await readRecord(o.pool, o.recordTimeoutMs, (tx) =>
      tx.query<{ rule: string; id: string; env: string; version: string }>(
        `SELECT r.rule, r.object_id AS id, r.env, (extract(epoch FROM r.registered_at) * 1000000)::bigint AS version FROM registrations r
         JOIN unnest($1::text[], $2::text[]) AS x(rule, object_id) USING (rule, object_id)
         WHERE r.expires_at > now()`,
        [items.map((x) => x.rule), items.map((x) => x.id)],
      ),
    );
    return new Map(rows.map((r) => [key(r.rule, r.id), { env: r.env, version: Number(r.version) }]));
  }

  // Lookups go to Redis as one MGET at a time (the marker first): those made while one is on its way
  // wait for its answer and leave together in the next, at the end of the event-loop turn that
  // received the answer (so the callbacks read in that turn join them), so under load one command,
  // one write and one wake-up of Redis serve many callbacks; without load a lookup leaves at the end of its turn.
  type Pending = { rule: string; id: string; resolve(registered: Registered | undefined): void; reject(err: unknown): void };
  let batch: Pending[] | undefined;
  let inFlight = false;
  // Redis's values, unless its miss cannot be trusted (no warm marker, or a write this process missed), or
  // the answer is no MGET's at all (a connection out of step): never a throw, which nothing would catch.
  const trusted = (answer: unknown, lookups: number): Array<string | null> | undefined => {
    if (!Array.isArray(answer) || answer.length !== lookups + 1) return undefined;
    const [marker, ...values] = answer as Array<string | null>;
    return marker === null || missedWrites ? undefined : values;
  };
  const resolveFrom = (pending: Pending[], values: Array<string | null>) => {
    // "<version> <env>"; a value written before versions were kept is the env alone.
    for (let i = 0; i < pending.length; i++) {
      const v = values[i];
      const space = v == null ? -1 : v.indexOf(" ");
      pending[i]!.resolve(v == null ? undefined : space < 0 ? { env: v } : { env: v.slice(space + 1), version: Number(v.slice(0, space)) });
    }
  };
  /**
   * The record answers for Redis. When it cannot and Redis was only late (`lateRedis`: the MGET given up
   * on, still on its way), Redis's answer is taken if it comes within the record's deadline: one slow
   * Redis call while PostgreSQL is down must not send registered callbacks to production.
   */
  const answerFromRecord = (pending: Pending[], lateRedis?: Promise<Array<string | null>>) => {
    // Awaited alongside the record, within the same deadline: both copies failing ends at one deadline, not two.
    const lateAnswer =
      lateRedis &&
      withDeadline(lateRedis, o.recordTimeoutMs, () => new Error("late")).then(
        (answer) => trusted(answer, pending.length),
        () => undefined,
      );
    return fromRecord(pending).then(
      (envs) => {
        for (const x of pending) x.resolve(envs.get(key(x.rule, x.id)));
      },
      async (err) => {
        const late = await lateAnswer;
        if (late) return resolveFrom(pending, late);
        // Neither copy answers: the callback goes to production as `registry_unavailable`.
        for (const x of pending) x.reject(err);
      },
    );
  };
  const flush = () => {
    if (inFlight || !batch) return;
    const pending = batch;
    batch = undefined;
    inFlight = true;
    // Redis has answered (or failed): the lookups waiting meanwhile go at the end of this turn, whoever answers these.
    const next = () => {
      inFlight = false;
      if (batch) setImmediate(flush);
    };
    const asked = redis.mget(warmKey, ...pending.map((x) => key(x.rule, x.id)));
    timed(asked).then(
      (answer) => {
        next();
        const values = trusted(answer, pending.length);
        if (values) return resolveFrom(pending, values);
        startWarm();
        return answerFromRecord(pending);
      },
      () => {
        next();
        return answerFromRecord(pending, asked);
      },
    );
  };

  return {
    kind: "redis",
    async register(batch, alongside) {
      const written = await record(o.pool, o.recordTimeoutMs, batch, alongside);
      const ttlMs = new Map(batch.items.map((x) => [`${x.rule}\u0000${x.id}`, String(x.ttlSeconds * 1000)]));
      try {
        await writeAll(written.map((r) => ({ ...r, env: batch.env, ttlMs: ttlMs.get(`${r.rule}\u0000${r.id}`)! })));
      } catch (err) {
        // The record holds it and answers for it here; Redis catches up with the next warm.
        missedWrites++;
        o.log.warn(
          { err: (err as Error).message, env: batch.env, count: written.length },
          "registry: Redis missed a registration; warming again once it answers",
        );
        // Cut off from Redis alone, this replica could not make the others distrust it: they learn it
        // from the record at their next check (REGISTRY_WARM_CHECK_MS) and delete the marker themselves.
        await recordTransaction(o.pool, o.recordTimeoutMs, {}, (tx) =>
          tx.query("UPDATE registry_missed_writes SET count = count + 1"),
        ).catch((e: Error) => o.log.warn({ err: e.message }, "registry: the missed write could not be counted in the record"));
        startWarm();
      }
    },
    lookup(rule, id) {
      return new Promise<Registered | undefined>((resolve, reject) => {
        if (!batch) {
          batch = [];
          if (!inFlight) setImmediate(flush);
        }
        batch.push({ rule, id, resolve, reject });
      });
    },
    purgeExpired: () => purge(o.pool),
    async close() {
      clearInterval(checkTimer);
      await warming;
      await closeRedis(redis);
    },
  };
}
