import { badRequest } from "@opsplane/platform";

// In `u` mode a surrogate pair is one character: only a surrogate without its partner is `\p{Cs}`.
const loneSurrogate = /\p{Cs}/u;

/**
 * Refuses, with a 400 naming where (`interfaces[2].description contains a lone surrogate (not valid
 * Unicode)`), input holding a lone UTF-16 surrogate. JSON can spell one (`"\ud800"`), but it is no
 * character: PostgreSQL's jsonb refuses it, and text would store U+FFFD in its place. Refused, not
 * stored made storable, as the platform refuses a NUL in the same input. Walks without recursion
 * (a reported JSON Schema may nest deeply), in document order (an object's keys before its values).
 */
export function refuseLoneSurrogates(value: unknown, at: string): void {
  const pending: Array<[unknown, string]> = [[value, at]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [v, path] = next;
    if (typeof v === "string") {
      if (loneSurrogate.test(v)) throw badRequest(`${path} contains a lone surrogate (not valid Unicode)`);
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) pending.push([v[i], `${path}[${i}]`]);
    } else if (v !== null && typeof v === "object") {
      const entries = Object.entries(v);
      for (const [k] of entries)
        if (loneSurrogate.test(k)) throw badRequest(`${path || "body"} has a key containing a lone surrogate (not valid Unicode)`);
      for (const [k, x] of entries.reverse()) pending.push([x, path ? `${path}.${k}` : k]);
    }
  }
}
