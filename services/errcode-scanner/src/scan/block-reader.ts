import { close, closeSync, createReadStream, fstatSync, openSync, readSync } from "node:fs";
import { Readable } from "node:stream";
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

  override _readStreamForRange(start: number, end: number): Readable {
    if (end - start > BLOCK) return createReadStream("", { fd: this.fd, start, end: end - 1, autoClose: false });
    try {
      return Readable.from([Buffer.from(this.bytes(start, end))]);
    } catch (err) {
      return new Readable({
        read() {
          this.destroy(err as Error);
        },
      });
    }
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

/** Opens a zip file on disk for entry-by-entry reading. */
export async function openZipFile(file: string, options: yauzl.Options): Promise<yauzl.ZipFile> {
  const fd = openSync(file, "r");
  try {
    const size = fstatSync(fd).size;
    return await yauzl.fromRandomAccessReaderPromise(new BlockReader(fd, size), size, options);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}
