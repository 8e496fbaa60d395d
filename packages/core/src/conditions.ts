/**
 * Conditions of policy `rules:` (`if:` / `unless:`): what a path into the action holds, tested by one operator.
 * Compiled once at policy load into closures; every operator is linear in its input, none uses a regular expression.
 *
 * Arrays and missing values resolve toward safety. Under `if` (the rule applies when it holds) a condition over an
 * array holds when it holds for any element, and a value it cannot judge (a glob on an object, `gt` on a word, a
 * command line that is not one simple command) counts as holding. Under `unless` (an exception) it holds only when
 * it holds for every element, a value it cannot judge fails it, and a missing path (absent, `null`, an empty array)
 * never satisfies it.
 */
import type { ActionType } from './decision.js';
import { DomainMatcher, normalizeDomainEntry, parseTarget } from './domain.js';
import { hasHidden, isControl, isInvisible } from './hidden-characters.js';
import type { PolicyIssue } from './errors.js';
import { describe, parseMoney } from './money.js';
import type { PreparedAction } from './policy-evaluator.js';
import { isPlainObject, listLengthProblem } from './policy-values.js';
import { compileCommandTest, type CommandTest } from './shell-command.js';
import { unknownKeyMessage } from './suggest.js';
import { compileGlob, foldToolName } from './tool-matcher.js';

/** The operators a condition may use. */
export const OPERATORS = ['eq', 'ne', 'in', 'not_in', 'glob', 'lt', 'lte', 'gt', 'gte', 'exists', 'domain', 'command'] as const;
export type Operator = (typeof OPERATORS)[number];

/** Where a condition reads: the tool input (dot path), the request's method, host or path, or the action's cost. */
const ROOTS = ['input', 'method', 'host', 'path', 'cost'] as const;
type Root = (typeof ROOTS)[number];

/** `if` conditions decide when a rule applies; `unless` conditions are its exceptions. */
export type ConditionSense = 'if' | 'unless';

/** A validated condition: one path, one operator, one operand. */
export interface NormalizedCondition {
  readonly path: string;
  readonly op: Operator;
  readonly operand: unknown;
}

type Scalar = string | number | boolean | null;
// A leaf test: 1 holds, 0 does not, 2 cannot be judged (wrong type, unparseable).
type Test = (value: unknown) => 0 | 1 | 2;
// A test of a whole list at the end of a path (a `command` argv), or undefined when the list is not one.
type ListTest = (list: readonly unknown[]) => 0 | 1 | 2 | undefined;

const MAX_DEPTH = 32;

function isScalar(value: unknown): value is Scalar {
  return value === null || typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value));
}

// Why `eq: null` (or an `eq:` written without a value) is refused: a null or missing value never holds a condition
// under `if` and never makes an exception under `unless`, so the rule would silently never apply.
const NULL_OPERAND = 'has no value (null); null never matches (a missing or null value never holds a condition), so the rule would never apply. Give a value, or test for a missing value with exists: false under if';

/** A decimal number written as a string (`"150"`, `"-2.5"`), read without a regular expression; else NaN. */
function numericString(text: string): number {
  const n = text.length;
  if (n === 0 || n > 64) return Number.NaN;
  let i = text.charCodeAt(0) === 0x2d ? 1 : 0;
  let digits = 0;
  let dot = false;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) digits++;
    else if (c === 0x2e && !dot) dot = true;
    else return Number.NaN;
  }
  return digits > 0 ? Number(text) : Number.NaN;
}

function asNumber(value: unknown): number {
  if (typeof value === 'number') return Number.isFinite(value) ? value : Number.NaN;
  if (typeof value === 'string') return numericString(value);
  return Number.NaN;
}

function scalarEquals(value: unknown, operand: Scalar): boolean {
  if (value === operand) return true;
  if (typeof operand === 'number' && typeof value === 'string') return numericString(value) === operand;
  if (typeof operand === 'string' && typeof value === 'number') return numericString(operand) === value;
  return false;
}

/**
 * The text a lenient reader takes a string for: trimmed, without control or invisible characters, case-folded, NFKC,
 * combining marks and common look-alikes folded (as block lists fold tool names). `test-fraud`, `TEST-FRAUD `,
 * `ｔｅｓｔ-fraud` and `tést-fraud` are one text; a tool, a database collation or a mail server may not tell them apart.
 */
