import type { DescMessage } from "@bufbuild/protobuf";
import { AssistSessionEndedSchema, AssistSessionOpenedSchema, ProblemReportChangedSchema } from "./gen/ops/v1/assist_pb.js";
import { CallbackDispatchedSchema, CallbackRulesChangedSchema } from "./gen/ops/v1/callback_dispatcher_pb.js";
import { ConfigChangedSchema } from "./gen/ops/v1/config_center_pb.js";
import { ArtifactPublishedSchema, ScanCompletedSchema } from "./gen/ops/v1/errcode_pb.js";
import { AuditRecordedSchema } from "./gen/ops/v1/platform_events_pb.js";

/** One Kafka topic: its name, the CloudEvents `type` of its events and the proto message of their body. */
export interface TopicDef<S extends DescMessage = DescMessage> {
  readonly name: string;
  readonly type: string;
  readonly schema: S;
}

function topic<S extends DescMessage>(name: string, schema: S): TopicDef<S> {
  return { name, type: schema.typeName, schema };
}

/**
 * The one registry of topic names. Producers and consumers refer to these constants,
 * never to string literals, so a rename is one change here.
 */
export const topics = {
  auditRecorded: topic("audit.recorded", AuditRecordedSchema),
  callbackDispatched: topic("callback.dispatched", CallbackDispatchedSchema),
  callbackRulesChanged: topic("callback.rules.changed", CallbackRulesChangedSchema),
  assistSessionOpened: topic("assist.session.opened", AssistSessionOpenedSchema),
  assistSessionEnded: topic("assist.session.ended", AssistSessionEndedSchema),
  assistReportChanged: topic("assist.report.changed", ProblemReportChangedSchema),
  configChanged: topic("config.changed", ConfigChangedSchema),
  artifactPublished: topic("artifact.published", ArtifactPublishedSchema),
  errcodeScanCompleted: topic("errcode.scan.completed", ScanCompletedSchema),
} as const;

export type TopicName = (typeof topics)[keyof typeof topics]["name"];

export function topicByName(name: string): TopicDef | undefined {
  return Object.values(topics).find((t) => t.name === name);
}
