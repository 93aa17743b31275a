import assert from "node:assert/strict";
import { createHook } from "node:async_hooks";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { deflateRawSync } from "node:zlib";
import { Inflate } from "fflate";
import { extractErrorCodes } from "../src/scan/engine.js";
import { inflateRawBounded } from "../src/scan/inflate.js";
import { ArtifactError } from "../src/scan/limits.js";
import { type CompiledFixtures, compileFixtures, entriesOf, jarOf } from "./support/java.js";
import { writeZip } from "./support/zip-writer.js";

const BASE = "com.bank.core.BizException";
let fx: CompiledFixtures;
let core: { dir: string };
let app: { dir: string };

/** Codes found in the java8 fixtures wherever they are packed. */
const java8Codes = [
  "ACC0001",
  "ACC0002",
  "ACC0003",
  "ACC0004",
  "ACC0005",
  "ACC0008",
  "ACC0009",
  "DBE0001",
  "INN0001",
  "NST0001",
  "PAY0001",
  "PAY0002",
  "PAY0003",
  "SYS0001",
  "SYS0002",
  "VAL0001",
  "VAL0002",
  "acc-1",
];

/** Bytes deflate cannot shrink (a SHA-256 chain), so their compressed size is about their size. */
function noise(size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash("sha256").update("seed").digest();
  for (let at = 0; at < size; at += block.length) {
    block.copy(out, at);
    block = createHash("sha256").update(block).digest();
  }
  return out;
}

function write(name: string, data: Buffer): string {
  const file = path.join(fx.root, name);
  writeFileSync(file, data);
  return file;
}

const codesOf = async (file: string, limits = {}) => [
  ...new Set((await extractErrorCodes(file, { bases: [BASE], limits })).errorCodes.map((e) => e.code)),
];

async function rejects(file: string, pattern: RegExp, limits = {}): Promise<void> {
  await assert.rejects(extractErrorCodes(file, { bases: [BASE], limits }), (err: Error) => {
    assert.ok(err instanceof ArtifactError, `expected an ArtifactError, got ${err.stack}`);
    assert.match(err.message, pattern);
    return true;
  });
}

