import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { BoundedCache } from './bounded-cache.js';
import type { ActionType, ApprovalRuleSpec, RuleRef, ShadowOutcome } from './decision.js';
import { DomainMatcher } from './domain.js';
import { AgentPolicyError, PolicyValidationError, type PolicyIssue } from './errors.js';
import { describe, formatUsd, nanosToUsd } from './money.js';
import { parseYamlPolicy } from './load-yaml.js';
import { isPlainObject, listLengthProblem } from './policy-values.js';
import {
  priceDocument,
  toPolicyDocument,
  validatePolicyDocument,
  type PriceDocument,
  type NormalizedPolicy,
  type PolicyDocument,
} from './policy-document.js';
import type { PolicyEvaluator, PreparedAction, Verdict } from './policy-evaluator.js';
import { compileLimits, limitToDocument, type CompiledLimit, type LimitDocument } from './limits.js';
import { compileRule, ruleToDocument, type CompiledRule as CompiledConditionRule, type PolicyMode, type RuleDocument } from './rules.js';
import { prepareAction, type ActionInput } from './action-input.js';
import type { PolicyWarning } from './policy-warnings.js';
import { unknownKeyMessage } from './suggest.js';
import { foldToolName, globMatch, ToolMatcher, toolNameProblem } from './tool-matcher.js';
import type { SessionReport } from './audit-trail.js';
import { PolicySession } from './session.js';
import type { SessionOptions } from './session-options.js';
import { InMemoryBudgetStore, type BudgetPeriod, type MaybePromise } from './budget-store.js';
import { haltState, InMemoryHaltStore, resumeKey, type HaltOptions, type HaltStore } from './halt.js';
import { InMemoryRateLimitStore } from './rate-limit-store.js';

/** The in-memory store each policy's sessions share for keyed budgets (`budgetKey` without a `store`). */
const keyedStores = new WeakMap<AgentPolicy, { store: InMemoryBudgetStore; limitStore: InMemoryRateLimitStore }>();

/** Options of the programmatic constructor (camelCase mirror of the file format). */
export interface AgentPolicyOptions {
  /** USD per session: `5`, `"5.00"` or `"$5.00"`. */
  budget?: number | string;
  /** Fraction of the budget (0 < x ≤ 1) at which a session's `onSoftLimit` fires. */
  softLimit?: number;
  /** Over which time the budget applies: `session` (default) or a UTC calendar `hour`, `day`, `week` or `month`. */
  period?: BudgetPeriod;
  allowedTools?: readonly string[];
  blockedTools?: readonly string[];
  allowedDomains?: readonly string[];
  blockedDomains?: readonly string[];
  approvalRules?: readonly ApprovalRuleOption[];
  /** Model → prices and limits (camelCase mirror of the file's `pricing:` entries). */
  pricing?: Readonly<Record<string, PriceOption>>;
  /** Conditional rules, in the file format (`deny` / `require_approval`, a selector, `if` / `unless`). */
  rules?: readonly RuleDocument[];
  /** Call limits, in the file format (`max_calls`, `per`, `scope`). */
  limits?: readonly LimitDocument[];
  /** `shadow`: decide and record, enforce nothing. Default `enforce`. */
  mode?: PolicyMode;
}

/** One model's prices and limits in the constructor's form; see {@link PriceDocument}. */
export interface PriceOption {
  input?: number | string;
  output?: number | string;
  cachedInput?: number | string;
  perImage?: number | string | Readonly<Record<string, number | string>>;
  perSecond?: number | string;
  perCharacter?: number | string;
  maxOutputTokens?: number;
  maxInputTokens?: number;
  maxAudioSeconds?: number;
}

// Keys of a price entry: constructor option ↔ file format.
const PRICE_OPTION_KEYS: ReadonlyArray<readonly [keyof PriceOption, string]> = [
  ['input', 'input'],
  ['output', 'output'],
  ['cachedInput', 'cached_input'],
  ['perImage', 'per_image'],
  ['perSecond', 'per_second'],
  ['perCharacter', 'per_character'],
  ['maxOutputTokens', 'max_output_tokens'],
  ['maxInputTokens', 'max_input_tokens'],
  ['maxAudioSeconds', 'max_audio_seconds'],
];

/** An approval rule in the constructor's form. Every key present must match. */
export interface ApprovalRuleOption {
  tool?: string;
  domain?: string;
  action?: ActionType;
  costGt?: number | string;
}

const OPTION_KEYS = [
  'budget',
  'softLimit',
  'period',
  'allowedTools',
  'blockedTools',
  'allowedDomains',
  'blockedDomains',
  'approvalRules',
  'pricing',
  'rules',
  'limits',
  'mode',
] as const;

// Issue paths of the file format, renamed for constructor callers.
const OPTION_PATHS: ReadonlyArray<[string, string]> = [
  ['budget.max_spend', 'budget'],
  ['budget.soft_limit', 'softLimit'],
  ['budget.period', 'period'],
  ['tools.allow', 'allowedTools'],
  ['tools.block', 'blockedTools'],
  ['network.allow', 'allowedDomains'],
  ['network.block', 'blockedDomains'],
  ['approval.require_for', 'approvalRules'],
];

