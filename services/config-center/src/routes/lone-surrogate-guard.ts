import type { App } from "@opsplane/platform";
import { refuseLoneSurrogates } from "../lone-surrogates.js";

/**
 * Refuses, with a 400 naming the field (`value.limits[2] contains a lone surrogate (not valid
 * Unicode)`), a REST body holding a lone surrogate, on every route, before its handler: stored, it
 * would fail PostgreSQL's json types or become U+FFFD in text. It runs after schema validation (unknown
 * fields are named as such first). The dictionary import's body is checked when it is read, naming
 * entries as the file shows them (parseDictionary): `exceptUrl` is its route.
 */
export function refuseLoneSurrogatesInBodies(app: App, exceptUrl: string): void {
  app.addHook("preHandler", async (req) => {
    if (req.routeOptions.url !== exceptUrl) refuseLoneSurrogates(req.body, "");
  });
}
