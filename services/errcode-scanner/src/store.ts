import { type Pool, type Queryable, storableText, withTransaction } from "@opsplane/store";
import type { Container } from "./scan/archive.js";
import type { ErrorCodeEntry } from "./scan/engine.js";
import type { Location } from "./scan/extract.js";
import type { ClassRow } from "./scan/isolated-extract.js";
import type { ScanReport } from "./scan/scan.js";
import type { RegistryEntry, Violation } from "./scan/validate.js";

export type ScanStatus = "queued" | "running" | "succeeded" | "failed";
export type ScanSource = "upload" | "url" | "event";

export interface ScanRow {
  id: string;
  status: ScanStatus;
  source: ScanSource;
  artifact_name: string;
  artifact_url: string | null;
  sha256: string | null;
  bases: string[];
  code_pattern: string | null;
  system: string | null;
  stats: ScanReport["stats"] | null;
  problems: ScanReport["problems"];
  /** Why the scan checked nothing, or nothing under a base (see {@link ScanReport.notChecked}). */
  not_checked: string[];
  /** Bases not in the artifact while others were (see {@link ScanReport.basesNotFound}). */
  bases_not_found: string[];
  /** Sites whose code is not statically known. */
  dynamic_sites: ScanReport["dynamicSites"];
  error: string | null;
  created_at: Date;
  finished_at: Date | null;
  /** The replica holding the scan while it is queued or running (see {@link ScanLease}). */
  owner: string | null;
  lease_expires_at: Date | null;
  /** Times a replica started running the scan. */
  attempts: number;
}

/** A scan taken over from a replica that stopped renewing its lease. */
export type ClaimedScan = ScanRow & { previous_owner: string | null };

/**
 * This replica's hold on the scans it queued or runs: `owner` names the replica, and each hold
 * lasts `ms` past its last renewal. Times are the database's, so replicas' clocks do not matter.
 */
export interface ScanLease {
  owner: string;
  ms: number;
}

export interface NewScan {
  id: string;
  source: ScanSource;
  artifactName: string;
  url?: string;
  sha256?: string;
  bases: string[];
  codePattern?: string;
  system?: string;
  eventId?: string;
  createdBy?: string;
}

const BATCH = 500;

function emptyRows() {
  return {
    containers: [] as Container[],
    ns: [] as Array<[number, string]>,
    cls: {
      id: [] as number[],
      container: [] as number[],
      ns: [] as number[],
      name: [] as string[],
      sup: [] as (string | null)[],
      ifaces: [] as string[],
      kind: [] as string[],
      vis: [] as string[],
      major: [] as number[],
      entry: [] as string[],
    },
    mth: { id: [] as number[], cls: [] as number[], name: [] as string[], desc: [] as string[], len: [] as number[] },
    inv: {
      method: [] as number[],
      op: [] as string[],
      cls: [] as string[],
      name: [] as string[],
      desc: [] as string[],
      line: [] as (number | null)[],
    },
  };
}

/**
 * Writes the seed's tables (containers, namespaces, classes, methods, invocations) for one scan
 * in batches as classes stream past, so a large artifact never sits in memory as rows.
 */
export class TableWriter {
  private readonly namespaces = new Map<string, number>();
  private nextClassId = 1;
  private nextMethodId = 1;
  private count = 0;
  private rows = emptyRows();

  constructor(
    private readonly pool: Pool,
    private readonly scanId: string,
  ) {}

  container(c: Container): void {
    this.rows.containers.push(c);
  }

  /** Turns the class into rows, written in batches. */
  async add(c: ClassRow): Promise<void> {
    const { ns, cls, mth, inv } = this.rows;
    const pkg = c.name.includes(".") ? c.name.slice(0, c.name.lastIndexOf(".")) : "";
    let nsId = this.namespaces.get(pkg);
    if (nsId === undefined) {
      nsId = this.namespaces.size + 1;
      this.namespaces.set(pkg, nsId);
      ns.push([nsId, pkg]);
    }
    const classId = this.nextClassId++;
    cls.id.push(classId);
    cls.container.push(c.containerId);
    cls.ns.push(nsId);
    cls.name.push(c.name);
    cls.sup.push(c.superName ?? null);
    cls.ifaces.push(JSON.stringify(c.interfaces));
    cls.kind.push(c.kind);
    cls.vis.push(c.visibility);
    cls.major.push(c.major);
    cls.entry.push(c.location);
    for (const m of c.methods) {
      const methodId = this.nextMethodId++;
      mth.id.push(methodId);
      mth.cls.push(classId);
      mth.name.push(m.name);
      mth.desc.push(m.desc);
      mth.len.push(m.length);
      for (const i of m.invocations) {
        inv.method.push(methodId);
        inv.op.push(i.op);
        inv.cls.push(i.owner);
        inv.name.push(i.name);
        inv.desc.push(i.desc);
        inv.line.push(i.line ?? null);
      }
    }
    if (++this.count % BATCH === 0) await this.flush();
  }

