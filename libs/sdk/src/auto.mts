/**
 * `node --import @opsplane/sdk/auto app.js`: joins an unmodified app to the platform from its
 * OPSPLANE_* environment (the seed's probe). Start-up (steps 1-11) completes before the app's own
 * code loads (a top-level await in this module holds it back), so the app starts on the
 * configuration config-center gives: technical values whose keys look like environment variables
 * are exported into process.env first. Its fastify instances and http servers are governed through
 * the auto hooks; the app reaches the SDK with `getSdk()` from "@opsplane/sdk". A refusal (or a
 * missing or malformed setting) is one line on stderr and exit code 1: a refused app does not start
 * (seed step 2).
 */
import { isMainThread } from "node:worker_threads";
import { installAutoHooks } from "./adapters/auto-hooks.js";
import { setAutoSdk } from "./auto-sdk.js";
import { optionsFromEnv } from "./options.js";
import { adapterContextOf, type Sdk, startSdk } from "./sdk.js";
import { gracefulShutdown } from "./terminal/shutdown.js";

// Node runs `--import` again in every worker thread the app starts: one SDK per process, on the
// main thread, where the app's servers are. The key also stops a second copy of this module.
const key = Symbol.for("@opsplane/sdk.auto");
const host = globalThis as { [key]?: Promise<Sdk | undefined> };

/** Keys exported into process.env: what an app reads its settings from when it knows nothing of the SDK. */
const envLike = /^[A-Z][A-Z0-9_]*$/;

async function start(): Promise<Sdk | undefined> {
  if (!isMainThread) return undefined;
  let sdk: Sdk;
  try {
    sdk = await startSdk(optionsFromEnv());
  } catch (err) {
    process.stderr.write(`[opsplane-sdk] the app is not started: ${(err as Error).message}\n`);
    process.exit(1);
  }
  for (const [k, v] of Object.entries(sdk.config.entries()))
    if (envLike.test(k) && !k.startsWith("OPSPLANE_") && v !== undefined && v !== null)
      process.env[k] = typeof v === "string" ? v : JSON.stringify(v);
  const ctx = adapterContextOf(sdk);
  installAutoHooks(ctx);
  setAutoSdk(sdk);
  // Kubernetes stops a pod with SIGTERM, and Node's default is to die at once: no last report, the
  // instance left for config-center's heartbeat timeout. An app that listens for SIGTERM itself owns
  // its shutdown (it reaches the SDK with getSdk()); otherwise the SDK closes (last report, socket
  // closed so the instance is offline at once, snapshot written) and the process exits 0.
  process.on("SIGTERM", () => {
    if (process.listenerCount("SIGTERM") > 1) return;
    void gracefulShutdown({ servers: () => [], close: () => sdk.close(), log: ctx.log })(0);
  });
  return sdk;
}

host[key] ??= start();
await host[key];
