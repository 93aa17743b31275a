import type { SubscribeOptions } from "./bus.js";

export type ResolvedSubscribeOptions = Required<SubscribeOptions>;

/** Fills defaults and rejects options that could only fail later. */
export function resolveSubscribeOptions(o: SubscribeOptions): ResolvedSubscribeOptions {
  if (!o.group) throw new Error("bus: subscribe needs a group");
  if (o.group.startsWith("__")) throw new Error(`bus: group names starting with "__" are reserved, got ${o.group}`);
  if (o.topics.length === 0) throw new Error("bus: subscribe needs at least one topic");
  if (o.topics.some((t) => !t || t === "*")) throw new Error("bus: topics must be named");
  const r: ResolvedSubscribeOptions = {
    ...o,
    topics: [...new Set(o.topics)],
    batchSize: o.batchSize ?? 256,
    maxAttempts: o.maxAttempts ?? 5,
    retryBackoffMs: o.retryBackoffMs ?? 100,
    fromBeginning: o.fromBeginning ?? true,
  };
  if (r.batchSize < 1 || r.maxAttempts < 1) throw new Error("bus: batchSize and maxAttempts must be at least 1");
  if (r.retryBackoffMs < 0) throw new Error("bus: retryBackoffMs must not be negative");
  return r;
}
