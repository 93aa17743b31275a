const percentEscape = /%([0-9A-Fa-f]{2})/g;
// IIS's non-standard `%u002e`.
const unicodeEscape = /%u([0-9A-Fa-f]{4})/g;
// Overlong UTF-8 for ".", as Latin-1 characters once percent-decoded (`%c0%ae`, `%e0%80%ae`): lenient decoders read a dot.
const overlongDot = /\u00c0\u00ae|\u00e0\u0080\u00ae/g;
// NUL, control characters and space, which some servers drop from a segment or cut it at.
// biome-ignore lint/suspicious/noControlCharactersInRegex: those characters are what it finds.
const droppedInSegment = /[\u0000-\u0020\u007f]/g;
const segmentSeparators = /[/\\]/;

/**
 * Whether a request path holds a `.` or `..` segment in any spelling an upstream server might
 * normalise: plain, percent-encoded (`%2e%2e`, `.%2E`), encoded twice (`%252e`), ended by an encoded
 * slash or backslash (`..%2f`, `..%5c`), carrying a path parameter (`..;x`, as Tomcat reads it), with a
 * NUL, control character or space in it (`..%00`, `.%09.`), in IIS's `%u002e` or in overlong UTF-8 (`%c0%ae`).
 * The forwarded path is the environment's prefix plus this path, so such a segment would reach
 * past the prefix (`/app/%2e%2e/admin` is `/admin` once the upstream decodes it). Third-party
 * platforms never send one; such callbacks are refused.
 */
export function hasDotSegment(path: string): boolean {
  if (!path.includes(".") && !path.includes("%")) return false;
  let decoded = path;
  // Three rounds cover any encoding a chain of proxies and servers decodes in practice.
  for (let round = 0; round < 3 && decoded.includes("%"); round++) {
    decoded = decoded
      .replace(unicodeEscape, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
      .replace(percentEscape, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
  }
  decoded = decoded.replace(overlongDot, ".");
  for (const segment of decoded.split(segmentSeparators)) {
    const name = segment.split(";", 1)[0]!;
    // As a server that drops those characters reads it, and as one that ends the segment at a NUL does.
    for (const read of [name.replace(droppedInSegment, ""), name.split("\u0000", 1)[0]!]) if (read === "." || read === "..") return true;
  }
  return false;
}
