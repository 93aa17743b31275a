import { type ItemRow, mostSpecific, type Viewer, valueFor } from "./effective.js";
import type { ItemKind } from "./identifiers.js";
import { type ResolvableResource, resolveReferences } from "./references.js";

/**
 * One parameter or rule as an instance gets it, in metadata and in change events. `deleted`: the
 * key no longer has a value for the instance. `fetch`: a business value too large to travel with
 * the event (read it from Redis or GetBusinessValues). `error`: a technical value that could not
 * be resolved (the instance keeps what it has).
 */
export interface ConfigValue {
  kind: ItemKind;
  key: string;
  app: string;
  env: string;
  category: string;
  revision: number;
  gray: boolean;
  value?: unknown;
  deleted?: boolean;
  fetch?: boolean;
  error?: string;
}

export type Lookup = (resource: string) => ResolvableResource | undefined;

/**
 * Computes what an instance sees of a key from the key's rows: the most specific scope, the gray
 * value if a gray release selects the instance, technical references resolved (once per row and
 * value, however many instances share it).
 */
export class ValueResolver {
  private readonly resolved = new Map<ItemRow, Map<boolean, { value?: unknown; error?: string }>>();

  constructor(
    private readonly lookup: Lookup | undefined,
    private readonly inlineMaxBytes: number,
  ) {}

  /** The row the viewer sees and whether the gray value applies: what equal messages are grouped by. */
  pick(rows: ItemRow[] | undefined, viewer: Viewer): { row: ItemRow | undefined; gray: boolean } {
    const row = rows && mostSpecific(rows, viewer.app, viewer.env);
    return { row, gray: row ? valueFor(row, viewer).gray : false };
  }

  value(kind: ItemKind, key: string, row: ItemRow | undefined, gray: boolean): ConfigValue {
    if (!row) return { kind, key, app: "", env: "", category: "", revision: 0, gray: false, deleted: true };
    const base = {
      kind,
      key,
      app: row.app,
      env: row.env,
      category: row.category,
      revision: gray ? (row.gray_revision ?? row.revision) : row.revision,
      gray,
    };
    const raw = gray ? row.gray_value : row.value;
    if (kind === "technical" && row.refs.length) return { ...base, ...this.resolve(row, gray, raw) };
    if (kind === "business" && Buffer.byteLength(JSON.stringify(raw)) > this.inlineMaxBytes) return { ...base, fetch: true };
    return { ...base, value: raw };
  }

  private resolve(row: ItemRow, gray: boolean, raw: unknown): { value?: unknown; error?: string } {
    let perRow = this.resolved.get(row);
    if (!perRow) {
      perRow = new Map();
      this.resolved.set(row, perRow);
    }
    let out = perRow.get(gray);
    if (!out) {
      try {
        if (!this.lookup) throw new Error("resources were not loaded");
        out = { value: resolveReferences(raw, this.lookup) };
      } catch (err) {
        out = { error: `cannot resolve ${row.key}: ${(err as Error).message}` };
      }
      perRow.set(gray, out);
    }
    return out;
  }
}