interface CompiledRule {
  readonly index: number;
  readonly spec: ApprovalRuleSpec;
  readonly tool: string | undefined;
  readonly domain: DomainMatcher | undefined;
  readonly action: ActionType | undefined;
  readonly costGtNanos: number | undefined;
}

const ALLOW_DEFAULT: RuleRef = Object.freeze({ section: 'default' });
const MEMO_ENTRIES = 4096;
const MEMO_BYTES = 2 * 1024 * 1024;
const MEMO_KEY_CHARS = 1024;

/** What the name checks found out about a tool name. */
interface ToolInfo {
  readonly problem: string | undefined;
  readonly folded: string;
}

function toolInfoOf(name: unknown): ToolInfo {
  const problem = toolNameProblem(name);
  return { problem, folded: problem === undefined ? foldToolName(name as string) : '' };
}

function weighVerdict(verdict: Verdict): number {
  const rule = verdict.rule as { entry?: unknown };
  return 2 * verdict.reason.length + (typeof rule.entry === 'string' ? 2 * rule.entry.length : 0) + 128;
}

/**
 * An immutable, validated policy. Build it from a YAML file, a plain object in the same format, or constructor
 * options; all three give the same policy. Then open sessions with {@link AgentPolicy.session}.
 *
 * @example
 * ```ts
 * const policy = AgentPolicy.fromYaml('policy.yaml');
 * const session = policy.session();
 * const decision = await session.checkTool('send_email', { cost: 0.01 });
 * ```
 */
export class AgentPolicy implements PolicyEvaluator {
  /** The validated policy in its normalised form. */
  readonly normalized: NormalizedPolicy;
  /** SHA-256 of the normalised policy, recorded in every report. */
  readonly hash: string;
  /**
   * What in this valid policy probably decides other than meant (e.g. a `max_spend` of 0, which the Python
   * agentpolicy read as "no budget"), each with its fix. Paths are in the file format. `agentpolicy validate` prints them.
   */
  readonly warnings: readonly PolicyWarning[];
  private readonly blockedTools: ToolMatcher;
  private readonly allowedTools: ToolMatcher | null;
  private readonly blockedDomains: DomainMatcher;
  private readonly allowedDomains: DomainMatcher | null;
  private readonly rules: readonly CompiledRule[];
  private readonly conditionRules: readonly CompiledConditionRule[];
  private readonly limits: readonly CompiledLimit[];
  /** `mode: shadow`: every part of the policy is recorded, nothing enforced (rules and limits may override). */
  private readonly shadowAll: boolean;
  // Which rules and limits an action's selector matches, per tool name and per host (memoised, bounded; keyed by the
  // name or host itself, so a lookup builds no key string); cost actions all share one.
  private readonly toolApplicable = new BoundedCache<Applicable>(MEMO_ENTRIES, MEMO_BYTES, MEMO_KEY_CHARS, weighApplicable);
  private readonly httpApplicable = new BoundedCache<Applicable>(MEMO_ENTRIES, MEMO_BYTES, MEMO_KEY_CHARS, weighApplicable);
  private readonly costApplicable: { found?: Applicable } = {};
  // Memos of pure functions of the (immutable) policy, bounded in entries and bytes; a name or host too long to
  // keep is decided afresh each time instead.
  private readonly toolInfos = new BoundedCache<ToolInfo>(MEMO_ENTRIES, MEMO_BYTES, MEMO_KEY_CHARS, (info) => 2 * (info.folded.length + (info.problem?.length ?? 0)));
  private readonly freeToolVerdicts = new BoundedCache<Verdict>(MEMO_ENTRIES, MEMO_BYTES, MEMO_KEY_CHARS, weighVerdict);
  private readonly freeHttpVerdicts = new BoundedCache<Verdict>(MEMO_ENTRIES, MEMO_BYTES, MEMO_KEY_CHARS, weighVerdict);
  /** Costs up to this many nanos can match no `cost_gt` rule, so they decide like a free action (budget aside). */
  readonly costRuleFloor: number;
  /**
   * Where the halts of this policy's sessions are kept: in this process's memory (see {@link halt}); a session
   * given its own `halts` store uses that instead.
   */
  readonly halts: HaltStore = new InMemoryHaltStore();

