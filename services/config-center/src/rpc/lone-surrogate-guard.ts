import { toJson } from "@bufbuild/protobuf";
import type { RpcService } from "@opsplane/platform";
import { refuseLoneSurrogates } from "../lone-surrogates.js";

/**
 * Connect's JSON decoder refuses a lone surrogate in a string field itself, naming the field; a
 * google.protobuf.Value field (an item's value and schema, a gray value, a resource's config, a
 * report's JSON Schemas) takes any JSON, lone surrogates included. Each method of `def` refuses one
 * anywhere in its request before its handler runs, naming where in the request's JSON (`value.a`),
 * as the REST view does.
 */
export function refusingLoneSurrogates(def: RpcService): RpcService {
  const impl: Record<string, unknown> = {};
  for (const method of def.service.methods) {
    const handler = (def.impl as Record<string, ((req: never, ctx: unknown) => unknown) | undefined>)[method.localName];
    if (handler)
      impl[method.localName] = (req: never, ctx: unknown) => {
        refuseLoneSurrogates(toJson(method.input, req), "");
        return handler.call(def.impl, req, ctx);
      };
  }
  return { ...def, impl: impl as RpcService["impl"] };
}
