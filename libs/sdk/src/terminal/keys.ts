import { createPublicKey, type KeyObject } from "node:crypto";
import type { SdkLogger } from "../contracts.js";

/**
 * One OPSPLANE_TERMINAL_KEYS entry, `keyId:base64(spki der)` of an Ed25519 public key, or the
 * reason it is not one.
 */
export function readTerminalKey(entry: string): { keyId: string; key: KeyObject } | string {
  const colon = entry.indexOf(":");
  const keyId = entry.slice(0, colon).trim();
  if (colon <= 0 || !keyId) return `entry ${JSON.stringify(entry.slice(0, 40))} is not keyId:base64(spki der)`;
  try {
    const key = createPublicKey({ key: Buffer.from(entry.slice(colon + 1).trim(), "base64"), format: "der", type: "spki" });
    if (key.asymmetricKeyType !== "ed25519") return `key ${keyId} is a ${key.asymmetricKeyType} key, not ed25519`;
    return { keyId, key };
  } catch (err) {
    return `key ${keyId} is not a public key in base64 spki der: ${(err as Error).message}`;
  }
}

/** The non-empty entries of a comma-separated key list. */
export function terminalKeyEntries(spec: string | undefined): string[] {
  return (spec ?? "")
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean);
}

/**
 * OPSPLANE_TERMINAL_KEYS: the Ed25519 public keys of whoever may call the terminal (control-center,
 * monitor-center). `startSdk` refuses a malformed entry when it reads its options; a terminal
 * built on its own leaves such an entry out with one log line: the others keep working, and a
 * terminal without keys refuses everything.
 */
export function parseTerminalKeys(spec: string | undefined, log: SdkLogger): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>();
  for (const entry of terminalKeyEntries(spec)) {
    const read = readTerminalKey(entry);
    if (typeof read === "string") log.warn(`OPSPLANE_TERMINAL_KEYS: left out: ${read}`);
    else keys.set(read.keyId, read.key);
  }
  return keys;
}
