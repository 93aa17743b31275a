import type { ConfigValue, SdkLogger } from "./contracts.js";
import { OnceLog } from "./logger.js";
import type { BusinessAnswer } from "./protocol.js";
import { addHook, type ChangeHook, type HookRun, runHooks, sameValue } from "./run-hooks.js";
import { NetRedis } from "./transport/net-redis.js";

export interface BusinessParamsOptions {
  appId: string;
  env: string;
  /** config-center's business cache; without it values come from config-center. */
  redisUrl?: string;
  /** config-center's CONFIG_REDIS_PREFIX. */
  redisPrefix: string;
  /** config-center's business values for this instance; throws while it cannot be asked (degraded). */
  fromCenter(keys: string[]): Promise<BusinessAnswer>;
  log: SdkLogger;
  resyncMs: number;
  timeoutMs: number;
  hookTimeoutMs: number;
}

/** A parameter nobody has: known, so asking again does not go to Redis or config-center each time. */
const absent = Symbol("absent");
type Entry = ConfigValue | typeof absent;

/**
 * Business parameters (change flow steps 7-9): a local cache the app reads synchronously, filled
 * from the start-up metadata and on demand from the Redis central cache (or config-center without
 * Redis). Pushed changes update it (inline values) or refresh it from the source (values too large
 * to push); a periodic resync compares it with the source so a missed push heals. Listeners per key
 * run after each change, one after another, so modules depending on a parameter re-initialise.
 *
 * The cache holds the keys the app uses: start-up values, values it loaded, and keys it listens to.
 * Pushes of other keys are not kept (config-center pushes every business change of the app's scope).
 * A gray value (sent to this instance alone) is never in Redis, so it is refreshed from config-center.
 */
export class BusinessParams {
  private readonly cache = new Map<string, Entry>();
  private readonly hooks = new Map<string, Set<ChangeHook>>();
  private readonly loading = new Map<string, Promise<ConfigValue | undefined>>();
  private readonly redis: NetRedis | undefined;
  private readonly redisLog: OnceLog;
  private readonly resyncLog: OnceLog;
  private readonly timer: NodeJS.Timeout;
  /** `<prefix>biz:version` at the last resync through Redis. */
  private redisVersion: string | undefined;
  private resyncing: Promise<void> | undefined;
  /** Redis keys holding something else than a business value, each logged once. */
  private readonly garbage = new Set<string>();

  constructor(private readonly o: BusinessParamsOptions) {
    this.redisLog = new OnceLog(o.log);
    this.resyncLog = new OnceLog(o.log);
    if (o.redisUrl)
      this.redis = new NetRedis(
        o.redisUrl,
        { timeoutMs: o.timeoutMs, retryStepMs: 500, retryMaxMs: 10_000 },
        {
          error: (message) => this.redisUnavailable(new Error(message)),
          ready: () => this.redisLog.resolved("Redis business cache reachable again"),
        },
      );
    this.timer = setInterval(() => void this.resync(), o.resyncMs);
    this.timer.unref();
  }

  /** The cached value, or undefined when the key is unknown here (see `load`). */
  get<T = unknown>(key: string): T | undefined {
    const e = this.cache.get(key);
    return e === undefined || e === absent ? undefined : (e.value as T);
  }

  /** The cached value, else the central cache's, else config-center's; undefined when no such parameter exists. */
  async load<T = unknown>(key: string): Promise<T | undefined> {
    const e = this.cache.get(key);
    if (e !== undefined) return e === absent ? undefined : (e.value as T);
    let pending = this.loading.get(key);
    if (!pending) {
      pending = this.read([key], false)
        .then((found) => {
          const v = found.get(key);
          if (!this.cache.has(key)) this.cache.set(key, v ?? absent);
          return v;
        })
        .finally(() => this.loading.delete(key));
      this.loading.set(key, pending);
    }
    return (await pending)?.value as T | undefined;
  }

  /** Registers a listener (or a module's re-initialisation) for `key`; returns a function removing it. */
  onChange<T = unknown>(key: string, listener: ChangeHook<T>): () => void {
    if (!this.cache.has(key)) void this.load(key).catch(() => {});
    return addHook(this.hooks, key, listener as ChangeHook);
  }

  /** Start-up values (metadata or a snapshot): set, and listeners told of those that changed. */
  async replace(values: ConfigValue[]): Promise<void> {
    await this.apply(values, true);
  }

