import type { ApprovalState, ApprovalStore, Approver, ApproverRequest } from '@agentpolicy/core';

/** Options of {@link createWaitingApprover}. */
export interface WaitingApproverOptions {
  /** The store the session keeps its requests in (the session's `approvals` option). */
  store: ApprovalStore;
  /** Told about each request before the wait, to send it somewhere (links in a chat message or an email). */
  onRequest?: (request: ApproverRequest) => void | Promise<void>;
  /** How often the store is read, in milliseconds. Default 500. */
  intervalMs?: number;
}

/**
 * A session approver that waits for a human: each request is handed to `onRequest`, then the approver waits until
 * someone answers it (on the handler's page, by a signed link, through the JSON API, from any process sharing the
 * store). The stored answer is the one that counts: core reads it back, so who answered and why are recorded on the
 * decision, and a request that expires or outlives the session's `approvalTimeoutMs` is not approved.
 *
 * @example
 * ```ts
 * const session = policy.session({ approvals: store, approvalSecret: secret, approvalTimeoutMs: 15 * 60_000,
 *   approver: createWaitingApprover({ store, onRequest: (request) => notify(approvalLinks(request, { handlerUrl, secret })) }) });
 * ```
 */
export function createWaitingApprover(options: WaitingApproverOptions): Approver {
  const { store } = options;
  return async (request) => {
    await options.onRequest?.(request);
    const state = await untilAnswered(store, request.id, Math.max(10, options.intervalMs ?? 500), request.signal);
    // A request the store no longer has (a bounded store forgot it, its key was evicted or deleted) was not rejected by
    // anyone: the run is denied as an approver error that says so, never recorded as a human's rejection.
    // (Core catches what an approver throws and denies with its message.)
    if (state === undefined) throw new Error(`approval request ${request.id} is no longer in the approval store; nothing approved it`);
    // Only a stored approval approves; core reads the stored answer back and records it (a rejection with who gave it,
    // an expiry as expired).
    return state.status === 'approved' ? true : { approved: false };
  };
}

// The approver runs before the session that will use it exists, so it reads the store itself (the session's
// waitForApproval is the same wait for code that holds the session). It stops when core aborts the request's signal.
async function untilAnswered(store: ApprovalStore, requestId: string, intervalMs: number, signal: AbortSignal): Promise<ApprovalState | undefined> {
  for (;;) {
    const state = await store.get(requestId, Date.now());
    if (state === undefined || state.status !== 'pending' || signal.aborted) return state;
    await sleep(intervalMs, signal);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
