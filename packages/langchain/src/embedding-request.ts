import { AsyncLocalStorage } from 'node:async_hooks';
import { AgentPolicyError, type ModelCallEstimate, type PolicySession, type Reservation, type UsageUpdate } from '@agentpolicy/core';
import { failedAttemptHandler, reserveAttempt, settleAttempt } from './caller-attempt.js';
import { markMeteredCaller } from './model-attempts.js';
import { embeddingUsage, failureOf } from './model-call.js';

// The request running in this async context, shared by every copy of this module (ESM and CommonJS builds) under a
// registered symbol, as the governed callers of one instance may come from either.
const KEY = Symbol.for('agentpolicy.langchain.embeddingRequest');
const running: AsyncLocalStorage<EmbeddingRequest> = ((globalThis as Record<symbol, unknown>)[KEY] ??=
  new AsyncLocalStorage<EmbeddingRequest>()) as AsyncLocalStorage<EmbeddingRequest>;

/** Marks an embeddings instance whose `caller` is governed (a registered symbol: one mark for every module copy). */
const GOVERNED = Symbol.for('agentpolicy.langchain.governedEmbeddings');

const settle = (settled: Promise<unknown>): Promise<void> => settleAttempt(settled, 'an embeddings request');

/**
 * One request an embeddings model is asked to make for a governed call (a batch of texts, or one query), with the
 * reservation of its worst case made before anything was sent. Every attempt the model makes through its `caller`
 * while the request runs is metered: the first takes that reservation, and every later one (a retry, or a second
 * request the model splits it into, which can send no more than these texts) reserves the same estimate again
 * before it runs. Each attempt is settled by its own outcome: the provider's reported usage, else the estimate, or
 * core's rule for a failed call (`Reservation.fail`).
 */
export class EmbeddingRequest {
  /** The reservation no attempt has taken yet. */
  private first: Reservation | null;
  private attempts = 0;

  constructor(
    /** The governed embeddings instance this request is for. */
    readonly target: object,
    private readonly session: PolicySession,
    private readonly estimate: ModelCallEstimate,
    reservation: Reservation,
  ) {
    this.first = reservation;
  }

  /**
   * Runs `send` (the model's own method) with this request in context. A reservation no attempt took is settled when
   * it ends: the model sent its request some other way than its caller (or answered from a cache), so it is charged
   * the estimate; on a failure, by core's rule.
   */
  async run<T>(send: () => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await running.run(this, send);
    } catch (error) {
      const left = this.take();
      if (left) await settle(left.fail(failureOf(error)));
      throw error;
    }
    const left = this.take();
    if (left) await settle(left.commit());
    return result;
  }

  /** One attempt: reserved (the first by the request's own reservation), sent, and settled by its outcome. */
  async attempt<R>(callable: (...args: never[]) => Promise<R>, args: never[]): Promise<R> {
    const number = ++this.attempts;
    const reservation = this.take() ?? (await reserveAttempt(this.session, this.estimate, number));
    let result: R;
    try {
      result = await callable(...args);
    } catch (error) {
      await settle(reservation.fail(failureOf(error)));
      throw error;
    }
    await settle(reservation.commit(this.usage(result)));
    return result;
  }

  private take(): Reservation | null {
    const reservation = this.first;
    this.first = null;
    return reservation;
  }

  /** The usage a request reported, priced under the model the provider names only when that model has a price. */
  private usage(result: unknown): UsageUpdate | undefined {
    const usage = embeddingUsage(result);
    if (usage?.model === undefined || usage.model === this.estimate.model) return usage;
    const provider = this.estimate.provider;
    if (this.session.priceUsage({ ...usage, model: usage.model, ...(provider !== undefined ? { provider } : {}) }).ok) return usage;
    const { model: _unpriced, ...counts } = usage;
    return counts;
  }
}

type Callable = (...args: never[]) => Promise<unknown>;
interface CallerLike {
  call(callable: Callable, ...args: unknown[]): Promise<unknown>;
  callWithOptions?(options: unknown, callable: Callable, ...args: unknown[]): Promise<unknown>;
  callWithRetries?(retries: unknown, callable: Callable, args: unknown): Promise<unknown>;
}

const isCaller = (value: unknown): value is CallerLike => typeof value === 'object' && value !== null && typeof (value as CallerLike).call === 'function';

