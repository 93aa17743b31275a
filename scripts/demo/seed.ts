// Configures callback-dispatcher for the demo through its public API, with the operator key: the
// production and sit environments (the demo's two payment apps) and the rule `pay`. What is
// missing is created; a demo environment whose app moved (another OPSPLANE_PORT_OFFSET) follows
// it; anything a developer changed is left as it is.

/** Ids sit may claim: a production order id its agent reports is refused, its callbacks stay in production. */
export const sitIdPattern = "SIT-[0-9]+";

/** Interface A is sit's `POST /api/pay {orderNo}`; the platform's callback `POST /notify/pay {orderNo, …}`. */
export const payRule = {
  description: "demo: payments opened in sit are called back in sit",
  interface: { pattern: "/api/pay", method: "POST", id: { kind: "json", expr: "orderNo" } },
  callback: { pattern: "/notify/pay", method: "POST", id: { kind: "json", expr: "orderNo" } },
  ttlSeconds: 86_400,
};

interface Environment {
  name: string;
  baseUrl: string;
  description: string | null;
}

/** Seeds the dispatcher at `dispatcherUrl`; returns what it changed (empty when nothing was to do). */
export async function seedDispatcher(
  dispatcherUrl: string,
  operatorKey: string,
  apps: { production: string; sit: string },
): Promise<string[]> {
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${dispatcherUrl}/_dispatcher/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${operatorKey}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!res.ok && res.status !== 404) throw new Error(`demo seed: ${method} ${path} answered ${res.status}: ${await res.text()}`);
    return res;
  };
  const changed: string[] = [];
  const { environments } = (await (await api("GET", "/environments")).json()) as { environments: Environment[] };
  const wanted = [
    { name: "production", baseUrl: apps.production, production: true, description: "demo: production payment app" },
    { name: "sit", baseUrl: apps.sit, description: "demo: sit payment app", idPatterns: { "*": sitIdPattern } },
  ];
  for (const { name, ...env } of wanted) {
    const stored = environments.find((e) => e.name === name);
    const demoMoved = stored?.description === env.description && new URL(stored.baseUrl).href !== new URL(env.baseUrl).href;
    if (stored && !demoMoved) continue;
    await api("PUT", `/environments/${name}`, env);
    changed.push(`environment ${name} (${env.baseUrl})`);
  }
  if ((await api("GET", "/rules/pay")).status === 404) {
    await api("PUT", "/rules/pay", payRule);
    changed.push("rule pay");
  }
  return changed;
}
