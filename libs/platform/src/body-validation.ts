import { AjvCompiler } from "@fastify/ajv-compiler";
import type { FastifyServerOptions } from "fastify";

const pool = AjvCompiler();

/**
 * Fastify's validators, except that a JSON body is taken as sent: fastify coerces every part of a
 * request to its schema's types, which in a body turned `{"enabled": null}` into `false` (an app
 * switched off by a client that sends "unset" as null) and `{"appId": ["loan"]}` into `"loan"`. A
 * body whose types are wrong is a 400 naming the field; path parameters and the query string, which
 * are text on the wire, are still read as the types their schemas declare.
 */
export const validatorsWithoutBodyCoercion: NonNullable<FastifyServerOptions["schemaController"]> = {
  compilersFactory: {
    buildValidator: (externalSchemas, options = {}) => {
      const coercing = pool(externalSchemas, options);
      // The kit's options are ajv's (never JTD's): the same with coercion off.
      const exact = pool(externalSchemas, { ...options, mode: undefined, customOptions: { ...options.customOptions, coerceTypes: false } });
      return (route) => (route.httpPart === "body" ? exact : coercing)(route);
    },
  },
};
