import type { SdkLogger } from "./contracts.js";

/** A rebuild hook or a business listener: told the new value (undefined: none any more) and the previous one. */
export type ChangeHook<T = unknown> = (value: T | undefined, previous: T | undefined) => void | Promise<void>;

export interface HookRun {
  key: string;
  value: unknown;
  previous: unknown;
}

/**
 * Runs the app's hooks for changed keys one after another, in the order the changes came. A hook
 * that throws is logged (one line naming the key) and the others still run; a hook still running
 * after `timeoutMs` is logged and no longer waited for, so one stuck hook cannot hold every later
 * change (and its acknowledgement) back.
 */
export async function runHooks(
  what: "rebuild hook" | "business listener",
  hooks: Map<string, Set<ChangeHook>>,
  runs: HookRun[],
  log: SdkLogger,
  timeoutMs: number,
): Promise<void> {
  for (const run of runs) {
    for (const hook of [...(hooks.get(run.key) ?? [])]) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), timeoutMs);
        timer.unref();
      });
      try {
        const outcome = await Promise.race([Promise.resolve().then(() => hook(run.value, run.previous)), late]);
        if (outcome === "late")
          log.error(`${what} for ${run.key} still running after ${timeoutMs} ms; later changes no longer wait for it`, { key: run.key });
      } catch (err) {
        log.error(`${what} for ${run.key} failed: ${(err as Error)?.message ?? String(err)}`, { key: run.key });
      } finally {
        clearTimeout(timer);
      }
    }
  }
}

/** Adds a hook under `key`; the returned function removes it. */
export function addHook(hooks: Map<string, Set<ChangeHook>>, key: string, hook: ChangeHook): () => void {
  const set = hooks.get(key) ?? new Set();
  hooks.set(key, set);
  set.add(hook);
  return () => set.delete(hook);
}

/** Two configuration values are the same when their JSON is. */
export const sameValue = (a: unknown, b: unknown) => a === b || JSON.stringify(a) === JSON.stringify(b);
