// What `make run` adds to the platform so that assist, callback routing and a scan work at once
// (the root README's walkthrough): the operator page and the production and sit payment apps as
// processes of their own, each service's demo settings, and the dispatcher's environments and
// rule, seeded through its API once the services are up. Beside them, two instances of the loan
// demo (loan-demo.ts) joined to config-center through the SDK.
import path from "node:path";
import { loanDemo, loanDemoPorts } from "./loan-demo.js";
import { seedDispatcher } from "./seed.js";

/** Ports before the launcher's OPSPLANE_PORT_OFFSET; the services have 8081–8086. */
export const demoPorts = { page: 8080, production: 8087, sit: 8088, ...loanDemoPorts } as const;
const sampleArtifactFile = "scripts/demo/sample-artifact/demo-payments-1.0.jar";
const errcodeRulesFile = "scripts/demo/sample-artifact/errcode-rules.json";

export interface DemoProcess {
  name: string;
  /** Arguments to node. */
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Where it answers GET /healthz. */
  url: string;
}

export interface DemoOptions {
  /** The address the processes listen on (HOST). */
  host: string;
  /** How a URL on this machine names it (127.0.0.1 when listening on every interface). */
  urlOf(port: number): string;
  portOffset: number;
  relayUrl: string;
  dispatcherUrl: string;
  /** `agent-sit:<secret>`, bound to sit in the dispatcher. */
  sitAgentToken: string;
  /** Its hash entry for the dispatcher's AUTH_APP_CREDENTIALS. */
  sitAgentCredential: string;
  /** The launcher's data directory: the loan demo's secret, terminal key and snapshots. */
  dataDir: string;
  configUrl: string;
  /** The loan demo's database. */
  loanDatabaseUrl: string;
}

export function demo(o: DemoOptions) {
  const port = (p: number) => p + o.portOffset;
  const page = o.urlOf(port(demoPorts.page));
  const production = o.urlOf(port(demoPorts.production));
  const sit = o.urlOf(port(demoPorts.sit));
  const artifact = `${page}/artifacts/${path.basename(sampleArtifactFile)}`;
  const loans = loanDemo({ ...o, databaseUrl: o.loanDatabaseUrl });
  // A browser on this machine may call the page by either name.
  const pageOrigins = [page, page.replace("//127.0.0.1:", "//localhost:")];
  /** The callback agent, as a test environment runs it: `node --import @opsplane/callback-agent app.js`. */
  const agent = {
    args: ["--import", "@opsplane/callback-agent"],
    env: {
      OPSPLANE_DISPATCHER_URL: o.dispatcherUrl,
      OPSPLANE_ENV: "sit",
      OPSPLANE_AGENT_TOKEN: o.sitAgentToken,
      // Reported within a fifth of a second, so the walkthrough's next step finds the order.
      OPSPLANE_FLUSH_INTERVAL_MS: "200",
      // The dispatcher logs each rules fetch: once a minute keeps the launcher's output readable.
      OPSPLANE_RULES_REFRESH_MS: "60000",
    },
  };
  const app = (env: string, url: string, extra: { args: string[]; env: NodeJS.ProcessEnv }): DemoProcess => ({
    name: `${env}-app`,
    args: ["--import", "tsx", ...extra.args, "scripts/demo/environment-app.ts", env, new URL(url).port, o.host],
    env: { ...process.env, ...extra.env },
    url,
  });
  return {
    /** Each service's demo settings, beside the launcher's own. */
    serviceEnv: {
      "assist-relay": { ASSIST_ALLOWED_ORIGINS: [...new Set(pageOrigins)].join(",") },
      "errcode-scanner": { ERRCODE_ARTIFACT_URL_PREFIXES: `${page}/artifacts/`, ERRCODE_RULES_FILE: errcodeRulesFile },
      "callback-dispatcher": { AUTH_APP_CREDENTIALS: o.sitAgentCredential, AGENT_ENVIRONMENTS: "agent-sit:sit" },
    } as Record<string, NodeJS.ProcessEnv>,
    /** Started once the services are up and seeded (sit's agent fetches the rule as it starts). */
    processes: [
      {
        name: "operator-page",
        args: ["--import", "tsx", "scripts/demo/operator-page.ts", String(port(demoPorts.page)), o.relayUrl, sampleArtifactFile, o.host],
        env: process.env,
        url: page,
      },
      app("production", production, { args: [], env: {} }),
      app("sit", sit, agent),
      ...loans.processes,
    ] satisfies DemoProcess[],
    seed: (operatorKey: string) => seedDispatcher(o.dispatcherUrl, operatorKey, { production, sit }),
    /** The loan demo's app, parameters, database and rules in config-center (admin key); what it created. */
    seedLoanDemo: loans.seed,
    /** The summary's demo lines. */
    summary: (width: number) =>
      [
        ["operator page", `${page}   (embeds assist-relay's widget: Help → Request remote assistance)`],
        ["developer console", `${o.relayUrl}/console   (sign in with the viewer key)`],
        ["production app", `${production}   (callback-dispatcher's production environment)`],
        ["sit app", `${sit}   (test environment sit, under the callback agent)`],
        ["sample artifact", `${artifact}   (errcode-scanner may fetch it)`],
      ]
        .map(([what, where]) => `  ${what!.padEnd(width)}  ${where}`)
        .concat(loans.summary(width)),
  };
}
