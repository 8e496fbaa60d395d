import type { BudgetPeriod } from './budget-store.js';
import type { ActionType } from './decision.js';
import { errorMessage, type PolicyIssue } from './errors.js';
import { normalizeDomainEntry } from './domain.js';
import { describe, parseMoney } from './money.js';
import { forEachEntry, isPlainObject } from './policy-values.js';
import { limitToDocument, readLimits, type LimitDocument, type NormalizedLimit } from './limits.js';
import { policyWarnings, type PolicyWarning } from './policy-warnings.js';
import { readMode, readRules, ruleToDocument, type NormalizedRule, type PolicyMode, type RuleDocument } from './rules.js';
import { unknownKeyMessage } from './suggest.js';
import { foldToolName, toolNameProblem } from './tool-matcher.js';

/** The policy file format (YAML or a plain object), exactly as written. */
export interface PolicyDocument {
  /** Format version; only `1` exists. */
  version?: 1;
  budget?: {
    /** USD per session: a number or a string such as `"$5.00"`. */
    max_spend: number | string;
    /** Fraction of `max_spend` (0 < x ≤ 1) at which `onSoftLimit` fires once. */
    soft_limit?: number;
    /**
     * Over which time `max_spend` applies: `session` (default: the budget's whole life) or a UTC calendar window,
     * `hour`, `day`, `week` (ISO, from Monday) or `month`, after which spend starts again from zero.
     */
    period?: BudgetPeriod;
  };
  tools?: { allow?: string[]; block?: string[] };
  network?: { allow?: string[]; block?: string[] };
  approval?: {
    require_for?: Array<{ tool?: string; domain?: string; action?: ActionType; cost_gt?: number | string }>;
  };
  /**
   * Per-model prices and limits; they win over the built-in catalog. Token prices are USD per million tokens; a model
   * billed by another unit takes `per_image`, `per_second` or `per_character` instead. The limits bound a call's
   * worst case where the request sets none.
   */
  pricing?: Record<string, PriceDocument>;
  /** Deny or require approval by conditions on the action's input, request or cost. Every matching rule applies. */
  rules?: RuleDocument[];
  /** How many calls may be allowed per window or per session. */
  limits?: LimitDocument[];
  /** `shadow`: decide and record, enforce nothing (per rule and limit too). Default `enforce`. */
  mode?: PolicyMode;
}

/** One model's entry under `pricing:`. */
export interface PriceDocument {
  /** USD per million input tokens (with `output`). */
  input?: number | string;
  /** USD per million output tokens (with `input`). */
  output?: number | string;
  /** USD per million cached input tokens; `input` by default. */
  cached_input?: number | string;
  /**
   * USD per generated image: one price, or prices by size (`1024x1024`), quality (`hd`) or both (`hd/1024x1024`),
   * with `default` for any other. A request whose size or quality is not listed is estimated at the highest price.
   */
  per_image?: number | string | Record<string, number | string>;
  /** USD per second of audio (transcription). */
  per_second?: number | string;
  /** USD per character of input text (speech). */
  per_character?: number | string;
  /** Most output tokens one choice of this model can produce: the bound for a request that sets no limit. */
  max_output_tokens?: number;
  /** Most input tokens one request can carry (the context window): the bound for files and audio. */
  max_input_tokens?: number;
  /** Longest audio sent to this model, in seconds: the bound for per-second billing when the duration is unknown. */
  max_audio_seconds?: number;
}

/** A validated policy: every amount in nano-dollars, every list copied and frozen. */
export interface NormalizedPolicy {
  readonly budget: { readonly maxSpendNanos: number; readonly softLimit: number | null; readonly period: BudgetPeriod } | null;
  readonly tools: { readonly allow: readonly string[] | null; readonly block: readonly string[] };
  readonly network: { readonly allow: readonly string[] | null; readonly block: readonly string[] };
  readonly approvalRules: readonly NormalizedApprovalRule[];
  readonly pricing: ReadonlyMap<string, NormalizedPrice>;
  readonly rules: readonly NormalizedRule[];
  readonly limits: readonly NormalizedLimit[];
  readonly mode: PolicyMode;
}

