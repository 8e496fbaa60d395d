/** Small readers shared by the parts of the policy format that are validated in their own files. */
import type { PolicyIssue } from './errors.js';
import { describe } from './money.js';

/** A plain `{ … }` object (or `Object.create(null)`): not an array, a Map or a class instance. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
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
