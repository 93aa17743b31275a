import { promisify } from "node:util";
import { brotliDecompress, gunzip } from "node:zlib";
import type { App } from "./app.js";
import { AppError, badRequest, payloadTooLarge } from "./errors.js";

/** The request encodings Connect accepts here (connect-fastify's default `acceptCompression`). */
const decompressors: Record<string, (body: Buffer, o: { maxOutputLength: number }) => Promise<Buffer>> = {
  gzip: promisify(gunzip),
  br: promisify(brotliDecompress),
};

/**
 * BODY_LIMIT_BYTES for Connect routes. Connect reads RPC bodies itself, past fastify's body
 * parser, and answers its own limit (`readMaxBytes`, also applied after decompression) with
 * resource_exhausted, which the Connect protocol turns into HTTP 429, as if the caller were
 * rate-limited. So the limit is enforced here first, as a 413 like every other route's: by
 * Content-Length before anything is read; and a body without one (chunked) or compressed is read
 * here, decompressed within the limit, and handed to Connect as plain bytes (RPCs are unary:
 * Connect would buffer the body whole anyway).
 */
export function installRpcBodyLimit(app: App, isRpcRoute: (url: string | undefined) => boolean, limit: number): void {
  app.addHook("onRequest", async (req) => {
    if (isRpcRoute(req.routeOptions.url) && Number(req.headers["content-length"] ?? 0) > limit) throw payloadTooLarge(limit);
  });
  app.addHook("preHandler", async (req) => {
    const chunked = req.headers["transfer-encoding"] !== undefined && req.headers["content-length"] === undefined;
    const encoding = req.headers["content-encoding"];
    const decompress = encoding === undefined ? undefined : decompressors[encoding];
    if (!(chunked || decompress) || !isRpcRoute(req.routeOptions.url)) return;
    let body = await readWithin(req.raw, limit);
    if (decompress) {
      try {
        body = await decompress(body, { maxOutputLength: limit });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") throw payloadTooLarge(limit);
        throw badRequest(`the request body is not valid ${encoding}`);
      }
      // Connect reads the headers after this hook: the bytes it gets are plain, and of another length.
      delete req.raw.headers["content-encoding"];
      delete req.raw.headers["content-length"];
    }
    // connect-fastify passes `req.body` to Connect, which reads any async iterable as the request body.
    req.body = (async function* () {
      yield body;
    })();
  });
}

async function readWithin(stream: AsyncIterable<Buffer>, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      size += chunk.length;
      if (size > limit) throw payloadTooLarge(limit);
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof AppError) throw err;
    throw badRequest("the request body ended before it was complete"); // the client went away mid-body
  }
  return Buffer.concat(chunks);
}