export interface NormalizedApprovalRule {
  readonly tool?: string;
  readonly domain?: string;
  readonly action?: ActionType;
  readonly costGtNanos?: number;
}

/** One model's prices and limits: token prices in nano-dollars per million tokens, unit prices in nano-dollars. */
export interface NormalizedPrice {
  /** Token prices, when the model is priced by tokens here. */
  readonly tokens: { readonly input: number; readonly output: number; readonly cachedInput: number } | null;
  /** Per image, by `quality/size`, `size`, `quality` or `default`. */
  readonly perImage: ReadonlyMap<string, number> | null;
  readonly perSecond: number | null;
  readonly perCharacter: number | null;
  readonly maxOutputTokens: number | null;
  readonly maxInputTokens: number | null;
  readonly maxAudioSeconds: number | null;
}

const TOP_KEYS = ['version', 'budget', 'tools', 'network', 'approval', 'pricing', 'rules', 'limits', 'mode'] as const;
const BUDGET_KEYS = ['max_spend', 'soft_limit', 'period'] as const;
const PERIODS: readonly BudgetPeriod[] = ['session', 'hour', 'day', 'week', 'month'];
const LIST_KEYS = ['allow', 'block'] as const;
const APPROVAL_KEYS = ['require_for'] as const;
const RULE_KEYS = ['tool', 'domain', 'action', 'cost_gt'] as const;
const PRICE_KEYS = ['input', 'output', 'cached_input', 'per_image', 'per_second', 'per_character', 'max_output_tokens', 'max_input_tokens', 'max_audio_seconds'] as const;
const ACTION_TYPES: readonly ActionType[] = ['tool', 'http', 'cost'];

type Issues = PolicyIssue[];

function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

// Rule keys of the Python agentpolicy that are spelled differently, or do not exist, here.
const PYTHON_RULE_KEYS: Readonly<Record<string, string>> = {
  action_type: 'unknown key "action_type"; the key is "action" here (tool, http or cost)',
  source: 'unknown key "source"; approval rules do not match a cost source here: use action: cost to match every cost action',
};

/** Own keys only, so `__proto__` and `constructor` are ordinary (unknown) keys and can change nothing. */
function checkKeys(
  value: Record<string, unknown>,
  known: readonly string[],
  path: string,
  issues: Issues,
  hints: Readonly<Record<string, string>> = {},
): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue;
    issues.push({ path: join(path, key), message: Object.hasOwn(hints, key) ? (hints[key] as string) : unknownKeyMessage(key, known) });
  }
}

function get(value: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(value, key) ? value[key] : undefined;
}

// Why a key written without a value is refused: leaving it empty must never load as something wider than intended
// (`allow:` as no allow-list, `budget:` as no budget, `require_for:` as no approvals).
const NO_VALUE_HINTS: Readonly<Record<string, string>> = {
  budget: 'which would load as no budget at all. Give it max_spend (0 allows no spending), or leave the key out',
  'budget.max_spend': 'which would load as no budget at all. Give an amount (0 allows no spending)',
  tools: 'give it allow and/or block lists, or leave the key out',
  'tools.allow': 'an empty allow-list is written [] and allows no tool; leave the key out to allow every tool not blocked',
  'tools.block': 'an empty block list is written []; or leave the key out',
  network: 'give it allow and/or block lists, or leave the key out',
  'network.allow': 'an empty allow-list is written [] and allows no host; leave the key out to reach every host not blocked',
  'network.block': 'an empty block list is written []; or leave the key out',
  approval: 'give it require_for rules, or leave the key out',
  'approval.require_for': 'which would load as no approval rules. List the rules, write [] for none, or leave the key out',
  pricing: 'give it model prices, or leave the key out',
  rules: 'which would load as no rules. List the rules, write [] for none, or leave the key out',
  limits: 'which would load as no limits. List the limits, write [] for none, or leave the key out',
  mode: 'write enforce or shadow, or leave the key out (enforce)',
  'budget.period': 'write session, hour, day, week or month, or leave the key out (session)',
};

