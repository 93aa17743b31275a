/**
 * `node --import @opsplane/callback-agent app.js`: starts the agent from the
 * environment before the app loads. A missing setting or any start-up failure
 * is one line on stderr; the app always starts.
 */
import { agentOptionsFromEnv, startAgent } from "./agent.js";
import { sandboxScriptCompiler } from "./sandbox-scripts.js";

try {
  const options = agentOptionsFromEnv();
  if (typeof options === "string") process.stderr.write(`[callback-agent] ${options}\n`);
  else startAgent({ ...options, scriptCompiler: sandboxScriptCompiler });
} catch (err) {
  process.stderr.write(`[callback-agent] not started: ${(err as Error).message}\n`);
}
