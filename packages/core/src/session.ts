import { randomUUID } from 'node:crypto';
import { prepareAction, withOptions, type ActionInput, type CheckCostOptions, type CheckHttpOptions, type CheckToolOptions, type Prepared } from './action-input.js';
import {
  approvedVerdict,
  approverApproval,
  callerApproval,
  CALLER_APPROVAL,
  consultApprover,
  normalizeAnswer,
  rejection,
  type Approver,
} from './approvals.js';
import { AuditTrail, isoNow, type SessionReport } from './audit-trail.js';
import { BudgetLedger, type SoftLimitEvent } from './budget-ledger.js';
import { InMemoryBudgetStore, type BudgetGrant, type BudgetSnapshot, type BudgetStore } from './budget-store.js';
import { CallKeys } from './call-keys.js';
import type { Action, ApprovalRecord, Decision, Metadata, RuleRef } from './decision.js';
import { AgentPolicyError, decisionError } from './errors.js';
import { modelSource, usageMetadata } from './model-usage.js';
import { formatUsd, nanosToUsd, readCost } from './money.js';
import type { PolicyEvaluator, Verdict } from './policy-evaluator.js';
import { estimatePromptTokens, priceUsage, type PriceResult, type TokenUsage } from './pricing.js';
import { createReservation, type MutableDecision, type Reservation, type ReservationContext } from './reservation.js';
import { createPolicyFetch, type PolicyFetchOptions } from './session-fetch.js';

/** Options of {@link AgentPolicy.session}. */
export interface SessionOptions {
  /** Session id (a random UUID by default): the audit identity, and the budget key unless `budgetKey` is given. */
  id?: string;
  /**
   * The budget this session spends from, shared by every session given the same key and store (a tenant, a user,
   * an agent). The session id stays the identity in the audit trail. Default: the session id (a budget of its own).
   */
  budgetKey?: string;
  /**
   * Where spend is kept. Default: in memory, one budget per session, or, with a `budgetKey`, one store shared by
   * every session of this policy in this process. Pass a shared store (e.g. `@agentpolicy/redis`) to share a
   * budget across processes.
   */
  store?: BudgetStore;
  /**
   * How long a reservation may stay open before the store charges it at its estimate (its process died, say).
   * Default 900,000 ms (15 minutes). A reservation held while an approver decides lives this long after the
   * approval timeout.
   */
  leaseTtlMs?: number;
  /** Resolves `require_approval` in place. */
  approver?: Approver;
  /** How long the approver may take before its silence counts as a denial. Default 300,000 ms. */
  approvalTimeoutMs?: number;
  /** Called for every recorded decision, as it happens. Errors it throws are reported as warnings, never rethrown. */
  onDecision?: (decision: Decision) => void;
  /** Called once, when spend first reaches the policy's `budget.soft_limit`. */
  onSoftLimit?: (event: SoftLimitEvent) => void;
  /** How many decisions the report keeps (the oldest are dropped first; summaries stay exact). Default 10,000. */
  maxDecisions?: number;
  /** Output tokens assumed for a model call that sets no maximum. Default 4,096. */
  defaultMaxOutputTokens?: number;
}

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

type Mode = 'charge' | 'reserve';

/**
 * One agent run under a policy. The session coordinates: it reads each action once, asks the policy, holds or
 * charges money in its {@link BudgetLedger}, asks the approver, and records the decision in its {@link AuditTrail}.
 * Every check that costs money reserves it before its first `await`, so concurrent checks never overspend.
 */
export class PolicySession {
  readonly id: string;
  readonly policy: PolicyEvaluator;
  /**
   * A drop-in `fetch` that checks the network policy on every request and every redirect hop. A denied request
   * throws {@link PolicyDeniedError} (or {@link ApprovalRequiredError}) and is never sent.
   */
  readonly fetch: typeof globalThis.fetch;

