import type { App } from "@opsplane/platform";
import { Ajv } from "ajv";
import addFormats from "ajv-formats";

/**
 * Fastify's default validator drops properties a schema does not declare, so a misspelt field
 * ("valeu") would be ignored in silence. This one refuses them (400 naming the property), with
 * fastify's other defaults: query strings coerced, defaults applied.
 */
export function refuseUnknownFields(app: App): void {
  const ajv = new Ajv({ coerceTypes: "array", useDefaults: true, removeAdditional: false, allErrors: false, strict: false });
  addFormats.default(ajv);
  app.setValidatorCompiler(({ schema }) => ajv.compile(schema));
}
