/**
 * A memo for pure functions of a string, bounded both in entries and in bytes. A key longer than `maxKeyChars` is
 * never kept (its result is recomputed each time), so one 10 MB URL or 1 MB tool name cannot sit in memory for the
 * life of the process; when an insertion would pass either bound, the cache starts over empty.
 */
export class BoundedCache<V> {
  private readonly map = new Map<string, V>();
  private bytes = 0;

  /**
   * @param maxEntries most entries kept at once
   * @param maxBytes most bytes kept at once, counting each key and the size `weigh` gives its value
   * @param maxKeyChars keys longer than this are not cached at all
   * @param weigh approximate size in bytes of a value (strings it holds of its own)
   */
  constructor(
    private readonly maxEntries: number,
    private readonly maxBytes: number,
    readonly maxKeyChars: number,
    private readonly weigh: (value: V) => number = () => 0,
  ) {}

  get size(): number {
    return this.map.size;
  }

  /** Bytes currently accounted for. */
  get byteSize(): number {
    return this.bytes;
  }

  get(key: string): V | undefined {
    // Checked first so an oversized key is never even hashed (hashing reads the whole string).
    if (key.length > this.maxKeyChars) return undefined;
    return this.map.get(key);
  }

  /** Remembers `value` under `key` unless the key is too long to keep; returns `value` either way. */
  set(key: string, value: V): V {
    if (key.length > this.maxKeyChars) return value;
    const bytes = this.cost(key, value);
    if (bytes > this.maxBytes) return value;
    const previous = this.map.get(key);
    if (previous !== undefined) this.bytes -= this.cost(key, previous);
    // Starting over when full is O(1) amortised; evicting one entry at a time from a Map's front is not (the
    // deleted slots it leaves are skipped again by every later eviction).
    if ((previous === undefined && this.map.size >= this.maxEntries) || this.bytes + bytes > this.maxBytes) this.clear();
    this.map.set(key, value);
    this.bytes += bytes;
    return value;
  }

  // UTF-16 code units, two bytes each, plus a fixed allowance for the entry itself.
  private cost(key: string, value: V): number {
    return 2 * key.length + this.weigh(value) + 64;
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }
}