  private readonly options: SessionOptions;
  private readonly ledger: BudgetLedger;
  private readonly trail: AuditTrail;
  private readonly keys = new CallKeys();
  private readonly settling: ReservationContext;
  private readonly pending = new Set<Reservation>();
  private readonly reservations = new WeakMap<Decision, Reservation>();
  /** The store lease of each allowed reservation that holds money. */
  private readonly leases = new WeakMap<Decision, string>();
  private seq = 0;
  private readonly startedMs = Date.now();
  private readonly startedAt = new Date(this.startedMs).toISOString();
  private endedMs: number | null = null;

  constructor(policy: PolicyEvaluator, options: SessionOptions = {}) {
    if (options.id !== undefined && (typeof options.id !== 'string' || options.id === '')) {
      throw new AgentPolicyError('INVALID_ARGUMENT', 'session id must be a non-empty string');
    }
    if (options.budgetKey !== undefined && (typeof options.budgetKey !== 'string' || options.budgetKey === '')) {
      throw new AgentPolicyError('INVALID_ARGUMENT', 'budgetKey must be a non-empty string');
    }
    if (options.leaseTtlMs !== undefined && !(Number.isSafeInteger(options.leaseTtlMs) && options.leaseTtlMs > 0)) {
      throw new AgentPolicyError('INVALID_ARGUMENT', 'leaseTtlMs must be a whole number of milliseconds > 0');
    }
    if (options.maxDecisions !== undefined && !(options.maxDecisions >= 0)) {
      throw new AgentPolicyError('INVALID_ARGUMENT', 'maxDecisions must be a number ≥ 0 (Infinity keeps every decision)');
    }
    this.policy = policy;
    this.options = options;
    this.id = options.id ?? randomUUID();
    const budget = policy.normalized.budget;
    this.ledger = new BudgetLedger(
      options.store ?? new InMemoryBudgetStore(),
      this.id,
      { key: options.budgetKey ?? this.id, period: budget?.period ?? 'session' },
      budget?.maxSpendNanos ?? null,
      budget?.softLimit ?? null,
      options.onSoftLimit,
      options.leaseTtlMs ?? 900_000,
    );
    this.trail = new AuditTrail(options.maxDecisions ?? 10_000);
    this.settling = { ledger: this.ledger, trail: this.trail, pending: this.pending, priceUsage: (usage) => this.priceUsage(usage) };
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
    const prepared = prepareAction(this.policy, action);
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
    const limit = this.ledger.limit;
    if (limit === null) return false;
    const { spent, reserved } = this.ledger.snapshot();
    return read.nanos > 0 && spent + reserved + read.nanos > limit;
  }