  /**
   * Pushed changes (`all`: keep every key, as for start-up values). Values too large to push
   * (`fetch`) are read from their source; if that fails the old value stays until the resync.
   */
  async apply(changes: ConfigValue[], all = false): Promise<void> {
    const wanted = changes.filter((c) => all || this.tracks(c.key));
    const runs: HookRun[] = [];
    const fetched = new Map<string, ConfigValue | undefined>();
    const toFetch = wanted.filter((c) => c.fetch && !c.deleted);
    for (const centerOnly of [false, true]) {
      const keys = toFetch.filter((c) => Boolean(c.gray) === centerOnly).map((c) => c.key);
      if (!keys.length) continue;
      try {
        for (const [k, v] of await this.read(keys, centerOnly)) fetched.set(k, v);
      } catch (err) {
        this.resyncLog.problem(
          "fetch",
          `could not read pushed business values ${keys.join(", ")} (${(err as Error).message}); keeping the old ones until the next resync`,
        );
      }
    }
    for (const c of wanted) {
      if (c.deleted) this.set(c.key, undefined, runs);
      else if (!c.fetch) this.set(c.key, c, runs);
      // A value too large to push exists: not found where it was read means that read failed.
      else if (fetched.get(c.key)) this.set(c.key, fetched.get(c.key), runs);
    }
    await runHooks("business listener", this.hooks, runs, this.o.log, this.o.hookTimeoutMs);
  }

  /** The cached values, for the snapshot. */
  values(): ConfigValue[] {
    return [...this.cache.values()].filter((e): e is ConfigValue => e !== absent);
  }

  /**
   * Compares the cached keys with their source and applies what differs. Through Redis only when
   * `<prefix>biz:version` moved (and never from an empty Redis, which would look like every value
   * deleted; a value Redis lacks is dropped only on config-center's word); gray values, and
   * everything without Redis, through config-center.
   */
  resync(): Promise<void> {
    this.resyncing ??= this.resyncNow().finally(() => {
      this.resyncing = undefined;
    });
    return this.resyncing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.resyncing?.catch(() => {});
    this.redis?.disconnect();
  }

  private async resyncNow(): Promise<void> {
    const keys = [...new Set([...this.cache.keys(), ...this.hooks.keys()])];
    if (!keys.length) return;
    const gray = new Set(keys.filter((k) => (this.cache.get(k) as ConfigValue | undefined)?.gray === true));
    let viaCenter = keys;
    const runs: HookRun[] = [];
    if (this.redis) {
      try {
        const version = await this.redis.get(`${this.o.redisPrefix}biz:version`);
        if (version !== null) {
          viaCenter = [...gray];
          if (version !== this.redisVersion) {
            const plain = keys.filter((k) => !gray.has(k));
            const found = await this.readRedis(plain);
            const kept = await this.confirmLost(plain, found);
            for (const k of plain) if (!kept.has(k)) this.set(k, found.get(k), runs);
            // Unconfirmed keys are asked again at the next resync, not only when the version moves.
            if (!kept.size) this.redisVersion = version;
          }
        }
      } catch (err) {
        this.redisUnavailable(err);
      }
    }
    if (viaCenter.length) {
      try {
        const found = await this.readCenter(viaCenter);
        for (const k of viaCenter) this.set(k, found.get(k), runs);
        this.resyncLog.resolved("business parameters in sync with config-center again");
      } catch (err) {
        this.resyncLog.problem("resync", `business parameters not resynced: ${(err as Error).message}; the cache keeps its values`);
      }
    }
    await runHooks("business listener", this.hooks, runs, this.o.log, this.o.hookTimeoutMs);
  }

  /**
   * Redis loses keys (eviction under maxmemory, a flush) while `biz:version` still moves, so a
   * cached value Redis lacks, or answers from a less specific scope, is asked of config-center and
   * its answer put in `found`. Returns the keys config-center could not confirm: they keep their value.
   */
  private async confirmLost(keys: string[], found: Map<string, ConfigValue | undefined>): Promise<Set<string>> {
    const lost = keys.filter((k) => {
      const cached = this.cache.get(k);
      if (cached === undefined || cached === absent) return false;
      const now = found.get(k);
      return !now || specificity(now) < specificity(cached);
    });
    if (!lost.length) return new Set();
    try {
      for (const [k, v] of await this.readCenter(lost)) found.set(k, v);
      this.resyncLog.resolved("business parameters in sync with config-center again");
      return new Set();
    } catch (err) {
      this.resyncLog.problem(
        "confirm",
        `Redis business cache lacks ${lost.join(", ")} and config-center could not confirm (${(err as Error).message}); keeping the cached values`,
      );
      return new Set(lost);
    }
  }

