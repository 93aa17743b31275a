import { TextDecoder } from "node:util";
import { gunzipSync, inflateRawSync, inflateSync } from "node:zlib";

/** Why a rule read no id from a body without trying (too large, or an encoding it cannot undo): the dispatcher records it as the decision's reason. */
export class ExtractionRefused extends Error {
  constructor(
    readonly reason: "body_too_large" | "undecodable",
    message: string,
  ) {
    super(message);
  }
}

/**
 * Decodes a body for extraction (the dispatcher's callbacks, the agent's requests and responses alike,
 * so both sides read the same id from the same bytes): undoes `Content-Encoding` (gzip, x-gzip, deflate, also
 * several in a row) with at most `limit` bytes of output, then converts the charset named by
 * `Content-Type` (or, for XML without one or a body without any Content-Type, by the XML declaration) to UTF-8. A form body's
 * percent-escapes are decoded in that charset too (`%D6%D0` is one GBK character) and written back
 * as a UTF-8 form. Returns `body` itself when there is nothing to decode (the common case).
 */
export function decodeBody(body: Buffer, contentType: string | undefined, contentEncoding: string | undefined, limit: number): Buffer {
  const out = contentEncoding ? decodeContent(body, contentEncoding, limit) : body;
  // A body with no Content-Type at all goes by an XML declaration too, when it starts with one.
  const label = charsetOf(contentType) ?? (contentType === undefined || isXml(contentType) ? xmlDeclaredEncoding(out) : undefined);
  if (label === undefined) return out;
  const decoder = decoderFor(label);
  if (decoder.encoding === "utf-8") return out;
  return isForm(contentType) ? transcodeForm(out, decoder) : Buffer.from(decoder.decode(out), "utf8");
}

function decodeContent(body: Buffer, header: string, limit: number): Buffer {
  let out = body;
  // Codings are listed in the order they were applied: undo the last first.
  const codings = header
    .split(",")
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c && c !== "identity")
    .reverse();
  for (const coding of codings) {
    try {
      if (coding === "gzip" || coding === "x-gzip") out = gunzipSync(out, { maxOutputLength: limit });
      // HTTP's deflate is zlib-wrapped, but some senders send it raw: a zlib header says which.
      else if (coding === "deflate")
        out = hasZlibHeader(out) ? inflateSync(out, { maxOutputLength: limit }) : inflateRawSync(out, { maxOutputLength: limit });
      else throw new ExtractionRefused("undecodable", `content-encoding "${coding}" is not decoded for extraction`);
    } catch (err) {
      if (err instanceof ExtractionRefused) throw err;
      if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE")
        throw new ExtractionRefused("body_too_large", `body decoded (${coding}) is over the extraction limit of ${limit} bytes; not read`);
      throw new ExtractionRefused("undecodable", `body is not valid ${coding}: ${(err as Error).message}`);
    }
  }
  return out;
}

const hasZlibHeader = (b: Buffer) => b.length >= 2 && (b[0]! & 0x0f) === 8 && ((b[0]! << 8) | b[1]!) % 31 === 0;

/** The `charset` parameter of a Content-Type, unquoted; undefined without one. */
function charsetOf(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const at = contentType.toLowerCase().indexOf("charset=");
  if (at < 0) return undefined;
  const value = contentType
    .slice(at + 8)
    .split(";", 1)[0]!
    .trim();
  return value.replace(/^"(.*)"$/, "$1") || undefined;
}

const isForm = (contentType: string | undefined) => !!contentType && /^\s*application\/x-www-form-urlencoded\b/i.test(contentType);
const isXml = (contentType: string | undefined) => !!contentType && /^\s*[\w.+-]+\/([\w.-]+\+)?xml\b/i.test(contentType);

/** The `encoding` of an XML declaration (`<?xml version="1.0" encoding="GBK"?>`), which an XML body without a charset parameter goes by. */
function xmlDeclaredEncoding(body: Buffer): string | undefined {
  const head = body.subarray(0, 200).toString("latin1");
  return /^\s*<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._:-]+)["']/.exec(head)?.[1];
}

const decoders = new Map<string, TextDecoder>();

/** A decoder for a WHATWG encoding label (gbk, gb18030, big5, shift_jis, iso-8859-1, …); an unknown label is refused. */
function decoderFor(label: string): TextDecoder {
  const key = label.toLowerCase();
  let decoder = decoders.get(key);
  if (!decoder) {
    try {
      decoder = new TextDecoder(key);
    } catch {
      throw new ExtractionRefused("undecodable", `charset "${label}" is not a known encoding`);
    }
    // Labels are few (the WHATWG list), so the cache stays small.
    decoders.set(key, decoder);
  }
  return decoder;
}

const percentEscape = /%([0-9A-Fa-f]{2})/g;

/** A form body in another charset, as the same form in UTF-8: each name and value decoded byte-wise, then in `decoder`'s charset. */
function transcodeForm(body: Buffer, decoder: TextDecoder): Buffer {
  const field = (s: string) =>
    decoder.decode(
      Buffer.from(
        s.replaceAll("+", " ").replace(percentEscape, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16))),
        "latin1",
      ),
    );
  const form = new URLSearchParams();
  // latin1: one character per byte, so raw (unescaped) bytes of the charset survive until decoded.
  for (const pair of body.toString("latin1").split("&")) {
    if (!pair) continue;
    const eq = pair.indexOf("=");
    form.append(field(eq < 0 ? pair : pair.slice(0, eq)), field(eq < 0 ? "" : pair.slice(eq + 1)));
  }
  return Buffer.from(form.toString(), "utf8");
}
