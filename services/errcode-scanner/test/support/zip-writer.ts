import { crc32, deflateRawSync } from "node:zlib";

export interface ZipEntryInput {
  name: string;
  data: Buffer;
  /** Stored (no compression), as Spring Boot stores nested jars. */
  store?: boolean;
  /** Lie about the inflated size in the headers (a zip bomb's trick). */
  declaredSize?: number;
  /**
   * Write no data: point this entry's directory record at entry `sameDataAs`'s local header and
   * data (an overlapping-entry zip bomb: every entry inflates the same few bytes).
   */
  sameDataAs?: number;
  /** Written as the entry's deflate data instead of `data` deflated (corrupt or empty streams). */
  deflated?: Buffer;
}

/**
 * A minimal zip writer for tests and the bench: it writes whatever names it is given
 * (including unsafe ones such as `../evil.class`), which `jar` refuses to.
 */
export function writeZip(entries: ZipEntryInput[]): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  const written: Array<{ offset: number; body: Buffer; crc: number }> = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, "utf8");
    const shared = e.sameDataAs === undefined ? undefined : written[e.sameDataAs];
    const body = shared ? shared.body : e.store ? e.data : (e.deflated ?? deflateRawSync(e.data));
    const crc = shared ? shared.crc : crc32(e.data);
    const method = e.store ? 0 : 8;
    written.push({ offset: shared ? shared.offset : offset, body, crc });
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(e.declaredSize ?? e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    if (!shared) locals.push(local, name, body);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4);
    cd.writeUInt16LE(20, 6);
    cd.writeUInt16LE(0x0800, 8);
    cd.writeUInt16LE(method, 10);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(body.length, 20);
    cd.writeUInt32LE(e.declaredSize ?? e.data.length, 24);
    cd.writeUInt16LE(name.length, 28);
    cd.writeUInt32LE(shared ? shared.offset : offset, 42);
    central.push(cd, name);
    if (!shared) offset += 30 + name.length + body.length;
  }
  const cdBuf = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cdBuf.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cdBuf, end]);
}
