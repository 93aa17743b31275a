import diagnostics from "node:diagnostics_channel";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import { type AdapterContext, pathOf, queryOf } from "./adapter-context.js";
import { attachFastify, type FastifyLike } from "./fastify.js";
import { type GovernedRequest, governed, HttpGate } from "./http-gate.js";
import { PathCodes } from "./interface-code.js";

type Emit = (this: object, event: string | symbol, ...args: unknown[]) => boolean;

/**
 * Auto mode only (`node --import @opsplane/sdk/auto`), for an app that does not call the SDK:
 * - every fastify instance created from now on is hooked as `sdk.fastify()` would, through
 *   fastify's `fastify.initialization` diagnostics channel (published when `fastify()` is called,
 *   before the app declares routes);
 * - every other http/https server's `request` event first passes the gate, with the code of the
 *   request's method and path (ids as `id`), through a wrap of `Server.prototype.emit`.
 * A fastify instance's server is left out of the wrap, and a request marks itself governed, so no
 * request is governed twice. Returns a function that removes both hooks.
 */
export function installAutoHooks(ctx: AdapterContext): () => void {
  const fastifyServers = new WeakSet<object>();
  const onFastify = (message: unknown): void => {
    const fastify = (message as { fastify: FastifyLike & { server?: object } }).fastify;
    try {
      attachFastify(ctx, fastify);
      if (fastify.server) fastifyServers.add(fastify.server);
    } catch (err) {
      ctx.log.error(`fastify instance not hooked: ${(err as Error).message}`);
    }
  };
  diagnostics.subscribe("fastify.initialization", onFastify);

  const gate = new HttpGate(ctx.edge, ctx.log);
  const paths = new PathCodes();
  let failureLogged = false;
  /** False when the edge answered the request itself. */
  const admit = (server: object, req: GovernedRequest, res: ServerResponse): boolean => {
    if (fastifyServers.has(server) || req[governed]) return true;
    try {
      const url = req.url ?? "/";
      const path = pathOf(url);
      const method = req.method ?? "GET";
      const code = paths.code(method, path);
      if (!ctx.routes.has(code)) ctx.routes.add({ code, method, path: paths.pattern(code) });
      return gate.pass(req, res, code, path, queryOf(url));
    } catch (err) {
      // Governance must never take a request down with it.
      if (!failureLogged) {
        failureLogged = true;
        ctx.log.error(`auto-mode gate failed, requests pass ungoverned: ${(err as Error).message}`);
      }
      return true;
    }
  };

  const unwrap = [http.Server.prototype, https.Server.prototype].map((proto) => wrapEmit(proto as unknown as { emit: Emit }, admit));
  return () => {
    diagnostics.unsubscribe("fastify.initialization", onFastify);
    for (const restore of unwrap) restore();
  };
}

function wrapEmit(proto: { emit: Emit }, admit: (server: object, req: GovernedRequest, res: ServerResponse) => boolean): () => void {
  const hadOwn = Object.hasOwn(proto, "emit");
  const original = proto.emit;
  const wrapped: Emit = function emit(this: object, event: string | symbol, req?: unknown, res?: unknown) {
    if (event === "request" && !admit(this, req as IncomingMessage, res as ServerResponse)) return true;
    // biome-ignore lint/complexity/noArguments: forwards every argument as given, without copying them per event
    return original.apply(this, arguments as unknown as [string | symbol, ...unknown[]]);
  } as Emit;
  proto.emit = wrapped;
  return () => {
    if (proto.emit !== wrapped) return;
    if (hadOwn) proto.emit = original;
    else delete (proto as { emit?: Emit }).emit;
  };
}