/**
 * Puts the `caller` of an embeddings instance (LangChain's `AsyncCaller`, through which an integration sends its
 * requests and retries them) under governance, once: every attempt is metered by the {@link EmbeddingRequest} it runs
 * for, and a call made on the instance outside one (its own `embedDocuments`, `embedQuery` or any other method that
 * goes through its caller, called directly) is refused before anything is sent. A caller assigned later is governed
 * as well. An instance without a caller is left as it is (its requests are metered per request, its retries unseen).
 */
export function governCaller(embeddings: object): void {
  if (Object.hasOwn(embeddings, GOVERNED)) return;
  const original: unknown = (embeddings as { caller?: unknown }).caller;
  if (!isCaller(original)) return;
  let current = governed(embeddings, original);
  try {
    Object.defineProperty(embeddings, 'caller', {
      get: () => current,
      set: (next: unknown) => {
        current = isCaller(next) ? governed(embeddings, next) : next;
      },
      enumerable: true,
      configurable: false,
    });
    Object.defineProperty(embeddings, GOVERNED, { value: true });
  } catch (error) {
    throw new AgentPolicyError('INVALID_ARGUMENT', 'agentpolicy: policyEmbeddings cannot meter this embeddings instance: its caller cannot be replaced (is it frozen?)', {
      cause: error,
    });
  }
}

function governed(target: object, original: CallerLike): unknown {
  const requestFor = (): EmbeddingRequest => {
    const request = running.getStore();
    if (request?.target === target) return request;
    throw new AgentPolicyError(
      'INVALID_ARGUMENT',
      'agentpolicy: this embeddings model is metered by policyEmbeddings; call it through the Embeddings policyEmbeddings returned (nothing was sent)',
    );
  };
  // The attempts this caller made: one entry point may hand its attempt to another (AsyncCaller's call and
  // callWithOptions go through callWithRetries), which passes it on as it is.
  const metered = new WeakSet<Callable>();
  const attemptOf = (callable: unknown): Callable => {
    if (typeof callable === 'function' && metered.has(callable as Callable)) return callable as Callable;
    const request = requestFor();
    const attempt: Callable = (...args: never[]) => {
      if (typeof callable !== 'function') return Promise.reject(new TypeError('the caller was given no function to call'));
      return request.attempt(callable as Callable, args);
    };
    metered.add(attempt);
    return attempt;
  };
  // The original stays the prototype: its queue (so its concurrency limit is shared), its retry count and its own
  // methods are read through; only the entry points and the failed-attempt handler are replaced. Each entry point
  // refuses a call made outside a request for this model before anything is queued.
  const caller = Object.create(original) as CallerLike & { onFailedAttempt?: unknown };
  const originalCall = original.call;
  const originalWithOptions = original.callWithOptions;
  const originalWithRetries = original.callWithRetries;
  const entry = (send: (attempt: Callable) => Promise<unknown>) =>
    (callable: unknown): Promise<unknown> => {
      let attempt: Callable;
      try {
        attempt = attemptOf(callable);
      } catch (error) {
        return Promise.reject(error);
      }
      return send(attempt);
    };
  Object.defineProperties(caller, {
    call: {
      value(callable: unknown, ...args: unknown[]) {
        return entry((attempt) => originalCall.call(caller, attempt, ...args))(callable);
      },
    },
    callWithOptions: {
      value(options: unknown, callable: unknown, ...args: unknown[]) {
        return entry((attempt) =>
          typeof originalWithOptions === 'function' ? originalWithOptions.call(caller, options, attempt, ...args) : originalCall.call(caller, attempt, ...args),
        )(callable);
      },
    },
    callWithRetries: {
      value(retries: unknown, callable: unknown, args: unknown) {
        return entry((attempt) =>
          typeof originalWithRetries === 'function' ? originalWithRetries.call(caller, retries, attempt, args) : originalCall.call(caller, attempt, ...(Array.isArray(args) ? args : [])),
        )(callable);
      },
    },
    // A refused retry ends the retry loop, whatever handler the caller was built with.
    onFailedAttempt: { value: failedAttemptHandler(original) },
  });
  // Its attempts are metered here: a chat model call running around it leaves them alone.
  markMeteredCaller(caller);
  return caller;
}
