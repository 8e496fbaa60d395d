import { randomUUID } from 'node:crypto';
import { prepareAction, unreadableAction, withOptions, type ActionInput, type CheckCostOptions, type CheckHttpOptions, type CheckToolOptions, type Prepared } from './action-input.js';
import { InMemoryApprovalStore, type ApprovalState, type ResolveResult } from './approval-store.js';
import {
  approvedVerdict,
  callerApproval,
  CALLER_APPROVAL,
  consultApprover,
  isBoundAnswer,
  normalizeAnswer,
  rejection,
  requestApproval,
  type ApprovalOutcome,
  type Approver,
  type BoundApprovalAnswer,
} from './approvals.js';
import { AuditTrail, type SessionReport } from './audit-trail.js';
import { boundString } from './bounded-record.js';
import { BudgetLedger } from './budget-ledger.js';
import { InMemoryBudgetStore, type BudgetGrant, type BudgetSnapshot } from './budget-store.js';
import { CallKeys, UsedAllows } from './call-keys.js';
import type { CallKeyRef, CallKeyStore } from './call-key-store.js';
import type { Action, ApprovalRecord, Decision, HttpAction, Metadata, RuleRef, UnusedAnswer } from './decision.js';
import { parseTarget } from './domain.js';
import { AgentPolicyError, decisionError, errorMessage, findPolicyError } from './errors.js';
import { modelSource, usageMetadata } from './model-usage.js';
import { describe, formatUsd, MAX_NANOS, nanosToUsd, readCost } from './money.js';
import { estimateModelCall, type ModelCallEstimate, type ModelEstimate } from './model-estimate.js';
import type { PolicyEvaluator, PolicyProvider, PreparedAction, Verdict } from './policy-evaluator.js';
import { haltVerdict, type HaltState, type HaltStore } from './halt.js';
import { priceUsage, type PriceResult, type TokenUsage } from './pricing.js';
import { InMemoryRateLimitStore } from './rate-limit-store.js';
import { LimitCounter, NO_LIMITS, type LimitCount } from './limit-counter.js';
import { createReservation, type Reservation, type ReservationContext } from './reservation.js';
import { refOf, SessionApprovals, type TokenRefusal } from './session-approvals.js';
import { createPolicyFetch, type PolicyFetchOptions } from './session-fetch.js';
import { createPolicyLookup, type LookupFunction, type PolicyLookupOptions } from './address-lookup.js';
import { DecisionPublisher, sessionSinks } from './decision-sink.js';
import { withReportInspect } from './format-report.js';
import { DecisionRecords, identityOf, type DecisionExtra } from './decision-record.js';
import { readSessionOptions, type SessionOptions } from './session-options.js';

/** Options of {@link PolicySession.guardTool}. */
export interface GuardToolOptions {
  /** Tool name; defaults to the function's name. */
  name?: string;
  /** USD per call. */
  cost?: number;
  metadata?: Metadata;
}

/** Options of {@link PolicySession.runTool}: a tool check's options (the tool's `input` among them). */
export type RunToolOptions = CheckToolOptions;

/** Options of {@link PolicySession.resolveApproval}: the answer, who gave it and why. */
export interface ApprovalDecisionInput {
  approved: boolean;
  by?: string;
  reason?: string;
}

/** Options of {@link PolicySession.claim}. */
export interface ClaimOptions {
  /**
   * The call is cancelled when this aborts: aborted by the time the allow is taken (a shared store can take a while),
   * the call will not run, so the allow is withdrawn instead ({@link PolicySession.withdraw}) and the claim is false.
   */
  signal?: AbortSignal;
}

/** Options of {@link PolicySession.approvalToken}. */
export interface ApprovalTokenOptions {
  /** The answer the token gives when redeemed. Default `approve`. */
  answer?: 'approve' | 'reject';
}

const DAY_MS = 86_400_000;

/** Most model calls {@link PolicySession.reserveModelCalls} reserves as one group. */
const MAX_MODEL_CALLS = 65_536;

type Mode = 'charge' | 'reserve';

/**
 * One agent run under a policy. The session coordinates: it reads each action once, asks the policy, holds or
 * charges money in its {@link BudgetLedger}, asks the approver, and records the decision in its {@link AuditTrail}.
 * Every check that costs money reserves it before its first `await`, so concurrent checks never overspend.
 */
// How recent an allow is when a claim takes it without reading a shared halt store again (its check read it).
const SHARED_HALT_FRESH_MS = 1000;

export class PolicySession {
  readonly id: string;
  /**
   * A drop-in `fetch` that checks the network policy on every request and every redirect hop. A denied request
   * throws {@link PolicyDeniedError} (or {@link ApprovalRequiredError}) and is never sent.
   */
  readonly fetch: typeof globalThis.fetch;
  /**
   * A `dns.lookup` for what opens the connections — `new http.Agent({ lookup: session.lookup })`, or undici's
   * `new Agent({ connect: { lookup: session.lookup } })` passed to `session.fetch` as `dispatcher` — that decides the
   * addresses a name resolves to: when `network.block` covers any of them (a metadata address, this machine), the
   * connection is refused with a {@link PolicyDeniedError} and the deny is recorded. The socket connects to the
   * address it answers, so a name that resolves elsewhere on its next lookup is decided again then.
   */
  readonly lookup: LookupFunction;

  private readonly options: SessionOptions;
  private fixed: PolicyEvaluator;
  private readonly provider: PolicyProvider | undefined;
  private readonly halts: HaltStore;
  /** Set once the halt store has answered with a promise (a shared store: each read is a round trip). */
  private haltsAnswerLater = false;
  private readonly ledger: BudgetLedger;
  private readonly limits: LimitCounter;
  private readonly trail: AuditTrail;
  private readonly keys = new CallKeys();
  private readonly callKeyStore: CallKeyStore | undefined;
  /** With a shared call-key store: the keyed decisions it holds, by decision, with the token that claims them. */
  private readonly keyedCalls: WeakMap<Decision, { call: CallKeyRef; token: string }> | undefined;
  private readonly settling: ReservationContext;
  private readonly pending = new Set<Reservation>();
  private readonly publisher: DecisionPublisher;
  private readonly reservations = new WeakMap<Decision, Reservation>();
  /** The groups of {@link reserveModelCalls} are reserved one at a time: the end of the last one queued. */
  private groupsReserved: Promise<void> = Promise.resolve();
  /** The store lease of each allowed reservation that holds money. */
  private readonly leases = new WeakMap<Decision, string>();
  // Where reserve-mode decisions sit in the audit trail, so their settled versions can take their place.
  private readonly slots = new WeakMap<Decision, number>();
  // Allows that have been used for their one execution, by the sequence number of their id (a settled version of a
  // decision keeps its id).
  private readonly used = new UsedAllows();
  private readonly approvals: SessionApprovals;
  private readonly records: DecisionRecords;
  private readonly startedMs = Date.now();
  private readonly startedAt = new Date(this.startedMs).toISOString();
  private endedMs: number | null = null;

  /**
   * @param provider A live policy source: the session takes its current policy at every check (and its halts).
   */
  constructor(policy: PolicyEvaluator, given: SessionOptions = {}, provider?: PolicyProvider) {
    const options = readSessionOptions(given);
    this.fixed = provider?.current ?? policy;
    this.provider = provider;
    this.halts = options.halts ?? provider?.halts ?? policy.halts;
    this.options = options;
    this.id = options.id ?? randomUUID();
    // With call keys shared by the processes of one session, each session object numbers its decisions under a tag
    // of its own (`<session id>:<tag>.<n>`), so two processes never record two different decisions under one id.
    this.records = new DecisionRecords(this.id, options.callKeys === undefined ? `${this.id}:` : `${this.id}:${randomUUID().slice(0, 8)}.`);
    const budget = policy.normalized.budget;
    this.ledger = new BudgetLedger(
      options.store ?? new InMemoryBudgetStore(),
      this.id,
      { key: options.budgetKey ?? this.id, period: budget?.period ?? 'session' },
      budget?.maxSpendNanos ?? null,
      budget?.softLimit ?? null,
      options.onSoftLimit,
      options.leaseTtlMs ?? 900_000,
      policy.normalized.mode === 'enforce',
    );
    this.limits = new LimitCounter(options.limitStore ?? new InMemoryRateLimitStore(), this.id, this.ledger.budget.key);
    this.callKeyStore = options.callKeys;
    this.keyedCalls = options.callKeys === undefined ? undefined : new WeakMap();
    this.trail = new AuditTrail(options.maxDecisions ?? 10_000);
    this.approvals = new SessionApprovals(options.approvals ?? new InMemoryApprovalStore(), this.id, options.approvalSecret, options.inlineApprovals ?? true);
    this.publisher = new DecisionPublisher(options.onDecision, options.onDecisionError ?? 'deny', sessionSinks(options.sinks, options.telemetry !== false));
    this.settling = {
      ledger: this.ledger,
      trail: this.trail,
      pending: this.pending,
      priceUsage: (usage) => this.priceUsage(usage),
      settled: (decision) => this.publisher.settled(decision, this),
    };
    this.fetch = createPolicyFetch(this);
    this.lookup = this.createLookup();
  }

  // ---- checks -------------------------------------------------------------------------------------------------

