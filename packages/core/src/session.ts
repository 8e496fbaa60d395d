import { randomUUID } from 'node:crypto';
import { InMemoryBudgetStore, type BudgetStore } from './budget-store.js';
import type {
  Action,
  ActionType,
  CostAction,
  HttpAction,
  ToolAction,
  ApprovalRecord,
  Decision,
  DecisionValue,
  Metadata,
  RuleRef,
  Settlement,
} from './decision.js';
import { parseTarget } from './domain.js';
import { AgentPolicyError, decisionError } from './errors.js';
import { formatUsd, nanosToUsd, readCost } from './money.js';
import type { AgentPolicy, PreparedAction, Verdict } from './policy.js';
import { estimatePromptTokens, priceUsage, splitModel, type PriceResult, type TokenUsage } from './pricing.js';
import { createPolicyFetch, type PolicyFetchOptions } from './session-fetch.js';
import { sessionSinks, type DecisionSink } from './decision-sink.js';
import { withReportInspect } from './format-report.js';

/** What an approver is asked. */
export interface ApprovalRequest {
  readonly sessionId: string;
  /** The `require_approval` decision that led here. */
  readonly decision: Decision;
  readonly action: Action;
  readonly reason: string;
  readonly rule: RuleRef;
  /** Aborted when the approval times out. */
  readonly signal: AbortSignal;
}

/** An approver's answer. Only `true` or `{ approved: true }` approves; anything else is a denial. */
export type ApprovalAnswer = boolean | { approved: boolean; by?: string; reason?: string };

export type Approver = (request: ApprovalRequest) => Promise<ApprovalAnswer> | ApprovalAnswer;

/** Options of {@link AgentPolicy.session}. */
export interface SessionOptions {
  /** Session id (a random UUID by default); also the budget store key. */
  id?: string;
  /** Where spend is kept; an in-memory store by default. */
  store?: BudgetStore;
  /** Resolves `require_approval` in place. */
  approver?: Approver;
  /** How long the approver may take before its silence counts as a denial. Default 300,000 ms. */
  approvalTimeoutMs?: number;
  /** Called for every recorded decision, as it happens. Errors it throws are reported as warnings, never rethrown. */
  onDecision?: (decision: Decision) => void;
  /** Where the record also goes, as it is written (an audit log, say). Errors they throw are reported as warnings. */
  sinks?: readonly DecisionSink[];
  /**
   * Record decisions with OpenTelemetry (spans, span events and metrics) when `@opentelemetry/api` is installed and
   * a provider is registered. Default true; without a provider it costs nothing measurable.
   */
  telemetry?: boolean;
  /** Called once, when spend first reaches the policy's `budget.soft_limit`. */
  onSoftLimit?: (event: SoftLimitEvent) => void;
  /** How many decisions the report keeps (the oldest are dropped first; summaries stay exact). Default 10,000. */
  maxDecisions?: number;
  /** Output tokens assumed for a model call that sets no maximum. Default 4,096. */
  defaultMaxOutputTokens?: number;
}

export interface SoftLimitEvent {
  readonly sessionId: string;
  readonly spent: number;
  readonly maxSpend: number;
  readonly softLimit: number;
}

interface CommonCheckOptions {
  metadata?: Metadata;
  /** A human already approved this action: skips only the approval step. */
  approved?: boolean;
  /**
   * A human's answer obtained outside the session (a UI, a resumed graph): `true` / `{ approved: true, by, reason }`
   * approves like `approved: true` and is recorded with who and why; `false` / `{ approved: false, … }` or anything
   * else denies, recorded as a rejection. A blocked or over-budget action stays denied either way.
   */
  approval?: ApprovalAnswer;
  /**
   * Makes the check idempotent: a repeat of the same action (tool name, URL or cost source) with the same key
   * returns the first allow or deny without recording or charging again (a `require_approval` is decided again once
   * `approved` is true or a human's `approval` is given). Keys are kept for the last few thousand keyed checks.
   */
  idempotencyKey?: string;
}

export interface CheckToolOptions extends CommonCheckOptions {
  /** USD this call costs. */
  cost?: number;
}

export interface CheckHttpOptions extends CommonCheckOptions {
  cost?: number;
  method?: string;
}

export interface CheckCostOptions extends CommonCheckOptions {
  /** What is spending (e.g. `model:openai/gpt-4o`). */
  source: string;
}

/** An action to evaluate or enforce. */
export type ActionInput =
  | ({ type: 'tool'; name: string } & CheckToolOptions)
  | ({ type: 'http'; url: string | URL } & CheckHttpOptions)
  | ({ type: 'cost'; cost: number } & CheckCostOptions);

/** Options of {@link PolicySession.guardTool}. */
export interface GuardToolOptions {
  /** Tool name; defaults to the function's name. */
  name?: string;
  /** USD per call. */
  cost?: number;
  metadata?: Metadata;
}

/** Options of {@link PolicySession.reserveModelCall}. */
export interface ModelCallEstimate {
  model: string;
  provider?: string;
  /** Prompt input, to estimate input tokens from (any JSON-able value). */
  prompt?: unknown;
  /** Known input token count (wins over `prompt`). */
  inputTokens?: number;
  /** The call's output limit; the session's `defaultMaxOutputTokens` when absent. */
  maxOutputTokens?: number;
  source?: string;
  metadata?: Metadata;
  approved?: boolean;
  idempotencyKey?: string;
}

/** Actual usage passed to {@link Reservation.commit}; `model` defaults to the reserved model. */
export type UsageUpdate = Omit<TokenUsage, 'model'> & { model?: string };

/**
 * Money set aside before work whose real cost is known only afterwards. Settle it once: `commit` charges the real
 * cost (or the estimate, when none is given), `release` charges nothing. Both are idempotent.
 */
