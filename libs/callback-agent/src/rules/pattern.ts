import picomatch from "picomatch";

/**
 * Compiles an ant-style path pattern: `?` one character, `*` zero or more
 * characters within one segment, `**` zero or more whole segments. Braces,
 * brackets and extglobs are off (ant has none), and `*` matches dot-names too.
 */
export function antMatcher(pattern: string): (path: string) => boolean {
  if (!pattern.startsWith("/")) throw new Error(`pattern "${pattern}" must start with /`);
  if (/\*\*\w|\w\*\*/.test(pattern)) throw new Error(`pattern "${pattern}": ** must be a whole path segment`);
  return picomatch(pattern, { dot: true, nobrace: true, noextglob: true, nobracket: true, strictSlashes: false });
}
