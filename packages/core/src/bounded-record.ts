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
  return copy(value, 0, { entries: MAX_RECORDED_ENTRIES, exact: true }, []);
}

/** A recorded input, and whether the copy is the input itself (see {@link recordInput}). */
export interface RecordedInput {
  readonly copy: unknown;
  readonly exact: boolean;
}

/**
 * Reads a tool's input once into its bounded frozen copy ({@link boundValue}), and says whether that copy is exact:
 * plain objects, arrays, strings, numbers, booleans and null only, nothing cut, no `toJSON`, nothing unreadable, so the
 * copy holds the same data as the input (same keys, same values, undefined-valued keys included). An exact copy can
 * stand in for the input from then on: the policy reads it, and the fingerprint is written from it.
 */
export function recordInput(value: unknown): RecordedInput {
  // Most inputs are small plain data: copied in one pass that gives up at the first thing it would have to cut or
  // convert. Anything else (or a getter that throws) is copied again by the general copy, which cuts and marks.
  const outer = entriesLeft;
  entriesLeft = MAX_RECORDED_ENTRIES;
  let exact: unknown = INEXACT;
  try {
    exact = exactCopy(value, 0);
  } catch {
    exact = INEXACT;
  } finally {
    entriesLeft = outer;
  }
  // The copy's loop walks its keys with for-in, which would also list an enumerable property added to
  // Object.prototype: such a process gets the general copy (own keys only).
  if (exact !== INEXACT && prototypeIsClean()) return { copy: exact, exact: true };
  const budget = { entries: MAX_RECORDED_ENTRIES, exact: true };
  const copied = copy(value, 0, budget, []);
  return { copy: copied, exact: budget.exact };
}

const INEXACT = Symbol('inexact');
const EMPTY: object = Object.freeze({});

function prototypeIsClean(): boolean {
  for (const _ in EMPTY) return false;
  return true;
}

// Entries the exact copy in progress may still take (saved and restored around each copy, so a getter that checks
// another input meanwhile does not disturb it).
let entriesLeft = 0;

// The exact copy: the same data, frozen, or INEXACT. No cycle check is needed: a cycle nests deeper than
// MAX_RECORDED_DEPTH, which is given up on.
function exactCopy(value: unknown, depth: number): unknown {
  if (typeof value !== 'object') {
    if (typeof value === 'string') return value.length <= MAX_RECORDED_STRING ? value : INEXACT;
    return typeof value === 'number' || typeof value === 'boolean' || value === undefined ? value : INEXACT;
  }
  if (value === null) return null;
  if (depth >= MAX_RECORDED_DEPTH) return INEXACT;
  if (Array.isArray(value)) {
    const length = value.length;
    if (length > entriesLeft) return INEXACT;
    entriesLeft -= length;
    const out: unknown[] = [];
    for (let i = 0; i < length; i++) {
      const item = exactCopy(value[i], depth + 1);
      if (item === INEXACT) return INEXACT;
      out.push(item);
    }
    return Object.freeze(out);
  }
  const prototype = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return INEXACT;
  // A spread reads every own enumerable property once (a getter included) into a new plain object, copying the
  // source's layout in one step: cheaper than adding the keys one by one. What it copies is then checked and its
  // objects copied in place. A symbol-keyed property rides along as it is: it is no part of the data (JSON, the
  // fingerprint, the rules and a structured clone never read it), and looking for one costs more than the copy.
  const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  if (typeof out['toJSON'] === 'function') return INEXACT;
  for (const key in out) {
    if (--entriesLeft < 0 || key.length > MAX_RECORDED_STRING || key === '__proto__') return INEXACT;
    const item = out[key];
    if (typeof item === 'object' && item !== null) {
      const copied = exactCopy(item, depth + 1);
      if (copied === INEXACT) return INEXACT;
      out[key] = copied;
    } else if (typeof item === 'string') {
      if (item.length > MAX_RECORDED_STRING) return INEXACT;
    } else if (typeof item !== 'number' && typeof item !== 'boolean' && item !== undefined) return INEXACT;
  }
  return Object.freeze(out);
}

