import { CloudEvent, Kafka, type KafkaMessage } from "cloudevents";

/** An event as the bus carries it: CloudEvents 1.0 attributes plus the partition key and trace context. */
export interface EventEnvelope {
  id: string;
  /** CloudEvents `source`: the producing service, e.g. "/opsplane/config-center". */
  source: string;
  type: string;
  subject?: string;
  /** RFC 3339 time the event was produced. */
  time: string;
  /** Partition key: events with the same key are delivered in order. */
  key: string | null;
  data: unknown;
  /** W3C trace context (CloudEvents distributed-tracing extension). */
  traceparent?: string;
  tracestate?: string;
}

export interface KafkaRecord {
  key: string | null;
  value: Buffer;
  headers: Record<string, string>;
}

/** Kafka binary content mode: attributes in `ce_*` headers, the JSON body as the value. */
export function toKafkaRecord(e: EventEnvelope): KafkaRecord {
  const ce = new CloudEvent({
    id: e.id,
    source: e.source,
    type: e.type,
    time: e.time,
    datacontenttype: "application/json",
    data: e.data,
    ...(e.subject ? { subject: e.subject } : {}),
    ...(e.traceparent ? { traceparent: e.traceparent } : {}),
    ...(e.tracestate ? { tracestate: e.tracestate } : {}),
  });
  const msg = Kafka.binary(ce) as KafkaMessage;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(msg.headers)) if (v !== undefined) headers[k] = String(v);
  const body = typeof msg.body === "string" ? msg.body : JSON.stringify(msg.body);
  return { key: e.key, value: Buffer.from(body), headers };
}

/** Reverses {@link toKafkaRecord}; throws when the record is not a CloudEvent. */
export function fromKafkaRecord(record: {
  key: Buffer | string | null;
  value: Buffer | null;
  headers: Record<string, string | Buffer | undefined>;
}): EventEnvelope {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(record.headers)) if (v !== undefined) headers[k] = v.toString();
  const value = record.value?.toString() ?? "";
  const msg: KafkaMessage<string> = { headers, key: record.key?.toString() ?? "", value, body: value };
  const ce = Kafka.toEvent(msg) as CloudEvent<unknown>;
  const ext = ce as unknown as Record<string, unknown>;
  return {
    id: ce.id,
    source: ce.source,
    type: ce.type,
    time: ce.time ?? new Date().toISOString(),
    key: record.key === null ? null : record.key.toString(),
    data: typeof ce.data === "string" ? JSON.parse(ce.data) : ce.data,
    ...(ce.subject ? { subject: ce.subject } : {}),
    ...(typeof ext.traceparent === "string" ? { traceparent: ext.traceparent } : {}),
    ...(typeof ext.tracestate === "string" ? { tracestate: ext.tracestate } : {}),
  };
}
