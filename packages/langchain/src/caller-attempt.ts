import { decisionError, type ModelCallEstimate, type PolicySession, type Reservation } from '@agentpolicy/core';

// One attempt of LangChain's retry loop (`AsyncCaller`), metered: what the embeddings wrapper and the middleware's
// model calls share.

/** LangChain's own mark for an error its retry loop must not retry (`stampRetryable(error, false)`). */
const RETRYABLE = Symbol.for('langchain.errors.retryable');
/** Our mark for an error thrown inside an attempt that ends the retry loop (registered: seen by every module copy). */
const FINAL = Symbol.for('agentpolicy.langchain.finalAttempt');

/**
 * Marks an error of ours thrown inside an attempt of LangChain's retry loop (`AsyncCaller`): the loop is stopped
 * with it, never retried.
 */
export function stopRetries<E>(error: E): E {
  if (typeof error !== 'object' || error === null) return error;
  try {
    Object.defineProperty(error, FINAL, { value: true, configurable: true });
    Object.defineProperty(error, RETRYABLE, { value: false, configurable: true });
  } catch {
    // a frozen error: LangChain's retry loop sees it as any other failure
  }
  return error;
}

/** Whether an error was marked by {@link stopRetries}. */
export const stopsRetries = (error: unknown): boolean => typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[FINAL] === true;

/**
 * The failed-attempt handler of a caller whose attempts are metered: an error that ends the retries ends them,
 * whatever handler the caller was built with; any other goes to that handler.
 */
export function failedAttemptHandler(original: object): (error: unknown) => unknown {
  return (error: unknown) => {
    if (stopsRetries(error)) throw error;
    const handler: unknown = Reflect.get(original, 'onFailedAttempt');
    return typeof handler === 'function' ? (handler as (error: unknown) => unknown).call(original, error) : undefined;
  };
}

/**
 * Reserves the estimate again for attempt `number` of a request whose first attempt took the request's own
 * reservation. Refused (or the reservation failing), it throws an error that ends the retries: nothing is sent.
 */
export async function reserveAttempt(session: PolicySession, estimate: ModelCallEstimate, number: number): Promise<Reservation> {
  let reservation: Reservation;
  try {
    reservation = await session.reserveModelCall({ ...estimate, metadata: { ...estimate.metadata, attempt: number } });
  } catch (error) {
    throw stopRetries(error);
  }
  if (!reservation.allowed) throw stopRetries(decisionError(reservation.decision));
  return reservation;
}

/** Settles an attempt without throwing: the request already happened, and its caller gets its answer (or its own error). */
export async function settleAttempt(settled: Promise<unknown>, what: string): Promise<void> {
  try {
    await settled;
  } catch (error) {
    process.emitWarning(`agentpolicy: settling ${what} failed: ${(error as Error)?.message ?? String(error)}`);
  }
}
