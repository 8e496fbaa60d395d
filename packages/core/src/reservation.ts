import type { Action, Decision, Metadata, Settlement } from './decision.js';
import type { AuditTrail } from './audit-trail.js';
import type { BudgetLedger } from './budget-ledger.js';
import { AgentPolicyError } from './errors.js';
import { usageMetadata } from './model-usage.js';
import { nanosToUsd, readCost } from './money.js';
import type { PriceResult, TokenUsage } from './pricing.js';

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

/** A decision the session may still update while its reservation settles. */
export type MutableDecision = {
  -readonly [K in keyof Decision]: Decision[K];
} & { settlement?: Settlement };

/** What a reservation settles against: the session's ledger, audit sums and open reservations. */
export interface ReservationContext {
  readonly ledger: BudgetLedger;
  readonly trail: AuditTrail;
  readonly pending: Set<Reservation>;
  priceUsage(usage: TokenUsage): PriceResult;
}

/** Whether a failed call was certainly not billed: an agentpolicy error or a 4xx answer. */
export function notBilled(failure: { status?: number; error?: unknown } | undefined): boolean {
  if (AgentPolicyError.isInstance(failure?.error)) return true;
  const bag = (typeof failure?.error === 'object' && failure.error !== null ? failure.error : {}) as { status?: unknown; statusCode?: unknown };
  const status = failure?.status ?? bag.status ?? bag.statusCode;
  return typeof status === 'number' && status >= 400 && status < 500;
}

/** The reservation of a recorded decision (allowed with a pending settlement, or not allowed and holding nothing). */
export function createReservation(context: ReservationContext, decision: MutableDecision, model: { model: string; provider: string | undefined } | undefined): Reservation {
  const estimateNanos = decision.decision === 'allow' && decision.settlement ? Math.round(decision.settlement.estimated * 1e9) : 0;
  const isSettled = () => decision.decision !== 'allow' || decision.settlement?.status !== 'pending';
  const settle = async (status: 'committed' | 'released', actualNanos: number, usage?: Metadata): Promise<Decision> => {
    if (isSettled()) return decision;
    // Mark first, synchronously, so a second settle (stream cancel racing its finish) is a no-op.
    const overrun = status === 'committed' ? actualNanos - estimateNanos : 0;
    decision.settlement =
      overrun > 0
        ? { status, estimated: nanosToUsd(estimateNanos), actual: nanosToUsd(actualNanos), overrun: nanosToUsd(overrun) }
        : { status, estimated: nanosToUsd(estimateNanos), actual: nanosToUsd(actualNanos) };
    context.trail.adjustAllowed(decision.action.type, actualNanos - estimateNanos);
    if (overrun > 0) context.trail.addOverrun(overrun);
    if (usage) decision.action = { ...decision.action, metadata: { ...decision.action.metadata, ...usage } } as Action;
    context.pending.delete(reservation);
    if (status === 'committed') await context.ledger.commit(estimateNanos, actualNanos);
    else await context.ledger.release(estimateNanos);
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
      const price = context.priceUsage(usage);
      if (price.ok) return settle('committed', price.nanos, usageMetadata(usage));
      return settle('committed', estimateNanos, { ...usageMetadata(usage), settlementNote: `${price.reason}; the estimate was charged` });
    },
    release: (): Promise<Decision> => settle('released', 0),
    fail: (failure?: { status?: number; error?: unknown }): Promise<Decision> => (notBilled(failure) ? settle('released', 0) : settle('committed', estimateNanos)),
  };
  if (!isSettled()) context.pending.add(reservation);
  return reservation;
}