function variantText(text: string): string {
  let plain = true;
  const n = text.length;
  for (let i = 0; i < n && plain; i++) {
    const c = text.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) plain = false;
  }
  if (plain) return text.toLowerCase();
  let kept = '';
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (isControl(c) || isInvisible(c)) continue;
    kept += text[i];
  }
  kept = kept.trim();
  return plainAscii(kept) ? kept.toLowerCase() : foldToolName(kept);
}

/** Printable ASCII without a space at either end: its variant is its lower case. */
function isPlain(text: string): boolean {
  const n = text.length;
  return n === 0 || (text.charCodeAt(0) !== 0x20 && text.charCodeAt(n - 1) !== 0x20 && plainAscii(text));
}

/** `text` lower-cased equals `lower` (itself lower case), without building the lower-cased copy. */
function equalsIgnoringAsciiCase(text: string, lower: string): boolean {
  if (text.length !== lower.length) return false;
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

function plainAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c >= 0x7f) return false;
  }
  return true;
}


/** The numbers a lenient parser reads a string as (`Number`, `parseFloat`, `parseInt`, thousands separators dropped). */
function lenientNumberIs(text: string, want: number): boolean {
  if (text.length > 64) return false;
  let bare = '';
  for (let i = 0; i < text.length; i++) if (text[i] !== ',' && text[i] !== '_') bare += text[i];
  bare = bare.trim();
  if (bare === '') return false;
  return Number(bare) === want || Number.parseFloat(bare) === want || Number.parseInt(bare, 10) === want;
}

// ---- validation ---------------------------------------------------------------------------------------------------

function joinPath(base: string, key: string): string {
  return `${base}.${key}`;
}

function readScalarList(value: unknown, path: string, issues: PolicyIssue[], what: string): Scalar[] | undefined {
  if (!Array.isArray(value) || value.length === 0) {
    issues.push({ path, message: `must be a non-empty list of ${what}, got ${describe(value)}` });
    return undefined;
  }
  const tooLong = listLengthProblem(value);
  if (tooLong !== undefined) {
    issues.push({ path, message: tooLong });
    return undefined;
  }
  const bad = value.findIndex((item) => !isScalar(item) || item === null);
  if (bad >= 0) {
    const item = value[bad];
    issues.push({ path: `${path}[${bad}]`, message: item === null ? NULL_OPERAND : `must be a string, number or boolean, got ${describe(item)}` });
    return undefined;
  }
  return [...(value as Scalar[])];
}

function readStringOrList(value: unknown, path: string, issues: PolicyIssue[], what: string): string[] | undefined {
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length === 0) {
    issues.push({ path, message: `must be ${what} or a non-empty list of them, got ${describe(value)}` });
    return undefined;
  }
  const tooLong = listLengthProblem(list);
  if (tooLong !== undefined) {
    issues.push({ path, message: tooLong });
    return undefined;
  }
  const bad = list.findIndex((item) => typeof item !== 'string' || item.trim() === '');
  if (bad >= 0) {
    issues.push({ path: Array.isArray(value) ? `${path}[${bad}]` : path, message: `must be ${what} (a non-empty string), got ${describe(list[bad])}` });
    return undefined;
  }
  return [...(list as string[])];
}

/** The action types a rule's selector admits, so a condition on a path those actions never have is refused. */
export type AdmittedTypes = ReadonlySet<ActionType>;

const ROOT_TYPES: Record<Root, ActionType[]> = { input: ['tool'], method: ['http'], host: ['http'], path: ['http'], cost: ['tool', 'http', 'cost'] };

/**
 * Validates an `if:` or `unless:` mapping (`path: { operator: operand, … }`, every entry must hold). Returns the
 * conditions in order, or `undefined` after pushing issues.
 */