  constructor(options?: AgentPolicyOptions) {
    // `new AgentPolicy()` is the empty policy; `new AgentPolicy(undefined)` is a missing configuration, not a wish
    // for no rules, and is refused like any other value that is not an options object.
    const given = arguments.length > 0;
    const { document, issues } = optionsToDocument(given ? options : {});
    const result = validatePolicyDocument(document);
    const all = [...issues, ...(result.ok ? [] : result.issues.map(renameOptionPath))];
    if (all.length > 0 || !result.ok) throw new PolicyValidationError(all);
    const normalized = result.policy;
    this.normalized = normalized;
    this.warnings = Object.freeze(result.warnings.map((warning) => Object.freeze(warning)));
    this.hash = createHash('sha256').update(canonicalJson(toPolicyDocument(normalized))).digest('hex');
    this.blockedTools = new ToolMatcher(normalized.tools.block, 'block');
    this.allowedTools = normalized.tools.allow ? new ToolMatcher(normalized.tools.allow, 'allow') : null;
    this.blockedDomains = new DomainMatcher(normalized.network.block, 'subtree');
    this.allowedDomains = normalized.network.allow ? new DomainMatcher(normalized.network.allow, 'exact') : null;
    this.rules = normalized.approvalRules.map((rule, index) => {
      const spec: ApprovalRuleSpec = Object.freeze({
        ...(rule.tool !== undefined ? { tool: rule.tool } : {}),
        ...(rule.domain !== undefined ? { domain: rule.domain } : {}),
        ...(rule.action !== undefined ? { action: rule.action } : {}),
        ...(rule.costGtNanos !== undefined ? { cost_gt: nanosToUsd(rule.costGtNanos) } : {}),
      });
      return {
        index,
        spec,
        tool: rule.tool !== undefined ? foldToolName(rule.tool) : undefined,
        domain: rule.domain !== undefined ? new DomainMatcher([rule.domain], 'subtree') : undefined,
        action: rule.action,
        costGtNanos: rule.costGtNanos,
      };
    });
    this.costRuleFloor = Math.min(...normalized.approvalRules.map((rule) => rule.costGtNanos ?? Infinity), Infinity);
    this.conditionRules = normalized.rules.map((rule, index) => compileRule(rule, index, normalized.mode));
    this.limits = compileLimits(normalized.limits, normalized.mode);
    this.shadowAll = normalized.mode === 'shadow';
    Object.freeze(this);
  }

  /** Builds a policy from a plain object in the file format (snake_case keys). */
  static fromDict(document: unknown): AgentPolicy {
    const result = validatePolicyDocument(document);
    if (!result.ok) throw new PolicyValidationError(result.issues);
    return AgentPolicy.fromNormalized(result.policy);
  }