export interface Reservation {
  readonly decision: Decision;
  /** True when the decision is `allow` and money is held. */
  readonly allowed: boolean;
  /** USD reserved. */
  readonly estimate: number;
  readonly settled: boolean;
  commit(actual?: number | UsageUpdate): Promise<Decision>;
  release(): Promise<Decision>;
  /**
   * Settles work that failed, by the one rule every adapter shares: an agentpolicy error or a 4xx answer means
   * nothing was billed (release); anything else (a 5xx, a cut connection, an abort, an unknown error) may have been
   * billed, so the estimate is charged. `status` wins; otherwise it is read from the error's `status` or
   * `statusCode`.
   */
  fail(failure?: { status?: number; error?: unknown }): Promise<Decision>;
}

type Counts = Record<DecisionValue, number>;
type ByType<T> = Record<ActionType, T>;

/** The session's audit summary. */
export interface SessionReport {
  readonly sessionId: string;
  readonly policyHash: string;
  /** USD budget, or null without one. */
  readonly budget: number | null;
  readonly spent: number;
  readonly reserved: number;
  /** null without a budget. */
  readonly remaining: number | null;
  readonly decisionSummary: Counts & { readonly total: number; readonly byActionType: ByType<Counts> };
  readonly costSummary: {
    /** USD allowed (and, for reservations, finally charged) by action type. */
    readonly allowed: ByType<number> & { readonly total: number };
    /** USD requested by every decision, whatever the outcome. */
    readonly attempted: ByType<number> & { readonly total: number };
  };
  readonly policyHits: {
    readonly deniedTools: readonly string[];
    readonly deniedDomains: readonly string[];
    readonly approvalRequired: readonly string[];
  };
  readonly startedAt: string;
  readonly endedAt: string | null;
  readonly durationSeconds: number;
  /** The kept decisions, oldest first. */
  readonly decisions: readonly Decision[];
  /** Decisions recorded but no longer kept (see `maxDecisions`). */
  readonly decisionsDropped: number;
}

type MutableDecision = {
  -readonly [K in keyof Decision]: Decision[K];
} & { settlement?: Settlement };

type Mode = 'charge' | 'reserve';

interface Prepared {
  readonly action: Action;
  readonly prepared: PreparedAction | null;
  readonly invalid: { reason: string; rule: RuleRef } | null;
}

const HIT_LIMIT = 1000;

// Idempotency keys are scoped by the action they were given with (tool name, URL, cost source): the same key on
// another action is another check.
type KeyIndex = Record<ActionType, Map<string, Map<string, Decision>>>;

const newKeyIndex = (): KeyIndex => ({ tool: new Map(), http: new Map(), cost: new Map() });

function scopeOf(index: KeyIndex, action: ActionInput): Map<string, Map<string, Decision>> {
  return action?.type === 'tool' ? index.tool : action?.type === 'http' ? index.http : index.cost;
}

