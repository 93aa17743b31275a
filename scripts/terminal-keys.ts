// Keys for the SDK terminal, and a signed call to one instance's terminal: what control-center
// and monitor-center do, by hand (the demo's walkthrough and a newcomer's first dial test use it).
//
//   npx tsx scripts/terminal-keys.ts new <keyId> [--out <file>]
//       writes an Ed25519 private key (PKCS#8 PEM, mode 0600; default $OPSPLANE_DATA_DIR/terminal-<keyId>.pem,
//       else .data/terminal-<keyId>.pem; kept if it exists) and prints the OPSPLANE_TERMINAL_KEYS entry of its public key
//   npx tsx scripts/terminal-keys.ts call --key-id <keyId> [--key <file>] --instance <instanceId>
//       <terminal URL>/opsplane/v1/<dial|commands|report|status> [--body '<json>']
//   npx tsx scripts/terminal-keys.ts call --key-id <keyId> [--key <file>] --app <appId> --port <service port>
//       dial|commands|report|status [--body '<json>']
//       signs the request (POST with --body, GET without; a dial without --body sends a fresh challenge),
//       sends it, prints the status and the answer. With --app and --port the instance serving on that
//       port is found at config-center (OPSPLANE_CONFIG_URL, default http://127.0.0.1:8083, read with
//       the viewer key in $OPSPLANE_DATA_DIR/viewer-key) and its terminal called on 127.0.0.1. A dial
//       answer is checked against the challenge, as a monitor does: one that does not verify exits 1.
//       --key defaults to where `new` writes the key of --key-id.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { dialAnswer } from "../libs/sdk/src/terminal/dial.js";
import { newTerminalKey, publicKeyEntry, signTerminalRequest } from "../libs/sdk/src/terminal/signing.js";

const usage = `usage:
  terminal-keys new <keyId> [--out <file>]
  terminal-keys call --key-id <keyId> [--key <file>] --instance <instanceId> <terminal url> [--body <json>]
  terminal-keys call --key-id <keyId> [--key <file>] --app <appId> --port <service port> dial|commands|report|status [--body <json>]`;

const dataDir = process.env.OPSPLANE_DATA_DIR ?? ".data";
const keyFile = (keyId: string) => path.join(dataDir, `terminal-${keyId}.pem`);

interface Target {
  url: URL;
  instanceId: string;
}

/** The terminal of the online instance of `app` serving on `port`, as config-center lists it. */
async function findInstance(app: string, port: string, endpoint: string): Promise<Target> {
  const configUrl = process.env.OPSPLANE_CONFIG_URL ?? "http://127.0.0.1:8083";
  const viewer = readFileSync(path.join(dataDir, "viewer-key"), "utf8").trim();
  const res = await fetch(`${configUrl}/config/v1/apps/${encodeURIComponent(app)}/instances?state=online`, {
    headers: { authorization: `Bearer ${viewer}` },
  });
  if (!res.ok) throw new Error(`config-center answered ${res.status}: ${await res.text()}`);
  const { instances } = (await res.json()) as { instances: Array<{ instanceId: string; servicePort: number; sdkPort: number }> };
  const instance = instances.find((i) => i.servicePort === Number(port));
  if (!instance)
    throw new Error(
      `no online ${app} instance serves on port ${port} (online: ${instances.map((i) => i.servicePort).join(", ") || "none"})`,
    );
  console.error(`instance ${instance.instanceId} (terminal port ${instance.sdkPort})`);
  return { url: new URL(`http://127.0.0.1:${instance.sdkPort}/opsplane/v1/${endpoint}`), instanceId: instance.instanceId };
}

async function call(target: Target, keyId: string, key: string, givenBody: string | undefined): Promise<number> {
  const dial = target.url.pathname === "/opsplane/v1/dial";
  const body = givenBody ?? (dial ? JSON.stringify({ challenge: randomBytes(16).toString("hex") }) : "");
  const method = body === "" ? "GET" : "POST";
  const headers = signTerminalRequest({
    method,
    path: `${target.url.pathname}${target.url.search}`,
    body,
    instanceId: target.instanceId,
    keyId,
    privateKey: readFileSync(key, "utf8"),
  });
  const res = await fetch(target.url, {
    method,
    headers: { ...headers, "content-type": "application/json" },
    body: method === "POST" ? body : undefined,
  });
  const text = await res.text();
  console.log(res.status, text);
  if (!res.ok) return 1;
  if (!dial) return 0;
  const sent = (JSON.parse(body) as { challenge?: string }).challenge ?? "";
  const answer = JSON.parse(text) as { challenge: string; answer: string; checks: Array<{ name: string; ok: boolean; detail: string }> };
  const verified = answer.challenge === sent && answer.answer === dialAnswer(sent, target.instanceId, answer.checks);
  console.log(verified ? "answer verified: computed by the instance for this challenge" : "ANSWER DOES NOT VERIFY");
  return verified ? 0 : 1;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      out: { type: "string" },
      key: { type: "string" },
      "key-id": { type: "string" },
      instance: { type: "string" },
      app: { type: "string" },
      port: { type: "string" },
      body: { type: "string" },
    },
  });
  const [command, arg] = positionals;
  const keyId = values["key-id"];
  if (command === "new" && arg) {
    const file = values.out ?? keyFile(arg);
    if (!existsSync(file)) {
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, newTerminalKey(arg).privateKeyPem, { mode: 0o600 });
    }
    console.error(`private key: ${file}`);
    console.log(publicKeyEntry(arg, readFileSync(file, "utf8")));
    return 0;
  }
  if (command === "call" && arg && keyId) {
    const key = values.key ?? keyFile(keyId);
    if (values.instance && !values.port) return call({ url: new URL(arg), instanceId: values.instance }, keyId, key, values.body);
    if (values.app && values.port && !values.instance && ["dial", "commands", "report", "status"].includes(arg))
      return call(await findInstance(values.app, values.port, arg), keyId, key, values.body);
  }
  console.error(usage);
  return 2;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error((err as Error).message);
    process.exit(1);
  },
);
