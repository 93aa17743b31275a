import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { AppError, ConfigError, outageRetryAfterSeconds } from "@opsplane/platform";

/** A sealed secret as stored: the id of the key that sealed it, then AES-256-GCM's iv, ciphertext and tag (base64). */
export interface Sealed {
  kid: string;
  iv: string;
  ct: string;
  tag: string;
}

/**
 * A secret sealed with a key this replica does not hold (mid-rotation): 503 with Retry-After, like a
 * dependency out of reach, since another replica (or this one, given the key) opens it.
 */
export class SecretKeyMissing extends AppError {
  constructor(message: string) {
    super(503, "unavailable", message, undefined, outageRetryAfterSeconds);
  }
}

/**
 * Seals and opens resource secrets with AES-256-GCM. Each sealed value names its key, so a new key
 * can seal new values while the old ones still open until `rotate` re-seals them. The value's place
 * (resource and field) is bound as additional data: a sealed value copied to another field or
 * resource does not open.
 */
export class SecretBox {
  private constructor(
    private readonly keys: Map<string, Buffer>,
    readonly activeKeyId: string,
  ) {}

  /** Reads SECRET_KEYS (`kid:base64,…`); undefined when none are configured. */
  static fromConfig(spec: string, activeKeyId: string | undefined): SecretBox | undefined {
    const keys = new Map<string, Buffer>();
    for (const entry of spec
      .split(/[,\n]/)
      .map((s) => s.trim())
      .filter(Boolean)) {
      const colon = entry.indexOf(":");
      const kid = entry.slice(0, colon);
      const key = Buffer.from(entry.slice(colon + 1), "base64");
      if (colon < 1 || !/^[A-Za-z0-9._-]{1,64}$/.test(kid) || key.length !== 32)
        throw new ConfigError(`invalid environment variable SECRET_KEYS: entry ${keys.size + 1} must be keyId:base64 of 32 bytes`);
      keys.set(kid, key);
    }
    if (keys.size === 0) return undefined;
    const active = activeKeyId ?? keys.keys().next().value!;
    if (!keys.has(active)) throw new ConfigError(`invalid environment variable SECRET_ACTIVE_KEY_ID: no key "${active}" in SECRET_KEYS`);
    return new SecretBox(keys, active);
  }

  seal(plain: string, place: string): Sealed {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.keys.get(this.activeKeyId)!, iv);
    cipher.setAAD(Buffer.from(place));
    const ct = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
    return { kid: this.activeKeyId, iv: iv.toString("base64"), ct: ct.toString("base64"), tag: cipher.getAuthTag().toString("base64") };
  }

  open(sealed: Sealed, place: string): string {
    const key = this.keys.get(sealed.kid);
    if (!key) throw new SecretKeyMissing(`secret of ${place} is sealed with key "${sealed.kid}", which is not in SECRET_KEYS`);
    const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(sealed.iv, "base64"));
    decipher.setAAD(Buffer.from(place));
    decipher.setAuthTag(Buffer.from(sealed.tag, "base64"));
    return Buffer.concat([decipher.update(Buffer.from(sealed.ct, "base64")), decipher.final()]).toString("utf8");
  }
}