// Why a section written as an empty mapping is refused: `{}` would load as the section left out, with nothing restricted.
const EMPTY_SECTION_HINTS: Readonly<Record<string, string>> = {
  tools: 'which would load as no tool restrictions. Give it allow and/or block lists (allow: [] allows no tool), or leave the key out',
  network: 'which would load as no network restrictions. Give it allow and/or block lists (allow: [] allows no host), or leave the key out',
  approval: 'which would load as no approval rules. Give it require_for rules, or leave the key out',
  pricing: 'give it model prices, or leave the key out',
};

/** Refuses a section written as `{}` (one with only unknown keys has those reported already). */
function emptySection(section: Record<string, unknown>, path: string, issues: Issues): void {
  if (Object.keys(section).length > 0) return;
  issues.push({ path, message: `is empty ({}); ${EMPTY_SECTION_HINTS[path] ?? 'give it a value, or leave the key out'}` });
}

/**
 * Whether `key` is written in `value`: `absent`, `empty` (present with null/undefined, an issue is recorded) or
 * `present`.
 */
function presence(value: Record<string, unknown>, key: string, path: string, issues: Issues): 'absent' | 'empty' | 'present' {
  if (!Object.hasOwn(value, key)) return 'absent';
  const raw = value[key];
  if (raw !== undefined && raw !== null) return 'present';
  const at = join(path, key);
  const hint = NO_VALUE_HINTS[at.replace(/^pricing\..*/, 'pricing.*')] ?? 'give it a value, or leave the key out';
  issues.push({ path: at, message: `has no value (${raw === null ? 'null' : 'undefined'}); ${hint}` });
  return 'empty';
}

function readMoney(value: unknown, path: string, issues: Issues): number | undefined {
  const parsed = parseMoney(value);
  if (parsed.ok) return parsed.nanos;
  issues.push({ path, message: parsed.message });
  return undefined;
}

function readToolList(value: unknown, path: string, issues: Issues): string[] | undefined {
  if (!Array.isArray(value)) {
    issues.push({ path, message: `must be a list of tool names, got ${describe(value)}` });
    return undefined;
  }
  const out: string[] = [];
  forEachEntry(value, path, issues, (item, index) => {
    const problem = toolNameProblem(item);
    if (problem) {
      issues.push({ path: join(path, index), message: problem.replace('tool name', 'tool name pattern') });
      return;
    }
    const name = item as string;
    if (/\*\*/.test(name)) issues.push({ path: join(path, index), message: `"**" is not a pattern; use a single "*": ${JSON.stringify(name)}` });
    else out.push(name);
  });
  return out;
}

function readDomainList(value: unknown, path: string, issues: Issues): string[] | undefined {
  if (!Array.isArray(value)) {
    issues.push({ path, message: `must be a list of domains, got ${describe(value)}` });
    return undefined;
  }
  const out: string[] = [];
  forEachEntry(value, path, issues, (item, index) => {
    const normalized = normalizeDomainEntry(item);
    if (!normalized.ok) issues.push({ path: join(path, index), message: normalized.message });
    else out.push(item as string);
  });
  return out;
}

function readSection<T>(
  document: Record<string, unknown>,
  key: string,
  issues: Issues,
  read: (section: Record<string, unknown>, path: string) => T,
): T | undefined {
  if (presence(document, key, '', issues) !== 'present') return undefined;
  const section = document[key];
  if (!isPlainObject(section)) {
    issues.push({ path: key, message: `must be a mapping, got ${describe(section)}` });
    return undefined;
  }
  return read(section, key);
}