  /**
   * Reads the budget afresh from its store, first charging any lease that expired unsettled at its estimate (the
   * reconcile call for a shared store; any operation on the budget does the same). Returns the report after it.
   */
  async reconcile(): Promise<SessionReport> {
    await this.ledger.reconcile();
    return this.report();
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
      if (price.unpriced && this.ledger.limit === null) {
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
      if (price.unpriced && this.ledger.limit === null) {
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
    return nanosToUsd(this.ledger.snapshot().spent);
  }

  /** USD left, or null without a budget. */
  get remaining(): number | null {
    const remaining = this.ledger.remaining();
    return remaining === null ? null : nanosToUsd(remaining);
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
    return this.ledger.exhausted();
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
    const { spent, reserved, window, previous, expired } = this.ledger.snapshot();
    const limit = this.ledger.limit;
    const endMs = this.endedMs ?? Date.now();
    const summary = this.trail.summary();
    return {
      sessionId: this.id,
      policyHash: this.policy.hash,
      budget: limit === null ? null : nanosToUsd(limit),
      spent: nanosToUsd(spent),
      reserved: nanosToUsd(reserved),
      remaining: limit === null ? null : nanosToUsd(Math.max(0, limit - spent - reserved)),
      budgetKey: this.ledger.budget.key,
      period: this.ledger.budget.period,
      window,
      previousWindow: previous === null ? null : { window: previous.window, spent: nanosToUsd(previous.spent) },
      expiredLeases: { count: expired.count, amount: nanosToUsd(expired.nanos) },
      decisionSummary: summary.decisionSummary,
      costSummary: summary.costSummary,
      policyHits: summary.policyHits,
      startedAt: this.startedAt,
      endedAt: this.endedMs === null ? null : new Date(this.endedMs).toISOString(),
      durationSeconds: (endMs - this.startedMs) / 1000,
      decisions: summary.decisions,
      decisionsDropped: summary.decisionsDropped,
    };
  }

  // ---- internals ----------------------------------------------------------------------------------------------

  private verdict(prepared: Prepared, approved: boolean): Verdict {
    if (prepared.invalid || !prepared.prepared) {
      return { decision: 'deny', reason: prepared.invalid?.reason ?? 'invalid action', rule: prepared.invalid?.rule ?? { section: 'input', check: 'action' }, approvedRule: false };
    }
    if (this.endedMs !== null) {
      return { decision: 'deny', reason: 'the session has ended', rule: { section: 'session', check: 'ended' }, approvedRule: false };
    }
    const cost = prepared.prepared.costNanos;
    const limit = this.ledger.limit;
    // A shared budget's snapshot may be stale (another process spent, a window rolled over): only the store's own
    // check-and-reserve decides whether money is left, so the policy sees an untouched budget here.
    const shared = this.ledger.storeDecides;
    if (!approved && cost <= this.policy.costRuleFloor) {
      if (cost === 0 || shared) return this.policy.decideFree(prepared.prepared);
      const { spent, reserved } = this.ledger.snapshot();
      if (limit === null || spent + reserved + cost <= limit) return this.policy.decideFree(prepared.prepared);
    }
    const { spent, reserved } = shared ? { spent: 0, reserved: 0 } : this.ledger.snapshot();
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
      recorded = prepareAction(this.policy, action).action;
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
      const previous = this.keys.get(action, key);
      if (previous && (previous.decision !== 'require_approval' || (!approved && answer === undefined))) return previous;
    }
    const prepared = prepareAction(this.policy, action);
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
      decision = this.askApprover(this.options.approver, prepared.action, verdict, costNanos, mode);
    } else {
      decision = this.record(this.makeDecision(prepared.action, verdict, this.nextId(), undefined));
    }
    if (key === undefined) return decision;
    if (decision instanceof Promise) {
      return decision.then((settled) => {
        this.keys.remember(action, key, settled);
        return settled;
      });
    }
    this.keys.remember(action, key, decision);
    return decision;
  }

  // One store operation per check: `charge` checks and charges at once; `reserve` checks and opens a lease.
  private allowWithMoney(action: Action, verdict: Verdict, costNanos: number, mode: Mode, approval: ApprovalRecord | undefined): Decision | Promise<Decision> {
    if (costNanos <= 0) return this.recordAllowed(action, verdict, costNanos, mode, approval, undefined);
    const grant = mode === 'charge' ? this.ledger.spend(costNanos) : this.ledger.reserve(costNanos);
    if (grant instanceof Promise) return grant.then((settled) => this.recordGrant(action, verdict, costNanos, mode, approval, settled));
    return this.recordGrant(action, verdict, costNanos, mode, approval, grant);
  }

  private recordGrant(action: Action, verdict: Verdict, costNanos: number, mode: Mode, approval: ApprovalRecord | undefined, grant: BudgetGrant): Decision {
    if (!grant.ok) return this.recordRefused(action, costNanos, grant.snapshot);
    return this.recordAllowed(action, verdict, costNanos, mode, approval, grant.lease);
  }

  private recordAllowed(action: Action, verdict: Verdict, costNanos: number, mode: Mode, approval: ApprovalRecord | undefined, lease: string | undefined): Decision {
    const decision = this.makeDecision(action, verdict, this.nextId(), approval) as MutableDecision;
    if (mode === 'reserve') {
      decision.settlement = { status: 'pending', estimated: nanosToUsd(costNanos), actual: nanosToUsd(costNanos) };
      if (lease !== undefined) this.leases.set(decision, lease);
    }
    return this.record(decision);
  }

  private recordRefused(action: Action, costNanos: number, snapshot: BudgetSnapshot): Decision {
    return this.record(this.makeDecision(action, this.ledger.refusal(costNanos, snapshot), this.nextId(), undefined));
  }