/** A frozen bounded copy of decision metadata (a shallow record of caller values). */
export function boundMetadata(metadata: Readonly<Record<string, unknown>>): Readonly<Record<string, unknown>> {
  // The common case: a plain object of a few short primitive values, copied as it is.
  if (typeof metadata === 'object' && metadata !== null && Object.getPrototypeOf(metadata) === Object.prototype) {
    const keys = Object.keys(metadata);
    if (keys.length <= 32) {
      const out: Record<string, unknown> = {};
      let flat = true;
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i] as string;
        const item = (metadata as Record<string, unknown>)[key];
        const type = typeof item;
        if (key.length > MAX_RECORDED_STRING || key === '__proto__' || !(item === null || type === 'number' || type === 'boolean' || type === 'undefined' || (type === 'string' && (item as string).length <= MAX_RECORDED_STRING))) {
          flat = false;
          break;
        }
        out[key] = item;
      }
      if (flat) return Object.freeze(out);
    }
  }
  const copied = boundValue(metadata);
  return (typeof copied === 'object' && copied !== null && !Array.isArray(copied) ? copied : Object.freeze({ value: copied })) as Readonly<Record<string, unknown>>;
}

interface CopyBudget {
  entries: number;
  /** Still true while everything copied so far is copied as it is. */
  exact: boolean;
}

// `path` holds the objects from the root to the current value (a cycle is one already on it); at most
// MAX_RECORDED_DEPTH long, so a scan is cheaper than a Set.
function copy(value: unknown, depth: number, budget: CopyBudget, path: object[]): unknown {
  switch (typeof value) {
    case 'string':
      if (value.length <= MAX_RECORDED_STRING) return value;
      budget.exact = false;
      return boundString(value);
    case 'number':
    case 'boolean':
    case 'undefined':
      return value;
    case 'bigint':
      budget.exact = false;
      return boundString(`${value}n`);
    case 'symbol':
      budget.exact = false;
      return boundString(value.toString());
    case 'function':
      budget.exact = false;
      return `[function ${boundString(value.name || 'anonymous')}]`;
  }
  if (value === null) return null;
  const object = value as object;
  if (path.includes(object)) {
    budget.exact = false;
    return '[circular]';
  }
  if (depth >= MAX_RECORDED_DEPTH) {
    budget.exact = false;
    return '[nested too deep]';
  }
  const isArray = Array.isArray(object);
  if (!isArray && typeof (object as { toJSON?: unknown }).toJSON === 'function') {
    budget.exact = false;
    try {
      return copy((object as { toJSON: () => unknown }).toJSON(), depth, budget, path);
    } catch {
      return '[unreadable]';
    }
  }
  path.push(object);
  try {
    if (isArray) {
      const array = object as unknown[];
      const out: unknown[] = [];
      for (let i = 0; i < array.length; i++) {
        if (budget.entries <= 0) {
          budget.exact = false;
          out.push(`[${array.length - i} more items]`);
          break;
        }
        budget.entries--;
        out.push(copy(array[i], depth + 1, budget, path));
      }
      return Object.freeze(out);
    }
    const prototype = Object.getPrototypeOf(object);
    if (prototype !== Object.prototype && prototype !== null) {
      // Maps, Sets, binary data and class instances are recorded in a readable form, not as they are.
      budget.exact = false;
      if (object instanceof Map) return copy(Object.fromEntries([...object].map(([k, v]) => [String(k), v])), depth, budget, path);
      if (object instanceof Set) return copy([...object], depth, budget, path);
      if (ArrayBuffer.isView(object)) return `[${object.constructor.name} ${object.byteLength} bytes]`;
    }
    const out: Record<string, unknown> = {};
    const keys = Object.keys(object);
    for (let i = 0; i < keys.length; i++) {
      if (budget.entries <= 0) {
        budget.exact = false;
        out['…'] = `[${keys.length - i} more keys]`;
        break;
      }
      budget.entries--;
      const key = keys[i] as string;
      let item: unknown;
      try {
        item = (object as Record<string, unknown>)[key];
      } catch {
        budget.exact = false;
        item = '[unreadable]';
      }
      const copied = copy(item, depth + 1, budget, path);
      if (key.length > MAX_RECORDED_STRING) {
        budget.exact = false;
        out[boundString(key)] = copied;
      } else if (key === '__proto__') {
        // An own "__proto__" key (JSON.parse makes them) is recorded as a key, never as the copy's prototype.
        Object.defineProperty(out, key, { value: copied, enumerable: true, writable: true, configurable: true });
      } else out[key] = copied;
    }
    return Object.freeze(out);
  } finally {
    path.pop();
  }
}