function readLists(
  section: Record<string, unknown>,
  path: string,
  issues: Issues,
  readList: (value: unknown, path: string, issues: Issues) => string[] | undefined,
  fold: (entry: string) => string,
  what: string,
): { allow: string[] | null; block: string[] } {
  checkKeys(section, LIST_KEYS, path, issues);
  // A list written without a value is an issue (recorded by presence); it loads as nothing allowed meanwhile.
  const allowState = presence(section, 'allow', path, issues);
  const blockState = presence(section, 'block', path, issues);
  if (allowState === 'absent' && blockState === 'absent') emptySection(section, path, issues);
  const allow = allowState === 'absent' ? null : allowState === 'empty' ? [] : (readList(section.allow, join(path, 'allow'), issues) ?? []);
  const block = blockState === 'present' ? (readList(section.block, join(path, 'block'), issues) ?? []) : [];
  if (allow) {
    const blocked = new Map(block.map((entry) => [fold(entry), entry]));
    allow.forEach((entry, index) => {
      const clash = blocked.get(fold(entry));
      if (clash !== undefined) {
        issues.push({
          path: join(join(path, 'allow'), index),
          message: `${what} ${JSON.stringify(entry)} is both allowed and blocked (${join(path, 'block')} has ${JSON.stringify(clash)})`,
        });
      }
    });
  }
  return { allow, block };
}

function foldDomain(entry: string): string {
  const normalized = normalizeDomainEntry(entry);
  return normalized.ok ? (normalized.wildcard ? `*.${normalized.host}` : normalized.host) : entry;
}

/**
 * Validates a policy document and returns its normalised form with any warnings (see {@link policyWarnings}), or
 * every issue found. Never throws: a value that cannot even be read (a getter or proxy that throws) is an issue too.
 */
export function validatePolicyDocument(
  input: unknown,
): { ok: true; policy: NormalizedPolicy; warnings: PolicyWarning[] } | { ok: false; issues: PolicyIssue[] } {
  try {
    return validate(input);
  } catch (error) {
    return { ok: false, issues: [{ path: '', message: `the policy could not be read: ${errorMessage(error)}` }] };
  }
}

