import { createReadStream } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { crc32, inflateRawSync } from "node:zlib";
import yauzl from "yauzl";
import { openZipFile } from "./block-reader.js";
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
  const st = await lstat(artifact).catch(() => undefined);
  if (!st) throw new ArtifactError("artifact not found", artifact);
  if (st.isDirectory()) await walker.directory(artifact);
  else if (st.isFile()) {
    const zip = await openZipFile(artifact, zipOptions).catch((err: Error) => {
      throw new ArtifactError(`not a readable zip archive (${err.message})`, path.basename(artifact));
    });
    await walker.zip(zip, path.basename(artifact), 0, undefined);
  } else throw new ArtifactError("not a file or directory", artifact);
}

const zipOptions = { lazyEntries: true, autoClose: true, validateEntrySizes: true, strictFileNames: false, decodeStrings: true };

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
          const zip = await openZipFile(full, zipOptions).catch((err: Error) => {
            throw new ArtifactError(`not a readable zip archive (${err.message})`, `${container.name}/${rel}`);
          });
          await this.zip(zip, `${container.name}/${rel}`, 1, container.id);
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

  async zip(zip: yauzl.ZipFile, name: string, depth: number, parentId: number | undefined): Promise<void> {
    const container = this.newContainer(name, containerType(name), depth, parentId);
    try {
      for await (const entry of entriesOf(zip, name)) {
        const where = `${name}!/${entry.fileName}`;
        this.countEntry(where);
        if (entry.fileName.endsWith("/")) continue;
        const isClass = entry.fileName.endsWith(".class") && !entry.fileName.endsWith("module-info.class");
        const isNested = nestedArchive.test(entry.fileName);
        if (!isClass && !isNested) continue;
        this.checkRatio(entry, where);
        if (isNested && depth + 1 > this.limits.maxNestingDepth)
          throw new ArtifactError(`archives nested deeper than ${this.limits.maxNestingDepth} levels`, where);
        const cap = isClass ? this.limits.maxClassBytes : this.limits.maxNestedArchiveBytes;
        if (entry.uncompressedSize > cap)
          throw new ArtifactError(`entry of ${entry.uncompressedSize} bytes exceeds the ${cap}-byte limit`, where);
        const data = await readEntry(zip, entry, cap, where);
        this.addInflated(data.length, where);
        if (isClass) await this.emitClass(container, entry.fileName, where, data);
        else {
          const inner = await yauzl.fromBufferPromise(data, zipOptions).catch((err: Error) => {
            throw new ArtifactError(`nested archive is not a readable zip (${err.message})`, where);
          });
          await this.zip(inner, where, depth + 1, container.id);
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

/** yauzl's lazy entry events as an async iterator; errors name the archive. */
async function* entriesOf(zip: yauzl.ZipFile, name: string): AsyncGenerator<yauzl.Entry> {
  while (true) {
    const next = await new Promise<yauzl.Entry | undefined>((resolve, reject) => {
      const cleanup = () => {
        zip.off("entry", onEntry);
        zip.off("end", onEnd);
        zip.off("error", onError);
      };
      const onEntry = (e: yauzl.Entry) => {
        cleanup();
        resolve(e);
      };
      const onEnd = () => {
        cleanup();
        resolve(undefined);
      };
      const onError = (err: Error) => {
        cleanup();
        reject(new ArtifactError(describeZipError(err), name));
      };
      zip.on("entry", onEntry);
      zip.on("end", onEnd);
      zip.on("error", onError);
      zip.readEntry();
    });
    if (!next) return;
    yield next;
  }
}

function describeZipError(err: Error): string {
  const m = /^(absolute path|invalid relative path|invalid characters in fileName): (.*)$/.exec(err.message);
  if (m) return `unsafe entry name "${m[2]}" (${m[1]})`;
  return err.message;
}

const SMALL_ENTRY = 4 * 1024 * 1024;

/**
 * One entry's bytes. Small deflated entries are inflated synchronously (bounded output, size
 * and CRC checked): one async inflate stream per class file costs more than the inflation.
 */
async function readEntry(zip: yauzl.ZipFile, entry: yauzl.Entry, cap: number, where: string): Promise<Buffer> {
  const small = entry.compressionMethod === 8 && entry.compressedSize <= SMALL_ENTRY;
  const stream = await zip.openReadStreamPromise(entry, small ? { decompress: false } : undefined).catch((err: Error) => {
    throw new ArtifactError(err.message, where);
  });
  if (!small) return readBounded(stream, cap, where);
  const raw = await readBounded(stream, SMALL_ENTRY, where);
  let data: Buffer;
  try {
    data = inflateRawSync(raw, { maxOutputLength: cap + 1 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ERR_BUFFER_TOO_LARGE") throw new ArtifactError(`entry inflates past the ${cap}-byte limit`, where);
    throw new ArtifactError(`cannot be inflated (${e.message})`, where);
  }
  if (data.length > cap) throw new ArtifactError(`entry inflates past the ${cap}-byte limit`, where);
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