  async flush(): Promise<void> {
    const { containers, ns: newNamespaces, cls, mth, inv } = this.rows;
    this.rows = emptyRows();
    const q = this.pool;
    if (containers.length)
      await q.query(
        "INSERT INTO containers (scan_id, id, parent_id, name, type) SELECT $1, * FROM unnest($2::int[], $3::int[], $4::text[], $5::text[])",
        [
          this.scanId,
          containers.map((c) => c.id),
          containers.map((c) => c.parentId ?? null),
          containers.map((c) => c.name),
          containers.map((c) => c.type),
        ],
      );
    if (!cls.id.length) return;
    if (newNamespaces.length)
      await q.query("INSERT INTO namespaces (scan_id, id, name) SELECT $1, * FROM unnest($2::int[], $3::text[])", [
        this.scanId,
        newNamespaces.map((n) => n[0]),
        newNamespaces.map((n) => n[1]),
      ]);
    await q.query(
      `INSERT INTO classes (scan_id, id, container_id, namespace_id, name, super_class, interfaces, kind, visibility, major_version, entry)
       SELECT $1, id, container_id, namespace_id, name, super_class, ARRAY(SELECT jsonb_array_elements_text(interfaces::jsonb)), kind, visibility, major_version, entry
       FROM unnest($2::int[], $3::int[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::int[], $11::text[])
         AS t(id, container_id, namespace_id, name, super_class, interfaces, kind, visibility, major_version, entry)`,
      [this.scanId, cls.id, cls.container, cls.ns, cls.name, cls.sup, cls.ifaces, cls.kind, cls.vis, cls.major, cls.entry],
    );
    await q.query(
      "INSERT INTO methods (scan_id, id, class_id, name, descriptor, length) SELECT $1, * FROM unnest($2::int[], $3::int[], $4::text[], $5::text[], $6::int[])",
      [this.scanId, mth.id, mth.cls, mth.name, mth.desc, mth.len],
    );
    if (inv.method.length)
      await q.query(
        "INSERT INTO invocations (scan_id, method_id, op, inv_class, inv_method, inv_descriptor, line) SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[])",
        [this.scanId, inv.method, inv.op, inv.cls, inv.name, inv.desc, inv.line],
      );
  }
}

const partialTables = ["invocations", "methods", "classes", "namespaces", "containers"];
const unfinished = "status IN ('queued', 'running')";

