import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type DescMessage, type DescService, ScalarType } from "@bufbuild/protobuf";
import { AuditService, ServiceInfoService } from "@opsplane/contracts";
import { type RunningService, type ServiceDefinition, sha256Hex, startService } from "@opsplane/platform";
import { createTestDatabase, type TestDatabase } from "@opsplane/testing";
import type { RouteOptions } from "fastify";
import { definition as assistRelay } from "../../../services/assist-relay/src/service.js";
import { definition as callbackDispatcher } from "../../../services/callback-dispatcher/src/service.js";
import { definition as configCenter } from "../../../services/config-center/src/service.js";
import { definition as controlCenter } from "../../../services/control-center/src/service.js";
import { definition as errcodeScanner } from "../../../services/errcode-scanner/src/service.js";
import { definition as monitorCenter } from "../../../services/monitor-center/src/service.js";

// Walks every route of every service (REST routes as fastify lists them, Connect methods from the
// services registered) and sends what PostgreSQL or the parsers refuse: a NUL or a lone surrogate in each text field,
// numbers out of range, impossible dates, garbage bodies, a query parameter the route does not declare. Each must be
// a 4xx with a reason.

const adminKey = "every-route-admin-key-0123456789";
const auth = { authorization: `Bearer ${adminKey}` };
const uuid = "00000000-0000-4000-8000-000000000000";

/** What to put in a leaf of a request instead of a valid value, by the leaf's kind. */
type Kind = "text" | "date" | "number";
/** `unstorable`: text PostgreSQL cannot store (a route that makes it storable takes it); `bodyOnly`: JSON can spell it, a URL cannot. */
type Poison = { name: string; kinds: Kind[]; value: string; unstorable?: boolean; bodyOnly?: boolean };
const poisons: Poison[] = [
  { name: "NUL", kinds: ["text", "date"], value: "a\u0000b", unstorable: true },
  // JSON's "\ud800": no character, and no UTF-8 spells it (a URL's %ED%A0%80 is refused as undecodable).
  { name: "lone surrogate", kinds: ["text", "date"], value: "a\ud800b", unstorable: true, bodyOnly: true },
  { name: "invalid date", kinds: ["date"], value: "2024-99-99" },
  { name: "number out of range", kinds: ["number"], value: "1e309" },
  { name: "integer beyond bigint", kinds: ["number"], value: "99999999999999999999" },
];

/** A service to walk, with what its requests need to get past the first check. */
interface Fixture {
  def: ServiceDefinition;
  env?: Record<string, string>;
  /** Values a valid request uses, by field name, so that a poisoned field beside them reaches the code behind it. */
  values?: Record<string, string>;
  /** Makes the values above real (e.g. configures the environment they name). */
  seed?(url: string): Promise<void>;
}

const fixtures: Fixture[] = [
  { def: assistRelay as unknown as ServiceDefinition },
  { def: errcodeScanner as unknown as ServiceDefinition, env: { ERRCODE_ARTIFACT_URL_PREFIXES: "http://127.0.0.1:9/" } },
  { def: configCenter },
  { def: controlCenter },
  { def: monitorCenter },
  {
    def: callbackDispatcher as unknown as ServiceDefinition,
    values: { env: "sit" },
    seed: async (url) => {
      const res = await fetch(`${url}/_dispatcher/v1/environments/sit`, {
        method: "PUT",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ baseUrl: "http://127.0.0.1:9" }),
      });
      assert.equal(res.status, 200, await res.text());
    },
  },
];

// ---- valid samples from the routes' JSON schemas (TypeBox) ----

type Schema = {
  type?: string;
  const?: unknown;
  enum?: unknown[];
  anyOf?: Schema[];
  format?: string;
  pattern?: string;
  minLength?: number;
  minimum?: number;
  default?: unknown;
  items?: Schema;
  minItems?: number;
  properties?: Record<string, Schema>;
};

const patternCandidates = ["a", "/a", "http://127.0.0.1:9/", "image/png", "a.b", "1"];
const formatSamples: Record<string, string> = {
  uuid,
  date: "2024-01-31",
  "date-time": "2024-01-31T12:00:00Z",
  uri: "http://127.0.0.1:9/",
};