function validate(input: unknown): { ok: true; policy: NormalizedPolicy; warnings: PolicyWarning[] } | { ok: false; issues: PolicyIssue[] } {
  const issues: Issues = [];
  if (input === undefined || input === null) {
    return { ok: false, issues: [{ path: '', message: 'the policy is empty; expected a mapping with budget, tools, network, approval, rules, limits or pricing' }] };
  }
  if (!isPlainObject(input)) {
    return { ok: false, issues: [{ path: '', message: `the policy must be a mapping (an object), got ${describe(input)}` }] };
  }
  const document = input;
  checkKeys(document, TOP_KEYS, '', issues);

  const version = get(document, 'version');
  if (presence(document, 'version', '', issues) === 'present' && version !== 1) issues.push({ path: 'version', message: `must be 1, got ${describe(version)}` });

  const budget = readSection(document, 'budget', issues, (section, path) => {
    checkKeys(section, BUDGET_KEYS, path, issues);
    let maxSpendNanos: number | undefined;
    const spend = presence(section, 'max_spend', path, issues);
    if (spend === 'absent') issues.push({ path: join(path, 'max_spend'), message: 'is required when a budget section is given' });
    else if (spend === 'present') maxSpendNanos = readMoney(section.max_spend, join(path, 'max_spend'), issues);
    const soft = get(section, 'soft_limit');
    let softLimit: number | null = null;
    if (presence(section, 'soft_limit', path, issues) === 'present') {
      if (typeof soft !== 'number' || !Number.isFinite(soft) || soft <= 0 || soft > 1) {
        issues.push({ path: join(path, 'soft_limit'), message: `must be a fraction of max_spend, greater than 0 and at most 1, got ${describe(soft)}` });
      } else softLimit = soft;
    }
    const rawPeriod = get(section, 'period');
    let period: BudgetPeriod = 'session';
    if (presence(section, 'period', path, issues) === 'present') {
      if (typeof rawPeriod === 'string' && (PERIODS as readonly string[]).includes(rawPeriod)) period = rawPeriod as BudgetPeriod;
      else issues.push({ path: join(path, 'period'), message: `must be one of ${PERIODS.join(', ')}, got ${describe(rawPeriod)}` });
    }
    return maxSpendNanos === undefined ? undefined : { maxSpendNanos, softLimit, period };
  });

  const tools = readSection(document, 'tools', issues, (section, path) =>
    readLists(section, path, issues, readToolList, foldToolName, 'tool'),
  ) ?? { allow: null, block: [] };

  const network = readSection(document, 'network', issues, (section, path) =>
    readLists(section, path, issues, readDomainList, foldDomain, 'domain'),
  ) ?? { allow: null, block: [] };

  const approvalRules = readSection(document, 'approval', issues, (section, path) => {
    checkKeys(section, APPROVAL_KEYS, path, issues);
    const rules: NormalizedApprovalRule[] = [];
    const state = presence(section, 'require_for', path, issues);
    if (state === 'absent') emptySection(section, path, issues);
    if (state !== 'present') return rules;
    const list = section.require_for;
    const listPath = join(path, 'require_for');
    if (!Array.isArray(list)) {
      issues.push({ path: listPath, message: `must be a list of rules, got ${describe(list)}` });
      return rules;
    }
    forEachEntry(list, listPath, issues, (item, index) => {
      const rule = readApprovalRule(item, join(listPath, index), issues);
      if (rule) rules.push(rule);
    });
    return rules;
  }) ?? [];

  const pricing = readSection(document, 'pricing', issues, (section, path) => {
    const prices = new Map<string, NormalizedPrice>();
    emptySection(section, path, issues);
    for (const model of Object.keys(section)) {
      const modelPath = join(path, model);
      const entry = section[model];
      if (model.trim() === '' || model !== model.trim()) {
        issues.push({ path: modelPath, message: 'model name must be non-empty without surrounding spaces' });
        continue;
      }
      if (presence(section, model, path, issues) === 'empty') continue;
      if (!isPlainObject(entry)) {
        issues.push({ path: modelPath, message: `must be a mapping with input and output (USD per million tokens), got ${describe(entry)}` });
        continue;
      }
      const price = readPrice(entry, modelPath, issues);
      if (price) prices.set(model, price);
    }
    return prices;
  }) ?? new Map<string, NormalizedPrice>();

  const rules = presence(document, 'rules', '', issues) === 'present' ? readRules(document.rules, 'rules', issues) : [];
  const limits = presence(document, 'limits', '', issues) === 'present' ? readLimits(document.limits, 'limits', issues) : [];
  const mode = presence(document, 'mode', '', issues) === 'present' ? (readMode(document.mode, 'mode', issues) ?? 'enforce') : 'enforce';

  if (issues.length > 0) return { ok: false, issues };
  const policy: NormalizedPolicy = Object.freeze({
    budget: budget ? Object.freeze(budget) : null,
    tools: Object.freeze({ allow: tools.allow ? Object.freeze(tools.allow) : null, block: Object.freeze(tools.block) }),
    network: Object.freeze({ allow: network.allow ? Object.freeze(network.allow) : null, block: Object.freeze(network.block) }),
    approvalRules: Object.freeze(approvalRules.map((rule) => Object.freeze(rule))),
    pricing,
    rules: Object.freeze(rules),
    limits: Object.freeze(limits),
    mode,
  });
  return { ok: true, policy, warnings: policyWarnings(policy) };
}

