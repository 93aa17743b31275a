/**
 * What config-center answers and sends (its README, "Instance protocol"), and checks that an answer
 * has that shape. Anything else (a proxy's HTML page, a truncated body, another service on the
 * port) is garbage: the caller treats it like an unreachable config-center, never as configuration.
 */
import type { ConfigValue } from "./contracts.js";

export interface TokenAnswer {
  token: string;
  expiresAt: string;
}

export interface RegistrationAnswer {
  instanceId: string;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  socketPath: string;
}

export interface Metadata {
  version: number;
  technical: ConfigValue[];
  business: ConfigValue[];
  governance: ConfigValue[];
}

export interface BusinessAnswer {
  version: number;
  values: ConfigValue[];
  missing: string[];
}

export interface ChangesMessage {
  t: "changes";
  version: number;
  catchUp?: boolean;
  changes: ConfigValue[];
}

export interface LockAnswer {
  acquired: boolean;
  lock: { state: "free" | "held"; holder: string; expiresAt: string; fencingToken: number };
}

export interface SequenceBlock {
  period: string;
  first: number;
  last: number;
  pattern: string;
  values: string[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const isStr = (v: unknown): v is string => typeof v === "string";
const isVersion = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const optional = <T>(v: unknown, is: (x: unknown) => x is T) => v === undefined || is(v);
const isBool = (v: unknown): v is boolean => typeof v === "boolean";

const kinds = new Set(["business", "technical", "governance"]);

export function isConfigValue(v: unknown): v is ConfigValue {
  return (
    isObj(v) &&
    kinds.has(v.kind as string) &&
    isStr(v.key) &&
    v.key !== "" &&
    isStr(v.app) &&
    isStr(v.env) &&
    optional(v.category, isStr) &&
    optional(v.revision, isVersion) &&
    optional(v.gray, isBool) &&
    optional(v.deleted, isBool) &&
    optional(v.fetch, isBool) &&
    optional(v.error, isStr)
  );
}

const isValues = (v: unknown, kind?: ConfigValue["kind"]): v is ConfigValue[] =>
  Array.isArray(v) && v.every((c) => isConfigValue(c) && (kind === undefined || c.kind === kind));

/** Each parser returns the typed answer, or a sentence saying what is wrong with it. */
export type Parsed<T> = T | { garbage: string };
export const isGarbage = <T>(p: Parsed<T>): p is { garbage: string } =>
  isObj(p) && isStr((p as Obj).garbage) && Object.keys(p).length === 1;

export function parseToken(v: unknown): Parsed<TokenAnswer> {
  return isObj(v) && isStr(v.token) && v.token !== "" && isStr(v.expiresAt)
    ? { token: v.token, expiresAt: v.expiresAt }
    : { garbage: "not a token answer" };
}

export function parseRegistration(v: unknown): Parsed<RegistrationAnswer> {
  if (
    isObj(v) &&
    isStr(v.instanceId) &&
    v.instanceId !== "" &&
    isStr(v.socketPath) &&
    v.socketPath.startsWith("/") &&
    Number.isSafeInteger(v.heartbeatIntervalMs) &&
    (v.heartbeatIntervalMs as number) > 0 &&
    Number.isSafeInteger(v.heartbeatTimeoutMs) &&
    (v.heartbeatTimeoutMs as number) > 0
  )
    return {
      instanceId: v.instanceId,
      socketPath: v.socketPath,
      heartbeatIntervalMs: v.heartbeatIntervalMs as number,
      heartbeatTimeoutMs: v.heartbeatTimeoutMs as number,
    };
  return { garbage: "not a registration answer" };
}

export function parseMetadata(v: unknown): Parsed<Metadata> {
  if (
    isObj(v) &&
    isVersion(v.version) &&
    isValues(v.technical, "technical") &&
    isValues(v.business, "business") &&
    isValues(v.governance, "governance")
  )
    return { version: v.version, technical: v.technical, business: v.business, governance: v.governance };
  return { garbage: "not start-up metadata ({version, technical, business, governance} of config values)" };
}

export function parseBusiness(v: unknown): Parsed<BusinessAnswer> {
  if (isObj(v) && isVersion(v.version) && isValues(v.values, "business") && Array.isArray(v.missing) && v.missing.every(isStr))
    return { version: v.version, values: v.values, missing: v.missing };
  return { garbage: "not a business values answer" };
}

export function parseLock(v: unknown): Parsed<LockAnswer> {
  const l = isObj(v) ? v.lock : undefined;
  if (isObj(v) && isBool(v.acquired) && isObj(l) && isStr(l.holder) && isStr(l.expiresAt) && Number.isSafeInteger(l.fencingToken))
    return {
      acquired: v.acquired,
      lock: {
        state: l.state === "held" ? "held" : "free",
        holder: l.holder,
        expiresAt: l.expiresAt,
        fencingToken: l.fencingToken as number,
      },
    };
  return { garbage: "not a lock answer" };
}

export function parseSequenceBlock(v: unknown): Parsed<SequenceBlock> {
  if (
    isObj(v) &&
    isStr(v.period) &&
    isStr(v.pattern) &&
    Number.isSafeInteger(v.first) &&
    Number.isSafeInteger(v.last) &&
    Array.isArray(v.values) &&
    v.values.length > 0 &&
    v.values.every(isStr)
  )
    return { period: v.period, pattern: v.pattern, first: v.first as number, last: v.last as number, values: v.values };
  return { garbage: "not a sequence block" };
}

/** A socket message from config-center: changes, a pong, an error, or garbage. */
export type ServerMessage = ChangesMessage | { t: "pong" } | { t: "error"; reason: string };

export function parseServerMessage(text: string): Parsed<ServerMessage> {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    return { garbage: "not JSON" };
  }
  if (!isObj(m)) return { garbage: "not a JSON object" };
  switch (m.t) {
    case "changes":
      if (!isVersion(m.version)) return { garbage: "a changes message without a version" };
      if (!Array.isArray(m.changes) || !m.changes.every(isConfigValue))
        return { garbage: "a changes message whose changes are not config values" };
      return { t: "changes", version: m.version, catchUp: m.catchUp === true, changes: m.changes };
    case "pong":
      return { t: "pong" };
    case "error":
      return { t: "error", reason: isStr(m.reason) ? m.reason : "(no reason given)" };
    default:
      return { garbage: `an unknown message type ${JSON.stringify(m.t)}` };
  }
}