  private tracks(key: string): boolean {
    return this.cache.has(key) || this.hooks.has(key);
  }

  /** Sets `key` to `next` (undefined: no such parameter) and notes a listener run if the value changed. */
  private set(key: string, next: ConfigValue | undefined, runs: HookRun[]): void {
    const previous = this.get(key);
    this.cache.set(key, next ?? absent);
    if (!sameValue(previous, next?.value)) runs.push({ key, value: next?.value, previous });
  }

  /**
   * Values by key from Redis, and those it lacks from config-center. Redis holds every released
   * value, so when it answered and config-center cannot, what it lacks is taken as absent; with
   * neither answering the read fails.
   */
  private async read(keys: string[], centerOnly: boolean): Promise<Map<string, ConfigValue | undefined>> {
    let found = new Map<string, ConfigValue | undefined>();
    let rest = keys;
    let redisAnswered = false;
    if (this.redis && !centerOnly) {
      try {
        found = await this.readRedis(keys);
        redisAnswered = true;
        rest = keys.filter((k) => !found.get(k));
      } catch (err) {
        this.redisUnavailable(err);
      }
    }
    if (rest.length) {
      try {
        for (const [k, v] of await this.readCenter(rest)) found.set(k, v);
      } catch (err) {
        if (!redisAnswered) throw err;
      }
    }
    return found;
  }

  private redisUnavailable(err: unknown): void {
    const why = (err as Error).message;
    // One line for the outage, whatever each failed command says.
    this.redisLog.problem("redis", `Redis business cache unavailable (${why}); reading config-center instead`);
  }

  /** `<prefix>biz:<app|*>:<env|*>:<key>`: the most specific of the four scopes wins. */
  private async readRedis(keys: string[]): Promise<Map<string, ConfigValue | undefined>> {
    const { appId, env, redisPrefix: p } = this.o;
    const scopes: Array<[string, string]> = [
      [appId, env],
      [appId, ""],
      ["", env],
      ["", ""],
    ];
    const found = new Map<string, ConfigValue | undefined>();
    for (let i = 0; i < keys.length; i += 250) {
      const batch = keys.slice(i, i + 250);
      const names = batch.flatMap((k) => scopes.map(([a, e]) => `${p}biz:${a || "*"}:${e || "*"}:${k}`));
      const raw = await this.redis!.mget(...names);
      this.redisLog.resolved("Redis business cache reachable again");
      batch.forEach((key, j) => {
        for (let s = 0; s < scopes.length; s++) {
          const text = raw[j * scopes.length + s];
          if (text == null) continue;
          const v = parseCached(text);
          if (!v) {
            const name = names[j * scopes.length + s]!;
            if (!this.garbage.has(name)) this.o.log.warn(`Redis holds something that is not a business value under ${name}; ignoring it`);
            this.garbage.add(name);
            continue;
          }
          const [app, e] = scopes[s]!;
          found.set(key, { kind: "business", key, app, env: e, category: v.category, revision: v.revision, gray: false, value: v.value });
          return;
        }
        found.set(key, undefined);
      });
    }
    return found;
  }

  private async readCenter(keys: string[]): Promise<Map<string, ConfigValue | undefined>> {
    const found = new Map<string, ConfigValue | undefined>();
    for (let i = 0; i < keys.length; i += 1000) {
      const answer = await this.o.fromCenter(keys.slice(i, i + 1000));
      for (const k of answer.missing) found.set(k, undefined);
      for (const v of answer.values) found.set(v.key, v);
    }
    return found;
  }
}

/** Which of the four scopes a value comes from: app and env (3) beats app (2) beats env (1) beats shared (0). */
function specificity(v: ConfigValue): number {
  return (v.app ? 2 : 0) + (v.env ? 1 : 0);
}

/** A central cache entry, `{"revision","category","value"}`, or undefined for anything else. */
function parseCached(text: string): { revision?: number; category?: string; value: unknown } | undefined {
  try {
    const v = JSON.parse(text) as { revision?: unknown; category?: unknown; value?: unknown };
    if (typeof v !== "object" || v === null || !("value" in v)) return undefined;
    return {
      revision: typeof v.revision === "number" ? v.revision : undefined,
      category: typeof v.category === "string" ? v.category : undefined,
      value: v.value,
    };
  } catch {
    return undefined;
  }
}