function readPrice(entry: Record<string, unknown>, path: string, issues: Issues): NormalizedPrice | undefined {
  const before = issues.length;
  checkKeys(entry, PRICE_KEYS, path, issues);
  // Each key's presence is read once (a key without a value is one issue, not one per reader).
  const states = new Map<string, 'absent' | 'empty' | 'present'>();
  const state = (key: string) => {
    let found = states.get(key);
    if (found === undefined) {
      found = presence(entry, key, path, issues);
      states.set(key, found);
    }
    return found;
  };
  const money = (key: string): number | null => (state(key) === 'present' ? (readMoney(entry[key], join(path, key), issues) ?? null) : null);
  const limit = (key: string, integer: boolean): number | null => {
    if (state(key) !== 'present') return null;
    const value = entry[key];
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || (integer && !Number.isSafeInteger(value))) {
      issues.push({ path: join(path, key), message: `must be a ${integer ? 'whole number' : 'number'} greater than 0, got ${describe(value)}` });
      return null;
    }
    return value;
  };
  const input = money('input');
  const output = money('output');
  const cachedInput = money('cached_input');
  const hasInput = state('input') !== 'absent';
  const hasOutput = state('output') !== 'absent';
  if (hasInput !== hasOutput || (state('cached_input') !== 'absent' && !hasInput)) {
    for (const key of ['input', 'output'] as const) {
      if (state(key) === 'absent') issues.push({ path: join(path, key), message: 'is required (USD per million tokens)' });
    }
  }
  let perImage: Map<string, number> | null = null;
  const imageRaw = state('per_image') === 'present' ? entry['per_image'] : undefined;
  if (imageRaw !== undefined) {
    perImage = new Map();
    if (isPlainObject(imageRaw)) {
      if (Object.keys(imageRaw).length === 0) issues.push({ path: join(path, 'per_image'), message: 'must list at least one price' });
      for (const [key, value] of Object.entries(imageRaw)) {
        const nanos = readMoney(value, join(join(path, 'per_image'), key), issues);
        if (nanos !== undefined) perImage.set(key.trim().toLowerCase(), nanos);
      }
    } else {
      const nanos = readMoney(imageRaw, join(path, 'per_image'), issues);
      if (nanos !== undefined) perImage.set('default', nanos);
    }
  }
  const price: NormalizedPrice = {
    tokens: input !== null && output !== null ? { input, output, cachedInput: cachedInput ?? input } : null,
    perImage,
    perSecond: money('per_second'),
    perCharacter: money('per_character'),
    maxOutputTokens: limit('max_output_tokens', true),
    maxInputTokens: limit('max_input_tokens', true),
    maxAudioSeconds: limit('max_audio_seconds', false),
  };
  if (issues.length === before && Object.keys(entry).length === 0) {
    issues.push({ path, message: 'must give a price (input and output, per_image, per_second or per_character) or a limit (max_output_tokens, …)' });
  }
  return issues.length === before ? price : undefined;
}

function readApprovalRule(item: unknown, path: string, issues: Issues): NormalizedApprovalRule | undefined {
  if (!isPlainObject(item)) {
    issues.push({ path, message: `must be a rule mapping with tool, domain, action or cost_gt, got ${describe(item)}` });
    return undefined;
  }
  checkKeys(item, RULE_KEYS, path, issues, PYTHON_RULE_KEYS);
  const before = issues.length;
  const rule: { tool?: string; domain?: string; action?: ActionType; costGtNanos?: number } = {};
  // A rule key without a value would make the rule match more than written.
  const written = RULE_KEYS.filter((key) => presence(item, key, path, issues) === 'present');
  const tool = get(item, 'tool');
  if (written.includes('tool')) {
    const problem = toolNameProblem(tool);
    if (problem) issues.push({ path: join(path, 'tool'), message: problem.replace('tool name', 'tool name pattern') });
    else rule.tool = tool as string;
  }
  const domain = get(item, 'domain');
  if (written.includes('domain')) {
    const normalized = normalizeDomainEntry(domain);
    if (!normalized.ok) issues.push({ path: join(path, 'domain'), message: normalized.message });
    else rule.domain = domain as string;
  }
  const action = get(item, 'action');
  if (written.includes('action')) {
    if (typeof action !== 'string' || !(ACTION_TYPES as readonly string[]).includes(action)) {
      issues.push({ path: join(path, 'action'), message: `must be one of ${ACTION_TYPES.join(', ')}, got ${describe(action)}` });
    } else rule.action = action as ActionType;
  }
  const costGt = get(item, 'cost_gt');
  if (written.includes('cost_gt')) {
    const nanos = readMoney(costGt, join(path, 'cost_gt'), issues);
    if (nanos !== undefined) rule.costGtNanos = nanos;
  }
  if (Object.keys(item).length === 0) {
    issues.push({ path, message: 'an approval rule needs at least one of tool, domain, action, cost_gt' });
  }
  if (issues.length === before) {
    if (rule.tool !== undefined && rule.domain !== undefined) {
      issues.push({ path, message: 'a rule with both tool and domain can never match (a tool call has no domain); write two rules' });
    } else if (rule.tool !== undefined && rule.action !== undefined && rule.action !== 'tool') {
      issues.push({ path: join(path, 'action'), message: `a rule with tool only matches tool actions, but action is ${rule.action}` });
    } else if (rule.domain !== undefined && rule.action !== undefined && rule.action !== 'http') {
      issues.push({ path: join(path, 'action'), message: `a rule with domain only matches http actions, but action is ${rule.action}` });
    }
  }
  return issues.length === before ? rule : undefined;
}

