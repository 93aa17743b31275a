import { badRequest } from "@opsplane/platform";

/** The kinds of versioned items. */
export const itemKinds = ["business", "technical", "governance"] as const;
export type ItemKind = (typeof itemKinds)[number];

/** Which item: its kind and key in a scope (app "" = shared by every app, env "" = every environment). */
export interface ItemRef {
  kind: ItemKind;
  app: string;
  env: string;
  key: string;
}

export const appIdPattern = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
export const envPattern = /^[a-z0-9][a-z0-9_-]{0,31}$/;
/** Keys are dotted or slashed paths: "dict.bank-codes", "db.main", "rate-limit/loan.apply". */
export const keyPattern = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}$/;
export const resourceNamePattern = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
export const lockNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$/;

export function checkAppId(appId: string, field = "appId"): string {
  if (!appIdPattern.test(appId))
    throw badRequest(`${field} ${JSON.stringify(appId)} must be 1-64 of a-z 0-9 _ . - (starting with a letter or digit)`);
  return appId;
}

export function checkItemRef(ref: { kind?: string; app?: string; env?: string; key?: string }): ItemRef {
  const kind = ref.kind ?? "";
  if (!(itemKinds as readonly string[]).includes(kind))
    throw badRequest(`kind ${JSON.stringify(kind)} must be one of ${itemKinds.join(", ")}`);
  const app = ref.app ?? "";
  const env = ref.env ?? "";
  const key = ref.key ?? "";
  if (app !== "") checkAppId(app, "app");
  if (env !== "" && !envPattern.test(env)) throw badRequest(`env ${JSON.stringify(env)} must be 1-32 of a-z 0-9 _ -`);
  if (!keyPattern.test(key))
    throw badRequest(`key ${JSON.stringify(key)} must be 1-200 of A-Z a-z 0-9 _ . : / - (starting with a letter or digit)`);
  if (kind === "governance" && app === "") throw badRequest("governance rules belong to an app: app is required");
  return { kind: kind as ItemKind, app, env, key };
}

/** The audit target and log name of an item: "item/technical/loan/prod/db.main" ("*" for an empty scope). */
export const itemTarget = (r: ItemRef) => `item/${r.kind}/${r.app || "*"}/${r.env || "*"}/${r.key}`;

/** Reads an optional version number given as a JSON number or (Connect, int64) a string. */
export function optionalVersion(v: unknown, field: string): number | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  const n = typeof v === "string" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) throw badRequest(`${field} must be a non-negative integer`);
  return n;
}