describe("artifact formats", () => {
  before(() => {
    fx = compileFixtures();
    // Split the fixtures: the core library (base class, enum, factories) and the application.
    core = { dir: path.join(fx.java8, "com", "bank", "core") };
    app = { dir: path.join(fx.java8, "com", "bank", "app") };
  });
  after(() => fx.cleanup());

  const coreJar = () => writeZip(entriesOf(core.dir, "com/bank/core/"));

  test("a war with WEB-INF/classes and the library in WEB-INF/lib", async () => {
    const war = write(
      "app.war",
      writeZip([...entriesOf(app.dir, "WEB-INF/classes/com/bank/app/"), { name: "WEB-INF/lib/core.jar", data: coreJar() }]),
    );
    const r = await extractErrorCodes(war, { bases: [BASE] });
    assert.deepEqual([...new Set(r.errorCodes.map((e) => e.code))], java8Codes);
    assert.equal(r.stats.containers, 2);
    const frozen = r.errorCodes.find((e) => e.code === "ACC0002");
    assert.deepEqual(
      frozen?.locations.map((l) => l.artifact),
      ["app.war!/WEB-INF/classes/com/bank/app/TransferService.class", "app.war!/WEB-INF/lib/core.jar!/com/bank/core/Errors.class"],
    );
  });

  test("a nested jar of more than 64 KiB compressed (inflated in slices) is read whole", async () => {
    const lib = writeZip([...entriesOf(core.dir, "com/bank/core/"), { name: "assets/noise.bin", data: noise(400_000) }]);
    const war = write(
      "sliced.war",
      writeZip([...entriesOf(app.dir, "WEB-INF/classes/com/bank/app/"), { name: "WEB-INF/lib/core.jar", data: lib }]),
    );
    assert.deepEqual(await codesOf(war), java8Codes);
  });

  test("a Spring Boot fat jar with stored nested jars in BOOT-INF/lib", async () => {
    const boot = write(
      "boot.jar",
      writeZip([...entriesOf(app.dir, "BOOT-INF/classes/com/bank/app/"), { name: "BOOT-INF/lib/core.jar", data: coreJar(), store: true }]),
    );
    assert.deepEqual(await codesOf(boot), java8Codes);
  });

  test("an ear holding a war and a shared library", async () => {
    const war = writeZip(entriesOf(app.dir, "WEB-INF/classes/com/bank/app/"));
    const ear = write(
      "app.ear",
      writeZip([
        { name: "web.war", data: war },
        { name: "lib/core.jar", data: coreJar() },
      ]),
    );
    const r = await extractErrorCodes(ear, { bases: [BASE] });
    assert.deepEqual([...new Set(r.errorCodes.map((e) => e.code))], java8Codes);
    assert.ok(
      r.errorCodes.some((e) => e.locations.some((l) => l.artifact === "app.ear!/web.war!/WEB-INF/classes/com/bank/app/Validator.class")),
    );
  });

  test("a multi-release jar: classes under META-INF/versions/17 are read too", async () => {
    const mr = write(
      "mr.jar",
      writeZip([
        { name: "META-INF/MANIFEST.MF", data: Buffer.from("Manifest-Version: 1.0\nMulti-Release: true\n") },
        ...entriesOf(fx.java8),
        ...entriesOf(fx.java17, "META-INF/versions/17/"),
      ]),
    );
    const r = await extractErrorCodes(mr, { bases: [BASE] });
    const trf = r.errorCodes.find((e) => e.code === "TRF0001");
    assert.equal(trf?.locations[0].artifact, "mr.jar!/META-INF/versions/17/com/bank/modern/Transfer.class");
    assert.equal(r.errorCodes.length, 25);
  });

  test("an artifact given as a symbolic link is read through it, under the link's name", async () => {
    const target = write("core-1.0.jar", jarOf({ dir: fx.java8 }));
    const link = path.join(fx.root, "core.jar");
    symlinkSync(target, link);
    const r = await extractErrorCodes(link, { bases: [BASE] });
    assert.deepEqual([...new Set(r.errorCodes.map((e) => e.code))], java8Codes);
    assert.equal(r.errorCodes[0].locations[0].artifact.split("!/")[0], "core.jar");
  });

  test("a plain directory of classes, with a jar inside it", async () => {
    const dir = path.join(fx.root, "exploded");
    mkdirSync(path.join(dir, "lib"), { recursive: true });
    for (const e of entriesOf(app.dir, "com/bank/app/")) {
      mkdirSync(path.join(dir, path.dirname(e.name)), { recursive: true });
      writeFileSync(path.join(dir, e.name), e.data);
    }
    writeFileSync(path.join(dir, "lib", "core.jar"), coreJar());
    assert.deepEqual(await codesOf(dir), java8Codes);
  });
});

