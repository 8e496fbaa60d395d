/**
 * `limits:` — how many calls of a kind may be allowed per window (`30s`, `1m`, `1h`, `1d`) or per session, counted
 * per session or across every session sharing a budget key (`scope: budget`). Only allowed calls count; the counts
 * live in the session's {@link RateLimitStore}.
 */
import { createHash } from 'node:crypto';
import type { PolicyIssue } from './errors.js';
import { describe } from './money.js';
import type { PreparedAction } from './policy-evaluator.js';
import { isPlainObject, readEntries, readKnownKeys } from './policy-values.js';
import { readMode, type PolicyMode } from './rules.js';
import { compileSelector, readSelector, selectorToDocument, type Selector } from './selector.js';
import { unknownKeyMessage } from './suggest.js';

export type LimitScope = 'session' | 'budget';

/** A limit as written in the policy file. */
export interface LimitDocument {
  tool?: string;
  domain?: string;
  action?: 'tool' | 'http' | 'cost';
  max_calls: number;
  per: string;
  scope?: LimitScope;
  mode?: PolicyMode;
}

/** A validated limit. `windowMs` null: the whole session (or budget). `mode` null follows the policy's. */
export interface NormalizedLimit {
  readonly selector: Selector;
  readonly maxCalls: number;
  readonly per: string;
  readonly windowMs: number | null;
  readonly scope: LimitScope;
  readonly mode: PolicyMode | null;
}

const LIMIT_KEYS = ['tool', 'domain', 'action', 'max_calls', 'per', 'scope', 'mode'] as const;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const MAX_WINDOW_MS = 366 * 86_400_000;

/** Reads `30s`, `1m`, `2h`, `1d` (a positive whole number and a unit) or `session`; an error message otherwise. */
export function parseWindow(value: unknown): { ok: true; windowMs: number | null } | { ok: false; message: string } {
  const hint = 'a window like 30s, 1m, 2h, 1d (a whole number and s, m, h or d) or session';
  if (value === 'session') return { ok: true, windowMs: null };
  if (typeof value !== 'string' || value.length < 2 || value.length > 12) return { ok: false, message: `must be ${hint}, got ${describe(value)}` };
  const unit = UNIT_MS[value[value.length - 1] as string];
  const digits = value.slice(0, -1);
  let valid = unit !== undefined && digits.length > 0 && digits[0] !== '0';
  for (let i = 0; valid && i < digits.length; i++) {
    const c = digits.charCodeAt(i);
    if (c < 0x30 || c > 0x39) valid = false;
  }
  if (!valid || unit === undefined) return { ok: false, message: `must be ${hint}, got ${describe(value)}` };
  const windowMs = Number(digits) * unit;
  if (windowMs > MAX_WINDOW_MS) return { ok: false, message: `must be at most 366d, got ${JSON.stringify(value)}` };
  return { ok: true, windowMs };
}

/** Validates the `limits:` list. */
export function readLimits(list: unknown, path: string, issues: PolicyIssue[]): NormalizedLimit[] {
  return readEntries(list, path, 'limits', issues, (item, at) => readLimit(item, at, issues));
}

