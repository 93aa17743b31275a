import { TextDecoder } from "node:util";
import { AppError, badRequest, unacceptableInput } from "@opsplane/platform";
import { parse } from "csv-parse/sync";

/** A dictionary read for import, with where each entry stood in what was sent. */
export interface Dictionary {
  entries: Array<Record<string, unknown>>;
  format: "csv" | "json";
  /** One-based place of each entry: its line in the CSV (the header is line 1), its position in the JSON array. */
  places: number[];
}

/** Where entries are, as a person finds them in the file: "CSV line 4 (the header is line 1)". */
export function placeOf(d: Dictionary, ...indexes: number[]): string {
  const numbers = indexes.map((i) => d.places[i]).join(" and ");
  const plural = indexes.length > 1;
  return d.format === "csv"
    ? `CSV line${plural ? "s" : ""} ${numbers} (the header is line 1)`
    : `JSON array ${plural ? "entries" : "entry"} ${numbers} (counting from 1)`;
}

/**
 * Reads a dictionary for import: CSV with a header line (one object per row, columns named by
 * the header; a BOM and blank lines are tolerated), or JSON (an array of objects). The result
 * becomes the parameter's value in one versioned change; its schema then validates every entry.
 */
export function parseDictionary(format: string, content: unknown, maxEntries: number): Dictionary {
  if (typeof content === "string" && content.includes("\u0000")) throw badRequest("the dictionary contains NUL bytes");
  let dictionary: Dictionary;
  if (format === "csv") {
    if (typeof content !== "string") throw badRequest("a CSV dictionary is sent as text/csv");
    dictionary = parseCsv(content, maxEntries);
  } else if (format === "json") {
    let entries = content;
    if (typeof content === "string") {
      try {
        entries = JSON.parse(content);
      } catch (err) {
        throw badRequest(`the JSON does not parse: ${(err as Error).message}`);
      }
    }
    if (!Array.isArray(entries)) throw badRequest("a JSON dictionary is an array of objects");
    dictionary = { entries, format: "json", places: entries.map((_e, i) => i + 1) };
    const bad = entries.findIndex((e) => typeof e !== "object" || e === null || Array.isArray(e));
    if (bad >= 0) throw badRequest(`a JSON dictionary is an array of objects: ${placeOf(dictionary, bad)} is not an object`);
  } else {
    throw badRequest('format must be "csv" or "json"');
  }
  if (dictionary.entries.length === 0) throw badRequest("the dictionary has no entries");
  if (dictionary.entries.length > maxEntries) throw badRequest(`the dictionary has more than ${maxEntries} entries (IMPORT_MAX_ENTRIES)`);
  // What the platform refuses in a JSON body (NUL, lone surrogates, a __proto__ key, nesting past its
  // limit), refused in the file's text too, whether it came as a REST body or as Connect's content: named
  // as the file shows the entry.
  dictionary.entries.forEach((entry, i) => {
    const reason = unacceptableInput(entry, "");
    if (reason) throw badRequest(`${placeOf(dictionary, i)}: ${reason}`);
  });
  return dictionary;
}

type CellType = "integer" | "number" | "boolean";

const decimal = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * A cell's value as `type`, or why it does not read as one. Spaces around it are not part of
 * it (quoted or not). A number must be one a JSON reader gets back as written: beyond 2^53 digits would
 * be lost (12345678901234567890 stored as 12345678901234567000) and `1e-400` would become 0.
 */
function convertCell(raw: string, type: CellType): number | boolean | string {
  const cell = raw.trim();
  if (type === "boolean") {
    const word = cell.toLowerCase();
    return word === "true" ? true : word === "false" ? false : "is not a boolean (true or false)";
  }
  const not = type === "integer" ? "is not an integer" : "is not a number";
  // Number() alone would also read "0x1A", "Infinity" and "" (as 0).
  if (!decimal.test(cell)) return not;
  const n = Number(cell);
  if (!Number.isFinite(n) || Math.abs(n) > Number.MAX_SAFE_INTEGER) return "is beyond ±2^53, past which digits would be lost";
  if (n === 0 && /[1-9]/.test(cell.split(/e/i)[0]!)) return "is too small to be kept (it would become 0)";
  return type === "integer" && !Number.isInteger(n) ? not : n;
}

/**
 * A CSV dictionary's cells as the entry schema types their columns: every CSV cell is text, so a
 * spreadsheet's `sort` or `enabled` column could never match `integer` or `boolean`. Columns the
 * entry schema's `properties` give the type `integer`, `number` or `boolean` are converted (a cell
 * that does not convert is refused naming its line, column and type); an empty cell is an absent
 * field, so a required one is reported missing. JSON dictionaries carry their own types.
 */
export function typeCsvCells(d: Dictionary, schema: object | undefined): Dictionary {
  if (d.format !== "csv") return d;
  const properties = (schema as { items?: { properties?: Record<string, { type?: unknown }> } } | undefined)?.items?.properties;
  const typeOf = (column: string): CellType | undefined => {
    const declared = properties && Object.hasOwn(properties, column) ? properties[column]?.type : undefined;
    // `["integer", "null"]`: a cell is text, never null, so the one other type is what it converts to.
    const types = (Array.isArray(declared) ? declared : [declared]).filter((t) => t !== "null");
    const type = types.length === 1 ? types[0] : undefined;
    return type === "integer" || type === "number" || type === "boolean" ? type : undefined;
  };
  const entries = d.entries.map((entry, i) =>
    Object.fromEntries(
      Object.entries(entry as Record<string, string>).flatMap(([column, cell]): Array<[string, unknown]> => {
        if (cell === "") return [];
        const type = typeOf(column);
        if (!type) return [[column, cell]];
        const value = convertCell(cell, type);
        if (typeof value === "string") throw badRequest(`${placeOf(d, i)}: ${column} ${JSON.stringify(cell)} ${value}`);
        return [[column, value]];
      }),
    ),
  );
  return { ...d, entries };
}

