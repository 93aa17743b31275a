import { type DescMessage, fromJson, type JsonValue, type MessageShape, toJson } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { principalKey, requestIdKey } from "@opsplane/platform";
import type { LockView } from "../locks.js";

/**
 * The RPCs reuse the REST view's plain objects: a request becomes its proto3 JSON, a result
 * becomes the response message through proto3 JSON (numbers fit int64 fields, any JSON fits
 * google.protobuf.Value).
 */
export function requestJson<S extends DescMessage>(schema: S, message: MessageShape<S>): Record<string, unknown> {
  return toJson(schema, message) as Record<string, unknown>;
}

export function response<S extends DescMessage>(schema: S, plain: unknown): MessageShape<S> {
  return fromJson(schema, JSON.parse(JSON.stringify(plain)) as JsonValue, { ignoreUnknownFields: true });
}

export const actor = (ctx: HandlerContext) => ({ principal: ctx.values.get(principalKey), requestId: ctx.values.get(requestIdKey) });

export const tokenOf = (ctx: HandlerContext) => ctx.requestHeader.get("x-config-token") ?? undefined;

/** Lists that may be absent travel wrapped (StringList): absent keeps or means the default, an empty list is a value. */
export const listMessage = (values: string[] | null) => (values === null ? undefined : { values });

export const lockMessage = (lock: LockView) => ({ ...lock, apps: listMessage(lock.apps) });
