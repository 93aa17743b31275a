/**
 * The name the dispatcher gives itself in `Via` (RFC 9110 §7.6.3) when it does not say another:
 * a callback arriving with it has been forwarded by this dispatcher already.
 */
export const defaultViaPseudonym = "opsplane-callback-dispatcher";

/**
 * Whether a `Via` value (repeated headers joined with commas) holds an entry received by `pseudonym`:
 * `1.1 opsplane-callback-dispatcher`, any protocol, any comment after it, the name in any case.
 */
export function viaNames(via: string, pseudonym: string): boolean {
  // Most callbacks carry no Via, and those that do rarely name the dispatcher: one search decides.
  if (!via.toLowerCase().includes(pseudonym.toLowerCase())) return false;
  for (const entry of via.split(",")) {
    const receivedBy = entry.trim().split(/\s+/, 2)[1];
    if (receivedBy !== undefined && receivedBy.toLowerCase() === pseudonym.toLowerCase()) return true;
  }
  return false;
}

/** What a callback that came back to the dispatcher is answered (508) and recorded with. */
export const loopMessage = (pseudonym: string) =>
  `the callback has already passed through this dispatcher (its Via header names ${pseudonym}): an environment's base URL leads back to the dispatcher; not forwarded again`;
