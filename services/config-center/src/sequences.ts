import { type Auditor, badRequest, conflict, forbidden, notFound } from "@opsplane/platform";
import { type Pool, withTransaction } from "@opsplane/store";
import { type Actor, checkExpectedRevision, lockTarget } from "./change-log.js";
import { checkAppId, lockNamePattern } from "./identifiers.js";

export interface SequenceView {
  name: string;
  pattern: string;
  current: number;
  cacheSize: number;
  reset: "never" | "daily" | "monthly";
  cycle: boolean;
  min: number;
  max: number;
  period: string;
  timeZone: string;
  description: string;
  /** The apps that may draw numbers; no other app's token can. */
  apps: string[];
  revision: number;
}

interface SequenceRow {
  name: string;
  pattern: string;
  current: number;
  cache_size: number;
  reset: "never" | "daily" | "monthly";
  cycle: boolean;
  min: number;
  max: number;
  period: string;
  time_zone: string;
  description: string;
  apps: string[];
  revision: number;
}

const view = (r: SequenceRow): SequenceView => ({
  name: r.name,
  pattern: r.pattern,
  current: r.current,
  cacheSize: r.cache_size,
  reset: r.reset,
  cycle: r.cycle,
  min: r.min,
  max: r.max,
  period: r.period,
  timeZone: r.time_zone,
  description: r.description,
  apps: r.apps,
  revision: r.revision,
});

/** Pattern tokens: date fields in the sequence's time zone, and the number zero-padded to a width. */
const token = /\{(yyyyMMdd|yyMMdd|yyyyMM|yyyy|yy|MM|dd|HH|seq(?::(\d{1,2}))?)\}/g;

function dateParts(at: Date, timeZone: string): Record<"yyyy" | "MM" | "dd" | "HH", string> {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", hourCycle: "h23" })
      .formatToParts(at)
      .map((p) => [p.type, p.value]),
  );
  return { yyyy: parts.year!, MM: parts.month!, dd: parts.day!, HH: parts.hour! };
}

/**
 * Formats one number by a pattern such as `LN{yyyyMMdd}{seq:6}`. The date fields a reset period
 * fixes (`yyyyMMdd` or `yyyyMM`) come from `period` when given: a number drawn in a period is
 * labelled with that period, even when drawn while the clock (or the time zone) says an earlier one.
 */
export function formatSequence(pattern: string, n: number, at: Date, timeZone: string, period = ""): string {
  const d = { ...dateParts(at, timeZone) };
  if (period.length >= 6) Object.assign(d, { yyyy: period.slice(0, 4), MM: period.slice(4, 6) });
  if (period.length === 8) d.dd = period.slice(6, 8);
  return pattern.replace(token, (_all, name: string, width: string | undefined) => {
    switch (name) {
      case "yyyyMMdd":
        return d.yyyy + d.MM + d.dd;
      case "yyMMdd":
        return d.yyyy.slice(2) + d.MM + d.dd;
      case "yyyyMM":
        return d.yyyy + d.MM;
      case "yyyy":
        return d.yyyy;
      case "yy":
        return d.yyyy.slice(2);
      case "MM":
        return d.MM;
      case "dd":
        return d.dd;
      case "HH":
        return d.HH;
      default:
        return String(n).padStart(Number(width ?? 0), "0");
    }
  });
}

/** The reset period `at` falls in (`yyyyMMdd`, `yyyyMM`, or `""` for never). */
function periodOf(reset: SequenceRow["reset"], at: Date, timeZone: string): string {
  if (reset === "never") return "";
  const d = dateParts(at, timeZone);
  return reset === "daily" ? d.yyyy + d.MM + d.dd : d.yyyy + d.MM;
}

/**
 * Whether the clock's period is later than the stored one, so the counter starts again. Periods
 * compare on the digits both have (a daily `20250115` against a monthly `202501` compares
 * `202501`), so a change of reset, time zone or clock never moves a sequence back into a period it
 * has already numbered: an equal or earlier period draws on in the stored one.
 */
function periodMovedForward(stored: string, clock: string): boolean {
  const digits = Math.min(stored.length, clock.length);
  return clock.slice(0, digits) > stored.slice(0, digits);
}

/** The widths of a pattern's `{seq:N}` tokens (none for a plain `{seq}`). */
function seqWidths(pattern: string): number[] {
  return [...pattern.matchAll(token)].flatMap((m) => (m[1]!.startsWith("seq") && m[2] !== undefined ? [Number(m[2])] : []));
}

/**
 * Distributed sequences (seed module 2024): numbers handed out in blocks of `cacheSize` (an
 * instance formats them itself), reset daily, monthly or never in the sequence's time zone, and
 * after `max` either cycling back to `min` or refused.
 */
export class SequenceStore {
  constructor(
    private readonly pool: Pool,
    private readonly audit: Auditor,
  ) {}

  async list(): Promise<SequenceView[]> {
    return (await this.pool.query<SequenceRow>("SELECT * FROM sequences ORDER BY name")).rows.map(view);
  }

