import { AsyncLocalStorage } from 'node:async_hooks';
import type { PolicySession } from '@agentpolicy/core';

// The sessions whose middleware already gates and records the model call running in this async context. A callback
// handler on the same session leaves such a call alone, so nothing is reserved or charged twice. It is kept on
// `globalThis` under a registered symbol so that every copy of this module (the package's entry points, its ESM and
// CommonJS builds) shares the one store.
const KEY = Symbol.for('agentpolicy.langchain.gatedModelCalls');
const gated: AsyncLocalStorage<ReadonlySet<PolicySession>> = ((globalThis as Record<symbol, unknown>)[KEY] ??=
  new AsyncLocalStorage<ReadonlySet<PolicySession>>()) as AsyncLocalStorage<ReadonlySet<PolicySession>>;

/** Runs `fn` (a model call) marked as gated by `session`'s middleware. */
export function runGated<T>(session: PolicySession, fn: () => T): T {
  const outer = gated.getStore();
  return gated.run(new Set(outer ? [...outer, session] : [session]), fn);
}

/** Whether the model call running now is already gated by `session`'s middleware. */
export function isGated(session: PolicySession): boolean {
  return gated.getStore()?.has(session) ?? false;
}
