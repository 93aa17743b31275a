import { close, closeSync, fstatSync, openSync, readSync } from "node:fs";
import yauzl from "yauzl";

const BLOCK = 1024 * 1024;
const MAX_BLOCKS = 4;

/**
 * A random-access reader for yauzl that serves headers and small entries from a few cached
 * 1 MiB blocks of the file (bounded memory), instead of one asynchronous read per header:
 * on jars of thousands of small classes that round-trip dominated the scan.
 */
class BlockReader extends yauzl.RandomAccessReader {
  private blocks: Array<{ start: number; buf: Buffer }> = [];

  constructor(
    private readonly fd: number,
    private readonly size: number,
  ) {
    super();
  }

  /** Bytes `start`–`end` of the file: a view into a cached block when they fit in one, else read. */
  range(start: number, end: number): Buffer {
    if (end > this.size) throw new Error("unexpected end of file");
    if (end - start <= BLOCK) return this.bytes(start, end);
    const buf = Buffer.allocUnsafe(end - start);
    if (readSync(this.fd, buf, 0, buf.length, start) < buf.length) throw new Error("unexpected end of file");
    return buf;
  }

  private bytes(start: number, end: number): Buffer {
    for (const b of this.blocks)
      if (start >= b.start && end <= b.start + b.buf.length) return b.buf.subarray(start - b.start, end - b.start);
    const length = Math.min(BLOCK, this.size - start);
    if (length < end - start) throw new Error("unexpected end of file");
    const buf = Buffer.allocUnsafe(length);
    const n = readSync(this.fd, buf, 0, length, start);
    if (n < end - start) throw new Error("unexpected end of file");
    this.blocks.push({ start, buf: buf.subarray(0, n) });
    if (this.blocks.length > MAX_BLOCKS) this.blocks.shift();
    return buf.subarray(0, end - start);
  }

  override read(buffer: Buffer, offset: number, length: number, position: number, callback: (err: Error | null) => void): void {
    try {
      if (length > BLOCK) {
        const n = readSync(this.fd, buffer, offset, length, position);
        if (n < length) throw new Error("unexpected end of file");
      } else this.bytes(position, position + length).copy(buffer, offset);
      process.nextTick(callback, null);
    } catch (err) {
      process.nextTick(callback, err as Error);
    }
  }

  override close(callback: (err: Error | null) => void): void {
    close(this.fd, (err) => callback(err ?? null));
  }
}

/** Bytes `start`–`end` of an archive, read synchronously (entries are read straight from them). */
export type ByteRange = (start: number, end: number) => Buffer;

/** Opens a zip file on disk for entry-by-entry reading: its directory, its bytes and its size. */
export async function openZipFile(file: string, options: yauzl.Options): Promise<{ zip: yauzl.ZipFile; bytes: ByteRange; size: number }> {
  const fd = openSync(file, "r");
  try {
    const size = fstatSync(fd).size;
    const reader = new BlockReader(fd, size);
    const zip = await yauzl.fromRandomAccessReaderPromise(reader, size, options);
    return { zip, bytes: (start, end) => reader.range(start, end), size };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}
