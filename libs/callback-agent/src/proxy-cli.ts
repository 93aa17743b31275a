/**
 * Sidecar mode for apps that are not Node:
 *   callback-agent-proxy --listen 9000 --upstream http://127.0.0.1:8080
 * with OPSPLANE_DISPATCHER_URL, OPSPLANE_ENV and OPSPLANE_AGENT_TOKEN set as for the agent.
 * The bin is bin/callback-agent-proxy.js, which loads this file once it is built.
 */
import { parseArgs } from "node:util";
import { agentOptionsFromEnv, lazySandboxScripts, startAgent } from "./agent.js";
import { startProxy } from "./proxy.js";

const usage = "usage: callback-agent-proxy --listen <port> --upstream <url> [--host <address>, default 0.0.0.0]";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      listen: { type: "string" },
      host: { type: "string", default: "0.0.0.0" },
      upstream: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage}\nwith OPSPLANE_DISPATCHER_URL, OPSPLANE_ENV and OPSPLANE_AGENT_TOKEN set as for the agent\n`);
    return;
  }
  const port = Number(values.listen);
  if (!values.upstream || !Number.isInteger(port)) throw new Error(usage);
  const options = agentOptionsFromEnv();
  if (typeof options === "string") throw new Error(options);
  const agent = startAgent({ ...options, scriptCompiler: lazySandboxScripts });
  const proxy = await startProxy({ port, host: values.host, upstream: values.upstream });
  process.stderr.write(`[callback-agent] proxy listening on ${values.host}:${port} -> ${values.upstream} (env ${options.env})\n`);
  const stop = async () => {
    await proxy.close();
    await agent.stop();
    process.exit(0);
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

main().catch((err: Error) => {
  process.stderr.write(`callback-agent-proxy: ${err.message}\n`);
  process.exit(1);
});
