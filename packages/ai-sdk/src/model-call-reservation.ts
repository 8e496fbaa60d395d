import { AgentPolicyError, decisionError, type ModelCallEstimate, type PolicySession, type Reservation } from '@agentpolicy/core';
import { InvalidArgumentError, InvalidPromptError, LoadAPIKeyError, LoadSettingError, TooManyEmbeddingValuesForCallError, UnsupportedFunctionalityError } from 'ai';
import { toUsageUpdate } from './to-usage-update.js';

/** Refuses to build a model middleware (`name`) around anything but a session. */
export function assertSession(session: PolicySession, name: string): void {
  if (typeof session?.reserveModelCall !== 'function') {
    throw new AgentPolicyError('INVALID_ARGUMENT', `${name} needs a PolicySession: ${name}(policy.session())`);
  }
}

/**
 * Reserves a model call's worst case through core (`session.reserveModelCall`) and throws the policy error when it
 * is not allowed (over budget, no known price or bound under a budget, a malformed call option), so the call is
 * never sent. A call whose `signal` is aborted before it is sent is never sent either: it throws the abort reason,
 * with nothing reserved (or the reservation released, when the abort came while reserving).
 */
export async function reserveModelCall(session: PolicySession, estimate: ModelCallEstimate, signal?: AbortSignal): Promise<Reservation> {
  signal?.throwIfAborted();
  const reservation = await session.reserveModelCall(estimate);
  if (!reservation.allowed) throw decisionError(reservation.decision);
  if (signal?.aborted) {
    await reservation.release();
    signal.throwIfAborted();
  }
  return reservation;
}

/**
 * Commits a model call's reservation from the usage the model reported (read by {@link toUsageUpdate}: a side that
 * was not reported is taken from the estimate), or at the estimate when nothing usable was reported.
 */
export async function commitUsage(reservation: Reservation, usage: unknown): Promise<void> {
  const update = toUsageUpdate(usage, reservation.decision.action.metadata);
  await (update ? reservation.commit(update) : reservation.commit());
}

/**
 * Settles a call that failed, by core's rule (`Reservation.fail`: a 4xx answer billed nothing, anything else may
 * have been billed), except that an error the AI SDK raises while building a request, before anything is sent
 * ({@link isRaisedBeforeSending}), releases the reservation. An aborted call is charged its estimate whatever error
 * the abort surfaced as.
 */
export async function settleFailure(reservation: Reservation, error: unknown, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted === true) await reservation.commit();
  else if (isRaisedBeforeSending(error)) await reservation.release();
  else await reservation.fail({ error });
}

/**
 * Whether a model call's error is one the AI SDK and its providers raise while preparing the request, so the request
 * was never sent and nothing was billed: no API key or setting to load (`LoadAPIKeyError`, `LoadSettingError`), a
 * prompt or option the provider cannot send (`InvalidPromptError`, `UnsupportedFunctionalityError`,
 * `InvalidArgumentError`), too many values for one embedding call. Recognised by the SDK's own error markers, so
 * they are found whichever copy of the SDK raised them. An error the provider raises after the answer (a response
 * it cannot parse, an API error) is not one of these, and neither is anything wrapping one.
 */
export function isRaisedBeforeSending(error: unknown): boolean {
  return (
    LoadAPIKeyError.isInstance(error) ||
    LoadSettingError.isInstance(error) ||
    InvalidPromptError.isInstance(error) ||
    UnsupportedFunctionalityError.isInstance(error) ||
    InvalidArgumentError.isInstance(error) ||
    TooManyEmbeddingValuesForCallError.isInstance(error)
  );
}
