import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Bus, BusEvent } from "@opsplane/bus";

/**
 * Trace context of the active span, as the bus stores it on each event
 * (CloudEvents distributed-tracing extension). Empty when tracing is off.
 */
export function activeTraceContext(): { traceparent?: string; tracestate?: string } | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  if (!carrier.traceparent) return undefined;
  return { traceparent: carrier.traceparent, ...(carrier.tracestate ? { tracestate: carrier.tracestate } : {}) };
}

const tracer = trace.getTracer("@opsplane/bus");

/**
 * The same bus, but each handled event runs in a consumer span whose parent is
 * the producer's span, so one trace follows a change across services.
 */
export function tracedBus(bus: Bus): Bus {
  return {
    kind: bus.kind,
    publish: (events, opts) => bus.publish(events, opts),
    check: () => bus.check(),
    close: () => bus.close(),
    subscribe: (opts) =>
      bus.subscribe({
        ...opts,
        handler: (event: BusEvent) => {
          const parent = propagation.extract(ROOT_CONTEXT, { traceparent: event.traceparent, tracestate: event.tracestate });
          return tracer.startActiveSpan(
            `${event.topic} process`,
            {
              kind: SpanKind.CONSUMER,
              attributes: {
                "messaging.destination.name": event.topic,
                "messaging.message.id": event.id,
                "messaging.consumer.group.name": opts.group,
              },
            },
            parent,
            async (span) => {
              try {
                await opts.handler(event);
              } catch (err) {
                span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
                throw err;
              } finally {
                span.end();
              }
            },
          );
        },
      }),
  };
}