export function readConditions(raw: unknown, path: string, sense: ConditionSense, admitted: AdmittedTypes, issues: PolicyIssue[]): NormalizedCondition[] | undefined {
  const before = issues.length;
  if (!isPlainObject(raw) || Object.keys(raw).length === 0) {
    issues.push({ path, message: `must be a mapping of paths to conditions, e.g. { "input.to": { glob: "*@example.com" } }, got ${describe(raw)}` });
    return undefined;
  }
  const out: NormalizedCondition[] = [];
  for (const key of Object.keys(raw)) {
    const keyPath = joinPath(path, key);
    const segments = key.split('.');
    const root = segments[0] as Root;
    if (!(ROOTS as readonly string[]).includes(root)) {
      issues.push({ path: keyPath, message: `unknown path ${JSON.stringify(key)}: a path starts with input (the tool input, e.g. input.to), method, host, path (HTTP requests) or cost` });
      continue;
    }
    if (segments.some((segment) => segment === '')) {
      issues.push({ path: keyPath, message: `empty segment in path ${JSON.stringify(key)}; write dot paths like input.recipient.email` });
      continue;
    }
    // `input.to ` reads a field named "to " that the input does not have: the rule would never apply.
    if (segments.some((segment) => segment.trim() !== segment || hasHidden(segment))) {
      issues.push({ path: keyPath, message: `path ${JSON.stringify(key)} has a space or an invisible character at the start or end of a segment, so it would read another field than meant; write dot paths like input.recipient.email` });
      continue;
    }
    if (root !== 'input' && segments.length > 1) {
      issues.push({ path: keyPath, message: `${root} has no fields; write ${root}: { … }` });
      continue;
    }
    if (!ROOT_TYPES[root].some((type) => admitted.has(type))) {
      issues.push({ path: keyPath, message: `${root} is only set for ${ROOT_TYPES[root].join('/')} actions, and this rule matches ${[...admitted].join('/')} actions only` });
      continue;
    }
    const spec = raw[key];
    if (!isPlainObject(spec) || Object.keys(spec).length === 0) {
      issues.push({ path: keyPath, message: `must be a mapping of operators (${OPERATORS.join(', ')}) to operands, got ${describe(spec)}` });
      continue;
    }
    for (const op of Object.keys(spec)) {
      const opPath = joinPath(keyPath, op);
      if (!(OPERATORS as readonly string[]).includes(op)) {
        issues.push({ path: opPath, message: unknownKeyMessage(op, OPERATORS) });
        continue;
      }
      const operand = readOperand(op as Operator, spec[op], root, opPath, sense, issues);
      if (operand !== undefined) out.push(Object.freeze({ path: key, op: op as Operator, operand }));
    }
  }
  return issues.length === before ? out : undefined;
}

function readOperand(op: Operator, value: unknown, root: Root, path: string, sense: ConditionSense, issues: PolicyIssue[]): unknown {
  const numericRoot = root === 'cost';
  const fail = (message: string): undefined => {
    issues.push({ path, message });
    return undefined;
  };
  switch (op) {
    case 'eq':
    case 'ne':
      if (value === null) return fail(NULL_OPERAND);
      if (!isScalar(value)) return fail(`must be a string, number or boolean, got ${describe(value)}`);
      if (numericRoot) return readCostOperand(value, path, issues);
      return root === 'method' && typeof value === 'string' ? value.toUpperCase() : value;
    case 'in':
    case 'not_in': {
      const list = readScalarList(value, path, issues, 'values');
      if (!list) return undefined;
      if (numericRoot) {
        const amounts = list.map((item, index) => readCostOperand(item, `${path}[${index}]`, issues));
        return amounts.includes(undefined) ? undefined : amounts;
      }
      return root === 'method' ? list.map((item) => (typeof item === 'string' ? item.toUpperCase() : item)) : list;
    }
    case 'glob':
      return readStringOrList(value, path, issues, 'a glob pattern ("*" matches any run of characters)');
    case 'lt':
    case 'lte':
    case 'gt':
    case 'gte':
      if (numericRoot) return readCostOperand(value, path, issues);
      if (typeof value !== 'number' || !Number.isFinite(value)) return fail(`must be a number, got ${describe(value)}`);
      return value;
    case 'exists':
      if (typeof value !== 'boolean') return fail(`must be true or false, got ${describe(value)}`);
      if (sense === 'unless' && !value) return fail('exists: false can never satisfy an unless (a missing value never makes an exception); write the rule with if: { …: { exists: false } } instead');
      return value;
    case 'domain': {
      const list = readStringOrList(value, path, issues, 'a domain (example.com or *.example.com)');
      if (!list) return undefined;
      let ok = true;
      list.forEach((entry, index) => {
        const normalized = normalizeDomainEntry(entry);
        if (!normalized.ok) {
          ok = false;
          issues.push({ path: Array.isArray(value) ? `${path}[${index}]` : path, message: normalized.message });
        }
      });
      return ok ? list : undefined;
    }
    case 'command':
      if (root !== 'input') return fail(`command reads a shell command line from the tool input, not ${root}`);
      return readStringOrList(value, path, issues, 'a command glob such as "rm -r*"');
  }
}

