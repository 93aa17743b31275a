// In `u` mode a surrogate pair is one character: only a surrogate without its partner is `\p{Cs}`.
const loneSurrogate = /\p{Cs}/u;

/**
 * Where `value` holds a lone UTF-16 surrogate, as a reason naming it (`interfaces[2].description
 * contains a lone surrogate (not valid Unicode)`), or undefined. JSON can spell one (`"\ud800"`), but
 * it is no character: PostgreSQL's jsonb refuses it, and text would store U+FFFD in its place.
 * Walks without recursion (a JSON value or Schema may nest deeply), in document order (an object's
 * keys before its values).
 */
export function loneSurrogateIn(value: unknown, at: string): string | undefined {
  const pending: Array<[unknown, string]> = [[value, at]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [v, path] = next;
    if (typeof v === "string") {
      if (loneSurrogate.test(v)) return `${path} contains a lone surrogate (not valid Unicode)`;
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) pending.push([v[i], `${path}[${i}]`]);
    } else if (v !== null && typeof v === "object") {
      const entries = Object.entries(v);
      for (const [k] of entries)
        if (loneSurrogate.test(k))
          return path
            ? `${path} has a key containing a lone surrogate (not valid Unicode)`
            : "a key contains a lone surrogate (not valid Unicode)";
      for (const [k, x] of entries.reverse()) pending.push([x, path ? `${path}.${k}` : k]);
    }
  }
  return undefined;
}