  /** Decides a tool call and records it; an allowed cost is charged at once. */
  checkTool(name: string, options?: CheckToolOptions): Promise<Decision> {
    return this.check(options === undefined ? { type: 'tool', name } : withOptions('tool', name, options), 'charge');
  }

  /**
   * {@link checkTool} for integrations that run it on every tool call: the same decision, recorded and charged the
   * same way, handed back as a value when every store answered at once (the in-memory defaults) and as a promise
   * when one did not, so the caller awaits only when there is something to wait for. A check that fails is a
   * recorded denial here too, never a throw.
   */
  decideTool(name: string, options?: CheckToolOptions): Decision | Promise<Decision> {
    return this.decideNow(options === undefined ? { type: 'tool', name } : withOptions('tool', name, options), 'charge');
  }

  /** Decides an outbound request by its normalised host and records it; an allowed cost is charged at once. */
  checkHttp(url: string | URL, options?: CheckHttpOptions): Promise<Decision> {
    return this.check(options === undefined ? { type: 'http', url } : withOptions('http', url, options), 'charge');
  }

  /** Decides spending that is neither a tool nor a request and records it; allowed spend is charged at once. */
  checkCost(cost: number, options: CheckCostOptions): Promise<Decision> {
    return this.check(options === undefined ? ({ type: 'cost', cost } as ActionInput) : withOptions('cost', cost, options), 'charge');
  }