  private async askApprover(approver: Approver, action: Action, verdict: Verdict, costNanos: number, mode: Mode): Promise<Decision> {
    // Hold the money while a human decides, so concurrent checks cannot spend it meanwhile.
    const timeoutMs = this.options.approvalTimeoutMs ?? 300_000;
    let lease: string | undefined;
    if (costNanos > 0) {
      const grant = await this.ledger.reserve(costNanos, this.ledger.leaseTtlMs + timeoutMs);
      if (!grant.ok) return this.recordRefused(action, costNanos, grant.snapshot);
      lease = grant.lease;
    }
    const pending = this.makeDecision(action, verdict, this.nextId(), undefined);
    const outcome = await consultApprover(approver, { sessionId: this.id, decision: pending, action, reason: verdict.reason, rule: verdict.rule }, timeoutMs);
    if (outcome.approved) {
      if (lease !== undefined && mode === 'charge') await this.ledger.commit(lease, costNanos);
      const decision = this.makeDecision(action, approvedVerdict(verdict, outcome), pending.id, approverApproval(outcome)) as MutableDecision;
      if (mode === 'reserve') {
        decision.settlement = { status: 'pending', estimated: nanosToUsd(costNanos), actual: nanosToUsd(costNanos) };
        if (lease !== undefined) this.leases.set(decision, lease);
      }
      return this.record(decision);
    }
    if (lease !== undefined) await this.ledger.release(lease);
    return this.record(this.makeDecision(action, rejection(verdict, outcome), pending.id, undefined));
  }

  private reservation(decision: MutableDecision, model: { model: string; provider: string | undefined } | undefined): Reservation {
    // A keyed repeat gets the reservation of the first check: one decision, one settlement.
    const existing = this.reservations.get(decision);
    if (existing) return existing;
    const reservation = createReservation(this.settling, decision, model, this.leases.get(decision));
    this.reservations.set(decision, reservation);
    return reservation;
  }

  private recordDenied(action: Action, reason: string, rule: RuleRef): Decision {
    return this.record(this.makeDecision(action, { decision: 'deny', reason, rule, approvedRule: false }, this.nextId(), undefined));
  }

  private async recordCharged(action: Action, nanos: number, reason: string): Promise<Decision> {
    let note = '';
    let snapshot: BudgetSnapshot | undefined;
    try {
      snapshot = (await this.ledger.charge(nanos))?.snapshot;
    } catch (error) {
      // The spend happened whatever the store says: record it here, and say loudly that the store missed it.
      const message = (error as Error)?.message ?? String(error);
      note = ` (the budget store could not record it: ${message})`;
      process.emitWarning(`agentpolicy: spend of ${formatUsd(nanos)} could not be recorded in the budget store: ${message}`);
    }
    const over = this.ledger.overLimit(snapshot) ? ' (the budget is now exceeded)' : note;
    return this.record(this.makeDecision(action, { decision: 'allow', reason: reason + over, rule: { section: 'default' }, approvedRule: false }, this.nextId(), undefined));
  }

  private nextId(): string {
    return `${this.id}:${++this.seq}`;
  }

  private makeDecision(action: Action, verdict: Verdict, id: string, approval: ApprovalRecord | undefined): Decision {
    const decision = approval
      ? { id, sessionId: this.id, decision: verdict.decision, reason: verdict.reason, rule: verdict.rule, action, approved: true, timestamp: isoNow(), approval }
      : { id, sessionId: this.id, decision: verdict.decision, reason: verdict.reason, rule: verdict.rule, action, approved: false, timestamp: isoNow() };
    return decision as Decision;
  }

  private record(decision: Decision): Decision {
    this.trail.add(decision);
    const listener = this.options.onDecision;
    if (listener) {
      try {
        listener(decision);
      } catch (error) {
        process.emitWarning(`agentpolicy: onDecision threw: ${(error as Error)?.message ?? String(error)}`);
      }
    }
    return decision;
  }
}