describe("bad input", () => {
  before(() => {
    fx = compileFixtures();
  });
  after(() => fx.cleanup());

  const goodJar = () => jarOf({ dir: fx.java8 });

  test("not a zip", async () => {
    await rejects(write("notes.jar", Buffer.from("this is not a zip archive at all")), /^notes\.jar: not a readable zip archive/);
  });

  test("a truncated zip", async () => {
    const jar = goodJar();
    await rejects(write("cut.jar", jar.subarray(0, Math.floor(jar.length * 0.6))), /^cut\.jar: not a readable zip archive/);
  });

  test("an entry name climbing out with ..", async () => {
    const evil = write(
      "evil.jar",
      writeZip([{ name: "../../etc/Evil.class", data: readFileSync(path.join(fx.java8, "com/bank/app/Validator.class")) }]),
    );
    await rejects(evil, /^evil\.jar: unsafe entry name "\.\.\/\.\.\/etc\/Evil\.class"/);
  });

  test("an absolute entry name", async () => {
    await rejects(
      write("abs.jar", writeZip([{ name: "/tmp/Abs.class", data: Buffer.from("x") }])),
      /^abs\.jar: unsafe entry name "\/tmp\/Abs\.class" \(absolute path\)/,
    );
  });

  test("zip bomb: an entry whose compression ratio is absurd", async () => {
    const bomb = write("bomb.jar", writeZip([{ name: "Bomb.class", data: Buffer.alloc(8 * 1024 * 1024) }]));
    await rejects(bomb, /^bomb\.jar!\/Bomb\.class: compression ratio \d+ exceeds 200/);
  });

  test("zip bomb: headers that lie about the inflated size", async () => {
    const liar = write("liar.jar", writeZip([{ name: "Liar.class", data: Buffer.alloc(100_000, 7), declaredSize: 1000 }]));
    await rejects(liar, /^liar\.jar!\/Liar\.class: inflates to more than the 1000 bytes its header says$/);
    // Over 64 KiB of deflate is inflated in slices: the lie is caught after the first.
    const big = write("big-liar.jar", writeZip([{ name: "Big.class", data: noise(300_000), declaredSize: 1000 }]));
    await rejects(big, /^big-liar\.jar!\/Big\.class: inflates to more than the 1000 bytes its header says$/);
  });

  test("a liar declaring a kilobyte is caught after inflating at most about 16 MB, not the 66 MB of a 64 KiB slice", () => {
    // 100 MB of zeros deflate to about 100 KB, over the one-call limit: inflated in slices.
    const raw = deflateRawSync(Buffer.alloc(100 * 1024 * 1024));
    let inflated = 0;
    const { push } = Inflate.prototype;
    Inflate.prototype.push = function (this: Inflate, chunk: Uint8Array, final?: boolean) {
      const ondata = this.ondata;
      this.ondata = (data, last) => {
        inflated += data.length;
        ondata(data, last);
      };
      push.call(this, chunk, final);
      this.ondata = ondata;
    };
    try {
      assert.equal(inflateRawBounded(raw, 1024).length, 1025);
    } finally {
      Inflate.prototype.push = push;
    }
    assert.ok(inflated > 1024 && inflated <= 17 * 1024 * 1024, `${inflated} bytes inflated`);
  });

  test("an entry whose deflate data is corrupt or missing names the entry and why", async () => {
    const data = Buffer.from("abc".repeat(2000));
    const deflated = deflateRawSync(data);
    // The first block header's type bits (1-2) set to 3, a type deflate does not have.
    deflated[0] |= 0b110;
    await rejects(
      write("bad-entry.jar", writeZip([{ name: "Bad.class", data, deflated }])),
      /^bad-entry\.jar!\/Bad\.class: cannot be inflated \(invalid block type\)$/,
    );
    await rejects(
      write("empty-entry.jar", writeZip([{ name: "Empty.class", data, deflated: Buffer.alloc(0) }])),
      /^empty-entry\.jar!\/Empty\.class: cannot be inflated \(no deflate data\)$/,
    );
  });

  test("reading an artifact makes no native zlib handle", async () => {
    // On Node 24, a scan thread stopped at its heap limit between a zlib handle's making and its
    // initialisation aborted the whole process ("close before init"): the service, not the scan.
    const war = write("zlib.war", writeZip([{ name: "WEB-INF/lib/app.jar", data: goodJar() }]));
    const made = new Set<string>();
    const hook = createHook({ init: (_id, type) => made.add(type) }).enable();
    try {
      assert.deepEqual(await codesOf(war), java8Codes);
    } finally {
      hook.disable();
    }
    assert.ok(!made.has("ZLIB"), `handles made: ${[...made].join(", ")}`);
  });

  test("zip bomb: total inflated size and entry count are bounded", async () => {
    await rejects(write("big.jar", goodJar()), /inflated size exceeds 10000 bytes/, { maxTotalInflatedBytes: 10_000 });
    await rejects(write("many.jar", goodJar()), /more than 5 entries/, { maxEntries: 5 });
  });

  test("zip bomb: entries that overlap (20,000 entries sharing one kernel) are refused at once, before anything is inflated", async () => {
    // Each entry is under the per-entry ratio threshold (60 KB); together they would inflate 1.2 GB.
    const kernel = Buffer.alloc(60 * 1024);
    const entries = Array.from({ length: 20_000 }, (_, i) => ({ name: `k/K${i}.class`, data: kernel, sameDataAs: i ? 0 : undefined }));
    const bomb = write("overlap.jar", writeZip(entries));
    assert.ok(bomb.length > 0 && readFileSync(bomb).length < 2 * 1024 * 1024, "a file of about a megabyte");
    const started = performance.now();
    await rejects(bomb, /^overlap\.jar: zip bomb: entries k\/K0\.class and k\/K1\.class overlap/);
    assert.ok(performance.now() - started < 30_000, "refused without inflating 1.2 GB");
  });

  test("zip bomb: many entries of modest ratio are refused when the archive as a whole inflates past the ratio", async () => {
    // Separate entries (no overlap), each 60 KB of zeros: the per-entry ratio check does not look at them.
    const entries = Array.from({ length: 300 }, (_, i) => ({ name: `z/Z${i}.class`, data: Buffer.alloc(60 * 1024) }));
    await rejects(write("ratio.jar", writeZip(entries)), /^ratio\.jar: zip bomb: \d+ bytes inflate to more than \d+ \(ratio over 200\)/);
  });

  test("zip bomb: nesting depth is bounded", async () => {
    let inner = goodJar();
    for (let i = 0; i < 4; i++) inner = writeZip([{ name: `level${i}.jar`, data: inner, store: true }]);
    await rejects(
      write("deep.jar", inner),
      /^deep\.jar!\/level3\.jar!\/level2\.jar!\/level1\.jar!\/level0\.jar: archives nested deeper than 3 levels/,
    );
    assert.deepEqual((await codesOf(path.join(fx.root, "deep.jar"), { maxNestingDepth: 4 })).length, java8Codes.length);
  });

  test("a nested jar that is not a zip names the nested entry", async () => {
    await rejects(
      write("outer.jar", writeZip([{ name: "BOOT-INF/lib/broken.jar", data: Buffer.from("garbage") }])),
      /^outer\.jar!\/BOOT-INF\/lib\/broken\.jar: nested archive is not a readable zip/,
    );
  });

  test("malformed and unsupported class files are reported by entry and the scan goes on", async () => {
    const valid = readFileSync(path.join(fx.java8, "com/bank/app/Validator.class"));
    const future = Buffer.from(valid);
    future.writeUInt16BE(70, 6); // Java 26
    const jar = write(
      "mixed.jar",
      writeZip([
        ...entriesOf(fx.java8),
        { name: "com/bank/Garbage.class", data: Buffer.from("definitely not bytecode") },
        { name: "com/bank/Truncated.class", data: valid.subarray(0, 200) },
        { name: "com/bank/Future.class", data: future },
      ]),
    );
    const r = await extractErrorCodes(jar, { bases: [BASE] });
    assert.deepEqual(
      r.problems.map((p) => p.entry),
      ["mixed.jar!/com/bank/Garbage.class", "mixed.jar!/com/bank/Truncated.class", "mixed.jar!/com/bank/Future.class"],
    );
    assert.match(r.problems[0].message, /bad magic/);
    assert.match(r.problems[1].message, /malformed class file/);
    assert.match(r.problems[2].message, /unsupported class file version 70/);
    assert.deepEqual([...new Set(r.errorCodes.map((e) => e.code))], java8Codes);
  });

  test("a missing artifact", async () => {
    await rejects(path.join(fx.root, "nope.jar"), /nope\.jar: artifact not found/);
  });
});
