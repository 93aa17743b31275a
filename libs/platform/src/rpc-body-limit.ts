import { isUtf8 } from "node:buffer";
import { promisify } from "node:util";
import { brotliDecompress, gunzip } from "node:zlib";
import type { App } from "./app.js";
import { AppError, badRequest, payloadTooLarge } from "./errors.js";

/** The request encodings Connect accepts here (connect-fastify's default `acceptCompression`). */
const decompressors: Record<string, (body: Buffer, o: { maxOutputLength: number }) => Promise<Buffer>> = {
  gzip: promisify(gunzip),
  br: promisify(brotliDecompress),
};

/** gRPC and gRPC-Web requests whose messages are JSON, each in a frame of its own. */
const framedJson = /^application\/grpc(-web)?\+json(;|$)/i;

/**
 * The messages in gRPC / gRPC-Web frames (a flag byte, bit 0 set when the message is compressed with
 * `grpc-encoding` and bit 7 for trailers, then the message's length in 4 bytes, then the message).
 * Frames cut short are left for Connect to refuse.
 */
function* framedMessages(body: Buffer): Generator<{ compressed: boolean; message: Buffer }> {
  for (let at = 0; at + 5 <= body.length; ) {
    const flags = body[at]!;
    const end = at + 5 + body.readUInt32BE(at + 1);
    if (end > body.length) return;
    if (!(flags & 0x80)) yield { compressed: (flags & 1) === 1, message: body.subarray(at + 5, end) };
    at = end;
  }
}

/** Whether every JSON message of a gRPC (-Web) body is UTF-8; a compressed one in an encoding Connect does not accept is left to Connect. */
async function framedJsonIsUtf8(body: Buffer, encoding: string | undefined, limit: number): Promise<boolean> {
  for (const { compressed, message } of framedMessages(body)) {
    const decompress = compressed ? decompressors[encoding ?? ""] : undefined;
    if (compressed && !decompress) continue;
    let text = message;
    try {
      if (decompress) text = await decompress(message, { maxOutputLength: limit });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") throw payloadTooLarge(limit);
      throw badRequest(`a message is not valid ${encoding}`);
    }
    if (!isUtf8(text)) return false;
  }
  return true;
}

/**
 * BODY_LIMIT_BYTES for Connect routes. Connect reads RPC bodies itself, past fastify's body
 * parser, and answers its own limit (`readMaxBytes`, also applied after decompression) with
 * resource_exhausted, which the Connect protocol turns into HTTP 429, as if the caller were
 * rate-limited. So the limit is enforced here first, as a 413 like every other route's: by
 * Content-Length before anything is read; and a body without one (chunked) or compressed is read
 * here, decompressed within the limit, and handed to Connect as plain bytes (RPCs are unary:
 * Connect would buffer the body whole anyway).
 *
 * A unary JSON body (`application/json`) is always read here, for one more check: Connect decodes
 * it leniently, so bytes that are not UTF-8 would reach the handler as U+FFFD and be stored as if
 * the caller had sent that. They are refused, as on REST routes, and so are gRPC-Web's and gRPC's JSON
 * messages (each frame's, decompressed per `grpc-encoding`). Binary bodies are strict already.
 */
export function installRpcBodyLimit(app: App, isRpcRoute: (url: string | undefined) => boolean, limit: number): void {
  app.addHook("onRequest", async (req) => {
    if (isRpcRoute(req.routeOptions.url) && Number(req.headers["content-length"] ?? 0) > limit) throw payloadTooLarge(limit);
  });
  app.addHook("preHandler", async (req) => {
    const chunked = req.headers["transfer-encoding"] !== undefined && req.headers["content-length"] === undefined;
    const encoding = req.headers["content-encoding"];
    const decompress = encoding === undefined ? undefined : decompressors[encoding];
    // A body in an encoding Connect does not accept is left for Connect to refuse as such.
    const json =
      (encoding === undefined || decompress !== undefined) &&
      req.headers["content-type"]?.split(";")[0]?.trim().toLowerCase() === "application/json";
    const framed = framedJson.test(req.headers["content-type"] ?? "");
    if (!(chunked || decompress || json || framed) || !isRpcRoute(req.routeOptions.url)) return;
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
    const grpcEncoding = req.headers["grpc-encoding"];
    if (
      (json && !isUtf8(body)) ||
      (framed && !(await framedJsonIsUtf8(body, typeof grpcEncoding === "string" ? grpcEncoding : undefined, limit)))
    )
      throw new AppError(400, "invalid_json", "body is not valid UTF-8");
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
