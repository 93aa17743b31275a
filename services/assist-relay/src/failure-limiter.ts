import type { WindowCounter } from "./window-counter.js";

/** Whom a failed key redemption is counted against: the API key first, then the client address. */
export interface KeyClient {
  principal: string;
  address: string;
}

export interface Blocked {
  /** "API key" or "address": which count is used up. */
  by: string;
  retryAfterSeconds: number;
}

/**
 * Counts failed key redemptions so nobody can guess keys across many sessions. Each API key has
 * its own allowance (`ASSIST_CLIENT_MAX_FAILURES`), so one developer's mistakes never lock out a
 * colleague behind the same proxy; an address has a larger one (`ASSIST_ADDRESS_MAX_FAILURES`),
 * so one client cannot go on by switching API keys.
 */
export class FailureLimiter {
  constructor(
    private readonly counter: WindowCounter,
    private readonly maxPerPrincipal: number,
    private readonly maxPerAddress: number,
  ) {}

  private names(c: KeyClient) {
    return [`key-failures:principal:${c.principal}`, `key-failures:address:${c.address}`];
  }

  /**
   * Counts an attempt as failed before it is tried, so attempts made at once cannot all pass a check
   * none of them has counted yet (40 concurrent wrong keys all got 403 against a limit of 10): it is
   * blocked when the count with it is over the allowance. `succeeded` takes an attempt back.
   */
  async attempt(c: KeyClient): Promise<Blocked | undefined> {
    const [principal, address] = await this.counter.add(this.names(c));
    if (principal!.count > this.maxPerPrincipal) return { by: "API key", retryAfterSeconds: principal!.resetsIn };
    if (address!.count > this.maxPerAddress) return { by: "address", retryAfterSeconds: address!.resetsIn };
    return undefined;
  }

  /** The attempt was not a wrong key (it worked, or failed for another reason): it does not count. */
  async succeeded(c: KeyClient): Promise<void> {
    await this.counter.remove(this.names(c));
  }
}
