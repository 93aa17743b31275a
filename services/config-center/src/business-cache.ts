import type { Logger } from "@opsplane/platform";
import { type Pool, tryAdvisoryXactLock, withTransaction } from "@opsplane/store";
import type { ChangeRecord } from "./change-log.js";
import type { ConfigMetrics } from "./metrics.js";
import type { RedisCircuit } from "./redis-circuit.js";

/**
 * The central cache of business parameters in Redis (seed change flow, steps 3 and 7): each
 * released business value under `<prefix>biz:<app|*>:<env|*>:<key>` as
 * `{"revision":N,"category":"…","value":…}`, and `<prefix>biz:version`, the last business version
 * written. Instances read it directly and apply the scope rule themselves (the most specific of
 * the four keys wins); gray values are not in it (instances get them from config-center).
 *
 * Each committed change is written at once; a write that fails (Redis down), or is skipped while
 * the circuit is open, marks the cache stale, and one replica at a time rewrites it from
 * PostgreSQL when it is stale or behind (at once when Redis answers again).
 * Without Redis there is no cache: instances read business values from config-center.
 */
export class BusinessCache {
  private stale = true;
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: RedisCircuit | undefined,
    private readonly prefix: string,
    private readonly pool: Pool,
    private readonly metrics: ConfigMetrics,
    private readonly log: Logger,
    checkMs = 30_000,
  ) {
    if (redis) {
      this.timer = setInterval(() => void this.resyncIfNeeded(), checkMs);
      this.timer.unref();
      redis.onRecovered(() => void this.resyncIfNeeded());
      void this.resyncIfNeeded();
    }
  }

  keyOf(app: string, env: string, key: string): string {
    return `${this.prefix}biz:${app || "*"}:${env || "*"}:${key}`;
  }

  /** A change committed: released business values go to Redis (gray starts change nothing there). */
  written(c: ChangeRecord, version: number): void {
    if (!this.redis || c.kind !== "business" || c.action === "gray-start") return;
    const redis = this.redis.client;
    if (!redis) {
      this.failed(new Error("redis is not answering"));
      return;
    }
    const key = this.keyOf(c.app, c.env, c.key);
    // JSON null is a value like any other: only a delete takes the key away.
    const write =
      c.action === "delete"
        ? redis.multi().del(key).set(`${this.prefix}biz:version`, version)
        : redis
            .multi()
            .set(key, JSON.stringify({ revision: version, category: c.category, value: c.value }))
            .set(`${this.prefix}biz:version`, version);
    write
      .exec()
      .then((results) => {
        const failure = results?.find(([err]) => err);
        if (failure) throw failure[0];
      })
      .catch((err) => {
        this.redis?.failed(err);
        this.failed(err);
      });
  }

  /** Rewrites the cache from PostgreSQL when a write failed or another replica's write went missing. */
  async resyncIfNeeded(): Promise<boolean> {
    const redis = this.redis?.client;
    if (!redis) return false;
    try {
      return await withTransaction(
        this.pool,
        async (tx) => {
          if (!(await tryAdvisoryXactLock(tx, "config-center.business-cache"))) return false;
          const latest =
            (await tx.query<{ v: number | null }>("SELECT max(version) AS v FROM changes WHERE kind = 'business'")).rows[0]!.v ?? 0;
          const cached = Number((await redis.get(`${this.prefix}biz:version`)) ?? -1);
          if (!this.stale && cached === latest) return false;
          const { rows } = await tx.query<{ app: string; env: string; key: string; revision: number; category: string; value: unknown }>(
            "SELECT app, env, key, revision, category, value FROM items WHERE kind = 'business'",
          );
          const wanted = new Map(
            rows.map((r) => [
              this.keyOf(r.app, r.env, r.key),
              JSON.stringify({ revision: r.revision, category: r.category, value: r.value }),
            ]),
          );
          const stray: string[] = [];
          let cursor = "0";
          do {
            const [next, keys] = await redis.scan(cursor, "MATCH", `${this.prefix}biz:*`, "COUNT", 1000);
            cursor = next;
            for (const k of keys) if (!wanted.has(k) && k !== `${this.prefix}biz:version`) stray.push(k);
          } while (cursor !== "0");
          const batch = redis.pipeline();
          for (const [k, v] of wanted) batch.set(k, v);
          if (stray.length) batch.del(...stray);
          batch.set(`${this.prefix}biz:version`, latest);
          await batch.exec();
          this.stale = false;
          this.log.info({ values: wanted.size, removed: stray.length, version: latest }, "business cache rewritten from PostgreSQL");
          return true;
        },
        { isolation: "repeatable read", readOnly: true },
      );
    } catch (err) {
      this.failed(err);
      return false;
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private failed(err: unknown): void {
    this.stale = true;
    this.metrics.businessCacheErrors.inc();
    this.log.warn({ err: (err as Error).message }, "business cache write failed; it will be rewritten from PostgreSQL");
  }
}
