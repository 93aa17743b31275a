import type { Sdk } from "./sdk.js";

/** A global slot, so the SDK auto mode started is found whichever copy of this module the app loads. */
const slot = Symbol.for("@opsplane/sdk.auto-instance");
const holder = globalThis as { [slot]?: Sdk };

/**
 * The SDK `node --import @opsplane/sdk/auto` started, so an auto-mode app can add what needs code
 * (`getSdk()?.config.onChange(…)`, `dialCheck`, `pool`, `declare`, `business.load`). Undefined
 * without auto mode, and in worker threads (auto mode starts one SDK, on the main thread). Start-up
 * completes before the app's code loads, so the app's code always finds it.
 */
export function getSdk(): Sdk | undefined {
  return holder[slot];
}

/** Auto mode only. */
export function setAutoSdk(sdk: Sdk): void {
  holder[slot] = sdk;
}
