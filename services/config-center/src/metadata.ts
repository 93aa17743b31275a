import { badRequest } from "@opsplane/platform";
import { type Pool, withTransaction } from "@opsplane/store";
import { type ConfigValue, ValueResolver } from "./config-values.js";
import { byKindAndKey, type ItemRow, type Viewer } from "./effective.js";
import { selects } from "./gray.js";
import { itemColumns } from "./items.js";
import { MASK, type ResourceStore } from "./resources.js";

/** Start-up metadata (seed step 8): everything an instance needs to start, at one version. */
export interface Metadata {
  version: number;
  technical: ConfigValue[];
  business: ConfigValue[];
  governance: ConfigValue[];
}

interface Snapshot {
  version: number;
  rows: Map<string, ItemRow[]>;
  resolver: ValueResolver;
  /** The metadata of an instance no gray release selects, and its JSON. */
  plain: Metadata;
  plainJson: string;
  /** Rows with a gray release in progress: an instance one selects gets metadata of its own. */
  gray: ItemRow[];
}

/** A technical value that cannot be resolved (a secret key missing from SECRET_KEYS): the instance cannot start from it. */
export class MetadataUnavailable extends Error {}

const nobody = { instanceId: "", labels: {}, podName: "", podNamespace: "" };

/**
 * Builds start-up metadata from one snapshot of the items (and of the resources their references
 * resolve through), and keeps it in memory per app and environment until a change to that app, or
 * to a shared item or a resource, arrives on the bus. Thousands of instances starting at once then
 * cost one read per app and environment.
 */
export class MetadataService {
  private readonly cache = new Map<string, Snapshot>();
  private generation = 0;

  constructor(
    private readonly pool: Pool,
    private readonly resources: ResourceStore,
  ) {}

  /** A change to `app` ("" = shared) was committed: drop what it may have changed. */
  invalidate(app: string): void {
    this.generation++;
    if (app === "") this.cache.clear();
    else for (const k of this.cache.keys()) if (k.startsWith(`${app}\u0000`)) this.cache.delete(k);
  }

  /** The instance's metadata as JSON (the hot path: no serialisation unless a gray release selects it). */
  async json(viewer: Viewer): Promise<string> {
    const snap = await this.snapshot(viewer.app, viewer.env);
    return snap.gray.some((r) => selects(r.gray_selector!, viewer))
      ? JSON.stringify(build(snap.version, snap.rows, snap.resolver, viewer))
      : snap.plainJson;
  }

  async metadata(viewer: Viewer): Promise<Metadata> {
    const snap = await this.snapshot(viewer.app, viewer.env);
    return snap.gray.some((r) => selects(r.gray_selector!, viewer)) ? build(snap.version, snap.rows, snap.resolver, viewer) : snap.plain;
  }

  /** What an instance with this identity would get, for people: secrets masked unless `reveal`. */
  async preview(viewer: Viewer, reveal: boolean): Promise<Metadata> {
    const { version, rows, lookup } = await this.load(viewer.app, viewer.env, reveal ? "open" : "masked");
    return build(version, rows, new ValueResolver(lookup, Number.POSITIVE_INFINITY), viewer, true);
  }

  /**
   * The preview with secrets open, and where they are in it (`technical/<key>/<JSON pointer>`): the
   * fields an admin's reveal shows, for the audit trail.
   */
  async previewRevealed(viewer: Viewer): Promise<{ metadata: Metadata; revealed: string[] }> {
    const [open, masked] = await Promise.all([this.preview(viewer, true), this.preview(viewer, false)]);
    const revealed: string[] = [];
    for (const kind of ["technical", "business", "governance"] as const)
      for (const v of open[kind]) {
        const m = masked[kind].find((x) => x.key === v.key);
        collectMasked(v.value, m?.value, `${kind}/${v.key}`, revealed);
      }
    return { metadata: open, revealed };
  }

