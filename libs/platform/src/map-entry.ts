/**
 * The value under `key`, made and added the first time. Per-request code uses nested maps of these to find
 * what it counts by label values it already holds, without building and hashing a key for every request.
 */
export function entryOf<K, V>(map: Map<K, V>, key: K, make: () => V): V {
  let found = map.get(key);
  if (found === undefined) {
    found = make();
    map.set(key, found);
  }
  return found;
}

/** A new empty map: `entryOf`'s maker, one function for every call rather than a closure each. */
export const newMap = <K, V>(): Map<K, V> => new Map();

/** A new empty array: `entryOf`'s maker, one function for every call rather than a closure each. */
export const newList = <V>(): V[] => [];
