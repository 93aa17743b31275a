import { createHash, randomBytes, randomInt, timingSafeEqual } from "node:crypto";

/** Crockford base32: no I, L, O, U, so a key read aloud or retyped survives. */
const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const lookupLength = 4;
const secretLength = 8;

export interface ConnectionKey {
  /** As shown to the operator: "ABCD-EFGH-JKMN". */
  display: string;
  /** Public part that finds the session (20 bits). */
  lookup: string;
  /** SHA-256 of the secret part (40 bits); the secret itself is never stored. */
  secretHash: Buffer;
}

/** A new 12-character key: 4 lookup characters and 8 secret ones (60 random bits in all). */
export function newConnectionKey(): ConnectionKey {
  let chars = "";
  for (let i = 0; i < lookupLength + secretLength; i++) chars += alphabet[randomInt(alphabet.length)];
  const lookup = chars.slice(0, lookupLength);
  const secret = chars.slice(lookupLength);
  return { display: `${lookup}-${secret.slice(0, 4)}-${secret.slice(4)}`, lookup, secretHash: hashSecret(secret) };
}

/** Reads a typed key leniently (case, dashes, spaces, O for 0, I/L for 1); undefined when it cannot be a key. */
export function parseConnectionKey(typed: string): { lookup: string; secret: string } | undefined {
  const chars = typed.toUpperCase().replace(/[\s-]/g, "").replace(/O/g, "0").replace(/[IL]/g, "1");
  if (chars.length !== lookupLength + secretLength || [...chars].some((c) => !alphabet.includes(c))) return undefined;
  return { lookup: chars.slice(0, lookupLength), secret: chars.slice(lookupLength) };
}

export const hashSecret = (secret: string) => createHash("sha256").update(secret).digest();

/** Compares in constant time, so response timing says nothing about how much of the key was right. */
export function secretMatches(secret: string, storedHash: Buffer): boolean {
  const given = hashSecret(secret);
  return given.length === storedHash.length && timingSafeEqual(given, storedHash);
}

/** A bearer token (widget session token, developer ticket, reporter token) and its SHA-256 hex for storage. */
export function newToken(): { token: string; hash: string } {
  const token = randomBytes(24).toString("base64url");
  return { token, hash: tokenHash(token) };
}

export const tokenHash = (token: string) => createHash("sha256").update(token).digest("hex");
