import { hash } from 'node:crypto';

/** Deepest nesting a tool input may have; deeper input is refused (denied), never cut. */
export const MAX_INPUT_DEPTH = 256;

/** Why an input has no canonical form (a cycle, or nesting deeper than {@link MAX_INPUT_DEPTH}). */
export class InputShapeError extends Error {}

/**
 * The canonical text of a tool's input: JSON with object keys sorted, so equal inputs give equal text whatever their
 * key order. `undefined` and functions are left out of objects (and are `null` in arrays), as in JSON; `toJSON` is
 * honoured (dates); bigints, non-finite numbers, Maps, Sets and binary data get tagged forms, so two different
 * inputs never share a text. A cycle, or nesting deeper than {@link MAX_INPUT_DEPTH}, throws {@link InputShapeError}.
 */
export function canonicalInput(value: unknown): string {
  return write(value, 0, []);
}

// The objects on the path from the root to the current value: a cycle is an object already on it. Paths are short,
// so a scan beats a Set.
function write(value: unknown, depth: number, path: object[]): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? (value === 0 ? '0' : String(value)) : `{"$number":"${String(value)}"}`;
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return `{"$bigint":"${value.toString()}"}`;
    case 'undefined':
    case 'function':
    case 'symbol':
      return 'null';
  }
  if (value === null) return 'null';
  const object = value as object;
  if (depth >= MAX_INPUT_DEPTH) throw new InputShapeError(`input nests deeper than ${MAX_INPUT_DEPTH} levels`);
  if (path.includes(object)) throw new InputShapeError('input contains a cycle');
  path.push(object);
  try {
    if (Array.isArray(object)) {
      let out = '[';
      for (let i = 0; i < object.length; i++) out += (i > 0 ? ',' : '') + write(object[i], depth + 1, path);
      return `${out}]`;
    }
    if (typeof (object as { toJSON?: unknown }).toJSON === 'function') return write((object as { toJSON: (key: string) => unknown }).toJSON(''), depth + 1, path);
    if (object instanceof Map) return `{"$map":${write([...object], depth + 1, path)}}`;
    if (object instanceof Set) return `{"$set":${write([...object], depth + 1, path)}}`;
    if (ArrayBuffer.isView(object) || object instanceof ArrayBuffer) {
      const bytes = object instanceof ArrayBuffer ? new Uint8Array(object) : new Uint8Array(object.buffer, object.byteOffset, object.byteLength);
      return `{"$bytes":"${Buffer.from(bytes).toString('base64')}"}`;
    }
    const keys = Object.keys(object);
    if (keys.length > 1) keys.sort();
    let out = '{';
    let first = true;
    for (const key of keys) {
      const item = (object as Record<string, unknown>)[key];
      if (item === undefined || typeof item === 'function' || typeof item === 'symbol') continue;
      out += `${first ? '' : ','}${JSON.stringify(key)}:${write(item, depth + 1, path)}`;
      first = false;
    }
    return `${out}}`;
  } finally {
    path.pop();
  }
}

/** The parts of an action its fingerprint covers. */
export type FingerprintParts =
  | { type: 'tool'; name: string; costNanos: number; input: string | undefined }
  | { type: 'http'; url: string; method: string; costNanos: number }
  | { type: 'cost'; source: string; costNanos: number };

/**
 * The action's fingerprint: SHA-256 (hex) over its type, normalised name (tool), method and normalised URL (http)
 * or source (cost), cost in nano-dollars, and the canonical text of its input. Idempotency keys, approval requests,
 * approval tokens and the audit record bind to it: an answer or a key given for one fingerprint never covers another.
 */
export function actionFingerprint(parts: FingerprintParts): string {
  let text: string;
  if (parts.type === 'tool') text = `tool\n${parts.name}\n${parts.costNanos}\n${parts.input === undefined ? '' : `=${parts.input}`}`;
  else if (parts.type === 'http') text = `http\n${parts.method}\n${parts.url}\n${parts.costNanos}`;
  else text = `cost\n${parts.source}\n${parts.costNanos}`;
  return hash('sha256', text, 'hex');
}