function scopeName(action: ActionInput): string {
  if (action?.type === 'tool') return typeof action.name === 'string' ? action.name : String(action.name);
  if (action?.type === 'http') return typeof action.url === 'string' ? action.url : String(action.url);
  return String((action as { source?: unknown })?.source);
}
const KEY_GENERATION = 4096;
let lastMs = 0;
let lastIso = '';
function now(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

const emptyCounts = (): Counts => ({ allow: 0, deny: 0, require_approval: 0 });
const ZERO_COST = Object.freeze({ ok: true as const, nanos: 0 });
const CALLER_APPROVAL: ApprovalRecord = Object.freeze({ via: 'caller' });

// Copies the caller's options once (each property read once) into one object literal: no spread and no property
// added afterwards on the hot path. Absent options stay `undefined`, which every reader treats as absent.
function withOptions(type: 'tool' | 'http', target: string | URL, options: CommonCheckOptions & { cost?: number; method?: string }): ActionInput {
  const { cost, metadata, approved, approval, idempotencyKey, method } = options;
  return (
    type === 'tool'
      ? { type, name: target, cost, metadata, approved, approval, idempotencyKey }
      : { type, url: target, cost, metadata, approved, approval, idempotencyKey, method }
  ) as ActionInput;
}

/**
 * One agent run under a policy: it holds the budget ledger, the audit trail and the approver. Every check is
 * recorded; every check that costs money reserves it before its first `await`, so concurrent checks never overspend.
 */
export class PolicySession {
  readonly id: string;
  readonly policy: AgentPolicy;
  /**
   * A drop-in `fetch` that checks the network policy on every request and every redirect hop. A denied request
   * throws {@link PolicyDeniedError} (or {@link ApprovalRequiredError}) and is never sent.
   */
  readonly fetch: typeof globalThis.fetch;

  private readonly store: BudgetStore;
  private readonly limit: number | null;
  private readonly options: SessionOptions;
  private readonly maxDecisions: number;
  private readonly ring: Decision[] = [];
  private ringStart = 0;
  private dropped = 0;
  private seq = 0;
  private readonly counts = emptyCounts();
  private readonly byType: ByType<Counts> = { tool: emptyCounts(), http: emptyCounts(), cost: emptyCounts() };
  private readonly allowedNanos: ByType<number> = { tool: 0, http: 0, cost: 0 };
  private readonly attemptedNanos: ByType<number> = { tool: 0, http: 0, cost: 0 };
  private readonly hits = { deniedTools: new Set<string>(), deniedDomains: new Set<string>(), approvalRequired: new Set<string>() };
  // Idempotency keys in two generations: a lookup reads both, and when the newer one fills up it becomes the older
  // one. Bounded (at most 2 × KEY_GENERATION keys) and O(1), unlike evicting a Map's oldest entry one at a time.
  private keyed: KeyIndex = newKeyIndex();
  private keyedOld: KeyIndex = newKeyIndex();
  private keyedCount = 0;
  private readonly pending = new Set<Reservation>();
  private readonly sinks: readonly DecisionSink[];
  private readonly reservations = new WeakMap<Decision, Reservation>();
  private softLimitFired = false;
  private readonly startedMs = Date.now();
  private readonly startedAt = new Date(this.startedMs).toISOString();
  private endedMs: number | null = null;

  constructor(policy: AgentPolicy, options: SessionOptions = {}) {
    if (options.id !== undefined && (typeof options.id !== 'string' || options.id === '')) {
      throw new AgentPolicyError('INVALID_ARGUMENT', 'session id must be a non-empty string');
    }
    if (options.maxDecisions !== undefined && !(options.maxDecisions >= 0)) {
      throw new AgentPolicyError('INVALID_ARGUMENT', 'maxDecisions must be a number ≥ 0 (Infinity keeps every decision)');
    }
    this.policy = policy;
    this.options = options;
    this.id = options.id ?? randomUUID();
    this.store = options.store ?? new InMemoryBudgetStore();
    this.limit = policy.normalized.budget?.maxSpendNanos ?? null;
    this.maxDecisions = options.maxDecisions ?? 10_000;
    this.sinks = sessionSinks(options.sinks, options.telemetry !== false);
    this.fetch = createPolicyFetch(this);
  }

  // ---- checks -------------------------------------------------------------------------------------------------

  /** Decides a tool call and records it; an allowed cost is charged at once. */
  checkTool(name: string, options?: CheckToolOptions): Promise<Decision> {
    return this.check(options === undefined ? { type: 'tool', name } : withOptions('tool', name, options), 'charge');
  }

  /** Decides an outbound request by its normalised host and records it; an allowed cost is charged at once. */
  checkHttp(url: string | URL, options?: CheckHttpOptions): Promise<Decision> {
    return this.check(options === undefined ? { type: 'http', url } : withOptions('http', url, options), 'charge');
  }

  /** Decides spending that is neither a tool nor a request and records it; allowed spend is charged at once. */
  checkCost(cost: number, options: CheckCostOptions): Promise<Decision> {
    return this.check({ type: 'cost', cost, ...options }, 'charge');
  }

  /**
   * Decides an action without recording or spending anything. Synchronous and pure: the same state gives the same
   * answer. Approvers are not consulted.
   */
  evaluate(action: ActionInput): Decision {
    const prepared = this.prepare(action);
    const verdict = this.verdict(prepared, action.approved === true);
    return this.makeDecision(prepared.action, verdict, randomUUID(), action.approved === true && verdict.approvedRule ? { via: 'caller' } : undefined);
  }

  /** Decides and records an action, then throws {@link PolicyDeniedError} / {@link ApprovalRequiredError} unless it is allowed. */
  async enforce(action: ActionInput): Promise<Decision> {
    const decision = await this.check(action, 'charge');
    if (decision.decision !== 'allow') throw decisionError(decision);
    return decision;
  }

  /** Whether `cost` (USD) would go over the budget now. Records nothing; invalid costs answer true. */
  wouldExceed(cost: number): boolean {
    const read = readCost(cost);
    if (!read.ok) return true;
    if (this.limit === null) return false;
    const { spent, reserved } = this.store.snapshot(this.id);
    return read.nanos > 0 && spent + reserved + read.nanos > this.limit;
  }

  /**
   * Wraps a function so that every call is checked as a tool call first. A call that is not allowed throws and the
   * function never runs; the cost is reserved while it runs, charged when it returns and released if it throws.
   *
   * @example
   * ```ts
   * const sendEmail = session.guardTool(async (to: string) => mailer.send(to), { name: 'send_email', cost: 0.01 });
   * ```
   */
  guardTool<A extends unknown[], R>(fn: (...args: A) => R | Promise<R>, options: GuardToolOptions = {}): (...args: A) => Promise<Awaited<R>> {
    if (typeof fn !== 'function') throw new AgentPolicyError('INVALID_ARGUMENT', 'guardTool needs a function');
    const name = options.name ?? fn.name;
    if (!name) throw new AgentPolicyError('INVALID_ARGUMENT', 'guardTool needs a name for an anonymous function: guardTool(fn, { name })');
    return async (...args: A): Promise<Awaited<R>> => {
      const reservation = await this.reserveAction(
        { type: 'tool', name, ...(options.cost !== undefined ? { cost: options.cost } : {}), ...(options.metadata ? { metadata: options.metadata } : {}) },
      );
      if (!reservation.allowed) throw decisionError(reservation.decision);
      let result: Awaited<R>;
      try {
        result = await fn(...args);
      } catch (error) {
        await reservation.release();
        throw error;
      }
      await reservation.commit();
      return result;
    };
  }

  // ---- reservations -------------------------------------------------------------------------------------------

  /** Reserves an estimated cost (USD) for work whose real cost comes later. See {@link Reservation}. */
  reserve(estimate: number, options: CheckCostOptions): Promise<Reservation> {
    return this.reserveAction({ type: 'cost', cost: estimate, ...options });
  }

  /** Reserves any action's cost (a tool or request whose real cost comes later). */
  async reserveAction(action: ActionInput): Promise<Reservation> {
    const decision = await this.check(action, 'reserve');
    return this.reservation(decision as MutableDecision, undefined);
  }

  /**
   * Reserves the worst-case cost of a model call: input tokens (given, or estimated from the prompt) plus the
   * output limit, priced by the policy's `pricing:` or the catalog. Under a budget a model with no known price is
   * denied before the call. Commit the real usage afterwards, or release on a request that was never billed.
   */
  async reserveModelCall(estimate: ModelCallEstimate): Promise<Reservation> {
    const model = typeof estimate?.model === 'string' ? estimate.model : '';
    const provider = estimate?.provider;
    const inputTokens =
      typeof estimate?.inputTokens === 'number' && Number.isSafeInteger(estimate.inputTokens) && estimate.inputTokens >= 0
        ? estimate.inputTokens
        : estimatePromptTokens(estimate?.prompt);
    const maxOutput =
      typeof estimate?.maxOutputTokens === 'number' && Number.isSafeInteger(estimate.maxOutputTokens) && estimate.maxOutputTokens >= 0
        ? estimate.maxOutputTokens
        : (this.options.defaultMaxOutputTokens ?? 4096);
    const source = estimate?.source ?? modelSource(model, provider);
    const metadata: Metadata = {
      ...estimate?.metadata,
      model,
      ...(provider !== undefined ? { provider } : {}),
      estimatedInputTokens: inputTokens,
      maxOutputTokens: maxOutput,
    };
    const price = priceUsage({ model, ...(provider !== undefined ? { provider } : {}), inputTokens, outputTokens: maxOutput }, this.policy.normalized.pricing);
    const common = {
      source,
      metadata,
      ...(estimate?.approved !== undefined ? { approved: estimate.approved } : {}),
      ...(estimate?.idempotencyKey !== undefined ? { idempotencyKey: estimate.idempotencyKey } : {}),
    };
    if (!price.ok) {
      if (price.unpriced && this.limit === null) {
        const decision = await this.check({ type: 'cost', cost: 0, ...common }, 'reserve');
        return this.reservation(decision as MutableDecision, { model, provider });
      }
      const decision = this.recordDenied(
        { type: 'cost', source, cost: 0, metadata },
        price.reason,
        price.unpriced ? { section: 'pricing', model } : { section: 'input', check: 'usage' },
      );
      return this.reservation(decision as MutableDecision, { model, provider });
    }
    const decision = await this.check({ type: 'cost', cost: nanosToUsd(price.nanos), ...common }, 'reserve');
    return this.reservation(decision as MutableDecision, { model, provider });
  }

  /**
   * Records the real cost of a model call that already happened (no reservation), priced from its token usage.
   * The spend is recorded even when it goes over the budget (it happened); later checks are then denied. An
   * unpriced model under a budget is recorded as a denial that says how to add a price.
   */
  async recordUsage(usage: TokenUsage, options: { source?: string; metadata?: Metadata } = {}): Promise<Decision> {
    const price = this.priceUsage(usage);
    const model = typeof usage?.model === 'string' ? usage.model : '';
    const source = options.source ?? modelSource(model, usage?.provider);
    const metadata: Metadata = { ...options.metadata, ...usageMetadata(usage) };
    if (!price.ok) {
      if (price.unpriced && this.limit === null) {
        return this.recordCharged({ type: 'cost', source, cost: 0, metadata }, 0, `usage of ${source} recorded at $0 (${price.reason})`);
      }
      return this.recordDenied({ type: 'cost', source, cost: 0, metadata }, price.reason, price.unpriced ? { section: 'pricing', model } : { section: 'input', check: 'usage' });
    }
    return this.recordCharged({ type: 'cost', source, cost: nanosToUsd(price.nanos), metadata }, price.nanos, `usage of ${source} recorded: ${formatUsd(price.nanos)}`);
  }

  /** Prices token usage with this policy's overrides and the catalog, without recording anything. */
  priceUsage(usage: TokenUsage): PriceResult {
    return priceUsage(usage, this.policy.normalized.pricing);
  }

  /** A `fetch` with options: a cost per request, or another underlying fetch. */
  createFetch(options: PolicyFetchOptions = {}): typeof globalThis.fetch {
    return createPolicyFetch(this, options);
  }

  // ---- state --------------------------------------------------------------------------------------------------

  /** USD spent so far (committed). */
  get spent(): number {
    return nanosToUsd(this.store.snapshot(this.id).spent);
  }

  /** USD left, or null without a budget. */
  get remaining(): number | null {
    if (this.limit === null) return null;
    const { spent, reserved } = this.store.snapshot(this.id);
    return nanosToUsd(Math.max(0, this.limit - spent - reserved));
  }

  get ended(): boolean {
    return this.endedMs !== null;
  }

  /**
   * Why no further spending can be allowed (the session has ended, or nothing of the budget is left), or
   * `undefined` while it can. Lets an integration stop a run cleanly before asking for a call that would be denied.
   */
  exhausted(): string | undefined {
    if (this.endedMs !== null) return 'the session has ended';
    if (this.limit === null) return undefined;
    const { spent, reserved } = this.store.snapshot(this.id);
    if (spent + reserved < this.limit) return undefined;
    return `the budget is used up (max_spend ${formatUsd(this.limit)}, spent ${formatUsd(spent)}${reserved > 0 ? `, reserved ${formatUsd(reserved)}` : ''})`;
  }

  /**
   * Ends the session: its duration is fixed, later checks are denied, and every reservation still open (a stream
   * its consumer abandoned, say) is charged at its estimate, so no spend is lost. Returns the final report.
   */
  end(): SessionReport {
    if (this.endedMs === null) {
      this.endedMs = Date.now();
      this.settlePending();
    }
    return this.report();
  }

  /** Charges every open reservation at its estimate. Returns how many were settled. */
  settlePending(): number {
    const open = [...this.pending];
    for (const reservation of open) void reservation.commit();
    return open.length;
  }

  /** Reservations not yet committed or released. */
  get pendingReservations(): number {
    return this.pending.size;
  }

  [Symbol.dispose](): void {
    this.end();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.end();
  }

  /** The audit summary. Amounts are USD numbers computed from the exact ledger. */
  report(): SessionReport {
    const { spent, reserved } = this.store.snapshot(this.id);
    const sum = (values: ByType<number>) => ({
      tool: nanosToUsd(values.tool),
      http: nanosToUsd(values.http),
      cost: nanosToUsd(values.cost),
      total: nanosToUsd(values.tool + values.http + values.cost),
    });
    const endMs = this.endedMs ?? Date.now();
    const ring = this.ring;
    const decisions = this.ringStart === 0 ? ring.slice() : ring.slice(this.ringStart).concat(ring.slice(0, this.ringStart));
    return withReportInspect({
      sessionId: this.id,
      policyHash: this.policy.hash,
      budget: this.limit === null ? null : nanosToUsd(this.limit),
      spent: nanosToUsd(spent),
      reserved: nanosToUsd(reserved),
      remaining: this.limit === null ? null : nanosToUsd(Math.max(0, this.limit - spent - reserved)),
      decisionSummary: {
        total: this.counts.allow + this.counts.deny + this.counts.require_approval,
        ...this.counts,
        byActionType: { tool: { ...this.byType.tool }, http: { ...this.byType.http }, cost: { ...this.byType.cost } },
      },
      costSummary: { allowed: sum(this.allowedNanos), attempted: sum(this.attemptedNanos) },
      policyHits: {
        deniedTools: [...this.hits.deniedTools],
        deniedDomains: [...this.hits.deniedDomains],
        approvalRequired: [...this.hits.approvalRequired],
      },
      startedAt: this.startedAt,
      endedAt: this.endedMs === null ? null : new Date(this.endedMs).toISOString(),
      durationSeconds: (endMs - this.startedMs) / 1000,
      decisions,
      decisionsDropped: this.dropped,
    });
  }

  // ---- internals ----------------------------------------------------------------------------------------------

  private prepare(action: ActionInput): Prepared {
    if (typeof action !== 'object' || action === null) {
      return { action: { type: 'cost', source: 'invalid', cost: 0 }, prepared: null, invalid: { reason: 'action must be an object', rule: { section: 'input', check: 'action' } } };
    }
    const metadata = action.metadata;
    const costInput = action.cost;
    const cost = costInput === undefined && action.type !== 'cost' ? ZERO_COST : readCost(costInput);
    const costUsd = cost.ok ? nanosToUsd(cost.nanos) : 0;
    switch (action.type) {
      case 'tool': {
        const name = action.name;
        const info = this.policy.toolInfo(name);
        const shown = typeof name === 'string' ? name : String(name);
        // One literal per shape (no property added afterwards): this runs on every check.
        const recorded: ToolAction = metadata === undefined ? { type: 'tool', name: shown, cost: costUsd } : { type: 'tool', name: shown, cost: costUsd, metadata };
        if (info.problem !== undefined) return { action: recorded, prepared: null, invalid: { reason: `${info.problem}; denied`, rule: { section: 'input', check: 'tool_name' } } };
        if (!cost.ok) return { action: recorded, prepared: null, invalid: { reason: cost.reason, rule: { section: 'input', check: 'cost' } } };
        return { action: recorded, prepared: { type: 'tool', name, folded: info.folded, costNanos: cost.nanos }, invalid: null };
      }
      case 'http': {
        const target = parseTarget(action.url);
        const recorded = { type: 'http', url: target.url, domain: target.ok ? target.host : '', cost: costUsd } as { -readonly [K in keyof HttpAction]: HttpAction[K] };
        if (typeof action.method === 'string') recorded.method = action.method.toUpperCase();
        if (metadata !== undefined) recorded.metadata = metadata;
        if (!target.ok) return { action: recorded, prepared: null, invalid: { reason: target.reason, rule: { section: 'input', check: 'url' } } };
        if (!cost.ok) return { action: recorded, prepared: null, invalid: { reason: cost.reason, rule: { section: 'input', check: 'cost' } } };
        return { action: recorded, prepared: { type: 'http', host: target.host, isIp: target.isIp, costNanos: cost.nanos }, invalid: null };
      }
      case 'cost': {
        const source = action.source;
        const recorded = { type: 'cost', source: typeof source === 'string' ? source : String(source), cost: costUsd } as { -readonly [K in keyof CostAction]: CostAction[K] };
        if (metadata !== undefined) recorded.metadata = metadata;
        if (typeof source !== 'string' || source === '') {
          return { action: recorded, prepared: null, invalid: { reason: 'cost source must be a non-empty string', rule: { section: 'input', check: 'action' } } };
        }
        if (!cost.ok) return { action: recorded, prepared: null, invalid: { reason: cost.reason, rule: { section: 'input', check: 'cost' } } };
        return { action: recorded, prepared: { type: 'cost', source, costNanos: cost.nanos }, invalid: null };
      }
      default: {
        const type = (action as { type?: unknown }).type;
        const recorded = { type: 'cost', source: `unknown action type ${String(type)}`, cost: 0 } as { -readonly [K in keyof CostAction]: CostAction[K] };
        if (metadata !== undefined) recorded.metadata = metadata;
        return {
          action: recorded,
          prepared: null,
          invalid: { reason: `unknown action type ${JSON.stringify(type) ?? String(type)}; expected tool, http or cost`, rule: { section: 'input', check: 'action' } },
        };
      }
    }
  }

  private verdict(prepared: Prepared, approved: boolean): Verdict {
    if (prepared.invalid || !prepared.prepared) {
      return { decision: 'deny', reason: prepared.invalid?.reason ?? 'invalid action', rule: prepared.invalid?.rule ?? { section: 'input', check: 'action' }, approvedRule: false };
    }
    if (this.endedMs !== null) {
      return { decision: 'deny', reason: 'the session has ended', rule: { section: 'session', check: 'ended' }, approvedRule: false };
    }
    const cost = prepared.prepared.costNanos;
    if (!approved && cost <= this.policy.costRuleFloor) {
      if (cost === 0) return this.policy.decideFree(prepared.prepared);
      const { spent, reserved } = this.store.snapshot(this.id);
      if (this.limit === null || spent + reserved + cost <= this.limit) return this.policy.decideFree(prepared.prepared);
    }
    const { spent, reserved } = this.store.snapshot(this.id);
    try {
      return this.policy.decide(prepared.prepared, spent, reserved, approved);
    } catch (error) {
      const message = (error as Error)?.message ?? String(error);
      return { decision: 'deny', reason: `the check failed, so the action is denied: ${message}`, rule: { section: 'error', message }, approvedRule: false };
    }
  }

  private check(action: ActionInput, mode: Mode): Promise<Decision> {
    try {
      const result = this.decideAndRecord(action, mode);
      return result instanceof Promise ? result.catch((error: unknown) => this.failClosed(action, error)) : Promise.resolve(result);
    } catch (error) {
      return Promise.resolve(this.failClosed(action, error));
    }
  }

  // A check that failed (a budget store that threw, say) is a recorded denial, never a silent allow or a lost entry.
  private failClosed(action: ActionInput, error: unknown): Decision {
    const message = error instanceof Error ? error.message : String(error);
    let recorded: Action;
    try {
      recorded = this.prepare(action).action;
    } catch {
      recorded = { type: 'cost', source: 'unknown', cost: 0 };
    }
    return this.record(
      this.makeDecision(recorded, { decision: 'deny', reason: `the check failed, so the action is denied: ${message}`, rule: { section: 'error', message }, approvedRule: false }, this.nextId(), undefined),
    );
  }

  // Synchronous whenever the store is: no await (and no promise) between the decision and the reservation.
  private decideAndRecord(action: ActionInput, mode: Mode): Decision | Promise<Decision> {
    const answer = action?.approval === undefined ? undefined : normalizeAnswer(action.approval);
    const approved = action?.approved === true || answer?.approved === true;
    const key = typeof action?.idempotencyKey === 'string' ? action.idempotencyKey : undefined;
    if (key !== undefined) {
      const name = scopeName(action);
      const previous = scopeOf(this.keyed, action).get(name)?.get(key) ?? scopeOf(this.keyedOld, action).get(name)?.get(key);
      if (previous && (previous.decision !== 'require_approval' || (!approved && answer === undefined))) return previous;
    }
    const prepared = this.prepare(action);
    const verdict = this.verdict(prepared, approved);
    const costNanos = prepared.prepared?.costNanos ?? 0;
    let decision: Decision | Promise<Decision>;
    if (answer !== undefined && !answer.approved && verdict.decision !== 'deny') {
      // A human said no: that is a denial whatever the policy would otherwise allow.
      decision = this.record(this.makeDecision(prepared.action, rejection(verdict, answer), this.nextId(), undefined));
    } else if (verdict.decision === 'allow') {
      const approval = approved && verdict.approvedRule ? (answer?.approved ? callerApproval(answer) : CALLER_APPROVAL) : undefined;
      decision = this.allowWithMoney(prepared.action, verdict, costNanos, mode, approval);
    } else if (verdict.decision === 'require_approval' && this.options.approver) {
      decision = this.askApprover(prepared.action, verdict, costNanos, mode);
    } else {
      decision = this.record(this.makeDecision(prepared.action, verdict, this.nextId(), undefined));
    }
    if (key === undefined) return decision;
    if (decision instanceof Promise) {
      return decision.then((settled) => {
        this.remember(action, key, settled);
        return settled;
      });
    }
    this.remember(action, key, decision);
    return decision;
  }

  private allowWithMoney(action: Action, verdict: Verdict, costNanos: number, mode: Mode, approval: ApprovalRecord | undefined): Decision | Promise<Decision> {
    if (costNanos <= 0) return this.recordAllowed(action, verdict, costNanos, mode, approval);
    const reserved = this.reserveNanos(costNanos);
    if (reserved instanceof Promise) {
      return reserved.then((ok) => (ok ? this.chargeAndRecord(action, verdict, costNanos, mode, approval) : this.record(this.makeDecision(action, this.raceDenial(costNanos), this.nextId(), undefined))));
    }
    if (!reserved) return this.record(this.makeDecision(action, this.raceDenial(costNanos), this.nextId(), undefined));
    return this.chargeAndRecord(action, verdict, costNanos, mode, approval);
  }

  private chargeAndRecord(action: Action, verdict: Verdict, costNanos: number, mode: Mode, approval: ApprovalRecord | undefined): Decision | Promise<Decision> {
    if (mode === 'charge') {
      const done = this.settleNanos(costNanos, costNanos);
      if (done instanceof Promise) return done.then(() => this.recordAllowed(action, verdict, costNanos, mode, approval));
    }
    return this.recordAllowed(action, verdict, costNanos, mode, approval);
  }

  private recordAllowed(action: Action, verdict: Verdict, costNanos: number, mode: Mode, approval: ApprovalRecord | undefined): Decision {
    const decision = this.makeDecision(action, verdict, this.nextId(), approval) as MutableDecision;
    if (mode === 'reserve') decision.settlement = { status: 'pending', estimated: nanosToUsd(costNanos), actual: nanosToUsd(costNanos) };
    return this.record(decision);
  }

  // Reserves synchronously when the store answers synchronously (no await before the money is held).
  private reserveNanos(nanos: number): boolean | Promise<boolean> {
    return this.store.reserve(this.id, nanos, this.limit);
  }

  private settleNanos(reserved: number, actual: number): void | Promise<void> {
    const done = this.store.commit(this.id, reserved, actual);
    this.checkSoftLimit();
    return done;
  }

  private raceDenial(costNanos: number): Verdict {
    const { spent, reserved } = this.store.snapshot(this.id);
    const max = this.limit ?? 0;
    return {
      decision: 'deny',
      reason: `cost ${formatUsd(costNanos)} exceeds the remaining budget ${formatUsd(Math.max(0, max - spent - reserved))} (max_spend ${formatUsd(max)})`,
      rule: { section: 'budget', maxSpend: nanosToUsd(max), spent: nanosToUsd(spent), reserved: nanosToUsd(reserved), requested: nanosToUsd(costNanos) },
      approvedRule: false,
    };
  }

  private async askApprover(action: Action, verdict: Verdict, costNanos: number, mode: Mode): Promise<Decision> {
    const approver = this.options.approver as Approver;
    // Hold the money while a human decides, so concurrent checks cannot spend it meanwhile.
    if (costNanos > 0) {
      const reserved = await this.reserveNanos(costNanos);
      if (!reserved) return this.record(this.makeDecision(action, this.raceDenial(costNanos), this.nextId(), undefined));
    }
    const pending = this.makeDecision(action, verdict, this.nextId(), undefined);
    const controller = new AbortController();
    const timeoutMs = this.options.approvalTimeoutMs ?? 300_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let outcome: { approved: true; by?: string; reason?: string } | Rejection;
    try {
      const answer = await Promise.race([
        Promise.resolve().then(() => approver({ sessionId: this.id, decision: pending, action, reason: verdict.reason, rule: verdict.rule, signal: controller.signal })),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ApprovalTimeout()), timeoutMs);
        }),
      ]);
      outcome = normalizeAnswer(answer);
    } catch (error) {
      if (error instanceof ApprovalTimeout) {
        controller.abort(error);
        outcome = { approved: false, outcome: 'timeout', detail: `the approver did not answer within ${timeoutMs} ms` };
      } else {
        outcome = { approved: false, outcome: 'error', detail: `the approver failed: ${(error as Error)?.message ?? String(error)}` };
      }
    } finally {
      if (timer) clearTimeout(timer);
    }
    if (outcome.approved) {
      if (costNanos > 0 && mode === 'charge') this.settleNanos(costNanos, costNanos);
      const approval: ApprovalRecord = { via: 'approver', ...(outcome.by !== undefined ? { by: outcome.by } : {}), ...(outcome.reason !== undefined ? { reason: outcome.reason } : {}) };
      const by = outcome.by ? ` by ${outcome.by}` : '';
      const decision = this.makeDecision(action, { ...verdict, decision: 'allow', reason: `${verdict.reason.replace(/ requires approval.*$/, '')} approved${by}${outcome.reason ? `: ${outcome.reason}` : ''}`, approvedRule: true }, pending.id, approval) as MutableDecision;
      if (mode === 'reserve') decision.settlement = { status: 'pending', estimated: nanosToUsd(costNanos), actual: nanosToUsd(costNanos) };
      return this.record(decision);
    }
    if (costNanos > 0) await this.store.release(this.id, costNanos);
    return this.record(this.makeDecision(action, rejection(verdict, outcome), pending.id, undefined));
  }

  private reservation(decision: MutableDecision, model: { model: string; provider: string | undefined } | undefined): Reservation {
    // A keyed repeat gets the reservation of the first check: one decision, one settlement.
    const existing = this.reservations.get(decision);
    if (existing) return existing;
    const estimateNanos = decision.decision === 'allow' && decision.settlement ? Math.round(decision.settlement.estimated * 1e9) : 0;
    const isSettled = () => decision.decision !== 'allow' || decision.settlement?.status !== 'pending';
    const settle = async (status: 'committed' | 'released', actualNanos: number, usage?: Metadata): Promise<Decision> => {
      if (isSettled()) return decision;
      // Mark first, synchronously, so a second settle (stream cancel racing its finish) is a no-op.
      decision.settlement = { status, estimated: nanosToUsd(estimateNanos), actual: nanosToUsd(actualNanos) };
      this.allowedNanos[decision.action.type] += actualNanos - estimateNanos;
      if (usage) decision.action = { ...decision.action, metadata: { ...decision.action.metadata, ...usage } } as Action;
      this.pending.delete(reservation);
      if (status === 'committed') await this.settleNanos(estimateNanos, actualNanos);
      else await this.store.release(this.id, estimateNanos);
      this.notifySinks(decision, true);
      return decision;
    };
    const reservation: Reservation = {
      decision,
      allowed: decision.decision === 'allow',
      estimate: nanosToUsd(estimateNanos),
      get settled() {
        return isSettled();
      },
      commit: (actual?: number | UsageUpdate): Promise<Decision> => {
        if (isSettled()) return Promise.resolve(decision);
        if (actual === undefined) return settle('committed', estimateNanos);
        if (typeof actual === 'number') {
          const read = readCost(actual);
          // An unreadable actual cost charges the estimate: spend is never lost.
          return settle('committed', read.ok ? read.nanos : estimateNanos, read.ok ? undefined : { settlementNote: read.reason });
        }
        const usage = { ...actual, model: actual?.model ?? model?.model ?? '', ...(actual?.provider ?? model?.provider ? { provider: actual?.provider ?? model?.provider } : {}) } as TokenUsage;
        const price = this.priceUsage(usage);
        if (price.ok) return settle('committed', price.nanos, usageMetadata(usage));
        return settle('committed', estimateNanos, { ...usageMetadata(usage), settlementNote: `${price.reason}; the estimate was charged` });
      },
      release: (): Promise<Decision> => {
        return settle('released', 0);
      },
      fail: (failure?: { status?: number; error?: unknown }): Promise<Decision> => {
        return notBilled(failure) ? settle('released', 0) : settle('committed', estimateNanos);
      },
    };
    this.reservations.set(decision, reservation);
    if (!isSettled()) this.pending.add(reservation);
    return reservation;
  }

  private recordDenied(action: Action, reason: string, rule: RuleRef): Decision {
    return this.record(this.makeDecision(action, { decision: 'deny', reason, rule, approvedRule: false }, this.nextId(), undefined));
  }

  private recordCharged(action: Action, nanos: number, reason: string): Decision {
    if (nanos > 0) this.store.charge(this.id, nanos);
    this.checkSoftLimit();
    const over = this.limit !== null && this.store.snapshot(this.id).spent > this.limit ? ' (the budget is now exceeded)' : '';
    return this.record(this.makeDecision(action, { decision: 'allow', reason: reason + over, rule: { section: 'default' }, approvedRule: false }, this.nextId(), undefined));
  }

  private checkSoftLimit(): void {
    if (this.softLimitFired || this.limit === null) return;
    const soft = this.policy.normalized.budget?.softLimit;
    if (soft === null || soft === undefined || !this.options.onSoftLimit) return;
    const { spent } = this.store.snapshot(this.id);
    if (spent >= this.limit * soft) {
      this.softLimitFired = true;
      try {
        this.options.onSoftLimit({ sessionId: this.id, spent: nanosToUsd(spent), maxSpend: nanosToUsd(this.limit), softLimit: soft });
      } catch (error) {
        process.emitWarning(`agentpolicy: onSoftLimit threw: ${(error as Error)?.message ?? String(error)}`);
      }
    }
  }

  private nextId(): string {
    return `${this.id}:${++this.seq}`;
  }

  private makeDecision(action: Action, verdict: Verdict, id: string, approval: ApprovalRecord | undefined): Decision {
    const decision = approval
      ? { id, sessionId: this.id, decision: verdict.decision, reason: verdict.reason, rule: verdict.rule, action, approved: true, timestamp: now(), approval }
      : { id, sessionId: this.id, decision: verdict.decision, reason: verdict.reason, rule: verdict.rule, action, approved: false, timestamp: now() };
    return decision as Decision;
  }

  private record(decision: Decision): Decision {
    const type = decision.action.type;
    const value = decision.decision;
    this.counts[value]++;
    this.byType[type][value]++;
    const costNanos = Math.round(decision.action.cost * 1e9);
    this.attemptedNanos[type] += costNanos;
    if (value === 'allow') this.allowedNanos[type] += costNanos;
    else if (type === 'tool' && decision.rule.section === 'tools') addHit(this.hits.deniedTools, decision.action.name);
    else if (type === 'http' && decision.rule.section === 'network') addHit(this.hits.deniedDomains, decision.action.domain);
    const section = decision.rule.section;
    if (section === 'approver' || section === 'approval') {
      const action = decision.action;
      addHit(this.hits.approvalRequired, action.type === 'tool' ? action.name : action.type === 'http' ? action.domain : action.source);
    }
    if (this.maxDecisions > 0) {
      if (this.ring.length < this.maxDecisions) this.ring.push(decision);
      else {
        this.ring[this.ringStart] = decision;
        this.ringStart = (this.ringStart + 1) % this.maxDecisions;
        this.dropped++;
      }
    } else this.dropped++;
    const listener = this.options.onDecision;
    if (listener) {
      try {
        listener(decision);
      } catch (error) {
        process.emitWarning(`agentpolicy: onDecision threw: ${(error as Error)?.message ?? String(error)}`);
      }
    }
    if (this.sinks.length > 0) this.notifySinks(decision, false);
    return decision;
  }

  private notifySinks(decision: Decision, settlement: boolean): void {
    for (const sink of this.sinks) {
      try {
        if (!settlement) sink.decision(decision, this);
        else sink.settlement?.(decision, this);
      } catch (error) {
        process.emitWarning(`agentpolicy: a decision sink threw: ${(error as Error)?.message ?? String(error)}`);
      }
    }
  }

  private remember(action: ActionInput, key: string, decision: Decision): void {
    if (this.keyedCount >= KEY_GENERATION) {
      this.keyedOld = this.keyed;
      this.keyed = newKeyIndex();
      this.keyedCount = 0;
    }
    const scope = scopeOf(this.keyed, action);
    const name = scopeName(action);
    let keys = scope.get(name);
    if (keys === undefined) {
      keys = new Map();
      scope.set(name, keys);
    }
    keys.set(key, decision);
    this.keyedCount++;
  }
}

