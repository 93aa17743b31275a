import type { Readable } from "node:stream";

export interface BoundedRead {
  /** What was read: the whole body when `complete`, else its first bytes (over the limit). */
  head: Buffer;
  complete: boolean;
}

/**
 * Reads a stream up to `limit` bytes without consuming more than that: when
 * the body is larger, the stream is paused with the rest unread, so the whole
 * body can still be forwarded (head, then the remainder).
 */
export function readBounded(stream: Readable, limit: number): Promise<BoundedRead> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (complete: boolean) => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("error", onError);
      resolve({ head: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), complete });
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > limit) {
        stream.pause();
        done(false);
      }
    };
    const onEnd = () => done(true);
    const onError = (err: Error) => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      reject(err);
    };
    if (stream.readableEnded) return resolve({ head: Buffer.alloc(0), complete: true });
    stream.on("data", onData);
    stream.once("end", onEnd);
    stream.once("error", onError);
  });
}

/** The head already read, then the rest of the (paused) stream. */
export async function* headThenRest(head: Buffer, rest: Readable): AsyncIterable<Buffer> {
  yield head;
  for await (const chunk of rest) yield chunk as Buffer;
}
