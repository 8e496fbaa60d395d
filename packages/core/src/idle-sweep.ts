/** Entries looked at each time a store adds a new key (see {@link sweepIdle}). */
const LOOKED_AT_PER_NEW_KEY = 2;

/**
 * Removes idle entries from a store's map a few at a time, called when a new key is added: the oldest few are looked
 * at; an idle one goes, one still in use moves to the back. So every entry is looked at again as keys are added, and
 * a map that gains a key per session or per conversation keeps about the entries still in use, at O(1) per new key.
 */
export function sweepIdle<K, V>(entries: Map<K, V>, isIdle: (value: V) => boolean): void {
  let looked = 0;
  for (const [key, value] of entries) {
    if (looked++ >= LOOKED_AT_PER_NEW_KEY) break;
    entries.delete(key);
    if (!isIdle(value)) entries.set(key, value);
  }
}