/**
 * The field that identifies an entry of a dictionary category: two entries with the same one
 * would leave readers to pick one of them at random.
 */
const identifyingField: Record<string, string> = { "card-bin": "bin", "phone-segment": "segment" };

/** Refuses two entries with the same code, naming it and both places. */
export function refuseDuplicateCodes(d: Dictionary, category: string): void {
  const field = identifyingField[category] ?? "code";
  const seen = new Map<string, number>();
  d.entries.forEach((entry, i) => {
    const code = entry[field];
    if (typeof code !== "string" && typeof code !== "number") return;
    const key = String(code);
    const first = seen.get(key);
    if (first !== undefined) throw badRequest(`${field} ${JSON.stringify(key)} appears twice: ${placeOf(d, first, i)}`);
    seen.set(key, i);
  });
}

/**
 * CSV rows with the line each starts on. csv-parse tells how many bytes each record ended at;
 * the line is counted here (CRLF, LF or CR each end one line), then moved back over the line
 * breaks inside the record's quoted fields, so a multi-line row is named by its first line.
 */
function parseCsv(content: string, maxEntries: number): Dictionary {
  let rows: Array<{ record: Record<string, string>; info: { bytes: number } }>;
  try {
    rows = parse(content, { columns: uniqueColumns, bom: true, skip_empty_lines: true, trim: true, to: maxEntries + 1, info: true });
  } catch (err) {
    if (err instanceof AppError) throw err;
    throw badRequest(`the CSV does not parse: ${(err as Error).message}`);
  }
  const bytes = Buffer.from(content);
  const places: number[] = [];
  let at = 0;
  let line = 1;
  for (const { record, info } of rows) {
    // Up to the record's last character: its own line break (if any) ends its last line.
    let end = info.bytes;
    if (bytes[end - 1] === 0x0a) end -= bytes[end - 2] === 0x0d ? 2 : 1;
    else if (bytes[end - 1] === 0x0d) end -= 1;
    for (; at < end; at++) if (bytes[at] === 0x0a || (bytes[at] === 0x0d && bytes[at + 1] !== 0x0a)) line++;
    at = info.bytes;
    const inside = Object.values(record).reduce((n, v) => n + (v.match(/\r\n|\r|\n/g)?.length ?? 0), 0);
    places.push(line - inside);
    // The record's own line break, now behind `at`.
    if (end < info.bytes) line++;
  }
  return { entries: rows.map((r) => r.record), format: "csv", places };
}

/** A header naming one column twice would silently keep the last one's values. */
function uniqueColumns(header: string[]): string[] {
  const twice = header.find((name, i) => header.indexOf(name) !== i);
  if (twice !== undefined) throw badRequest(`the CSV header names column "${twice}" twice`);
  return header;
}

/** The line (from 1) of the character at `index`. */
const lineAt = (text: string, index: number) => (text.slice(0, index).match(/\r\n|\r|\n/g)?.length ?? 0) + 1;

/** Private-use code points: where legacy decoders (GBK's 0xFF, …) put bytes their charset does not define. */
const privateUse = /[\uE000-\uF8FF\u{F0000}-\u{FFFFD}\u{100000}-\u{10FFFD}]/u;

/**
 * The text of a dictionary upload (CSV, or JSON sent as text) in the charset its Content-Type names
 * (UTF-8 when none): Excel exports in Chinese are usually GBK. Bytes that are not valid in that
 * charset are refused, never replaced; so are, in a charset other than UTF-8, bytes it leaves
 * undefined (decoded to private-use code points, which `fatal` lets through), naming the line they
 * are on as the file's format counts it.
 */
export function decodeDictionaryText(bytes: Buffer, contentType: string | undefined, format: "csv" | "json"): string {
  const charset = (/charset\s*=\s*"?([^";\s]+)/i.exec(contentType ?? "")?.[1] ?? "utf-8").toLowerCase();
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(charset, { fatal: true });
  } catch {
    throw badRequest(`charset "${charset}" is not one config-center can read`);
  }
  const lineOf = (text: string, index: number) =>
    format === "csv" ? `CSV line ${lineAt(text, index)} (the header is line 1)` : `line ${lineAt(text, index)}`;
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    const hint =
      format === "csv" && (charset === "utf-8" || charset === "utf8")
        ? " (an Excel export in Chinese is usually GBK: send Content-Type: text/csv; charset=gbk)"
        : "";
    // Where: the first replacement character a lenient decoding puts in their place.
    const lenient = new TextDecoder(charset).decode(bytes);
    const at = lenient.indexOf("\uFFFD");
    const where = at < 0 ? "" : `: ${lineOf(lenient, at)} has bytes ${charset} does not define`;
    throw badRequest(`the dictionary is not valid ${charset}${where}${hint}`);
  }
  const undefinedAt = decoder.encoding === "utf-8" ? -1 : text.search(privateUse);
  if (undefinedAt >= 0) {
    const codePoint = text.codePointAt(undefinedAt)!.toString(16).toUpperCase();
    throw badRequest(
      `the dictionary is not valid ${charset}: ${lineOf(text, undefinedAt)} has bytes ${charset} does not define (read as U+${codePoint})`,
    );
  }
  return text;
}
