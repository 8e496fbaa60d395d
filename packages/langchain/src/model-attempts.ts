import { AsyncLocalStorage } from 'node:async_hooks';
import {
  AgentPolicyError,
  ApprovalRequiredError,
  PolicyDeniedError,
  findPolicyError,
  type Decision,
  type ModelCallEstimate,
  type PolicySession,
  type Reservation,
  type UsageUpdate,
} from '@agentpolicy/core';
import { AsyncCaller } from '@langchain/core/utils/async_caller';
import { failedAttemptHandler, reserveAttempt, settleAttempt, stopRetries } from './caller-attempt.js';
import { failureOf } from './model-call.js';

// The model call whose requests are metered in this async context (`null`: none, below an attempt or a fetch). Kept
// on `globalThis` under a registered symbol, so every copy of this module (ESM and CommonJS builds) shares it.
const KEY = Symbol.for('agentpolicy.langchain.modelAttempts');
const running: AsyncLocalStorage<ModelAttempts | null> = ((globalThis as Record<symbol, unknown>)[KEY] ??=
  new AsyncLocalStorage<ModelAttempts | null>()) as AsyncLocalStorage<ModelAttempts | null>;

/** Marks a caller whose attempts something else meters (a `policyEmbeddings` caller); registered, as above. */
const METERED = Symbol.for('agentpolicy.langchain.meteredCaller');
/** Marks `AsyncCaller.prototype` once its retry loop is metered. */
const PATCHED = Symbol.for('agentpolicy.langchain.meteredAsyncCaller');

/** Marks a caller whose attempts are metered where it is governed: a model call running around it leaves them alone. */
export function markMeteredCaller(caller: object): void {
  Object.defineProperty(caller, METERED, { value: true });
}

const settle = (settled: Promise<unknown>): Promise<void> => settleAttempt(settled, 'a model request');

/**
 * The requests of one chat model call, each metered on its own. The call is reserved once before it starts (the
 * middleware does that); every request the model then sends through LangChain's `AsyncCaller` while the call runs
 * is an attempt: the first takes that reservation, every later one (a retry of the model's own `maxRetries`, or
 * another request of the same call) reserves the same estimate again before it is sent. A retry the budget cannot
 * cover is refused, nothing is sent, and the refusal ends the retry loop. A failed attempt is settled at once by
 * core's one rule (`Reservation.fail`: a 4xx or a policy error releases, anything else charges the estimate); an
 * attempt that answered is settled when the call ends, with the usage of the model's answer.
 */
export class ModelAttempts {
  /** The reservation no attempt has taken yet. */
  private first: Reservation | null;
  /** Attempts that answered; the call's answer settles them. */
  private readonly answered: Reservation[] = [];
  private attempts = 0;
  private ended = false;
  /** The policy error a refused retry ended the call with. */
  private refused: PolicyDeniedError | ApprovalRequiredError | undefined;

  constructor(
    private readonly session: PolicySession,
    private readonly estimate: ModelCallEstimate,
    reservation: Reservation,
  ) {
    this.first = reservation;
  }

  /** Runs `call` (the model call) with its requests metered by this. */
  run<T>(call: () => Promise<T>): Promise<T> {
    return running.run(this, call);
  }

  /** The denied decision when `error` is (or wraps) the refusal of a retry of this call. */
  refusalIn(error: unknown): Decision | undefined {
    return this.refused !== undefined && findPolicyError(error) === this.refused ? this.refused.decision : undefined;
  }

  /** One attempt: reserved (the first by the call's own reservation), sent, and a failure settled by its outcome. */
  async attempt<R>(callable: (...args: never[]) => Promise<R>, args: never[]): Promise<R> {
    // A retry loop that outlives its call (an abort answered the call while the loop went on) sends nothing more.
    if (this.ended) throw stopRetries(new AgentPolicyError('INVALID_ARGUMENT', 'agentpolicy: the model call has ended; its request is not sent again'));
    const number = ++this.attempts;
    let reservation = this.take();
    try {
      reservation ??= await reserveAttempt(this.session, this.estimate, number);
    } catch (error) {
      if (error instanceof PolicyDeniedError || error instanceof ApprovalRequiredError) this.refused = error;
      throw error;
    }
    let result: R;
    try {
      // Below an attempt, callers are the attempt's own business: the attempt is metered once, as a whole.
      result = await running.run(null, () => callable(...args));
    } catch (error) {
      await settle(reservation.fail(failureOf(error)));
      throw error;
    }
    // The request was answered, so it was billed: its usage is known when the model's answer is (a stream is read
    // after its request returns). An attempt that answers after its call ended is charged its estimate.
    if (this.ended) await settle(reservation.commit());
    else this.answered.push(reservation);
    return result;
  }