class ApprovalTimeout extends Error {}

function notBilled(failure: { status?: number; error?: unknown } | undefined): boolean {
  if (AgentPolicyError.isInstance(failure?.error)) return true;
  const bag = (typeof failure?.error === 'object' && failure.error !== null ? failure.error : {}) as { status?: unknown; statusCode?: unknown };
  const status = failure?.status ?? bag.status ?? bag.statusCode;
  return typeof status === 'number' && status >= 400 && status < 500;
}

type Rejection = { approved: false; outcome: 'rejected' | 'error' | 'timeout' | 'invalid'; detail: string };

function rejection(verdict: Verdict, outcome: Rejection): Verdict {
  const approvalRule = verdict.rule.section === 'approval' ? { index: verdict.rule.index, rule: verdict.rule.rule } : {};
  return {
    decision: 'deny',
    reason: `${verdict.reason}; ${outcome.detail}`,
    rule: { section: 'approver', outcome: outcome.outcome, ...approvalRule },
    approvedRule: false,
  };
}

function callerApproval(answer: { by?: string; reason?: string }): ApprovalRecord {
  return { via: 'caller', ...(answer.by !== undefined ? { by: answer.by } : {}), ...(answer.reason !== undefined ? { reason: answer.reason } : {}) };
}

function normalizeAnswer(answer: unknown): { approved: true; by?: string; reason?: string } | { approved: false; outcome: 'rejected' | 'invalid'; detail: string } {
  if (answer === true) return { approved: true };
  if (answer === false) return { approved: false, outcome: 'rejected', detail: 'the approver rejected it' };
  if (typeof answer === 'object' && answer !== null && !Array.isArray(answer)) {
    const record = answer as { approved?: unknown; by?: unknown; reason?: unknown };
    const by = typeof record.by === 'string' ? record.by : undefined;
    const reason = typeof record.reason === 'string' ? record.reason : undefined;
    if (record.approved === true) return { approved: true, ...(by !== undefined ? { by } : {}), ...(reason !== undefined ? { reason } : {}) };
    if (record.approved === false) {
      return { approved: false, outcome: 'rejected', detail: `rejected${by ? ` by ${by}` : ''}${reason ? `: ${reason}` : ''}` };
    }
  }
  return { approved: false, outcome: 'invalid', detail: 'the approver returned no approval (only true or { approved: true } approves)' };
}

function addHit(set: Set<string>, value: string): void {
  if (set.size < HIT_LIMIT || set.has(value)) set.add(value);
}

function modelSource(model: string, provider: string | undefined): string {
  const split = splitModel(model, provider);
  return `model:${split.provider ? `${split.provider.split('.')[0]}/` : ''}${split.model || 'unknown'}`;
}

function usageMetadata(usage: Partial<TokenUsage> | undefined): Metadata {
  if (!usage || typeof usage !== 'object') return {};
  const out: Record<string, unknown> = {};
  for (const key of ['model', 'provider', 'inputTokens', 'outputTokens', 'cachedInputTokens', 'cacheWriteTokens', 'reasoningTokens'] as const) {
    if (usage[key] !== undefined) out[key] = usage[key];
  }
  return out;
}
