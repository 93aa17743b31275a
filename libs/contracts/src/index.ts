export * from "./cloudevents.js";
export * from "./event-data.js";
export * from "./gen/ops/v1/assist_pb.js";
export * from "./gen/ops/v1/callback_dispatcher_pb.js";
export * from "./gen/ops/v1/errcode_pb.js";
export * from "./gen/ops/v1/platform_events_pb.js";
export * from "./gen/ops/v1/service_info_pb.js";
export * from "./topics.js";