  /**
   * Settles a call that answered: the attempt that answered last is charged `usage` (the answer's), any other that
   * answered its estimate (its own usage is not known). When no attempt went through a metered caller (a model
   * that sends its requests some other way, a cache hit), the call's reservation is charged `usage`.
   */
  async succeeded(usage: UsageUpdate | undefined): Promise<void> {
    this.ended = true;
    const last = this.answered.pop() ?? this.take();
    const others = this.answered.splice(0);
    await Promise.all(others.map((reservation) => settle(reservation.commit())));
    await last?.commit(usage);
  }

  /**
   * Settles a call that failed: attempts that answered were billed and are charged their estimate (a stream that
   * broke after its request returned); a reservation no attempt took is settled by core's rule, or released when
   * `sentNothing` (an interrupt raised further in).
   */
  async failed(error: unknown, sentNothing: boolean): Promise<void> {
    this.ended = true;
    const answered = this.answered.splice(0);
    const left = this.take();
    await Promise.all([
      ...answered.map((reservation) => settle(reservation.commit())),
      ...(left ? [settle(sentNothing ? left.release() : left.fail(failureOf(error)))] : []),
    ]);
  }

  private take(): Reservation | null {
    const reservation = this.first;
    this.first = null;
    return reservation;
  }
}

type Callable = (...args: never[]) => Promise<unknown>;
type CallerMethods = {
  callWithRetries?(retries: unknown, callable: Callable, args: unknown): Promise<unknown>;
  call(callable: Callable, ...args: unknown[]): Promise<unknown>;
  fetch(...args: unknown[]): Promise<unknown>;
};

/**
 * Meters the retry loop of LangChain's `AsyncCaller`, through which chat model integrations send their requests.
 * Installed once on the class, it changes nothing outside a model call a {@link ModelAttempts} runs: there it hands
 * each attempt to that call, so every attempt is reserved and settled on its own, and a refused retry ends the loop
 * whatever `onFailedAttempt` the caller has.
 *
 * The class, not the model: a chat model is copied on the way to its request (`ChatOpenAI.bindTools` builds a new
 * instance with new callers), and one instance serves concurrent calls of several sessions, so the call is found
 * by the async context it runs in, never by the instance. `fetch` (LangChain's tokenizer download) is no request
 * of the model and is left out.
 */
export function meterModelAttempts(): void {
  meterCallerClass(AsyncCaller.prototype as unknown as CallerMethods & Record<symbol, unknown>);
}

/**
 * {@link meterModelAttempts} on one `AsyncCaller` class (exported for tests of other `@langchain/core` versions).
 * The retry loop is `callWithRetries` from `@langchain/core` 1.2.8 on (`call` and `callWithOptions` both run it);
 * before, it was inside `call` itself (`callWithOptions` runs `call`): whichever the class has is metered, once.
 */
export function meterCallerClass(proto: CallerMethods & Record<symbol, unknown>): void {
  if (Object.hasOwn(proto, PATCHED)) return;
  const fetch = proto.fetch;
  const loop = typeof proto.callWithRetries === 'function' ? 'callWithRetries' : 'call';
  const original = proto[loop] as (this: unknown, ...args: unknown[]) => Promise<unknown>;
  // Where the callable is among the loop's arguments: callWithRetries(retries, callable, args), call(callable, ...args).
  const at = loop === 'callWithRetries' ? 1 : 0;
  Object.defineProperties(proto, {
    [loop]: {
      value: function (this: CallerMethods & Record<symbol, unknown>, ...args: unknown[]): Promise<unknown> {
        const call = running.getStore();
        const callable = args[at];
        if (!call || typeof callable !== 'function' || this[METERED] === true) return original.apply(this, args);
        // The attempt is bound to the call now, in the call's own context: the queue may start it from another's.
        const attempt: Callable = (...attemptArgs: never[]) => call.attempt(callable as Callable, attemptArgs);
        // This call's view of the caller: its queue and retry count read through, only the handler of failed
        // attempts its own (shared callers are never changed).
        const view = Object.create(this, { onFailedAttempt: { value: failedAttemptHandler(this) } }) as CallerMethods;
        const forwarded = [...args];
        forwarded[at] = attempt;
        return original.apply(view, forwarded);
      },
      writable: true,
      configurable: true,
    },
    fetch: {
      value: function (this: CallerMethods, ...args: unknown[]): Promise<unknown> {
        return running.run(null, () => fetch.apply(this, args));
      },
      writable: true,
      configurable: true,
    },
    [PATCHED]: { value: true },
  });
}