  /**
   * Decides an action without recording or spending anything. Synchronous and pure: the same state gives the same
   * answer. Approvers are not consulted.
   */
  evaluate(action: ActionInput): Decision {
    const policy = this.policy;
    let prepared: Prepared;
    let approved: boolean;
    try {
      prepared = prepareAction(policy, action);
      approved = action?.approved === true;
    } catch (error) {
      prepared = prepareAction(policy, unreadableAction(error));
      approved = false;
    }
    const halt = this.haltState();
    const verdict = this.verdict(prepared, approved, policy, halt instanceof Promise ? undefined : halt);
    return this.makeDecision(prepared, verdict, randomUUID(), approved && verdict.approvedRule ? CALLER_APPROVAL : undefined);
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
   * Marks an allow as used for the one execution it authorises, in this process (see {@link claim} for a session
   * whose keyed calls sit in a shared call-key store: there `consume` throws `CLAIM_REQUIRED` for a keyed allow,
   * never marking it where another process cannot see it). Call it just before running what was allowed, and
   * run it only if this returns true: it returns true once per allow this session recorded, and false for a deny, a
   * `require_approval`, an allow already used, or another session's decision. After it, a keyed repeat of the same
   * call (same `idempotencyKey`, same fingerprint) is a new action, decided and charged again, so a framework that
   * re-runs a call id never runs it free. While a halt covers the session (read from a halt store that answers at
   * once) it throws the recorded halt {@link PolicyDeniedError} instead, and the allow stays unused; so it does when
   * the policy changed since the allow was decided and the policy in force would not allow it.
   *
   * @example
   * ```ts
   * const decision = await session.checkTool('search', { input, idempotencyKey: call.id });
   * if (decision.decision === 'allow' && session.consume(decision)) await search(input);
   * ```
   */
  consume(decision: Decision): boolean {
    try {
      return this.consumeRead(decision);
    } catch (error) {
      // Something that cannot even be read (a proxy or getter that throws) is no allow of this session: nothing runs.
      if (AgentPolicyError.isInstance(error)) throw error;
      return false;
    }
  }

  private consumeRead(decision: Decision): boolean {
    if (!this.isOwnAllow(decision) || this.spentHere(decision)) return false;
    // A halt in force stops what has not run yet. Only a halt store that answers at once can be read here; with one
    // that answers later (shared), claim() waits for it.
    if (!this.haltsAnswerLater) {
      const halt = this.haltState();
      if (halt !== undefined && !(halt instanceof Promise)) throw this.stoppedBeforeRun(decision, haltVerdict(halt)).error;
    }
    const stop = this.endedVerdict() ?? this.changedPolicyVerdict(decision);
    if (stop !== undefined) throw this.stoppedBeforeRun(decision, stop).error;
    return this.consumeUnhalted(decision);
  }

  // An allow this session object made and already used (or spent when it was stopped and its money given back).
  private spentHere(decision: Decision): boolean {
    const seq = this.records.stampedSeq(decision);
    return seq !== undefined && this.used.has(seq);
  }

  // An allow this session made (by id: the stamp is checked where it matters).
  private isOwnAllow(decision: Decision): boolean {
    return typeof decision === 'object' && decision !== null && decision.decision === 'allow' && decision.sessionId === this.id;
  }

  private consumeUnhalted(decision: Decision): boolean {
    if (this.keyedCalls !== undefined) {
      // Marking it here would let another process run it too: only the store can say who runs it.
      if (this.keyedCalls.has(decision)) {
        throw new AgentPolicyError('CLAIM_REQUIRED', `the allow ${decision.id} is kept in a shared call-key store: take its one execution with \`await session.claim(decision)\`, not consume()`);
      }
      // Only a decision this session object made counts here (its stamp): with the same session id in several
      // processes, an id alone could name another process's decision, and a settled copy has run already.
      if (this.records.stampedSeq(decision) === undefined) return false;
    }
    const seq = this.seqOf(decision);
    if (seq === 0 || this.used.has(seq)) return false;
    this.used.add(seq);
    return true;
  }

  /**
   * Takes the one execution an allow authorises, atomically across processes: like {@link consume}, true once per
   * allow and false for anything else, but with a shared call-key store (`callKeys`) a keyed allow is marked used in
   * the store, so when several processes hold the same allow (a call retried elsewhere) exactly one claim is true.
   * Without a shared store it is `consume` and answers at once (a boolean, no promise); with one it answers with a
   * promise, which rejects (a `STORE_UNAVAILABLE` error) when the store cannot be reached: the action does not run.
   * While a halt covers the session it rejects with the recorded halt {@link PolicyDeniedError}, gives back the money
   * reserved for the allow, and leaves the allow unused; so it does when the policy changed since the allow was
   * decided (a source updated or reloaded) and the policy in force would not allow it, and once the session has ended
   * (`end()`: its reserved money was charged at its estimate then). An allow whose reserved money
   * was given back that way never runs afterwards (a claim of it is false): check the action again.
   * `await` it either way. Adapters and {@link runTool} use it.
   *
   * @example
   * ```ts
   * const decision = await session.checkTool('send_email', { input, idempotencyKey: call.id });
   * if (decision.decision === 'allow' && (await session.claim(decision))) await sendEmail(input);
   * ```
   */
  claim(decision: Decision, options?: ClaimOptions): boolean | Promise<boolean> {
    try {
      if (options === undefined) return this.claimRead(decision);
      const signal = readSignal(options);
      const taken = this.claimRead(decision);
      if (signal === undefined) return taken;
      return taken instanceof Promise ? taken.then((took) => this.unlessAborted(decision, took, signal)) : this.unlessAborted(decision, taken, signal);
    } catch (error) {
      // Something that cannot even be read (a proxy or getter that throws) is no allow of this session: nothing runs.
      if (AgentPolicyError.isInstance(error)) throw error;
      return false;
    }
  }

  // A claim whose call was cancelled as the allow was taken: the call will not run, so the allow is withdrawn.
  private unlessAborted(decision: Decision, taken: boolean, signal: AbortSignal): boolean | Promise<boolean> {
    let aborted: boolean;
    try {
      aborted = signal.aborted === true;
    } catch {
      // A signal that cannot be read any more: the call is taken as cancelled (it does not run).
      aborted = true;
    }
    if (!taken || !aborted) return taken;
    return this.giveBackWithdrawn(decision).then(() => false);
  }

  /**
   * Withdraws an allow whose call will not run (the framework dropped the call, the client cancelled it, the run ended
   * before it): takes its one execution like {@link claim}, so no run of the call can use it (a repeat is decided and
   * charged anew), then gives back the money its reservation holds and the `limits:` slots it took, since only calls
   * that run count. True when this took the allow. False, giving nothing back, when the call ran or another run
   * took it first (a second withdraw among them), when it is no allow this session object made, or when the claim was
   * refused (a halt, the session's end, a store that is down: the session's own rule settles the money then). The
   * slots come back for the decision the check returned, in the session object that took them (with a shared
   * call-key store, a copy of the allow read back in another process takes it but gives no slot back: fewer calls,
   * never more). A slot whose window has passed gives nothing to the window now open.
   *
   * @example
   * ```ts
   * const decision = await session.checkTool('search', { input, idempotencyKey: call.id });
   * if (callDropped) await session.withdraw(decision); // its max_calls slot is free again
   * ```
   */
  async withdraw(decision: Decision): Promise<boolean> {
    let taken: boolean;
    try {
      taken = await this.claimRead(decision);
    } catch {
      return false;
    }
    if (taken) await this.giveBackWithdrawn(decision);
    return taken;
  }

  // What an allow taken for a call that will not run holds goes back: the money its reservation holds, its limit slots.
  private async giveBackWithdrawn(decision: Decision): Promise<void> {
    const reservation = this.reservations.get(decision);
    const held = this.records.takeSlots(decision);
    await Promise.all([reservation !== undefined && !reservation.settled ? reservation.release() : undefined, held === undefined ? undefined : this.giveBackSlots(decision, held)]);
  }

  // Limit slots of an allow that did not run, given back; a store that is down keeps them (fewer calls, never more).
  private async giveBackSlots(decision: Decision, held: readonly (string | number)[]): Promise<void> {
    try {
      await this.limits.giveBack(held);
    } catch (error) {
      process.emitWarning(`agentpolicy: could not give back the limit slots of allow ${decision.id}, which did not run (they stay taken meanwhile: fewer calls, never more): ${errorMessage(error)}`);
    }
  }

  private claimRead(decision: Decision): boolean | Promise<boolean> {
    if (this.isOwnAllow(decision) && this.spentHere(decision)) return false;
    if (this.isOwnAllow(decision) && this.haltMayHaveChanged(decision)) {
      // A halt in force stops what has not run yet, an allow given before the halt included.
      const halt = this.haltState();
      if (halt instanceof Promise) return halt.then((state) => (state === undefined ? this.claimUnhalted(decision) : this.refuseHalted(decision, state)));
      if (halt !== undefined) return this.refuseHalted(decision, halt);
    }
    return this.claimUnhalted(decision);
  }

  // Whether a claim reads the halts again: always from a store that answers at once (no cost); from a shared one (a
  // round trip) only when the allow was decided more than a second ago, since its own check read the halts then.
  private haltMayHaveChanged(decision: Decision): boolean {
    if (!this.haltsAnswerLater) return true;
    const decidedMs = Date.parse(decision.timestamp);
    return !(Date.now() - decidedMs < SHARED_HALT_FRESH_MS);
  }

  private async refuseHalted(decision: Decision, halt: HaltState): Promise<never> {
    return this.refuseBeforeRun(decision, haltVerdict(halt));
  }

  private async refuseBeforeRun(decision: Decision, verdict: Verdict): Promise<never> {
    const { error, givenBack } = this.stoppedBeforeRun(decision, verdict);
    await givenBack;
    throw error;
  }

  // An allow stopped before it runs (by a halt, or by the policy now in force): the deny is recorded against its
  // action and the allow is not used. A cost charged when it was decided stays charged, and the allow can still be
  // claimed once the halt is lifted or the policy allows it again. Money reserved for it is given back, and then the
  // allow can never run (it would run on money the budget no longer holds): it is spent, here and in a shared
  // call-key store, so a keyed repeat is decided and reserved anew. Returns the error to throw, and the release under
  // way.
  private stoppedBeforeRun(decision: Decision, verdict: Verdict): { error: Error; givenBack: Promise<unknown> | undefined } {
    const givenBack = this.giveBackStopped(decision);
    const prepared = { policyHash: this.policy.hash, action: decision.action, identity: identityOf(decision), prepared: null, invalid: null };
    const denied = this.record(this.makeDecision(prepared, { ...verdict, reason: `${verdict.reason}; the allow ${decision.id} was not run` }, this.nextId(), undefined));
    return { error: decisionError(denied), givenBack };
  }

  // Gives back the money reserved for an allow that will not run, and spends the allow (here, and in a shared
  // call-key store) so that it never runs on money the budget no longer holds. Nothing when it reserved nothing.
  // Its limit slots go back too, once it is spent here (or, with a shared call-key store, once this took it there).
  private giveBackStopped(decision: Decision): Promise<unknown> | undefined {
    const reservation = this.reservations.get(decision);
    if (reservation === undefined || reservation.settled) return undefined;
    const seq = this.records.stampedSeq(decision);
    if (seq !== undefined) this.used.add(seq);
    const held = this.records.takeSlots(decision);
    const keyed = this.keyedCalls?.get(decision);
    const spent = keyed === undefined ? undefined : Promise.resolve().then(() => (this.callKeyStore as CallKeyStore).claim(keyed.call, keyed.token));
    const slots =
      held === undefined ? undefined : spent === undefined ? this.giveBackSlots(decision, held) : spent.then((taken) => (taken ? this.giveBackSlots(decision, held) : undefined));
    return Promise.all([reservation.release(), spent, slots]).catch((error: unknown) =>
      process.emitWarning(`agentpolicy: could not give back the money of stopped allow ${decision.id}: ${errorMessage(error)}`),
    );
  }

  // An ended session runs nothing more: an allow it gave before end() and not run yet is stopped like one a halt
  // stops (its reserved money was charged at its estimate by end(), as every reservation open then is).
  private endedVerdict(): Verdict | undefined {
    if (this.endedMs === null) return undefined;
    return { decision: 'deny', reason: 'the session has ended', rule: { section: 'session', check: 'ended' }, approvedRule: false };
  }

  /**
   * An allow decided under another policy than the one now in force (its source was updated or reloaded since, or
   * another process decided it under its own policy) is judged again before it runs: by the new policy's lists,
   * rules and approval rules, with the approval it had (its limit slots were taken when it was decided, and so was its
   * money: a reservation is stopped only when a lowered max_spend is below what is spent and held).
   * Returns the verdict that stops it, or undefined when it may run. An action the record cannot give back exactly
   * (its input or URL was cut when recorded) cannot be judged again, and is stopped: check it again.
   */
  private changedPolicyVerdict(decision: Decision): Verdict | undefined {
    // The usual case, on every claim: the policy that decided it is still in force (compared before the fingerprint
    // is read: reading it works out its SHA-256).
    if (decision.policyHash === this.policy.hash) return undefined;
    const when = 'after this allow was decided';
    const judged = this.judgedAgain(decision.policyHash, decision.action, decision.fingerprint, decision.approved === true, when);
    if (judged !== undefined) return judged;
    // Its money is held already: it still fits unless the new limit is below what is spent and held (a lowered
    // max_spend), and then it is stopped and its money given back, so what runs stays within the new limit.
    const reservation = this.reservations.get(decision);
    if (reservation === undefined || reservation.settled) return undefined;
    const past = this.ledger.heldPastLimit(Math.round(reservation.estimate * 1e9));
    if (past === undefined) return undefined;
    return { ...past, reason: `the policy changed (${decision.policyHash.slice(0, 12)} → ${this.policy.hash.slice(0, 12)}) ${when}: ${past.reason}` };
  }

  // The verdict of the policy in force on an action allowed under the policy `decidedUnder` (see changedPolicyVerdict).
  private judgedAgain(decidedUnder: string, action: Action, fingerprint: string, approved: boolean, when: string): Verdict | undefined {
    const policy = this.policy;
    if (decidedUnder === policy.hash) return undefined;
    const changed = `the policy changed (${decidedUnder.slice(0, 12)} → ${policy.hash.slice(0, 12)}) ${when}`;
    let verdict: Verdict;
    try {
      const prepared = prepareAction(policy, recordedAction(action));
      if (prepared.identity.fingerprint !== fingerprint || prepared.prepared === null) {
        return { decision: 'deny', reason: `${changed}, and its action cannot be judged again from the record (a part of it was cut when recorded): check it again`, rule: Object.freeze({ section: 'input', check: 'action' }), approvedRule: false };
      }
      verdict = policy.decide(prepared.prepared, 0, 0, approved);
    } catch (error) {
      return errorVerdict(`${changed}, and judging it again failed`, error);
    }
    if (verdict.decision === 'allow') return undefined;
    const why = verdict.decision === 'require_approval' ? `the policy in force requires approval: ${verdict.reason}` : verdict.reason;
    return { decision: 'deny', reason: `${changed}: ${why}`, rule: verdict.rule, approvedRule: false };
  }

  private claimUnhalted(decision: Decision): boolean | Promise<boolean> {
    if (this.isOwnAllow(decision)) {
      const stop = this.endedVerdict() ?? this.changedPolicyVerdict(decision);
      if (stop !== undefined) return this.refuseBeforeRun(decision, stop);
    }
    const keyed = this.keyedCalls?.get(decision);
    if (keyed === undefined) return this.isOwnAllow(decision) && this.consumeUnhalted(decision);
    if (decision.decision !== 'allow') return false;
    try {
      return (this.callKeyStore as CallKeyStore).claim(keyed.call, keyed.token);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Runs a tool call under the policy, exactly once per allow: decides the call (with its `input`, cost, key and
   * answer), throws {@link PolicyDeniedError} / {@link ApprovalRequiredError} unless it is allowed, marks the allow
   * used ({@link claim}), runs `execute`, and settles the cost.
   *
   * **The rule for a tool that throws** (the same in {@link guardTool} and every adapter): the call ran, so its
   * allow is used, and the error is rethrown unchanged. The declared cost is settled by {@link Reservation.fail}:
   * released when the error is an agentpolicy error or carries a 4xx `status` / `statusCode` (the tool refused the
   * input, nothing was done or billed), charged in full otherwise (the tool may have done the work, or a paid API may
   * have billed it, before failing). Adapters that run the tool themselves call `reservation.fail({ error })`.
   *
   * @example
   * ```ts
   * const result = await session.runTool('send_email', { input: args, cost: 0.01, idempotencyKey: call.id }, () => sendEmail(args));
   * ```
   */
  async runTool<R>(name: string, options: RunToolOptions, execute: () => R | Promise<R>): Promise<Awaited<R>> {
    if (typeof execute !== 'function') throw new AgentPolicyError('INVALID_ARGUMENT', 'runTool needs a function to run');
    const reservation = await this.reserveAction(options === undefined ? { type: 'tool', name } : withOptions('tool', name, options));
    const decision = reservation.decision;
    if (!reservation.allowed) throw decisionError(decision);
    const claimed = this.claim(decision);
    if (!(claimed instanceof Promise ? await claimed : claimed)) {
      throw new AgentPolicyError('DECISION_USED', `the allow ${decision.id} for tool ${JSON.stringify(decision.action.type === 'tool' ? decision.action.name : '')} was already used for one execution`);
    }
    let result: Awaited<R>;
    try {
      result = await execute();
    } catch (error) {
      await reservation.fail({ error });
      throw error;
    }
    await reservation.commit();
    return result;
  }

  /**
   * Wraps a function so that every call is checked as a tool call first, with the call's arguments (an array) as
   * its `input`. A call that is not allowed throws and the function never runs; each call runs under its own allow
   * (see {@link runTool}, including the rule for a function that throws).
   *
   * @example
   * ```ts
   * const sendEmail = session.guardTool(async (to: string) => mailer.send(to), { name: 'send_email', cost: 0.01 });
   * ```
   */
  guardTool<A extends unknown[], R>(fn: (...args: A) => R | Promise<R>, options: GuardToolOptions = {}): (...args: A) => Promise<Awaited<R>> {
    if (typeof fn !== 'function') throw new AgentPolicyError('INVALID_ARGUMENT', 'guardTool needs a function');
    if (typeof options !== 'object' || options === null) throw new AgentPolicyError('INVALID_ARGUMENT', `guardTool options must be an object, got ${describe(options)}`);
    // Read once: every call is checked under the same name, cost and metadata.
    let name: unknown;
    let cost: number | undefined;
    let metadata: Metadata | undefined;
    try {
      ({ cost, metadata } = options);
      name = options.name ?? fn.name;
    } catch (error) {
      throw new AgentPolicyError('INVALID_ARGUMENT', `guardTool options cannot be read: ${errorMessage(error)}`, { cause: error });
    }
    if (!name) throw new AgentPolicyError('INVALID_ARGUMENT', 'guardTool needs a name for an anonymous function: guardTool(fn, { name })');
    return (...args: A): Promise<Awaited<R>> =>
      this.runTool(name as string, { input: args, ...(cost !== undefined ? { cost } : {}), ...(metadata ? { metadata } : {}) }, () => fn(...args));
  }

  // ---- approvals ----------------------------------------------------------------------------------------------

  /** This session's approval requests still waiting for an answer, oldest first. */
  async pendingApprovals(): Promise<readonly ApprovalState[]> {
    return this.approvals.pending();
  }

  /** One of this session's approval requests and where it stands, or undefined. */
  getApproval(requestId: string): Promise<ApprovalState | undefined> {
    return this.approvals.get(requestId);
  }

  /**
   * Waits until one of this session's approval requests is no longer pending (answered from anywhere, or expired),
   * polling the approval store. Resolves with where it stands then, or with the still-pending state when `timeoutMs`
   * passes or `signal` aborts first; `undefined` for an unknown request. It only waits: resume by checking the same
   * action with `approval: { requestId }`.
   *
   * @example
   * ```ts
   * const state = await session.waitForApproval(decision.approvalRequest.id, { timeoutMs: 60_000 });
   * if (state?.status === 'approved') decision = await session.checkTool(name, { input, approval: { requestId: state.id } });
   * ```
   */
  async waitForApproval(requestId: string, options: { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal } = {}): Promise<ApprovalState | undefined> {
    const { timeoutMs, intervalMs, signal } = readWaitOptions(options);
    const deadline = Date.now() + Math.max(0, timeoutMs ?? 0);
    const interval = Math.max(1, intervalMs ?? 250);
    for (;;) {
      const state = await this.getApproval(requestId);
      if (state?.status !== 'pending' || signal?.aborted) return state;
      const left = deadline - Date.now();
      if (left <= 0) return state;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(interval, left));
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }


  /**
   * Answers one of this session's approval requests, from anywhere (a web handler, a Slack action, another process
   * with the same store): approve or reject, by whom, why. The first answer wins; an expired request cannot be
   * answered. The agent then resumes by checking the same action with `approval: { requestId }`; an approval
   * authorises one execution of exactly the action the request was raised for.
   */
  resolveApproval(requestId: string, answer: ApprovalDecisionInput): Promise<ResolveResult> {
    return this.approvals.resolve(requestId, answer);
  }

  /**
   * Signs a token that answers one pending request of this session (for a one-click link): HMAC-SHA256 with
   * `approvalSecret` over the request id, the action's fingerprint, the request's expiry and the answer. Redeem it
   * with {@link resolveApprovalToken} in any process with the same secret and store.
   */
  approvalToken(requestId: string, options: ApprovalTokenOptions = {}): Promise<string> {
    let answer: 'approve' | 'reject';
    try {
      answer = options?.answer ?? 'approve';
    } catch (error) {
      return Promise.reject(new AgentPolicyError('INVALID_ARGUMENT', `approvalToken options cannot be read: ${errorMessage(error)}`, { cause: error }));
    }
    return this.approvals.token(requestId, answer);
  }

  /**
   * Redeems a signed approval token: refused (and nothing changes) when its signature does not match, it has
   * expired, its request is unknown, belongs to another session, is for another action, or already has an answer.
   * Otherwise it answers its request, once. `by` and `reason` say who followed the link and why.
   */
  resolveApprovalToken(token: string, answer: { by?: string; reason?: string } = {}): Promise<ResolveResult | TokenRefusal> {
    return this.approvals.redeem(token, answer);
  }

  // ---- reservations -------------------------------------------------------------------------------------------

  /** Reserves an estimated cost (USD) for work whose real cost comes later. See {@link Reservation}. */
  reserve(estimate: number, options: CheckCostOptions): Promise<Reservation> {
    return this.reserveAction(options === undefined ? ({ type: 'cost', cost: estimate } as ActionInput) : withOptions('cost', estimate, options));
  }

  /** Reserves any action's cost (a tool or request whose real cost comes later). */
  async reserveAction(action: ActionInput): Promise<Reservation> {
    const decision = await this.check(action, 'reserve');
    return this.reservation(decision, undefined);
  }

  /**
   * Reserves the worst-case cost of a model call, as {@link estimateModelCall} bounds it (text, images, files and
   * audio in the input; the output limit, or the model's listed maximum, times `n`; images, characters or seconds
   * for models billed by those), priced by the policy's `pricing:` or the catalog. Under a budget a call with no
   * known price or no known bound is denied before it is sent, with a reason that says what to set. Commit the real
   * usage afterwards, or release on a request that was never billed.
   */
  async reserveModelCall(estimate: ModelCallEstimate): Promise<Reservation> {
    // The estimate's own fields, read once; an estimate that cannot be read (a getter or proxy that throws) is denied.
    let model: string;
    let provider: string | undefined;
    let given: { source: unknown; approved: unknown; idempotencyKey: unknown };
    try {
      const { model: named, provider: by, source, approved, idempotencyKey } = estimate ?? ({} as Partial<ModelCallEstimate>);
      model = typeof named === 'string' ? named : '';
      provider = by;
      given = { source, approved, idempotencyKey };
    } catch (error) {
      const decision = this.recordDenied({ type: 'cost', source: 'invalid', cost: 0 }, `the model call estimate cannot be read (${errorMessage(error)}); denied`, { section: 'input', check: 'usage' });
      return this.reservation(decision, undefined);
    }
    let worst: ModelEstimate | Promise<ModelEstimate>;
    const failed = (error: unknown): ModelEstimate => ({ ok: false, reason: `the estimate failed: ${errorMessage(error)}`, unpriced: false, rule: { section: 'error', message: errorMessage(error) }, metadata: {} });
    try {
      worst = estimateModelCall(estimate, this.policy.normalized.pricing, { fallbackMaxOutputTokens: this.options.defaultMaxOutputTokens });
    } catch (error) {
      worst = failed(error);
    }
    if (worst instanceof Promise) worst = await worst.catch(failed);
    const source = (given.source ?? modelSource(model, provider)) as string;
    const common = {
      source,
      metadata: worst.metadata,
      ...(given.approved !== undefined ? { approved: given.approved as boolean } : {}),
      ...(given.idempotencyKey !== undefined ? { idempotencyKey: given.idempotencyKey as string } : {}),
    };
    if (!worst.ok) {
      // Without a budget no bound is needed: a model with no price or no known limit is recorded at $0.
      if ((worst.unpriced || worst.rule.section === 'pricing') && this.ledger.limit === null) {
        const decision = await this.check({ type: 'cost', cost: 0, ...common }, 'reserve');
        return this.reservation(decision, { model, provider });
      }
      const decision = this.recordDenied({ type: 'cost', source, cost: 0, metadata: worst.metadata }, worst.reason, worst.rule);
      return this.reservation(decision, { model, provider });
    }
    const decision = await this.check({ type: 'cost', cost: nanosToUsd(worst.nanos), ...common }, 'reserve');
    return this.reservation(decision, { model, provider });
  }

  /**
   * Reserves the worst cases of model calls that are one piece of work (the batched requests of one embeddings call):
   * all of them or none, before any is sent. Returns one reservation per estimate, in order, when every one is
   * allowed; otherwise only the first that is not (its decision says why), every one reserved before it released.
   * The calls of one group are reserved one after another, and the groups of this session one group at a time, so
   * two groups under a nearly spent budget cannot each hold a part and both be denied for want of the rest.
   */
  reserveModelCalls(estimates: readonly ModelCallEstimate[]): Promise<Reservation[]> {
    if (!Array.isArray(estimates)) {
      return Promise.reject(new AgentPolicyError('INVALID_ARGUMENT', `reserveModelCalls takes an array of model call estimates, got ${describe(estimates)}`));
    }
    // A length costs nothing to set (a sparse array, a proxy): copying one of billions of slots would exhaust memory.
    if (estimates.length > MAX_MODEL_CALLS) {
      return Promise.reject(new AgentPolicyError('INVALID_ARGUMENT', `reserveModelCalls takes at most ${MAX_MODEL_CALLS} estimates at once, got ${estimates.length}`));
    }
    let group: ModelCallEstimate[];
    try {
      group = [...estimates];
    } catch (error) {
      return Promise.reject(new AgentPolicyError('INVALID_ARGUMENT', `reserveModelCalls cannot read its estimates: ${errorMessage(error)}`, { cause: error }));
    }
    const reserved = this.groupsReserved.then(() => this.reserveGroup(group));
    this.groupsReserved = reserved.then(
      () => undefined,
      () => undefined,
    );
    return reserved;
  }

  private async reserveGroup(estimates: readonly ModelCallEstimate[]): Promise<Reservation[]> {
    const held: Reservation[] = [];
    try {
      for (const estimate of estimates) {
        const reservation = await this.reserveModelCall(estimate);
        if (!reservation.allowed) {
          await Promise.all(held.map((one) => one.release()));
          return [reservation];
        }
        held.push(reservation);
      }
    } catch (error) {
      await Promise.allSettled(held.map((one) => one.release()));
      throw error;
    }
    return held;
  }

  /**
   * Records the real cost of a model call that already happened (no reservation), priced from its token usage.
   * The spend is recorded even when it goes over the budget (it happened); later checks are then denied. An
   * unpriced model under a budget is recorded as a denial that says how to add a price.
   */
  async recordUsage(usage: TokenUsage, options: { source?: string; metadata?: Metadata } = {}): Promise<Decision> {
    let price: PriceResult;
    let source: string;
    let model: string;
    let metadata: Metadata;
    try {
      price = this.priceUsage(usage);
      model = typeof usage?.model === 'string' ? usage.model : '';
      source = options.source ?? modelSource(model, usage?.provider);
      metadata = { ...options.metadata, ...usageMetadata(usage) };
    } catch (error) {
      // Usage (or options) that cannot be read, by a getter or proxy that throws: no amount can be recorded from it.
      return this.recordDenied({ type: 'cost', source: 'invalid', cost: 0 }, `the usage cannot be read (${errorMessage(error)}), so no spend could be recorded from it`, { section: 'input', check: 'usage' });
    }
    if (!price.ok) {
      if (price.unpriced && this.ledger.limit === null) {
        return this.recordCharged({ type: 'cost', source, cost: 0, metadata }, 0, `usage of ${source} recorded at $0 (${price.reason})`);
      }
      // Usage pricing above what the ledger holds happened all the same: charged as the most it holds.
      if (price.tooLarge) return this.recordCharged({ type: 'cost', source, cost: nanosToUsd(MAX_NANOS), metadata }, MAX_NANOS, `usage of ${source} recorded as ${formatUsd(MAX_NANOS)} (${price.reason})`);
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

  /** {@link lookup} with another resolver asked first (`dns.lookup` by default). */
  createLookup(options: PolicyLookupOptions = {}): LookupFunction {
    return createPolicyLookup((hostname, addresses) => this.checkAddresses(hostname, addresses), options);
  }

  /**
   * Resolves the host of `url` with {@link lookup} and throws the recorded {@link PolicyDeniedError} when
   * `network.block` covers an address it resolves to. Nothing is resolved when the host is an IP address (its request
   * decides it) or when `network.block` names no address, range or this machine (no address could be blocked). A name
   * that cannot be resolved is left to the request itself. {@link fetch} calls it before each request it sends
   * without a `dispatcher`: the connection resolves the name again, so a name that rebinds in between is caught only
   * by a dispatcher that connects through {@link lookup}.
   */
  async checkResolvedAddresses(url: string | URL): Promise<void> {
    if (!this.policy.blocksAddresses) return;
    const target = parseTarget(url);
    if (!target.ok || target.isIp) return;
    const refused = await new Promise<unknown>((resolve) => {
      try {
        this.lookup(target.host, { all: true }, (error) => resolve(error));
      } catch (error) {
        resolve(error);
      }
    });
    const denied = findPolicyError(refused);
    if (denied !== undefined) throw denied;
  }

  // The addresses a name resolved to: the first one the policy blocks is a recorded deny (returned); under shadow mode
  // it is recorded as the shadow of an allow.
  private checkAddresses(hostname: string, addresses: readonly string[]): Decision | undefined {
    const policy = this.policy;
    for (const address of addresses) {
      const verdict = policy.decideAddress(hostname, address);
      if (verdict === undefined) continue;
      const action: HttpAction = { type: 'http', url: `http://${address}/`, domain: address, cost: 0, metadata: { via: 'lookup', hostname: boundString(hostname) } };
      const decision = this.record(this.makeDecision(this.recordOnly(action), verdict, this.nextId(), undefined));
      if (decision.decision !== 'allow') return decision;
    }
    return undefined;
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
   * its consumer abandoned, say) is charged at its estimate, so no spend is lost. A session whose id was generated
   * lets go of its own `limits:` counts in the in-memory store (one given an `id` keeps them: it may be opened
   * again). An allow given before and not run yet is refused when claimed or consumed afterwards (a recorded deny,
   * as under a halt). Returns the final report.
   */
  end(): SessionReport {
    if (this.endedMs === null) {
      this.endedMs = Date.now();
      this.settlePending();
      // A generated id never comes again: the session's own limit counts can go (a reused id keeps them).
      if (this.options.id === undefined) this.limits.forgetSessionCounts();
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
    return withReportInspect({
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
      shadowSummary: summary.shadowSummary,
      startedAt: this.startedAt,
      endedAt: this.endedMs === null ? null : new Date(this.endedMs).toISOString(),
      durationSeconds: (endMs - this.startedMs) / 1000,
      decisions: summary.decisions,
      decisionsDropped: summary.decisionsDropped,
      overrun: summary.overrun,
      overruns: summary.overruns,
    });
  }

  // ---- internals ----------------------------------------------------------------------------------------------

  /**
   * The policy in force: a live source's current one (the session switches at its next check, its budget held to the
   * new policy's limit from then on), or the policy the session was opened with.
   */
  get policy(): PolicyEvaluator {
    const provider = this.provider;
    if (provider === undefined) return this.fixed;
    const current = provider.current;
    if (current !== this.fixed) {
      this.fixed = current;
      const budget = current.normalized.budget;
      this.ledger.retarget(budget?.maxSpendNanos ?? null, budget?.softLimit ?? null);
    }
    return current;
  }

  /** Halts in force for this session's budget key, or undefined; a store that cannot answer counts as a halt. */
  haltState(): HaltState | undefined | Promise<HaltState | undefined> {
    try {
      const halt = this.halts.halted(this.ledger.budget.key);
      if (!(halt instanceof Promise)) return halt;
      this.haltsAnswerLater = true;
      return halt.catch((error: unknown) => haltFailure(error));
    } catch (error) {
      return haltFailure(error);
    }
  }

  private verdict(prepared: Prepared, approved: boolean, policy: PolicyEvaluator, halt: HaltState | undefined): Verdict {
    if (prepared.invalid || !prepared.prepared) {
      return { decision: 'deny', reason: prepared.invalid?.reason ?? 'invalid action', rule: prepared.invalid?.rule ?? { section: 'input', check: 'action' }, approvedRule: false };
    }
    const ended = this.endedVerdict();
    if (ended !== undefined) return ended;
    if (halt !== undefined) return haltVerdict(halt);
    const cost = prepared.prepared.costNanos;
    if (this.ledger.exceeded) return this.ledger.exceededVerdict(cost);
    const limit = this.ledger.limit;
    // A shared budget's snapshot may be stale (another process spent, a window rolled over): only the store's own
    // check-and-reserve decides whether money is left, so the policy sees an untouched budget here.
    const shared = this.ledger.storeDecides;
    if (!approved && cost <= policy.costRuleFloor) {
      if (cost === 0 || shared) return this.freeVerdict(prepared, policy);
      const { spent, reserved } = this.ledger.snapshot();
      if (limit === null || spent + reserved + cost <= limit) return this.freeVerdict(prepared, policy);
    }
    const { spent, reserved } = shared ? { spent: 0, reserved: 0 } : this.ledger.snapshot();
    try {
      return policy.decide(prepared.prepared, spent, reserved, approved);
    } catch (error) {
      return errorVerdict('the check failed, so the action is denied', error);
    }
  }

  // The verdict of an action that no budget or cost rule can touch: kept on its memoised prepared form.
  private freeVerdict(prepared: Prepared, policy: PolicyEvaluator): Verdict {
    const memo = prepared.memo;
    if (memo === undefined) return policy.decideFree(prepared.prepared as PreparedAction);
    let verdict = memo.free;
    if (verdict === undefined) {
      verdict = policy.decideFree(prepared.prepared as PreparedAction);
      // Shared by every decision of this action: frozen, its rule too.
      if (!Object.isFrozen(verdict)) verdict = Object.freeze({ ...verdict });
      if (!Object.isFrozen(verdict.rule)) Object.freeze(verdict.rule);
      memo.free = verdict;
    }
    return verdict;
  }

  private check(action: ActionInput, mode: Mode): Promise<Decision> {
    const result = this.decideNow(action, mode);
    return result instanceof Promise ? result : Promise.resolve(result);
  }

  // A check, synchronous while the stores are.
  private decideNow(action: ActionInput, mode: Mode): Decision | Promise<Decision> {
    try {
      const result = this.decideAndRecord(action, mode);
      return result instanceof Promise ? result.catch((error: unknown) => this.failClosed(action, error)) : result;
    } catch (error) {
      return this.failClosed(action, error);
    }
  }

  // A check that failed (a budget store that threw, say) is a recorded denial, never a silent allow or a lost entry.
  private failClosed(action: ActionInput, error: unknown): Decision {
    let prepared: Prepared;
    try {
      prepared = prepareAction(this.policy, action);
    } catch (readError) {
      prepared = prepareAction(this.policy, unreadableAction(readError));
    }
    return this.record(this.makeDecision(prepared, errorVerdict('the check failed, so the action is denied', error), this.nextId(), undefined));
  }

  // Synchronous whenever the stores are: no await (and no promise) between the decision and the reservation.
  private decideAndRecord(action: ActionInput, mode: Mode): Decision | Promise<Decision> {
    const halt = this.haltState();
    if (halt instanceof Promise) return halt.then((state) => this.decideAndRecordWith(action, mode, state));
    return this.decideAndRecordWith(action, mode, halt);
  }

  private decideAndRecordWith(action: ActionInput, mode: Mode, halt: HaltState | undefined): Decision | Promise<Decision> {
    const given = action?.approval;
    const bound = isBoundAnswer(given) ? given : undefined;
    const answer = given === undefined || bound !== undefined ? undefined : normalizeAnswer(given);
    const approved = action?.approved === true || answer?.approved === true;
    const key = typeof action?.idempotencyKey === 'string' ? action.idempotencyKey : undefined;
    // One policy decides the whole check, even if a live source swaps it meanwhile.
    const policy = this.policy;
    const prepared = prepareAction(policy, action);
    if (key !== undefined && this.callKeyStore !== undefined) return this.decideKeyed(this.callKeyStore, key, prepared, policy, mode, halt, bound, answer, approved, given === undefined);
    if (key !== undefined && halt === undefined) {
      // The same call again (same key, same fingerprint) before its allow was used gets the first decision back;
      // anything else is a new action. Under a halt it is decided again, so an allow from before the halt is not
      // handed out anew. After a policy change a deny is decided again, and so is an allow the policy in force would
      // no longer give (a pending approval request stays the one to answer).
      const previous = this.keys.get(prepared.identity, key);
      if (previous !== undefined && !this.used.has(this.seqOf(previous)) && (previous.decision !== 'require_approval' || (!approved && given === undefined))) {
        if (previous.policyHash === policy.hash || previous.decision === 'require_approval') return previous;
        if (previous.decision === 'allow') {
          if (this.changedPolicyVerdict(previous) === undefined) return previous;
          // The policy in force would not give this allow: the repeat is decided anew, and the earlier allow, which
          // will not run now, gives back the money it holds (and so can never run).
          void this.giveBackStopped(previous);
        }
      }
    }
    const decision = this.decide(prepared, policy, mode, halt, bound, answer, approved);
    // Under a halt nothing is remembered: once it is lifted, a keyed repeat gets the call's earlier decision (an
    // unused allow from before the halt), or is decided anew, never the halt's deny again.
    if (key === undefined || halt !== undefined) return decision;
    if (decision instanceof Promise) {
      return decision.then((settled) => {
        this.keys.remember(prepared.identity, key, settled);
        return settled;
      });
    }
    this.keys.remember(prepared.identity, key, decision);
    return decision;
  }

  /** Decides a prepared action and records it: the verdict, the limits, then the money and the approver. */
  private decide(prepared: Prepared, policy: PolicyEvaluator, mode: Mode, halt: HaltState | undefined, bound: BoundApprovalAnswer | undefined, answer: ReturnType<typeof normalizeAnswer> | undefined, approved: boolean): Decision | Promise<Decision> {
    if (this.ledger.recheckFirst && halt === undefined) {
      // Spend was seen past a shared or calendar budget: only its store can say whether that is still so.
      const rechecked = this.ledger.recheck();
      if (rechecked instanceof Promise) return rechecked.then(() => this.decideChecked(prepared, policy, mode, halt, bound, answer, approved));
    }
    return this.decideChecked(prepared, policy, mode, halt, bound, answer, approved);
  }

  private decideChecked(prepared: Prepared, policy: PolicyEvaluator, mode: Mode, halt: HaltState | undefined, bound: BoundApprovalAnswer | undefined, answer: ReturnType<typeof normalizeAnswer> | undefined, approved: boolean): Decision | Promise<Decision> {
    const verdict = this.verdict(prepared, approved, policy, halt);
    const limits = verdict.afterLimits === true && prepared.prepared !== null ? policy.limitsFor(prepared.prepared) : NO_LIMITS;
    if (limits.length === 0) return this.conclude(prepared, verdict, bound, answer, approved, mode);
    try {
      const counted = this.limits.count(limits, prepared.action, verdict);
      return counted instanceof Promise
        ? counted.then((outcome) => this.concludeCounted(prepared, outcome, bound, answer, approved, mode))
        : this.concludeCounted(prepared, counted, bound, answer, approved, mode);
    } finally {
      this.limits.clockMs = 0;
    }
  }

  /**
   * A keyed check with a shared call-key store: the first decision of this call comes back from the store while its
   * allow is unused (made by any process of this session) and the policy in force would still give it; otherwise the
   * call is decided under the store's "being decided" marker and remembered there. Under a halt it is decided again and nothing is handed out or remembered.
   */
  private async decideKeyed(
    store: CallKeyStore,
    key: string,
    prepared: Prepared,
    policy: PolicyEvaluator,
    mode: Mode,
    halt: HaltState | undefined,
    bound: BoundApprovalAnswer | undefined,
    answer: ReturnType<typeof normalizeAnswer> | undefined,
    approved: boolean,
    unanswered: boolean,
    retry = true,
  ): Promise<Decision> {
    if (halt !== undefined) return this.decide(prepared, policy, mode, halt, bound, answer, approved);
    const call: CallKeyRef = { sessionId: this.id, key, fingerprint: prepared.identity.fingerprint };
    const begun = await store.begin(call, { reuseApproval: !approved && unanswered, lockMs: this.decidingMs });
    if (begun.status === 'decided') {
      const decision = begun.decision;
      if (decision.sessionId !== this.id || decision.fingerprint !== call.fingerprint) {
        throw new AgentPolicyError('STORE_UNAVAILABLE', 'the call-key store handed back the decision of another call');
      }
      // An allow decided under another policy (another process still on the old one, a reload since) that the policy
      // in force would not give: it is spent in the store so that it runs nowhere, its money goes back, and the call
      // is decided anew here. Once: an old allow found again after that is stopped where it would run.
      if (retry && decision.decision === 'allow' && this.changedPolicyVerdict(decision) !== undefined) {
        if ((await store.claim(call, begun.token)) && begun.lease !== undefined) await this.ledger.release(begun.lease);
        return this.decideKeyed(store, key, prepared, policy, mode, halt, bound, answer, approved, unanswered, false);
      }
      (this.keyedCalls as WeakMap<Decision, { call: CallKeyRef; token: string }>).set(decision, { call, token: begun.token });
      if (begun.lease !== undefined) this.leases.set(decision, begun.lease);
      return decision;
    }
    if (begun.status === 'busy') {
      const reason = `the same call (idempotencyKey ${JSON.stringify(boundString(key))}) is being decided in another process, so it is denied rather than decided and charged twice; retry it`;
      return this.record(this.makeDecision(prepared, { decision: 'deny', reason, rule: { section: 'error', message: 'call being decided elsewhere' }, approvedRule: false }, this.nextId(), undefined));
    }
    let decision: Decision;
    try {
      decision = await this.decide(prepared, policy, mode, halt, bound, answer, approved);
    } catch (error) {
      await Promise.resolve(store.abandon(call, begun.lock)).catch(() => undefined);
      throw error;
    }
    let remembered: boolean;
    try {
      remembered = await store.remember(call, begun.lock, decision, this.leases.get(decision));
    } catch (error) {
      await this.giveBackHeld(decision, prepared);
      throw error;
    }
    if (!remembered) {
      await this.giveBackHeld(decision, prepared);
      throw new AgentPolicyError('STORE_UNAVAILABLE', `the call (idempotencyKey ${JSON.stringify(boundString(key))}) was decided too slowly: another process took it over meanwhile`);
    }
    (this.keyedCalls as WeakMap<Decision, { call: CallKeyRef; token: string }>).set(decision, { call, token: begun.lock });
    return decision;
  }

  /** How long a keyed call may take to decide before another process may decide it instead (it crashed, say). */
  private get decidingMs(): number {
    return this.options.approver === undefined ? 30_000 : (this.options.approvalTimeoutMs ?? 300_000) + 30_000;
  }

  // An allow that could not be remembered never runs (no claim can find it): the money and the limit slots it holds go
  // back.
  private async giveBackHeld(decision: Decision, prepared: Prepared): Promise<void> {
    if (decision.decision !== 'allow') return;
    const held = this.records.takeSlots(decision);
    if (held !== undefined) {
      try {
        await this.limits.giveBack(held);
      } catch {
        // The limit store is down too: the slots stay taken (fewer calls, never more).
      }
    }
    const costNanos = prepared.prepared?.costNanos ?? 0;
    const lease = this.leases.get(decision);
    try {
      if (lease !== undefined) await this.ledger.release(lease);
      else if (costNanos > 0 && decision.settlement === undefined) await this.ledger.refund(costNanos);
    } catch {
      // The budget store is down too: a lease is charged at its estimate when it expires (never lost).
    }
  }

  /** Turns a verdict into the recorded decision: a bound answer, the human's answer, the money, the approver. */
  private conclude(prepared: Prepared, verdict: Verdict, bound: BoundApprovalAnswer | undefined, answer: ReturnType<typeof normalizeAnswer> | undefined, approved: boolean, mode: Mode): Decision | Promise<Decision> {
    const costNanos = prepared.prepared?.costNanos ?? 0;
    if (bound !== undefined) return this.answerRequest(prepared, verdict, bound, costNanos, mode);
    if (answer !== undefined && !answer.approved && verdict.decision !== 'deny') {
      // A human said no: that is a denial whatever the policy would otherwise allow.
      return this.record(this.makeDecision(prepared, rejection(verdict, answer), this.nextId(), undefined));
    }
    if (verdict.decision === 'allow') {
      const approval = approved && verdict.approvedRule ? (answer?.approved ? callerApproval(answer) : CALLER_APPROVAL) : undefined;
      return this.allowWithMoney(prepared, verdict, costNanos, mode, approval);
    }
    if (verdict.decision === 'require_approval') return this.unapproved(prepared, verdict, costNanos, mode, undefined);
    return this.record(this.makeDecision(prepared, verdict, this.nextId(), undefined));
  }

  /** Concludes after the limits were counted; the slots taken are given back unless the action ends up allowed. */
  private concludeCounted(prepared: Prepared, counted: LimitCount, bound: BoundApprovalAnswer | undefined, answer: ReturnType<typeof normalizeAnswer> | undefined, approved: boolean, mode: Mode): Decision | Promise<Decision> {
    const decision = this.conclude(prepared, counted.verdict, bound, answer, approved, mode);
    const held = counted.held;
    if (held.length === 0) return decision;
    if (decision instanceof Promise) {
      return decision.then(
        (settled) => {
          if (settled.decision !== 'allow') return this.limits.giveBackThen(held, settled);
          this.records.holdSlots(settled, held);
          return settled;
        },
        async (error: unknown) => {
          await this.limits.giveBack(held);
          throw error;
        },
      );
    }
    if (decision.decision !== 'allow') return this.limits.giveBackThen(held, decision);
    this.records.holdSlots(decision, held);
    return decision;
  }

  // An action that needs approval and has none that counts: the approver is asked, or a request is raised.
  private unapproved(prepared: Prepared, verdict: Verdict, costNanos: number, mode: Mode, unused: UnusedAnswer | undefined): Promise<Decision> {
    const approver = this.options.approver;
    return approver ? this.askApprover(approver, prepared, verdict, costNanos, mode, unused) : this.raiseRequest(prepared, verdict, unused);
  }

  // An answer that names a request counts only for that request, for exactly this action, once.
  private async answerRequest(prepared: Prepared, verdict: Verdict, bound: BoundApprovalAnswer, costNanos: number, mode: Mode): Promise<Decision> {
    if (verdict.decision === 'deny') return this.record(this.makeDecision(prepared, verdict, this.nextId(), undefined));
    const outcome = await this.approvals.answer(bound, prepared.identity.fingerprint);
    if (outcome.kind === 'refused') return this.record(this.makeDecision(prepared, rejection(verdict, outcome.rejection, outcome.requestId), this.nextId(), undefined));
    if (verdict.decision === 'allow') return this.allowWithMoney(prepared, verdict, costNanos, mode, undefined);
    if (outcome.kind === 'pending') {
      const extra = outcome.unused === undefined ? { approvalRequest: outcome.request } : { approvalRequest: outcome.request, unusedAnswer: outcome.unused };
      return this.recordGated(this.makeDecision(prepared, verdict, this.nextId(), undefined, extra));
    }
    if (outcome.kind === 'approved') {
      if (await this.approvals.use(outcome.requestId, prepared.identity.fingerprint)) {
        return this.allowWithMoney(prepared, approvedVerdict(verdict, outcome.resolution), costNanos, mode, requestApproval('request', outcome.requestId, outcome.resolution));
      }
      return this.unapproved(prepared, verdict, costNanos, mode, { requestId: outcome.requestId, problem: 'already_used', detail: 'the approval was already used for one execution' });
    }
    return this.unapproved(prepared, verdict, costNanos, mode, outcome.unused);
  }

  // Raises an approval request (or finds the open one for the same action) and records the require_approval.
  private async raiseRequest(prepared: Prepared, verdict: Verdict, unused: UnusedAnswer | undefined): Promise<Decision> {
    const request = refOf(await this.approvals.raise(prepared, verdict, this.options.approvalTtlMs ?? DAY_MS));
    return this.recordGated(this.makeDecision(prepared, verdict, this.nextId(), undefined, unused ? { approvalRequest: request, unusedAnswer: unused } : { approvalRequest: request }));
  }

  // One store operation per check: `charge` checks and charges at once; `reserve` checks and opens a lease.
  private allowWithMoney(prepared: Prepared, verdict: Verdict, costNanos: number, mode: Mode, approval: ApprovalRecord | undefined): Decision | Promise<Decision> {
    if (costNanos <= 0) return this.allowHeld(prepared, verdict, 0, mode, approval, this.nextId(), undefined);
    const grant = mode === 'charge' ? this.ledger.spend(costNanos) : this.ledger.reserve(costNanos);
    if (grant instanceof Promise) return grant.then((settled) => this.allowGranted(prepared, verdict, costNanos, mode, approval, settled));
    return this.allowGranted(prepared, verdict, costNanos, mode, approval, grant);
  }

  private allowGranted(prepared: Prepared, verdict: Verdict, costNanos: number, mode: Mode, approval: ApprovalRecord | undefined, grant: BudgetGrant): Decision | Promise<Decision> {
    if (!grant.ok) {
      this.ledger.noteRefusal(grant.snapshot);
      return this.recordRefused(prepared, costNanos, grant.snapshot);
    }
    return this.allowHeld(prepared, verdict, costNanos, mode, approval, this.nextId(), grant.lease);
  }

  // Records an allow whose money (if any) is held: charged already (charge mode, no lease) or by a lease. The audit
  // sink goes first (a sink that throws turns it into a deny and gives the money back), then, in charge mode, a
  // lease is committed.
  private allowHeld(prepared: Prepared, verdict: Verdict, costNanos: number, mode: Mode, approval: ApprovalRecord | undefined, id: string, lease: string | undefined): Decision | Promise<Decision> {
    const decision =
      mode === 'reserve'
        ? this.makeDecision(prepared, verdict, id, approval, { settlement: Object.freeze({ status: 'pending', estimated: nanosToUsd(costNanos), actual: nanosToUsd(costNanos) }) })
        : this.makeDecision(prepared, verdict, id, approval);
    const failure = this.publisher.publish(decision, this, true);
    if (failure !== undefined) {
      const givenBack = costNanos <= 0 ? undefined : lease !== undefined ? this.ledger.release(lease) : this.ledger.refund(costNanos);
      const denied = this.record(this.makeDecision(prepared, errorVerdict('the onDecision sink failed, so the action was not audited and is denied', failure), this.nextId(), undefined));
      return givenBack instanceof Promise ? givenBack.then(() => denied) : denied;
    }
    const slot = this.trail.add(decision);
    if (mode === 'reserve') {
      this.slots.set(decision, slot);
      if (lease !== undefined) this.leases.set(decision, lease);
      return decision;
    }
    if (lease !== undefined) {
      const done = this.ledger.commit(lease, costNanos);
      if (done instanceof Promise) return done.then(() => decision);
    }
    return decision;
  }

  private recordRefused(prepared: Prepared, costNanos: number, snapshot: BudgetSnapshot): Decision {
    return this.record(this.makeDecision(prepared, this.ledger.refusal(costNanos, snapshot), this.nextId(), undefined));
  }

  private async askApprover(approver: Approver, prepared: Prepared, verdict: Verdict, costNanos: number, mode: Mode, unused: UnusedAnswer | undefined): Promise<Decision> {
    // Hold the money while a human decides, so concurrent checks cannot spend it meanwhile.
    const timeoutMs = this.options.approvalTimeoutMs ?? 300_000;
    let lease: string | undefined;
    if (costNanos > 0) {
      const grant = await this.ledger.reserve(costNanos, this.ledger.leaseTtlMs + timeoutMs);
      if (!grant.ok) return this.recordRefused(prepared, costNanos, grant.snapshot);
      lease = grant.lease;
    }
    let outcome: ApprovalOutcome;
    let requestId: string | undefined;
    const id = this.nextId();
    try {
      const request = await this.approvals.create(prepared, verdict, timeoutMs);
      requestId = request.id;
      const pending = this.makeDecision(prepared, verdict, id, undefined, unused ? { approvalRequest: refOf(request), unusedAnswer: unused } : { approvalRequest: refOf(request) });
      outcome = await this.approvals.settleApproverAnswer(request, await consultApprover(approver, { ...request, decision: pending }, timeoutMs));
    } catch (error) {
      if (lease !== undefined) await this.ledger.release(lease);
      throw error;
    }
    if (outcome.approved) {
      // The human may have taken minutes: a halt set meanwhile stops the action they approved.
      const halt = await this.haltState();
      if (halt !== undefined) {
        if (lease !== undefined) await this.ledger.release(lease);
        return this.record(this.makeDecision(prepared, haltVerdict(halt), id, undefined));
      }
      // So may a policy change (a source updated, a file reloaded): the approved action is judged again by the policy
      // now in force, with its approval, and denied if that policy would not allow it.
      const changed = prepared.policyHash === this.policy.hash ? undefined : this.judgedAgain(prepared.policyHash, prepared.action, prepared.identity.fingerprint, true, 'while the approver decided');
      if (changed !== undefined) {
        if (lease !== undefined) await this.ledger.release(lease);
        const why = { ...changed, reason: `${changed.reason} (approved by ${boundString(outcome.by ?? 'the approver')}, not run)` };
        return this.record(this.makeDecision({ policyHash: this.policy.hash, action: prepared.action, identity: prepared.identity, prepared: null, invalid: null }, why, id, undefined));
      }
      const approvedWith = approvedVerdict(verdict, outcome);
      return this.allowHeld(prepared, approvedWith, costNanos, mode, requestApproval('approver', requestId as string, outcome), id, lease);
    }
    if (lease !== undefined) await this.ledger.release(lease);
    return this.record(this.makeDecision(prepared, rejection(verdict, outcome, requestId), id, undefined));
  }

  private reservation(decision: Decision, model: { model: string; provider: string | undefined } | undefined): Reservation {
    // A keyed repeat gets the reservation of the first check: one decision, one settlement.
    const existing = this.reservations.get(decision);
    if (existing) return existing;
    const reservation = createReservation(this.settling, decision, this.slots.get(decision) ?? -1, model, this.leases.get(decision));
    this.reservations.set(decision, reservation);
    // Decided before the session ended but handed over after (end() ran while the check was settling): it is charged
    // at its estimate like every reservation open at the end, rather than held until its lease expires.
    if (this.endedMs !== null && !reservation.settled) void reservation.commit();
    return reservation;
  }

  private recordDenied(action: Action, reason: string, rule: RuleRef): Decision {
    return this.record(this.makeDecision(this.recordOnly(action), { decision: 'deny', reason, rule, approvedRule: false }, this.nextId(), undefined));
  }

  private async recordCharged(action: Action, nanos: number, reason: string): Promise<Decision> {
    let note = '';
    let snapshot: BudgetSnapshot | undefined;
    try {
      snapshot = (await this.ledger.charge(nanos))?.snapshot;
    } catch (error) {
      // The spend happened whatever the store says: record it here, and say loudly that the store missed it.
      const message = errorMessage(error);
      note = ` (the budget store could not record it: ${message})`;
      process.emitWarning(`agentpolicy: spend of ${formatUsd(nanos)} could not be recorded in the budget store: ${message}`);
    }
    const over = this.ledger.overLimit(snapshot) ? ' (the budget is now exceeded)' : note;
    // Spend that already happened is recorded whatever the sink says.
    return this.record(this.makeDecision(this.recordOnly(action), { decision: 'allow', reason: reason + over, rule: { section: 'default' }, approvedRule: false }, this.nextId(), undefined));
  }

  // An action built by the session itself (usage, unpriced models), read like any other.
  private recordOnly(action: Action): Prepared {
    return prepareAction(this.policy, action as ActionInput);
  }

  private nextId(): string {
    return this.records.nextId();
  }

  private seqOf(decision: Decision): number {
    return this.records.seqOf(decision);
  }

  private makeDecision(prepared: Prepared, verdict: Verdict, id: string, approval: ApprovalRecord | undefined, extra?: DecisionExtra): Decision {
    return this.records.make(prepared, verdict, id, approval, extra, this.limits.clockMs);
  }

  // Records a decision that lets nothing run (a deny), or spend that already happened: a sink failure is a warning.
  private record(decision: Decision): Decision {
    this.trail.add(decision);
    this.publisher.publish(decision, this, false);
    return decision;
  }

  // Records a require_approval: if the sink fails it was not audited, so it becomes a deny.
  private recordGated(decision: Decision): Decision {
    const failure = this.publisher.publish(decision, this, true);
    if (failure === undefined) {
      this.trail.add(decision);
      return decision;
    }
    const prepared = { policyHash: decision.policyHash, action: decision.action, identity: identityOf(decision), prepared: null, invalid: null };
    return this.record(this.makeDecision(prepared, errorVerdict('the onDecision sink failed, so the action was not audited and is denied', failure), this.nextId(), undefined));
  }
}

// The signal of claim options, read once; anything else than an AbortSignal-like object is a typed error.
function readSignal(options: unknown): AbortSignal | undefined {
  if (typeof options !== 'object' || options === null) throw new AgentPolicyError('INVALID_ARGUMENT', `claim options must be an object, got ${describe(options)}`);
  let signal: unknown;
  try {
    signal = (options as ClaimOptions).signal;
    if (signal === undefined || (typeof signal === 'object' && signal !== null && typeof (signal as AbortSignal).aborted === 'boolean')) return signal as AbortSignal | undefined;
  } catch (error) {
    throw new AgentPolicyError('INVALID_ARGUMENT', `claim options cannot be read: ${errorMessage(error)}`, { cause: error });
  }
  throw new AgentPolicyError('INVALID_ARGUMENT', `claim signal must be an AbortSignal, got ${describe(signal)}`);
}

/**
 * The options of {@link PolicySession.waitForApproval}, each read once. A NaN time would wait forever, and anything
 * else of the wrong type would fail midway: both are refused with an `INVALID_ARGUMENT` error.
 */
function readWaitOptions(options: unknown): { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal } {
  if (typeof options !== 'object' || options === null) throw new AgentPolicyError('INVALID_ARGUMENT', `waitForApproval options must be an object, got ${describe(options)}`);
  let read: { timeoutMs?: unknown; intervalMs?: unknown; signal?: unknown };
  try {
    const { timeoutMs, intervalMs, signal } = options as typeof read;
    read = { timeoutMs, intervalMs, signal };
  } catch (error) {
    throw new AgentPolicyError('INVALID_ARGUMENT', `waitForApproval options cannot be read: ${errorMessage(error)}`, { cause: error });
  }
  for (const field of ['timeoutMs', 'intervalMs'] as const) {
    const value = read[field];
    if (value !== undefined && (typeof value !== 'number' || Number.isNaN(value))) {
      throw new AgentPolicyError('INVALID_ARGUMENT', `waitForApproval ${field} must be a number of milliseconds, got ${describe(value)}`);
    }
  }
  const signal = read.signal as AbortSignal | undefined;
  // Read as an AbortSignal is used here (from any realm or polyfill): `aborted` and the two listener methods.
  let usable = false;
  try {
    usable = typeof signal === 'object' && signal !== null && typeof signal.aborted === 'boolean' && typeof signal.addEventListener === 'function' && typeof signal.removeEventListener === 'function';
  } catch {
    // A signal whose reading throws is no signal.
  }
  if (signal !== undefined && !usable) throw new AgentPolicyError('INVALID_ARGUMENT', `waitForApproval signal must be an AbortSignal, got ${describe(signal)}`);
  return read as { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal };
}

function haltFailure(error: unknown): HaltState {
  return { reason: `the halt store cannot be read (${errorMessage(error)}), so the action is denied`, at: new Date().toISOString() };
}

// The action input a recorded action was checked as (its fingerprint tells whether the record kept all of it).
function recordedAction(action: Action): ActionInput {
  if (action.type === 'tool') return action.input === undefined ? { type: 'tool', name: action.name, cost: action.cost } : { type: 'tool', name: action.name, cost: action.cost, input: action.input };
  if (action.type === 'http') return action.method === undefined ? { type: 'http', url: action.url, cost: action.cost } : { type: 'http', url: action.url, method: action.method, cost: action.cost };
  return { type: 'cost', source: action.source, cost: action.cost };
}

function errorVerdict(what: string, error: unknown): Verdict {
  const message = errorMessage(error);
  return { decision: 'deny', reason: `${what}: ${message}`, rule: Object.freeze({ section: 'error', message }), approvedRule: false };
}
