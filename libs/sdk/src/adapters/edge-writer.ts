import type { EdgeResponse, SdkLogger } from "../contracts.js";
import { headersProblem } from "../governance/http-fields.js";
import { governanceHeader } from "../governance/responses.js";

/** Where an edge answer goes: a raw response (node:http, express, auto mode) or a fastify reply. */
export interface AnswerSink {
  /** True once nothing can be written any more (headers sent, or the socket gone). */
  closed(): boolean;
  /** Writes the answer; may throw (Node refuses a header it cannot send). */
  write(r: EdgeResponse): void;
}

/**
 * Writes the edge's answers, after a baffle's delay. Nothing it writes may throw out of an adapter:
 * a throw inside a middleware becomes express's HTML error page, and one inside a timer or a
 * promise callback kills the process. Governance checks what a baffle sends when the rule is
 * applied and when a script answers, so an answer that still cannot be written (a bug) is a 500
 * `baffle` JSON answer, logged once.
 */
export class EdgeWriter {
  private failureLogged = false;

  constructor(private readonly log: SdkLogger) {}

  write(sink: AnswerSink, response: EdgeResponse | Promise<EdgeResponse>): void {
    if (response instanceof Promise) {
      response.then(
        (r) => this.write(sink, r),
        (err: unknown) => this.fail(sink, `governance failed: ${(err as Error)?.message ?? String(err)}`),
      );
      return;
    }
    if (response.delayMs) setTimeout(() => this.writeNow(sink, response), response.delayMs);
    else this.writeNow(sink, response);
  }

  private writeNow(sink: AnswerSink, r: EdgeResponse): void {
    if (sink.closed()) return;
    try {
      // Checked here too, before the framework holds a header it would keep for the 500 as well.
      const problem = sendable.has(r) ? undefined : responseProblem(r);
      if (problem) throw new Error(problem);
      sendable.add(r);
      sink.write(r);
    } catch (err) {
      this.fail(sink, `its answer could not be sent: ${(err as Error)?.message ?? String(err)}`);
    }
  }

  private fail(sink: AnswerSink, reason: string): void {
    if (!this.failureLogged) {
      this.failureLogged = true;
      this.log.error(`governance answer replaced by a 500 (logged once): ${reason}`);
    }
    if (sink.closed()) return;
    try {
      sink.write(failure(reason));
    } catch {
      // Nothing more can be done for this request; the failure was logged.
    }
  }
}

/** Answers already found sendable: refusals and fixed baffles are shared objects, checked once. */
const sendable = new WeakSet<EdgeResponse>();

function responseProblem(r: EdgeResponse): string | undefined {
  if (!Number.isInteger(r.statusCode) || r.statusCode < 100 || r.statusCode > 599) return `status ${r.statusCode} is not from 100 to 599`;
  return headersProblem(r.headers);
}

function failure(reason: string): EdgeResponse {
  return {
    statusCode: 500,
    headers: { "content-type": "application/json; charset=utf-8", [governanceHeader]: "baffle" },
    body: JSON.stringify({ error: "baffle-failed", message: reason }),
  };
}
