// The loan demo in `make run` (examples/demo-app): two instances of a small loan service that
// join the platform through @opsplane/sdk, beside the six services. config-center is seeded with
// the app and its credentials, its business parameters, its database (`middleware/loan-db`, the
// launcher's PostgreSQL, database loan_demo) and example governance rules; each instance keeps
// its snapshot under the data directory. Terminal calls are signed with a dev key kept there too
// (the public half is each instance's OPSPLANE_TERMINAL_KEYS).
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { newTerminalKey, publicKeyEntry } from "@opsplane/sdk";
import { demoAppId, seedDemo } from "../../examples/demo-app/src/seed.js";
import type { DemoProcess } from "./demo.js";

/** Ports before OPSPLANE_PORT_OFFSET: each instance's service and its SDK terminal. */
export const loanDemoPorts = { first: 8089, second: 8090, firstTerminal: 1818, secondTerminal: 1819 } as const;
/** The environment the instances register in (config-center grants it by default). */
export const loanDemoEnv = "dev";
/** The key id of the dev key the walkthrough signs terminal calls with. */
export const terminalKeyId = "make-run";

function kept(file: string, make: () => string): string {
  if (!existsSync(file)) writeFileSync(file, `${make()}\n`, { mode: 0o600 });
  return readFileSync(file, "utf8").trim();
}

export interface LoanDemoOptions {
  dataDir: string;
  host: string;
  urlOf(port: number): string;
  portOffset: number;
  configUrl: string;
  /** The loans' database (created by the launcher). */
  databaseUrl: string;
}

export function loanDemo(o: LoanDemoOptions) {
  const secret = kept(`${o.dataDir}/loan-demo-secret`, () => randomBytes(24).toString("base64url"));
  // Where scripts/terminal-keys.ts keeps a key of this id, so its `call` works with it too.
  const privateKey = kept(`${o.dataDir}/terminal-${terminalKeyId}.pem`, () => newTerminalKey(terminalKeyId).privateKeyPem.trim());
  const instance = (n: 1 | 2, port: number, terminalPort: number): DemoProcess => ({
    name: `loan-demo-${n}`,
    args: ["examples/demo-app/dist/main.js"],
    env: {
      ...process.env,
      PORT: String(port + o.portOffset),
      HOST: o.host,
      OPSPLANE_CONFIG_URL: o.configUrl,
      OPSPLANE_APP_ID: demoAppId,
      OPSPLANE_APP_SECRET: secret,
      OPSPLANE_ENV: loanDemoEnv,
      OPSPLANE_TERMINAL_PORT: String(terminalPort + o.portOffset),
      OPSPLANE_TERMINAL_KEYS: publicKeyEntry(terminalKeyId, privateKey),
      OPSPLANE_LABELS: `instance=${n}`,
      OPSPLANE_SNAPSHOT_DIR: `${o.dataDir}/loan-demo-${n}`,
      OPSPLANE_REDIS_URL: process.env.REDIS_URL ?? "",
      // The loans' database comes from config-center (db.main), not from the launcher's own.
      DATABASE_URL: "",
    },
    url: o.urlOf(port + o.portOffset),
  });
  const processes = [
    instance(1, loanDemoPorts.first, loanDemoPorts.firstTerminal),
    instance(2, loanDemoPorts.second, loanDemoPorts.secondTerminal),
  ];
  return {
    processes,
    seed: (adminKey: string) => seedDemo({ configUrl: o.configUrl, adminKey, secret, env: loanDemoEnv, databaseUrl: o.databaseUrl }),
    summary: (width: number) =>
      processes.map((p, i) => {
        const terminal = i === 0 ? loanDemoPorts.firstTerminal : loanDemoPorts.secondTerminal;
        return `  ${`loan demo ${i + 1}`.padEnd(width)}  ${p.url}   (SDK terminal on port ${terminal + o.portOffset}; examples/demo-app/README.md)`;
      }),
  };
}
