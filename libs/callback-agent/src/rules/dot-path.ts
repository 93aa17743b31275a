/** One step of a dot path: an object key or an array index. */
type Step = string | number;

/** Parses `$.data.items[0].id` / `data.items.0.id` into steps; throws on an empty or malformed path. */
export function parseDotPath(path: string): Step[] {
  const trimmed = path.trim().replace(/^\$\.?/, "");
  if (!trimmed) throw new Error("path is empty");
  const steps: Step[] = [];
  for (const part of trimmed.split(".")) {
    const m = /^([^[\]]*)((?:\[\d+\])*)$/.exec(part);
    if (!m || (!m[1] && !m[2])) throw new Error(`path "${path}": cannot read segment "${part}"`);
    if (m[1]) steps.push(/^\d+$/.test(m[1]) ? Number(m[1]) : m[1]);
    for (const idx of m[2]!.matchAll(/\[(\d+)\]/g)) steps.push(Number(idx[1]));
  }
  return steps;
}

/** Follows `steps` into a parsed document; undefined when any step is missing. */
export function readDotPath(doc: unknown, steps: Step[]): unknown {
  let cur = doc;
  for (const step of steps) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string | number, unknown>)[step];
  }
  return cur;
}
