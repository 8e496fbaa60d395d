import { hash } from 'node:crypto';

/** Longest string a record keeps whole, in UTF-16 code units. */
export const MAX_RECORDED_STRING = 1024;
/** Most entries (object keys and array items, all levels together) a recorded value keeps. */
export const MAX_RECORDED_ENTRIES = 256;
/** Deepest nesting a recorded value keeps. */
export const MAX_RECORDED_DEPTH = 8;

/**
 * The string as a record keeps it: whole up to {@link MAX_RECORDED_STRING} characters; longer, its start followed by
 * `…[truncated: <length> chars, sha256 <hex>]`, so the record stays small and still identifies the original.
 */
export function boundString(value: string): string {
  if (value.length <= MAX_RECORDED_STRING) return value;
  return `${value.slice(0, MAX_RECORDED_STRING)}…[truncated: ${value.length} chars, sha256 ${hash('sha256', value, 'hex')}]`;
}

/**
 * A frozen copy of a value for the audit trail: plain JSON-like data, every string bounded by {@link boundString},
 * at most {@link MAX_RECORDED_ENTRIES} entries and {@link MAX_RECORDED_DEPTH} levels (what is cut is replaced by a
 * marker that says how much). Changing the original afterwards changes nothing recorded.
 */
export function boundValue(value: unknown): unknown {
  const budget = { entries: MAX_RECORDED_ENTRIES };
  return copy(value, 0, budget, new Set());
}

/** A frozen bounded copy of decision metadata (a shallow record of caller values). */
export function boundMetadata(metadata: Readonly<Record<string, unknown>>): Readonly<Record<string, unknown>> {
  // The common case: a plain object of a few short primitive values, copied as it is.
  if (typeof metadata === 'object' && metadata !== null && Object.getPrototypeOf(metadata) === Object.prototype) {
    let flat = true;
    let count = 0;
    for (const key in metadata) {
      const item = (metadata as Record<string, unknown>)[key];
      const type = typeof item;
      if (++count > 32 || key.length > MAX_RECORDED_STRING || !(item === null || type === 'number' || type === 'boolean' || type === 'undefined' || (type === 'string' && (item as string).length <= MAX_RECORDED_STRING))) {
        flat = false;
        break;
      }
    }
    if (flat) return Object.freeze({ ...metadata });
  }
  const copied = boundValue(metadata);
  return (typeof copied === 'object' && copied !== null && !Array.isArray(copied) ? copied : Object.freeze({ value: copied })) as Readonly<Record<string, unknown>>;
}

function copy(value: unknown, depth: number, budget: { entries: number }, seen: Set<object>): unknown {
  switch (typeof value) {
    case 'string':
      return boundString(value);
    case 'number':
    case 'boolean':
    case 'undefined':
      return value;
    case 'bigint':
      return boundString(`${value}n`);
    case 'symbol':
      return boundString(value.toString());
    case 'function':
      return `[function ${boundString(value.name || 'anonymous')}]`;
  }
  if (value === null) return null;
  const object = value as object;
  if (seen.has(object)) return '[circular]';
  if (depth >= MAX_RECORDED_DEPTH) return '[nested too deep]';
  if (typeof (object as { toJSON?: unknown }).toJSON === 'function' && !Array.isArray(object)) {
    try {
      return copy((object as { toJSON: () => unknown }).toJSON(), depth, budget, seen);
    } catch {
      return '[unreadable]';
    }
  }
  seen.add(object);
  try {
    if (Array.isArray(object)) {
      const out: unknown[] = [];
      for (let i = 0; i < object.length; i++) {
        if (budget.entries <= 0) {
          out.push(`[${object.length - i} more items]`);
          break;
        }
        budget.entries--;
        out.push(copy(object[i], depth + 1, budget, seen));
      }
      return Object.freeze(out);
    }
    if (object instanceof Map) return copy(Object.fromEntries([...object].map(([k, v]) => [String(k), v])), depth, budget, seen);
    if (object instanceof Set) return copy([...object], depth, budget, seen);
    if (ArrayBuffer.isView(object)) return `[${object.constructor.name} ${object.byteLength} bytes]`;
    const out: Record<string, unknown> = {};
    const keys = Object.keys(object);
    for (let i = 0; i < keys.length; i++) {
      if (budget.entries <= 0) {
        out['…'] = `[${keys.length - i} more keys]`;
        break;
      }
      budget.entries--;
      const key = keys[i] as string;
      let item: unknown;
      try {
        item = (object as Record<string, unknown>)[key];
      } catch {
        item = '[unreadable]';
      }
      out[boundString(key)] = copy(item, depth + 1, budget, seen);
    }
    return Object.freeze(out);
  } finally {
    seen.delete(object);
  }
}
