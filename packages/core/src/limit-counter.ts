/**
 * Counting `limits:` for one session: takes a slot of every limit an action meets in the session's
 * {@link RateLimitStore}, gives the slots back when the action is not allowed (or never runs), and words the denial of
 * a full limit. The policy says which limits an action meets ({@link CompiledLimit}); this says whether they are full.
 */
import type { Action } from './decision.js';
import type { CompiledLimit } from './limits.js';
import type { Verdict } from './policy-evaluator.js';
import { InMemoryRateLimitStore, type RateLimitStore, type RateLimitTake } from './rate-limit-store.js';

/** The verdict after the limits, and the slots taken (key, slot, key, slot, …) to give back unless allowed. */
export interface LimitCount {
  verdict: Verdict;
  /** Each slot taken: its key, then its id (a number from the in-memory store, a string from any other). */
  held: readonly (string | number)[];
}

export const NO_LIMITS: readonly CompiledLimit[] = Object.freeze([]);
const NO_SLOTS: readonly (string | number)[] = Object.freeze([]);

function describeRecorded(action: Action): string {
  if (action.type === 'tool') return `tool ${JSON.stringify(action.name)}`;
  if (action.type === 'http') return `request to ${action.domain}`;
  return `cost (${action.source})`;
}

/** The denial of a full limit (also what a replay of an audit log reports). */
export function limitVerdict(limit: CompiledLimit, resetAtMs: number | null, action: Action): Verdict {
  const shared = limit.scope === 'budget' ? ' across sessions sharing the budget' : '';
  let when: string;
  if (resetAtMs === null) when = limit.scope === 'budget' ? 'no more such calls under this budget' : 'no more such calls in this session';
  else {
    const seconds = Math.max(0, Math.ceil((resetAtMs - Date.now()) / 1000));
    when = `the window reopens at ${new Date(resetAtMs).toISOString()} (in ${seconds}s)`;
  }
  const per = limit.windowMs === null ? (limit.scope === 'budget' ? 'per budget' : 'per session') : `per ${limit.per}`;
  return {
    decision: 'deny',
    reason: `${describeRecorded(action)} reached limits[${limit.index}]: ${limit.maxCalls} call${limit.maxCalls === 1 ? '' : 's'} ${per}${shared}; ${when}`,
    rule: { section: 'limits', index: limit.index, maxCalls: limit.maxCalls, per: limit.per, scope: limit.scope, resetAt: resetAtMs === null ? null : new Date(resetAtMs).toISOString() },
    approvedRule: false,
  };
}

/** A full shadowed limit comes before budget and approval: it replaces a shadow outcome from after the limits. */
function withLimitShadow(verdict: Verdict, shadowHit: Verdict | undefined): Verdict {
  if (shadowHit === undefined || (verdict.shadow !== undefined && verdict.shadowAfterLimits !== true)) return verdict;
  return { ...verdict, shadow: { decision: shadowHit.decision, reason: shadowHit.reason, rule: shadowHit.rule }, shadowAfterLimits: false };
}

/** The limit counts of one session: its store keys are built once per limit, from the session id or the budget key. */
export class LimitCounter {
  private readonly store: RateLimitStore;
  // The in-memory store (exactly that class: a subclass may change what take does) is counted without allocating.
  private readonly local: InMemoryRateLimitStore | undefined;
  // The store key of each limit counted, by the limit's index, with the limit it was built for: a policy change can
  // put another limit at an index, and that one has a key of its own.
  private readonly keys: string[] = [];
  private readonly keyOwners: CompiledLimit[] = [];
  // The keys of this session's own counts (`scope: session`) made so far, under every policy version it has seen.
  private readonly sessionKeys: string[] = [];
  /**
   * The instant the last count read from the in-memory store's system clock, else 0: the decision made right after
   * is stamped with it (one clock read per check). The session sets it back to 0 once that decision is made.
   */
  clockMs = 0;

  constructor(
    store: RateLimitStore,
    private readonly sessionId: string,
    // The scope id of `scope: budget` limits: every session that shares the budget key shares those counts.
    private readonly budgetKey: string,
  ) {
    this.store = store;
    this.local = store instanceof InMemoryRateLimitStore && Object.getPrototypeOf(store) === InMemoryRateLimitStore.prototype ? store : undefined;
  }

  /**
   * Lets go of this session's own counts (`scope: session`) in the in-memory store, once the session has ended and
   * its id cannot be opened again (it was generated): nothing can count under those keys any more, and a store
   * shared by the sessions of a budget key would otherwise keep one count for every session a server ever opened.
   * Counts in another store (shared by processes) are left to it; `scope: budget` counts stay.
   */
  forgetSessionCounts(): void {
    const local = this.local;
    if (local === undefined) return;
    for (const key of this.sessionKeys) local.forget(key);
    this.sessionKeys.length = 0;
  }

  /** Gives the slots back, then hands back `decision`. */
  giveBackThen<T>(held: readonly (string | number)[], value: T): T | Promise<T> {
    const done = this.giveBack(held);
    return done instanceof Promise ? done.then(() => value) : value;
  }

