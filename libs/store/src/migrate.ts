import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type pg from "pg";
import { assertIdentifier, checkOut } from "./pool.js";

export interface Migration {
  /** Sortable id, e.g. "001_init". Applied in ascending order, each once. */
  id: string;
  sql: string;
}

/** Reads `NNN_name.sql` files from a folder, in name order. */
export async function readMigrations(dir: string): Promise<Migration[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith(".sql")).sort();
  return Promise.all(names.map(async (n) => ({ id: n.replace(/\.sql$/, ""), sql: await readFile(path.join(dir, n), "utf8") })));
}

const checksum = (sql: string) => createHash("sha256").update(sql).digest("hex");

/**
 * Applies the pending migrations of `schema`, each in its own transaction with
 * `search_path` set to the schema. A session advisory lock per schema serialises
 * replicas starting together: the first applies, the others wait and then find
 * nothing to do. An applied migration whose text changed stops start-up, because
 * the database no longer matches the code.
 */
export async function migrate(pool: pg.Pool, schema: string, migrations: Migration[]): Promise<string[]> {
  assertIdentifier(schema);
  const ids = migrations.map((m) => m.id);
  if (new Set(ids).size !== ids.length) throw new Error(`duplicate migration id in schema ${schema}`);
  const { client, release } = await checkOut(pool);
  try {
    await client.query("SELECT pg_advisory_lock(hashtext($1))", [`opsplane.migrate.${schema}`]);
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${schema}.schema_migrations (
           id text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const { rows } = await client.query<{ id: string; checksum: string }>(`SELECT id, checksum FROM ${schema}.schema_migrations`);
      const applied = new Map(rows.map((r) => [r.id, r.checksum]));
      const done: string[] = [];
      for (const m of [...migrations].sort((a, b) => a.id.localeCompare(b.id))) {
        const sum = checksum(m.sql);
        const prior = applied.get(m.id);
        if (prior !== undefined) {
          if (prior !== sum) throw new Error(`migration ${schema}/${m.id} was changed after it was applied`);
          continue;
        }
        await client.query("BEGIN");
        try {
          await client.query(`SET LOCAL search_path TO ${schema}, public`);
          await client.query(m.sql);
          await client.query(`INSERT INTO ${schema}.schema_migrations (id, checksum) VALUES ($1, $2)`, [m.id, sum]);
          await client.query("COMMIT");
        } catch (err) {
          await client.query("ROLLBACK").catch(() => {});
          throw new Error(`migration ${schema}/${m.id} failed: ${(err as Error).message}`);
        }
        done.push(m.id);
      }
      return done;
    } finally {
      await client.query("SELECT pg_advisory_unlock(hashtext($1))", [`opsplane.migrate.${schema}`]);
    }
  } finally {
    release();
  }
}
