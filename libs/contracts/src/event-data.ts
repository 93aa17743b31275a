import { type DescMessage, fromJson, type JsonValue, type MessageShape, toJson } from "@bufbuild/protobuf";
import type { TopicDef } from "./topics.js";

/** Body of an event on `topic`, as the proto3 JSON that travels on the bus. */
export function toEventData<S extends DescMessage>(topic: TopicDef<S>, message: MessageShape<S>): JsonValue {
  return toJson(topic.schema, message);
}

/** Parses and validates an event body against its topic's message; throws on a body that does not fit. */
export function fromEventData<S extends DescMessage>(topic: TopicDef<S>, data: unknown): MessageShape<S> {
  return fromJson(topic.schema, data as JsonValue, { ignoreUnknownFields: true });
}
