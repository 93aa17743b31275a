import { TextDecoder } from "node:util";
import { AppError, badRequest } from "@opsplane/platform";
import { parse } from "csv-parse/sync";

/**
 * Reads a dictionary for import: CSV with a header line (one object per row, columns named by
 * the header; a BOM and blank lines are tolerated), or JSON (an array of objects). The result
 * becomes the parameter's value in one versioned change; its schema then validates every entry.
 */
export function parseDictionary(format: string, content: unknown, maxEntries: number): Array<Record<string, unknown>> {
  if (typeof content === "string" && content.includes("\u0000")) throw badRequest("the dictionary contains NUL bytes");
  let entries: unknown = content;
  if (format === "csv") {
    if (typeof content !== "string") throw badRequest("a CSV dictionary is sent as text/csv");
    try {
      entries = parse(content, { columns: uniqueColumns, bom: true, skip_empty_lines: true, trim: true, to: maxEntries + 1 });
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw badRequest(`the CSV does not parse: ${(err as Error).message}`);
    }
  } else if (format === "json") {
    if (typeof content === "string") {
      try {
        entries = JSON.parse(content);
      } catch (err) {
        throw badRequest(`the JSON does not parse: ${(err as Error).message}`);
      }
    }
    if (!Array.isArray(entries) || entries.some((e) => typeof e !== "object" || e === null || Array.isArray(e)))
      throw badRequest("a JSON dictionary is an array of objects");
  } else {
    throw badRequest('format must be "csv" or "json"');
  }
  const list = entries as Array<Record<string, unknown>>;
  if (list.length === 0) throw badRequest("the dictionary has no entries");
  if (list.length > maxEntries) throw badRequest(`the dictionary has more than ${maxEntries} entries (IMPORT_MAX_ENTRIES)`);
  return list;
}

/** A header naming one column twice would silently keep the last one's values. */
function uniqueColumns(header: string[]): string[] {
  const twice = header.find((name, i) => header.indexOf(name) !== i);
  if (twice !== undefined) throw badRequest(`the CSV header names column "${twice}" twice`);
  return header;
}

/**
 * The text of a CSV upload in the charset its Content-Type names (UTF-8 when none): Excel exports in
 * Chinese are usually GBK. Bytes that are not valid in that charset are refused, never replaced.
 */
export function decodeDictionaryText(bytes: Buffer, contentType: string | undefined): string {
  const charset = (/charset\s*=\s*"?([^";\s]+)/i.exec(contentType ?? "")?.[1] ?? "utf-8").toLowerCase();
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(charset, { fatal: true });
  } catch {
    throw badRequest(`charset "${charset}" is not one config-center can read`);
  }
  try {
    return decoder.decode(bytes);
  } catch {
    const hint =
      charset === "utf-8" || charset === "utf8"
        ? " (an Excel export in Chinese is usually GBK: send Content-Type: text/csv; charset=gbk)"
        : "";
    throw badRequest(`the dictionary is not valid ${charset}${hint}`);
  }
}
