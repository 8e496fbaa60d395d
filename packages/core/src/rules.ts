/**
 * `rules:` — deny or require approval for actions that meet conditions on their input, request or cost. Every rule
 * names its selector (tool glob, domain, action type) and at least one of `if` (when it applies) and `unless` (its
 * exceptions); the rule's value is the reason shown in the decision.
 */
import { compileConditions, conditionsToDocument, readConditions, type CompiledConditions, type NormalizedCondition } from './conditions.js';
import type { PolicyIssue } from './errors.js';
import { describe } from './money.js';
import type { PreparedAction } from './policy-evaluator.js';
import { isPlainObject, readEntries, readKnownKeys } from './policy-values.js';
import { admittedTypes, compileSelector, readSelector, selectorToDocument, type Selector } from './selector.js';
import { unknownKeyMessage } from './suggest.js';

/** Whether a part of the policy is enforced or only recorded (`shadow`). */
export type PolicyMode = 'enforce' | 'shadow';

export type RuleEffect = 'deny' | 'require_approval';

/** A rule as written in the policy file. */
export interface RuleDocument {
  deny?: string;
  require_approval?: string;
  tool?: string;
  domain?: string;
  action?: 'tool' | 'http' | 'cost';
  if?: Record<string, Record<string, unknown>>;
  unless?: Record<string, Record<string, unknown>>;
  mode?: PolicyMode;
}

/** A validated rule. `mode` is absent when the rule follows the policy's `mode`. */
export interface NormalizedRule {
  readonly effect: RuleEffect;
  readonly reason: string;
  readonly selector: Selector;
  readonly if: readonly NormalizedCondition[] | null;
  readonly unless: readonly NormalizedCondition[] | null;
  readonly mode: PolicyMode | null;
}

const RULE_KEYS = ['deny', 'require_approval', 'tool', 'domain', 'action', 'if', 'unless', 'mode'] as const;

/** Reads a `mode:` value. */
export function readMode(value: unknown, path: string, issues: PolicyIssue[]): PolicyMode | undefined {
  if (value === 'enforce' || value === 'shadow') return value;
  issues.push({ path, message: `must be enforce or shadow, got ${describe(value)}` });
  return undefined;
}

/** Validates the `rules:` list. */
export function readRules(list: unknown, path: string, issues: PolicyIssue[]): NormalizedRule[] {
  return readEntries(list, path, 'rules', issues, (item, at) => readRule(item, at, issues));
}

function readRule(raw: unknown, path: string, issues: PolicyIssue[]): NormalizedRule | undefined {
  if (!isPlainObject(raw)) {
    issues.push({ path, message: `must be a rule mapping such as { deny: "reason", tool: "send_email", if: { … } }, got ${describe(raw)}` });
    return undefined;
  }
  const before = issues.length;
  for (const key of Object.keys(raw)) {
    if (!(RULE_KEYS as readonly string[]).includes(key)) issues.push({ path: `${path}.${key}`, message: unknownKeyMessage(key, RULE_KEYS) });
  }
  const item = readKnownKeys(raw, RULE_KEYS, path, issues);
  const get = (key: string) => (Object.hasOwn(item, key) ? item[key] : undefined);
  const deny = get('deny');
  const approval = get('require_approval');
  let effect: RuleEffect | undefined;
  let reason: unknown;
  if (deny !== undefined && approval !== undefined) {
    issues.push({ path, message: 'a rule is either deny or require_approval, not both; write two rules' });
  } else if (deny === undefined && approval === undefined) {
    issues.push({ path, message: 'a rule needs deny: "<reason>" or require_approval: "<reason>"' });
  } else {
    effect = deny !== undefined ? 'deny' : 'require_approval';
    reason = deny ?? approval;
    if (typeof reason !== 'string' || reason.trim() === '') {
      issues.push({ path: `${path}.${effect}`, message: `must be the reason shown in the decision (a non-empty string), got ${describe(reason)}` });
    }
  }
  const selector = readSelector(item, path, issues);
  const admitted = selector ? admittedTypes(selector) : admittedTypes({});
  const ifRaw = get('if');
  const unlessRaw = get('unless');
  if (ifRaw === undefined && unlessRaw === undefined) {
    issues.push({
      path,
      message: `a rule needs if: or unless: (or both); an unconditional ${effect === 'require_approval' ? 'approval belongs in approval.require_for' : 'deny belongs in tools.block or network.block'}`,
    });
  }
  const conditionsIf = ifRaw === undefined ? null : readConditions(ifRaw, `${path}.if`, 'if', admitted, issues);
  const conditionsUnless = unlessRaw === undefined ? null : readConditions(unlessRaw, `${path}.unless`, 'unless', admitted, issues);
  const modeRaw = get('mode');
  const mode = modeRaw === undefined ? null : readMode(modeRaw, `${path}.mode`, issues);
  if (issues.length !== before || !effect || !selector || conditionsIf === undefined || conditionsUnless === undefined || mode === undefined) return undefined;
  return Object.freeze({
    effect,
    reason: reason as string,
    selector: Object.freeze(selector),
    if: conditionsIf ? Object.freeze(conditionsIf) : null,
    unless: conditionsUnless ? Object.freeze(conditionsUnless) : null,
    mode,
  });
}

/** A rule back in the file format (cost operands in USD). */
export function ruleToDocument(rule: NormalizedRule): RuleDocument {
  const toUsd = (nanos: number) => nanos / 1e9;
  return {
    [rule.effect]: rule.reason,
    ...selectorToDocument(rule.selector),
    ...(rule.if ? { if: conditionsToDocument(rule.if, toUsd) } : {}),
    ...(rule.unless ? { unless: conditionsToDocument(rule.unless, toUsd) } : {}),
    ...(rule.mode !== null ? { mode: rule.mode } : {}),
  };
}

/** A rule ready to evaluate: `applies(action)` once its selector has matched. */
export interface CompiledRule {
  readonly index: number;
  readonly effect: RuleEffect;
  readonly reason: string;
  readonly enforced: boolean;
  readonly selects: (action: PreparedAction) => boolean;
  readonly applies: (action: PreparedAction) => boolean;
}

/** Compiles a rule into closures; `enforced` resolves its mode against the policy's. */
export function compileRule(rule: NormalizedRule, index: number, policyMode: PolicyMode): CompiledRule {
  const conditionIf: CompiledConditions | null = rule.if ? compileConditions(rule.if, 'if') : null;
  const conditionUnless: CompiledConditions | null = rule.unless ? compileConditions(rule.unless, 'unless') : null;
  const applies =
    conditionIf && conditionUnless
      ? (action: PreparedAction) => conditionIf(action) && !conditionUnless(action)
      : conditionIf
        ? conditionIf
        : (action: PreparedAction) => !(conditionUnless as CompiledConditions)(action);
  return Object.freeze({
    index,
    effect: rule.effect,
    reason: rule.reason,
    enforced: (rule.mode ?? policyMode) === 'enforce',
    selects: compileSelector(rule.selector),
    applies,
  });
}
