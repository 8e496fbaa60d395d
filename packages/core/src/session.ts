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
import { InMemoryBudgetStore, type BudgetStore } from './budget-store.js';
import { CallKeys } from './call-keys.js';
import type { Action, ApprovalRecord, Decision, Metadata, RuleRef } from './decision.js';
import { AgentPolicyError, decisionError } from './errors.js';
import { modelSource, usageMetadata } from './model-usage.js';
import { formatUsd, nanosToUsd, readCost } from './money.js';
import { estimateModelCall, type ModelCallEstimate, type ModelEstimate } from './model-estimate.js';
import type { PolicyEvaluator, Verdict } from './policy-evaluator.js';
import { priceUsage, type PriceResult, type TokenUsage } from './pricing.js';
import { createReservation, type MutableDecision, type Reservation, type ReservationContext } from './reservation.js';
import { createPolicyFetch, type PolicyFetchOptions } from './session-fetch.js';

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
  /** Called once, when spend first reaches the policy's `budget.soft_limit`. */
  onSoftLimit?: (event: SoftLimitEvent) => void;
  /** How many decisions the report keeps (the oldest are dropped first; summaries stay exact). Default 10,000. */
  maxDecisions?: number;
  /**
   * Output tokens assumed for a model call that sets no maximum, used only when neither the policy
   * (`max_output_tokens`) nor the model limits catalog nor the price catalog's context window bounds it. No default:
   * such a call is refused under a budget.
   */
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
  private seq = 0;
  private readonly startedMs = Date.now();
  private readonly startedAt = new Date(this.startedMs).toISOString();
  private endedMs: number | null = null;

  constructor(policy: PolicyEvaluator, options: SessionOptions = {}) {
    if (options.id !== undefined && (typeof options.id !== 'string' || options.id === '')) {
      throw new AgentPolicyError('INVALID_ARGUMENT', 'session id must be a non-empty string');
    }
    if (options.maxDecisions !== undefined && !(options.maxDecisions >= 0)) {
      throw new AgentPolicyError('INVALID_ARGUMENT', 'maxDecisions must be a number ≥ 0 (Infinity keeps every decision)');
    }
    this.policy = policy;
    this.options = options;
    this.id = options.id ?? randomUUID();
    const budget = policy.normalized.budget;
    this.ledger = new BudgetLedger(options.store ?? new InMemoryBudgetStore(), this.id, budget?.maxSpendNanos ?? null, budget?.softLimit ?? null, options.onSoftLimit);
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
   * Reserves the worst-case cost of a model call, as {@link estimateModelCall} bounds it (text, images, files and
   * audio in the input; the output limit, or the model's listed maximum, times `n`; images, characters or seconds
   * for models billed by those), priced by the policy's `pricing:` or the catalog. Under a budget a call with no
   * known price or no known bound is denied before it is sent, with a reason that says what to set. Commit the real
   * usage afterwards, or release on a request that was never billed.
   */
  async reserveModelCall(estimate: ModelCallEstimate): Promise<Reservation> {
    const model = typeof estimate?.model === 'string' ? estimate.model : '';
    const provider = estimate?.provider;
    let worst: ModelEstimate | Promise<ModelEstimate>;
    try {
      worst = estimateModelCall(estimate, this.policy.normalized.pricing, { fallbackMaxOutputTokens: this.options.defaultMaxOutputTokens });
    } catch (error) {
      worst = { ok: false, reason: `the estimate failed: ${(error as Error)?.message ?? String(error)}`, unpriced: false, rule: { section: 'error', message: String(error) }, metadata: {} };
    }
    if (worst instanceof Promise) worst = await worst;
    const source = estimate?.source ?? modelSource(model, provider);
    const common = {
      source,
      metadata: worst.metadata,
      ...(estimate?.approved !== undefined ? { approved: estimate.approved } : {}),
      ...(estimate?.idempotencyKey !== undefined ? { idempotencyKey: estimate.idempotencyKey } : {}),
    };
    if (!worst.ok) {
      // Without a budget no bound is needed: a model with no price or no known limit is recorded at $0.
      if ((worst.unpriced || worst.rule.section === 'pricing') && this.ledger.limit === null) {
        const decision = await this.check({ type: 'cost', cost: 0, ...common }, 'reserve');
        return this.reservation(decision as MutableDecision, { model, provider });
      }
      const decision = this.recordDenied({ type: 'cost', source, cost: 0, metadata: worst.metadata }, worst.reason, worst.rule);
      return this.reservation(decision as MutableDecision, { model, provider });
    }
    const decision = await this.check({ type: 'cost', cost: nanosToUsd(worst.nanos), ...common }, 'reserve');
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
    const { spent, reserved } = this.ledger.snapshot();
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
      decisionSummary: summary.decisionSummary,
      costSummary: summary.costSummary,
      policyHits: summary.policyHits,
      startedAt: this.startedAt,
      endedAt: this.endedMs === null ? null : new Date(this.endedMs).toISOString(),
      durationSeconds: (endMs - this.startedMs) / 1000,
      decisions: summary.decisions,
      decisionsDropped: summary.decisionsDropped,
      overrun: summary.overrun,
      overruns: summary.overruns,
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
    if (this.ledger.exceeded) return this.ledger.exceededVerdict(cost);
    const limit = this.ledger.limit;
    if (!approved && cost <= this.policy.costRuleFloor) {
      if (cost === 0) return this.policy.decideFree(prepared.prepared);
      const { spent, reserved } = this.ledger.snapshot();
      if (limit === null || spent + reserved + cost <= limit) return this.policy.decideFree(prepared.prepared);
    }
    const { spent, reserved } = this.ledger.snapshot();
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

  private allowWithMoney(action: Action, verdict: Verdict, costNanos: number, mode: Mode, approval: ApprovalRecord | undefined): Decision | Promise<Decision> {
    if (costNanos <= 0) return this.recordAllowed(action, verdict, costNanos, mode, approval);
    const reserved = this.ledger.reserve(costNanos);
    if (reserved instanceof Promise) {
      return reserved.then((ok) => (ok ? this.chargeAndRecord(action, verdict, costNanos, mode, approval) : this.recordRefused(action, costNanos)));
    }
    if (!reserved) return this.recordRefused(action, costNanos);
    return this.chargeAndRecord(action, verdict, costNanos, mode, approval);
  }

  private chargeAndRecord(action: Action, verdict: Verdict, costNanos: number, mode: Mode, approval: ApprovalRecord | undefined): Decision | Promise<Decision> {
    if (mode === 'charge') {
      const done = this.ledger.commit(costNanos, costNanos);
      if (done instanceof Promise) return done.then(() => this.recordAllowed(action, verdict, costNanos, mode, approval));
    }
    return this.recordAllowed(action, verdict, costNanos, mode, approval);
  }

  private recordAllowed(action: Action, verdict: Verdict, costNanos: number, mode: Mode, approval: ApprovalRecord | undefined): Decision {
    const decision = this.makeDecision(action, verdict, this.nextId(), approval) as MutableDecision;
    if (mode === 'reserve') decision.settlement = { status: 'pending', estimated: nanosToUsd(costNanos), actual: nanosToUsd(costNanos) };
    return this.record(decision);
  }

  private recordRefused(action: Action, costNanos: number): Decision {
    return this.record(this.makeDecision(action, this.ledger.refusal(costNanos), this.nextId(), undefined));
  }

  private async askApprover(approver: Approver, action: Action, verdict: Verdict, costNanos: number, mode: Mode): Promise<Decision> {
    // Hold the money while a human decides, so concurrent checks cannot spend it meanwhile.
    if (costNanos > 0) {
      const reserved = await this.ledger.reserve(costNanos);
      if (!reserved) return this.recordRefused(action, costNanos);
    }
    const pending = this.makeDecision(action, verdict, this.nextId(), undefined);
    const outcome = await consultApprover(approver, { sessionId: this.id, decision: pending, action, reason: verdict.reason, rule: verdict.rule }, this.options.approvalTimeoutMs ?? 300_000);
    if (outcome.approved) {
      if (costNanos > 0 && mode === 'charge') this.ledger.commit(costNanos, costNanos);
      const decision = this.makeDecision(action, approvedVerdict(verdict, outcome), pending.id, approverApproval(outcome)) as MutableDecision;
      if (mode === 'reserve') decision.settlement = { status: 'pending', estimated: nanosToUsd(costNanos), actual: nanosToUsd(costNanos) };
      return this.record(decision);
    }
    if (costNanos > 0) await this.ledger.release(costNanos);
    return this.record(this.makeDecision(action, rejection(verdict, outcome), pending.id, undefined));
  }

  private reservation(decision: MutableDecision, model: { model: string; provider: string | undefined } | undefined): Reservation {
    // A keyed repeat gets the reservation of the first check: one decision, one settlement.
    const existing = this.reservations.get(decision);
    if (existing) return existing;
    const reservation = createReservation(this.settling, decision, model);
    this.reservations.set(decision, reservation);
    return reservation;
  }

  private recordDenied(action: Action, reason: string, rule: RuleRef): Decision {
    return this.record(this.makeDecision(action, { decision: 'deny', reason, rule, approvedRule: false }, this.nextId(), undefined));
  }

  private recordCharged(action: Action, nanos: number, reason: string): Decision {
    void this.ledger.charge(nanos);
    const over = this.ledger.overLimit() ? ' (the budget is now exceeded)' : '';
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