  /** Gives back the slots taken by {@link count} (the action was not allowed, or will never run). */
  giveBack(held: readonly (string | number)[]): void | Promise<void> {
    const pending: Promise<void>[] = [];
    for (let i = 0; i < held.length; i += 2) {
      const slot = held[i + 1];
      if (typeof slot === 'number') {
        (this.local as InMemoryRateLimitStore).giveBackAt(held[i] as string, slot);
        continue;
      }
      const done = this.store.giveBack(held[i] as string, slot as string);
      if (done instanceof Promise) pending.push(done);
    }
    if (pending.length > 0) return Promise.all(pending).then(() => undefined);
  }

  /** The store key of a limit for this session, built once (a flat string, so the store hashes it once). */
  private keyOf(limit: CompiledLimit): string {
    if (this.keyOwners[limit.index] === limit) return this.keys[limit.index] as string;
    const key = `${limit.keyPrefix}${limit.scope === 'budget' ? this.budgetKey : this.sessionId}`;
    if (limit.scope === 'session' && !this.sessionKeys.includes(key)) this.sessionKeys.push(key);
    this.keys[limit.index] = key;
    this.keyOwners[limit.index] = limit;
    return key;
  }

  /**
   * Takes a slot of every limit the action meets, in order. A full enforced limit denies (slots already taken are
   * given back); a full shadowed one is recorded as the shadow outcome. Synchronous while the store is.
   */
  count(limits: readonly CompiledLimit[], action: Action, verdict: Verdict): LimitCount | Promise<LimitCount> {
    const local = this.local;
    if (local !== undefined) return this.countLocal(local, limits, action, verdict);
    const held: string[] = [];
    let shadowHit: Verdict | undefined;
    for (let i = 0; i < limits.length; i++) {
      const limit = limits[i] as CompiledLimit;
      const key = this.keyOf(limit);
      const taken = this.store.take(key, limit.maxCalls, limit.windowMs);
      if (taken instanceof Promise) return this.countAsync(limits, i, taken, key, held, shadowHit, action, verdict);
      if (taken.ok) held.push(key, taken.slot);
      else if (limit.enforced) return this.limitDenied(limit, taken.resetAtMs, action, verdict, held, shadowHit);
      else shadowHit ??= limitVerdict(limit, taken.resetAtMs, action);
    }
    return { verdict: withLimitShadow(verdict, shadowHit), held };
  }

  // The same with the in-memory store, without allocating: one clock read for all the limits, slot ids as numbers.
  private countLocal(local: InMemoryRateLimitStore, limits: readonly CompiledLimit[], action: Action, verdict: Verdict): LimitCount {
    // Sized once (the key and slot of each limit); a literal grown by push would allocate more on every check.
    // oxlint-disable-next-line unicorn/no-new-array
    const held: (string | number)[] = new Array(limits.length * 2);
    let count = 0;
    let shadowHit: Verdict | undefined;
    const now = local.clock();
    // The same instant stamps the decision made right after (see makeDecision).
    if (local.systemClock) this.clockMs = now;
    for (let i = 0; i < limits.length; i++) {
      const limit = limits[i] as CompiledLimit;
      const key = this.keyOf(limit);
      const slot = local.takeAt(key, limit.maxCalls, limit.windowMs, now);
      if (slot > 0) {
        held[count++] = key;
        held[count++] = slot;
      } else if (limit.enforced) {
        held.length = count;
        return this.limitDenied(limit, local.lastResetAtMs, action, verdict, held, shadowHit) as LimitCount;
      } else shadowHit ??= limitVerdict(limit, local.lastResetAtMs, action);
    }
    held.length = count;
    return { verdict: withLimitShadow(verdict, shadowHit), held };
  }

  private async countAsync(
    limits: readonly CompiledLimit[],
    from: number,
    first: Promise<RateLimitTake>,
    firstKey: string,
    held: string[],
    shadowHit: Verdict | undefined,
    action: Action,
    verdict: Verdict,
  ): Promise<LimitCount> {
    let pending: Promise<RateLimitTake> | undefined = first;
    let key = firstKey;
    try {
      for (let i = from; i < limits.length; i++) {
        const limit = limits[i] as CompiledLimit;
        if (pending === undefined) key = this.keyOf(limit);
        const taken = await (pending ?? this.store.take(key, limit.maxCalls, limit.windowMs));
        pending = undefined;
        if (taken.ok) held.push(key, taken.slot);
        else if (limit.enforced) return await this.limitDenied(limit, taken.resetAtMs, action, verdict, held, shadowHit);
        else shadowHit ??= limitVerdict(limit, taken.resetAtMs, action);
      }
    } catch (error) {
      await this.giveBack(held);
      throw error;
    }
    return { verdict: withLimitShadow(verdict, shadowHit), held };
  }

  private limitDenied(limit: CompiledLimit, resetAtMs: number | null, action: Action, verdict: Verdict, held: readonly (string | number)[], shadowHit: Verdict | undefined): LimitCount | Promise<LimitCount> {
    const denied = limitVerdict(limit, resetAtMs, action);
    // A shadow outcome that comes before the limits (or an earlier shadowed limit) is still what would have decided.
    if (verdict.shadow !== undefined && verdict.shadowAfterLimits !== true) denied.shadow = verdict.shadow;
    else if (shadowHit !== undefined) denied.shadow = { decision: shadowHit.decision, reason: shadowHit.reason, rule: shadowHit.rule };
    const outcome: LimitCount = { verdict: denied, held: NO_SLOTS };
    const done = this.giveBack(held);
    return done instanceof Promise ? done.then(() => outcome) : outcome;
  }
}
