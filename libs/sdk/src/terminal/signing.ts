/**
 * How a terminal request is signed: Ed25519 over the method, the path, a timestamp, a nonce, the
 * instance it is for and the SHA-256 of its body. control-center and monitor-center sign with
 * their private keys; every instance verifies with the public keys in OPSPLANE_TERMINAL_KEYS.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, randomBytes, sign } from "node:crypto";

export const signatureHeaders = {
  keyId: "x-opsplane-key-id",
  timestamp: "x-opsplane-timestamp",
  nonce: "x-opsplane-nonce",
  instance: "x-opsplane-instance",
  signature: "x-opsplane-signature",
} as const;

export interface SignedParts {
  method: string;
  /** The request target as sent: path and query. */
  path: string;
  /** Milliseconds since the epoch. */
  timestamp: number;
  nonce: string;
  instanceId: string;
  body: string | Buffer;
}

/** The bytes signed: the parts joined by "\n" after a version line. */
export function signedBytes(parts: SignedParts): Buffer {
  const bodyHash = createHash("sha256").update(parts.body).digest("hex");
  return Buffer.from(
    ["opsplane-terminal-v1", parts.method.toUpperCase(), parts.path, String(parts.timestamp), parts.nonce, parts.instanceId, bodyHash].join(
      "\n",
    ),
  );
}

/** The headers that authenticate a request to one instance's terminal. */
export function signTerminalRequest(
  request: Omit<SignedParts, "timestamp" | "nonce"> & { keyId: string; privateKey: KeyObject | string; timestamp?: number; nonce?: string },
): Record<string, string> {
  const timestamp = request.timestamp ?? Date.now();
  const nonce = request.nonce ?? randomBytes(16).toString("base64url");
  const key = typeof request.privateKey === "string" ? createPrivateKey(request.privateKey) : request.privateKey;
  const signature = sign(null, signedBytes({ ...request, timestamp, nonce }), key).toString("base64");
  return {
    [signatureHeaders.keyId]: request.keyId,
    [signatureHeaders.timestamp]: String(timestamp),
    [signatureHeaders.nonce]: nonce,
    [signatureHeaders.instance]: request.instanceId,
    [signatureHeaders.signature]: signature,
  };
}

/** A new key pair: the private key as PKCS#8 PEM for the signer, the entry for OPSPLANE_TERMINAL_KEYS for the instances. */
export function newTerminalKey(keyId: string): { privateKeyPem: string; publicKeyEntry: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKeyEntry: `${keyId}:${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`,
  };
}

/** The public key entry (`keyId:base64(spki der)`) of a private key. */
export function publicKeyEntry(keyId: string, privateKey: KeyObject | string): string {
  const key = typeof privateKey === "string" ? createPrivateKey(privateKey) : privateKey;
  return `${keyId}:${createPublicKey(key).export({ type: "spki", format: "der" }).toString("base64")}`;
}