function readCostOperand(value: unknown, path: string, issues: PolicyIssue[]): number | undefined {
  const parsed = parseMoney(value);
  if (parsed.ok) return parsed.nanos;
  issues.push({ path, message: `cost is compared in USD: ${parsed.message}` });
  return undefined;
}

// ---- compilation ----------------------------------------------------------------------------------------------------

/**
 * A leaf test. `eq`, `in` and `glob` hold exactly (1) on the value as written; on a lenient reading of a string only
 * (a case, width, accent, look-alike, whitespace or number-format variant) they cannot judge it (2). A string with a
 * control or invisible character matches only as "cannot judge", so it never satisfies an exception. `ne` and
 * `not_in` are their negations, with the same undecided middle. `sense` skips readings that cannot change the answer.
 */
function compileTest(condition: NormalizedCondition, sense: ConditionSense): Test {
  const operand = condition.operand;
  switch (condition.op) {
    case 'eq':
    case 'ne':
    case 'in':
    case 'not_in': {
      const list = condition.op === 'eq' || condition.op === 'ne' ? [operand as Scalar] : (operand as Scalar[]);
      const strings = new Set(list.filter((item): item is string => typeof item === 'string'));
      const others = list.filter((item) => typeof item !== 'string');
      const numbers = list.filter((item): item is number => typeof item === 'number');
      const variants = new Set([...strings].map(variantText));
      const inside = (value: unknown): boolean => {
        if (typeof value === 'string' && strings.has(value)) return true;
        for (let i = 0; i < others.length; i++) if (scalarEquals(value, others[i] as Scalar)) return true;
        if (typeof value === 'string' && strings.size > 0) {
          const number = numericString(value);
          if (!Number.isNaN(number)) for (const item of strings) if (numericString(item) === number) return true;
        }
        return false;
      };
      const variantList = [...variants];
      const variant = (value: string): boolean => {
        // The usual value (printable ASCII, no spaces at its ends) is compared without building its variant.
        if (isPlain(value)) {
          for (let i = 0; i < variantList.length; i++) if (equalsIgnoringAsciiCase(value, variantList[i] as string)) return true;
        } else if (variants.has(variantText(value))) return true;
        for (let i = 0; i < numbers.length; i++) if (lenientNumberIs(value, numbers[i] as number)) return true;
        return false;
      };
      if (condition.op === 'eq' || condition.op === 'in') {
        // Under unless a variant fails the exception as a miss does: only the hidden-character check is needed.
        if (sense === 'unless') return (value) => (inside(value) ? (typeof value === 'string' && hasHidden(value) ? 2 : 1) : 0);
        return (value) => (inside(value) ? 1 : typeof value === 'string' && variant(value) ? 2 : 0);
      }
      // ne / not_in: under if a variant holds as a miss does.
      if (sense === 'if') return (value) => (inside(value) ? 0 : 1);
      return (value) => (inside(value) ? 0 : typeof value === 'string' && (hasHidden(value) || variant(value)) ? 2 : 1);
    }
    case 'glob': {
      const patterns = operand as string[];
      const globs = patterns.map(compileGlob);
      const variantGlobs = patterns.map((pattern) => compileGlob(variantText(pattern)));
      const any = (list: readonly ((text: string) => boolean)[], text: string): boolean => {
        for (let i = 0; i < list.length; i++) if ((list[i] as (text: string) => boolean)(text)) return true;
        return false;
      };
      return (value) => {
        const text = typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
        if (text === undefined) return 2;
        if (any(globs, text)) return sense === 'unless' && hasHidden(text) ? 2 : 1;
        return sense === 'if' && any(variantGlobs, variantText(text)) ? 2 : 0;
      };
    }
    case 'lt':
    case 'lte':
    case 'gt':
    case 'gte': {
      const bound = operand as number;
      const op = condition.op;
      return (value) => {
        const number = asNumber(value);
        if (Number.isNaN(number)) return 2;
        const holds = op === 'lt' ? number < bound : op === 'lte' ? number <= bound : op === 'gt' ? number > bound : number >= bound;
        return holds ? 1 : 0;
      };
    }
    case 'exists':
      return () => 1;
    case 'domain': {
      const matcher = new DomainMatcher(operand as string[], 'subtree');
      // Under unless the operator exempts, as an allow list does: an IPv6 literal is the address it is, never the IPv4
      // address it routes to through a translator (64:ff9b::a.b.c.d, 2002:…) or carries.
      const carried = sense === 'if';
      return (value) => {
        if (typeof value !== 'string') return 2;
        const host = hostOf(value);
        if (host === undefined) return 2;
        return matcher.match(host.host, host.isIp, carried) !== undefined ? 1 : 0;
      };
    }
    case 'command': {
      const command = compileCommandTest(operand as string[]);
      return (value) => (typeof value === 'string' ? command.line(value) : 2);
    }
  }
}

