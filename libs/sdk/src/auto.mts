/**
 * `node --import @opsplane/sdk/auto app.js`: joins an unmodified app to the platform from its
 * OPSPLANE_* environment (the seed's probe). Start-up (steps 1-11) completes before the app's own
 * code loads (a top-level await in this module holds it back), so the app starts on the
 * configuration config-center gives: technical values whose keys look like environment variables
 * are exported into process.env first, except names the runtime or child processes read. Its
 * fastify instances and http servers are governed through the auto hooks; the app reaches the SDK
 * with `getSdk()` from "@opsplane/sdk". A refusal (or a missing or malformed setting) is one line
 * on stderr and exit code 1: a refused app does not start (seed step 2).
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

/**
 * Keys exported into process.env: what an app reads its settings from when it knows nothing of the
 * SDK. Upper case only, so lower-case twins the runtime also reads (`http_proxy`) are never exported.
 */
const envLike = /^[A-Z][A-Z0-9_]*$/;

/**
 * Names configuration never exports: Node, the dynamic loader, the C library or the programs the app
 * starts read them, so an operator (who may not read secrets) could run code in the app's child
 * processes, which inherit OPSPLANE_APP_SECRET and resolved passwords, or redirect or unverify its
 * traffic. These belong to whoever deploys the app. Checked in order; the reason goes in the warning.
 */
const reserved: Array<[RegExp, string]> = [
  [/^OPSPLANE_/, "the SDK's own settings come from the deployment"],
  [
    /^NODE_/,
    "read by Node.js itself (NODE_OPTIONS loads code into Node child processes, NODE_TLS_REJECT_UNAUTHORIZED turns certificate checks off)",
  ],
  [/^UV_/, "read by libuv, the runtime's thread pool and I/O"],
  [
    /^(LD_|DYLD_|MALLOC_)|^(GCONV_PATH|GETCONF_DIR|GLIBC_TUNABLES|HOSTALIASES|LOCALDOMAIN|LOCPATH|NIS_PATH|NLSPATH|RESOLV_HOST_CONF|RES_OPTIONS|TMPDIR|TZDIR)$/,
    "read by the dynamic loader or the C library (LD_PRELOAD loads code into every child process)",
  ],
  [/^PATH$/, "chooses the programs child processes run"],
  [/_PROXY$/, "sends HTTP traffic through another host"],
  [
    /^(SSL_CERT_FILE|SSL_CERT_DIR|CURL_CA_BUNDLE|REQUESTS_CA_BUNDLE|SSLKEYLOGFILE)$|^OPENSSL_/,
    "chooses the certificates TLS clients trust, the modules OpenSSL loads, or where TLS keys are written",
  ],
  [/^(HOME|XDG_CONFIG_HOME|XDG_DATA_HOME)$/, "chooses where the programs the app starts read their configuration"],
  [/^(BASH_ENV|ENV|SHELLOPTS|BASHOPTS|IFS|PS4)$/, "runs code in, or changes, the shells the app starts"],
  [
    /^(PYTHON|PERL|RUBY|GEM_|GIT_|NPM_CONFIG_|LUA_)|^(JAVA_TOOL_OPTIONS|JDK_JAVA_OPTIONS|CLASSPATH|PHPRC|LESSOPEN|LESSCLOSE)$/,
    "loads code into the interpreters and tools the app may start",
  ],
];

function reservedBecause(key: string): string | undefined {
  return reserved.find(([name]) => name.test(key))?.[1];
}

async function start(): Promise<Sdk | undefined> {
  if (!isMainThread) return undefined;
  let sdk: Sdk;
  try {
    sdk = await startSdk(optionsFromEnv());
  } catch (err) {
    process.stderr.write(`[opsplane-sdk] the app is not started: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const ctx = adapterContextOf(sdk);
  for (const [k, v] of Object.entries(sdk.config.entries())) {
    if (!envLike.test(k) || v === undefined || v === null) continue;
    const why = reservedBecause(k);
    if (why) ctx.log.warn(`technical value ${k} is not exported to process.env: ${why}`, { key: k });
    else process.env[k] = typeof v === "string" ? v : JSON.stringify(v);
  }
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
