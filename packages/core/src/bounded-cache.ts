/**
 * A memo for pure functions of a string, bounded both in entries and in bytes. A key longer than `maxKeyChars` is
 * never kept (its result is recomputed each time), so one 10 MB URL or 1 MB tool name cannot sit in memory for the
 * life of the process; when an insertion would pass either bound, the oldest entries are evicted first.
 */
export class BoundedCache<V> {
  private readonly map = new Map<string, { value: V; bytes: number }>();
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
    return this.map.get(key)?.value;
  }

  /** Remembers `value` under `key` unless the key is too long to keep; returns `value` either way. */
  set(key: string, value: V): V {
    if (key.length > this.maxKeyChars) return value;
    // UTF-16 code units, two bytes each, plus a fixed allowance for the entry itself.
    const bytes = 2 * key.length + this.weigh(value) + 64;
    if (bytes > this.maxBytes) return value;
    const previous = this.map.get(key);
    if (previous !== undefined) {
      this.bytes -= previous.bytes;
      this.map.delete(key);
    }
    while (this.map.size > 0 && (this.map.size >= this.maxEntries || this.bytes + bytes > this.maxBytes)) {
      const oldest = this.map.keys().next().value as string;
      this.bytes -= this.map.get(oldest)?.bytes ?? 0;
      this.map.delete(oldest);
    }
    this.map.set(key, { value, bytes });
    this.bytes += bytes;
    return value;
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }
}
