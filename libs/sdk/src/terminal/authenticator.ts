import { type KeyObject, verify } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { signatureHeaders, signedBytes } from "./signing.js";

/** A refusal's `kind` groups refusals for the log (one line per kind every 10 s). */
export type Verdict = { ok: true; keyId: string } | { ok: false; status: 401 | 429 | 503; kind: string; reason: string };

export interface AuthenticatorOptions {
  keys: Map<string, KeyObject>;
  /** This instance's id, once registered: requests signed for another instance are refused. */
  instanceId: () => string | undefined;
  /** How far a request's timestamp may be from this clock, default 60 s either way. */
  windowMs?: number;
  /** Nonces remembered at most (default 10 000): beyond that, signed requests are refused until old ones expire. */
  nonceCapacity?: number;
  now?: () => number;
}

const noncePattern = /^[A-Za-z0-9_-]{16,128}$/;

/**
 * Checks a terminal request: a key this instance trusts signed it, for this instance, within the
 * time window, and its nonce was not seen in the window (a replay). Only requests whose signature
 * verifies are remembered, so no one without a key can fill the nonce cache.
 */
export class Authenticator {
  private readonly seen = new Map<string, number>();
  private readonly windowMs: number;
  private readonly capacity: number;
  private readonly now: () => number;

  constructor(private readonly options: AuthenticatorOptions) {
    this.windowMs = options.windowMs ?? 60_000;
    this.capacity = options.nonceCapacity ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  check(method: string, path: string, headers: IncomingHttpHeaders, body: Buffer): Verdict {
    const header = (name: string) => {
      const v = headers[name];
      return typeof v === "string" ? v : undefined;
    };
    if (this.options.keys.size === 0)
      return refuse("no-keys", "no terminal keys are configured (OPSPLANE_TERMINAL_KEYS): every request is refused");
    for (const name of Object.values(signatureHeaders))
      if (!header(name)) return refuse("unsigned", `unsigned request: header ${name} is missing`);
    const keyId = header(signatureHeaders.keyId)!;
    const stamp = header(signatureHeaders.timestamp)!;
    const nonce = header(signatureHeaders.nonce)!;
    const instance = header(signatureHeaders.instance)!;
    const signature = header(signatureHeaders.signature)!;
    const timestamp = Number(stamp);
    if (!/^\d{1,16}$/.test(stamp)) return refuse("timestamp", `${signatureHeaders.timestamp} must be milliseconds since the epoch`);
    const now = this.now();
    if (Math.abs(now - timestamp) > this.windowMs)
      return refuse(
        "timestamp",
        `timestamp ${timestamp} is ${Math.round((now - timestamp) / 1000)} s from this instance's clock (allowed ±${this.windowMs / 1000} s)`,
      );
    if (!noncePattern.test(nonce)) return refuse("nonce", `${signatureHeaders.nonce} must be 16 to 128 characters of [A-Za-z0-9_-]`);
    const self = this.options.instanceId();
    if (self === undefined)
      return {
        ok: false,
        status: 503,
        kind: "unregistered",
        reason: "this instance is not registered yet: it has no id to check the request against",
      };
    if (instance !== self) return refuse("instance", `signed for instance ${JSON.stringify(instance)}, this is ${JSON.stringify(self)}`);
    const key = this.options.keys.get(keyId);
    if (!key) return refuse("key", `unknown key id ${JSON.stringify(keyId)}`);
    const bytes = signedBytes({ method, path, timestamp, nonce: nonce, instanceId: self, body });
    let valid = false;
    try {
      valid = verify(null, bytes, key, Buffer.from(signature, "base64"));
    } catch {
      valid = false;
    }
    if (!valid) return refuse("signature", `signature does not verify with key ${keyId}`);
    if (this.seen.has(nonce)) return refuse("replay", `nonce ${nonce} was already used: a replayed request`);
    if (this.seen.size >= this.capacity) this.forgetExpired(now);
    if (this.seen.size >= this.capacity)
      return {
        ok: false,
        status: 429,
        kind: "capacity",
        reason: `more than ${this.capacity} signed requests in the replay window; retry later`,
      };
    this.seen.set(nonce, timestamp + this.windowMs);
    return { ok: true, keyId: keyId };
  }

  /** A nonce needs remembering only while its timestamp is still inside the window. */
  private forgetExpired(now: number): void {
    for (const [nonce, until] of this.seen) if (until < now) this.seen.delete(nonce);
  }
}

function refuse(kind: string, reason: string): Verdict {
  return { ok: false, status: 401, kind, reason };
}