  /** Reads and validates a YAML policy file (synchronously). */
  static fromYaml(path: string): AgentPolicy {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new AgentPolicyError('POLICY_LOAD_FAILED', `cannot read policy file ${path}: ${(error as Error).message}`, { cause: error });
    }
    return AgentPolicy.fromYamlString(text, path);
  }

  /** Parses and validates YAML text. `source` names it in error messages. */
  static fromYamlString(text: string, source?: string): AgentPolicy {
    const parsed = parseYamlPolicy(text);
    if (!parsed.ok) throw new PolicyValidationError(parsed.issues, source ? { source } : undefined);
    const result = validatePolicyDocument(parsed.value);
    if (!result.ok) throw new PolicyValidationError(result.issues, source ? { source } : undefined);
    return AgentPolicy.fromNormalized(result.policy);
  }

  private static fromNormalized(policy: NormalizedPolicy): AgentPolicy {
    const usd = (nanos: number) => formatUsd(nanos);
    return new AgentPolicy({
      ...(policy.budget ? { budget: usd(policy.budget.maxSpendNanos) } : {}),
      ...(policy.budget?.softLimit != null ? { softLimit: policy.budget.softLimit } : {}),
      ...(policy.budget && policy.budget.period !== 'session' ? { period: policy.budget.period } : {}),
      ...(policy.tools.allow ? { allowedTools: policy.tools.allow } : {}),
      blockedTools: policy.tools.block,
      ...(policy.network.allow ? { allowedDomains: policy.network.allow } : {}),
      blockedDomains: policy.network.block,
      approvalRules: policy.approvalRules.map((rule) => ({
        ...(rule.tool !== undefined ? { tool: rule.tool } : {}),
        ...(rule.domain !== undefined ? { domain: rule.domain } : {}),
        ...(rule.action !== undefined ? { action: rule.action } : {}),
        ...(rule.costGtNanos !== undefined ? { costGt: usd(rule.costGtNanos) } : {}),
      })),
      ...(policy.pricing.size > 0 ? { pricing: Object.fromEntries([...policy.pricing].map(([model, price]) => [model, priceOption(priceDocument(price))])) } : {}),
      rules: policy.rules.map(ruleToDocument),
      limits: policy.limits.map(limitToDocument),
      mode: policy.mode,
    });
  }

  /** The policy in the file format, amounts in USD. */
  toDocument(): PolicyDocument {
    return toPolicyDocument(this.normalized);
  }

  /**
   * Opens a session: the unit that holds an audit trail and an approver, and spends from a budget (its own, or the
   * one named by `budgetKey`, shared with every session given that key).
   */
  session(options?: SessionOptions): PolicySession {
    if (options?.budgetKey !== undefined && (options.store === undefined || options.limitStore === undefined)) {
      // Sessions of one process share a keyed budget, and the counts of its `scope: budget` limits, through one
      // in-memory store of each kind for this policy.
      let shared = keyedStores.get(this);
      if (shared === undefined) {
        shared = { store: new InMemoryBudgetStore(), limitStore: new InMemoryRateLimitStore() };
        keyedStores.set(this, shared);
      }
      return new PolicySession(this, { ...options, store: options.store ?? shared.store, limitStore: options.limitStore ?? shared.limitStore });
    }
    return new PolicySession(this, options);
  }

  /**
   * Runs `fn` with a fresh session, ends the session when `fn` settles (fixing its duration), and returns the
   * result with the final report. If `fn` throws, the error is rethrown after the session has ended.
   */
  async run<T>(fn: (session: PolicySession) => Promise<T> | T, options?: SessionOptions): Promise<{ result: T; report: SessionReport }> {
    const session = this.session(options);
    try {
      const result = await fn(session);
      return { result, report: session.end() };
    } finally {
      session.end();
    }
  }

  /**
   * Emergency stop: from the next check on (in the same tick), every action of every session of this policy that
   * uses its halts is denied, the denial naming `reason`, until {@link resume}. With `budgetKey`, only the sessions
   * of that budget key (their `budgetKey`, or their id) stop.
   */
  halt(reason: string, options?: HaltOptions): MaybePromise<void> {
    return this.halts.halt(haltState(reason, options));
  }

  /** Lifts the halt of everything (or of one budget key). Returns whether one was in force. */
  resume(options: { budgetKey?: string } = {}): MaybePromise<boolean> {
    return this.halts.resume(resumeKey(options));
  }

  /** Name checks and the folded form of a tool name, memoised. */
  toolInfo(name: unknown): ToolInfo {
    if (typeof name !== 'string') return toolInfoOf(name);
    return this.toolInfos.get(name) ?? this.toolInfos.set(name, toolInfoOf(name));
  }

  /**
   * The verdict for an action that costs nothing and carries no approval: the budget cannot deny it and no
   * `cost_gt` rule can match, so it depends on the name or host alone and is memoised.
   */
  decideFree(action: PreparedAction): Verdict {
    // Conditional rules read the input (and the cost), and a paid action under a budget its store decides (shared,
    // or per period) is still denied here when it costs more than the whole budget: such actions are decided afresh
    // every time, so the verdict of one call never answers another of the same name.
    const applicable = this.applicable(action);
    if (action.type === 'cost' || action.costNanos !== 0 || applicable.rules.length > 0) return this.decideApplicable(action, applicable, 0, 0, false);
    // An address's verdict can change while the policy stands (it becomes one of this machine's: see isOwnAddress).
    if (action.type === 'http' && action.isIp) return this.decide(action, 0, 0, false);
    const memo = action.type === 'tool' ? this.freeToolVerdicts : this.freeHttpVerdicts;
    const key = action.type === 'tool' ? action.name : action.host;
    return memo.get(key) ?? memo.set(key, Object.freeze(this.decide(action, 0, 0, false)));
  }

  /**
   * Why every call of this tool is denied whatever its input, cost or approval (an invalid name, a `tools.block`
   * entry, no `tools.allow` entry), or `undefined` when some call of it could be allowed. For listings: a tool this
   * returns a reason for can be left out of what an agent is offered. Under `mode: shadow` the lists deny nothing.
   */
  neverAllowsTool(name: unknown): string | undefined {
    const problem = this.toolInfo(name).problem;
    if (problem !== undefined) return problem;
    if (this.shadowAll) return undefined;
    return this.toolListVerdict(name as string)?.reason;
  }

  // The part of a tool's verdict that depends on its name alone.
  private toolListVerdict(name: string): Verdict | undefined {
    const blocked = this.blockedTools.match(name);
    if (blocked !== undefined) {
      return { decision: 'deny', reason: `tool ${JSON.stringify(name)} is blocked by tools.block entry ${JSON.stringify(blocked)}`, rule: { section: 'tools', list: 'block', entry: blocked }, approvedRule: false };
    }
    if (this.allowedTools && this.allowedTools.match(name) === undefined) {
      return { decision: 'deny', reason: `tool ${JSON.stringify(name)} is not in tools.allow`, rule: { section: 'tools', list: 'allow', entry: null }, approvedRule: false };
    }
    return undefined;
  }

  /** Which rules and limits an action's selector matches, memoised by tool name, host or action type. */
  private applicable(action: PreparedAction): Applicable {
    if (this.conditionRules.length === 0 && this.limits.length === 0) return NOTHING_APPLIES;
    if (action.type === 'cost') return (this.costApplicable.found ??= this.findApplicable(action));
    if (action.type === 'http' && action.isIp) return this.findApplicable(action);
    const memo = action.type === 'tool' ? this.toolApplicable : this.httpApplicable;
    const key = action.type === 'tool' ? action.name : action.host;
    return memo.get(key) ?? memo.set(key, this.findApplicable(action));
  }

  private findApplicable(action: PreparedAction): Applicable {
    const allowReason = action.type === 'cost' ? undefined : `${describeAction(action)} allowed`;
    const listed = this.listVerdict(action);
    const rules = this.conditionRules.filter((rule) => rule.selects(action));
    return Object.freeze({
      rules: Object.freeze(rules),
      denyRules: Object.freeze(rules.filter((rule) => rule.effect === 'deny')),
      approvalRules: Object.freeze(rules.filter((rule) => rule.effect === 'require_approval')),
      listed: listed === undefined ? undefined : Object.freeze(listed),
      limits: Object.freeze(this.limits.filter((limit) => limit.selects(action))),
      allowReason,
      // The plain allow after the limits step, shared by every decision that ends in it (frozen).
      allowAfterLimits:
        allowReason === undefined ? undefined : Object.freeze({ decision: 'allow' as const, reason: allowReason, rule: ALLOW_DEFAULT, approvedRule: false, afterLimits: true }),
    });
  }

  /** The limits whose selector matches the action, in policy order. */
  limitsFor(action: PreparedAction): readonly CompiledLimit[] {
    return this.applicable(action).limits;
  }

  /**
   * Evaluates a prepared action. Pure: reads the budget view it is given and changes nothing. Precedence: block →
   * allow-list miss → rule deny → (limits, counted by the session) → budget → approval → allow. Shadowed parts are
   * evaluated in the same order; the first of them to decide, when it comes before the enforced outcome, is the
   * verdict's `shadow`.
   */
  decide(action: PreparedAction, spentNanos: number, reservedNanos: number, approved: boolean): Verdict {
    return this.decideApplicable(action, this.applicable(action), spentNanos, reservedNanos, approved);
  }

  private decideApplicable(action: PreparedAction, applicable: Applicable, spentNanos: number, reservedNanos: number, approved: boolean): Verdict {
    const shadowAll = this.shadowAll;
    let shadow: Verdict | undefined;
    let shadowAfterLimits = false;
    const listed = applicable === NOTHING_APPLIES ? this.listVerdict(action) : applicable.listed;
    if (listed !== undefined) {
      if (!shadowAll) return listed;
      shadow = listed;
    }
    // Indexed loops on this path: a for-of here went through the generic iterator and allocated on every check.
    const denyRules = applicable.denyRules;
    for (let i = 0; i < denyRules.length; i++) {
      const rule = denyRules[i] as CompiledConditionRule;
      if (!rule.applies(action)) continue;
      const hit = ruleVerdict(rule, action, false);
      if (rule.enforced) return withShadow(hit, shadow, false, false);
      if (shadow === undefined) shadow = hit;
    }
    if (shadow === undefined) shadowAfterLimits = true;
    const budget = this.normalized.budget;
    if (budget && action.costNanos > 0 && spentNanos + reservedNanos + action.costNanos > budget.maxSpendNanos) {
      const left = Math.max(0, budget.maxSpendNanos - spentNanos - reservedNanos);
      const hit: Verdict = {
        decision: 'deny',
        reason: `cost ${formatUsd(action.costNanos)} exceeds the remaining budget ${formatUsd(left)} (max_spend ${formatUsd(budget.maxSpendNanos)}, spent ${formatUsd(spentNanos)}${reservedNanos > 0 ? `, reserved ${formatUsd(reservedNanos)}` : ''})`,
        rule: { section: 'budget', maxSpend: nanosToUsd(budget.maxSpendNanos), spent: nanosToUsd(spentNanos), reserved: nanosToUsd(reservedNanos), requested: nanosToUsd(action.costNanos) },
        approvedRule: false,
      };
      if (!shadowAll) return withShadow(hit, shadow, true, shadowAfterLimits);
      if (shadow === undefined) shadow = hit;
    }
    const approvalLists = this.rules;
    for (let i = 0; i < approvalLists.length; i++) {
      const rule = approvalLists[i] as CompiledRule;
      if (!this.ruleMatches(rule, action)) continue;
      const ref: RuleRef = { section: 'approval', index: rule.index, rule: rule.spec };
      const what = describeAction(action);
      if (approved) {
        return withShadow({ decision: 'allow', reason: `${what} approved (approval.require_for[${rule.index}])`, rule: ref, approvedRule: true }, shadow, true, shadowAfterLimits);
      }
      const hit: Verdict = { decision: 'require_approval', reason: `${what} requires approval (approval.require_for[${rule.index}] ${JSON.stringify(rule.spec)})`, rule: ref, approvedRule: false };
      if (!shadowAll) return withShadow(hit, shadow, true, shadowAfterLimits);
      if (shadow === undefined) shadow = hit;
      break;
    }
    const approvalRules = applicable.approvalRules;
    for (let i = 0; i < approvalRules.length; i++) {
      const rule = approvalRules[i] as CompiledConditionRule;
      if (!rule.applies(action)) continue;
      if (approved) return withShadow(ruleVerdict(rule, action, true), shadow, true, shadowAfterLimits);
      const hit = ruleVerdict(rule, action, false);
      if (rule.enforced) return withShadow(hit, shadow, true, shadowAfterLimits);
      if (shadow === undefined) shadow = hit;
    }
    if (shadow === undefined && applicable.allowAfterLimits !== undefined) return applicable.allowAfterLimits;
    return withShadow({ decision: 'allow', reason: applicable.allowReason ?? `${describeAction(action)} allowed`, rule: ALLOW_DEFAULT, approvedRule: false }, shadow, true, shadowAfterLimits);
  }

  /** The block / allow-list verdict for a tool or host, or `undefined` when the lists let it through. */
  private listVerdict(action: PreparedAction): Verdict | undefined {
    if (action.type === 'tool') {
      const listed = this.toolListVerdict(action.name);
      if (listed !== undefined) return listed;
    } else if (action.type === 'http') {
      const blocked = this.blockEntry(action.host, action.isIp);
      if (blocked !== undefined) {
        return { decision: 'deny', reason: `domain ${action.host} is blocked by network.block entry ${JSON.stringify(blocked)}`, rule: { section: 'network', list: 'block', entry: blocked }, approvedRule: false };
      }
      if (this.allowedDomains && this.allowedDomains.match(action.host, action.isIp) === undefined) {
        return { decision: 'deny', reason: `domain ${action.host} is not in network.allow`, rule: { section: 'network', list: 'allow', entry: null }, approvedRule: false };
      }
    }
    return undefined;
  }

  // The network.block entry that covers a host. A host blocked only as another form of this machine is still allowed
  // by an allow entry naming it exactly (an address, or a range within 127.0.0.0/8 or 0.0.0.0/8; never 0.0.0.0/0).
  private blockEntry(host: string, isIp: boolean): string | undefined {
    const blocked = this.blockedDomains.match(host, isIp);
    if (blocked !== undefined && this.allowedDomains !== null && this.allowedDomains.matchNamed(host, isIp) !== undefined) return this.blockedDomains.matchListed(host, isIp);
    return blocked;
  }

  /** Whether `network.block` covers any address: an IP address or range, or an entry naming this machine. */
  get blocksAddresses(): boolean {
    return this.blockedDomains.coversAddresses;
  }

  /**
   * The verdict for connecting to `address` (an IP in the form a URL host takes: `169.254.169.254`, `[::1]`), which
   * `hostname` resolved to: a deny when `network.block` covers the address, as it would a request to that address;
   * `undefined` when nothing blocks it. The allow-list is not consulted: it decides names, and the name was decided
   * with the request. Under `mode: shadow` the deny is the shadow of an allow.
   */
  decideAddress(hostname: string, address: string): Verdict | undefined {
    const blocked = this.blockEntry(address, true);
    if (blocked === undefined) return undefined;
    const shown = hostname.length > 253 ? `${hostname.slice(0, 253)}…` : hostname;
    const hit: Verdict = {
      decision: 'deny',
      reason: `${JSON.stringify(shown)} resolves to ${address}, which network.block entry ${JSON.stringify(blocked)} blocks`,
      rule: { section: 'network', list: 'block', entry: blocked, address },
      approvedRule: false,
    };
    if (!this.shadowAll) return hit;
    return { decision: 'allow', reason: `${JSON.stringify(shown)} resolves to ${address}, allowed`, rule: ALLOW_DEFAULT, approvedRule: false, shadow: { decision: 'deny', reason: hit.reason, rule: hit.rule } };
  }

  private ruleMatches(rule: CompiledRule, action: PreparedAction): boolean {
    if (rule.action !== undefined && rule.action !== action.type) return false;
    if (rule.tool !== undefined && (action.type !== 'tool' || !globMatch(rule.tool, action.folded))) return false;
    if (rule.domain !== undefined && (action.type !== 'http' || rule.domain.match(action.host, action.isIp) === undefined)) return false;
    if (rule.costGtNanos !== undefined && !(action.costNanos > rule.costGtNanos)) return false;
    return true;
  }

  /**
   * Which rules and limits an action meets, and what a fresh session would decide for it (nothing is recorded or
   * counted). For each rule: whether its selector matches the action and, if so, whether its conditions apply.
   *
   * @example
   * ```ts
   * policy.explainAction({ type: 'tool', name: 'refund', input: { amount: 250 } });
   * ```
   */
  explainAction(action: ActionInput): Record<string, unknown> {
    const prepared = prepareAction(this, action);
    const target = prepared.prepared;
    const decision = this.session({ id: 'explain' }).evaluate(action);
    return {
      action: prepared.action,
      ...(prepared.invalid ? { invalid: prepared.invalid.reason } : {}),
      decision: { decision: decision.decision, reason: decision.reason, rule: decision.rule, ...(decision.shadow ? { shadow: decision.shadow } : {}) },
      rules: this.conditionRules.map((rule) => {
        const selects = target !== null && rule.selects(target);
        return {
          index: rule.index,
          [rule.effect]: rule.reason,
          mode: rule.enforced ? 'enforce' : 'shadow',
          selects,
          applies: selects && target !== null ? rule.applies(target) : false,
        };
      }),
      limits: this.limits.map((limit) => ({
        index: limit.index,
        max_calls: limit.maxCalls,
        per: limit.per,
        scope: limit.scope,
        mode: limit.enforced ? 'enforce' : 'shadow',
        counts: target !== null && limit.selects(target),
      })),
    };
  }

  /** A machine-readable summary of what this policy enforces (the CLI's `explain`). */
  explain(): Record<string, unknown> {
    const policy = this.normalized;
    return {
      hash: this.hash,
      budget: policy.budget
        ? {
            max_spend: nanosToUsd(policy.budget.maxSpendNanos),
            max_spend_display: formatUsd(policy.budget.maxSpendNanos),
            soft_limit: policy.budget.softLimit,
            period: policy.budget.period,
            currency: 'USD',
          }
        : null,
      tools: {
        allow: policy.tools.allow ? [...policy.tools.allow] : null,
        block: [...policy.tools.block],
        allow_mode: policy.tools.allow ? 'allow-list: only matching tools may run (exact names, and * globs where * spans letters, digits, marks, _ - . only)' : 'no allow-list: every tool not blocked may run',
        block_matching: 'case-insensitive, NFKC, combining marks stripped, look-alikes folded, * globs spanning any characters',
      },
      network: {
        allow: policy.network.allow ? [...policy.network.allow] : null,
        block: [...policy.network.block],
        allow_mode: policy.network.allow ? 'allow-list: only these exact hosts (and *.domain subdomains)' : 'no allow-list: every host not blocked may be reached',
        block_matching: 'the domain and all its subdomains; an IPv4 address also in its IPv6 forms (mapped, compatible, NAT64, 6to4)',
        schemes: ['http', 'https'],
      },
      approval: {
        require_for: policy.approvalRules.map((rule, index) => ({ index, ...this.rules[index]?.spec, matching: 'every key must match; the first matching rule is reported' })),
      },
      pricing: Object.fromEntries(
        [...policy.pricing].map(([model, price]) => [
          model,
          {
            ...(price.tokens
              ? { input_per_million: nanosToUsd(price.tokens.input), output_per_million: nanosToUsd(price.tokens.output), cached_input_per_million: nanosToUsd(price.tokens.cachedInput) }
              : {}),
            ...(() => {
              const { input: _input, output: _output, cached_input: _cached, ...rest } = priceDocument(price);
              return rest;
            })(),
          },
        ]),
      ),
      rules: policy.rules.map((rule, index) => ({ index, ...ruleToDocument(rule), mode: rule.mode ?? policy.mode })),
      limits: policy.limits.map((limit, index) => ({ index, ...limitToDocument(limit), mode: limit.mode ?? policy.mode })),
      mode: policy.mode,
      precedence: ['block', 'allow-list miss', 'rule deny', 'limits', 'budget', 'approval (approval.require_for, then rule require_approval)', 'allow'],
      warnings: this.warnings.map((warning) => ({ ...warning })),
      checks: ['checkTool', 'checkHttp', 'checkCost', 'reserve', 'reserveModelCall', 'recordUsage', 'guardTool', 'fetch', 'evaluate', 'enforce', 'wouldExceed', 'report'],
    };
  }
}

