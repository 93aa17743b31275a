import { badRequest } from "./errors.js";

const rfc3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))$/;

/**
 * A search's `from` and `to` (absent: unbounded), or a 400 naming the field and what is wrong with it;
 * `from` after `to` too (that range finds nothing, and an empty page would read as "none happened").
 */
export function timeRange(q: { from?: string; to?: string }): { from: string | undefined; to: string | undefined } {
  const from = instant("from", q.from);
  const to = instant("to", q.to);
  // To the millisecond (Date's resolution): a range narrower than that is let through, and finds what it finds.
  const epochMs = (v: string) => Date.parse(v.toUpperCase().replace(" ", "T"));
  if (from && to && epochMs(from) > epochMs(to)) throw badRequest(`from (${from}) is after to (${to}): swap them`);
  return { from, to };
}

/** `value` (absent: unbounded), or a 400 naming `field` and what is wrong with it. */
function instant(field: string, value: string | undefined): string | undefined {
  if (!value) return undefined;
  const refuse = (why: string) =>
    badRequest(`${field} must be an RFC 3339 date-time with a zone, e.g. 2026-05-01T00:00:00Z (got ${JSON.stringify(value)}${why})`);
  const m = rfc3339.exec(value);
  if (!m) throw refuse("");
  // A zone written Z has no offset: its groups are undefined, read as 0.
  const [year, month, day, hour, minute, second, zoneHours, zoneMinutes] = m.slice(1).map((x) => Number(x ?? 0));
  if (!onTheCalendar(year, month, day)) throw refuse(": no such day");
  // JavaScript's Date, and so every client of this API, has no leap second: 23:59:60 is refused too.
  if (hour > 23 || minute > 59 || second > 59)
    throw refuse(": no such time of day (hours 00-23, minutes and seconds 00-59, no leap second)");
  if (zoneHours > 15 || zoneMinutes > 59) throw refuse(": zone offsets go up to ±15:59");
  return value;
}

/** Whether the date names a real day of a year PostgreSQL has (from 1: there is no year 0). */
function onTheCalendar(year: number, month: number, day: number): boolean {
  // setUTCFullYear, not Date.UTC: that reads years 0-99 as 1900-1999.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  return year >= 1 && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}
