import { hasDotSegment } from "./dot-segments.js";

/**
 * Why a request's target cannot be a callback's, if it cannot: answered 400, nothing forwarded or
 * recorded. The live path and the dry run ask the same question (its Host lines: the kit's `hostRefusal`).
 */
export function refusalOf(url: string): string | undefined {
  // Absolute-form targets (`POST http://elsewhere/…`) are proxy requests, never platform callbacks.
  if (!url.startsWith("/")) return "request target must be a path (origin-form)";
  // RFC 9112 §3.2: a fragment is never sent; servers that cut the target at `#` and those that do not read different paths.
  if (url.includes("#")) return "request target has a fragment (#), which HTTP never sends";
  const q = url.indexOf("?");
  if (hasDotSegment(q < 0 ? url : url.slice(0, q)))
    return "request path has a dot segment (. or .., plain or percent-encoded); it would leave the environment's path prefix";
  return undefined;
}

/**
 * Why a request's `Transfer-Encoding` cannot be forwarded, if it cannot: any coding but `chunked` (which
 * Node undoes). The body would otherwise reach the environment still coded (`gzip`), with no header left
 * to say so, since transfer codings are hop-by-hop; RFC 9112 §6.1 answers a coding not understood 501.
 */
export function transferCodingRefusal(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const codings = header
    .toLowerCase()
    .split(",")
    .map((c) => c.trim())
    .filter((c) => c !== "");
  if (codings.length === 1 && codings[0] === "chunked") return undefined;
  return `Transfer-Encoding ${JSON.stringify(header.slice(0, 64))} is not supported: only chunked is (a coded body would reach its environment unlabelled)`;
}