interface Applicable {
  /** The conditional rules whose selector matches, in policy order; the deny and require_approval ones apart. */
  readonly rules: readonly CompiledConditionRule[];
  readonly denyRules: readonly CompiledConditionRule[];
  readonly approvalRules: readonly CompiledConditionRule[];
  /** The block / allow-list verdict (it depends on the name or host alone), frozen. */
  readonly listed: Verdict | undefined;
  readonly limits: readonly CompiledLimit[];
  /** The reason of an allow for this tool or host (built once). */
  readonly allowReason: string | undefined;
  /** The allow verdict with that reason, as `decide` returns it when nothing shadowed decided first. */
  readonly allowAfterLimits: Verdict | undefined;
}
const NOTHING_APPLIES: Applicable = Object.freeze({
  rules: Object.freeze([]),
  denyRules: Object.freeze([]),
  approvalRules: Object.freeze([]),
  listed: undefined,
  limits: Object.freeze([]),
  allowReason: undefined,
  allowAfterLimits: undefined,
});

function weighApplicable(found: Applicable): number {
  return 128 + 4 * (found.allowReason?.length ?? 0) + 2 * (found.listed?.reason.length ?? 0) + 16 * (found.rules.length + found.limits.length);
}

function ruleVerdict(rule: CompiledConditionRule, action: PreparedAction, approved: boolean): Verdict {
  const ref: RuleRef = { section: 'rules', index: rule.index, reason: rule.reason };
  const what = describeAction(action);
  if (approved) return { decision: 'allow', reason: `${what} approved (rules[${rule.index}]: ${rule.reason})`, rule: ref, approvedRule: true };
  if (rule.effect === 'deny') return { decision: 'deny', reason: `${what} denied by rules[${rule.index}]: ${rule.reason}`, rule: ref, approvedRule: false };
  return { decision: 'require_approval', reason: `${what} requires approval (rules[${rule.index}]: ${rule.reason})`, rule: ref, approvedRule: false };
}

