import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { loadConfig } from "@opsplane/platform";
import { z } from "zod";

const db = "postgres://u@127.0.0.1/db";

test("defaults fill what is unset and the service's own variables are typed", () => {
  const c = loadConfig(8083, { PUSH_INTERVAL_MS: z.coerce.number().int().default(500) }, { DATABASE_URL: db });
  assert.equal(c.PORT, 8083);
  assert.equal(c.BUS, "postgres");
  assert.equal(c.PUSH_INTERVAL_MS, 500);
});

test("a bad variable is named with what was wrong", () => {
  assert.throws(
    () => loadConfig(8083, {}, { DATABASE_URL: db, PORT: "eighty" }),
    /^Error: invalid environment variable PORT: .*\(got "eighty"\)$/,
  );
  assert.throws(() => loadConfig(8083, {}, { DATABASE_URL: db, BUS: "rabbit" }), /invalid environment variable BUS/);
});

test("a missing variable is named, and kafka needs its brokers", () => {
  assert.throws(() => loadConfig(8083, {}, {}), /missing environment variable DATABASE_URL/);
  assert.throws(() => loadConfig(8083, {}, { DATABASE_URL: db, BUS: "kafka" }), /KAFKA_BROKERS: required when BUS=kafka/);
});

test("secrets in bad values are not echoed", () => {
  assert.throws(
    () => loadConfig(8083, {}, { DATABASE_URL: "mysql://user:hunter2@db" }),
    (err: Error) => err.message.includes("DATABASE_URL") && !err.message.includes("hunter2"),
  );
});

test("a service started with a bad variable exits 1 after one line naming it", () => {
  const r = spawnSync(process.execPath, ["services/config-center/dist/main.js"], {
    env: { PATH: process.env.PATH, DATABASE_URL: db, PORT: "eighty" },
    encoding: "utf8",
    timeout: 20_000,
  });
  assert.equal(r.status, 1);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /^config-center: invalid environment variable PORT/);
});

test("a malformed AUTH_API_KEYS stops start-up with one line, without echoing the entry", () => {
  const rawKey = "opk_pasted-instead-of-its-hash";
  const r = spawnSync(process.execPath, ["services/config-center/dist/main.js"], {
    env: { PATH: process.env.PATH, DATABASE_URL: db, AUTH_API_KEYS: `ops:admin:${"a".repeat(64)},${rawKey}` },
    encoding: "utf8",
    timeout: 20_000,
  });
  assert.equal(r.status, 1);
  assert.deepEqual(r.stderr.trim().split("\n"), [
    "config-center: invalid environment variable AUTH_API_KEYS: entry 2 must be id:viewer|operator|admin:sha256hex",
  ]);
});
