import { dropReasons } from "@opsplane/store";
import { Counter, Gauge, type Registry } from "prom-client";

export interface AssistMetrics {
  messages: Counter<"side" | "type">;
  refusals: Counter<"reason">;
  sockets: Gauge<"side">;
  fanoutDelivered: Counter<"via">;
  fanoutPublishes: Counter;
  fanoutPublishedMessages: Counter;
  idleEnded: Counter;
  recordingDropped: Counter<"reason">;
}

export function createAssistMetrics(registry: Registry): AssistMetrics {
  const recordingDropped = new Counter({
    name: "assist_recording_events_dropped_total",
    help: "Widget frames not recorded, by reason: queue_full (PostgreSQL down or slow), unstorable (PostgreSQL refused the frame), shutdown (still queued at exit)",
    labelNames: ["reason"],
    registers: [registry],
  });
  // Every reason is exported from the start, at 0, so a rate or an alert on it has a series to read.
  for (const reason of dropReasons) recordingDropped.inc({ reason }, 0);
  return {
    messages: new Counter({
      name: "assist_messages_total",
      help: "WebSocket messages accepted, by sending side and message type",
      labelNames: ["side", "type"],
      registers: [registry],
    }),
    refusals: new Counter({
      name: "assist_refusals_total",
      help: "Refused keys, tickets, origins and messages, by reason",
      labelNames: ["reason"],
      registers: [registry],
    }),
    sockets: new Gauge({
      name: "assist_sockets",
      help: "Open WebSockets on this replica, by side",
      labelNames: ["side"],
      registers: [registry],
    }),
    fanoutDelivered: new Counter({
      name: "assist_fanout_delivered_total",
      help: "Messages handed to this replica's sockets, by path: local (published on this replica) or redis (from another replica)",
      labelNames: ["via"],
      registers: [registry],
    }),
    fanoutPublishes: new Counter({
      name: "assist_fanout_redis_publishes_total",
      help: "Redis PUBLISH commands (one per session channel per event-loop turn)",
      registers: [registry],
    }),
    fanoutPublishedMessages: new Counter({
      name: "assist_fanout_redis_published_messages_total",
      help: "Messages carried by those PUBLISHes (divide by the publishes for the mean batch size)",
      registers: [registry],
    }),
    idleEnded: new Counter({
      name: "assist_sessions_idle_ended_total",
      help: "Sessions this replica ended because the widget sent nothing for ASSIST_IDLE_TIMEOUT_SECONDS",
      registers: [registry],
    }),
    recordingDropped,
  };
}
