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
  const parts: string[] = [];
  write(value, parts, 0, new Set());
  return parts.join('');
}

function write(value: unknown, out: string[], depth: number, seen: Set<object>): void {
  switch (typeof value) {
    case 'string':
      out.push(JSON.stringify(value));
      return;
    case 'number':
      out.push(Number.isFinite(value) ? JSON.stringify(value) : `{"$number":"${String(value)}"}`);
      return;
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return;
    case 'bigint':
      out.push(`{"$bigint":"${value.toString()}"}`);
      return;
    case 'undefined':
    case 'function':
    case 'symbol':
      out.push('null');
      return;
  }
  if (value === null) {
    out.push('null');
    return;
  }
  const object = value as object;
  if (depth >= MAX_INPUT_DEPTH) throw new InputShapeError(`input nests deeper than ${MAX_INPUT_DEPTH} levels`);
  if (seen.has(object)) throw new InputShapeError('input contains a cycle');
  seen.add(object);
  try {
    if (Array.isArray(object)) {
      out.push('[');
      for (let i = 0; i < object.length; i++) {
        if (i > 0) out.push(',');
        write(object[i], out, depth + 1, seen);
      }
      out.push(']');
      return;
    }
    if (typeof (object as { toJSON?: unknown }).toJSON === 'function') {
      write((object as { toJSON: (key: string) => unknown }).toJSON(''), out, depth + 1, seen);
      return;
    }
    if (object instanceof Map) {
      out.push('{"$map":');
      write([...object], out, depth + 1, seen);
      out.push('}');
      return;
    }
    if (object instanceof Set) {
      out.push('{"$set":');
      write([...object], out, depth + 1, seen);
      out.push('}');
      return;
    }
    if (ArrayBuffer.isView(object) || object instanceof ArrayBuffer) {
      const bytes = object instanceof ArrayBuffer ? new Uint8Array(object) : new Uint8Array(object.buffer, object.byteOffset, object.byteLength);
      out.push(`{"$bytes":"${Buffer.from(bytes).toString('base64')}"}`);
      return;
    }
    const keys = Object.keys(object).sort();
    out.push('{');
    let first = true;
    for (const key of keys) {
      const item = (object as Record<string, unknown>)[key];
      if (item === undefined || typeof item === 'function' || typeof item === 'symbol') continue;
      if (!first) out.push(',');
      first = false;
      out.push(JSON.stringify(key), ':');
      write(item, out, depth + 1, seen);
    }
    out.push('}');
  } finally {
    seen.delete(object);
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