function sample(s: Schema, name: string, values: Record<string, string>): unknown {
  if (s.const !== undefined) return s.const;
  if (s.enum) return s.enum[0];
  if (s.anyOf) return sample(s.anyOf[0]!, name, values);
  if (s.default !== undefined) return s.default;
  switch (s.type) {
    case "string": {
      if (values[name] !== undefined) return values[name];
      if (s.format && formatSamples[s.format]) return formatSamples[s.format];
      if (s.pattern) return patternCandidates.find((c) => new RegExp(s.pattern!).test(c)) ?? "a";
      return "a".repeat(Math.max(1, s.minLength ?? 1));
    }
    case "integer":
    case "number":
      return s.minimum ?? 1;
    case "boolean":
      return false;
    case "array":
      return Array.from({ length: Math.max(1, s.minItems ?? 1) }, () => sample(s.items ?? {}, name, values));
    case "object":
      return Object.fromEntries(Object.entries(s.properties ?? {}).map(([k, v]) => [k, sample(v, k, values)]));
    default:
      return null;
  }
}

type Leaf = { path: Array<string | number>; kind: Kind };
type IsDate = (path: Array<string | number>, value: string) => boolean;
/** REST samples of date fields are dates (their schema has a date format). */
const looksLikeDate: IsDate = (_path, value) => /^\d{4}-\d{2}-\d{2}/.test(value);

/** The text, date and number leaves of a sample, with their paths. */
function leaves(v: unknown, isDate: IsDate, at: Array<string | number> = []): Leaf[] {
  if (typeof v === "string") return [{ path: at, kind: isDate(at, v) ? "date" : "text" }];
  if (typeof v === "number") return [{ path: at, kind: "number" }];
  if (Array.isArray(v)) return v.flatMap((x, i) => leaves(x, isDate, [...at, i]));
  if (v && typeof v === "object") return Object.entries(v).flatMap(([k, x]) => leaves(x, isDate, [...at, k]));
  return [];
}

/** A poisoned leaf as raw JSON: text goes in quotes, numbers as written (1e309 has no JS value). */
const rawJson = (p: Poison, leaf: Leaf) => (leaf.kind === "number" ? p.value : JSON.stringify(p.value));

const marker = "\u0001poison\u0001";
/** JSON text of `v` with the leaf at `path` replaced by raw JSON `raw` (numbers such as 1e309 have no JS value). */
function jsonWith(v: unknown, path: Array<string | number>, raw: string): string {
  const copy = structuredClone(v) as Record<string | number, unknown>;
  let node = copy;
  for (const k of path.slice(0, -1)) node = node[k] as Record<string | number, unknown>;
  node[path[path.length - 1]!] = marker;
  return JSON.stringify(copy).replace(JSON.stringify(marker), raw);
}

// ---- the walk ----

interface Probe {
  what: string;
  method: string;
  path: string;
  body?: string;
  contentType?: string;
  connect?: boolean;
  /** The probe sends text PostgreSQL cannot store (NUL, a lone surrogate). */
  unstorable?: boolean;
  /** The route takes such text (it stores it made storable): it must then not fail it, rather than be refused. */
  acceptsUnstorable?: boolean;
  /** The 400's message must say this (unless authentication answers first, 401/403). */
  refusalSays?: string;
}

