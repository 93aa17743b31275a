import type { Registered, Registry } from "./registry.js";

/** One (rule, id) a held callback waits for. */
export interface HeldId {
  rule: string;
  id: string;
}

/** What a hold ended with: the registration that came (and which of the awaited ids it was), or none. */
export type HoldOutcome =
  | { registered: Registered; rule: string; id: string; heldMs: number }
  | { registered: undefined; heldMs: number; full?: true; cutShort?: true };

export interface RegistrationHold {
  /**
   * Waits up to `ms` for any of `ids` to be registered. A registration received by this replica
   * wakes the callback at once; one received by another replica is seen by the next poll of the
   * registry (every `pollMs`). Past `maxHeld` callbacks held at once, a callback is not held (`full`).
   */
  wait(ids: HeldId[], ms: number): Promise<HoldOutcome>;
  /** Called for every registration this replica stores. */
  registered(registered: Registered, rule: string, id: string): void;
  /** How many callbacks are held right now. */
  readonly held: number;
  /** Ends every hold (as expired, `cutShort`), so callbacks are answered before shutdown. */
  close(): void;
}

interface Waiter {
  ids: HeldId[];
  started: number;
  timer: NodeJS.Timeout;
  done(outcome: HoldOutcome): void;
}

const keyOf = (rule: string, id: string) => `${rule}\u0000${id}`;

/**
 * Callbacks held while their registration may still be in flight (a rule's `holdMs`). One poll
 * timer serves every held callback: each poll looks all their ids up at once (one Redis MGET).
 */
export function createRegistrationHold(o: {
  registry: Registry;
  pollMs: number;
  maxHeld: number;
  /** Told the number held after each change, and each hold's outcome. */
  onHeld(count: number): void;
  onOutcome(outcome: "registered" | "expired" | "full"): void;
}): RegistrationHold {
  const byKey = new Map<string, Set<Waiter>>();
  const waiters = new Set<Waiter>();
  let poller: NodeJS.Timeout | undefined;
  let polling = false;

  const finish = (w: Waiter, outcome: HoldOutcome) => {
    if (!waiters.delete(w)) return;
    clearTimeout(w.timer);
    for (const x of w.ids) {
      const set = byKey.get(keyOf(x.rule, x.id));
      set?.delete(w);
      if (set && !set.size) byKey.delete(keyOf(x.rule, x.id));
    }
    if (!waiters.size && poller) {
      clearInterval(poller);
      poller = undefined;
    }
    o.onHeld(waiters.size);
    o.onOutcome(outcome.registered === undefined ? "expired" : "registered");
    w.done(outcome);
  };

  const registered = (found: Registered, rule: string, id: string) => {
    const set = byKey.get(keyOf(rule, id));
    if (!set) return;
    for (const w of [...set]) finish(w, { registered: found, rule, id, heldMs: Date.now() - w.started });
  };

  const poll = async () => {
    if (polling) return;
    polling = true;
    try {
      const keys = [...byKey.keys()];
      const found = await Promise.all(
        keys.map(async (k) => {
          const [rule, id] = k.split("\u0000") as [string, string];
          try {
            return { rule, id, registered: await o.registry.lookup(rule, id) };
          } catch {
            // The registry cannot answer now; the next poll, or the hold's end, decides.
            return { rule, id, registered: undefined };
          }
        }),
      );
      for (const x of found) if (x.registered) registered(x.registered, x.rule, x.id);
    } finally {
      polling = false;
    }
  };

  return {
    wait(ids, ms) {
      const started = Date.now();
      if (waiters.size >= o.maxHeld) {
        o.onOutcome("full");
        return Promise.resolve({ registered: undefined, heldMs: 0, full: true });
      }
      return new Promise<HoldOutcome>((resolve) => {
        const w: Waiter = {
          ids,
          started,
          done: resolve,
          timer: setTimeout(() => finish(w, { registered: undefined, heldMs: Date.now() - started }), ms),
        };
        waiters.add(w);
        for (const x of ids) {
          const k = keyOf(x.rule, x.id);
          const set = byKey.get(k) ?? new Set<Waiter>();
          byKey.set(k, set);
          set.add(w);
        }
        o.onHeld(waiters.size);
        poller ??= setInterval(() => void poll(), o.pollMs);
      });
    },
    registered,
    get held() {
      return waiters.size;
    },
    close() {
      for (const w of [...waiters]) finish(w, { registered: undefined, heldMs: Date.now() - w.started, cutShort: true });
    },
  };
}