  /** Business parameters by key as the viewer sees them now (seed: instances read from here without Redis). */
  async businessValues(viewer: Viewer, keys: string[]): Promise<{ version: number; values: ConfigValue[]; missing: string[] }> {
    if (keys.length === 0 || keys.length > 1000) throw badRequest("keys: 1 to 1000 business parameter keys");
    const { version, rows } = await withTransaction(
      this.pool,
      async (tx) => ({
        version: (await tx.query<{ version: number }>("SELECT version FROM version_counter")).rows[0]!.version,
        rows: (
          await tx.query<ItemRow>(
            `SELECT ${itemColumns} FROM items WHERE kind = 'business' AND key = ANY($1) AND app IN ('', $2) AND env IN ('', $3)`,
            [keys, viewer.app, viewer.env],
          )
        ).rows,
      }),
      { isolation: "repeatable read", readOnly: true },
    );
    const resolver = new ValueResolver(undefined, Number.POSITIVE_INFINITY);
    const grouped = byKindAndKey(rows);
    const values: ConfigValue[] = [];
    const missing: string[] = [];
    for (const key of new Set(keys)) {
      const { row, gray } = resolver.pick(grouped.get(`business\u0000${key}`), viewer);
      if (row) values.push(resolver.value("business", key, row, gray));
      else missing.push(key);
    }
    return { version, values, missing };
  }

  private async snapshot(app: string, env: string): Promise<Snapshot> {
    const key = `${app}\u0000${env}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const generation = this.generation;
    const { version, rows, lookup } = await this.load(app, env, "open");
    const resolver = new ValueResolver(lookup, Number.POSITIVE_INFINITY);
    const plain = build(version, rows, resolver, { app, env, ...nobody });
    const snap: Snapshot = {
      version,
      rows,
      resolver,
      plain,
      plainJson: JSON.stringify(plain),
      gray: [...rows.values()].flat().filter((r) => r.gray_selector),
    };
    // A change that arrived while this was read may not be in it: keep it only if none did.
    if (generation === this.generation) this.cache.set(key, snap);
    return snap;
  }

  private async load(app: string, env: string, secrets: "open" | "masked") {
    return withTransaction(
      this.pool,
      async (tx) => {
        const version = (await tx.query<{ version: number }>("SELECT version FROM version_counter")).rows[0]!.version;
        // The row the instance sees of each key (the most specific scope), then only start-up business
        // ones: an app's own non-start-up value hides a shared start-up one.
        const { rows } = await tx.query<ItemRow>(
          `SELECT * FROM (
             SELECT DISTINCT ON (kind, key) ${itemColumns} FROM items WHERE app IN ('', $1) AND env IN ('', $2)
             ORDER BY kind, key, app <> '' DESC, env <> '' DESC
           ) seen WHERE kind <> 'business' OR startup ORDER BY kind, key`,
          [app, env],
        );
        const lookup = await this.resources.resolvables(tx, secrets === "masked");
        return { version, rows: byKindAndKey(rows), lookup };
      },
      { isolation: "repeatable read", readOnly: true },
    );
  }
}

/** The metadata a viewer gets from one snapshot's rows. */
function build(version: number, rows: Map<string, ItemRow[]>, resolver: ValueResolver, viewer: Viewer, previewing = false): Metadata {
  const out: Metadata = { version, technical: [], business: [], governance: [] };
  for (const keyRows of rows.values()) {
    const { row, gray } = resolver.pick(keyRows, viewer);
    if (!row) continue;
    const v = resolver.value(row.kind, row.key, row, gray);
    if (v.error && !previewing) throw new MetadataUnavailable(v.error);
    out[row.kind].push(v);
  }
  return out;
}

/** The JSON Pointers under `at` where `masked` holds the mask and `open` something else. */
function collectMasked(open: unknown, masked: unknown, at: string, into: string[]): void {
  if (masked === MASK && open !== MASK) into.push(at);
  else if (typeof masked === "object" && masked !== null && typeof open === "object" && open !== null)
    for (const [k, v] of Object.entries(masked))
      collectMasked((open as Record<string, unknown>)[k], v, `${at}/${k.replaceAll("~", "~0").replaceAll("/", "~1")}`, into);
}
