import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import type { App } from "@opsplane/platform";
import type { FastifyReply, FastifyRequest } from "fastify";

/** Where `npm run build` (build-web.mjs) puts the bundled widget and developer console. */
export const webDir = path.join(__dirname, "..", "dist", "web");

/**
 * The developer console's Content-Security-Policy: its own script only; styles inline (rrweb's and the
 * replayed page's), images and fonts from wherever the operator's page had them; no framing.
 */
export const consolePolicy = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline' http: https:",
  "img-src 'self' data: blob: http: https:",
  "font-src 'self' data: http: https:",
  "connect-src 'self'",
  "frame-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "object-src 'none'",
].join("; ");

interface Asset {
  type: string;
  plain: Buffer;
  br: Buffer;
  gzip: Buffer;
  etag: string;
}

/** Read and compressed once, at start-up: each request sends the smallest form the browser accepts. */
function asset(file: string, type: string): Asset {
  let plain: Buffer;
  try {
    plain = readFileSync(path.join(webDir, file));
  } catch {
    throw new Error(`${path.join(webDir, file)} is missing: run "npm run build -w services/assist-relay"`);
  }
  return {
    type,
    plain,
    br: brotliCompressSync(plain, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }),
    gzip: gzipSync(plain, { level: 9 }),
    etag: `"${createHash("sha256").update(plain).digest("base64url").slice(0, 27)}"`,
  };
}

/** Serves an asset with its ETag (a page that has it gets 304) in brotli, gzip or plain, as Accept-Encoding allows. */
function send(req: FastifyRequest, reply: FastifyReply, a: Asset, headers: Record<string, string>) {
  reply.type(a.type).headers({ ...headers, etag: a.etag, vary: "accept-encoding" });
  if (req.headers["if-none-match"]?.split(",").some((tag) => tag.trim().replace(/^W\//, "") === a.etag)) return reply.code(304).send();
  const accepted = String(req.headers["accept-encoding"] ?? "");
  if (/\bbr\b/.test(accepted)) return reply.header("content-encoding", "br").send(a.br);
  if (/\bgzip\b/.test(accepted)) return reply.header("content-encoding", "gzip").send(a.gzip);
  return reply.send(a.plain);
}

/** Serves the widget script and the developer console page. */
export function installWebRoutes(app: App): void {
  const widget = asset("widget.js", "text/javascript; charset=utf-8");
  const consoleJs = asset("console.js", "text/javascript; charset=utf-8");
  const consoleHtml = asset("console.html", "text/html; charset=utf-8");
  // no-cache: revalidated on every page load, answered 304 while unchanged.
  const scriptHeaders = { "cache-control": "no-cache", "cross-origin-resource-policy": "cross-origin" };
  // The same file whatever its query: an embedding page's cache buster (`widget.js?v=3`) and the console's
  // `?replay=<session id>` (read by the page itself) are not the server's to refuse.
  const page = { config: { access: "public" as const }, schema: { querystring: { type: "object", additionalProperties: true } } };
  app.get("/assist/widget.js", page, async (req, reply) => send(req, reply, widget, scriptHeaders));
  app.get("/console/console.js", page, async (req, reply) => send(req, reply, consoleJs, scriptHeaders));
  app.get("/console", page, async (req, reply) =>
    send(req, reply, consoleHtml, {
      "cache-control": "no-cache",
      "content-security-policy": consolePolicy,
      "x-frame-options": "DENY",
      "referrer-policy": "no-referrer",
    }),
  );
}