function readLimit(raw: unknown, at: string, issues: PolicyIssue[]): NormalizedLimit | undefined {
  if (!isPlainObject(raw)) {
    issues.push({ path: at, message: `must be a limit mapping such as { tool: search, max_calls: 5, per: 1m }, got ${describe(raw)}` });
    return undefined;
  }
  const before = issues.length;
  for (const key of Object.keys(raw)) {
    if (!(LIMIT_KEYS as readonly string[]).includes(key)) issues.push({ path: `${at}.${key}`, message: unknownKeyMessage(key, LIMIT_KEYS) });
  }
  const item = readKnownKeys(raw, LIMIT_KEYS, at, issues);
  const get = (key: string) => (Object.hasOwn(item, key) ? item[key] : undefined);
  const selector = readSelector(item, at, issues);
  const max = get('max_calls');
  if (max === undefined) {
    if (!Object.hasOwn(raw, 'max_calls')) issues.push({ path: `${at}.max_calls`, message: 'is required: how many calls the window allows' });
  } else if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 1) {
    issues.push({ path: `${at}.max_calls`, message: `must be a whole number ≥ 1, got ${describe(max)}` });
  }
  const per = get('per');
  let windowMs: number | null | undefined;
  if (per === undefined) {
    if (!Object.hasOwn(raw, 'per')) issues.push({ path: `${at}.per`, message: 'is required: a window like 30s, 1m, 2h, 1d, or session' });
  } else {
    const parsed = parseWindow(per);
    if (parsed.ok) windowMs = parsed.windowMs;
    else issues.push({ path: `${at}.per`, message: parsed.message });
  }
  const scope = get('scope');
  if (scope !== undefined && scope !== 'session' && scope !== 'budget') {
    issues.push({ path: `${at}.scope`, message: `must be session (this session's calls) or budget (every session sharing the budget key), got ${describe(scope)}` });
  }
  const modeRaw = get('mode');
  const mode = modeRaw === undefined ? null : readMode(modeRaw, `${at}.mode`, issues);
  if (issues.length !== before || !selector || windowMs === undefined || mode === undefined) return undefined;
  return Object.freeze({
    selector: Object.freeze(selector),
    maxCalls: max as number,
    per: per as string,
    windowMs,
    scope: (scope as LimitScope | undefined) ?? 'session',
    mode,
  });
}

/** A limit back in the file format. */
export function limitToDocument(limit: NormalizedLimit): LimitDocument {
  return {
    ...selectorToDocument(limit.selector),
    max_calls: limit.maxCalls,
    per: limit.per,
    scope: limit.scope,
    ...(limit.mode !== null ? { mode: limit.mode } : {}),
  };
}

/**
 * A limit ready to count. Its store key prefix names what it counts (selector, window, scope), not its `max_calls`:
 * the same limit in a changed or reloaded policy shares its counts, and a lowered `max_calls` applies to the calls
 * already made in the window instead of starting over.
 */
export interface CompiledLimit {
  readonly index: number;
  readonly maxCalls: number;
  readonly per: string;
  readonly windowMs: number | null;
  readonly scope: LimitScope;
  readonly enforced: boolean;
  /** `limit:<hash of what it counts>:<scope>:` — the session appends its id or budget key. */
  readonly keyPrefix: string;
  readonly selects: (action: PreparedAction) => boolean;
}

function compileLimit(limit: NormalizedLimit, index: number, policyMode: PolicyMode, occurrence: number): CompiledLimit {
  // `occurrence` tells apart limits of one policy that count the same calls in the same window (their counts are
  // their own: a call takes a slot in each).
  const spec = JSON.stringify([limit.selector.tool ?? null, limit.selector.domain ?? null, limit.selector.action ?? null, limit.windowMs, occurrence]);
  const hash = createHash('sha256').update(spec).digest('hex').slice(0, 16);
  return Object.freeze({
    index,
    maxCalls: limit.maxCalls,
    per: limit.per,
    windowMs: limit.windowMs,
    scope: limit.scope,
    enforced: (limit.mode ?? policyMode) === 'enforce',
    keyPrefix: `limit:${hash}:${limit.scope}:`,
    selects: compileSelector(limit.selector),
  });
}


/** Compiles a policy's limits in order (see {@link compileLimit} for how their counts are named). */
export function compileLimits(limits: readonly NormalizedLimit[], policyMode: PolicyMode): readonly CompiledLimit[] {
  const seen = new Map<string, number>();
  return limits.map((limit, index) => {
    const counts = JSON.stringify([limit.selector.tool ?? null, limit.selector.domain ?? null, limit.selector.action ?? null, limit.windowMs, limit.scope]);
    const occurrence = seen.get(counts) ?? 0;
    seen.set(counts, occurrence + 1);
    return compileLimit(limit, index, policyMode, occurrence);
  });
}