function restProbes(route: RouteOptions, values: Record<string, string>): Probe[] {
  const schema = (route.schema ?? {}) as { params?: Schema; querystring?: Schema; body?: Schema };
  const method = String(route.method);
  const paramNames = [...route.url.matchAll(/:(\w+)/g)].map((m) => m[1]!);
  const params = Object.fromEntries(paramNames.map((n) => [n, sample(schema.params?.properties?.[n] ?? { type: "string" }, n, values)]));
  const query = schema.querystring ? (sample(schema.querystring, "", values) as Record<string, unknown>) : {};
  const body = schema.body ? sample(schema.body, "", values) : undefined;
  const url = (p: Record<string, unknown>, q: Record<string, unknown>) => {
    const path = route.url.replace(/:(\w+)/g, (_, n: string) => encodeURIComponent(String(p[n])));
    const qs = new URLSearchParams(Object.entries(q).map(([k, v]) => [k, String(v)])).toString();
    return qs ? `${path}?${qs}` : path;
  };
  const validBody = body === undefined ? undefined : JSON.stringify(body);
  const acceptsUnstorable = (route.config as { allowUnstorable?: boolean } | undefined)?.allowUnstorable === true;
  const probes: Probe[] = [];
  for (const p of poisons) {
    const bad = (leaf: Leaf) => p.kinds.includes(leaf.kind);
    const unstorable = p.unstorable;
    for (const leaf of leaves(params, looksLikeDate).filter((l) => bad(l) && !p.bodyOnly)) {
      const n = String(leaf.path[0]);
      probes.push({
        what: `${p.name} in path parameter ${n}`,
        method,
        path: url({ ...params, [n]: p.value }, query),
        body: validBody,
        unstorable,
      });
    }
    for (const leaf of leaves(query, looksLikeDate).filter((l) => bad(l) && !p.bodyOnly)) {
      const k = String(leaf.path[0]);
      probes.push({ what: `${p.name} in query ${k}`, method, path: url(params, { ...query, [k]: p.value }), body: validBody, unstorable });
    }
    for (const leaf of leaves(body, looksLikeDate).filter(bad)) {
      const what = `${p.name} in body ${leaf.path.join(".")}`;
      probes.push({ what, method, path: url(params, query), body: jsonWith(body, leaf.path, rawJson(p, leaf)), unstorable });
    }
  }
  if (body !== undefined) probes.push({ what: "a body that is not JSON", method, path: url(params, query), body: "{not json" });
  // A misspelt parameter is refused naming it, never ignored (a socket reads its handshake's query itself, and a
  // page served as a file says it takes any: an embedding page's cache buster).
  const anyQuery = (schema.querystring as { additionalProperties?: unknown } | undefined)?.additionalProperties === true;
  if (!(route as { websocket?: boolean }).websocket && !anyQuery)
    probes.push({
      what: "a query parameter the route does not declare",
      method,
      path: url(params, { ...query, "zz-undeclared": "1" }),
      body: validBody,
      refusalSays: 'unknown field "zz-undeclared"',
    });
  return probes.map((x) => ({ ...x, acceptsUnstorable, contentType: x.body === undefined ? undefined : "application/json" }));
}

/** A valid JSON request for a Connect method: ids are UUIDs (as every service's ids are), other fields unset. */
function connectSample(desc: DescMessage, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of desc.fields) {
    if (f.fieldKind === "scalar" && f.scalar === ScalarType.STRING) out[f.jsonName] = /(^id|Id)$/.test(f.jsonName) ? uuid : "";
    else if (f.fieldKind === "scalar" && integerTypes.has(f.scalar)) out[f.jsonName] = 0;
    else if (f.fieldKind === "list" && f.listKind === "scalar" && f.scalar === ScalarType.STRING) out[f.jsonName] = [""];
    else if (f.fieldKind === "message" && depth < 3) out[f.jsonName] = connectSample(f.message, depth + 1);
  }
  return out;
}
const integerTypes = new Set([
  ScalarType.INT32,
  ScalarType.INT64,
  ScalarType.UINT32,
  ScalarType.UINT64,
  ScalarType.SINT32,
  ScalarType.SINT64,
]);
/** Proto fields carry no date type: these names hold dates or times. */
const dateField: IsDate = (path) => /^(from|to|day|date)$|At$/.test(String(path[path.length - 1]));

