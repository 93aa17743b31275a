import type {
  Edge,
  EdgeCall,
  EdgeDecision,
  EdgeReason,
  EdgeRequest,
  EdgeResponse,
  RequestObserver,
  RequestOutcome,
  SdkLogger,
} from "./contracts.js";

/** The governance gate as the edge drives it: on the edge's clock, which is governance's own. */
export interface Gate {
  now(): number;
  enter(request: EdgeRequest, now: number): EdgeDecision;
}

/**
 * What adapters call: the governance gate, plus timing and the observers (statistics, plugins).
 * A call let through is timed from its arrival to `finish` on governance's monotonic clock (one
 * clock, read twice a request: breakers, buckets and durations share the readings); `finish` gives
 * the duration to governance (breakers count slow calls from it), then to every observer. A
 * request governance answered itself is reported to the observers with the reason, once its
 * response is known. Nothing is allocated per request: the outcome object is reused.
 */
export function composeEdge(gate: Gate, observers: readonly RequestObserver[], log?: SdkLogger): Edge {
  const watchers = new Watchers(observers, log);
  const outcome: RequestOutcome = { statusCode: 0, failed: false, durationMs: 0 };
  return {
    now: () => gate.now(),
    enter(req: EdgeRequest, arrivedAt: number): EdgeDecision {
      const d = gate.enter(req, arrivedAt);
      if (d.action === "respond") watchers.answered(req.code, d.reason, d.response);
      return d;
    },
    finish(call: EdgeCall, code: string, arrivedAt: number, statusCode: number, failed: boolean): void {
      const now = gate.now();
      outcome.statusCode = statusCode;
      outcome.failed = failed;
      outcome.durationMs = now - arrivedAt;
      call.finish(outcome, now);
      watchers.finished(code, outcome);
    },
  };
}

/** Calls the observers; one that throws is logged once and never breaks the request. */
class Watchers {
  private failed = false;

  constructor(
    private readonly observers: readonly RequestObserver[],
    private readonly log: SdkLogger | undefined,
  ) {}

  finished(code: string, outcome: RequestOutcome, reason?: EdgeReason): void {
    const list = this.observers;
    for (let i = 0; i < list.length; i++) {
      try {
        list[i]!.requestFinished(code, outcome, reason);
      } catch (err) {
        if (this.failed) continue;
        this.failed = true;
        this.log?.error(`request observer failed: ${(err as Error).message}`, { code });
      }
    }
  }

  answered(code: string, reason: EdgeReason, response: EdgeResponse | Promise<EdgeResponse>): void {
    if (this.observers.length === 0) return;
    if (!(response instanceof Promise)) this.finished(code, answeredOutcome(response.statusCode, 0), reason);
    else {
      const start = performance.now();
      response.then(
        (r) => this.finished(code, answeredOutcome(r.statusCode, performance.now() - start), reason),
        () => this.finished(code, answeredOutcome(500, performance.now() - start), reason),
      );
    }
  }
}

function answeredOutcome(statusCode: number, durationMs: number): RequestOutcome {
  return { statusCode, failed: statusCode >= 500, durationMs };
}
