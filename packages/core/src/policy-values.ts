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
 * The known keys `item` has, each read once (a getter cannot pass one check and answer another read differently).
 * A key present with the value `undefined` (from code) is reported: like `null`, a key without a value, never read as
 * "not set" (a rule's `tool: undefined` would widen what it matches, its `mode: undefined` would follow a shadow
 * policy instead of enforcing).
 */
export function readKnownKeys(item: Record<string, unknown>, known: readonly string[], path: string, issues: PolicyIssue[]): Record<string, unknown> {
  const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const key of known) {
    if (!Object.hasOwn(item, key)) continue;
    const value = item[key];
    if (value === undefined) issues.push({ path: `${path}.${key}`, message: 'has no value (undefined); give it a value, or leave the key out' });
    else out[key] = value;
  }
  return out;
}

/**
 * Most entries one list of a policy may have. A list from code can claim any length (a sparse array, a proxy): it
 * is refused by its length instead of being walked for minutes or filling memory.
 */
export const MAX_LIST_ENTRIES = 1_000_000;

/** Whether a list is too long to read, as its issue message; undefined when it is not. */
export function listLengthProblem(list: readonly unknown[]): string | undefined {
  const length = list.length;
  return length > MAX_LIST_ENTRIES ? `has ${length} entries; at most ${MAX_LIST_ENTRIES} are allowed` : undefined;
}

/**
 * Visits every index of a list up to its length: a hole reads as undefined (for `visit` to report, never skipped),
 * and the walk stops after the first one (a sparse list's other holes say nothing more). A list longer than
 * {@link MAX_LIST_ENTRIES} is one issue and is not walked.
 */
export function forEachEntry(list: readonly unknown[], path: string, issues: PolicyIssue[], visit: (item: unknown, index: number) => void): void {
  const problem = listLengthProblem(list);
  if (problem !== undefined) {
    issues.push({ path, message: problem });
    return;
  }
  const length = list.length;
  for (let index = 0; index < length; index++) {
    const hole = !(index in list);
    visit(list[index], index);
    if (hole) return;
  }
}

/** Reads a list of entries (`rules:`, `limits:`): each through `readItem` with its path; non-lists are an issue. */
export function readEntries<T>(list: unknown, path: string, what: string, issues: PolicyIssue[], readItem: (item: unknown, path: string) => T | undefined): T[] {
  const out: T[] = [];
  if (!Array.isArray(list)) {
    issues.push({ path, message: `must be a list of ${what}, got ${describe(list)}` });
    return out;
  }
  forEachEntry(list, path, issues, (item, index) => {
    const entry = readItem(item, `${path}[${index}]`);
    if (entry !== undefined) out.push(entry);
  });
  return out;
}
