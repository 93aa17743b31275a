// PostgreSQL refuses two things a JavaScript string can hold: NUL, in `text` and as `\u0000` in `jsonb`
// (and when JSON is read into `text`), and a lone UTF-16 surrogate, sent as a `\ud800`-style escape in JSON
// text. Values that come from outside (callback ids, page recordings) are made storable before they are
// queued, so one of them cannot fail the batch it is written in.

// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * `s` as PostgreSQL can store it: each NUL becomes the six characters `\u0000` (visible, and what the
 * sender wrote in JSON), each lone surrogate becomes U+FFFD (as a UTF-8 decoder does). Anything else
 * is unchanged, so a text containing the characters `\u0000` reads the same as one that had a NUL.
 */
export function storableText(s: string): string {
  return s.replaceAll("\0", "\\u0000").replace(loneSurrogate, "\uFFFD");
}

/** `value` with {@link storableText} applied to every string in it, object keys included. */
export function storableJson<T>(value: T): T {
  if (typeof value === "string") return storableText(value) as T;
  if (Array.isArray(value)) return value.map(storableJson) as T;
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [storableText(k), storableJson(v)])) as T;
}

/**
 * Whether JSON text may hold a string PostgreSQL refuses, from its escapes (`\u0000`, `\udXXX`; JSON.stringify
 * writes both this way). False means it certainly does not, so the common case costs one substring search.
 */
export function mayNeedStorableJson(json: string): boolean {
  return json.includes("\\u") && /\\u(?:0000|d[89a-f])/i.test(json);
}
