import { type App, badRequest, forbidden, optionalBody, unsupportedMediaType } from "@opsplane/platform";
import type { ConfigCenter } from "../config-center.js";
import { decodeDictionaryText } from "../dictionary-import.js";
import { checkAppId, checkItemRef, envPattern, type ItemRef } from "../identifiers.js";
import { changeView, type PutItemInput } from "../items.js";
import { who } from "./manage-apps.js";
import {
  ChangeBody,
  ChangesQuery,
  DiffQuery,
  GrayBody,
  HistoryQuery,
  ImportParams,
  ImportQuery,
  ItemParams,
  ItemsQuery,
  PreviewQuery,
  PutItemBody,
  RollbackBody,
} from "./schemas.js";

const base = "/config/v1";
const tags = ["items"];
const scope = (s: string) => (s === "_" ? "" : s);
const refOf = (p: ItemParams): ItemRef => checkItemRef({ kind: p.kind, app: scope(p.app), env: scope(p.env), key: p["*"] });
const itemPath = (verb: string) => `${base}/${verb}/:kind/:app/:env/*`;

/** The dictionary import's route: its body limit is IMPORT_BODY_LIMIT_BYTES, not BODY_LIMIT_BYTES. */
export const importPath = `${base}/import/:app/:env/*`;

/** Parameters and rules: read, change, history, diff, rollback, import, gray release, preview, the change log. */
export function installItemRoutes(http: App, cc: ConfigCenter, importBodyLimit: number): void {
  // Dictionaries arrive as CSV text in the charset the Content-Type names (JSON ones as JSON). The
  // parser keeps the server's limit: only the import route's own bodyLimit raises it, for itself.
  // Every other route takes JSON only: text sent to one is refused as any other type it does not take (415).
  http.addContentTypeParser(["text/csv", "text/plain"], { parseAs: "buffer" }, (req, body, done) => {
    if (req.routeOptions.url !== importPath) return done(unsupportedMediaType(req.headers["content-type"]), undefined);
    try {
      // The query is not validated yet: anything but json is read as the route reads it, CSV.
      const format = (req.query as { format?: unknown }).format === "json" ? "json" : "csv";
      done(null, decodeDictionaryText(body as Buffer, req.headers["content-type"], format));
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  http.get(`${base}/items`, { schema: { tags, summary: "Parameters and rules, filtered", querystring: ItemsQuery } }, async (req) => {
    const q = req.query;
    return {
      items: await cc.items.list({
        kind: q.kind,
        app: q.app === undefined ? undefined : scope(q.app),
        env: q.env === undefined ? undefined : scope(q.env),
        keyPrefix: q.prefix,
        limit: q.limit,
      }),
    };
  });

  http.get(itemPath("items"), { schema: { tags, params: ItemParams } }, async (req) => cc.items.get(refOf(req.params)));

  http.put(
    itemPath("items"),
    { schema: { tags, summary: "Create or change a parameter or rule (operator)", params: ItemParams, body: PutItemBody } },
    async (req) => {
      const { expectRevision, ...input } = req.body;
      return cc.putItem(who(req), refOf(req.params), input as PutItemInput, expectRevision);
    },
  );

  http.delete(itemPath("items"), { ...optionalBody, schema: { tags, params: ItemParams, body: ChangeBody } }, async (req) =>
    cc.items.delete(who(req), refOf(req.params), req.body.expectRevision, req.body.comment),
  );

  http.get(
    itemPath("history"),
    { schema: { tags, summary: "Every change of an item, newest first", params: ItemParams, querystring: HistoryQuery } },
    async (req) => ({
      changes: await cc.items.history(refOf(req.params), req.query.limit),
    }),
  );

  http.get(
    itemPath("diff"),
    { schema: { tags, summary: "RFC 6902 patch between an item's values at two versions", params: ItemParams, querystring: DiffQuery } },
    async (req) => cc.items.diff(refOf(req.params), req.query.from, req.query.to ?? 0),
  );

  http.post(
    itemPath("rollback"),
    {
      schema: { tags, summary: "Make an earlier version's value current again, as a new version", params: ItemParams, body: RollbackBody },
    },
    async (req) => cc.items.rollback(who(req), refOf(req.params), req.body.toVersion, req.body.expectRevision, req.body.comment),
  );

  http.post(
    importPath,
    {
      bodyLimit: importBodyLimit,
      schema: {
        tags,
        summary: "Replace a business dictionary from CSV (text/csv) or JSON (an array of objects) in one versioned change",
        params: ImportParams,
        querystring: ImportQuery,
      },
    },
    async (req) => {
      const ref = checkItemRef({ kind: "business", app: scope(req.params.app), env: scope(req.params.env), key: req.params["*"] });
      const format = req.query.format ?? (typeof req.body === "string" ? "csv" : "json");
      return cc.importDictionary(who(req), ref, { format, content: req.body, ...req.query });
    },
  );

  http.post(
    itemPath("gray"),
    { schema: { tags, summary: "Start a gray release to the instances a selector chooses", params: ItemParams, body: GrayBody } },
    async (req) =>
      cc.items.startGray(who(req), refOf(req.params), req.body.value, req.body.selector, req.body.expectRevision, req.body.comment),
  );

  http.post(
    itemPath("gray-release"),
    {
      ...optionalBody,
      schema: { tags, summary: "Release the gray value to every instance", params: ItemParams, body: ChangeBody },
    },
    async (req) => cc.items.releaseGray(who(req), refOf(req.params), req.body.expectRevision, req.body.comment),
  );

  http.post(
    itemPath("gray-abandon"),
    {
      ...optionalBody,
      schema: { tags, summary: "Abandon a gray release: its instances go back to the main value", params: ItemParams, body: ChangeBody },
    },
    async (req) => cc.items.abandonGray(who(req), refOf(req.params), req.body.expectRevision, req.body.comment),
  );

  http.get(
    `${base}/preview`,
    {
      schema: {
        tags,
        summary: "The metadata an instance would get (secrets masked unless an admin reveals them)",
        querystring: PreviewQuery,
      },
    },
    async (req) => {
      const q = req.query;
      if (!envPattern.test(q.env)) throw badRequest("env must be 1-32 of a-z 0-9 _ -");
      const labels = Object.fromEntries(
        (q.labels ?? "")
          .split(",")
          .filter(Boolean)
          .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
      );
      const [podNamespace = "", podName = ""] = (q.pod ?? "").split("/");
      const viewer = { app: checkAppId(q.app), env: q.env, instanceId: "", labels, podName, podNamespace };
      if (q.reveal !== true) return cc.metadata.preview(viewer, false);
      const actor = who(req);
      if (actor.principal?.kind !== "key" || actor.principal.role !== "admin") throw forbidden("only admins may reveal secrets");
      const { metadata, revealed } = await cc.metadata.previewRevealed(viewer);
      // Every look at unmasked secrets is audited, naming where they are in the preview (never their values).
      await cc.resources.recordReveal(actor, `preview/${q.app}/${q.env}`, revealed);
      return metadata;
    },
  );

  http.get(
    `${base}/changes`,
    { schema: { tags, summary: "The change log, oldest first after a version", querystring: ChangesQuery } },
    async (req) => {
      const { rows } = await cc.pool.query(
        "SELECT version, kind, app, env, key, action, value, actor, at, comment, gray_selector FROM changes WHERE version > $1 ORDER BY version, id LIMIT $2",
        [req.query.after ?? 0, req.query.limit ?? 1000],
      );
      const current = (await cc.pool.query<{ version: number }>("SELECT version FROM version_counter")).rows[0]!.version;
      return { changes: rows.map(changeView), version: current };
    },
  );
}
