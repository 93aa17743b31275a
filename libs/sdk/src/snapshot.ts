import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { ConfigValue, SdkLogger } from "./contracts.js";
import { isConfigValue } from "./protocol.js";

/** The last good configuration, as an instance starts from it while config-center is down. */
export interface SnapshotContent {
  /** config-center's version the values are at. */
  version: number;
  savedAt: string;
  technical: ConfigValue[];
  business: ConfigValue[];
  governance: ConfigValue[];
}

export interface SnapshotOptions {
  dir: string;
  appId: string;
  env: string;
  /** The app secret: the snapshot holds resolved technical values (passwords), so it is sealed with a key derived from it. */
  secret: string;
  log: SdkLogger;
  /** What to write: the configuration in use when the write happens. */
  collect(): SnapshotContent;
}

const magic = Buffer.from("OPSNAP1");
const saltBytes = 16;
const ivBytes = 12;
const tagBytes = 16;

/**
 * The local snapshot (Apollo's client cache): the last configuration config-center gave, on disk,
 * so a restart during an outage starts on it instead of on local configuration alone.
 *
 * Sealed with AES-256-GCM under a key derived (HKDF-SHA256, random salt per write) from the app
 * secret, with the app id and environment as additional data: a snapshot of another app or
 * environment, or one written with another secret, does not open. Written to a temporary file
 * (mode 0600) and renamed over the old one, so a crash mid-write leaves the previous snapshot.
 * Writes are coalesced: while one is under way, later requests become one more write.
 */
export class SnapshotStore {
  readonly path: string;
  private writing: Promise<void> | undefined;
  private again = false;
  private failed = false;

  constructor(private readonly o: SnapshotOptions) {
    const safe = (s: string) => s.replace(/[^A-Za-z0-9_.-]/g, "_");
    this.path = join(o.dir, `${safe(o.appId)}.${safe(o.env)}.snapshot`);
  }

  /** The snapshot, or undefined when there is none or it cannot be used (logged in one line). */
  async load(): Promise<SnapshotContent | undefined> {
    let sealed: Buffer;
    try {
      sealed = await readFile(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT")
        this.o.log.warn(`snapshot ${this.path} ignored: ${(err as Error).message}`, { path: this.path });
      return undefined;
    }
    try {
      return this.open(sealed);
    } catch (err) {
      this.o.log.warn(`snapshot ${this.path} ignored: ${(err as Error).message}`, { path: this.path });
      return undefined;
    }
  }

  /** Writes the current configuration soon (coalesced with writes already asked for). */
  save(): Promise<void> {
    if (this.writing) {
      this.again = true;
      return this.writing;
    }
    this.writing = (async () => {
      do {
        this.again = false;
        await this.write(this.o.collect());
      } while (this.again);
    })().finally(() => {
      this.writing = undefined;
    });
    return this.writing;
  }

  /** Waits for a write under way. */
  async flush(): Promise<void> {
    await this.writing;
  }

  private async write(content: SnapshotContent): Promise<void> {
    const tmp = `${this.path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    try {
      await mkdir(this.o.dir, { recursive: true, mode: 0o700 });
      const file = await open(tmp, "wx", 0o600);
      try {
        await file.writeFile(this.seal(content));
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(tmp, this.path);
      if (this.failed) this.o.log.info(`snapshot ${this.path} written again`);
      this.failed = false;
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      if (!this.failed) this.o.log.warn(`snapshot ${this.path} not written: ${(err as Error).message}`, { path: this.path });
      this.failed = true;
    }
  }

  private key(salt: Buffer): Buffer {
    return Buffer.from(hkdfSync("sha256", this.o.secret, salt, "opsplane-sdk snapshot v1", 32));
  }

  private aad(): Buffer {
    return Buffer.concat([magic, Buffer.from(`${this.o.appId}\u0000${this.o.env}`)]);
  }

  private seal(content: SnapshotContent): Buffer {
    const salt = randomBytes(saltBytes);
    const iv = randomBytes(ivBytes);
    const cipher = createCipheriv("aes-256-gcm", this.key(salt), iv);
    cipher.setAAD(this.aad());
    const body = Buffer.concat([cipher.update(JSON.stringify(content)), cipher.final()]);
    return Buffer.concat([magic, salt, iv, cipher.getAuthTag(), body]);
  }

  private open(sealed: Buffer): SnapshotContent {
    const head = magic.length + saltBytes + ivBytes + tagBytes;
    if (sealed.length < head || !sealed.subarray(0, magic.length).equals(magic)) throw new Error("not an SDK snapshot");
    const ivAt = magic.length + saltBytes;
    const tagAt = ivAt + ivBytes;
    const salt = sealed.subarray(magic.length, ivAt);
    const iv = sealed.subarray(ivAt, tagAt);
    const tag = sealed.subarray(tagAt, head);
    const decipher = createDecipheriv("aes-256-gcm", this.key(salt), iv);
    decipher.setAAD(this.aad());
    decipher.setAuthTag(tag);
    let text: string;
    try {
      text = Buffer.concat([decipher.update(sealed.subarray(head)), decipher.final()]).toString("utf8");
    } catch {
      throw new Error("it does not open with this app's secret, app id and environment (another app's, or damaged)");
    }
    const c = JSON.parse(text) as Partial<SnapshotContent>;
    const values = (v: unknown, kind: ConfigValue["kind"]) => Array.isArray(v) && v.every((x) => isConfigValue(x) && x.kind === kind);
    if (
      !Number.isSafeInteger(c.version) ||
      !values(c.technical, "technical") ||
      !values(c.business, "business") ||
      !values(c.governance, "governance")
    )
      throw new Error("its content is not a configuration");
    return c as SnapshotContent;
  }
}
