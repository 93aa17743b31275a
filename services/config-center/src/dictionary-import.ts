import { badRequest } from "@opsplane/platform";
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
      entries = parse(content, { columns: true, bom: true, skip_empty_lines: true, trim: true, to: maxEntries + 1 });
    } catch (err) {
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