/**
 * Adds to a freshly built verdict where it stands against the limits step and what the shadowed parts decided first,
 * when they decided something else.
 */
function withShadow(verdict: Verdict, shadow: Verdict | undefined, afterLimits: boolean, shadowAfterLimits: boolean): Verdict {
  if (afterLimits) verdict.afterLimits = true;
  if (shadow !== undefined) {
    const outcome: ShadowOutcome = { decision: shadow.decision, reason: shadow.reason, rule: shadow.rule };
    verdict.shadow = outcome;
    verdict.shadowAfterLimits = shadowAfterLimits;
  }
  return verdict;
}

function describeAction(action: PreparedAction): string {
  if (action.type === 'tool') return `tool ${JSON.stringify(action.name)}`;
  if (action.type === 'http') return `request to ${action.host}`;
  return `cost ${formatUsd(action.costNanos)} (${action.source})`;
}

function renameOptionPath(issue: PolicyIssue): PolicyIssue {
  for (const [from, to] of OPTION_PATHS) {
    if (issue.path === from || issue.path.startsWith(`${from}[`) || issue.path.startsWith(`${from}.`)) {
      return { path: to + issue.path.slice(from.length).replace(/\.cost_gt$/, '.costGt'), message: issue.message };
    }
  }
  if (issue.path.startsWith('pricing.')) {
    for (const [option, file] of PRICE_OPTION_KEYS) {
      if (option !== file && issue.path.includes(`.${file}`)) return { path: issue.path.replace(`.${file}`, `.${option}`), message: issue.message };
    }
  }
  return issue;
}