/** The normalised policy back in the file format (amounts as numbers in USD), e.g. for `explain`. */
export function toPolicyDocument(policy: NormalizedPolicy): PolicyDocument {
  const usd = (nanos: number) => nanos / 1e9;
  const document: PolicyDocument = { version: 1 };
  if (policy.budget) {
    document.budget = { max_spend: usd(policy.budget.maxSpendNanos) };
    if (policy.budget.softLimit !== null) document.budget.soft_limit = policy.budget.softLimit;
    if (policy.budget.period !== 'session') document.budget.period = policy.budget.period;
  }
  document.tools = { ...(policy.tools.allow ? { allow: [...policy.tools.allow] } : {}), block: [...policy.tools.block] };
  document.network = { ...(policy.network.allow ? { allow: [...policy.network.allow] } : {}), block: [...policy.network.block] };
  document.approval = {
    require_for: policy.approvalRules.map((rule) => ({
      ...(rule.tool !== undefined ? { tool: rule.tool } : {}),
      ...(rule.domain !== undefined ? { domain: rule.domain } : {}),
      ...(rule.action !== undefined ? { action: rule.action } : {}),
      ...(rule.costGtNanos !== undefined ? { cost_gt: usd(rule.costGtNanos) } : {}),
    })),
  };
  if (policy.rules.length > 0) document.rules = policy.rules.map(ruleToDocument);
  if (policy.limits.length > 0) document.limits = policy.limits.map(limitToDocument);
  if (policy.mode !== 'enforce') document.mode = policy.mode;
  if (policy.pricing.size > 0) {
    document.pricing = Object.fromEntries([...policy.pricing].map(([model, price]) => [model, priceDocument(price)]));
  }
  return document;
}

/** A normalised price entry back in the file format (amounts in USD). */
export function priceDocument(price: NormalizedPrice): PriceDocument {
  const usd = (nanos: number) => nanos / 1e9;
  const out: PriceDocument = {};
  if (price.tokens) {
    out.input = usd(price.tokens.input);
    out.output = usd(price.tokens.output);
    out.cached_input = usd(price.tokens.cachedInput);
  }
  if (price.perImage) out.per_image = Object.fromEntries([...price.perImage].map(([key, nanos]) => [key, usd(nanos)]));
  if (price.perSecond !== null) out.per_second = usd(price.perSecond);
  if (price.perCharacter !== null) out.per_character = usd(price.perCharacter);
  if (price.maxOutputTokens !== null) out.max_output_tokens = price.maxOutputTokens;
  if (price.maxInputTokens !== null) out.max_input_tokens = price.maxInputTokens;
  if (price.maxAudioSeconds !== null) out.max_audio_seconds = price.maxAudioSeconds;
  return out;
}
