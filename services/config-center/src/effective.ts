import type { GraySelector, InstanceIdentity } from "./gray.js";
import { selects } from "./gray.js";
import type { ItemKind } from "./identifiers.js";

/** An item as stored (the `items` table). */
export interface ItemRow {
  kind: ItemKind;
  app: string;
  env: string;
  key: string;
  value: unknown;
  schema: object | null;
  category: string;
  startup: boolean;
  description: string;
  refs: string[];
  revision: number;
  updated_at: Date;
  updated_by: string;
  gray_value: unknown;
  gray_selector: GraySelector | null;
  gray_revision: number | null;
  gray_started_at: Date | null;
  gray_started_by: string | null;
}

/** Who is asking: an instance of `app` in `env`, with the identity gray releases select on. */
export interface Viewer extends InstanceIdentity {
  app: string;
  env: string;
}

/**
 * Of the rows of one key, the one a viewer sees: the most specific scope wins,
 * (app, env) over (app, every env) over (shared, env) over (shared, every env).
 */
export function mostSpecific<R extends { app: string; env: string }>(rows: Iterable<R>, app: string, env: string): R | undefined {
  let best: R | undefined;
  let bestRank = -1;
  for (const r of rows) {
    if ((r.app !== "" && r.app !== app) || (r.env !== "" && r.env !== env)) continue;
    const rank = (r.app ? 2 : 0) + (r.env ? 1 : 0);
    if (rank > bestRank) {
      best = r;
      bestRank = rank;
    }
  }
  return best;
}

/** The value a viewer gets from a row: the gray value when a gray release selects it. */
export function valueFor(row: ItemRow, viewer: Viewer): { value: unknown; revision: number; gray: boolean } {
  if (row.gray_selector && selects(row.gray_selector, viewer))
    return { value: row.gray_value, revision: row.gray_revision ?? row.revision, gray: true };
  return { value: row.value, revision: row.revision, gray: false };
}

/** Groups rows by kind and key. */
export function byKindAndKey(rows: ItemRow[]): Map<string, ItemRow[]> {
  const out = new Map<string, ItemRow[]>();
  for (const r of rows) {
    const k = `${r.kind}\u0000${r.key}`;
    const list = out.get(k);
    if (list) list.push(r);
    else out.set(k, [r]);
  }
  return out;
}
