import { createReadStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { crc32 } from "node:zlib";
import { storableText } from "@opsplane/store/storable";
import yauzl from "yauzl";
import { type ByteRange, openZipFile } from "./block-reader.js";
import { inflateRawBounded } from "./inflate.js";
import { ArtifactError, type ScanLimits } from "./limits.js";

export type ContainerType = "jar" | "war" | "ear" | "zip" | "directory";

/** One archive or directory classes were read from; nested jars have a parent. */
export interface Container {
  id: number;
  /** Path from the artifact root, nested archives joined by `!/`. */
  name: string;
  type: ContainerType;
  parentId?: number;
  depth: number;
}

export interface ClassEntry {
  container: Container;
  /** Entry name inside its container, e.g. `com/acme/Foo.class` or `META-INF/versions/11/com/acme/Foo.class`. */
  name: string;
  /** Full location: container name + `!/` + entry name. */
  location: string;
  /** Java release of a multi-release jar's `META-INF/versions/N/` entry. */
  release?: number;
  data: Buffer;
}

export interface ArchiveVisitor {
  container(c: Container): void;
  /** Awaited before the next entry is read, so a slow consumer holds the scan back rather than memory. */
  classEntry(e: ClassEntry): void | Promise<void>;
}

const nestedArchive = /\.(jar|war|ear|zip)$/i;
const versioned = /^META-INF\/versions\/(\d+)\//;

function containerType(name: string): ContainerType {
  const ext = path.extname(name).slice(1).toLowerCase();
  return ext === "war" || ext === "ear" || ext === "jar" ? ext : "zip";
}

/**
 * Walks an artifact (zip-format file or directory of classes) and hands every class file to the
 * visitor, one entry at a time: archives are read entry by entry from disk; a nested archive is
 * buffered alone (bounded by the limits) and read the same way.
 */
export async function walkArtifact(artifact: string, limits: ScanLimits, visitor: ArchiveVisitor): Promise<void> {
  const walker = new Walker(limits, visitor);
  // The artifact itself may be a symbolic link (Debian's unversioned jar names are); links inside a directory are not followed.
  const st = await stat(artifact).catch(() => undefined);
  if (!st) throw new ArtifactError("artifact not found", artifact);
  if (st.isDirectory()) await walker.directory(artifact);
  else if (st.isFile()) {
    const archive = await openZipFile(artifact, zipOptions).catch((err: Error) => {
      throw new ArtifactError(`not a readable zip archive (${err.message})`, path.basename(artifact));
    });
    await walker.zip(archive, path.basename(artifact), 0, undefined);
  } else throw new ArtifactError("not a file or directory", artifact);
}

// Not autoClose: entries are read from the file after yauzl has listed them all.
const zipOptions = { lazyEntries: true, autoClose: false, validateEntrySizes: true, strictFileNames: false, decodeStrings: true };

class Walker {
  private nextId = 1;
  private entries = 0;
  private inflated = 0;

  constructor(
    private readonly limits: ScanLimits,
    private readonly visitor: ArchiveVisitor,
  ) {}

  private newContainer(name: string, type: ContainerType, depth: number, parentId?: number): Container {
    const c: Container = { id: this.nextId++, name, type, depth, parentId };
    this.visitor.container(c);
    return c;
  }

  private countEntry(where: string): void {
    if (++this.entries > this.limits.maxEntries) throw new ArtifactError(`more than ${this.limits.maxEntries} entries`, where);
  }

  async directory(root: string): Promise<void> {
    const container = this.newContainer(path.basename(root), "directory", 0);
    const walk = async (dir: string): Promise<void> => {
      for (const d of await readdir(dir, { withFileTypes: true })) {
        const full = path.join(dir, d.name);
        const rel = path.relative(root, full).split(path.sep).join("/");
        this.countEntry(`${container.name}/${rel}`);
        // Symbolic links are not followed: they could lead out of the artifact.
        if (d.isDirectory()) await walk(full);
        else if (d.isFile() && rel.endsWith(".class")) {
          const data = await readBounded(createReadStream(full), this.limits.maxClassBytes, `${container.name}/${rel}`);
          this.addInflated(data.length, `${container.name}/${rel}`);
          await this.emitClass(container, rel, `${container.name}/${rel}`, data);
        } else if (d.isFile() && nestedArchive.test(rel)) {
          const archive = await openZipFile(full, zipOptions).catch((err: Error) => {
            throw new ArtifactError(`not a readable zip archive (${err.message})`, `${container.name}/${rel}`);
          });
          await this.zip(archive, `${container.name}/${rel}`, 1, container.id);
        }
      }
    };
    await walk(root);
  }

  private addInflated(n: number, where: string): void {
    this.inflated += n;
    if (this.inflated > this.limits.maxTotalInflatedBytes)
      throw new ArtifactError(`inflated size exceeds ${this.limits.maxTotalInflatedBytes} bytes`, where);
  }

  private async emitClass(container: Container, name: string, location: string, data: Buffer): Promise<void> {
    const m = versioned.exec(name);
    await this.visitor.classEntry({ container, name, location, release: m ? Number(m[1]) : undefined, data });
  }

  async zip(archive: Archive, name: string, depth: number, parentId: number | undefined): Promise<void> {
    const container = this.newContainer(name, containerType(name), depth, parentId);
    const { zip, bytes, size } = archive;
    try {
      const entries = await listEntries(zip, name, (entry) => this.countEntry(`${name}!/${entry.fileName}`));
      refuseOverlaps(entries, name);
      let inflatedHere = 0;
      for (const entry of entries) {
        // A zip's names are whatever bytes it holds: a NUL in one failed the scan when its rows were stored.
        const entryName = storableText(entry.fileName);
        const where = `${name}!/${entryName}`;
        if (entryName.endsWith("/")) continue;
        const isClass = entryName.endsWith(".class") && !entryName.endsWith("module-info.class");
        const isNested = nestedArchive.test(entryName);
        if (!isClass && !isNested) continue;
        this.checkRatio(entry, where);
        if (isNested && depth + 1 > this.limits.maxNestingDepth)
          throw new ArtifactError(`archives nested deeper than ${this.limits.maxNestingDepth} levels`, where);
        const cap = isClass ? this.limits.maxClassBytes : this.limits.maxNestedArchiveBytes;
        if (entry.uncompressedSize > cap)
          throw new ArtifactError(`entry of ${entry.uncompressedSize} bytes exceeds the ${cap}-byte limit`, where);
        const data = readEntry(bytes, entry, cap, where, isClass);
        this.addInflated(data.length, where);
        // Many entries of modest ratio add up too: the archive as a whole is held to the same ratio.
        inflatedHere += data.length;
        if (inflatedHere > this.limits.ratioMinBytes && inflatedHere > this.limits.maxCompressionRatio * size)
          throw new ArtifactError(
            `zip bomb: ${size} bytes inflate to more than ${inflatedHere} (ratio over ${this.limits.maxCompressionRatio})`,
            name,
          );
        if (isClass) await this.emitClass(container, entryName, where, data);
        else {
          const inner = await yauzl.fromBufferPromise(data, zipOptions).catch((err: Error) => {
            throw new ArtifactError(`nested archive is not a readable zip (${err.message})`, where);
          });
          await this.zip({ zip: inner, bytes: bufferRange(data), size: data.length }, where, depth + 1, container.id);
        }
      }
    } finally {
      zip.close();
    }
  }

  private checkRatio(entry: yauzl.Entry, where: string): void {
    if (entry.uncompressedSize < this.limits.ratioMinBytes) return;
    const ratio = entry.uncompressedSize / Math.max(1, entry.compressedSize);
    if (ratio > this.limits.maxCompressionRatio)
      throw new ArtifactError(`compression ratio ${Math.round(ratio)} exceeds ${this.limits.maxCompressionRatio} (zip bomb?)`, where);
  }
}

/**
 * An archive's directory, entry by entry as yauzl reads it (`visit` may throw to stop: the entry
 * limit); errors name the archive.
 */
function listEntries(zip: yauzl.ZipFile, name: string, visit: (e: yauzl.Entry) => void): Promise<yauzl.Entry[]> {
  return new Promise((resolve, reject) => {
    const entries: yauzl.Entry[] = [];
    zip.on("entry", (e: yauzl.Entry) => {
      try {
        visit(e);
      } catch (err) {
        reject(err);
        return;
      }
      entries.push(e);
      zip.readEntry();
    });
    zip.once("end", () => resolve(entries));
    zip.once("error", (err: Error) => reject(new ArtifactError(describeZipError(err), name)));
    zip.readEntry();
  });
}

function describeZipError(err: Error): string {
  const m = /^(absolute path|invalid relative path|invalid characters in fileName): (.*)$/.exec(err.message);
  if (m) return `unsafe entry name "${m[2]}" (${m[1]})`;
  return err.message;
}

/** An archive's directory and its bytes. */
interface Archive {
  zip: yauzl.ZipFile;
  bytes: ByteRange;
  size: number;
}

const bufferRange =
  (data: Buffer): ByteRange =>
  (start, end) => {
    if (end > data.length) throw new Error("unexpected end of archive");
    return data.subarray(start, end);
  };

/** The smallest a local file header is: its fixed part. */
const LOCAL_HEADER = 30;

/**
 * Refuses entries whose data overlap: no archive tool writes them, and an overlapping-entry zip
 * bomb (a few MB that inflate to GBs, each entry's ratio unremarkable) is made of nothing else.
 */
function refuseOverlaps(entries: readonly yauzl.Entry[], name: string): void {
  const byOffset = entries
    .filter((e) => !e.fileName.endsWith("/"))
    .sort((a, b) => a.relativeOffsetOfLocalHeader - b.relativeOffsetOfLocalHeader);
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1];
    const cur = byOffset[i];
    if (cur.relativeOffsetOfLocalHeader < prev.relativeOffsetOfLocalHeader + LOCAL_HEADER + prev.compressedSize)
      throw new ArtifactError(
        `zip bomb: entries ${prev.fileName} and ${cur.fileName} overlap (an archive whose entries share their data; not read)`,
        name,
      );
  }
}

