const percentEscape = /%([0-9A-Fa-f]{2})/g;
// IIS's non-standard `%u002e`, in either case.
const unicodeEscape = /%u([0-9A-Fa-f]{4})/gi;
// Overlong UTF-8 (2, 3 and 4 bytes) for ".", "/" and "\", as Latin-1 characters once percent-decoded
// (`%c0%ae`, `%c0%af`, `%c1%9c`, …): lenient decoders (old IIS, old Tomcat) read the character itself.
const overlong: Array<[RegExp, string]> = [
  [/\u00c0\u00ae|\u00e0\u0080\u00ae|\u00f0\u0080\u0080\u00ae/g, "."],
  [/\u00c0\u00af|\u00e0\u0080\u00af|\u00f0\u0080\u0080\u00af/g, "/"],
  [/\u00c1\u009c|\u00e0\u0081\u009c|\u00f0\u0080\u0081\u009c/g, "\\"],
];
// NUL, control characters and space, which some servers drop from a segment or cut it at.
// biome-ignore lint/suspicious/noControlCharactersInRegex: those characters are what it finds.
const droppedInSegment = /[\u0000-\u0020\u007f]/g;
const segmentSeparators = /[/\\]/;
// Where a server that decodes the path and then parses it again ends a segment's name: a path
// parameter (`..;x`, as Tomcat reads it), a query or a fragment (`..%3f`, `..%23`).
const nameEnd = /[;?#]/;

/** The path decoded as many times as it holds escapes (a chain of proxies and servers may decode it again and again), overlong forms read. */
function decodedAll(path: string): string {
  let decoded = path;
  for (let round = 0; round < 8 && decoded.includes("%"); round++) {
    const next = decoded
      .replace(unicodeEscape, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
      .replace(percentEscape, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
    if (next === decoded) break;
    decoded = next;
  }
  for (const [spelling, char] of overlong) decoded = decoded.replace(spelling, char);
  return decoded;
}

function dotSegmentIn(decoded: string): boolean {
  for (const segment of decoded.split(segmentSeparators)) {
    const name = segment.split(nameEnd, 1)[0]!;
    // As a server that drops those characters reads it, and as one that ends the segment at a NUL does.
    for (const read of [name.replace(droppedInSegment, ""), name.split("\u0000", 1)[0]!]) if (read === "." || read === "..") return true;
  }
  return false;
}

/**
 * Whether a request path holds a `.` or `..` segment in any spelling an upstream server might
 * normalise: plain, percent-encoded (`%2e%2e`, `.%2E`), encoded any number of times (`%252e`), ended by an
 * encoded slash, backslash, `?` or `#` (`..%2f`, `..%5c`, `..%3f`), carrying a path parameter (`..;x`),
 * with a NUL, control character or space in it (`..%00`, `.%09.`), in IIS's `%u002e`, in overlong UTF-8
 * (`%c0%ae`, and `..%c0%af` for an overlong slash), or in characters Unicode normalisation (NFKC) turns
 * into dots (fullwidth `．．`, `‥`). The forwarded path is the environment's prefix plus this path, so
 * such a segment would reach past the prefix (`/app/%2e%2e/admin` is `/admin` once the upstream decodes
 * it). Third-party platforms never send one; such callbacks are refused.
 */
export function hasDotSegment(path: string): boolean {
  if (!path.includes(".") && !path.includes("%") && !/[^\x21-\x7e]/.test(path)) return false;
  const decoded = decodedAll(path);
  if (dotSegmentIn(decoded)) return true;
  // Read as a server normalising Unicode reads it: the characters as decoded (`%uff0e`), and the bytes as UTF-8.
  const asUtf8 = /[\u0100-\uffff]/.test(decoded) ? decoded : Buffer.from(decoded, "latin1").toString("utf8");
  return dotSegmentIn(decoded.normalize("NFKC")) || dotSegmentIn(asUtf8.normalize("NFKC"));
}