function connectProbes(service: DescService, unstorableAllowed: Set<string>): Probe[] {
  return service.methods.flatMap((m) => {
    const path = `/${service.typeName}/${m.name}`;
    const valid = connectSample(m.input);
    const probes: Probe[] = [
      { what: "a garbage protobuf body", method: "POST", path, body: "\u00ff\u00fe garbage", contentType: "application/proto" },
      { what: "a body that is not JSON", method: "POST", path, body: "{not json", contentType: "application/json" },
    ];
    for (const p of poisons)
      for (const leaf of leaves(valid, dateField).filter((l) => p.kinds.includes(l.kind)))
        probes.push({
          what: `${p.name} in ${leaf.path.join(".")}`,
          method: "POST",
          path,
          body: jsonWith(valid, leaf.path, rawJson(p, leaf)),
          contentType: "application/json",
          unstorable: p.unstorable,
        });
    return probes.map((x) => ({ ...x, connect: true, acceptsUnstorable: unstorableAllowed.has(path) }));
  });
}

async function send(base: string, p: Probe): Promise<string | undefined> {
  const res = await fetch(base + p.path, {
    method: p.method,
    headers: {
      ...auth,
      ...(p.contentType ? { "content-type": p.contentType } : {}),
      ...(p.connect ? { "connect-protocol-version": "1" } : {}),
    },
    body: p.body === undefined ? undefined : Buffer.from(p.body, p.contentType === "application/proto" ? "latin1" : "utf8"),
  });
  const text = await res.text();
  const label = `${p.method} ${p.path.split("?")[0]} with ${p.what}: ${res.status} ${text.slice(0, 160)}`;
  if (p.acceptsUnstorable && p.unstorable && res.status < 500) return undefined;
  if (res.status < 400 || res.status >= 500) return label;
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return `${label} (not JSON)`;
  }
  const code = p.connect ? body.code : body.error;
  if (typeof code !== "string" || typeof body.message !== "string" || !body.message) return `${label} (no reason given)`;
  if (p.refusalSays && res.status !== 401 && res.status !== 403 && !(res.status === 400 && body.message.includes(p.refusalSays)))
    return `${label} (not "${p.refusalSays}")`;
  return undefined;
}

for (const fx of fixtures) {
  describe(`${fx.def.name}: bad input on every route`, () => {
    let db: TestDatabase;
    let svc: RunningService;
    const routes: RouteOptions[] = [];
    const rpc: DescService[] = [ServiceInfoService, AuditService];
    /** Methods that take text PostgreSQL cannot store (their `allowUnstorable`), by path. */
    const unstorableAllowed = new Set<string>();
    before(async () => {
      db = await createTestDatabase();
      svc = await startService(
        {
          ...fx.def,
          setup: async (ctx) => {
            ctx.app.addHook("onRoute", (r) => void routes.push(r));
            const parts = await fx.def.setup(ctx);
            rpc.push(...(parts.rpc ?? []).map((s) => s.service));
            for (const s of parts.rpc ?? [])
              for (const m of s.service.methods)
                if (s.allowUnstorable?.includes(m.localName)) unstorableAllowed.add(`/${s.service.typeName}/${m.name}`);
            return parts;
          },
        },
        {
          DATABASE_URL: db.url,
          PORT: "0",
          HOST: "127.0.0.1",
          LOG_LEVEL: "silent",
          AUTH_API_KEYS: `walker:admin:${sha256Hex(adminKey)}`,
          ...fx.env,
        },
      );
      await fx.seed?.(svc.url);
    });
    after(async () => {
      await svc?.close();
      await db?.drop();
    });

    test("NUL bytes, lone surrogates, out-of-range numbers, invalid dates, garbage bodies and undeclared query parameters are 4xx with a reason", async () => {
      const connectPaths = new Set(rpc.flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`)));
      const rest = routes.filter((r) => !connectPaths.has(r.url) && !["HEAD", "OPTIONS"].includes(String(r.method)));
      const probes = [...rest.flatMap((r) => restProbes(r, fx.values ?? {})), ...rpc.flatMap((s) => connectProbes(s, unstorableAllowed))];
      assert.ok(probes.length > 0);
      const failures: string[] = [];
      for (const p of probes) {
        const failure = await send(svc.url, p);
        if (failure) failures.push(failure);
      }
      assert.deepEqual(failures, []);
    });
  });
}