/**
 * The constructor's options in the file format. A key that is present is carried over even when its value is
 * `undefined` or `null`, so the validator reports it (a key without a value never loads as "not set"); values that
 * are not plain objects or arrays are passed on as they are, for the validator to name.
 */
function optionsToDocument(options: unknown): { document: unknown; issues: PolicyIssue[] } {
  const issues: PolicyIssue[] = [];
  if (options === undefined) {
    return { document: undefined, issues: [{ path: '', message: 'options is undefined; pass an options object, or call new AgentPolicy() without an argument for a policy with no rules' }] };
  }
  if (!isPlainObject(options)) {
    return { document: undefined, issues: [{ path: '', message: `options must be a plain object ({ budget, allowedTools, … }), got ${describe(options)}` }] };
  }
  for (const key of Object.keys(options)) {
    if (!(OPTION_KEYS as readonly string[]).includes(key)) issues.push({ path: key, message: unknownKeyMessage(key, OPTION_KEYS) });
  }
  const has = (key: (typeof OPTION_KEYS)[number]) => Object.hasOwn(options, key);
  // A copy, so changing the caller's array later changes nothing; a list too long to copy goes on as it is, for the
  // validator to refuse by its length.
  const copyable = (value: unknown): value is unknown[] => Array.isArray(value) && listLengthProblem(value) === undefined;
  const copyList = (value: unknown) => (copyable(value) ? Array.from(value) : value);
  const document: Record<string, unknown> = {};
  if (has('budget') || has('softLimit') || has('period')) {
    document.budget = {
      ...(has('budget') ? { max_spend: options.budget } : {}),
      ...(has('softLimit') ? { soft_limit: options.softLimit } : {}),
      ...(has('period') ? { period: options.period } : {}),
    };
  }
  if (has('allowedTools') || has('blockedTools')) {
    document.tools = {
      ...(has('allowedTools') ? { allow: copyList(options.allowedTools) } : {}),
      ...(has('blockedTools') ? { block: copyList(options.blockedTools) } : {}),
    };
  }
  if (has('allowedDomains') || has('blockedDomains')) {
    document.network = {
      ...(has('allowedDomains') ? { allow: copyList(options.allowedDomains) } : {}),
      ...(has('blockedDomains') ? { block: copyList(options.blockedDomains) } : {}),
    };
  }
  if (has('approvalRules')) {
    const rules = options.approvalRules;
    document.approval = {
      require_for: copyable(rules)
        ? Array.from(rules, (rule, index) => {
            if (!isPlainObject(rule)) return rule;
            const out: Record<string, unknown> = {};
            for (const key of Object.keys(rule)) {
              if (key === 'costGt') out.cost_gt = rule[key];
              else if (key === 'tool' || key === 'domain' || key === 'action') out[key] = rule[key];
              else issues.push({ path: `approvalRules[${index}].${key}`, message: unknownKeyMessage(key, ['tool', 'domain', 'action', 'costGt']) });
            }
            return out;
          })
        : rules,
    };
  }
  if (has('pricing')) {
    const pricing = options.pricing;
    document.pricing = isPlainObject(pricing)
      ? Object.fromEntries(
          Object.keys(pricing).map((model) => {
            const price = pricing[model];
            if (!isPlainObject(price)) return [model, price];
            const out: Record<string, unknown> = {};
            for (const key of Object.keys(price)) {
              const file = PRICE_OPTION_KEYS.find(([option]) => option === key)?.[1];
              if (file !== undefined) out[file] = price[key];
              else issues.push({ path: `pricing.${model}.${key}`, message: unknownKeyMessage(key, PRICE_OPTION_KEYS.map(([option]) => option)) });
            }
            return [model, out];
          }),
        )
      : pricing;
  }
  if (has('rules')) document.rules = copyList(options.rules);
  if (has('limits')) document.limits = copyList(options.limits);
  if (has('mode')) document.mode = options.mode;
  return { document, issues };
}

/** JSON with sorted keys, so equal policies hash equally. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function priceOption(document: PriceDocument): PriceOption {
  const out: Record<string, unknown> = {};
  for (const [option, file] of PRICE_OPTION_KEYS) {
    const value = (document as Record<string, unknown>)[file];
    if (value !== undefined) out[option] = value;
  }
  return out as PriceOption;
}
