// The credentials of `make run`: one API key per role, the sit agent's app secret and
// config-center's key for sealing secrets, made on the first run and kept under the data
// directory (mode 0600) so every run accepts the same ones and opens what the last one sealed.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { sha256Hex } from "@opsplane/platform";

export const roles = ["viewer", "operator", "admin"] as const;
export type Role = (typeof roles)[number];

export interface DevKeys {
  apiKeys: Record<Role, string>;
  /** The file each API key is kept in, for the summary. */
  files: Record<Role, string>;
  /** The app credentials (`agent-sit:<secret>`) the demo's sit app reports with. */
  sitAgentToken: string;
  /** AUTH_API_KEYS for every service: `dev-<role>:<role>:<sha256>`. */
  authApiKeys: string;
  /** AUTH_APP_CREDENTIALS for the dispatcher: `agent-sit:<sha256>`. */
  authAppCredentials: string;
  /** config-center's SECRET_KEYS: `dev:<base64 of 32 bytes>`. */
  configSecretKeys: string;
}

function kept(file: string, make: () => string): string {
  if (!existsSync(file)) writeFileSync(file, `${make()}\n`, { mode: 0o600 });
  return readFileSync(file, "utf8").trim();
}

const apiKey = () => `opk_${randomBytes(24).toString("base64url")}`;

export function devKeys(dataDir: string): DevKeys {
  const files = Object.fromEntries(roles.map((r) => [r, `${dataDir}/${r}-key`])) as Record<Role, string>;
  const apiKeys = Object.fromEntries(roles.map((r) => [r, kept(files[r], apiKey)])) as Record<Role, string>;
  const sitSecret = kept(`${dataDir}/agent-sit-secret`, () => randomBytes(24).toString("base64url"));
  return {
    apiKeys,
    files,
    sitAgentToken: `agent-sit:${sitSecret}`,
    authApiKeys: roles.map((r) => `dev-${r}:${r}:${sha256Hex(apiKeys[r])}`).join(","),
    authAppCredentials: `agent-sit:${sha256Hex(sitSecret)}`,
    configSecretKeys: `dev:${kept(`${dataDir}/config-secret-key`, () => randomBytes(32).toString("base64"))}`,
  };
}
