import type { ConfigClient } from "./config-client.js";
import { backoffDelay } from "./retry.js";

export interface LockOptions {
  /** How long the lock is held unless released first (config-center frees it then); 100 ms to 24 h, default 30 s. */
  leaseMs?: number;
  /** How long to keep trying while another holder has it; 0 (the default) tries once. */
  waitMs?: number;
}

/** A held lock. */
export interface LockLease {
  name: string;
  /**
   * Grows with every acquisition of this lock: pass it to what the lock protects, which refuses a
   * token lower than one it has seen, so a holder whose lease ran out cannot write after the next.
   */
  fencingToken: number;
  /** When the lease ends by this process's clock (measured from before the request, so never late). */
  expiresAt: Date;
  /** Still within the lease. */
  held(): boolean;
  /** A new lease from now (same fencing token); false when the lock was no longer this lease's. */
  renew(leaseMs?: number): Promise<boolean>;
  /** Frees the lock; false when it was no longer this lease's (it ran out, or an admin forced it free). */
  release(): Promise<boolean>;
}

/** The lock is held by someone else (after `waitMs`). */
export class LockBusyError extends Error {
  override name = "LockBusyError";
}

/**
 * A distributed lock kept by config-center (seed module 2024): visible there with its holder, and
 * releasable by an admin. Leases with a fencing token; `renew()` extends one, and `withLock` renews
 * its lease every third of it while `fn` runs, so work longer than the lease keeps the lock.
 */
export class DistributedLock {
  constructor(
    private readonly client: ConfigClient,
    readonly name: string,
    /** Who holds it, as config-center shows it (after the app id): host, process and a random part. */
    private readonly holder: string,
  ) {}

  /** The lease, or null when another holder kept it for `waitMs`. */
  async acquire(o: LockOptions = {}): Promise<LockLease | null> {
    const leaseMs = o.leaseMs ?? 30_000;
    const deadline = Date.now() + (o.waitMs ?? 0);
    for (let attempt = 0; ; attempt++) {
      const asked = Date.now();
      const answer = await this.client.acquireLock(this.name, this.holder, leaseMs);
      if (answer.acquired) return this.lease(answer.lock.fencingToken, new Date(asked + leaseMs));
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise((r) => setTimeout(r, Math.min(left, 25 + backoffDelay(attempt, 50, 1_000))));
    }
  }

  /** Runs `fn` holding the lock and releases it after; throws LockBusyError when it could not be had. */
  async withLock<T>(fn: (lease: LockLease) => Promise<T> | T, o: LockOptions = {}): Promise<T> {
    const lease = await this.acquire(o);
    if (!lease) throw new LockBusyError(`lock ${this.name} is held by another holder`);
    const leaseMs = o.leaseMs ?? 30_000;
    // A failed renewal (config-center unreachable) is tried again at the next tick; `held()` says when the lease ran out.
    const renewal = setInterval(() => void lease.renew(leaseMs).catch(() => false), leaseMs / 3);
    renewal.unref();
    try {
      return await fn(lease);
    } finally {
      clearInterval(renewal);
      await lease.release().catch(() => false);
    }
  }

  private lease(fencingToken: number, expiresAt: Date): LockLease {
    const lease: LockLease = {
      name: this.name,
      fencingToken,
      expiresAt,
      held: () => Date.now() < lease.expiresAt.getTime(),
      release: () => this.client.releaseLock(this.name, fencingToken),
      renew: async (leaseMs = 30_000) => {
        const asked = Date.now();
        const answer = await this.client.acquireLock(this.name, this.holder, leaseMs);
        if (!answer.acquired || answer.lock.fencingToken !== fencingToken) {
          // Taken anew after this lease ran out: that acquisition is not this lease's; give it back.
          if (answer.acquired) await this.client.releaseLock(this.name, answer.lock.fencingToken).catch(() => false);
          return false;
        }
        lease.expiresAt = new Date(asked + leaseMs);
        return true;
      },
    };
    return lease;
  }
}