/**
 * One entry's bytes, read straight from the archive's bytes and inflated in one call (output
 * bounded by the declared size, size and CRC checked): a stream per class file costs more than the
 * inflation.
 */
function readEntry(bytes: ByteRange, entry: yauzl.Entry, cap: number, where: string, isClass: boolean): Buffer {
  if (entry.isEncrypted()) throw new ArtifactError("encrypted entries cannot be read", where);
  if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8)
    throw new ArtifactError(`unsupported compression method ${entry.compressionMethod}`, where);
  let raw: Buffer;
  try {
    const at = entry.relativeOffsetOfLocalHeader;
    const header = bytes(at, at + LOCAL_HEADER);
    if (header.readUInt32LE(0) !== 0x04034b50) throw new Error("no local file header where the directory points");
    const start = at + LOCAL_HEADER + header.readUInt16LE(26) + header.readUInt16LE(28);
    raw = bytes(start, start + entry.compressedSize);
  } catch (err) {
    throw new ArtifactError(`cannot be read (${(err as Error).message})`, where);
  }
  let data: Buffer;
  if (entry.compressionMethod === 0) {
    if (raw.length > cap) throw new ArtifactError(`entry inflates past the ${cap}-byte limit`, where);
    // A stored class is kept after the scan reads on: copy it out of the archive's bytes.
    data = isClass ? Buffer.from(raw) : raw;
  } else
    try {
      data = inflateRawBounded(raw, entry.uncompressedSize);
    } catch (err) {
      throw new ArtifactError(`cannot be inflated (${(err as Error).message})`, where);
    }
  if (data.length > entry.uncompressedSize)
    throw new ArtifactError(`inflates to more than the ${entry.uncompressedSize} bytes its header says`, where);
  if (data.length !== entry.uncompressedSize)
    throw new ArtifactError(`inflated to ${data.length} bytes, header says ${entry.uncompressedSize}`, where);
  if (crc32(data) !== entry.crc32) throw new ArtifactError("CRC mismatch (corrupt entry)", where);
  return data;
}

/** Reads a stream into one buffer, refusing more than `cap` bytes (declared sizes can lie). */
async function readBounded(stream: Readable, cap: number, where: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      size += (chunk as Buffer).length;
      if (size > cap) {
        stream.destroy();
        throw new ArtifactError(`entry inflates past the ${cap}-byte limit`, where);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof ArtifactError) throw err;
    throw new ArtifactError(`cannot be read (${(err as Error).message})`, where);
  }
  return Buffer.concat(chunks, size);
}
