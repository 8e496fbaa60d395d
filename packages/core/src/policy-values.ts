/** Small readers shared by the parts of the policy format that are validated in their own files. */
import type { PolicyIssue } from './errors.js';
import { describe } from './money.js';

/** A plain `{ … }` object (or `Object.create(null)`): not an array, a Map or a class instance. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Reports each known key of `item` that is present with the value `undefined` (from code): like `null`, a key
 * without a value, never read as "not set" (a rule's `tool: undefined` would widen what it matches, its
 * `mode: undefined` would follow a shadow policy instead of enforcing).
 */
export function reportUndefinedKeys(item: Record<string, unknown>, known: readonly string[], path: string, issues: PolicyIssue[]): void {
  for (const key of Object.keys(item)) {
    if (known.includes(key) && item[key] === undefined) issues.push({ path: `${path}.${key}`, message: 'has no value (undefined); give it a value, or leave the key out' });
  }
}

/** Reads a list of entries (`rules:`, `limits:`): each through `readItem` with its path; non-lists are an issue. */
export function readEntries<T>(list: unknown, path: string, what: string, issues: PolicyIssue[], readItem: (item: unknown, path: string) => T | undefined): T[] {
  const out: T[] = [];
  if (!Array.isArray(list)) {
    issues.push({ path, message: `must be a list of ${what}, got ${describe(list)}` });
    return out;
  }
  list.forEach((item, index) => {
    const entry = readItem(item, `${path}[${index}]`);
    if (entry !== undefined) out.push(entry);
  });
  return out;
}
