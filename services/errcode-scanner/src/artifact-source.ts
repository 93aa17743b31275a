import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { writeFile } from "node:fs/promises";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";

export class ArtifactSourceError extends Error {}

/** Whether a URL lies under one of the allow-listed repository prefixes (after normalisation). */
export function allowedUrl(raw: string, prefixes: readonly string[]): URL | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return undefined;
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return undefined;
  if (url.username || url.password) return undefined;
  return prefixes.some((p) => url.href.startsWith(p)) ? url : undefined;
}

const sha256Hex = /^[0-9a-f]{64}$/;

export function checkSha256(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const v = value.toLowerCase();
  if (!sha256Hex.test(v)) throw new ArtifactSourceError("sha256 must be 64 hexadecimal characters");
  return v;
}

/**
 * Downloads an artifact to `file`, refusing redirects (they could leave the allow-list), bodies
 * over `maxBytes` and a SHA-256 other than `expected`. Returns the SHA-256 it computed.
 */
export async function download(
  url: URL,
  file: string,
  o: { maxBytes: number; timeoutMs: number; expected?: string; signal?: AbortSignal },
): Promise<string> {
  let res: Response;
  try {
    const timeout = AbortSignal.timeout(o.timeoutMs);
    res = await fetch(url, { redirect: "error", signal: o.signal ? AbortSignal.any([timeout, o.signal]) : timeout });
  } catch (err) {
    throw new ArtifactSourceError(`download of ${url.href} failed: ${(err as Error).message}`);
  }
  if (!res.ok || !res.body) throw new ArtifactSourceError(`download of ${url.href} failed: HTTP ${res.status}`);
  const declared = Number(res.headers.get("content-length") ?? 0);
  if (declared > o.maxBytes) throw new ArtifactSourceError(`artifact of ${declared} bytes exceeds the ${o.maxBytes}-byte limit`);
  const hash = createHash("sha256");
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > o.maxBytes) return cb(new ArtifactSourceError(`artifact exceeds the ${o.maxBytes}-byte limit`));
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  await pipeline(Readable.fromWeb(res.body as unknown as WebReadableStream), meter, createWriteStream(file));
  return verify(hash.digest("hex"), o.expected);
}

/** Writes an uploaded artifact and returns its SHA-256 (checked against `expected` when given). */
export async function saveUpload(content: Uint8Array, file: string, expected?: string): Promise<string> {
  await writeFile(file, content);
  return verify(createHash("sha256").update(content).digest("hex"), expected);
}

function verify(actual: string, expected: string | undefined): string {
  if (expected && actual !== expected) throw new ArtifactSourceError(`sha256 mismatch: expected ${expected}, got ${actual}`);
  return actual;
}
