import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { freePort } from "@opsplane/testing";
import { newTerminalKey, optionsFromEnv, SdkOptionsError, startSdk } from "../src/index.js";
import { backoffDelay, defaultRetry } from "../src/retry.js";

const control = newTerminalKey("control-center").publicKeyEntry;
const monitor = newTerminalKey("monitor-center").publicKeyEntry;

const complete = {
  OPSPLANE_CONFIG_URL: "http://config-center:8083/",
  OPSPLANE_APP_ID: "loan",
  OPSPLANE_APP_SECRET: "s3cret",
  OPSPLANE_ENV: "uat",
  PORT: "3000",
};

describe("options from OPSPLANE_* variables", () => {
  test("every missing required variable is named in one error", () => {
    assert.throws(
      () => optionsFromEnv({ OPSPLANE_APP_ID: "loan" }),
      (err: unknown) =>
        err instanceof SdkOptionsError &&
        err.message ===
          "missing environment variables: OPSPLANE_CONFIG_URL, OPSPLANE_APP_SECRET, OPSPLANE_ENV, OPSPLANE_SERVICE_PORT (or PORT)",
    );
    assert.throws(
      () => optionsFromEnv({ ...complete, OPSPLANE_ENV: " " }),
      /^SdkOptionsError: missing environment variable: OPSPLANE_ENV$/,
    );
  });

  test("a malformed variable is named with its value", () => {
    assert.throws(() => optionsFromEnv({ ...complete, PORT: "http" }), /PORT must be a port number \(0-65535\), not "http"/);
    assert.throws(
      () => optionsFromEnv({ ...complete, OPSPLANE_CONFIG_URL: "config-center:8083" }),
      /OPSPLANE_CONFIG_URL must be an http\(s\) URL/,
    );
    assert.throws(() => optionsFromEnv({ ...complete, OPSPLANE_LABELS: "zone=a,canary" }), /OPSPLANE_LABELS .* "canary" is not one/);
    assert.throws(
      () => optionsFromEnv({ ...complete, OPSPLANE_REPORT_INTERVAL_MS: "30s" }),
      /OPSPLANE_REPORT_INTERVAL_MS must be a positive number/,
    );
    assert.throws(() => optionsFromEnv({ ...complete, OPSPLANE_LOG_LEVEL: "loud" }), /OPSPLANE_LOG_LEVEL must be/);
  });

  test("a malformed OPSPLANE_TERMINAL_KEYS entry refuses the options, naming the entry", async () => {
    assert.throws(
      () => optionsFromEnv({ ...complete, OPSPLANE_TERMINAL_KEYS: `${control}, monitor-center` }),
      (err: unknown) =>
        err instanceof SdkOptionsError && err.message === 'OPSPLANE_TERMINAL_KEYS: entry "monitor-center" is not keyId:base64(spki der)',
    );
    assert.throws(
      () => optionsFromEnv({ ...complete, OPSPLANE_TERMINAL_KEYS: "k1:AAAA" }),
      /^SdkOptionsError: OPSPLANE_TERMINAL_KEYS: key k1 is not a public key in base64 spki der/,
    );
    // Given in code, the same check (before anything is started).
    await assert.rejects(
      startSdk({ ...optionsFromEnv(complete), terminalKeys: [control, "monitor:AAAA"] }),
      /^SdkOptionsError: startSdk: terminalKeys: key monitor is not a public key/,
    );
  });

  test("labels, start parameters and instance fields given in code must be text: a number is named at startSdk, not a degraded start", async () => {
    // config-center refuses them (it no longer converts body types): the app started degraded, its registration refused.
    for (const [extra, message] of [
      [{ labels: { replica: 2 } }, "startSdk: labels.replica must be a string, not 2"],
      [{ startParams: { workers: 4 } }, "startSdk: startParams.workers must be a string, not 4"],
      [{ appVersion: 3 }, "startSdk: appVersion must be a string, not 3"],
    ] as const)
      await assert.rejects(
        startSdk({ ...optionsFromEnv(complete), ...(extra as object) }),
        (err: Error) => err instanceof SdkOptionsError && err.message === message,
      );
  });

  test("reads every variable", () => {
    const o = optionsFromEnv({
      ...complete,
      OPSPLANE_SERVICE_PORT: "8080",
      OPSPLANE_TERMINAL_PORT: "1919",
      OPSPLANE_LABELS: "zone=a, canary=yes",
      OPSPLANE_SNAPSHOT_DIR: "/var/lib/loan",
      OPSPLANE_REDIS_URL: "redis://redis:6379",
      OPSPLANE_REDIS_PREFIX: "cc:",
      OPSPLANE_REPORT_URL: "http://monitor-center:8085/reports",
      OPSPLANE_REPORT_INTERVAL_MS: "15000",
      OPSPLANE_TERMINAL_HOST: "127.0.0.1",
      OPSPLANE_TERMINAL_KEYS: `${control}, ${monitor}`,
      OPSPLANE_LOG_LEVEL: "warn",
    });
    assert.equal(o.configUrl, "http://config-center:8083");
    assert.equal(o.servicePort, 8080, "OPSPLANE_SERVICE_PORT over PORT");
    assert.equal(o.terminalPort, 1919);
    assert.deepEqual(o.labels, { zone: "a", canary: "yes" });
    assert.equal(o.snapshotDir, "/var/lib/loan");
    assert.equal(o.redisUrl, "redis://redis:6379");
    assert.equal(o.redisPrefix, "cc:");
    assert.equal(o.reportIntervalMs, 15000);
    assert.equal(o.terminalHost, "127.0.0.1");
    assert.deepEqual(o.terminalKeys, [control, monitor]);
    assert.equal(o.logLevel, "warn");
    assert.equal(optionsFromEnv(complete).servicePort, 3000, "PORT when OPSPLANE_SERVICE_PORT is unset");
  });

  test("startSdk() without options reads the environment and names what is missing", async () => {
    const saved = process.env.OPSPLANE_CONFIG_URL;
    delete process.env.OPSPLANE_CONFIG_URL;
    try {
      await assert.rejects(startSdk(), /missing environment variables?: OPSPLANE_CONFIG_URL/);
    } finally {
      if (saved !== undefined) process.env.OPSPLANE_CONFIG_URL = saved;
    }
  });

  test("OPSPLANE_STARTUP_TIMEOUT_MS bounds how long start-up waits for an unreachable config-center", async () => {
    const start = performance.now();
    const sdk = await startSdk(
      optionsFromEnv({
        ...complete,
        OPSPLANE_CONFIG_URL: `http://127.0.0.1:${await freePort()}`,
        OPSPLANE_STARTUP_TIMEOUT_MS: "300",
        OPSPLANE_TERMINAL_PORT: "0",
        OPSPLANE_LOG_LEVEL: "silent",
      }),
    );
    const startupMs = performance.now() - start;
    try {
      assert.equal(sdk.state, "degraded");
      assert.ok(startupMs < 5_000, `started degraded after ${Math.round(startupMs)} ms, not the default 20 s`);
    } finally {
      await sdk.close();
    }
    assert.throws(
      () => optionsFromEnv({ ...complete, OPSPLANE_STARTUP_TIMEOUT_MS: "20s" }),
      /^SdkOptionsError: OPSPLANE_STARTUP_TIMEOUT_MS must be a positive number of milliseconds, not "20s"$/,
    );
  });

  test("by default no wait before rejoining config-center is longer than 15 s, and waits are spread over it", () => {
    const waits = Array.from({ length: 2000 }, (_, i) => backoffDelay(5 + (i % 30), defaultRetry.baseMs, defaultRetry.maxMs));
    assert.ok(Math.max(...waits) < 15_000, `longest wait ${Math.max(...waits)} ms`);
    assert.ok(Math.max(...waits) > 12_000 && Math.min(...waits) < 3_000, "full jitter: spread from 0 to the cap");
  });
});
