import type { Action, Decision, Metadata } from './decision.js';
import type { AuditTrail } from './audit-trail.js';
import type { BudgetLedger } from './budget-ledger.js';
import { boundMetadata } from './bounded-record.js';
import { AgentPolicyError, errorMessage } from './errors.js';
import { usageMetadata } from './model-usage.js';
import { formatUsd, MAX_NANOS, nanosToUsd, readCost } from './money.js';
import type { PriceResult, TokenUsage } from './pricing.js';

/** Actual usage passed to {@link Reservation.commit}; `model` defaults to the reserved model. */
export type UsageUpdate = Omit<TokenUsage, 'model'> & { model?: string };

/**
 * Money set aside before work whose real cost is known only afterwards. Settle it once: `commit` charges the real
 * cost (or the estimate, when none is given), `release` charges nothing. Both are idempotent.
 */
export interface Reservation {
  /** The decision; once settled, its settled version (decisions are frozen values, so a settlement is a new one). */
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

/**
 * Withdraws an allow whose call will not run (the framework dropped the call, the response it came in was refused,
 * the run ended before it): takes the allow's one execution, so no run of the call can use it (a repeat is decided
 * and charged anew), and gives back the money its reservation holds and, with a session, the `limits:` slots it
 * took (`session.withdraw`). True when this took the allow. False when the call ran or another
 * run took it first (that run settles its money; nothing is given back), or the claim was refused (a halt, the
 * session's end, a store that is down: the session's own rule settles the money then).
 */
export async function withdrawAllow(
  session: { claim(decision: Decision): boolean | Promise<boolean>; withdraw?(decision: Decision): Promise<boolean> },
  decision: Decision,
  reservation?: Reservation,
): Promise<boolean> {
  let taken: boolean;
  try {
    taken = typeof session.withdraw === 'function' ? await session.withdraw(decision) : await session.claim(decision);
  } catch {
    return false;
  }
  if (taken && reservation !== undefined && !reservation.settled) await reservation.release();
  return taken;
}

/** What a reservation settles against: the session's ledger, audit sums and open reservations. */
export interface ReservationContext {
  readonly ledger: BudgetLedger;
  readonly trail: AuditTrail;
  readonly pending: Set<Reservation>;
  priceUsage(usage: TokenUsage): PriceResult;
  /** Told each settled decision once the ledger has it (the session's sinks: an audit log, OpenTelemetry). */
  settled?(decision: Decision): void;
}

/** Whether a failed call was certainly not billed: an agentpolicy error or a 4xx answer. */
export function notBilled(failure: { status?: number; error?: unknown } | undefined): boolean {
  try {
    if (AgentPolicyError.isInstance(failure?.error)) return true;
    const bag = (typeof failure?.error === 'object' && failure.error !== null ? failure.error : {}) as { status?: unknown; statusCode?: unknown };
    const status = failure?.status ?? bag.status ?? bag.statusCode;
    return typeof status === 'number' && status >= 400 && status < 500;
  } catch {
    // A failure that cannot be read (a getter or proxy that throws) may have been billed: the estimate is charged.
    return false;
  }
}

/**
 * The price of usage reported under another model name than the one reserved (a dated name, an Azure deployment's
 * model, or a provider that names a cheaper model): the reserved model's price for that usage when it is higher. A
 * reported name can make a call cost more than its request said, never less. (A reported name with no price
 * charges the estimate, like any usage that cannot be priced.)
 */
function reservedModelPrice(
  context: ReservationContext,
  usage: TokenUsage,
  model: { model: string; provider: string | undefined } | undefined,
  reported: PriceResult,
): PriceResult {
  if (!reported.ok || !model?.model || usage.model === model.model) return reported;
  const reserved = context.priceUsage({ ...usage, model: model.model, ...(model.provider !== undefined ? { provider: model.provider } : {}) });
  return reserved.ok && reserved.nanos > reported.nanos ? reserved : reported;
}

/**
 * The reservation of a recorded decision (allowed with a pending settlement, or not allowed and holding nothing).
 * `slot` is where the audit trail keeps the decision, so the settled version can take its place.
 */
export function createReservation(
  context: ReservationContext,
  recorded: Decision,
  slot: number,
  model: { model: string; provider: string | undefined } | undefined,
  lease: string | undefined,
): Reservation {
  let decision = recorded;
  const estimateNanos = decision.decision === 'allow' && decision.settlement ? Math.round(decision.settlement.estimated * 1e9) : 0;
  const isSettled = () => decision.decision !== 'allow' || decision.settlement?.status !== 'pending';
  const settle = async (status: 'committed' | 'released', actualNanos: number, usage?: Metadata): Promise<Decision> => {
    if (isSettled()) return decision;
    // Replace first, synchronously, so a second settle (stream cancel racing its finish) is a no-op.
    const previous = decision;
    const overrun = status === 'committed' ? actualNanos - estimateNanos : 0;
    const settlement = Object.freeze(
      overrun > 0
        ? { status, estimated: nanosToUsd(estimateNanos), actual: nanosToUsd(actualNanos), overrun: nanosToUsd(overrun) }
        : { status, estimated: nanosToUsd(estimateNanos), actual: nanosToUsd(actualNanos) },
    );
    const action = usage ? (Object.freeze({ ...previous.action, metadata: boundMetadata({ ...previous.action.metadata, ...usage }) }) as Action) : previous.action;
    decision = Object.freeze({ ...previous, action, settlement });
    context.trail.replace(slot, previous, decision);
    context.trail.adjustAllowed(decision.action.type, actualNanos - estimateNanos);
    if (overrun > 0) context.trail.addOverrun(overrun);
    context.pending.delete(reservation);
    try {
      // Nothing was held (an estimate of $0): a real cost is still spend that happened.
      if (lease === undefined) {
        if (status === 'committed' && actualNanos > 0) await context.ledger.charge(actualNanos);
      } else if (status === 'committed') await context.ledger.commit(lease, actualNanos);
      else await context.ledger.release(lease);
    } catch (error) {
      // The store could not be reached: the lease stays open there and is charged at its estimate when it expires,
      // so no spend is lost (a release then costs the estimate; that is the safe side).
      const message = (error as Error)?.message ?? String(error);
      process.emitWarning(
        lease === undefined
          ? `agentpolicy: spend of ${nanosToUsd(actualNanos)} USD could not be recorded in the budget store: ${message}`
          : `agentpolicy: could not settle lease ${lease} (it will be charged at its estimate when it expires): ${message}`,
      );
    }
    context.settled?.(decision);
    return decision;
  };
  const reservation: Reservation = {
    get decision() {
      return decision;
    },
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
        if (read.ok) return settle('committed', read.nanos);
        // A real cost past what the ledger holds is charged as the most it holds (the budget is certainly passed);
        // any other unreadable actual cost charges the estimate: spend is never lost.
        if (Number.isFinite(actual) && actual > 0) return settle('committed', MAX_NANOS, { settlementNote: `${read.reason}; charged as ${formatUsd(MAX_NANOS)}` });
        return settle('committed', estimateNanos, { settlementNote: read.reason });
      }
      let usage: TokenUsage;
      try {
        // A copy, each field read once: what is priced is what is recorded.
        const copy = { ...actual } as UsageUpdate;
        usage = { ...copy, model: copy.model ?? model?.model ?? '', ...(copy.provider ?? model?.provider ? { provider: copy.provider ?? model?.provider } : {}) } as TokenUsage;
      } catch (error) {
        // Usage that cannot be read (a getter or proxy that throws) still ended a call that may have cost money.
        return settle('committed', estimateNanos, { settlementNote: `the usage cannot be read (${errorMessage(error)}); the estimate was charged` });
      }
      const reported = context.priceUsage(usage);
      const price = reservedModelPrice(context, usage, model, reported);
      if (price !== reported && price.ok) {
        return settle('committed', price.nanos, { ...usageMetadata(usage), settlementNote: `usage reported for ${usage.model}, priced as the reserved ${model!.model}, which costs more` });
      }
      if (price.ok) return settle('committed', price.nanos, usageMetadata(usage));
      if (price.tooLarge) return settle('committed', MAX_NANOS, { ...usageMetadata(usage), settlementNote: `${price.reason}; charged as ${formatUsd(MAX_NANOS)}` });
      return settle('committed', estimateNanos, { ...usageMetadata(usage), settlementNote: `${price.reason}; the estimate was charged` });
    },
    release: (): Promise<Decision> => settle('released', 0),
    fail: (failure?: { status?: number; error?: unknown }): Promise<Decision> => (notBilled(failure) ? settle('released', 0) : settle('committed', estimateNanos)),
  };
  if (!isSettled()) context.pending.add(reservation);
  return reservation;
}