/**
 * A list reached at the end of a `command` path may be one argv rather than several command lines: its reading as an
 * argv, 2 when it mixes strings with other values (no argv holds those), or undefined when it holds no string.
 */
function argvReading(command: CommandTest, list: readonly unknown[]): 0 | 1 | 2 | undefined {
  let strings = 0;
  for (let i = 0; i < list.length; i++) if (typeof list[i] === 'string') strings++;
  if (strings === 0) return undefined;
  return strings === list.length ? command.argv(list as string[]) : 2;
}

/** A URL (with a scheme) or a bare host, normalised like request hosts; `undefined` when it is neither. */
function hostOf(value: string): { host: string; isIp: boolean } | undefined {
  let target;
  const scheme = value.indexOf('://');
  if (scheme >= 0) {
    // A backslash in the authority: WHATWG URL (fetch) reads it as a path separator, other URL parsers as part of the
    // userinfo or host (`https://ok.com\@evil.com/` is ok.com to one and evil.com to another), so it is not judged.
    for (let i = scheme + 3; i < value.length; i++) {
      const c = value.charCodeAt(i);
      if (c === 0x2f || c === 0x3f || c === 0x23) break;
      if (c === 0x5c) return undefined;
    }
    target = parseTarget(value);
  }
  else {
    for (let i = 0; i < value.length; i++) {
      const c = value.charCodeAt(i);
      // A bare host has no path, query, fragment, userinfo, backslash or whitespace.
      if (c === 0x2f || c === 0x3f || c === 0x23 || c === 0x40 || c === 0x5c || c <= 0x20) return undefined;
    }
    if (value === '') return undefined;
    target = parseTarget(`http://${value}/`);
  }
  return target.ok ? { host: target.host, isIp: target.isIp } : undefined;
}

type Reader = (action: PreparedAction) => unknown;

function compileReader(path: string): { read: Reader; segments: readonly string[] } {
  const segments = path.split('.');
  switch (segments[0] as Root) {
    case 'input':
      return { read: (action) => (action.type === 'tool' ? action.input : undefined), segments: segments.slice(1) };
    case 'method':
      return { read: (action) => (action.type === 'http' ? action.method : undefined), segments: [] };
    case 'host':
      return { read: (action) => (action.type === 'http' ? action.host : undefined), segments: [] };
    case 'path':
      return { read: (action) => (action.type === 'http' ? action.path : undefined), segments: [] };
    case 'cost':
      return { read: (action) => action.costNanos, segments: [] };
  }
}

