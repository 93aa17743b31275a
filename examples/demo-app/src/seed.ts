// Puts what the loan demo runs on into config-center through its REST API (admin key): the app
// and its credentials, its business parameters (rate table; the shared bank-code dictionary),
// its technical parameter `db.main` referencing the public resource `middleware/loan-db` (the
// password a sealed secret), and example governance rules for its interfaces. Only what is
// missing is created: what an operator changed since stays as it is.
import { bankCodesKey, defaultBankCodes, defaultRateTable, rateTableKey, rateTableSchema } from "./loan-terms.js";

export const demoAppId = "loan-demo";

/** Rules an operator starts from: a rate limit on applications, a breaker on repayments, an open route, a baffle ready to switch on. */
export const exampleRules: Record<string, unknown> = {
  "rate-limit/loan.apply": { tps: 50, concurrency: 20 },
  "circuit-breaker/loan.repay": { errorRatio: 0.5, minRequests: 10, windowMs: 10_000, openMs: 5_000 },
  "route/loan.query": { enabled: true },
  "baffle/loan.apply": {
    enabled: false,
    response: { status: 201, headers: { "content-type": "application/json" }, body: { id: "LN-BAFFLE", status: "active" } },
  },
};

export interface SeedOptions {
  configUrl: string;
  /** An admin API key: resources and apps are admin business. */
  adminKey: string;
  /** The app's credentials (at least 8 characters). */
  secret: string;
  /** The environment the technical parameter is for (the instances' OPSPLANE_ENV). */
  env: string;
  /** PostgreSQL for the loans: becomes `middleware/loan-db` and `db.main`; without it the app keeps loans in memory. */
  databaseUrl?: string;
  /** Governance rules by key (`<type>/<code>`); `exampleRules` by default. */
  rules?: Record<string, unknown>;
}

/** Seeds config-center; returns what it created (empty when everything was there). */
export async function seedDemo(o: SeedOptions): Promise<string[]> {
  const created: string[] = [];
  const api = async (method: string, path: string, body?: unknown): Promise<Response> => {
    const res = await fetch(`${o.configUrl}/config/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${o.adminKey}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok && res.status !== 404 && res.status !== 409)
      throw new Error(`loan demo seed: ${method} ${path} answered ${res.status}: ${await res.text()}`);
    return res;
  };
  /** Created when missing (expectRevision 0: someone creating it meanwhile wins, 409), left alone when present. */
  const create = async (what: string, path: string, body: Record<string, unknown>) => {
    if ((await api("GET", path)).status !== 404) return;
    if ((await api("PUT", path, { ...body, expectRevision: 0 })).status !== 409) created.push(what);
  };

  if ((await api("GET", `/apps/${demoAppId}`)).status === 404) {
    await api("PUT", `/apps/${demoAppId}`, { secret: o.secret, systemDomain: "lending", description: "demo: loan applications" });
    created.push(`app ${demoAppId}`);
  }
  await create(`business ${rateTableKey}`, `/items/business/${demoAppId}/_/${rateTableKey}`, {
    value: defaultRateTable,
    schema: rateTableSchema,
    startup: true,
    description: "annual rate by term, and the amounts a loan may have",
  });
  await create(`business ${bankCodesKey} (shared)`, `/items/business/_/_/${bankCodesKey}`, {
    value: defaultBankCodes,
    category: "bank-codes",
    startup: true,
    description: "CNAPS codes of the banks loans may be paid into",
  });
  if (o.databaseUrl) {
    const u = new URL(o.databaseUrl);
    const config = { host: u.hostname, port: Number(u.port || 5432), database: u.pathname.slice(1), user: decodeURIComponent(u.username) };
    await create("resource middleware/loan-db", "/resources/middleware/loan-db", {
      type: "postgresql",
      config,
      ...(u.password ? { secrets: { password: decodeURIComponent(u.password) } } : {}),
      description: "the loan demo's database",
    });
    // The launcher's PostgreSQL may listen elsewhere than last run: the resource follows it (a change
    // config-center pushes to db.main, so running instances rebuild their loan book on it too).
    const stored = (await (await api("GET", "/resources/middleware/loan-db")).json()) as {
      revision?: number;
      config?: Record<string, unknown>;
    };
    if (stored.config && (Object.keys(config) as Array<keyof typeof config>).some((k) => stored.config?.[k] !== config[k])) {
      await api("PUT", "/resources/middleware/loan-db", { type: "postgresql", config, expectRevision: stored.revision });
      created.push("resource middleware/loan-db (moved to this run's database)");
    }
    await create(`technical db.main (${o.env})`, `/items/technical/${demoAppId}/${o.env}/db.main`, {
      value: { $ref: "middleware/loan-db" },
      category: "database",
      description: "where loans are kept; a change reconnects the instances",
    });
  }
  for (const [key, value] of Object.entries(o.rules ?? exampleRules)) {
    await create(`governance ${key}`, `/items/governance/${demoAppId}/_/${key}`, { value });
  }
  return created;
}
