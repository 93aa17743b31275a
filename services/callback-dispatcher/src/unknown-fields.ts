import { type App, badRequest } from "@opsplane/platform";

/** The parts of a JSON schema (as TypeBox writes them) that say which fields an object may have. */
interface FieldSchema {
  properties?: Record<string, FieldSchema>;
  additionalProperties?: boolean | FieldSchema;
  items?: FieldSchema;
}

/**
 * The first field of `value` its schema does not allow (`interface.id.form`), if any. Only objects
 * closed with `additionalProperties: false` are checked; records (`idPatterns`, headers) are open.
 */
export function unknownField(schema: FieldSchema, value: unknown, path = ""): string | undefined {
  if (value === null || typeof value !== "object") return undefined;
  if (Array.isArray(value)) {
    if (!schema.items) return undefined;
    for (let i = 0; i < value.length; i++) {
      const found = unknownField(schema.items, value[i], `${path}[${i}]`);
      if (found) return found;
    }
    return undefined;
  }
  if (!schema.properties) return undefined;
  for (const [key, child] of Object.entries(value)) {
    const at = path ? `${path}.${key}` : key;
    const known = schema.properties[key];
    if (!known) {
      if (schema.additionalProperties === false) return at;
      continue;
    }
    const found = unknownField(known, child, at);
    if (found) return found;
  }
  return undefined;
}

/**
 * Refuses a body or query field the route's schema does not know, with a 400 naming it. Fastify's
 * validator would otherwise drop it silently (`removeAdditional`): a rule saved with `form` for
 * `from` read the interface's request instead of its response, and nobody was told.
 */
export function refuseUnknownFields(app: App, prefix: string): void {
  app.addHook("preValidation", async (req) => {
    if (!req.url.startsWith(prefix)) return;
    const schema = req.routeOptions.schema as { body?: FieldSchema; querystring?: FieldSchema } | undefined;
    if (!schema) return;
    const field =
      (schema.body && unknownField(schema.body, req.body)) ?? (schema.querystring && unknownField(schema.querystring, req.query));
    if (field) throw badRequest(`unknown field "${field}": not part of this request (a typo?)`, { field });
  });
}
