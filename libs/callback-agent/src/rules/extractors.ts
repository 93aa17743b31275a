import { XMLParser } from "fast-xml-parser";
import { parseDotPath, readDotPath } from "./dot-path.js";
import type { ExtractorSpec, HttpExchange } from "./types.js";

/** Why no id could be read: recorded with the decision and counted in metrics. */
export class ExtractionError extends Error {
  constructor(
    /** `script_unavailable`: the script could not run for the sandbox's own reason; it says nothing about the id. */
    readonly reason: "malformed_body" | "id_missing" | "script_failed" | "script_unavailable",
    message: string,
  ) {
    super(message);
  }
}

/**
 * Reads the id from one exchange, or throws an ExtractionError. Declarative
 * extractors answer synchronously; script extractors asynchronously (the
 * sandbox runs in a worker).
 */
export type Extractor = (exchange: HttpExchange) => string | Promise<string>;

/** Compiles a sandboxed script once; the returned function runs `extract(msg)` within the script's limits. */
export type ScriptCompiler = (source: string) => (input: ScriptInput) => Promise<unknown>;

/** What a script's `extract(msg)` receives: the exchange with bodies as text. */
export interface ScriptInput {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body: string;
  response?: { status: number; headers: Record<string, string>; body: string };
}

// Entity and DOCTYPE processing off: callback bodies are untrusted.
const xmlParser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, processEntities: false, ignoreDeclaration: true });

/** Compiles `spec` into an extractor; throws (with a message naming the problem) when it cannot compile. */
export function compileExtractor(spec: ExtractorSpec, compileScript: ScriptCompiler | undefined): Extractor {
  // The request side is the exchange itself: its headers are only built when a header extractor reads them.
  const side = (x: HttpExchange): { headers: Record<string, string>; body: Buffer } => {
    if (spec.from !== "response") return x;
    if (!x.response) throw new ExtractionError("id_missing", "no response to read the id from");
    return x.response;
  };
  switch (spec.kind) {
    case "json": {
      const steps = parseDotPath(spec.expr);
      return (x) => idFrom(readDotPath(parseJson(side(x).body), steps), `JSON path ${spec.expr}`);
    }
    case "xml": {
      const steps = parseDotPath(spec.expr);
      return (x) => idFrom(readDotPath(parseXml(side(x).body), steps), `XML element ${spec.expr}`);
    }
    case "form": {
      if (!spec.expr) throw new Error("form field name is empty");
      return (x) => idFrom(new URLSearchParams(textOf(side(x).body)).get(spec.expr), `form field ${spec.expr}`);
    }
    case "query": {
      if (!spec.expr) throw new Error("query parameter name is empty");
      return (x) => idFrom(new URLSearchParams(x.query).get(spec.expr), `query parameter ${spec.expr}`);
    }
    case "header": {
      const name = spec.expr.toLowerCase();
      if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) throw new Error(`"${spec.expr}" is not a header name`);
      return (x) => idFrom(side(x).headers[name], `header ${spec.expr}`);
    }
    case "script": {
      if (!compileScript) throw new Error("script extractors are not available here");
      const run = compileScript(spec.expr);
      return async (x) => {
        let out: unknown;
        try {
          out = await run(scriptInput(x));
        } catch (err) {
          if (err instanceof ExtractionError) throw err;
          throw new ExtractionError("script_failed", `script failed: ${(err as Error).message}`);
        }
        return idFrom(out, "script result");
      };
    }
    default:
      throw new Error(`unknown extractor kind "${String((spec as { kind: unknown }).kind)}"`);
  }
}

export function scriptInput(x: HttpExchange): ScriptInput {
  return {
    method: x.method,
    path: x.path,
    query: Object.fromEntries(new URLSearchParams(x.query)),
    headers: x.headers,
    body: textOf(x.body),
    ...(x.response ? { response: { status: x.response.status, headers: x.response.headers, body: textOf(x.response.body) } } : {}),
  };
}

/**
 * A body as text, without the byte order mark some platforms put before UTF-8 (JSON.parse and a form's
 * first field name would otherwise take it as content, and a registered id's callback went to production).
 */
function textOf(body: Buffer): string {
  const text = body.toString("utf8");
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(textOf(body));
  } catch (err) {
    throw new ExtractionError("malformed_body", `body is not JSON: ${(err as Error).message}`);
  }
}

function parseXml(body: Buffer): unknown {
  const text = textOf(body);
  if (!text.trimStart().startsWith("<")) throw new ExtractionError("malformed_body", "body is not XML");
  try {
    return xmlParser.parse(text, true);
  } catch (err) {
    throw new ExtractionError("malformed_body", `body is not XML: ${(err as Error).message}`);
  }
}

const maxIdLength = 256;

/** Accepts strings and numbers as ids; anything else (objects, empty, huge) is "missing". */
function idFrom(value: unknown, what: string): string {
  const id = typeof value === "number" && Number.isFinite(value) ? String(value) : typeof value === "string" ? value.trim() : undefined;
  if (!id) throw new ExtractionError("id_missing", `${what}: no id`);
  // Characters as the registrations API counts them (code points): an emoji is one, not two UTF-16 units.
  if (id.length > maxIdLength && [...id].length > maxIdLength)
    throw new ExtractionError("id_missing", `${what}: id longer than ${maxIdLength} characters`);
  return id;
}