  async put(
    who: Actor,
    s: {
      name: string;
      pattern: string;
      cacheSize?: number;
      reset?: string;
      cycle?: boolean;
      min?: number;
      max?: number;
      timeZone?: string;
      description?: string;
      apps?: string[];
    },
    expectRevision: number | undefined,
  ): Promise<SequenceView> {
    if (!lockNamePattern.test(s.name)) throw badRequest(`sequence name ${JSON.stringify(s.name)} must be 1-128 of A-Z a-z 0-9 _ . : / -`);
    const unknown = s.pattern.replace(token, "");
    if (!s.pattern || s.pattern.length > 128 || /[{}]/.test(unknown))
      throw badRequest(
        "pattern must be at most 128 characters with tokens {yyyyMMdd} {yyMMdd} {yyyyMM} {yyyy} {yy} {MM} {dd} {HH} {seq} {seq:N}",
      );
    if (!/\{seq(:\d{1,2})?\}/.test(s.pattern)) throw badRequest("pattern must contain {seq} or {seq:N}");
    const reset = s.reset || "never";
    if (!["never", "daily", "monthly"].includes(reset)) throw badRequest("reset must be never, daily or monthly");
    const timeZone = s.timeZone || "UTC";
    try {
      new Intl.DateTimeFormat("en", { timeZone });
    } catch {
      throw badRequest(`time zone ${JSON.stringify(timeZone)} is not an IANA time zone`);
    }
    const widths = seqWidths(s.pattern);
    if (widths.includes(0)) throw badRequest("pattern {seq:0} has no room for a number: use {seq} or {seq:N} with N >= 1");
    // A fixed width caps the numbers it can hold: the default max is the largest that fits.
    const width = widths.length ? Math.min(...widths) : undefined;
    const widest = width === undefined || width >= 16 ? Number.MAX_SAFE_INTEGER : 10 ** width - 1;
    const min = s.min ?? 1;
    const max = s.max || widest;
    if (max > widest)
      throw badRequest(`pattern {seq:${width}} holds numbers up to ${widest}, but max is ${max}: widen {seq:N} or lower max`);
    const cacheSize = s.cacheSize || 100;
    if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || min < 0 || max <= min)
      throw badRequest("min and max must be integers with 0 <= min < max");
    if (!Number.isInteger(cacheSize) || cacheSize < 1 || cacheSize > 10_000 || cacheSize > max - min + 1)
      throw badRequest("cacheSize must be 1-10000 and fit between min and max");
    const apps = s.apps && [...new Set(s.apps.map((a) => checkAppId(a, "apps")))].sort();
    return withTransaction(this.pool, async (tx) => {
      await lockTarget(tx, `sequence/${s.name}`);
      const prev = (await tx.query<SequenceRow>("SELECT * FROM sequences WHERE name = $1 FOR UPDATE", [s.name])).rows[0];
      checkExpectedRevision(`sequence ${s.name}`, prev?.revision ?? 0, expectRevision);
      const { rows } = await tx.query<SequenceRow>(
        `INSERT INTO sequences (name, pattern, current, cache_size, reset, cycle, min, max, time_zone, description, apps)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (name) DO UPDATE SET pattern = $2, cache_size = $4, reset = $5, cycle = $6, min = $7, max = $8, time_zone = $9,
           description = $10, apps = $11, revision = sequences.revision + 1,
           current = GREATEST(LEAST(sequences.current, $8), $7 - 1)
         RETURNING *`,
        [s.name, s.pattern, min - 1, cacheSize, reset, s.cycle ?? false, min, max, timeZone, s.description ?? "", apps ?? prev?.apps ?? []],
      );
      await this.audit.record(tx, {
        principal: who.principal,
        action: prev ? "sequence.update" : "sequence.create",
        target: `sequence/${s.name}`,
        before: prev ? view(prev) : undefined,
        after: view(rows[0]!),
        requestId: who.requestId,
      });
      return view(rows[0]!);
    });
  }

  /** The next block of numbers, formatted, for one of the sequence's apps. */
  async nextBlock(
    appId: string,
    name: string,
  ): Promise<{ name: string; period: string; first: number; last: number; pattern: string; values: string[] }> {
    return withTransaction(this.pool, async (tx) => {
      const s = (await tx.query<SequenceRow>("SELECT * FROM sequences WHERE name = $1 FOR UPDATE", [name])).rows[0];
      if (!s) throw notFound(`no sequence ${name}`);
      if (!s.apps.includes(appId)) throw forbidden(`app ${appId} may not draw from sequence ${name}: an admin lists its apps`);
      // One clock for every replica: PostgreSQL's, read after the row lock so draws see it in order.
      const at = (await tx.query<{ at: Date }>("SELECT clock_timestamp() AS at")).rows[0]!.at;
      const clockPeriod = periodOf(s.reset, at, s.time_zone);
      // The counter only ever restarts in a later period, so no formatted value is issued twice.
      const reset = periodMovedForward(s.period, clockPeriod);
      const period = reset || clockPeriod.length !== s.period.length ? clockPeriod : s.period;
      let current = reset ? s.min - 1 : s.current;
      if (current >= s.max) {
        if (!s.cycle)
          throw conflict(
            `sequence ${name} is exhausted (max ${s.max}${s.reset === "never" ? "" : ` in period ${period}`}) and does not cycle`,
          );
        current = s.min - 1;
      }
      const first = current + 1;
      // The last block before max may be short.
      const last = Math.min(current + s.cache_size, s.max);
      await tx.query("UPDATE sequences SET current = $2, period = $3 WHERE name = $1", [name, last, period]);
      const values: string[] = [];
      for (let n = first; n <= last; n++) values.push(formatSequence(s.pattern, n, at, s.time_zone, period));
      return { name, period, first, last, pattern: s.pattern, values };
    });
  }
}
