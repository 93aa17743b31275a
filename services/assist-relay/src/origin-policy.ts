import { type App, forbidden } from "@opsplane/platform";
import type { FastifyRequest } from "fastify";

/**
 * Which pages may embed the widget. Browsers always send Origin on
 * cross-origin requests and WebSocket handshakes, so a page elsewhere cannot
 * open sessions, reports or widget sockets. Allowed origins also get the CORS
 * headers the widget's cross-origin calls need.
 */
export interface OriginPolicy {
  /** The request's allowed origin; throws 403 naming the origin otherwise (and reports it to `onRefused`). */
  require(req: FastifyRequest, what: string): Promise<string>;
  allowed(origin: string | undefined): boolean;
}

export function createOriginPolicy(
  app: App,
  allowedOrigins: Set<string>,
  onRefused: (origin: string, what: string) => Promise<void>,
): OriginPolicy {
  const allowed = (origin: string | undefined): origin is string => origin !== undefined && allowedOrigins.has(origin);
  app.addHook("onRequest", async (req, reply) => {
    const origin = req.headers.origin;
    if (!req.url.startsWith("/assist/") || !allowed(origin)) return;
    reply.header("access-control-allow-origin", origin);
    reply.header("vary", "Origin");
    reply.header("access-control-allow-headers", "content-type, x-assist-token, x-reporter-token");
    reply.header("access-control-allow-methods", "GET, POST");
    reply.header("access-control-max-age", "600");
  });
  app.options("/assist/*", { config: { access: "public" } }, async (_req, reply) => reply.code(204).send());
  return {
    allowed,
    async require(req, what) {
      const origin = req.headers.origin;
      if (allowed(origin)) return origin;
      const shown = origin ?? "(none)";
      await onRefused(shown, what);
      throw forbidden(`origin ${shown} may not use the assist ${what}; add it to ASSIST_ALLOWED_ORIGINS`);
    },
  };
}
