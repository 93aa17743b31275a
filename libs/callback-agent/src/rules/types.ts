/** Where a declarative extractor reads the business-object id. */
export type ExtractorKind = "json" | "query" | "form" | "header" | "xml" | "script";

/**
 * How to read the business-object id from one HTTP exchange.
 * - json: dot path into the JSON body (`data.items[0].id`, optional leading `$.`)
 * - query: query-string parameter name
 * - form: field of an application/x-www-form-urlencoded body
 * - header: header name (case-insensitive)
 * - xml: dot path into the XML body (`xml.out_trade_no`)
 * - script: JavaScript source defining `function extract(msg)`, run in the sandbox
 */
export interface ExtractorSpec {
  kind: ExtractorKind;
  expr: string;
  /** Interface A only: read the request (figure 3) or the response (figure 4). Callbacks are always requests. */
  from?: "request" | "response";
}

/** A request (and, for interface A, its response) as extractors and sample checks see it. */
export interface HttpExchange {
  method: string;
  /** Path without the query string. */
  path: string;
  /** Raw query string without `?`. */
  query: string;
  /** Lower-case header names. */
  headers: Record<string, string>;
  body: Buffer;
  response?: { status: number; headers: Record<string, string>; body: Buffer };
}

/** A sample exchange a rule's extractor must read `expectId` from; checked when the rule is saved. */
export interface SampleSpec {
  method?: string;
  path: string;
  query?: string;
  headers?: Record<string, string>;
  body?: string;
  response?: { status?: number; headers?: Record<string, string>; body?: string };
  expectId: string;
}

/** One dispatch rule: the seed's four parts plus what operators need. */
export interface RuleSpec {
  name: string;
  description?: string;
  enabled?: boolean;
  /** Interface A: the platform API whose traffic creates the business object. */
  interface: {
    pattern: string;
    method?: string;
    host?: string;
    id: ExtractorSpec;
    sample?: SampleSpec;
  };
  /** Callback A'': the URL the third-party platform calls back. */
  callback: {
    pattern: string;
    method?: string;
    id: ExtractorSpec;
    sample?: SampleSpec;
  };
  /** How long a registration routes callbacks to its environment. */
  ttlSeconds: number;
  /**
   * How long the dispatcher may hold a callback whose id is not registered yet, but which a test
   * environment may claim, waiting for a registration still in flight (0 or absent: not held).
   */
  holdMs?: number;
}

/** Rules as the dispatcher serves them to agents. */
export interface RuleSetDocument {
  version: number;
  rules: RuleSpec[];
}