/** Scans, their tables and the registry; every write to a queued or running scan needs this replica's lease on it. */
export function createScanStore(pool: Pool, lease: ScanLease) {
  /** SQL for "the lease's length from now", the length being query parameter `$n`. */
  const leaseFromNow = (n: number) => `now() + $${n} * interval '1 millisecond'`;

  return {
    pool,

    /** Inserts a queued scan held by this replica; false when a scan for the same event already exists (redelivery). */
    async insert(s: NewScan, q: Queryable = pool): Promise<boolean> {
      const r = await q.query(
        `INSERT INTO scans (id, status, source, artifact_name, artifact_url, sha256, bases, code_pattern, system, event_id, created_by, owner, lease_expires_at)
         VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, ${leaseFromNow(12)}) ON CONFLICT (event_id) DO NOTHING`,
        [
          s.id,
          s.source,
          s.artifactName,
          s.url ?? null,
          s.sha256 ?? null,
          s.bases,
          s.codePattern ?? null,
          s.system ?? null,
          s.eventId ?? null,
          s.createdBy ?? null,
          lease.owner,
          lease.ms,
        ],
      );
      return r.rowCount === 1;
    },

    /** Counts a start of the scan; returns how many there have been, undefined when another replica has taken it over. */
    async startAttempt(id: string): Promise<number | undefined> {
      const r = await pool.query<{ attempts: number }>(
        `UPDATE scans SET attempts = attempts + 1 WHERE id = $1 AND owner = $2 AND ${unfinished} RETURNING attempts`,
        [id, lease.owner],
      );
      return r.rows[0]?.attempts;
    },

    /** False when another replica has taken the scan over. */
    async markRunning(id: string, sha256?: string): Promise<boolean> {
      const r = await pool.query(
        `UPDATE scans SET status = 'running', sha256 = coalesce($2, sha256) WHERE id = $1 AND owner = $3 AND ${unfinished}`,
        [id, sha256 ?? null, lease.owner],
      );
      return r.rowCount === 1;
    },

    /** Stores the results; false (and nothing written) when another replica has taken the scan over. */
    async succeed(tx: Queryable, id: string, report: ScanReport): Promise<boolean> {
      const held = await tx.query(
        `UPDATE scans SET status = 'succeeded', stats = $2, problems = $3, not_checked = $5, dynamic_sites = $6, bases_not_found = $7, finished_at = now(),
           owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND owner = $4 AND ${unfinished}`,
        [
          id,
          JSON.stringify(report.stats),
          JSON.stringify(report.problems),
          lease.owner,
          report.notChecked,
          JSON.stringify(report.dynamicSites),
          report.basesNotFound,
        ],
      );
      if (held.rowCount !== 1) return false;
      const codes = report.errorCodes;
      await tx.query(
        `INSERT INTO error_codes (scan_id, code, message, message_kind, exception_class, family, locations)
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[])`,
        [
          id,
          codes.map((c) => c.code),
          codes.map((c) => c.message),
          codes.map((c) => c.messageKind),
          codes.map((c) => c.exceptionClass),
          codes.map((c) => c.family),
          codes.map((c) => JSON.stringify(c.locations)),
        ],
      );
      const v = report.violations;
      await tx.query(
        `INSERT INTO violations (scan_id, code, rule, message, exception_class, locations)
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[])`,
        [
          id,
          v.map((x) => x.code),
          v.map((x) => x.rule),
          v.map((x) => x.message),
          v.map((x) => x.exceptionClass),
          v.map((x) => JSON.stringify(x.locations)),
        ],
      );
      const add = report.registryAdditions.filter((r) => r.message !== null);
      await tx.query(
        `INSERT INTO registry (code, message, exception_family, first_scan_id)
         SELECT code, message, family, $1 FROM unnest($2::text[], $3::text[], $4::text[]) AS t(code, message, family) ON CONFLICT DO NOTHING`,
        [id, add.map((r) => r.code), add.map((r) => r.message), add.map((r) => r.exceptionFamily)],
      );
      return true;
    },

    /** Marks a scan failed and removes the partial tables it wrote; false when another replica has taken it over. */
    async fail(tx: Queryable, id: string, error: string): Promise<boolean> {
      const held = await tx.query(
        `UPDATE scans SET status = 'failed', error = $2, finished_at = now(), owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND owner = $3 AND ${unfinished}`,
        // The reason may quote an entry's name or a class's strings.
        [id, storableText(error), lease.owner],
      );
      if (held.rowCount !== 1) return false;
      for (const table of partialTables) await tx.query(`DELETE FROM ${table} WHERE scan_id = $1`, [id]);
      return true;
    },

    /** Extends this replica's leases on `ids`; returns those it still holds (the others were taken over or finished). */
    async renewLeases(ids: string[]): Promise<Set<string>> {
      const r = await pool.query<{ id: string }>(
        `UPDATE scans SET lease_expires_at = ${leaseFromNow(3)} WHERE id = ANY($1::uuid[]) AND owner = $2 AND ${unfinished} RETURNING id`,
        [ids, lease.owner, lease.ms],
      );
      return new Set(r.rows.map((x) => x.id));
    },

    /**
     * Puts a scan this replica started back in the queue, its start not counted and its half-written
     * tables removed; false when the scan is not this replica's. `release`: handed back (the replica is
     * stopping), another replica takes it over at once; otherwise kept here, its lease renewed, to run
     * again (a dependency outage cut its run short, and an upload is on this replica's disk).
     */
    async requeue(id: string, { release }: { release: boolean }): Promise<boolean> {
      return withTransaction(pool, async (tx) => {
        const r = await tx.query(
          `UPDATE scans SET status = 'queued', attempts = greatest(attempts - 1, 0),
             owner = CASE WHEN $3 THEN NULL ELSE owner END,
             lease_expires_at = CASE WHEN $3 THEN NULL ELSE ${leaseFromNow(4)} END
           WHERE id = $1 AND owner = $2 AND ${unfinished}`,
          [id, lease.owner, release, lease.ms],
        );
        if (r.rowCount) for (const table of partialTables) await tx.query(`DELETE FROM ${table} WHERE scan_id = $1`, [id]);
        return r.rowCount === 1;
      });
    },

    async releaseLeases(ids: string[]): Promise<void> {
      await pool.query(
        `UPDATE scans SET owner = NULL, lease_expires_at = NULL WHERE id = ANY($1::uuid[]) AND owner = $2 AND ${unfinished}`,
        [ids, lease.owner],
      );
    },

    /**
     * Takes over, oldest first, up to `limit` queued or running scans whose lease expired or was
     * released (their replica died, stopped, or lost the database for longer than the lease), and
     * removes the tables a dead run left half-written. Replicas claiming at once each get other scans.
     * This replica's own are taken back too unless it still holds them (`heldHere`): one whose outcome
     * could not be recorded in a database outage stayed `running` until the replica restarted.
     */
    async claimExpired(limit: number, heldHere: string[] = []): Promise<ClaimedScan[]> {
      return withTransaction(pool, async (tx) => {
        const r = await tx.query<ClaimedScan>(
          `WITH expired AS (
             SELECT id, owner AS previous_owner FROM scans
             WHERE ${unfinished} AND (lease_expires_at IS NULL OR lease_expires_at < now())
               AND NOT (owner IS NOT DISTINCT FROM $1 AND id = ANY($4::uuid[]))
             ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           UPDATE scans s SET owner = $1, lease_expires_at = ${leaseFromNow(3)}, status = 'queued'
           FROM expired WHERE s.id = expired.id
           RETURNING s.*, expired.previous_owner`,
          [lease.owner, limit, lease.ms, heldHere],
        );
        const ids = r.rows.map((x) => x.id);
        if (ids.length) for (const table of partialTables) await tx.query(`DELETE FROM ${table} WHERE scan_id = ANY($1::uuid[])`, [ids]);
        return r.rows.sort((a, b) => a.created_at.getTime() - b.created_at.getTime());
      });
    },

    async get(id: string): Promise<ScanRow | undefined> {
      return (await pool.query<ScanRow>("SELECT * FROM scans WHERE id = $1", [id])).rows[0];
    },

    async list(limit: number): Promise<ScanRow[]> {
      return (await pool.query<ScanRow>("SELECT * FROM scans ORDER BY created_at DESC, id LIMIT $1", [limit])).rows;
    },

    async errorCodes(scanId: string, code?: string, exceptionClass?: string): Promise<ErrorCodeEntry[]> {
      const r = await pool.query<{
        code: string;
        message: string | null;
        message_kind: ErrorCodeEntry["messageKind"];
        exception_class: string;
        family: string;
        locations: Location[];
      }>(
        `SELECT code, message, message_kind, exception_class, family, locations FROM error_codes
         WHERE scan_id = $1 AND ($2::text IS NULL OR code = $2) AND ($3::text IS NULL OR exception_class = $3)
         ORDER BY code COLLATE "C", exception_class, message`,
        [scanId, code || null, exceptionClass || null],
      );
      return r.rows.map((x) => ({
        code: x.code,
        message: x.message,
        messageKind: x.message_kind,
        exceptionClass: x.exception_class,
        family: x.family,
        locations: x.locations,
      }));
    },

    async violations(scanId: string): Promise<Violation[]> {
      const r = await pool.query<{
        code: string;
        rule: Violation["rule"];
        message: string;
        exception_class: string;
        locations: Location[];
      }>('SELECT code, rule, message, exception_class, locations FROM violations WHERE scan_id = $1 ORDER BY code COLLATE "C", rule', [
        scanId,
      ]);
      return r.rows.map((x) => ({
        code: x.code,
        rule: x.rule,
        message: x.message,
        exceptionClass: x.exception_class,
        locations: x.locations,
      }));
    },

    /** Methods that invoke a constructor of `className` (the seed's _method.inv_clazz/inv_method). */
    async constructors(scanId: string, className: string) {
      const r = await pool.query<{ class_name: string; method: string; container: string; descriptor: string; line: number | null }>(
        `SELECT c.name AS class_name, m.name || m.descriptor AS method, k.name AS container, i.inv_descriptor AS descriptor, i.line
         FROM invocations i
         JOIN methods m ON m.scan_id = i.scan_id AND m.id = i.method_id
         JOIN classes c ON c.scan_id = m.scan_id AND c.id = m.class_id
         JOIN containers k ON k.scan_id = c.scan_id AND k.id = c.container_id
         WHERE i.scan_id = $1 AND i.inv_class = $2 AND i.inv_method = '<init>'
         ORDER BY c.name, m.name, i.line`,
        [scanId, className],
      );
      return r.rows;
    },

    async registry(codeFilter: string, limit: number): Promise<Array<RegistryEntry & { firstScanId: string | null; addedAt: Date }>> {
      const prefix = codeFilter.endsWith("*");
      const r = await pool.query<{ code: string; message: string; exception_family: string; first_scan_id: string | null; added_at: Date }>(
        `SELECT code, message, exception_family, first_scan_id, added_at FROM registry
         WHERE $1::text = '' OR (CASE WHEN $2 THEN starts_with(code, $1) ELSE code = $1 END)
         ORDER BY code COLLATE "C", message LIMIT $3`,
        [prefix ? codeFilter.slice(0, -1) : codeFilter, prefix, limit],
      );
      return r.rows.map((x) => ({
        code: x.code,
        message: x.message,
        exceptionFamily: x.exception_family,
        firstScanId: x.first_scan_id,
        addedAt: x.added_at,
      }));
    },
  };
}

export type ScanStore = ReturnType<typeof createScanStore>;
