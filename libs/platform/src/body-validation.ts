import { AjvCompiler } from "@fastify/ajv-compiler";
import type { FastifyServerOptions } from "fastify";

const pool = AjvCompiler();

/** A number as people write one in a URL: ajv's coercion also read `0x10`, `1e2`, `0b1` and ` 16` as numbers. */
const decimal = /^-?\d+(?:\.\d+)?$/;

type Validate = ReturnType<ReturnType<typeof pool>>;

/** The top-level fields of an object schema declared as integers or numbers. */
function numericFields(schema: unknown): string[] {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> } | undefined)?.properties ?? {};
  return Object.keys(properties).filter((name) => {
    const type = properties[name]!.type;
    return type === "integer" || type === "number";
  });
}

/** `validate`, refusing first a numeric field not written as a decimal (400 naming it, as for any other type error). */
function decimalsOnly(validate: Validate, fields: string[]): Validate {
  const checked = (data: unknown): boolean => {
    for (const field of fields) {
      const value = (data as Record<string, unknown> | null)?.[field];
      if (typeof value === "string" && !decimal.test(value)) {
        result.errors = [
          {
            keyword: "type",
            instancePath: `/${field}`,
            schemaPath: `#/properties/${field}/type`,
            params: {},
            message: "must be a decimal number",
          },
        ];
        return false;
      }
    }
    const valid = validate(data) as boolean;
    result.errors = validate.errors;
    return valid;
  };
  // ajv's function carries its schema and errors: the check wears the same.
  const result = Object.assign(checked, validate) as Validate;
  return result;
}

/**
 * Fastify's validators, except that a JSON body is taken as sent: fastify coerces every part of a
 * request to its schema's types, which in a body turned `{"enabled": null}` into `false` (an app
 * switched off by a client that sends "unset" as null) and `{"appId": ["loan"]}` into `"loan"`. A
 * body whose types are wrong is a 400 naming the field; path parameters and the query string, which
 * are text on the wire, are still read as the types their schemas declare, numbers only from decimals.
 */
export const validatorsWithoutBodyCoercion: NonNullable<FastifyServerOptions["schemaController"]> = {
  compilersFactory: {
    buildValidator: (externalSchemas, options = {}) => {
      const coercing = pool(externalSchemas, options);
      // The kit's options are ajv's (never JTD's): the same with coercion off.
      const exact = pool(externalSchemas, { ...options, mode: undefined, customOptions: { ...options.customOptions, coerceTypes: false } });
      return (route) => {
        if (route.httpPart === "body") return exact(route);
        const validate = coercing(route);
        const fields = numericFields(route.schema);
        return fields.length ? decimalsOnly(validate, fields) : validate;
      };
    },
  },
};
