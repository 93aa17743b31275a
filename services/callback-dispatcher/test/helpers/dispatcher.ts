import { sha256Hex, startService } from "@opsplane/platform";
import { createTestDatabase, testRedis } from "@opsplane/testing";
import { definition } from "../../src/service.js";

export const operatorKey = "op-key-0123456789abcdef";
export const viewerKey = "viewer-key-0123456789abcdef";
export const agentApp = { id: "agent-sit", secret: "agent-secret-0123456789" };

/** Starts the dispatcher on a fresh database with an operator key, a viewer key and agent app credentials bound to sit. */
export async function startDispatcher(extraEnv: Record<string, string> = {}, opts: { redis?: boolean; databaseUrl?: string } = {}) {
  const db = opts.databaseUrl ? undefined : await createTestDatabase();
  const redis = opts.redis === false ? undefined : testRedis();
  const svc = await startService(definition, {
    DATABASE_URL: opts.databaseUrl ?? db!.url,
    ...(redis ? { REDIS_URL: redis.url, REDIS_KEY_PREFIX: redis.prefix } : {}),
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
    AUTH_API_KEYS: `ops:operator:${sha256Hex(operatorKey)},watcher:viewer:${sha256Hex(viewerKey)}`,
    AUTH_APP_CREDENTIALS: `${agentApp.id}:${sha256Hex(agentApp.secret)}`,
    AGENT_ENVIRONMENTS: `${agentApp.id}:sit`,
    RULES_POLL_MS: "100",
    DECISION_FLUSH_MS: "20",
    ...extraEnv,
  });
  const api = async (method: string, path: string, body?: unknown, key = operatorKey) => {
    const res = await fetch(`${svc.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };
  return {
    svc,
    url: svc.url,
    databaseUrl: opts.databaseUrl ?? db!.url,
    api,
    close: async () => {
      await svc.close();
      await db?.drop();
    },
  };
}
