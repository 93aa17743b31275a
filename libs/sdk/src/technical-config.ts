import type { ConfigValue, SdkLogger } from "./contracts.js";
import { addHook, type ChangeHook, type HookRun, runHooks, sameValue } from "./run-hooks.js";

/**
 * Technical configuration in two layers (seed step 9): what config-center sends (metadata, then
 * pushed changes) above the app's own local configuration. A key config-center deletes falls back
 * to the local value. A value config-center could not resolve (`error`) keeps the one in use.
 *
 * Rebuild hooks (change flow step 6) run after a change is applied, one after another. A hook that
 * throws does not undo the change: `get` answers what config-center sent (the next push, the
 * snapshot and the other keys all build on it), and the failure is logged naming the key, for the
 * app's owners to see that their component still runs on the old setting.
 */
export class TechnicalConfig {
  private readonly remote = new Map<string, ConfigValue>();
  private readonly hooks = new Map<string, Set<ChangeHook>>();

  constructor(
    private readonly local: Record<string, unknown>,
    private readonly log: SdkLogger,
    private readonly hookTimeoutMs: number,
  ) {}

  get<T = unknown>(key: string): T | undefined;
  get<T>(key: string, fallback: T): T;
  get<T>(key: string, fallback?: T): T | undefined {
    const v = this.remote.has(key) ? this.remote.get(key)!.value : Object.hasOwn(this.local, key) ? this.local[key] : undefined;
    return v === undefined ? fallback : (v as T);
  }

  /** Every key with a value, config-center's above local. */
  entries(): Record<string, unknown> {
    const all: Record<string, unknown> = { ...this.local };
    for (const [k, c] of this.remote) all[k] = c.value;
    return all;
  }

  /** Registers a rebuild hook for `key`, run after each change of its value; returns a function removing it. */
  onChange<T = unknown>(key: string, hook: ChangeHook<T>): () => void {
    return addHook(this.hooks, key, hook as ChangeHook);
  }

  /** Config-center's whole technical set (metadata, a snapshot): keys it no longer has fall back to local. */
  async replace(values: ConfigValue[]): Promise<void> {
    const gone = [...this.remote.keys()].filter((k) => !values.some((v) => v.key === k));
    await this.apply([...values, ...gone.map((key) => ({ kind: "technical" as const, key, app: "", env: "", deleted: true }))]);
  }

  /** Pushed changes: applied, then the hooks of the keys whose value changed run. */
  async apply(changes: ConfigValue[]): Promise<void> {
    const runs: HookRun[] = [];
    for (const c of changes) {
      const previous = this.get(c.key);
      if (c.error !== undefined) {
        this.log.warn(`config-center could not resolve technical value ${c.key} (${c.error}); keeping the one in use`, { key: c.key });
        continue;
      }
      if (c.deleted || c.value === undefined) this.remote.delete(c.key);
      else this.remote.set(c.key, c);
      const value = this.get(c.key);
      if (!sameValue(value, previous)) runs.push({ key: c.key, value, previous });
    }
    await runHooks("rebuild hook", this.hooks, runs, this.log, this.hookTimeoutMs);
  }

  /** config-center's layer, for the snapshot. */
  values(): ConfigValue[] {
    return [...this.remote.values()];
  }
}
