import { AppError } from "@opsplane/platform";
import type { FastifyReply } from "fastify";
import type { WindowCounter } from "./window-counter.js";

/**
 * Limits what anyone may do without signing in, opening sessions and filing reports: per client
 * address and for all addresses together, per minute. A forged `Origin` passes the origin check
 * from curl, so the origin list alone does not bound these.
 */
export class PublicLimiter {
  constructor(
    private readonly counter: WindowCounter,
    private readonly perAddress: number,
    private readonly global: number,
  ) {}

  /** Counts the call; throws 429 with `Retry-After` when the address's or everyone's allowance for `what` is used up. */
  async take(what: "session" | "report", address: string, reply: FastifyReply): Promise<void> {
    const [mine, all] = await this.counter.add([`public:${what}:address:${address}`, `public:${what}:all`]);
    const over =
      mine!.count > this.perAddress
        ? { by: "from this address", w: mine! }
        : all!.count > this.global
          ? { by: "in all", w: all! }
          : undefined;
    if (!over) return;
    reply.header("retry-after", String(over.w.resetsIn));
    const noun = what === "session" ? "assistance sessions opened" : "problem reports filed";
    throw new AppError(429, "rate_limited", `too many ${noun} ${over.by} this minute; try again in ${over.w.resetsIn} s`);
  }
}
