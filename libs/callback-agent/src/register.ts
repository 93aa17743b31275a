/**
 * `node --import @opsplane/callback-agent app.js`: starts the agent from the
 * environment before the app loads. A missing setting or any start-up failure
 * is one line on stderr; the app always starts.
 */
import { isMainThread } from "node:worker_threads";
import { agentOptionsFromEnv, lazySandboxScripts, startAgent } from "./agent.js";

// Node runs `--import` again in every worker thread the app starts: one agent per process, on the
// main thread, where the app's http servers are. The key also stops a second copy of this module
// (another path to the same package) from starting a second agent.
const started = Symbol.for("@opsplane/callback-agent.started");
const host = globalThis as { [started]?: true };

if (isMainThread && !host[started]) {
  host[started] = true;
  try {
    const options = agentOptionsFromEnv();
    if (typeof options === "string") process.stderr.write(`[callback-agent] ${options}\n`);
    else startAgent({ ...options, scriptCompiler: lazySandboxScripts });
  } catch (err) {
    process.stderr.write(`[callback-agent] not started: ${(err as Error).message}\n`);
  }
}