function isIndex(segment: string): boolean {
  if (segment.length === 0 || segment.length > 9) return false;
  for (let i = 0; i < segment.length; i++) {
    const c = segment.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return segment.length === 1 || segment.charCodeAt(0) !== 0x30;
}

/**
 * Under `if`: whether some value at the path passes `test` or cannot be judged. Arrays fan out (a numeric segment
 * indexes instead); own properties only, so `__proto__` or `constructor` read nothing.
 */
function anyHolds(value: unknown, segments: readonly string[], i: number, test: Test, depth: number, list?: ListTest): boolean {
  if (value === undefined || value === null) return false;
  if (depth > MAX_DEPTH) return true;
  if (Array.isArray(value)) {
    const segment = segments[i];
    if (segment !== undefined && isIndex(segment)) return anyHolds(value[Number(segment)], segments, i + 1, test, depth + 1, list);
    if (list !== undefined && i === segments.length) {
      const whole = list(value);
      if (whole !== undefined && whole !== 0) return true;
    }
    for (let k = 0; k < value.length; k++) if (anyHolds(value[k], segments, i, test, depth + 1, list)) return true;
    return false;
  }
  if (i === segments.length) return test(value) !== 0;
  if (typeof value !== 'object') return false;
  const segment = segments[i] as string;
  return Object.hasOwn(value, segment) ? anyHolds((value as Record<string, unknown>)[segment], segments, i + 1, test, depth + 1, list) : false;
}

/** Under `unless`: how many values at the path there are if every one passes `test`, or -1 if one does not. */
function everyHolds(value: unknown, segments: readonly string[], i: number, test: Test, depth: number, list?: ListTest): number {
  if (value === undefined || value === null) return 0;
  if (depth > MAX_DEPTH) return -1;
  if (Array.isArray(value)) {
    const segment = segments[i];
    if (segment !== undefined && isIndex(segment)) return everyHolds(value[Number(segment)], segments, i + 1, test, depth + 1, list);
    if (list !== undefined && i === segments.length) {
      const whole = list(value);
      if (whole !== undefined && whole !== 1) return -1;
    }
    let count = 0;
    for (let k = 0; k < value.length; k++) {
      const result = everyHolds(value[k], segments, i, test, depth + 1, list);
      if (result < 0) return -1;
      count += result;
    }
    return count;
  }
  if (i === segments.length) return test(value) === 1 ? 1 : -1;
  if (typeof value !== 'object') return 0;
  const segment = segments[i] as string;
  return Object.hasOwn(value, segment) ? everyHolds((value as Record<string, unknown>)[segment], segments, i + 1, test, depth + 1, list) : 0;
}

/** A compiled `if` / `unless` block: whether all its conditions hold for the action. */
export type CompiledConditions = (action: PreparedAction) => boolean;

/** Compiles validated conditions into one closure (all must hold), with the quantifiers of `sense`. */
export function compileConditions(conditions: readonly NormalizedCondition[], sense: ConditionSense): CompiledConditions {
  const compiled = conditions.map((condition) => {
    const { read, segments } = compileReader(condition.path);
    const test = compileTest(condition, sense);
    if (condition.op === 'exists') {
      if (sense === 'unless') return (action: PreparedAction) => everyHolds(read(action), segments, 0, test, 0) > 0;
      const want = condition.operand as boolean;
      return (action: PreparedAction) => anyHolds(read(action), segments, 0, test, 0) === want;
    }
    if (condition.op === 'command') {
      // A list of strings may be one argv rather than several command lines: both readings must pass an exception,
      // and either reading holding makes a deny apply, at any depth of lists.
      const command = compileCommandTest(condition.operand as string[]);
      const list: ListTest = (items) => argvReading(command, items);
      if (sense === 'unless') return (action: PreparedAction) => everyHolds(read(action), segments, 0, test, 0, list) > 0;
      return (action: PreparedAction) => anyHolds(read(action), segments, 0, test, 0, list);
    }
    if (segments.length === 1 && condition.path.startsWith('input.')) {
      // The common shape, `input.<field>` holding a string, number or boolean, read without the general walk (which
      // gives the same answer).
      const key = segments[0] as string;
      if (sense === 'unless') {
        return (action: PreparedAction) => {
          const input = action.type === 'tool' ? action.input : undefined;
          if (typeof input === 'object' && input !== null && !Array.isArray(input) && Object.hasOwn(input, key)) {
            const value = (input as Record<string, unknown>)[key];
            if (typeof value !== 'object' && value !== undefined) return test(value) === 1;
          }
          return everyHolds(input, segments, 0, test, 0) > 0;
        };
      }
      return (action: PreparedAction) => {
        const input = action.type === 'tool' ? action.input : undefined;
        if (typeof input === 'object' && input !== null && !Array.isArray(input) && Object.hasOwn(input, key)) {
          const value = (input as Record<string, unknown>)[key];
          if (typeof value !== 'object' && value !== undefined) return test(value) !== 0;
        }
        return anyHolds(input, segments, 0, test, 0);
      };
    }
    if (sense === 'unless') return (action: PreparedAction) => everyHolds(read(action), segments, 0, test, 0) > 0;
    return (action: PreparedAction) => anyHolds(read(action), segments, 0, test, 0);
  });
  if (compiled.length === 1) return compiled[0] as CompiledConditions;
  return (action) => {
    for (let i = 0; i < compiled.length; i++) if (!(compiled[i] as CompiledConditions)(action)) return false;
    return true;
  };
}

/** The document form of conditions: `{ path: { op: operand } }`, in order. */
export function conditionsToDocument(conditions: readonly NormalizedCondition[], toUsd: (nanos: number) => number): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const condition of conditions) {
    const operand = condition.path === 'cost' && condition.op !== 'exists' ? (Array.isArray(condition.operand) ? (condition.operand as number[]).map(toUsd) : toUsd(condition.operand as number)) : condition.operand;
    (out[condition.path] ??= {})[condition.op] = Array.isArray(operand) ? [...(operand as unknown[])] : operand;
  }
  return out;
}

