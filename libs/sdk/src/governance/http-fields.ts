/**
 * What a baffle may put on the wire. Node throws (ERR_INVALID_HTTP_TOKEN, ERR_INVALID_CHAR) at
 * `writeHead` for a header name that is not an RFC 9110 token or a value holding CR, LF, NUL,
 * another control character or a character beyond Latin-1; a baffle's headers are checked against
 * the same rules before they can reach a response, so neither a rule nor a script can crash the
 * app or inject a header.
 */

/** RFC 9110 token characters (what Node accepts as a header name). */
const token = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Header value characters Node refuses: controls other than tab (CR, LF and NUL among them), and beyond Latin-1. */
const badValueChar = /[^\t\x20-\x7e\x80-\xff]/;
/** Set by Node from the body; a baffle that set them could desynchronise the connection. */
const framingHeaders: ReadonlySet<string> = new Set(["content-length", "transfer-encoding", "connection"]);

const maxHeaders = 64;
const maxHeaderValueLength = 8192;

/** Why a header cannot be sent, or undefined when it can. */
function headerProblem(name: string, value: unknown): string | undefined {
  if (!token.test(name)) return `header name ${JSON.stringify(name)} is not a valid HTTP token`;
  if (framingHeaders.has(name.toLowerCase())) return `header ${name} is set by the server, not a baffle`;
  if (typeof value !== "string") return `header ${name} must be a string`;
  if (value.length > maxHeaderValueLength) return `header ${name} is longer than ${maxHeaderValueLength} characters`;
  if (badValueChar.test(value)) return `header ${name} holds a character HTTP cannot carry (CR, LF, NUL, another control, beyond Latin-1)`;
  return undefined;
}

/** Why a set of headers cannot be sent, or undefined when it can. */
export function headersProblem(headers: Record<string, unknown>): string | undefined {
  const entries = Object.entries(headers);
  if (entries.length > maxHeaders) return `more than ${maxHeaders} headers`;
  for (const [name, value] of entries) {
    const problem = headerProblem(name, value);
    if (problem) return problem;
  }
  return undefined;
}
