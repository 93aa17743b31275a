import type { JsonValue, Script } from "@opsplane/sandbox";
import type { EdgeRequest, EdgeResponse, SdkLogger } from "../contracts.js";
import { headersProblem } from "./http-fields.js";
import { governanceHeader, type RespondDecision } from "./responses.js";
import type { BaffleRule } from "./rules.js";

/** Compiles a baffle script in the sandbox (QuickJS on worker threads, with time and memory limits). */
export type ScriptCompiler = (source: string) => Promise<Script>;

/** The function a baffle script defines: `function respond(request) { return { status, headers, body } }`. */
export const baffleEntry = "respond";

/**
 * A test baffle: the interface answers from the rule instead of its handler. Without a script the
 * answer is built once here. With one, the script computes it from the request
 * (`{method, path, query, params, headers, caller, body}`), returning any of `status`, `headers`
 * and `body`; what it leaves out comes from the rule's `response`. A script that fails answers
 * 500 naming the reason, logged once per rule.
 */
export class Baffle {
  private readonly fixed: RespondDecision;
  readonly script: Promise<Script> | undefined;
  readonly source: string | undefined;
  private failureLogged = false;

  constructor(
    private readonly code: string,
    private readonly rule: BaffleRule,
    compile: ScriptCompiler,
    private readonly log: SdkLogger,
    /** The baffle this one replaces: its compiled script is reused when the source is the same. */
    previous?: Baffle,
  ) {
    const response = buildResponse(rule.response.status, rule.response.headers, rule.response.body, rule.delayMs);
    this.fixed = Object.freeze({ action: "respond", reason: "baffle", response });
    this.source = rule.script;
    if (rule.script === undefined) return;
    if (previous?.source === rule.script && previous.script) {
      this.script = previous.script;
      this.failureLogged = previous.failureLogged;
      return;
    }
    this.script = compile(rule.script);
    this.script.catch((err: unknown) => this.logFailure(`does not compile: ${reasonOf(err)}`));
  }

  decide(req: EdgeRequest): RespondDecision {
    if (!this.script) return this.fixed;
    return { action: "respond", reason: "baffle", response: this.run(this.script, scriptInput(req)) };
  }

  /** Frees the compiled script, unless `next` took it over. */
  dispose(next?: Baffle): void {
    if (this.script && next?.script !== this.script) this.script.then((s) => s.dispose()).catch(() => {});
  }

  private async run(script: Promise<Script>, input: JsonValue): Promise<EdgeResponse> {
    let value: unknown;
    try {
      value = (await (await script).call(input)).value;
    } catch (err) {
      return this.failed(reasonOf(err));
    }
    if (typeof value !== "object" || value === null || Array.isArray(value))
      return this.failed(
        `it returned ${value === null ? "null" : Array.isArray(value) ? "an array" : typeof value}, not { status, headers, body }`,
      );
    const out = value as { status?: unknown; headers?: unknown; body?: unknown };
    const status = out.status ?? this.rule.response.status;
    if (status !== undefined && !(Number.isInteger(status) && (status as number) >= 100 && (status as number) <= 599))
      return this.failed(`it returned status ${JSON.stringify(status)}, not an integer from 100 to 599`);
    const headers = out.headers ?? this.rule.response.headers;
    if (headers !== undefined && !isStringMap(headers)) return this.failed("it returned headers that are not an object of strings");
    const headerProblem = headers === undefined ? undefined : headersProblem(headers);
    if (headerProblem) return this.failed(`it returned a header that cannot be sent: ${headerProblem}`);
    // The body is JSON the sandbox already bounded (1 MiB of output).
    return buildResponse(status as number | undefined, headers, "body" in out ? out.body : this.rule.response.body, this.rule.delayMs);
  }

  private failed(reason: string): EdgeResponse {
    this.logFailure(`failed: ${reason}`);
    return {
      statusCode: 500,
      headers: { "content-type": "application/json; charset=utf-8", [governanceHeader]: "baffle" },
      body: JSON.stringify({ error: "baffle-script-failed", message: `baffle script of ${this.code} failed: ${reason}` }),
    };
  }

  private logFailure(what: string): void {
    if (this.failureLogged) return;
    this.failureLogged = true;
    this.log.warn(`baffle script of ${this.code} ${what}`, { code: this.code });
  }
}

function scriptInput(req: EdgeRequest): JsonValue {
  const q = req.query;
  return {
    method: req.method,
    path: req.path,
    query: typeof q === "string" ? Object.fromEntries(new URLSearchParams(q)) : (q ?? {}),
    params: req.params ?? {},
    headers: req.headers,
    caller: req.caller ?? req.headers["x-opsplane-caller"] ?? null,
    body: req.body ?? null,
  } as unknown as JsonValue;
}

/** A string body goes as text, anything else as JSON; the rule's headers override the content type. */
function buildResponse(
  status: number | undefined,
  headers: Record<string, string> | undefined,
  body: unknown,
  delayMs: number | undefined,
): EdgeResponse {
  const text = typeof body === "string" || body === undefined;
  const out: Record<string, string> = {
    "content-type": text ? "text/plain; charset=utf-8" : "application/json; charset=utf-8",
  };
  if (headers) for (const [k, v] of Object.entries(headers)) out[k.toLowerCase()] = v;
  out[governanceHeader] = "baffle";
  const response: EdgeResponse = {
    statusCode: status ?? 200,
    headers: Object.freeze(out),
    body: typeof body === "string" ? body : body === undefined ? "" : JSON.stringify(body),
  };
  if (delayMs) response.delayMs = delayMs;
  return Object.freeze(response);
}

function isStringMap(v: unknown): v is Record<string, string> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.values(v).every((s) => typeof s === "string");
}

/** A sandbox error names its kind (timeout, memory, script, …); anything else its message. */
function reasonOf(err: unknown): string {
  const e = err as { kind?: unknown; message?: unknown };
  const message = typeof e?.message === "string" ? e.message : String(err);
  return typeof e?.kind === "string" ? `${e.kind}: ${message}` : message;
}
