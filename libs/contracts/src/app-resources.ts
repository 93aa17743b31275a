/**
 * One interface, queue or job as an instance reports it to config-center over REST (seed step 11,
 * module 2025): the proto3 JSON of `ops.v1.ReportedResource`, with the code required. The SDK
 * sends it, config-center keeps it per app.
 */
export interface ReportedResourceJson {
  /** The code governance rules and reports are keyed by. */
  code: string;
  /** The handler's signature, e.g. `LoanController.apply(LoanApplication)`. */
  handler?: string;
  /** JSON Schema of the parameters. */
  params?: unknown;
  /** Validation rules. */
  rules?: unknown;
  description?: string;
  method?: string;
  path?: string;
  topic?: string;
  cron?: string;
  /** JSON Schema of the response. */
  response?: unknown;
}
