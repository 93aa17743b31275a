const percentEscape = /%([0-9A-Fa-f]{2})/g;
const segmentSeparators = /[/\\]/;

/**
 * Whether a request path holds a `.` or `..` segment in any spelling an upstream server might
 * normalise: plain, percent-encoded (`%2e%2e`, `.%2E`), encoded twice (`%252e`), ended by an encoded
 * slash or backslash (`..%2f`, `..%5c`) or carrying a path parameter (`..;x`, as Tomcat reads it).
 * The forwarded path is the environment's prefix plus this path, so such a segment would reach
 * past the prefix (`/app/%2e%2e/admin` is `/admin` once the upstream decodes it). Third-party
 * platforms never send one; such callbacks are refused.
 */
export function hasDotSegment(path: string): boolean {
  if (!path.includes(".") && !path.includes("%")) return false;
  let decoded = path;
  // Three rounds cover any encoding a chain of proxies and servers decodes in practice.
  for (let round = 0; round < 3 && decoded.includes("%"); round++) {
    decoded = decoded.replace(percentEscape, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
  }
  for (const segment of decoded.split(segmentSeparators)) {
    const name = segment.split(";", 1)[0]!;
    if (name === "." || name === "..") return true;
  }
  return false;
}
